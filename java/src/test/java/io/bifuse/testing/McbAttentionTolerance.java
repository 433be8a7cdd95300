package io.bifuse.testing;

import io.bifuse.McbAttention;
import io.bifuse.Precision;
import io.bifuse.reference.McbAttentionReference;
import java.util.ArrayList;
import java.util.List;

/**
 * The tolerance rule of {@link McbAttention}, shared by {@code check} and the GPU tests (as
 * {@link CompactBilinearTolerance} is MCB's): the fixed bound of the precision, raised to
 * {@link Conditioning}'s {@code max(bound, 2·base)} where a tensor exceeds it. The baseline moves every
 * operand (q, the cells, gradOut, every layer's weight and bias; the hashes are exact) by the precision's
 * step: a rounded GEMM operand flips a ReLU of the hidden layer, and the exact signed-sqrt derivative
 * {@code 0.5/sqrt|z|} amplifies the float32 error of the smallest |z| without limit.
 */
public final class McbAttentionTolerance {
    private McbAttentionTolerance() {}

    /**
     * The conditioning of one case, tensors in the order out, attention, then {@link McbAttention#gradientNames()};
     * the longest float32 sum is over d1, d2 or the B·L rows of the hidden weight's gradient.
     */
    public static Conditioning conditioning(Precision p, McbAttention op, float[] q, float[] image, float[] g, int batch, int cells,
                                            McbAttentionReference.Result fRef, McbAttentionReference.Grads gRef, long seed) {
        List<double[]> ref = new ArrayList<>(List.of(fRef.out(), fRef.attention()));
        ref.addAll(gRef.tensors());
        int longest = Math.max(Math.max(op.d1(), op.d2()), batch * cells);
        return new Conditioning(Conditioning.step(p, longest), seed, (r, e) -> {
            McbAttention.Weights w = op.weights();
            McbAttention moved = McbAttention.of(op.attention(), op.scope(), op.fusion(), new McbAttention.Weights(Conditioning.perturb(w.hidden(), e, r),
                    Conditioning.perturb(w.logits(), e, r), Conditioning.perturb(w.answer(), e, r)));
            float[] pq = Conditioning.perturb(q, e, r), pi = Conditioning.perturb(image, e, r);
            McbAttentionReference.Result f = McbAttentionReference.forward(moved, pq, pi, batch, cells);
            List<double[]> got = new ArrayList<>(List.of(f.out(), f.attention()));
            got.addAll(McbAttentionReference.backward(moved, pq, pi, Conditioning.perturb(g, e, r), batch, cells).tensors());
            return Conditioning.errors(got, ref);
        });
    }
}
