package io.bifuse.cpu;

import io.bifuse.GuidedAttentionUnit;
import io.bifuse.LinearGradients;
import io.bifuse.MultiHeadAttention;
import io.bifuse.ObjectMask;

/**
 * {@link GuidedAttentionUnit} on the CPU in float32 ({@code cpu-fp32}): {@code x1 = LN1(x + MHA1(x, x, x))},
 * {@code x2 = LN2(x1 + MHA2(x1, y, y))}, {@code out = LN3(x2 + FFN(x2))}.
 *
 * <p>How: the self-attention's q, k, v projections as one {@code 3H × H} GEMM over the {@code B·Lx} rows of
 * x; the guided attention's query projection over x1 and its key and value projections as one
 * {@code 2H × H} GEMM over the {@code B·Ly} rows of y; each attention's scores and {@code P V} per (sample,
 * head) as GEMMs with the masked softmax between ({@link McanKernels.Attention}); merges and the FFN's
 * second layer accumulated onto the residuals; LayerNorms one pass per row, statistics in double.
 * Backward: that forward with its intermediates kept, then each step's transpose by GEMMs (y's gradient as
 * one {@code (B·Ly × 2H)·(2H × H)} GEMM), LayerNorm rows in double, gain and bias gradients as column sums
 * in row order; both key biases' gradients exact zeros.
 *
 * <p>Threads: {@link #runtime()}; work is split by shape only and no sum is split, so results are bitwise
 * the same for every thread count. Weights are prepared once here, intermediates come from a per-backend
 * {@link Scratch}. Immutable and thread-safe; {@link #close()} frees nothing.
 */
public final class GuidedAttentionUnitCpu extends CpuBackend<GuidedAttentionUnit> implements GuidedAttentionUnit.Backend {
    private final McanKernels.Attention selfAttention, guidedAttention;
    private final McanKernels.Norm norm1, norm2, norm3;
    private final McanKernels.FeedForward ffn;
    private final Scratch scratch = new Scratch();

    public GuidedAttentionUnitCpu(GuidedAttentionUnit op) {
        this(op, CpuRuntime.defaults());
    }

    public GuidedAttentionUnitCpu(GuidedAttentionUnit op, CpuRuntime runtime) {
        super(op, "a GuidedAttentionUnit", Backends.FP32, runtime);
        GuidedAttentionUnit.Weights w = op.weights();
        selfAttention = new McanKernels.Attention(op.selfAttention(), McanKernels.Attention.Kind.SELF);
        guidedAttention = new McanKernels.Attention(op.guidedAttention(), McanKernels.Attention.Kind.GUIDED);
        norm1 = new McanKernels.Norm(op.norm(), w.norm1());
        norm2 = new McanKernels.Norm(op.norm(), w.norm2());
        norm3 = new McanKernels.Norm(op.norm(), w.norm3());
        ffn = new McanKernels.FeedForward(w.ffnHidden(), w.ffnOut());
    }

    @Override public float[] forward(float[] x, ObjectMask xMask, float[] y, ObjectMask yMask, int batch, int xTokens, int yTokens) {
        op.checkInputs(x, xMask, y, yMask, batch, xTokens, yTokens);
        checkSizes(batch, xTokens, yTokens);
        float[] out = new float[x.length];
        try (Scratch.Lease l = scratch.lease()) {
            forward(new McanKernels.Arena(l, 1), x, McanKernels.Mask.of(xMask, batch, xTokens), y, McanKernels.Mask.of(yMask, batch, yTokens), batch, xTokens,
                    yTokens, out);
        }
        return out;
    }

    @Override public GuidedAttentionUnit.Gradients backward(float[] x, ObjectMask xMask, float[] y, ObjectMask yMask, float[] gradOut, int batch,
                                                            int xTokens, int yTokens) {
        op.checkInputs(x, xMask, y, yMask, batch, xTokens, yTokens);
        op.checkGradOut(gradOut, batch, xTokens);
        checkSizes(batch, xTokens, yTokens);
        float[] dx = new float[x.length], dy = new float[y.length];
        try (Scratch.Lease l = scratch.lease()) {
            McanKernels.Arena a = new McanKernels.Arena(l, 1);
            McanKernels.Mask xm = McanKernels.Mask.of(xMask, batch, xTokens), ym = McanKernels.Mask.of(yMask, batch, yTokens);
            State s = forward(a, x, xm, y, ym, batch, xTokens, yTokens, a.floats(x.length));
            float[] ones = CpuLinear.ones(l, 0, batch * Math.max(xTokens, yTokens));
            return backward(a, s, x, xm, y, ym, batch, xTokens, yTokens, gradOut, ones, dx, dy, false);
        }
    }

    /** Every intermediate's size, refused by name before anything is allocated. */
    void checkSizes(int batch, int xTokens, int yTokens) {
        selfAttention.checkSizes(batch, xTokens, xTokens);
        guidedAttention.checkSizes(batch, xTokens, yTokens);
        McanKernels.elements("feed-forward activations", batch, xTokens, op.ffn());
    }

    /** A forward's intermediates. */
    static final class State {
        McanKernels.Attention.State selfAttention, guidedAttention;
        McanKernels.Norm.State norm1, norm2, norm3;
        float[] x1, x2, r;
    }

    /** The forward into {@code out}, its intermediates from {@code a}. */
    State forward(McanKernels.Arena a, float[] x, McanKernels.Mask xm, float[] y, McanKernels.Mask ym, int batch, int lx, int ly, float[] out) {
        int rows = batch * lx, h = op.hidden();
        State s = new State();
        float[] s1 = a.floats(rows * h);
        System.arraycopy(x, 0, s1, 0, rows * h);
        s.selfAttention = selfAttention.forward(runtime, a, x, x, x, xm, batch, lx, lx, null, s1, true);
        s.x1 = a.floats(rows * h);
        s.norm1 = norm1.forward(runtime, a, rows, s1, s.x1);
        float[] s2 = a.floats(rows * h);
        System.arraycopy(s.x1, 0, s2, 0, rows * h);
        s.guidedAttention = guidedAttention.forward(runtime, a, s.x1, y, y, ym, batch, lx, ly, null, s2, true);
        s.x2 = a.floats(rows * h);
        s.norm2 = norm2.forward(runtime, a, rows, s2, s.x2);
        s.r = a.floats(rows * op.ffn());
        float[] s3 = a.floats(rows * h);
        ffn.forward(runtime, rows, s.x2, s.r, s3);
        s.norm3 = norm3.forward(runtime, a, rows, s3, out);
        return s;
    }

    /**
     * Every gradient given a forward's state: dx into {@code dx} (written), y's into {@code dy} (written, or
     * added with {@code accumulateDy}); the parameters' gradients fresh. {@code ones}: at least B·max(Lx, Ly) ones.
     */
    GuidedAttentionUnit.Gradients backward(McanKernels.Arena a, State s, float[] x, McanKernels.Mask xm, float[] y, McanKernels.Mask ym, int batch, int lx,
            int ly, float[] gradOut, float[] ones, float[] dx, float[] dy, boolean accumulateDy) {
        int rows = batch * lx, h = op.hidden();
        float[][] n = new float[6][h];
        float[] ds = a.floats(rows * h), dz = a.floats(rows * h), dr = a.floats(rows * op.ffn());
        norm3.backward(runtime, rows, s.norm3, gradOut, ds, n[4], n[5]);
        LinearGradients[] f = ffn.backward(runtime, rows, s.x2, s.r, ds, dr, dz, ones);
        norm2.backward(runtime, rows, s.norm2, dz, ds, n[2], n[3]);
        System.arraycopy(ds, 0, dz, 0, rows * h); // dx1 = ds2 + (the guided attention's query gradient)
        LinearGradients[] g2 = guidedAttention.backward(runtime, a, s.guidedAttention, s.x1, y, y, ym, batch, lx, ly, ds, ones, dz, true, dy,
                accumulateDy, null, false);
        norm1.backward(runtime, rows, s.norm1, dz, ds, n[0], n[1]);
        System.arraycopy(ds, 0, dx, 0, rows * h);
        LinearGradients[] g1 = selfAttention.backward(runtime, a, s.selfAttention, x, x, x, xm, batch, lx, lx, ds, ones, dx, true, null, false, null, false);
        // the attentions' input gradients are folded into dx and dy: their records carry the layers only
        return new GuidedAttentionUnit.Gradients(dx, dy, new MultiHeadAttention.Gradients(null, null, null, g1[0], g1[1], g1[2], g1[3]),
                new MultiHeadAttention.Gradients(null, null, null, g2[0], g2[1], g2[2], g2[3]), f[0], f[1], new LinearGradients(n[0], n[1]),
                new LinearGradients(n[2], n[3]), new LinearGradients(n[4], n[5]));
    }
}
