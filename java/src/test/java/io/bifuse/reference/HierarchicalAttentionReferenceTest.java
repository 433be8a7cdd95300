package io.bifuse.reference;

import static io.bifuse.reference.Vectors.*;
import static org.junit.jupiter.api.Assertions.*;

import io.bifuse.HierarchicalAttention;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/** The oracle itself: a hand-computed case, empty groups and groups of one, and finite differences of every tensor. */
class HierarchicalAttentionReferenceTest {

    @Test void handComputedTwoLevelCase() {
        // d = k = 1, every weight 1, every bias 0: u = tanh(x), a = u. Level 0: items {0, 1, 2} in groups
        // {0, 1}, {} and {2}: s0 = e^t/(1 + e^t) with t = tanh 1, s1 = 0 (empty), s2 = 2 (a group of one).
        // Level 1: one group of {s0, 0, 2}, logits tanh of each.
        HierarchicalAttention op = HierarchicalAttention.of(new HierarchicalAttention.Weights(List.of(ones(), ones())));
        int[][] off = {{0, 2, 2, 3}, {0, 3}};
        double t = Math.tanh(1), s0 = Math.exp(t) / (1 + Math.exp(t));
        double e0 = Math.exp(Math.tanh(s0)), e1 = 1, e2 = Math.exp(Math.tanh(2)), z = e0 + e1 + e2;
        HierarchicalAttentionReference.Result r = HierarchicalAttentionReference.forward(op, new float[] {0, 1, 2}, 3, off);
        assertArrayEquals(new double[] {(e0 * s0 + e2 * 2) / z}, r.out(), 1e-15);
        assertArrayEquals(new double[] {1 - s0, s0, 1}, r.attention().get(0), 1e-15);
        assertArrayEquals(new double[] {e0 / z, e1 / z, e2 / z}, r.attention().get(1), 1e-15);
    }

    @Test void anEmptyGroupPoolsToZeroAndPassesNoGradient() {
        SplittableRandom r = new SplittableRandom(11);
        int d = 4;
        HierarchicalAttentionReference.Params p = gaussianParams(r, d, new int[] {3}, true);
        int[][] off = {{0, 2, 2, 5, 5}};
        double[] x = gaussian(r, 5 * d), go = gaussian(r, 4 * d);
        HierarchicalAttentionReference.Result res = HierarchicalAttentionReference.forward(p, x, off);
        for (int g : new int[] {1, 3}) {
            for (int j = 0; j < d; j++) assertEquals(0.0, res.out()[g * d + j], 0.0, "group " + g + " is empty");
        }
        for (double v : res.out()) assertFalse(Double.isNaN(v));
        // the empty groups' output gradient reaches nothing: zeroing it changes no gradient
        double[] cut = go.clone();
        for (int g : new int[] {1, 3}) java.util.Arrays.fill(cut, g * d, (g + 1) * d, 0);
        List<double[]> a = HierarchicalAttentionReference.backward(p, x, go, off).tensors(), b = HierarchicalAttentionReference.backward(p, x, cut, off).tensors();
        for (int i = 0; i < a.size(); i++) assertArrayEquals(b.get(i), a.get(i), 0.0, "tensor " + i);
    }

    @Test void groupsOfOneGetAllAttentionAndNoParameterGradient() {
        // Every group a single item: α = 1 whatever the logits, the output is the input, no parameter matters.
        SplittableRandom r = new SplittableRandom(13);
        HierarchicalAttentionReference.Params p = gaussianParams(r, 3, new int[] {4, 2}, true);
        double[] x = gaussian(r, 4 * 3), go = gaussian(r, 4 * 3);
        int[][] off = {{0, 1, 2, 3, 4}, {0, 1, 2, 3, 4}};
        HierarchicalAttentionReference.Result res = HierarchicalAttentionReference.forward(p, x, off);
        assertArrayEquals(x, res.out(), 0.0);
        for (double[] a : res.attention()) assertArrayEquals(new double[] {1, 1, 1, 1}, a, 0.0);
        HierarchicalAttentionReference.Grads g = HierarchicalAttentionReference.backward(p, x, go, off);
        assertArrayEquals(go, g.dx(), 0.0);
        for (double[] t : g.parameters()) assertArrayEquals(new double[t.length], t, 0.0);
    }

    @Test void zeroContextVectorsAverageEveryGroup() {
        // c = 0: every logit is b_c, the attention uniform over each group: level by level means of means.
        SplittableRandom r = new SplittableRandom(17);
        int d = 2;
        HierarchicalAttentionReference.Params p = gaussianParams(r, d, new int[] {3, 3}, true);
        for (HierarchicalAttentionReference.LevelParams lp : p.levels()) java.util.Arrays.fill(lp.logits().weight(), 0);
        double[] x = gaussian(r, 5 * d);
        int[][] off = {{0, 3, 5}, {0, 2}};
        double[] out = HierarchicalAttentionReference.forward(p, x, off).out();
        for (int j = 0; j < d; j++) {
            double m0 = (x[j] + x[d + j] + x[2 * d + j]) / 3, m1 = (x[3 * d + j] + x[4 * d + j]) / 2;
            assertEquals((m0 + m1) / 2, out[j], 1e-15);
        }
    }

    @Test void theLogitsBiasGradientIsAnExactZero() {
        SplittableRandom r = new SplittableRandom(19);
        HierarchicalAttentionReference.Params p = gaussianParams(r, 3, new int[] {4, 5}, true);
        double[] x = gaussian(r, 7 * 3), go = gaussian(r, 3);
        List<double[]> par = HierarchicalAttentionReference.backward(p, x, go, new int[][] {{0, 4, 7}, {0, 2}}).parameters();
        for (int l = 0; l < 2; l++) {
            assertArrayEquals(new double[1], par.get(4 * l + 3), 0.0, "levels[" + l + "].logits.bias");
            assertTrue(norm(par.get(4 * l + 2)) > 1e-4, "levels[" + l + "].logits.weight is not zero");
        }
    }

    /** {d, widths per level, offsets per level, biases}: one level, three levels, empty groups, groups of one, long groups. */
    static List<Object[]> finiteDifferenceCases() {
        return List.of(
                new Object[] {3, new int[] {4}, new int[][] {{0, 3, 5}}, true},
                new Object[] {4, new int[] {3}, new int[][] {{0, 0, 2, 2, 6}}, false},
                new Object[] {3, new int[] {5, 2}, new int[][] {{0, 2, 3, 3, 7}, {0, 1, 4}}, true},
                new Object[] {2, new int[] {3, 4, 2}, new int[][] {{0, 3, 4, 6, 9, 9, 12}, {0, 2, 3, 6}, {0, 3}}, true},
                new Object[] {5, new int[] {2, 3, 4}, new int[][] {{0, 1, 2, 3}, {0, 3}, {0, 1}}, false},
                new Object[] {3, new int[] {4, 3}, new int[][] {{0, 11}, {0, 1}}, true});
    }

    @ParameterizedTest @MethodSource("finiteDifferenceCases")
    void gradientsOfEveryTensorMatchFiniteDifferences(int d, int[] widths, int[][] offsets, boolean bias) {
        SplittableRandom r = new SplittableRandom(31L * d + widths.length + offsets[0].length);
        HierarchicalAttentionReference.Params p = gaussianParams(r, d, widths, bias);
        int items = offsets[0][offsets[0].length - 1], groups = offsets[widths.length - 1].length - 1;
        double[] x = gaussian(r, items * d), go = gaussian(r, groups * d);
        List<double[]> wrt = new ArrayList<>(List.of(x));
        wrt.addAll(p.tensors());
        assertMatchesFiniteDifferences("levels " + widths.length, wrt, HierarchicalAttentionReference.backward(p, x, go, offsets).tensors(),
                () -> dot(go, HierarchicalAttentionReference.forward(p, x, offsets).out()));
    }

    /** Level ℓ with attention width {@code widths[ℓ]}; the logits layers always with a bias (its gradient is the exact zero checked). */
    static HierarchicalAttentionReference.Params gaussianParams(SplittableRandom r, int d, int[] widths, boolean bias) {
        List<HierarchicalAttentionReference.LevelParams> l = new ArrayList<>();
        for (int k : widths) {
            MlbAttentionReference.Layer c = MlbAttentionReferenceTest.layer(r, 1, k, true);
            for (int j = 0; j < k; j++) c.weight()[j] *= 2; // logits of O(1): the softmax far from uniform
            l.add(new HierarchicalAttentionReference.LevelParams(MlbAttentionReferenceTest.layer(r, k, d, bias), c));
        }
        return new HierarchicalAttentionReference.Params(l);
    }

    private static HierarchicalAttention.Level ones() {
        return new HierarchicalAttention.Level(MlbAttentionReferenceTest.one(), MlbAttentionReferenceTest.one());
    }
}
