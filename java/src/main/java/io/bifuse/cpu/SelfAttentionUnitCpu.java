package io.bifuse.cpu;

import static io.bifuse.cpu.Floats.toFloat;

import io.bifuse.LinearGradients;
import io.bifuse.MultiHeadAttention;
import io.bifuse.ObjectMask;
import io.bifuse.SelfAttentionUnit;
import io.bifuse.reference.SelfAttentionUnitReference;
import java.util.List;

/**
 * {@link SelfAttentionUnit} on the CPU. Today this is the float64 reference
 * ({@code SelfAttentionUnitReference}) rounded to float: exact, not fast. Immutable and thread-safe;
 * {@link #close()} frees nothing.
 */
public final class SelfAttentionUnitCpu extends CpuBackend<SelfAttentionUnit> implements SelfAttentionUnit.Backend {
    public SelfAttentionUnitCpu(SelfAttentionUnit op) {
        super(op, "a SelfAttentionUnit", Backends.REFERENCE);
    }

    /** {@code x (B × L × H)} → {@code B × L × H}. */
    @Override public float[] forward(float[] x, ObjectMask mask, int batch, int tokens) {
        op.checkInputs(x, mask, batch, tokens);
        return toFloat(SelfAttentionUnitReference.forward(op, x, mask, batch, tokens));
    }

    /** Every gradient given {@code gradOut = ∂L/∂out} ({@code B × L × H}). */
    @Override public SelfAttentionUnit.Gradients backward(float[] x, ObjectMask mask, float[] gradOut, int batch, int tokens) {
        op.checkInputs(x, mask, batch, tokens);
        op.checkGradOut(gradOut, batch, tokens);
        List<double[]> t = SelfAttentionUnitReference.backward(op, x, mask, gradOut, batch, tokens);
        MultiHeadAttention.Weights a = op.weights().attention();
        int[] next = {1};
        LinearGradients q = MlbAttentionCpu.layer(a.query(), t, next), k = MlbAttentionCpu.layer(a.key(), t, next);
        LinearGradients v = MlbAttentionCpu.layer(a.value(), t, next), m = MlbAttentionCpu.layer(a.merge(), t, next);
        LinearGradients f1 = MlbAttentionCpu.layer(op.weights().ffnHidden(), t, next), f2 = MlbAttentionCpu.layer(op.weights().ffnOut(), t, next);
        int n = next[0];
        LinearGradients n1 = new LinearGradients(toFloat(t.get(n)), toFloat(t.get(n + 1))), n2 = new LinearGradients(toFloat(t.get(n + 2)), toFloat(t.get(n + 3)));
        // the attention's input gradients are folded into dx: its record carries the layers only
        MultiHeadAttention.Gradients att = new MultiHeadAttention.Gradients(null, null, null, q, k, v, m);
        return new SelfAttentionUnit.Gradients(toFloat(t.get(0)), att, f1, f2, n1, n2);
    }
}
