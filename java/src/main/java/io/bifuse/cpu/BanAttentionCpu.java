package io.bifuse.cpu;

import static io.bifuse.cpu.Floats.toFloat;

import io.bifuse.BanAttention;
import io.bifuse.LinearGradients;
import io.bifuse.ObjectMask;
import io.bifuse.reference.BanAttentionReference;

/**
 * {@link BanAttention} on the CPU. Today this is the float64 reference ({@code BanAttentionReference})
 * rounded to float: exact, not fast. Immutable and thread-safe; {@link #close()} frees nothing.
 */
public final class BanAttentionCpu extends CpuBackend<BanAttention> implements BanAttention.Backend {
    public BanAttentionCpu(BanAttention op) {
        super(op, "a BanAttention", Backends.REFERENCE);
    }

    /**
     * The attention maps and logits of {@code xp} ({@code B × N × K}) and {@code yp} ({@code B × M × K});
     * {@code mask} null means every object is real.
     */
    @Override public BanAttention.Result forward(float[] xp, float[] yp, ObjectMask mask, int batch, int objects, int tokens) {
        op.checkInputs(xp, yp, mask, batch, objects, tokens);
        BanAttentionReference.Result r = BanAttentionReference.forward(op, xp, yp, mask, batch, objects, tokens);
        return new BanAttention.Result(toFloat(r.attention()), toFloat(r.logits()));
    }

    /** Every gradient given {@code gradAttention = ∂L/∂A} ({@code B × G × N × M}). */
    @Override public BanAttention.Gradients backward(float[] xp, float[] yp, ObjectMask mask, float[] gradAttention, int batch, int objects,
                                                     int tokens) {
        op.checkInputs(xp, yp, mask, batch, objects, tokens);
        op.checkMaps("gradAttention", gradAttention, batch, objects, tokens);
        BanAttentionReference.Grads g = BanAttentionReference.backward(op, xp, yp, mask, gradAttention, batch, objects, tokens);
        return new BanAttention.Gradients(toFloat(g.dxp()), toFloat(g.dyp()),
                new LinearGradients(toFloat(g.dweight()), op.logits().hasBias() ? toFloat(g.dbias()) : null));
    }
}
