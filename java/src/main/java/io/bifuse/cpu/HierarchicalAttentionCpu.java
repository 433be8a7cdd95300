package io.bifuse.cpu;

import static io.bifuse.cpu.Floats.toFloat;

import io.bifuse.HierarchicalAttention;
import io.bifuse.reference.HierarchicalAttentionReference;
import java.util.ArrayList;
import java.util.List;

/**
 * {@link HierarchicalAttention} on the CPU. Today this is the float64 reference
 * ({@code HierarchicalAttentionReference}) rounded to float: exact, not fast. Immutable and thread-safe;
 * {@link #close()} frees nothing.
 */
public final class HierarchicalAttentionCpu extends CpuBackend<HierarchicalAttention> implements HierarchicalAttention.Backend {
    public HierarchicalAttentionCpu(HierarchicalAttention op) {
        super(op, "a HierarchicalAttention", Backends.REFERENCE);
    }

    /** {@code x (N_0 × d)} → {@code G_{L−1} × d}. */
    @Override public float[] forward(float[] x, int items, int[][] offsets) {
        return forwardWithAttention(x, items, offsets).out();
    }

    /** The forward, also returning every level's attention weights ({@code N_ℓ} each). */
    @Override public HierarchicalAttention.Result forwardWithAttention(float[] x, int items, int[][] offsets) {
        op.checkInputs(x, items, offsets);
        HierarchicalAttentionReference.Result r = HierarchicalAttentionReference.forward(op, x, items, offsets);
        List<float[]> att = new ArrayList<>();
        for (double[] a : r.attention()) att.add(toFloat(a));
        return new HierarchicalAttention.Result(toFloat(r.out()), att);
    }

    /** Every gradient given {@code gradOut = ∂L/∂out} ({@code G_{L−1} × d}). */
    @Override public HierarchicalAttention.Gradients backward(float[] x, float[] gradOut, int items, int[][] offsets) {
        op.checkInputs(x, gradOut, items, offsets);
        List<double[]> t = HierarchicalAttentionReference.backward(op, x, gradOut, items, offsets).tensors();
        int[] next = {0};
        float[] dx = toFloat(t.get(next[0]++));
        List<HierarchicalAttention.LevelGradients> levels = new ArrayList<>();
        for (HierarchicalAttention.Level l : op.weights().levels()) {
            levels.add(new HierarchicalAttention.LevelGradients(MlbAttentionCpu.layer(l.projection(), t, next), MlbAttentionCpu.layer(l.logits(), t, next)));
        }
        return new HierarchicalAttention.Gradients(dx, levels);
    }
}
