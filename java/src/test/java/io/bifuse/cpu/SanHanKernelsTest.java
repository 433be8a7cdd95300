package io.bifuse.cpu;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

/**
 * The vectorizable tanh (MlbKernels.tanh, which SanHanKernels uses) against {@code Math.tanh} over the
 * floats: relative error at most 4e-7 (about 3 ulp; the backends' 1e-5 bound on every tensor leaves room
 * for that many times over), odd, bounded by 1, and the bulk loops equal to the scalar function bit for bit.
 */
class SanHanKernelsTest {
    @Test void tanhIsWithinAFewUlpOfTheExactOneEverywhere() {
        double worst = 0;
        float at = 0;
        // every 1021st float bit pattern of the positive range (subnormals to infinity), then the odd half by symmetry
        for (int bits = 1; bits <= 0x7f800000 && bits > 0; bits += 1021) {
            float x = Float.intBitsToFloat(bits);
            float t = SanHanKernels.tanh(x);
            double e = Math.abs(t - Math.tanh(x)) / Math.tanh(x);
            if (!(e <= worst)) {
                worst = e;
                at = x;
            }
            assertTrue(Math.abs(t) <= 1f, "|tanh(" + x + ")| = " + t + " > 1");
            assertEquals(-t, SanHanKernels.tanh(-x), 0f, "odd at " + x);
        }
        assertTrue(worst <= 4e-7, "worst relative error " + worst + " at " + at);
        assertEquals(0f, SanHanKernels.tanh(0f), 0f);
        assertEquals(1f, SanHanKernels.tanh(Float.POSITIVE_INFINITY), 3e-7f);
        assertEquals(1e-30f, SanHanKernels.tanh(1e-30f), 1e-36f);
    }

    @Test void bulkLoopsAreTheScalarFunction() {
        java.util.SplittableRandom r = new java.util.SplittableRandom(7);
        float[] a = new float[300], b = new float[300], out = new float[310];
        for (int i = 0; i < a.length; i++) {
            a[i] = (float) (4 * r.nextGaussian());
            b[i] = (float) r.nextGaussian();
        }
        SanHanKernels.tanhOfSum(a, 3, b, 5, out, 7, 290);
        for (int j = 0; j < 290; j++) assertEquals(SanHanKernels.tanh(a[3 + j] + b[5 + j]), out[7 + j], 0f);
        float[] c = a.clone();
        SanHanKernels.tanhInPlace(c, 2, 297);
        for (int j = 0; j < 297; j++) assertEquals(SanHanKernels.tanh(a[2 + j]), c[2 + j], 0f);
        assertEquals(a[0], c[0], 0f);
        assertEquals(a[299], c[299], 0f);
    }
}
