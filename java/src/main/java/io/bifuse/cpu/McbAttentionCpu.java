package io.bifuse.cpu;

import static io.bifuse.cpu.Floats.toFloat;
import static io.bifuse.cpu.MlbAttentionCpu.layer;

import io.bifuse.CompactBilinear;
import io.bifuse.LinearGradients;
import io.bifuse.McbAttention;
import io.bifuse.reference.McbAttentionReference;
import java.util.List;

/**
 * {@link McbAttention} on the CPU. Today this is the float64 reference ({@code McbAttentionReference})
 * rounded to float: exact, not fast (the attention pooling costs {@code B·L·Dq·Dv} per forward).
 * Immutable and thread-safe; {@link #close()} frees nothing.
 */
public final class McbAttentionCpu extends CpuBackend<McbAttention> implements McbAttention.Backend {
    public McbAttentionCpu(McbAttention op) {
        super(op, "an McbAttention", Backends.REFERENCE);
    }

    /** {@code q (B × Dq)}, {@code image (B × L × Dv)} → {@code B × A}. */
    @Override public float[] forward(float[] q, float[] image, int batch, int cells) {
        return forwardWithAttention(q, image, batch, cells).out();
    }

    /** The forward, also returning the attention maps α ({@code B × G × L}). */
    @Override public McbAttention.Result forwardWithAttention(float[] q, float[] image, int batch, int cells) {
        op.checkInputs(q, image, batch, cells);
        McbAttentionReference.Result r = McbAttentionReference.forward(op, q, image, batch, cells);
        return new McbAttention.Result(toFloat(r.out()), toFloat(r.attention()));
    }

    /** Every gradient given {@code gradOut = ∂L/∂out} ({@code B × A}). */
    @Override public McbAttention.Gradients backward(float[] q, float[] image, float[] gradOut, int batch, int cells) {
        op.checkInputs(q, image, batch, cells);
        CompactBilinear.checkLength("gradOut", gradOut, batch, op.answers());
        List<double[]> t = McbAttentionReference.backward(op, q, image, gradOut, batch, cells).tensors();
        McbAttention.Weights w = op.weights();
        int[] next = {2};
        LinearGradients hidden = layer(w.hidden(), t, next), logits = layer(w.logits(), t, next), answer = layer(w.answer(), t, next);
        return new McbAttention.Gradients(toFloat(t.get(0)), toFloat(t.get(1)), hidden, logits, answer);
    }
}
