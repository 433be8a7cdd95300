package io.bifuse;

import static org.junit.jupiter.api.Assertions.*;

import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/** The CPU emulation of the GPU's reduced-precision GEMM operands, and the Linear layer's checks. */
class PrecisionTest {
    @Test void roundsToNearestEvenOnTheKeptSignificand() {
        float ulpTf32 = 0x1p-10f, ulpBf16 = 0x1p-7f; // at 1.0
        assertEquals(1f, Precision.TF32.round(1f + ulpTf32 / 2));               // tie, even is 1
        assertEquals(1f + 2 * ulpTf32, Precision.TF32.round(1f + 1.5f * ulpTf32)); // tie, even is 1 + 2 ulp
        assertEquals(1f + ulpTf32, Precision.TF32.round(1f + 0.75f * ulpTf32));
        assertEquals(-1f - ulpBf16, Precision.BF16.round(-1f - 0.6f * ulpBf16));
        assertEquals(1f, Precision.BF16.round(1f + 0.4f * ulpBf16));
        assertEquals(0.1f, Precision.FP32.round(0.1f));
        assertTrue(Float.isNaN(Precision.BF16.round(Float.NaN)));
        assertEquals(Float.POSITIVE_INFINITY, Precision.TF32.round(Float.POSITIVE_INFINITY));
    }

    @Test void relativeRoundingErrorIsAtMostHalfAnUlp() {
        SplittableRandom r = new SplittableRandom(7);
        for (int i = 0; i < 100_000; i++) {
            float v = (float) (r.nextGaussian() * Math.pow(10, r.nextInt(-6, 7)));
            assertTrue(Math.abs(Precision.TF32.round(v) - (double) v) <= 0x1p-11 * Math.abs(v), "tf32 " + v);
            assertTrue(Math.abs(Precision.BF16.round(v) - (double) v) <= 0x1p-8 * Math.abs(v), "bf16 " + v);
        }
    }

    @Test void boundsAreOrderedAndFp32IsTheIssuesBound() {
        assertEquals(1e-5, Precision.FP32.bound());
        assertTrue(Precision.FP32.bound() < Precision.TF32.bound() && Precision.TF32.bound() < Precision.BF16.bound());
    }

    @Test void linearNamesWhatIsWrong() {
        var e = assertThrows(IllegalArgumentException.class, () -> new Linear(3, 2, new float[5], null));
        assertTrue(e.getMessage().contains("3 × 2 = 6"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> new Linear(3, 2, new float[6], new float[2]));
        assertTrue(e.getMessage().startsWith("weight bias: expected 3"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> new Linear(1, 2, new float[] {1, Float.NaN}, null));
        assertTrue(e.getMessage().contains("[1]"), e.getMessage());
        Linear l = Linear.random(4, 3, true, 1);
        e = assertThrows(IllegalArgumentException.class, () -> l.requireShape("U", 4, 5));
        assertTrue(e.getMessage().startsWith("U: expected a layer 5 → 4"), e.getMessage());
        float[] w = l.weight();
        w[0] = 99;
        assertNotEquals(99f, l.weight()[0], "immutable");
        assertArrayEquals(new float[2], new Linear(2, 1, new float[2], null).biasOrZeros());
    }
}
