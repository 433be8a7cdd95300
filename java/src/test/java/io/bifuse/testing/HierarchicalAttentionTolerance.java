package io.bifuse.testing;

import io.bifuse.HierarchicalAttention;
import io.bifuse.Precision;
import io.bifuse.reference.HierarchicalAttentionReference;
import java.util.ArrayList;
import java.util.List;

/**
 * The {@link Conditioning} of a {@link HierarchicalAttention} case, shared by {@code HierarchicalAttentionCudaTest}
 * and {@code check}: tensors are the output, the attention weights of every level concatenated, then the gradients
 * in the order of {@link HierarchicalAttention#gradientNames()}; the longest sum is over d, or the N_0 rows of level
 * 0's weight gradient. It is needed in FP32 too: a projection bias's gradient sums a group's few rows and cancels
 * (the softmax Jacobian sums to zero within each group), so at the smallest groups a correct float32 result is
 * off by more than 1e-5 (seen in check at B = 2, W = 2, d = 6: 4.7e-5).
 */
public final class HierarchicalAttentionTolerance {
    private HierarchicalAttentionTolerance() {}

    public static Conditioning conditioning(Precision p, HierarchicalAttention op, float[] x, float[] go, int[][] off, HierarchicalAttentionReference.Result fRef,
                                            HierarchicalAttentionReference.Grads gRef, long seed) {
        List<double[]> ref = new ArrayList<>(List.of(fRef.out(), concat(fRef.attention())));
        ref.addAll(gRef.tensors());
        int longest = Math.max(op.dim(), items(off));
        return new Conditioning(Conditioning.step(p, longest), seed, (r, e) -> {
            List<HierarchicalAttention.Level> ls = new ArrayList<>();
            for (HierarchicalAttention.Level lv : op.weights().levels()) {
                ls.add(new HierarchicalAttention.Level(Conditioning.perturb(lv.projection(), e, r), Conditioning.perturb(lv.logits(), e, r)));
            }
            HierarchicalAttention moved = HierarchicalAttention.of(new HierarchicalAttention.Weights(ls));
            float[] px = Conditioning.perturb(x, e, r);
            HierarchicalAttentionReference.Result f = HierarchicalAttentionReference.forward(moved, px, items(off), off);
            List<double[]> got = new ArrayList<>(List.of(f.out(), concat(f.attention())));
            got.addAll(HierarchicalAttentionReference.backward(moved, px, Conditioning.perturb(go, e, r), items(off), off).tensors());
            return Conditioning.errors(got, ref);
        });
    }

    /** N_0, level 0's items. */
    public static int items(int[][] off) { return off[0][off[0].length - 1]; }

    public static double[] concat(List<double[]> parts) {
        int n = 0;
        for (double[] p : parts) n += p.length;
        double[] all = new double[n];
        int at = 0;
        for (double[] p : parts) {
            System.arraycopy(p, 0, all, at, p.length);
            at += p.length;
        }
        return all;
    }
}
