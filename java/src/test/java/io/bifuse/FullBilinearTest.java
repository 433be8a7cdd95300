package io.bifuse;

import io.bifuse.cpu.FullBilinearCpu;
import static io.bifuse.CompactBilinearTest.assertMessage;
import static org.junit.jupiter.api.Assertions.*;

import io.bifuse.reference.FullBilinearReference;
import io.bifuse.testing.Stats;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * The CPU backend (float32 GEMMs, see FullBilinearCpu) against the definition-based reference, the
 * relations between the homologous and the two-input op, and the API's argument checks. Tolerance 1e-5
 * relative L2 (the float32 bound): a float32 sum of L <= 196 products errs by ~1e-7 relative, so
 * anything above 1e-5 is a real discrepancy. Inputs are rectified here, which keeps the signed sqrt's
 * derivative well conditioned; FullBilinearCpuTest holds signed inputs to the float32 baseline rule.
 */
class FullBilinearTest {
    static final double TOL = 1e-5;
    static final Normalization[] NORMS = {
        Normalization.NONE, Normalization.pytorch(), Normalization.caffe(), new Normalization(false, 0, Normalization.L2.MAX_NORM, 1e-12f),
    };

    @ParameterizedTest(name = "B={0} L={1} C1={2} C2={3} avg={4}")
    @CsvSource({"1,1,1,1,false", "2,1,3,5,true", "3,7,1,4,false", "2,9,17,8,true", "3,49,64,32,false", "1,196,100,77,true"})
    void cpuMatchesReference(int batch, int positions, int c1, int c2, boolean average) {
        SplittableRandom r = new SplittableRandom(batch * 31L + positions * 7L + c1);
        for (Normalization n : NORMS) {
            // Relu'd inputs as conv features are, so that the exact ssqrt derivative is well conditioned.
            float[] x = relu(Stats.gaussian(r, batch * positions * c1)), y = relu(Stats.gaussian(r, batch * positions * c2));
            FullBilinear op = FullBilinear.of(c1, c2, average, n);
            float[] g = Stats.gaussian(r, batch * op.outputSize());
            assertBelow(Stats.relativeL2(new FullBilinearCpu(op).forward(x, y, batch, positions), FullBilinearReference.forward(op, x, y, batch, positions)), n + " forward");
            Gradients cg = new FullBilinearCpu(op).backward(x, y, g, batch, positions);
            double[][] ref = FullBilinearReference.backward(op, x, y, g, batch, positions);
            assertGradient(op, cg.dx(), ref[0], n + " dx");
            assertGradient(op, cg.dy(), ref[1], n + " dy");

            FullBilinear h = FullBilinear.homologous(c1, average, n);
            float[] gh = Stats.gaussian(r, batch * h.outputSize());
            assertBelow(Stats.relativeL2(new FullBilinearCpu(h).forward(x, batch, positions), FullBilinearReference.forward(h, x, null, batch, positions)), n + " homologous forward");
            assertGradient(h, new FullBilinearCpu(h).backward(x, gh, batch, positions), FullBilinearReference.backward(h, x, null, gh, batch, positions)[0],
                    n + " homologous dx");
        }
    }

    @Test void homologousIsTheTwoInputOpWithYEqualX() {
        // Forward: the same numbers. Backward: X feeds both factors, so ∂L/∂X is the two-input op's dx + dy.
        SplittableRandom r = new SplittableRandom(4);
        int batch = 3, positions = 11, c = 9;
        for (Normalization n : NORMS) {
            FullBilinear h = FullBilinear.homologous(c, true, n), two = FullBilinear.of(c, c, true, n);
            float[] x = relu(Stats.gaussian(r, batch * positions * c)), g = Stats.gaussian(r, batch * c * c);
            assertArrayEquals(new FullBilinearCpu(two).forward(x, x, batch, positions), new FullBilinearCpu(h).forward(x, batch, positions), 1e-6f);
            Gradients both = new FullBilinearCpu(two).backward(x, x, g, batch, positions);
            double[] sum = new double[x.length];
            for (int i = 0; i < sum.length; i++) sum[i] = (double) both.dx()[i] + both.dy()[i];
            assertBelow(Stats.relativeL2(new FullBilinearCpu(h).backward(x, g, batch, positions), sum), n + " dx = dx + dy");
        }
    }

    @Test void homologousOutputIsSymmetric() {
        SplittableRandom r = new SplittableRandom(5);
        int c = 13;
        float[] z = new FullBilinearCpu(FullBilinear.homologous(c, false, Normalization.NONE)).forward(Stats.gaussian(r, 2 * 6 * c), 2, 6);
        for (int b = 0; b < 2; b++)
            for (int a = 0; a < c; a++)
                for (int k = 0; k < c; k++) assertEquals(z[b * c * c + a * c + k], z[b * c * c + k * c + a], 1e-5f);
    }

    @Test void averagingDividesByLAndCancelsUnderL2() {
        SplittableRandom r = new SplittableRandom(6);
        int batch = 2, positions = 10, c1 = 5, c2 = 4;
        float[] x = Stats.gaussian(r, batch * positions * c1), y = Stats.gaussian(r, batch * positions * c2);
        float[] sum = new FullBilinearCpu(FullBilinear.of(c1, c2, false, Normalization.NONE)).forward(x, y, batch, positions);
        float[] avg = new FullBilinearCpu(FullBilinear.of(c1, c2, true, Normalization.NONE)).forward(x, y, batch, positions);
        for (int i = 0; i < sum.length; i++) assertEquals(sum[i] / positions, avg[i], 1e-5f * Math.abs(sum[i]) + 1e-7f);
        // Signed sqrt then l2: a positive factor on z scales u by its square root, which the l2 removes.
        Normalization n = Normalization.pytorch();
        assertArrayEquals(new FullBilinearCpu(FullBilinear.of(c1, c2, false, n)).forward(x, y, batch, positions),
                new FullBilinearCpu(FullBilinear.of(c1, c2, true, n)).forward(x, y, batch, positions), 1e-6f);
    }

    @Test void pooledIsTheSumOfOuterProducts() {
        // One sample, two positions: X = [[1, 2], [3, 4]], Y = [[5], [6]] -> Z = [[1·5 + 3·6], [2·5 + 4·6]] = [[23], [34]].
        FullBilinear op = FullBilinear.of(2, 1, false, Normalization.NONE);
        assertArrayEquals(new float[] {23, 34}, new FullBilinearCpu(op).forward(new float[] {1, 2, 3, 4}, new float[] {5, 6}, 1, 2), 0);
        assertArrayEquals(new float[] {11.5f, 17}, new FullBilinearCpu(FullBilinear.of(2, 1, true, Normalization.NONE)).forward(new float[] {1, 2, 3, 4}, new float[] {5, 6}, 1, 2), 0);
    }

    @Test void badArgumentsAreRejectedByName() {
        assertMessage("c1: expected >= 1, got 0", () -> FullBilinear.of(0, 3, false, Normalization.NONE));
        assertMessage("c2: expected >= 1, got -2", () -> FullBilinear.of(3, -2, false, Normalization.NONE));
        assertMessage("c: expected >= 1, got 0", () -> FullBilinear.homologous(0, false, Normalization.NONE));
        assertMessage("normalization: expected a Normalization", () -> FullBilinear.of(3, 2, false, null));
        assertMessage("normalization: expected a Normalization", () -> FullBilinear.homologous(3, true, null));
        assertMessage("c2: expected C1·C2 < 2^31", () -> FullBilinear.of(65536, 65536, false, Normalization.NONE));

        FullBilinear op = FullBilinear.of(3, 2, false, Normalization.pytorch());
        float[] x = new float[2 * 5 * 3], y = new float[2 * 5 * 2], g = new float[2 * 6];
        assertMessage("positions: expected L >= 1 spatial positions, got 0", () -> new FullBilinearCpu(op).forward(new float[0], new float[0], 2, 0));
        assertMessage("batch: expected >= 1, got 0", () -> new FullBilinearCpu(op).forward(x, y, 0, 5));
        assertMessage("x: expected 2 × 5 × 3 = 30 floats, got 29", () -> new FullBilinearCpu(op).forward(new float[29], y, 2, 5));
        assertMessage("y: expected 2 × 5 × 2 = 20 floats, got 30", () -> new FullBilinearCpu(op).forward(x, x, 2, 5));
        assertMessage("x: expected 2 × 5 × 3 floats, got null", () -> new FullBilinearCpu(op).forward(null, y, 2, 5));
        assertMessage("gradOut: expected 2 × 6 = 12 floats, got 11", () -> new FullBilinearCpu(op).backward(x, y, new float[11], 2, 5));
        assertMessage("y: this op takes two inputs", () -> new FullBilinearCpu(op).forward(x, 2, 5));
        assertMessage("y: this op takes two inputs", () -> new FullBilinearCpu(op).backward(x, g, 2, 5));
        assertDoesNotThrow(() -> new FullBilinearCpu(op).backward(x, y, g, 2, 5));

        FullBilinear h = FullBilinear.homologous(3, true, Normalization.caffe());
        assertMessage("y: this op is homologous", () -> new FullBilinearCpu(h).forward(x, x, 2, 5));
        assertMessage("y: this op is homologous", () -> new FullBilinearCpu(h).backward(x, x, new float[18], 2, 5));
        assertMessage("gradOut: expected 2 × 9 = 18 floats, got 12", () -> new FullBilinearCpu(h).backward(x, g, 2, 5));
        assertMessage("positions: expected L >= 1", () -> new FullBilinearCpu(h).forward(x, 2, -1));
        assertDoesNotThrow(() -> new FullBilinearCpu(h).backward(x, new float[18], 2, 5));
        assertMessage("batch: expected B·C1·C2 < 2^31", () -> new FullBilinearCpu(FullBilinear.homologous(2048, false, Normalization.NONE)).forward(new float[1], 1024, 1));
    }

    @Test void descriptorsCompareByValue() {
        assertEquals(FullBilinear.of(4, 3, true, Normalization.caffe()), FullBilinear.of(4, 3, true, Normalization.caffe()));
        assertNotEquals(FullBilinear.of(4, 4, true, Normalization.caffe()), FullBilinear.homologous(4, true, Normalization.caffe()));
        assertNotEquals(FullBilinear.of(4, 3, true, Normalization.caffe()), FullBilinear.of(4, 3, false, Normalization.caffe()));
        assertEquals(12, FullBilinear.of(4, 3, true, Normalization.NONE).outputSize());
        assertEquals(0.25, FullBilinear.homologous(4, true, Normalization.NONE).scale(4));
        assertEquals(1.0, FullBilinear.homologous(4, false, Normalization.NONE).scale(4));
    }

    static float[] relu(float[] a) {
        for (int i = 0; i < a.length; i++) a[i] = Math.max(0f, a[i]);
        return a;
    }

    /**
     * A gradient against the reference at {@link #TOL}, except where exact arithmetic leaves nothing to
     * compare relatively: with one output entry the l2 backward's two terms cancel (exactly, or to the eps
     * of SUM_SQUARES, ~1e-7 of themselves), and a sample whose pooled entries all come from one nonzero
     * input (L = 1 after the ReLU) is scale-invariant under ssqrt + l2, its gradient zero but for the
     * reference's 1e-16 residue ({@link Stats#cancelled}). Float32 leaves ~1e-8 of the terms there: such a
     * gradient need only be finite (one entry) or below {@link Stats#CANCELLED_DEVICE} (cancelled).
     */
    static void assertGradient(FullBilinear op, float[] got, double[] ref, String what) {
        if (op.outputSize() == 1 && op.normalization().l2() != Normalization.L2.NONE) {
            for (float v : got) assertTrue(Float.isFinite(v), what + ": not finite");
        } else if (Stats.cancelled(ref)) {
            assertTrue(Stats.norm(got) <= Stats.CANCELLED_DEVICE, what + ": the reference cancels to " + Stats.norm(ref) + ", got " + Stats.norm(got));
        } else {
            assertBelow(Stats.relativeL2(got, ref), what);
        }
    }

    static void assertBelow(double err, String what) {
        assertTrue(err < TOL, what + ": relative L2 error " + err + " >= " + TOL);
    }
}
