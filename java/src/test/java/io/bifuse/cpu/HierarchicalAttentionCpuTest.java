package io.bifuse.cpu;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.bifuse.HierarchicalAttention;
import io.bifuse.Precision;
import io.bifuse.reference.HierarchicalAttentionReference;
import io.bifuse.testing.Conditioning;
import io.bifuse.testing.HierarchicalAttentionTolerance;
import io.bifuse.testing.Stats;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.ConcurrentSkipListMap;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The float32 CPU backend against the float64 reference on fresh random inputs (the seed is in every
 * message): one, two and three levels, empty groups, groups of one item, uneven groups, odd widths and
 * HAN's spec widths (d = 512, k = 256, 20 sentences of ~15 words per document) at B = 3 documents.
 *
 * <p>Tolerances, relative L2: 1e-5 for the output, the attention weights and every gradient (float32
 * GEMMs over d <= 512 terms and sums over a level's items, ~1e-7; a wiring mistake is O(1)). The logits
 * bias gradient is exact zeros on both sides. Where d or k < 8 the rule of check and
 * HierarchicalAttentionCudaTest ({@link HierarchicalAttentionTolerance}) applies to the gradients: a group of
 * one or two items makes a projection bias's gradient a sum that cancels by ~10³ (the softmax Jacobian
 * sums to zero within each group), and float32 leaves ~6e-8 of its terms, so the bound there is 1e-4,
 * and where a tensor still exceeds it, {@link Conditioning}'s max(bound, 2·base) of the reference's own
 * sensitivity to float32-sized perturbations of every operand.
 */
class HierarchicalAttentionCpuTest {
    static final double TOL = 1e-5, SMALL_WIDTH_TOL = 1e-4;
    private static final Map<String, Double> WORST = new ConcurrentSkipListMap<>();

    @AfterAll static void printWorst() { System.out.println("HierarchicalAttentionCpuTest worst relative L2: " + WORST); }

    /** {d, k, offsets per level}. */
    static List<Object[]> cases() {
        return List.of(new Object[] {1, 1, new int[][] {{0, 1}}}, new Object[] {4, 5, new int[][] {{0, 3, 3, 7}}},
                new Object[] {6, 3, new int[][] {{0, 2, 2, 9, 10}, {0, 3, 4}}},
                new Object[] {5, 7, new int[][] {{0, 4, 6, 6, 12, 13, 20}, {0, 2, 2, 6}, {0, 3}}},
                new Object[] {24, 12, new int[][] {{0, 49, 50, 80}, {0, 3}}},
                new Object[] {37, 29, documents(1, 7, 11)}, // one document
                new Object[] {101, 67, documents(4, 9, 6)},
                new Object[] {512, 256, documents(3, 20, 15)}); // the spec's widths and layout, B = 3
    }

    /** B documents of S sentences, sentence j of W − 1 + (j mod 3) words (check's layout). */
    static int[][] documents(int batch, int sentences, int words) {
        int g = batch * sentences;
        int[] w = new int[g + 1], s = new int[batch + 1];
        for (int j = 0; j < g; j++) w[j + 1] = w[j] + words - 1 + j % 3;
        for (int b = 0; b < batch; b++) s[b + 1] = s[b] + sentences;
        return new int[][] {w, s};
    }

    @ParameterizedTest(name = "d={0} k={1}") @MethodSource("cases")
    void matchesReference(int d, int k, int[][] offsets) {
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        HierarchicalAttention op = HierarchicalAttention.random(d, k, offsets.length, r.nextLong());
        int items = HierarchicalAttentionTolerance.items(offsets), out = offsets[offsets.length - 1].length - 1;
        float[] x = Stats.gaussian(r, items * d), go = Stats.gaussian(r, out * d);
        String what = "d=" + d + " k=" + k + " seed " + seed + ": ";
        HierarchicalAttentionCpu cpu = new HierarchicalAttentionCpu(op);
        HierarchicalAttentionReference.Result ref = HierarchicalAttentionReference.forward(op, x, items, offsets);
        HierarchicalAttention.Result got = cpu.forwardWithAttention(x, items, offsets);
        below(Stats.relativeL2(got.out(), ref.out()), TOL, what, "forward");
        assertEquals(offsets.length, got.attention().size());
        for (int l = 0; l < offsets.length; l++) below(Stats.relativeL2(got.attention().get(l), ref.attention().get(l)), TOL, what, "attention " + l);
        assertArrayEquals(got.out(), cpu.forward(x, items, offsets), what + "forward and forwardWithAttention differ");

        HierarchicalAttentionReference.Grads grads = HierarchicalAttentionReference.backward(op, x, go, items, offsets);
        List<double[]> gRef = grads.tensors();
        List<float[]> gGot = cpu.backward(x, go, items, offsets).tensors();
        List<String> names = op.gradientNames();
        assertEquals(names.size(), gGot.size());
        double tol = Math.min(d, k) < 8 ? SMALL_WIDTH_TOL : TOL;
        Conditioning cond = HierarchicalAttentionTolerance.conditioning(Precision.FP32, op, x, go, offsets, ref, grads, seed);
        for (int t = 0; t < gGot.size(); t++) {
            double e = Stats.relativeL2(gGot.get(t), gRef.get(t));
            below(e, Math.min(d, k) < 8 ? cond.bound(2 + t, tol, e) : tol, what, names.get(t).replaceAll("\\[\\d+\\]", "[l]"));
        }
    }

    @Test void threadCountsAndRerunsGiveTheSameBits() {
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        // Many small groups (several ranges per level), an empty one, and a level-0 GEMM big enough for Sgemm's tiles.
        int[][] off = documents(9, 13, 7);
        off[0][5] = off[0][4];
        HierarchicalAttention op = HierarchicalAttention.random(96, 80, 2, r.nextLong());
        int items = HierarchicalAttentionTolerance.items(off);
        float[] x = Stats.gaussian(r, items * 96), go = Stats.gaussian(r, 9 * 96);
        HierarchicalAttentionCpu one = new HierarchicalAttentionCpu(op, CpuRuntime.withThreads(1));
        HierarchicalAttention.Result f = one.forwardWithAttention(x, items, off);
        List<float[]> g = one.backward(x, go, items, off).tensors();
        assertArrayEquals(f.out(), one.forward(x, items, off), "rerun, seed " + seed);
        assertTensorsEqual(g, one.backward(x, go, items, off).tensors(), "rerun, seed " + seed);
        for (int t : new int[] {2, 3}) {
            HierarchicalAttentionCpu c = new HierarchicalAttentionCpu(op, CpuRuntime.withThreads(t));
            HierarchicalAttention.Result ft = c.forwardWithAttention(x, items, off);
            assertArrayEquals(f.out(), ft.out(), t + " threads, seed " + seed);
            for (int l = 0; l < 2; l++) assertArrayEquals(f.attention().get(l), ft.attention().get(l), t + " threads, attention " + l);
            assertTensorsEqual(g, c.backward(x, go, items, off).tensors(), t + " threads, seed " + seed);
        }
    }

    private static void assertTensorsEqual(List<float[]> a, List<float[]> b, String what) {
        assertEquals(a.size(), b.size());
        for (int i = 0; i < a.size(); i++) assertArrayEquals(a.get(i), b.get(i), what + ", tensor " + i);
    }

    @Test void intermediatesPastAJavaArrayAreNamedErrors() {
        // N·k passes 2^31 with tiny inputs (d = 1): the projections are checked by name before any allocation.
        HierarchicalAttention wide = HierarchicalAttention.random(1, 65536, 1, 3);
        int n = 40000;
        float[] x = new float[n];
        java.util.Arrays.fill(x, 0.5f);
        int[][] one = {{0, n}};
        HierarchicalAttentionCpu cpu = new HierarchicalAttentionCpu(wide);
        for (Runnable call : new Runnable[] {() -> cpu.forward(x, n, one), () -> cpu.forwardWithAttention(x, n, one),
                () -> cpu.backward(x, new float[1], n, one)}) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, call::run);
            assertTrue(e.getMessage().startsWith("level 0 projections: 40000 × 65536 floats pass"), e.getMessage());
        }
        // G·d passes 2^31 with one item and 2^20 + 1 (mostly empty) groups: the pooled vectors, checked likewise.
        HierarchicalAttention deep = HierarchicalAttention.random(2048, 3, 1, 4);
        int[] groups = new int[(1 << 20) + 2];
        java.util.Arrays.fill(groups, 1, groups.length, 1);
        float[] one2048 = new float[2048];
        java.util.Arrays.fill(one2048, 1f);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> new HierarchicalAttentionCpu(deep).forward(one2048, 1, new int[][] {groups}));
        assertTrue(e.getMessage().startsWith("level 0 pooled vectors: 1048577 × 2048 floats pass"), e.getMessage());
    }

    @Test void isTheFloat32Backend() {
        HierarchicalAttention op = HierarchicalAttention.random(3, 2, 1, 1);
        assertEquals("cpu-fp32", new HierarchicalAttentionCpu(op).backend());
        assertEquals(CpuRuntime.withThreads(3), new HierarchicalAttentionCpu(op, CpuRuntime.withThreads(3)).runtime());
    }

    private static void below(double e, double tol, String what, String tensor) {
        WORST.merge(tensor, e, Math::max);
        assertTrue(e <= tol, what + tensor + ": relative L2 " + e + " > " + tol);
    }
}
