package io.bifuse.cpu;

import static io.bifuse.cpu.Floats.toFloat;

import io.bifuse.LinearGradients;
import io.bifuse.MultiHeadAttention;
import io.bifuse.ObjectMask;
import io.bifuse.reference.MultiHeadAttentionReference;
import java.util.List;

/**
 * {@link MultiHeadAttention} on the CPU. Today this is the float64 reference
 * ({@code MultiHeadAttentionReference}) rounded to float: exact, not fast. Immutable and thread-safe;
 * {@link #close()} frees nothing.
 */
public final class MultiHeadAttentionCpu extends CpuBackend<MultiHeadAttention> implements MultiHeadAttention.Backend {
    public MultiHeadAttentionCpu(MultiHeadAttention op) {
        super(op, "a MultiHeadAttention", Backends.REFERENCE);
    }

    /** {@code query (B × Lq × Dq)}, {@code key (B × Lk × Dk)}, {@code value (B × Lk × Dv)} → {@code B × Lq × Out}. */
    @Override public float[] forward(float[] query, float[] key, float[] value, ObjectMask mask, int batch, int queries, int keys) {
        return forwardWithAttention(query, key, value, mask, batch, queries, keys).out();
    }

    /** The forward, also returning the attention maps ({@code B × n × Lq × Lk}). */
    @Override public MultiHeadAttention.Result forwardWithAttention(float[] query, float[] key, float[] value, ObjectMask mask, int batch, int queries,
                                                                    int keys) {
        op.checkInputs(query, key, value, mask, batch, queries, keys);
        MultiHeadAttentionReference.Result r = MultiHeadAttentionReference.forward(op, query, key, value, mask, batch, queries, keys);
        return new MultiHeadAttention.Result(toFloat(r.out()), toFloat(r.attention()));
    }

    /** Every gradient given {@code gradOut = ∂L/∂out} ({@code B × Lq × Out}). */
    @Override public MultiHeadAttention.Gradients backward(float[] query, float[] key, float[] value, ObjectMask mask, float[] gradOut, int batch,
                                                           int queries, int keys) {
        op.checkInputs(query, key, value, mask, batch, queries, keys);
        op.checkGradOut(gradOut, batch, queries);
        List<double[]> t = MultiHeadAttentionReference.backward(op, query, key, value, mask, gradOut, batch, queries, keys).tensors();
        MultiHeadAttention.Weights w = op.weights();
        int[] next = {3};
        LinearGradients q = MlbAttentionCpu.layer(w.query(), t, next), k = MlbAttentionCpu.layer(w.key(), t, next);
        LinearGradients v = MlbAttentionCpu.layer(w.value(), t, next), m = MlbAttentionCpu.layer(w.merge(), t, next);
        return new MultiHeadAttention.Gradients(toFloat(t.get(0)), toFloat(t.get(1)), toFloat(t.get(2)), q, k, v, m);
    }
}
