package io.bifuse.cpu;

import io.bifuse.LinearGradients;
import io.bifuse.MultiHeadAttention;
import io.bifuse.ObjectMask;

/**
 * {@link MultiHeadAttention} on the CPU in float32 ({@code cpu-fp32}).
 *
 * <p>Forward: the three projections as one GEMM each over all {@code B·Lq} (or {@code B·Lk}) rows
 * ({@link CpuLinear}); then per (sample, head), all pairs in one {@link CpuRuntime#parallelFor}, the scores
 * {@code S = Q_h K_hᵀ / sqrt(d)} as one GEMM, mcan-vqa's masked softmax in place (max and sum in double; a
 * padded key gets exactly 0, a sample without real keys uniform {@code 1/Lk}), and {@code O_h = P_h V_h} as
 * one GEMM; the merge as one GEMM over all rows. Backward recomputes that forward, keeping the
 * probabilities, then per (sample, head) {@code dV = Pᵀ dO}, {@code dP = dO Vᵀ}, the softmax's Jacobian in
 * place (0 on padded keys, so their dK and dV rows are exactly 0), {@code dQ = dS K}, {@code dK = dSᵀ Q}, and
 * the layers' input and parameter gradients as GEMMs over all rows; the key bias's gradient is written as
 * exact zeros (the softmax cancels it).
 *
 * <p>Threads: {@link #runtime()}; work is split by shape only and no sum is split, so results are bitwise
 * the same for every thread count. Weights are prepared once here; intermediates come from a per-backend
 * {@link Scratch}, so a call allocates only what it returns. Immutable and thread-safe; {@link #close()}
 * frees nothing.
 */
public final class MultiHeadAttentionCpu extends CpuBackend<MultiHeadAttention> implements MultiHeadAttention.Backend {
    private final McanKernels.Attention attention;
    private final Scratch scratch = new Scratch();

    public MultiHeadAttentionCpu(MultiHeadAttention op) {
        this(op, CpuRuntime.defaults());
    }

    public MultiHeadAttentionCpu(MultiHeadAttention op, CpuRuntime runtime) {
        super(op, "a MultiHeadAttention", Backends.FP32, runtime);
        attention = new McanKernels.Attention(op, McanKernels.Attention.Kind.GENERAL);
    }

    /** {@code query (B × Lq × Dq)}, {@code key (B × Lk × Dk)}, {@code value (B × Lk × Dv)} → {@code B × Lq × Out}. */
    @Override public float[] forward(float[] query, float[] key, float[] value, ObjectMask mask, int batch, int queries, int keys) {
        op.checkInputs(query, key, value, mask, batch, queries, keys);
        return run(query, key, value, mask, batch, queries, keys, false).out();
    }

    /** The forward, also returning the attention maps ({@code B × n × Lq × Lk}). */
    @Override public MultiHeadAttention.Result forwardWithAttention(float[] query, float[] key, float[] value, ObjectMask mask, int batch, int queries,
                                                                    int keys) {
        op.checkInputs(query, key, value, mask, batch, queries, keys);
        return run(query, key, value, mask, batch, queries, keys, true);
    }

    private MultiHeadAttention.Result run(float[] query, float[] key, float[] value, ObjectMask mask, int batch, int queries, int keys, boolean maps) {
        attention.checkSizes(batch, queries, keys);
        float[] out = new float[McanKernels.elements("output", batch, queries, op.out())];
        float[] p = maps ? new float[McanKernels.elements("attention maps", batch, op.heads(), queries, keys)] : null;
        try (Scratch.Lease l = scratch.lease()) {
            McanKernels.Arena a = new McanKernels.Arena(l, 0);
            attention.forward(runtime, a, query, key, value, McanKernels.Mask.of(mask, batch, keys), batch, queries, keys, p, out, false);
        }
        return new MultiHeadAttention.Result(out, p);
    }

    /** Every gradient given {@code gradOut = ∂L/∂out} ({@code B × Lq × Out}). */
    @Override public MultiHeadAttention.Gradients backward(float[] query, float[] key, float[] value, ObjectMask mask, float[] gradOut, int batch,
                                                           int queries, int keys) {
        op.checkInputs(query, key, value, mask, batch, queries, keys);
        op.checkGradOut(gradOut, batch, queries);
        attention.checkSizes(batch, queries, keys);
        float[] dq = new float[McanKernels.elements("dQuery", batch, queries, op.queryDim())];
        float[] dk = new float[McanKernels.elements("dKey", batch, keys, op.keyDim())];
        float[] dv = new float[McanKernels.elements("dValue", batch, keys, op.valueDim())];
        try (Scratch.Lease l = scratch.lease()) {
            McanKernels.Arena a = new McanKernels.Arena(l, 1);
            McanKernels.Mask m = McanKernels.Mask.of(mask, batch, keys);
            McanKernels.Attention.State s = attention.forward(runtime, a, query, key, value, m, batch, queries, keys, null, null, false);
            float[] ones = CpuLinear.ones(l, 0, batch * Math.max(queries, keys));
            LinearGradients[] g = attention.backward(runtime, a, s, query, key, value, m, batch, queries, keys, gradOut, ones, dq, false, dk, false, dv,
                    false);
            return new MultiHeadAttention.Gradients(dq, dk, dv, g[0], g[1], g[2], g[3]);
        }
    }
}
