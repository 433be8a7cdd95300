package io.bifuse.cpu;

import static io.bifuse.cpu.Floats.toFloat;

import io.bifuse.CompactBilinear;
import io.bifuse.Linear;
import io.bifuse.LinearGradients;
import io.bifuse.MlbAttention;
import io.bifuse.reference.MlbAttentionReference;
import java.util.ArrayList;
import java.util.List;

/**
 * {@link MlbAttention} on the CPU. Today this is the float64 reference ({@code MlbAttentionReference})
 * rounded to float: exact, not fast. Immutable and thread-safe; {@link #close()} frees nothing.
 */
public final class MlbAttentionCpu extends CpuBackend<MlbAttention> implements MlbAttention.Backend {
    public MlbAttentionCpu(MlbAttention op) {
        super(op, "an MlbAttention", Backends.REFERENCE);
    }

    /** {@code q (B × Dq)}, {@code v (B × L × Dv)} → {@code B × Out}. */
    @Override public float[] forward(float[] q, float[] v, int batch, int cells) {
        return forwardWithAttention(q, v, batch, cells).out();
    }

    /** The forward, also returning the attention maps α ({@code B × G × L}). */
    @Override public MlbAttention.Result forwardWithAttention(float[] q, float[] v, int batch, int cells) {
        op.checkInputs(q, v, batch, cells);
        MlbAttentionReference.Result r = MlbAttentionReference.forward(op, q, v, batch, cells);
        return new MlbAttention.Result(toFloat(r.out()), toFloat(r.attention()));
    }

    /** Every gradient given {@code gradOut = ∂L/∂out} ({@code B × Out}). */
    @Override public MlbAttention.Gradients backward(float[] q, float[] v, float[] gradOut, int batch, int cells) {
        op.checkInputs(q, v, batch, cells);
        CompactBilinear.checkLength("gradOut", gradOut, batch, op.out());
        List<double[]> t = MlbAttentionReference.backward(op, q, v, gradOut, batch, cells).tensors();
        MlbAttention.Weights w = op.weights();
        int[] next = {0};
        float[] dq = toFloat(t.get(next[0]++)), dv = toFloat(t.get(next[0]++));
        LinearGradients question = layer(w.question(), t, next), cellsG = layer(w.cells(), t, next);
        LinearGradients logits = layer(w.logits(), t, next);
        List<LinearGradients> glimpses = new ArrayList<>();
        for (Linear l : w.glimpses()) glimpses.add(layer(l, t, next));
        LinearGradients fusion = layer(w.questionFusion(), t, next), answer = layer(w.answer(), t, next);
        return new MlbAttention.Gradients(dq, dv, question, cellsG, logits, glimpses, fusion, answer);
    }

    /** The next layer's gradients from a reference's tensor list (weight, then bias if the layer has one), rounded to float. */
    static LinearGradients layer(Linear l, List<double[]> t, int[] next) {
        float[] w = toFloat(t.get(next[0]++));
        float[] b = l.hasBias() ? toFloat(t.get(next[0]++)) : null;
        return new LinearGradients(w, b);
    }
}
