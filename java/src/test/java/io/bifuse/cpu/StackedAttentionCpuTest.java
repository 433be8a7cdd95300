package io.bifuse.cpu;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.bifuse.Linear;
import io.bifuse.Precision;
import io.bifuse.StackedAttention;
import io.bifuse.StackedAttention.Placement;
import io.bifuse.reference.StackedAttentionReference;
import io.bifuse.testing.Conditioning;
import io.bifuse.testing.StackedAttentionTolerance;
import io.bifuse.testing.Stats;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.ConcurrentSkipListMap;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * The float32 CPU backend against the float64 reference on fresh random inputs (the seed is in every
 * message), both tanh placements: one cell and one layer, odd widths, three layers, B = 1, a medium case,
 * odd widths past 256, and the spec's widths (L = 196, d = 1024, k = 512, K = 2) at B = 1 (the float64
 * reference costs ~4·10⁸ multiply-adds per sample there), and layers with some biases absent.
 *
 * <p>Tolerance, relative L2 of the output, the attention maps and every gradient: 1e-5 (float32 GEMMs
 * over at most d or B·L terms and float32 sums over the cells: a few 1e-7; an indexing mistake is ~1).
 * Where a tensor exceeds it, the rule of StackedAttentionCudaTest ({@link StackedAttentionTolerance}): a
 * sharp softmax or a softmax Jacobian that cancels near one-hot maps gets {@code max(1e-5, 2·base)} of
 * {@link Conditioning}, the reference's own movement under float32-sized perturbations of every operand.
 * A gradient that is zero in exact arithmetic (the paper's logits bias; every attention parameter at
 * L = 1, where α = 1) must be exact zeros.
 */
class StackedAttentionCpuTest {
    static final double TOL = 1e-5;
    private static final Map<String, Double> WORST = new ConcurrentSkipListMap<>();

    @AfterAll static void printWorst() { System.out.println("StackedAttentionCpuTest worst relative L2: " + WORST); }

    @ParameterizedTest(name = "B={0} L={1} d={2} k={3} K={4} {5}")
    @CsvSource({"1,1,1,1,1,PAPER", "1,1,1,1,1,PUBLIC_CODE", "3,7,13,9,2,PAPER", "3,7,13,9,2,PUBLIC_CODE", "2,1,6,5,1,PUBLIC_CODE",
                "1,11,10,7,3,PAPER", "4,49,128,64,2,PAPER", "5,37,301,257,2,PUBLIC_CODE", "1,196,1024,512,2,PAPER",
                "1,196,1024,512,2,PUBLIC_CODE"})
    void matchesReference(int batch, int cells, int d, int k, int layers, Placement placement) {
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        check(StackedAttention.random(d, k, layers, placement, r.nextLong()), r, batch, cells, seed);
    }

    @ParameterizedTest(name = "{0}") @CsvSource({"PAPER", "PUBLIC_CODE"})
    void layersWithoutSomeBiases(Placement placement) {
        // Layer 0 without an image bias (the stacked image weights get zeros there), layer 1 without question and logits biases.
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        int d = 11, k = 6;
        StackedAttention.Layer l0 = new StackedAttention.Layer(Linear.random(k, d, false, r.nextLong()), Linear.random(k, d, true, r.nextLong()),
                Linear.random(1, k, true, r.nextLong()));
        StackedAttention.Layer l1 = new StackedAttention.Layer(Linear.random(k, d, true, r.nextLong()), Linear.random(k, d, false, r.nextLong()),
                Linear.random(1, k, false, r.nextLong()));
        check(StackedAttention.of(new StackedAttention.Weights(List.of(l0, l1)), placement), r, 3, 9, seed);
        // and none at all: the stacked image layer has no bias
        StackedAttention.Layer n0 = new StackedAttention.Layer(Linear.random(k, d, false, r.nextLong()), Linear.random(k, d, false, r.nextLong()),
                Linear.random(1, k, false, r.nextLong()));
        check(StackedAttention.of(new StackedAttention.Weights(List.of(n0)), placement), r, 2, 5, seed);
    }

    private static void check(StackedAttention op, SplittableRandom r, int batch, int cells, long seed) {
        int d = op.dim();
        float[] u = Stats.gaussian(r, batch * d), v = Stats.gaussian(r, batch * cells * d), go = Stats.gaussian(r, batch * d);
        String what = op + " B=" + batch + " L=" + cells + " seed " + seed + ": ";
        StackedAttentionCpu cpu = new StackedAttentionCpu(op);
        StackedAttentionReference.Result fRef = StackedAttentionReference.forward(op, u, v, batch, cells);
        StackedAttentionReference.Grads gRef = StackedAttentionReference.backward(op, u, v, go, batch, cells);
        Conditioning cond = StackedAttentionTolerance.conditioning(Precision.FP32, op, u, v, go, batch, cells, fRef, gRef, seed);
        StackedAttention.Result got = cpu.forwardWithAttention(u, v, batch, cells);
        double e = Stats.relativeL2(got.out(), fRef.out());
        below(e, cond.bound(0, TOL, e), what, "forward");
        e = Stats.relativeL2(got.attention(), fRef.attention());
        below(e, cond.bound(1, TOL, e), what, "attention");
        assertArrayEquals(got.out(), cpu.forward(u, v, batch, cells), what + "forward and forwardWithAttention differ");
        List<float[]> g = cpu.backward(u, v, go, batch, cells).tensors();
        List<double[]> ref = gRef.tensors();
        List<String> names = op.gradientNames();
        assertEquals(names.size(), g.size(), what);
        for (int t = 0; t < g.size(); t++) {
            String name = names.get(t).replaceAll("\\[\\d+\\]", "[l]");
            if (isZero(ref.get(t))) {
                assertArrayEquals(new float[g.get(t).length], g.get(t), what + names.get(t) + " must be exact zeros");
            } else {
                e = Stats.relativeL2(g.get(t), ref.get(t));
                below(e, cond.bound(2 + t, TOL, e), what, name);
            }
        }
    }

    @Test void threadCountsAndRerunsGiveTheSameBits() {
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        for (Placement p : Placement.values()) {
            // B = 5 samples over the threads, image GEMM of 5·49 × 2·96 × 80 (Sgemm's tiles); B = 1.
            for (int batch : new int[] {5, 1}) {
                int cells = 49, d = 80;
                StackedAttention op = StackedAttention.random(d, 96, 2, p, r.nextLong());
                float[] u = Stats.gaussian(r, batch * d), v = Stats.gaussian(r, batch * cells * d), go = Stats.gaussian(r, batch * d);
                StackedAttentionCpu one = new StackedAttentionCpu(op, CpuRuntime.withThreads(1));
                StackedAttention.Result f = one.forwardWithAttention(u, v, batch, cells);
                List<float[]> g = one.backward(u, v, go, batch, cells).tensors();
                assertArrayEquals(f.out(), one.forward(u, v, batch, cells), "rerun, seed " + seed);
                assertTensorsEqual(g, one.backward(u, v, go, batch, cells).tensors(), "rerun " + p + ", seed " + seed);
                for (int t : new int[] {2, 3}) {
                    StackedAttentionCpu c = new StackedAttentionCpu(op, CpuRuntime.withThreads(t));
                    StackedAttention.Result ft = c.forwardWithAttention(u, v, batch, cells);
                    String what = t + " threads " + p + " B=" + batch + ", seed " + seed;
                    assertArrayEquals(f.out(), ft.out(), what);
                    assertArrayEquals(f.attention(), ft.attention(), what);
                    assertTensorsEqual(g, c.backward(u, v, go, batch, cells).tensors(), what);
                }
            }
        }
    }

    /** A training step keeps its forward's pass for its backward: {@link TrainingStepTest}'s contract, both placements. */
    @Test void trainingStepsKeepTheirForward() {
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        int batch = 3, cells = 9, d = 17;
        for (Placement p : Placement.values()) {
            StackedAttentionCpu c = new StackedAttentionCpu(StackedAttention.random(d, 12, 2, p, r.nextLong()));
            float[] u = Stats.gaussian(r, batch * d), v = Stats.gaussian(r, batch * cells * d);
            float[] go = Stats.gaussian(r, batch * d), go2 = Stats.gaussian(r, batch * d);
            TrainingStepTest.checkContract(new TrainingStepTest.Case<>("StackedAttentionCpu " + p + ", seed " + seed, () -> c.forward(u, v, batch, cells),
                    g -> c.backward(u, v, g, batch, cells), () -> c.trainingStep(u, v, batch, cells), StackedAttention.Gradients::tensors, go, go2));
        }
    }

    private static void assertTensorsEqual(List<float[]> a, List<float[]> b, String what) {
        assertEquals(a.size(), b.size());
        for (int i = 0; i < a.size(); i++) assertArrayEquals(a.get(i), b.get(i), what + ", tensor " + i);
    }

    @Test void intermediatesPastAJavaArrayAreNamedErrors() {
        // B·L·K·k passes 2^31 while the inputs (B·L·d, d = 1) are tiny: the image projections are checked by name first.
        StackedAttention op = StackedAttention.random(1, 4096, 8, Placement.PAPER, 5);
        int cells = 65537;
        float[] u = {1f}, v = new float[cells];
        java.util.Arrays.fill(v, 0.25f);
        StackedAttentionCpu cpu = new StackedAttentionCpu(op);
        for (Runnable call : new Runnable[] {() -> cpu.forward(u, v, 1, cells), () -> cpu.forwardWithAttention(u, v, 1, cells),
                () -> cpu.backward(u, v, new float[] {1f}, 1, cells)}) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, call::run);
            assertTrue(e.getMessage().startsWith("image projections: 65537 × 32768 floats pass"), e.getMessage());
        }
    }

    @Test void isTheFloat32Backend() {
        StackedAttention op = StackedAttention.random(3, 2, 1, Placement.PAPER, 1);
        assertEquals("cpu-fp32", new StackedAttentionCpu(op).backend());
        assertEquals(CpuRuntime.withThreads(2), new StackedAttentionCpu(op, CpuRuntime.withThreads(2)).runtime());
    }

    private static boolean isZero(double[] a) {
        for (double x : a) if (x != 0) return false;
        return true;
    }

    private static void below(double e, double tol, String what, String tensor) {
        WORST.merge(tensor, e, Math::max);
        assertTrue(e <= tol, what + tensor + ": relative L2 " + e + " > " + tol);
    }
}
