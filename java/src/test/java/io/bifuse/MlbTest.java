package io.bifuse;

import io.bifuse.cpu.MlbCpu;
import io.bifuse.cuda.MlbCuda;
import static io.bifuse.CompactBilinearTest.assertMessage;
import static org.junit.jupiter.api.Assertions.*;

import io.bifuse.reference.MlbReference;
import io.bifuse.testing.Stats;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * The CPU backend against the reference, the API's argument checks, and what the GPU's reduced GEMM
 * precisions cost at the spec's size. CPU tolerance 1e-5 relative L2: the backend computes in float32
 * (GEMM sums of at most a few hundred products here, ~1e-7 relative), so anything above 1e-5 is a real
 * discrepancy; {@code io.bifuse.cpu.MlbCpuTest} holds it to the reference at more sizes.
 */
class MlbTest {
    static final double TOL = 1e-5;

    @ParameterizedTest(name = "B={0} Dx={1} Dy={2} J={3} Out={4} {5}")
    @CsvSource({"1,1,1,1,1,TANH", "3,7,5,4,2,NONE", "2,17,9,33,5,RELU", "4,40,31,20,13,TANH", "2,240,204,120,200,TANH"})
    void cpuMatchesReference(int batch, int dx, int dy, int j, int out, Activation act) {
        SplittableRandom r = new SplittableRandom(batch * 31L + dx);
        Mlb op = Mlb.random(dx, dy, j, out, act, r.nextLong());
        float[] x = Stats.gaussian(r, batch * dx), y = Stats.gaussian(r, batch * dy), g = Stats.gaussian(r, batch * out);
        assertTrue(Stats.relativeL2(new MlbCpu(op).forward(x, y, batch), MlbReference.forward(op, x, y, batch)) < TOL);
        Mlb.Gradients cg = new MlbCpu(op).backward(x, y, g, batch);
        MlbReference.Grads ref = MlbReference.backward(op, x, y, g, batch);
        float[][] got = {cg.dx(), cg.dy(), cg.u().weight(), cg.u().bias(), cg.v().weight(), cg.v().bias(), cg.p().weight(), cg.p().bias()};
        for (int t = 0; t < got.length; t++) {
            double e = Stats.relativeL2(got[t], ref.all()[t]);
            assertTrue(e < TOL, "gradient " + t + " error " + e);
        }
    }

    @Test void layersWithoutBiasGetNoBiasGradient() {
        SplittableRandom r = new SplittableRandom(4);
        Mlb op = Mlb.of(Linear.random(6, 5, false, 1), Linear.random(6, 3, true, 2), Linear.random(2, 6, false, 3), Activation.TANH);
        float[] x = Stats.gaussian(r, 10), y = Stats.gaussian(r, 6), g = Stats.gaussian(r, 4);
        Mlb.Gradients gr = new MlbCpu(op).backward(x, y, g, 2);
        assertNull(gr.u().bias());
        assertNotNull(gr.v().bias());
        assertNull(gr.p().bias());
        // A missing bias is a zero bias: the same numbers as explicit zeros.
        Mlb zeros = Mlb.of(new Linear(6, 5, op.u().weight(), new float[6]), op.v(), new Linear(2, 6, op.p().weight(), new float[2]), Activation.TANH);
        assertArrayEquals(new MlbCpu(zeros).forward(x, y, 2), new MlbCpu(op).forward(x, y, 2));
        assertArrayEquals(new MlbCpu(zeros).backward(x, y, g, 2).dx(), gr.dx());
    }

    @Test void randomFollowsTheDocumentedSeeds() {
        Mlb op = Mlb.random(5, 4, 3, 2, Activation.TANH, 42);
        assertEquals(Linear.random(3, 5, true, 42), op.u());
        assertEquals(Linear.random(3, 4, true, 43), op.v());
        assertEquals(Linear.random(2, 3, true, 44), op.p());
        assertEquals(op, Mlb.random(5, 4, 3, 2, Activation.TANH, 42));
        assertNotEquals(op, Mlb.random(5, 4, 3, 2, Activation.RELU, 42));
        assertEquals(5, op.dx());
        assertEquals(4, op.dy());
        assertEquals(3, op.joint());
        assertEquals(2, op.out());
    }

    @Test void mismatchedLayersAreRejectedByName() {
        Linear u = Linear.random(4, 5, true, 1), v = Linear.random(4, 3, true, 2), p = Linear.random(2, 4, true, 3);
        assertDoesNotThrow(() -> Mlb.of(u, v, p, Activation.TANH));
        assertMessage("v: expected a layer Dy → 4 (out = J = u.out), got 3 → 5", () -> Mlb.of(u, Linear.random(5, 3, true, 2), p, Activation.TANH));
        assertMessage("p: expected a layer 4 → Out (in = J = u.out), got 3 → 2", () -> Mlb.of(u, v, Linear.random(2, 3, true, 3), Activation.TANH));
        assertMessage("u: expected a Linear layer, got null", () -> Mlb.of(null, v, p, Activation.TANH));
        assertMessage("v: expected a Linear layer, got null", () -> Mlb.of(u, null, p, Activation.TANH));
        assertMessage("p: expected a Linear layer, got null", () -> Mlb.of(u, v, null, Activation.TANH));
        assertMessage("activation: expected one of NONE, RELU, TANH, SIGMOID, got null", () -> Mlb.of(u, v, p, null));
        assertMessage("joint: expected >= 1, got 0", () -> Mlb.random(2, 2, 0, 2, Activation.TANH, 1));
        assertMessage("dx: expected >= 1, got -1", () -> Mlb.random(-1, 2, 2, 2, Activation.TANH, 1));
        assertMessage("out: expected >= 1, got 0", () -> Mlb.random(2, 2, 2, 0, Activation.TANH, 1));
        assertMessage("activation: expected one of", () -> Mlb.random(2, 2, 2, 2, null, 1));
        assertMessage("precision: expected FP32, TF32 or BF16, got null", () -> new MlbCuda(Mlb.random(2, 2, 2, 2, Activation.TANH, 1), null, null));
        assertMessage("context: expected an open CudaContext, got null", () -> new MlbCuda(Mlb.random(2, 2, 2, 2, Activation.TANH, 1), null));
        assertMessage("op: expected an Mlb, got null", () -> new io.bifuse.cpu.MlbCpu(null));
    }

    @Test void badInputsAreRejectedByName() {
        Mlb op = Mlb.random(3, 2, 4, 5, Activation.TANH, 1);
        float[] x = new float[6], y = new float[4], g = new float[10];
        assertMessage("batch: expected >= 1, got 0", () -> new MlbCpu(op).forward(x, y, 0));
        assertMessage("x: expected 2 × 3 = 6 floats, got 5", () -> new MlbCpu(op).forward(new float[5], y, 2));
        assertMessage("y: expected 2 × 2 = 4 floats, got 6", () -> new MlbCpu(op).forward(x, new float[6], 2));
        assertMessage("x: expected 2 × 3 floats, got null", () -> new MlbCpu(op).forward(null, y, 2));
        assertMessage("gradOut: expected 2 × 5 = 10 floats, got 9", () -> new MlbCpu(op).backward(x, y, new float[9], 2));
        assertMessage("gradOut: expected 2 × 5 floats, got null", () -> new MlbCpu(op).backward(x, y, null, 2));
        assertDoesNotThrow(() -> new MlbCpu(op).backward(x, y, g, 2));
    }

    /**
     * What TF32 and BF16 cost at the spec's MLB size (B = 64 instead of 512 to keep it to seconds; the
     * error is a per-element average, so B barely matters): the float64 reference evaluated with every
     * GEMM operand rounded as {@link Precision#round} does (x, y, U, V, then the float32 h that enters
     * the P GEMM, and P; biases and the elementwise work stay exact, as on the GPU), against the exact
     * reference. The measured errors must sit below half the documented bound, so that the bound is
     * not a coin toss on the GPU (whose accumulation order and truncation add a little).
     */
    @Test void reducedPrecisionCostIsWellWithinTheDocumentedBound() {
        int batch = 64, dx = 2400, dy = 2048, j = 1200, out = 2000;
        SplittableRandom r = new SplittableRandom(2017);
        Mlb op = Mlb.random(dx, dy, j, out, Activation.TANH, 7);
        float[] x = Stats.gaussian(r, batch * dx), y = Stats.gaussian(r, batch * dy);
        MlbReference.Weights w = MlbReference.Weights.of(op);
        double[] exact = MlbReference.forward(w, MlbReference.toDouble(x), MlbReference.toDouble(y), batch);
        for (Precision p : new Precision[] {Precision.TF32, Precision.BF16}) {
            MlbReference.Weights rw = new MlbReference.Weights(dx, dy, j, out, Activation.TANH,
                    MlbReference.toDouble(p.round(op.u().weight())), w.bu(),
                    MlbReference.toDouble(p.round(op.v().weight())), w.bv(),
                    MlbReference.toDouble(p.round(op.p().weight())), w.bp());
            double[] h = MlbReference.hidden(rw, MlbReference.toDouble(p.round(x)), MlbReference.toDouble(p.round(y)), batch);
            for (int i = 0; i < h.length; i++) h[i] = p.round((float) h[i]); // h is float32 on the GPU, then rounded as a GEMM operand
            double e = Stats.relativeL2(MlbReference.output(rw, h, batch), exact);
            System.out.printf("MLB %s at B=%d Dx=%d Dy=%d J=%d Out=%d tanh: relative L2 %.3e = %.2f u (bound %.2e = 4u)%n",
                    p, batch, dx, dy, j, out, e, e / (p.bound() / 4), p.bound());
            assertTrue(e < p.bound() / 2, p + ": relative L2 " + e + " is not below half the bound " + p.bound());
            assertTrue(e > p.bound() / 400, p + ": relative L2 " + e + " is implausibly small: is the rounding applied?");
        }
    }
}
