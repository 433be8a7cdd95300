package io.bifuse;

import io.bifuse.cpu.MfbCpu;
import static org.junit.jupiter.api.Assertions.*;

import io.bifuse.testing.Stats;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/**
 * Properties of {@link Mfb} (MFB/MFH) on the CPU backend and the API's argument checks; the backend
 * against the float64 reference is {@code io.bifuse.cpu.MfbCpuTest} (float32: {@code MfbTolerance}'s
 * rule, since the signed sqrt and a one-output l2 normalization are ill-conditioned at float rounding).
 */
class MfbTest {

    @Test void theFirstBlockOfMfhIsMfb() {
        // MFH's block 1 has no predecessor: its output columns are exactly MFB's with the same layers.
        SplittableRandom r = new SplittableRandom(2);
        Mfb mfh = Mfb.random(20, 12, 8, 5, 3, Activation.RELU, Normalization.pytorch(), 7);
        Mfb mfb = Mfb.mfb(mfh.u(0), mfh.v(0), 5, Activation.RELU, Normalization.pytorch());
        float[] x = Stats.gaussian(r, 3 * 20), y = Stats.gaussian(r, 3 * 12);
        float[] a = new MfbCpu(mfh).forward(x, y, 3), b = new MfbCpu(mfb).forward(x, y, 3);
        for (int s = 0; s < 3; s++) assertArrayEquals(Arrays.copyOfRange(b, s * 8, s * 8 + 8), Arrays.copyOfRange(a, s * 24, s * 24 + 8));
    }

    @Test void withoutNormalizationTheOutputIsBilinear() {
        // A property independent of the reference: with σ = none, no biases and no normalization each block
        // is linear in x (for fixed y): f(2·x1 + x2) = 2·f(x1) + f(x2) for MFB.
        SplittableRandom r = new SplittableRandom(3);
        Linear u = new Linear(30, 10, Linear.random(30, 10, false, 1).weight(), null);
        Linear v = new Linear(30, 6, Linear.random(30, 6, false, 2).weight(), null);
        Mfb op = Mfb.mfb(u, v, 3, Activation.NONE, Normalization.NONE);
        float[] x1 = Stats.gaussian(r, 10), x2 = Stats.gaussian(r, 10), y = Stats.gaussian(r, 6), mix = new float[10];
        for (int i = 0; i < 10; i++) mix[i] = 2 * x1[i] + x2[i];
        float[] a = new MfbCpu(op).forward(x1, y, 1), b = new MfbCpu(op).forward(x2, y, 1), m = new MfbCpu(op).forward(mix, y, 1);
        double[] expect = new double[m.length];
        for (int i = 0; i < m.length; i++) expect[i] = 2.0 * a[i] + b[i];
        assertTrue(Stats.relativeL2(m, expect) < 1e-6);
    }

    @Test void layersWithoutBiasGetNoBiasGradient() {
        SplittableRandom r = new SplittableRandom(4);
        Linear u1 = Linear.random(12, 5, false, 1), v1 = Linear.random(12, 4, true, 2);
        Linear u2 = Linear.random(12, 5, true, 3), v2 = Linear.random(12, 4, false, 4);
        Mfb op = Mfb.mfh(List.of(u1, u2), List.of(v1, v2), 4, Activation.TANH, Normalization.caffe());
        Mfb.Gradients g = new MfbCpu(op).backward(Stats.gaussian(r, 10), Stats.gaussian(r, 8), Stats.gaussian(r, 12), 2);
        assertNull(g.u().get(0).bias());
        assertEquals(12, g.v().get(0).bias().length);
        assertEquals(12, g.u().get(1).bias().length);
        assertNull(g.v().get(1).bias());
    }

    @Test void factoriesAndAccessors() {
        Mfb op = Mfb.random(1024, 2048, 1000, 5, 2, Activation.RELU, Normalization.pytorch(), 42);
        assertEquals(2, op.blocks());
        assertEquals(5000, op.width());
        assertEquals(2000, op.outputWidth());
        assertEquals(op, Mfb.random(1024, 2048, 1000, 5, 2, Activation.RELU, Normalization.pytorch(), 42));
        assertNotEquals(op, Mfb.random(1024, 2048, 1000, 5, 2, Activation.RELU, Normalization.pytorch(), 43));
        assertTrue(op.toString().startsWith("MFH["), op.toString());
        Mfb one = Mfb.mfb(op.u(0), op.v(0), 5, Activation.NONE, Normalization.pytorch());
        assertTrue(one.toString().startsWith("MFB["), one.toString());
        assertEquals(one, Mfb.mfh(List.of(op.u(0)), List.of(op.v(0)), 5, Activation.NONE, Normalization.pytorch()));
        assertThrows(UnsupportedOperationException.class, () -> op.us().add(op.u(0))); // immutable
    }

    @Test void badConstructionIsRejectedByName() {
        Linear u = Linear.random(20, 6, true, 1), v = Linear.random(20, 4, true, 2);
        Activation a = Activation.NONE;
        Normalization n = Normalization.pytorch();
        assertMessage("k: expected a divisor of the projection width 20 (o·k units), got 3", () -> Mfb.mfb(u, v, 3, a, n));
        assertMessage("k: expected a divisor of the projection width 20 (o·k units), got 0", () -> Mfb.mfb(u, v, 0, a, n));
        assertMessage("k: expected a divisor", () -> Mfb.mfb(u, v, -5, a, n));
        assertMessage("k: expected a divisor", () -> Mfb.mfb(u, v, 40, a, n));
        assertMessage("vs[0]: expected a layer 4 → 20", () -> Mfb.mfb(u, Linear.random(10, 4, true, 3), 5, a, n));
        assertMessage("us[0]: expected a Linear layer, got null", () -> Mfb.mfb(null, v, 5, a, n));
        assertMessage("vs[0]: expected a Linear layer, got null", () -> Mfb.mfb(u, null, 5, a, n));
        assertMessage("activation: expected one of NONE, RELU, TANH, SIGMOID, got null", () -> Mfb.mfb(u, v, 5, null, n));
        assertMessage("normalization: expected a Normalization", () -> Mfb.mfb(u, v, 5, a, null));
        assertMessage("us: expected at least one block", () -> Mfb.mfh(List.of(), List.of(), 5, a, n));
        assertMessage("us: expected at least one block", () -> Mfb.mfh(null, List.of(v), 5, a, n));
        assertMessage("vs: expected 2 V layers (one per block, as us), got 1", () -> Mfb.mfh(List.of(u, u), List.of(v), 5, a, n));
        assertMessage("vs: expected 1 V layers (one per block, as us), got null", () -> Mfb.mfh(List.of(u), null, 5, a, n));
        // Blocks must agree: the same width and the same input dims.
        assertMessage("us[1]: expected a layer 6 → 20 (weight 20 × 6), got 6 → 25", () -> Mfb.mfh(List.of(u, Linear.random(25, 6, true, 4)),
                List.of(v, v), 5, a, n));
        assertMessage("us[1]: expected a layer 6 → 20", () -> Mfb.mfh(List.of(u, Linear.random(20, 7, true, 4)), List.of(v, v), 5, a, n));
        assertMessage("vs[1]: expected a layer 4 → 20 (weight 20 × 4), got 5 → 20", () -> Mfb.mfh(List.of(u, u),
                List.of(v, Linear.random(20, 5, true, 4)), 5, a, n));
        assertMessage("us[1]: expected a Linear layer, got null", () -> Mfb.mfh(Arrays.asList(u, null), List.of(v, v), 5, a, n));
        assertMessage("blocks: expected >= 1, got 0", () -> Mfb.random(6, 4, 4, 5, 0, a, n, 1));
        assertMessage("o: expected >= 1, got 0", () -> Mfb.random(6, 4, 0, 5, 1, a, n, 1));
        assertMessage("k: expected >= 1, got 0", () -> Mfb.random(6, 4, 4, 0, 1, a, n, 1));
    }

    @Test void badInputsAreRejectedByName() {
        Mfb op = Mfb.random(3, 2, 2, 2, 2, Activation.RELU, Normalization.pytorch(), 1);
        float[] x = new float[6], y = new float[4], g = new float[8];
        assertMessage("batch: expected >= 1, got 0", () -> new MfbCpu(op).forward(x, y, 0));
        assertMessage("x: expected 2 × 3 = 6 floats, got 5", () -> new MfbCpu(op).forward(new float[5], y, 2));
        assertMessage("y: expected 2 × 2 = 4 floats, got 6", () -> new MfbCpu(op).forward(x, new float[6], 2));
        assertMessage("x: expected 2 × 3 floats, got null", () -> new MfbCpu(op).forward(null, y, 2));
        assertMessage("gradOut: expected 2 × 4 = 8 floats, got 9", () -> new MfbCpu(op).backward(x, y, new float[9], 2));
        assertDoesNotThrow(() -> new MfbCpu(op).backward(x, y, g, 2));
    }

    static void assertMessage(String expected, org.junit.jupiter.api.function.Executable call) {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, call);
        assertTrue(e.getMessage().contains(expected), "message '" + e.getMessage() + "' lacks '" + expected + "'");
    }
}
