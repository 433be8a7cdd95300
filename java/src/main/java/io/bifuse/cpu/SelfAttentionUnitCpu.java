package io.bifuse.cpu;

import io.bifuse.LinearGradients;
import io.bifuse.MultiHeadAttention;
import io.bifuse.ObjectMask;
import io.bifuse.SelfAttentionUnit;

/**
 * {@link SelfAttentionUnit} on the CPU in float32 ({@code cpu-fp32}): {@code y = LN1(x + MHA(x))},
 * {@code out = LN2(y + FFN(y))}.
 *
 * <p>How: the attention's q, k and v projections as one {@code 3H × H} GEMM over all {@code B·L} rows, the
 * scores and {@code P V} per (sample, head) as GEMMs with the masked softmax between
 * ({@link McanKernels.Attention}), the merge accumulated onto a copy of x (the residual), each LayerNorm one
 * pass per row (statistics in double, kept for the backward, whose row pass is in double too), the FFN as two
 * GEMMs with the ReLU in place and the second accumulated onto the residual. Backward: the same forward
 * with its intermediates kept, then each step's transpose by GEMMs (the three projections' input gradients
 * as one {@code (B·L × 3H)·(3H × H)} GEMM added onto the residual's), LayerNorm gain and bias gradients as
 * column sums in row order; the key bias's gradient exact zeros.
 *
 * <p>Threads: {@link #runtime()}; work is split by shape only and no sum is split, so results are bitwise
 * the same for every thread count. Weights are prepared once here, intermediates come from a per-backend
 * {@link Scratch}. Immutable and thread-safe; {@link #close()} frees nothing.
 */
public final class SelfAttentionUnitCpu extends CpuBackend<SelfAttentionUnit> implements SelfAttentionUnit.Backend {
    private final McanKernels.Attention attention;
    private final McanKernels.Norm norm1, norm2;
    private final McanKernels.FeedForward ffn;
    private final Scratch scratch = new Scratch();

    public SelfAttentionUnitCpu(SelfAttentionUnit op) {
        this(op, CpuRuntime.defaults());
    }

    public SelfAttentionUnitCpu(SelfAttentionUnit op, CpuRuntime runtime) {
        super(op, "a SelfAttentionUnit", Backends.FP32, runtime);
        SelfAttentionUnit.Weights w = op.weights();
        attention = new McanKernels.Attention(op.attention(), McanKernels.Attention.Kind.SELF);
        norm1 = new McanKernels.Norm(op.norm(), w.norm1());
        norm2 = new McanKernels.Norm(op.norm(), w.norm2());
        ffn = new McanKernels.FeedForward(w.ffnHidden(), w.ffnOut());
    }

    /** {@code x (B × L × H)} → {@code B × L × H}. */
    @Override public float[] forward(float[] x, ObjectMask mask, int batch, int tokens) {
        op.checkInputs(x, mask, batch, tokens);
        checkSizes(batch, tokens);
        float[] out = new float[x.length];
        try (Scratch.Lease l = scratch.lease()) {
            forward(new McanKernels.Arena(l, 1), x, McanKernels.Mask.of(mask, batch, tokens), batch, tokens, out);
        }
        return out;
    }

    /** Every gradient given {@code gradOut = ∂L/∂out} ({@code B × L × H}). */
    @Override public SelfAttentionUnit.Gradients backward(float[] x, ObjectMask mask, float[] gradOut, int batch, int tokens) {
        op.checkInputs(x, mask, batch, tokens);
        op.checkGradOut(gradOut, batch, tokens);
        checkSizes(batch, tokens);
        float[] dx = new float[x.length];
        try (Scratch.Lease l = scratch.lease()) {
            McanKernels.Arena a = new McanKernels.Arena(l, 1);
            McanKernels.Mask m = McanKernels.Mask.of(mask, batch, tokens);
            State s = forward(a, x, m, batch, tokens, a.floats(x.length));
            return backward(a, s, x, m, batch, tokens, gradOut, CpuLinear.ones(l, 0, batch * tokens), dx);
        }
    }

    /** Every intermediate's size, refused by name before anything is allocated. */
    void checkSizes(int batch, int tokens) {
        attention.checkSizes(batch, tokens, tokens);
        McanKernels.elements("feed-forward activations", batch, tokens, op.ffn());
    }

    /** A forward's intermediates: the attention's, both norms', the FFN's input y and activations r. */
    static final class State {
        McanKernels.Attention.State attention;
        McanKernels.Norm.State norm1, norm2;
        float[] y, r;
    }

    /** The forward into {@code out}, its intermediates from {@code a}. */
    State forward(McanKernels.Arena a, float[] x, McanKernels.Mask mask, int batch, int tokens, float[] out) {
        int rows = batch * tokens, h = op.hidden();
        State s = new State();
        float[] sum = a.floats(rows * h);
        System.arraycopy(x, 0, sum, 0, rows * h);
        s.attention = attention.forward(runtime, a, x, x, x, mask, batch, tokens, tokens, null, sum, true);
        s.y = a.floats(rows * h);
        s.norm1 = norm1.forward(runtime, a, rows, sum, s.y);
        s.r = a.floats(rows * op.ffn());
        float[] sum2 = a.floats(rows * h);
        ffn.forward(runtime, rows, s.y, s.r, sum2);
        s.norm2 = norm2.forward(runtime, a, rows, sum2, out);
        return s;
    }

    /** Every gradient given a forward's state; dx into {@code dx} (written). {@code ones}: at least B·L ones. */
    SelfAttentionUnit.Gradients backward(McanKernels.Arena a, State s, float[] x, McanKernels.Mask mask, int batch, int tokens, float[] gradOut,
            float[] ones, float[] dx) {
        int rows = batch * tokens, h = op.hidden();
        float[] n1g = new float[h], n1b = new float[h], n2g = new float[h], n2b = new float[h];
        float[] ds = a.floats(rows * h), dy = a.floats(rows * h), dr = a.floats(rows * op.ffn());
        norm2.backward(runtime, rows, s.norm2, gradOut, ds, n2g, n2b);
        LinearGradients[] f = ffn.backward(runtime, rows, s.y, s.r, ds, dr, dy, ones);
        norm1.backward(runtime, rows, s.norm1, dy, ds, n1g, n1b);
        System.arraycopy(ds, 0, dx, 0, rows * h);
        LinearGradients[] g = attention.backward(runtime, a, s.attention, x, x, x, mask, batch, tokens, tokens, ds, ones, dx, true, null, false, null, false);
        // the attention's input gradients are folded into dx: its record carries the layers only
        MultiHeadAttention.Gradients att = new MultiHeadAttention.Gradients(null, null, null, g[0], g[1], g[2], g[3]);
        return new SelfAttentionUnit.Gradients(dx, att, f[0], f[1], new LinearGradients(n1g, n1b), new LinearGradients(n2g, n2b));
    }
}
