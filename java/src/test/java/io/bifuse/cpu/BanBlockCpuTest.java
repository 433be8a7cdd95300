package io.bifuse.cpu;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.bifuse.BanBlock;
import io.bifuse.ObjectMask;
import io.bifuse.Precision;
import io.bifuse.reference.BanBlockReference;
import io.bifuse.testing.Conditioning;
import io.bifuse.testing.Stats;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * The float32 {@link BanBlockCpu} against the float64 reference on fresh random inputs, its determinism
 * (reruns, thread counts), padded objects and its size errors.
 *
 * <p>Tolerances. Forward (output and maps): 1e-5 relative L2, the bound: every value is a chain of
 * float32 GEMM sums (at most max(Dx, K, K') products, relative error about sqrt(n)·2⁻²⁴ each, averaged over
 * the tensor). Gradients: 1e-5 per tensor, raised where a tensor exceeds it to {@link Conditioning}'s
 * {@code max(1e-5, 2·base)} ({@code base}: the float64 reference's own change when x, y, gradOut and every
 * parameter move by {@code 1 ± 2⁻²⁴·sqrt(n)}, n the longest sum, as check's FP32 rows do): the
 * weight-norm gains' gradients {@code dg = ⟨dW, V⟩/‖V‖} are sums that cancel by orders of magnitude (a
 * float32 {@code dW}'s rounding becomes 1e-6..1e-4 of dg), and a pre-activation within float32 error of 0
 * flips a ReLU. An indexing or wiring mistake (O(1)) or an unwritten element (NaN) stays above any such
 * bound. The logits bias gradient is exact zeros on both sides (relativeL2 is then the absolute norm, 0).
 */
class BanBlockCpuTest {
    static final double TOL = 1e-5;

    @ParameterizedTest(name = "B={0} N={1} M={2} Dx={3} Dy={4} K={5} K'={6} G={7} group={8} mask={9}")
    @CsvSource({"1,1,1,1,1,1,1,1,1,none", "3,5,4,6,5,6,5,2,1,counts", "2,7,3,5,4,9,6,3,3,holes", "4,10,14,12,10,15,10,8,1,zeroRows",
        "1,13,14,33,20,24,18,8,2,none", "5,6,2,17,9,7,12,2,4,holes", "2,36,14,256,160,480,160,8,1,counts"})
    void matchesTheFloat64Reference(int batch, int n, int m, int dx, int dy, int k, int kp, int gs, int group, String maskKind) {
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        BanBlock op = BanBlock.random(dx, dy, k, kp, gs, group, r.nextLong());
        float[] x = Stats.gaussian(r, batch * n * dx), y = Stats.gaussian(r, batch * m * dy), go = Stats.gaussian(r, batch * dy);
        ObjectMask mask = BanAttentionCpuTest.mask(maskKind, r, x, batch, n, dx);
        if (maskKind.equals("zeroRows")) mask = null; // the backends find the zero rows themselves
        BanBlockCpu cpu = new BanBlockCpu(op);
        String at = " (seed " + seed + ")";
        BanBlock.Result got = cpu.forwardWithAttention(x, y, mask, batch, n, m);
        BanBlockReference.Result ref = BanBlockReference.forward(op, x, y, mask, batch, n, m);
        double eo = Stats.relativeL2(got.out(), ref.out()), ea = Stats.relativeL2(got.attention(), ref.attention());
        assertTrue(eo <= TOL, "out: relative L2 " + eo + at);
        assertTrue(ea <= TOL, "attention: relative L2 " + ea + at);
        assertArrayEquals(got.out(), cpu.forward(x, y, mask, batch, n, m), "forward and forwardWithAttention agree" + at);

        List<float[]> g = cpu.backward(x, y, mask, go, batch, n, m).tensors();
        List<double[]> rg = BanBlockReference.backward(op, x, y, mask, go, batch, n, m).tensors();
        List<String> names = op.gradientNames();
        ObjectMask mm = mask != null ? mask : ObjectMask.zeroRows(x, batch, n, dx); // the perturbed reference takes the mask explicitly
        int longest = Math.max(Math.max(Math.max(dx, dy), Math.max(k, kp)), Math.max(n * m, batch * Math.max(n, m)));
        Conditioning cond = new Conditioning(Conditioning.step(Precision.FP32, longest), seed + 1,
                (rnd, step) -> BanBlockReference.perturbationBaseline(op, x, y, mm, go, batch, n, m, rg, step, 1, rnd.nextLong()));
        double worst = 0, worstRatio = 0;
        String worstName = "";
        for (int t = 0; t < g.size(); t++) {
            double e = Stats.relativeL2(g.get(t), rg.get(t)), bound = cond.bound(t, TOL, e);
            assertTrue(e <= bound, names.get(t) + ": relative L2 " + e + " above " + bound + " (" + cond.draws() + " conditioning draws)" + at);
            if (e / TOL > worstRatio) {
                worstRatio = e / TOL;
                worst = e;
                worstName = names.get(t);
            }
        }
        System.out.println("BanBlockCpu B=" + batch + " N=" + n + " M=" + m + " Dx=" + dx + " K=" + k + " K'=" + kp + " G=" + gs + ": out " + eo
                + ", attention " + ea + ", worst gradient " + worstName + " " + worst + " (" + cond.draws() + " conditioning draws), dx "
                + Stats.relativeL2(g.get(0), rg.get(0)) + ", dy " + Stats.relativeL2(g.get(1), rg.get(1)));
    }

    /** A padded object's row of x is never read (NaN there changes nothing), and its dx row is exactly zero. */
    @Test void paddedObjectsAreNeverRead() {
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        int b = 3, n = 7, m = 4, dx = 9, dy = 6;
        BanBlock op = BanBlock.random(dx, dy, 10, 8, 3, 2, r.nextLong());
        float[] x = Stats.gaussian(r, b * n * dx), y = Stats.gaussian(r, b * m * dy), go = Stats.gaussian(r, b * dy);
        ObjectMask mask = BanAttentionCpuTest.mask("holes", r, x, b, n, dx);
        for (int bb = 0; bb < b; bb++) {
            for (int i = 0; i < n; i++) if (!mask.isReal(bb, i)) Arrays.fill(x, (bb * n + i) * dx, (bb * n + i + 1) * dx, Float.NaN);
        }
        BanBlockCpu cpu = new BanBlockCpu(op);
        BanBlock.Result got = cpu.forwardWithAttention(x, y, mask, b, n, m);
        BanBlockReference.Result ref = BanBlockReference.forward(op, x, y, mask, b, n, m);
        assertTrue(Stats.relativeL2(got.out(), ref.out()) <= TOL, "seed " + seed);
        assertTrue(Stats.relativeL2(got.attention(), ref.attention()) <= TOL, "seed " + seed);
        // the empty sample 0 is the residual path alone: Σ_j (y_j + Σ_g q_g)
        BanBlock.Gradients gr = cpu.backward(x, y, mask, go, b, n, m);
        for (float[] t : gr.tensors()) for (float v : t) assertTrue(Float.isFinite(v), "seed " + seed);
        for (int bb = 0; bb < b; bb++) {
            for (int i = 0; i < n; i++) {
                if (mask.isReal(bb, i)) continue;
                for (int d = 0; d < dx; d++) assertEquals(0f, gr.dx()[(bb * n + i) * dx + d], "padded dx row, seed " + seed);
            }
        }
    }

    /** Same results on a second call (after another size dirtied the scratch) and from a fresh backend. */
    @Test void rerunsAreBitwiseIdentical() {
        SplittableRandom r = new SplittableRandom(Stats.freshSeed());
        int b = 4, n = 9, m = 5, dx = 20, dy = 12;
        BanBlock op = BanBlock.random(dx, dy, 18, 10, 3, 2, r.nextLong());
        float[] x = Stats.gaussian(r, b * n * dx), y = Stats.gaussian(r, b * m * dy), go = Stats.gaussian(r, b * dy);
        ObjectMask mask = BanAttentionCpuTest.mask("holes", r, x, b, n, dx);
        BanBlockCpu cpu = new BanBlockCpu(op);
        BanBlock.Result f1 = cpu.forwardWithAttention(x, y, mask, b, n, m);
        List<float[]> g1 = cpu.backward(x, y, mask, go, b, n, m).tensors();
        cpu.backward(Stats.gaussian(r, 6 * 4 * dx), Stats.gaussian(r, 6 * 7 * dy), null, Stats.gaussian(r, 6 * dy), 6, 4, 7);
        for (BanBlockCpu c : new BanBlockCpu[] {cpu, new BanBlockCpu(op)}) {
            BanBlock.Result f2 = c.forwardWithAttention(x, y, mask, b, n, m);
            assertArrayEquals(f1.out(), f2.out());
            assertArrayEquals(f1.attention(), f2.attention());
            BanAttentionCpuTest.assertTensorsEqual(g1, c.backward(x, y, mask, go, b, n, m).tensors());
        }
    }

    /**
     * A training step keeps its forward's state for its backward: {@link TrainingStepTest}'s contract
     * (bitwise the recomputing backward, two steps apart, refusals), with and without a mask.
     */
    @Test void trainingStepsKeepTheirForward() {
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        int b = 5, n = 8, m = 4, dx = 12, dy = 10;
        BanBlock op = BanBlock.random(dx, dy, 14, 8, 3, 2, r.nextLong());
        float[] x = Stats.gaussian(r, b * n * dx), y = Stats.gaussian(r, b * m * dy);
        float[] go = Stats.gaussian(r, b * dy), go2 = Stats.gaussian(r, b * dy);
        ObjectMask holes = BanAttentionCpuTest.mask("holes", r, x, b, n, dx);
        BanBlockCpu c = new BanBlockCpu(op);
        for (ObjectMask mask : java.util.Arrays.asList(holes, null)) {
            TrainingStepTest.checkContract(new TrainingStepTest.Case<>("BanBlockCpu mask " + (mask == null ? "null" : "holes") + ", seed " + seed,
                    () -> c.forward(x, y, mask, b, n, m), g -> c.backward(x, y, mask, g, b, n, m), () -> c.trainingStep(x, y, mask, b, n, m),
                    BanBlock.Gradients::tensors, go, go2));
        }
    }

    /** 1, 2 and 3 threads give bitwise the same output, maps and gradients (B = 1: the batch-wide GEMMs are cut into tiles). */
    @ParameterizedTest(name = "B={0} N={1} Dx={2} K={3}")
    @CsvSource({"7,13,64,96", "1,100,256,384", "70,3,16,24"})
    void threadCountsAgreeBitwise(int b, int n, int dx, int k) {
        SplittableRandom r = new SplittableRandom(Stats.freshSeed());
        int m = 14, dy = dx / 2, kp = k / 2, gs = 2;
        BanBlock op = BanBlock.random(dx, dy, k, kp, gs, 2, r.nextLong());
        float[] x = Stats.gaussian(r, b * n * dx), y = Stats.gaussian(r, b * m * dy), go = Stats.gaussian(r, b * dy);
        ObjectMask mask = BanAttentionCpuTest.mask("holes", r, x, b, n, dx);
        BanBlockCpu one = new BanBlockCpu(op, CpuRuntime.withThreads(1));
        BanBlock.Result f1 = one.forwardWithAttention(x, y, mask, b, n, m);
        List<float[]> g1 = one.backward(x, y, mask, go, b, n, m).tensors();
        for (int threads : new int[] {2, 3}) {
            BanBlockCpu c = new BanBlockCpu(op, CpuRuntime.withThreads(threads));
            BanBlock.Result f = c.forwardWithAttention(x, y, mask, b, n, m);
            assertArrayEquals(f1.out(), f.out(), threads + " threads");
            assertArrayEquals(f1.attention(), f.attention(), threads + " threads");
            BanAttentionCpuTest.assertTensorsEqual(g1, c.backward(x, y, mask, go, b, n, m).tensors());
        }
    }

    /**
     * The glimpse projections ({@code real objects × K'}) are an intermediate the descriptor does not bound
     * (it checks B·N·max(Dx, K)): with K' = 65536 and 65536 real objects they pass 2^31, and the call fails
     * naming them before anything is allocated.
     */
    @Test void aBatchTooLargeIsANamedError() {
        BanBlock op = BanBlock.random(1, 1, 1, 1 << 16, 1, 1, 5);
        int b = 1 << 12, n = 1 << 4, m = 1;
        float[] x = Stats.gaussian(new SplittableRandom(1), b * n), y = new float[b * m], go = new float[b];
        BanBlockCpu cpu = new BanBlockCpu(op);
        for (org.junit.jupiter.api.function.Executable call : List.<org.junit.jupiter.api.function.Executable>of(
                () -> cpu.forward(x, y, null, b, n, m), () -> cpu.backward(x, y, ObjectMask.all(b, n), go, b, n, m))) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, call);
            assertTrue(e.getMessage().startsWith("glimpse object projections (real objects × K'): 65536 × 65536 floats pass"), e.getMessage());
        }
        // and the descriptor's own bound, through this backend
        float[] tiny = new float[4];
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> cpu.forward(tiny, tiny, null, 1 << 16, 1 << 16, 1));
        assertTrue(e.getMessage().startsWith("batch, objects, tokens: expected every tensor"), e.getMessage());
    }

    @Test void namesItselfCpuFp32() {
        BanBlock op = BanBlock.random(3, 2, 4, 2, 1, 1, 1);
        BanBlockCpu cpu = new BanBlockCpu(op, CpuRuntime.withThreads(2));
        assertEquals("cpu-fp32", cpu.backend());
        assertEquals(2, cpu.runtime().threads());
        assertEquals("cpu-fp32", new BanBlockCpu(op).backend());
        assertThrows(IllegalArgumentException.class, () -> new BanBlockCpu(null));
    }
}
