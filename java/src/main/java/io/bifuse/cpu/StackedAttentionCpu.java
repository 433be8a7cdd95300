package io.bifuse.cpu;

import static io.bifuse.cpu.Floats.toFloat;

import io.bifuse.CompactBilinear;
import io.bifuse.StackedAttention;
import io.bifuse.reference.StackedAttentionReference;
import java.util.ArrayList;
import java.util.List;

/**
 * {@link StackedAttention} on the CPU. Today this is the float64 reference ({@code StackedAttentionReference})
 * rounded to float: exact, not fast. Immutable and thread-safe; {@link #close()} frees nothing.
 */
public final class StackedAttentionCpu extends CpuBackend<StackedAttention> implements StackedAttention.Backend {
    public StackedAttentionCpu(StackedAttention op) {
        super(op, "a StackedAttention", Backends.REFERENCE);
    }

    /** {@code u (B × d)}, {@code v (B × L × d)} → {@code B × d}. */
    @Override public float[] forward(float[] u, float[] v, int batch, int cells) {
        return forwardWithAttention(u, v, batch, cells).out();
    }

    /** The forward, also returning the attention maps ({@code B × K × L}). */
    @Override public StackedAttention.Result forwardWithAttention(float[] u, float[] v, int batch, int cells) {
        op.checkInputs(u, v, batch, cells);
        StackedAttentionReference.Result r = StackedAttentionReference.forward(op, u, v, batch, cells);
        return new StackedAttention.Result(toFloat(r.out()), toFloat(r.attention()));
    }

    /** Every gradient given {@code gradOut = ∂L/∂u_K} ({@code B × d}). */
    @Override public StackedAttention.Gradients backward(float[] u, float[] v, float[] gradOut, int batch, int cells) {
        op.checkInputs(u, v, batch, cells);
        CompactBilinear.checkLength("gradOut", gradOut, batch, op.dim());
        List<double[]> t = StackedAttentionReference.backward(op, u, v, gradOut, batch, cells).tensors();
        int[] next = {0};
        float[] du = toFloat(t.get(next[0]++)), dv = toFloat(t.get(next[0]++));
        List<StackedAttention.LayerGradients> layers = new ArrayList<>();
        for (StackedAttention.Layer l : op.weights().layers()) {
            layers.add(new StackedAttention.LayerGradients(MlbAttentionCpu.layer(l.image(), t, next), MlbAttentionCpu.layer(l.question(), t, next),
                    MlbAttentionCpu.layer(l.logits(), t, next)));
        }
        return new StackedAttention.Gradients(du, dv, layers);
    }
}
