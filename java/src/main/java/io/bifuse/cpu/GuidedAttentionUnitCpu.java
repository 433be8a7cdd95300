package io.bifuse.cpu;

import static io.bifuse.cpu.Floats.toFloat;

import io.bifuse.GuidedAttentionUnit;
import io.bifuse.LinearGradients;
import io.bifuse.MultiHeadAttention;
import io.bifuse.ObjectMask;
import io.bifuse.reference.GuidedAttentionUnitReference;
import java.util.List;

/**
 * {@link GuidedAttentionUnit} on the CPU. Today this is the float64 reference
 * ({@code GuidedAttentionUnitReference}) rounded to float: exact, not fast. Immutable and thread-safe;
 * {@link #close()} frees nothing.
 */
public final class GuidedAttentionUnitCpu extends CpuBackend<GuidedAttentionUnit> implements GuidedAttentionUnit.Backend {
    public GuidedAttentionUnitCpu(GuidedAttentionUnit op) {
        super(op, "a GuidedAttentionUnit", Backends.REFERENCE);
    }

    @Override public float[] forward(float[] x, ObjectMask xMask, float[] y, ObjectMask yMask, int batch, int xTokens, int yTokens) {
        op.checkInputs(x, xMask, y, yMask, batch, xTokens, yTokens);
        return toFloat(GuidedAttentionUnitReference.forward(op, x, xMask, y, yMask, batch, xTokens, yTokens));
    }

    @Override public GuidedAttentionUnit.Gradients backward(float[] x, ObjectMask xMask, float[] y, ObjectMask yMask, float[] gradOut, int batch,
                                                            int xTokens, int yTokens) {
        op.checkInputs(x, xMask, y, yMask, batch, xTokens, yTokens);
        op.checkGradOut(gradOut, batch, xTokens);
        List<double[]> t = GuidedAttentionUnitReference.backward(op, x, xMask, y, yMask, gradOut, batch, xTokens, yTokens);
        GuidedAttentionUnit.Weights w = op.weights();
        int[] next = {2};
        MultiHeadAttention.Gradients a1 = attention(w.selfAttention(), t, next), a2 = attention(w.guidedAttention(), t, next);
        LinearGradients f1 = MlbAttentionCpu.layer(w.ffnHidden(), t, next), f2 = MlbAttentionCpu.layer(w.ffnOut(), t, next);
        LinearGradients[] n = new LinearGradients[3];
        for (int i = 0; i < 3; i++) n[i] = new LinearGradients(toFloat(t.get(next[0] + 2 * i)), toFloat(t.get(next[0] + 2 * i + 1)));
        return new GuidedAttentionUnit.Gradients(toFloat(t.get(0)), toFloat(t.get(1)), a1, a2, f1, f2, n[0], n[1], n[2]);
    }

    /** One attention's layers' gradients (its input gradients are folded into dx and dy: null). */
    private static MultiHeadAttention.Gradients attention(MultiHeadAttention.Weights a, List<double[]> t, int[] next) {
        LinearGradients q = MlbAttentionCpu.layer(a.query(), t, next), k = MlbAttentionCpu.layer(a.key(), t, next);
        LinearGradients v = MlbAttentionCpu.layer(a.value(), t, next), m = MlbAttentionCpu.layer(a.merge(), t, next);
        return new MultiHeadAttention.Gradients(null, null, null, q, k, v, m);
    }
}
