package io.bifuse.cpu;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.bifuse.BanAttention;
import io.bifuse.ObjectMask;
import io.bifuse.reference.BanAttentionReference;
import io.bifuse.testing.Stats;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * The float32 {@link BanAttentionCpu} against the float64 reference on fresh random inputs, its
 * determinism (reruns, thread counts) and its size errors.
 *
 * <p>Tolerance 1e-5 relative L2 on the maps, the finite logits and every gradient (the bound): each
 * logit is one float32 GEMM sum of K products (relative error about sqrt(K)·2⁻²⁴ ≈ 4e-6 at K = 3840 in the
 * worst case, far less on average over a map), the softmax and its Jacobian add a few roundings with their
 * sums in double, and the gradients are GEMM sums over G·M or N_b terms. No gradient of this op cancels
 * (the bias gradient, zero in exact arithmetic, is exact zeros on both sides: relativeL2 is then the
 * absolute norm, 0), so no conditioning baseline is needed.
 */
class BanAttentionCpuTest {
    static final double TOL = 1e-5;

    @ParameterizedTest(name = "B={0} N={1} M={2} K={3} G={4} mask={5}")
    @CsvSource({"1,1,1,1,1,none", "1,7,14,64,8,counts", "3,5,3,33,3,holes", "2,17,5,129,2,zeroRows", "5,4,2,6,32,holes",
        "4,9,14,70,8,counts", "2,100,14,3840,8,counts"})
    void matchesTheFloat64Reference(int batch, int objects, int tokens, int width, int glimpses, String maskKind) {
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        BanAttention op = BanAttention.random(glimpses, width, r.nextLong());
        float[] xp = Stats.gaussian(r, batch * objects * width), yp = Stats.gaussian(r, batch * tokens * width);
        ObjectMask mask = mask(maskKind, r, xp, batch, objects, width);
        float[] ga = Stats.gaussian(r, batch * glimpses * objects * tokens);
        BanAttentionCpu cpu = new BanAttentionCpu(op);
        BanAttention.Result got = cpu.forward(xp, yp, mask, batch, objects, tokens);
        BanAttentionReference.Result ref = BanAttentionReference.forward(op, xp, yp, mask, batch, objects, tokens);
        String at = " (seed " + seed + ")";
        double ea = Stats.relativeL2(got.attention(), ref.attention()), el = logitsError(got.logits(), ref.logits());
        assertTrue(ea <= TOL, "attention: relative L2 " + ea + at);
        assertTrue(el <= TOL, "logits: relative L2 " + el + at);
        List<float[]> g = cpu.backward(xp, yp, mask, ga, batch, objects, tokens).tensors();
        List<double[]> rg = BanAttentionReference.backward(op, xp, yp, mask, ga, batch, objects, tokens).tensors();
        StringBuilder seen = new StringBuilder("attention " + ea + ", logits " + el);
        for (int t = 0; t < g.size(); t++) seen.append(", ").append(op.gradientNames().get(t)).append(' ').append(Stats.relativeL2(g.get(t), rg.get(t)));
        System.out.println("BanAttentionCpu B=" + batch + " N=" + objects + " M=" + tokens + " K=" + width + " G=" + glimpses + ": " + seen);
        Stats.assertEachBelow(op.gradientNames(), g, rg, TOL);
        if (op.logits().hasBias()) assertArrayEquals(new float[glimpses], g.get(3), "the bias gradient is exact zeros" + at);
        if (mask != null) {
            float[] dxp = g.get(0);
            for (int b = 0; b < batch; b++) {
                for (int i = 0; i < objects; i++) {
                    if (mask.isReal(b, i)) continue;
                    for (int k = 0; k < width; k++) assertEquals(0f, dxp[(b * objects + i) * width + k], "padded dxp row" + at);
                }
            }
        }
    }

    /** Same results on a second call (the scratch then holds the first call's and another size's values) and from a fresh backend. */
    @Test void rerunsAreBitwiseIdentical() {
        SplittableRandom r = new SplittableRandom(Stats.freshSeed());
        int b = 5, n = 11, m = 6, k = 40, g = 4;
        BanAttention op = BanAttention.random(g, k, r.nextLong());
        float[] xp = Stats.gaussian(r, b * n * k), yp = Stats.gaussian(r, b * m * k), ga = Stats.gaussian(r, b * g * n * m);
        ObjectMask mask = mask("holes", r, xp, b, n, k);
        BanAttentionCpu cpu = new BanAttentionCpu(op);
        BanAttention.Result f1 = cpu.forward(xp, yp, mask, b, n, m);
        List<float[]> g1 = cpu.backward(xp, yp, mask, ga, b, n, m).tensors();
        cpu.forward(Stats.gaussian(r, 2 * 13 * k), Stats.gaussian(r, 2 * 3 * k), null, 2, 13, 3); // dirties the scratch
        cpu.backward(Stats.gaussian(r, 2 * 13 * k), Stats.gaussian(r, 2 * 3 * k), null, Stats.gaussian(r, 2 * g * 13 * 3), 2, 13, 3);
        for (BanAttentionCpu c : new BanAttentionCpu[] {cpu, new BanAttentionCpu(op)}) {
            BanAttention.Result f2 = c.forward(xp, yp, mask, b, n, m);
            assertArrayEquals(f1.attention(), f2.attention());
            assertArrayEquals(f1.logits(), f2.logits());
            assertTensorsEqual(g1, c.backward(xp, yp, mask, ga, b, n, m).tensors());
        }
    }

    /** 1, 2 and 3 threads give bitwise the same maps, logits and gradients (work is cut by shape only). */
    @ParameterizedTest(name = "B={0} N={1}")
    @CsvSource({"7,13", "1,100", "70,5"})
    void threadCountsAgreeBitwise(int b, int n) {
        SplittableRandom r = new SplittableRandom(Stats.freshSeed());
        int m = 14, k = b == 1 ? 384 : 48, g = 8;
        BanAttention op = BanAttention.random(g, k, r.nextLong());
        float[] xp = Stats.gaussian(r, b * n * k), yp = Stats.gaussian(r, b * m * k), ga = Stats.gaussian(r, b * g * n * m);
        ObjectMask mask = mask("holes", r, xp, b, n, k);
        BanAttentionCpu one = new BanAttentionCpu(op, CpuRuntime.withThreads(1));
        BanAttention.Result f1 = one.forward(xp, yp, mask, b, n, m);
        List<float[]> g1 = one.backward(xp, yp, mask, ga, b, n, m).tensors();
        for (int threads : new int[] {2, 3}) {
            BanAttentionCpu c = new BanAttentionCpu(op, CpuRuntime.withThreads(threads));
            BanAttention.Result f = c.forward(xp, yp, mask, b, n, m);
            assertArrayEquals(f1.attention(), f.attention(), threads + " threads");
            assertArrayEquals(f1.logits(), f.logits(), threads + " threads");
            assertTensorsEqual(g1, c.backward(xp, yp, mask, ga, b, n, m).tensors());
        }
    }

    /**
     * Every batch-dependent array of this backend is one the descriptor bounds (maps, dxp, dyp; the
     * logits' weight gradient is summed in at most {@link BanKernels#MAX_CHUNKS} partials), so a batch too
     * large fails by the descriptor's named size check, before anything is read or allocated: never a
     * NegativeArraySizeException or an index error from a worker.
     */
    @Test void aBatchTooLargeIsANamedError() {
        BanAttention op = BanAttention.random(8, 64, 3);
        BanAttentionCpu cpu = new BanAttentionCpu(op);
        float[] tiny = new float[4];
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> cpu.forward(tiny, tiny, null, 1 << 16, 1 << 10, 14));
        assertTrue(e.getMessage().startsWith("objects: expected batch·objects·K <= 2147483647"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> cpu.backward(tiny, tiny, null, tiny, 1 << 14, 1 << 8, 1 << 8));
        assertTrue(e.getMessage().startsWith("batch, objects, tokens: expected batch·G·objects·tokens <= 2147483647"), e.getMessage());
        // within every bound, the per-call state still is sized by shape alone
        assertEquals(64, BanKernels.chunks(1 << 20));
    }

    @Test void namesItselfCpuFp32() {
        BanAttentionCpu cpu = new BanAttentionCpu(BanAttention.random(2, 5, 1), CpuRuntime.withThreads(2));
        assertEquals("cpu-fp32", cpu.backend());
        assertEquals(2, cpu.runtime().threads());
        assertNotNull(new BanAttentionCpu(BanAttention.random(2, 5, 1)).runtime());
        assertThrows(IllegalArgumentException.class, () -> new BanAttentionCpu(null));
        assertThrows(IllegalArgumentException.class, () -> new BanAttentionCpu(BanAttention.random(2, 5, 1), null));
    }

    static void assertTensorsEqual(List<float[]> want, List<float[]> got) {
        assertEquals(want.size(), got.size());
        for (int t = 0; t < want.size(); t++) assertArrayEquals(want.get(t), got.get(t), "tensor " + t);
    }

    /**
     * none; counts (sample 0 empty, sample 1 one object); holes (real objects anywhere, so a sample's real
     * rows form several runs; sample 0 empty when B > 2); zeroRows (ban-vqa's rule on zeroed rows).
     */
    static ObjectMask mask(String kind, SplittableRandom r, float[] xp, int batch, int objects, int width) {
        return switch (kind) {
            case "none" -> null;
            case "counts" -> {
                int[] c = new int[batch];
                for (int b = 0; b < batch; b++) c[b] = batch > 2 && b == 0 ? 0 : batch > 2 && b == 1 ? 1 : 1 + r.nextInt(objects);
                yield ObjectMask.counts(c, objects);
            }
            case "holes" -> {
                boolean[] real = new boolean[batch * objects];
                for (int i = 0; i < real.length; i++) real[i] = !(batch > 2 && i < objects) && r.nextInt(3) != 0;
                if (batch <= 2) real[0] = true;
                yield ObjectMask.of(real, batch, objects);
            }
            case "zeroRows" -> {
                for (int row = 0; row < batch * objects; row++) if (row % objects != 0 && r.nextInt(3) == 0) Arrays.fill(xp, row * width, (row + 1) * width, 0f);
                yield ObjectMask.zeroRows(xp, batch, objects, width);
            }
            default -> throw new IllegalArgumentException(kind);
        };
    }

    /** Relative L2 over the finite reference logits; +inf when the {@code −inf} positions differ. */
    static double logitsError(float[] got, double[] ref) {
        double num = 0, den = 0;
        for (int i = 0; i < ref.length; i++) {
            boolean padded = ref[i] == Double.NEGATIVE_INFINITY;
            if (padded != (got[i] == Float.NEGATIVE_INFINITY)) return Double.POSITIVE_INFINITY;
            if (padded) continue;
            num += (got[i] - ref[i]) * (got[i] - ref[i]);
            den += ref[i] * ref[i];
        }
        return den == 0 ? Math.sqrt(num) : Math.sqrt(num / den);
    }
}
