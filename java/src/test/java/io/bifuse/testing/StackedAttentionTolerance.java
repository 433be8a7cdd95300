package io.bifuse.testing;

import io.bifuse.Precision;
import io.bifuse.StackedAttention;
import io.bifuse.reference.StackedAttentionReference;
import java.util.ArrayList;
import java.util.List;

/**
 * The {@link Conditioning} of a {@link StackedAttention} case, the rule StackedAttentionCudaTest applies
 * (the same construction, shared here for the CPU backend's test): tensors are the output, the attention
 * maps, then the gradients in the order of {@link StackedAttention#gradientNames()}; the longest sum is over
 * d, or the B·L cells of an image layer's weight gradient. Where a tensor exceeds its fixed bound (a sharp
 * softmax turns the logits' absolute error into the maps' relative error; the softmax Jacobian
 * {@code α ⊙ (dα − ⟨α, dα⟩)} cancels where α is nearly one-hot), the bound becomes {@code max(bound, 2·base)}.
 */
public final class StackedAttentionTolerance {
    private StackedAttentionTolerance() {}

    public static Conditioning conditioning(Precision p, StackedAttention op, float[] u, float[] v, float[] go, int batch, int cells,
                                            StackedAttentionReference.Result fRef, StackedAttentionReference.Grads gRef, long seed) {
        List<double[]> ref = new ArrayList<>(List.of(fRef.out(), fRef.attention()));
        ref.addAll(gRef.tensors());
        int longest = Math.max(op.dim(), batch * cells);
        return new Conditioning(Conditioning.step(p, longest), seed, (r, e) -> {
            List<StackedAttention.Layer> ls = new ArrayList<>();
            for (StackedAttention.Layer x : op.weights().layers()) {
                ls.add(new StackedAttention.Layer(Conditioning.perturb(x.image(), e, r), Conditioning.perturb(x.question(), e, r),
                        Conditioning.perturb(x.logits(), e, r)));
            }
            StackedAttention moved = StackedAttention.of(new StackedAttention.Weights(ls), op.placement());
            float[] pu = Conditioning.perturb(u, e, r), pv = Conditioning.perturb(v, e, r);
            StackedAttentionReference.Result f = StackedAttentionReference.forward(moved, pu, pv, batch, cells);
            List<double[]> got = new ArrayList<>(List.of(f.out(), f.attention()));
            got.addAll(StackedAttentionReference.backward(moved, pu, pv, Conditioning.perturb(go, e, r), batch, cells).tensors());
            return Conditioning.errors(got, ref);
        });
    }
}
