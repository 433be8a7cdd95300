package io.bifuse.cpu;

import io.bifuse.LayerNorm;
import io.bifuse.Linear;
import io.bifuse.LinearGradients;
import io.bifuse.MultiHeadAttention;
import io.bifuse.ObjectMask;

/**
 * The float32 pieces that MCAN's CPU backends ({@link MultiHeadAttentionCpu}, {@link SelfAttentionUnitCpu},
 * {@link GuidedAttentionUnitCpu}, {@link McanEncoderDecoderCpu}) are built from: the key padding
 * ({@link Mask}), the multi-head attention with its projections ({@link Attention}), the LayerNorm of either
 * variant ({@link Norm}), the feed-forward block ({@link FeedForward}) and the scratch slots a call's
 * intermediates live in ({@link Arena}).
 *
 * <p>Every GEMM goes through {@link Sgemm} (directly or by {@link CpuLinear}); the per-row passes (softmax,
 * LayerNorm, ReLU) are split into pieces by shape only, and every reduction over rows (a LayerNorm's gain
 * and bias gradients) runs in row order inside one piece: results are bitwise the same for every thread
 * count.
 */
final class McanKernels {
    private McanKernels() {}

    /** Rows of the per-row passes per task: about this many floats of work, whatever the thread count. */
    private static final int ROW_WORK = 1 << 14;

    /** Consecutive scratch slots of one lease: each intermediate of a call takes the next slot. */
    static final class Arena {
        final Scratch.Lease lease;
        private int next, nextDouble;

        /** Float slots from {@code first}, double slots from 0. */
        Arena(Scratch.Lease lease, int first) {
            this(lease, first, 0);
        }

        Arena(Scratch.Lease lease, int first, int firstDouble) {
            this.lease = lease;
            this.next = first;
            this.nextDouble = firstDouble;
        }

        /** An arena over the slots after this one's so far (this one's slots stay as they are). */
        Arena after() { return new Arena(lease, next, nextDouble); }

        float[] floats(int n) { return lease.floats(next++, n); }

        double[] doubles(int n) { return lease.doubles(nextDouble++, n); }

    }

    /** Which keys are real: per sample a count and, where some are padding, a flag per key. */
    static final class Mask {
        final int len;
        private final int[] counts;   // null: every key real
        private final boolean[] real; // B × len, null when counts is

        private Mask(int len, int[] counts, boolean[] real) {
            this.len = len;
            this.counts = counts;
            this.real = real;
        }

        static Mask of(ObjectMask m, int batch, int len) {
            if (m == null) return new Mask(len, null, null);
            int[] counts = m.counts(), idx = m.indices();
            boolean[] real = new boolean[batch * len];
            boolean padded = false;
            for (int b = 0; b < batch; b++) {
                for (int c = 0; c < counts[b]; c++) real[b * len + idx[b * len + c]] = true;
                padded |= counts[b] != len;
            }
            return padded ? new Mask(len, counts, real) : new Mask(len, null, null);
        }

        int count(int b) { return counts == null ? len : counts[b]; }

        boolean real(int b, int j) { return real == null || real[b * len + j]; }
    }

    /**
     * Row {@code i}'s softmax in place over {@code lk} scores at {@code off}, as mcan-vqa's masked_fill(−1e9):
     * a padded key gets exactly 0 when the sample has a real key (exp(−1e9 − max) is 0), and every key
     * 1/lk when none is real (all scores equal). The max and the sum are taken in double.
     */
    static void softmaxRow(float[] s, int off, int lk, Mask mask, int b) {
        int count = mask.count(b);
        if (count == 0) {
            java.util.Arrays.fill(s, off, off + lk, (float) (1.0 / lk));
            return;
        }
        float m = Float.NEGATIVE_INFINITY;
        if (count == lk) {
            for (int j = 0; j < lk; j++) m = Math.max(m, s[off + j]);
            double sum = 0;
            for (int j = 0; j < lk; j++) {
                float e = (float) Math.exp(s[off + j] - m);
                s[off + j] = e;
                sum += e;
            }
            float inv = (float) (1 / sum);
            for (int j = 0; j < lk; j++) s[off + j] *= inv;
            return;
        }
        for (int j = 0; j < lk; j++) if (mask.real(b, j)) m = Math.max(m, s[off + j]);
        double sum = 0;
        for (int j = 0; j < lk; j++) {
            float e = mask.real(b, j) ? (float) Math.exp(s[off + j] - m) : 0f;
            s[off + j] = e;
            sum += e;
        }
        float inv = (float) (1 / sum);
        for (int j = 0; j < lk; j++) s[off + j] *= inv;
    }

    /**
     * The softmax's backward in place: {@code d[j] ← p[j]·(d[j] − Σ_t p[t]·d[t])·scale} for a real key, 0 for a
     * padded one and for every key of a sample without real keys (masked_fill's scores are constants).
     */
    static void softmaxBackwardRow(float[] p, float[] d, int off, int lk, float scale, Mask mask, int b) {
        int count = mask.count(b);
        if (count == 0) {
            java.util.Arrays.fill(d, off, off + lk, 0f);
            return;
        }
        double dot = 0;
        for (int j = 0; j < lk; j++) dot += (double) p[off + j] * d[off + j];
        float c = (float) dot;
        for (int j = 0; j < lk; j++) d[off + j] = p[off + j] * (d[off + j] - c) * scale;
        if (count != lk) for (int j = 0; j < lk; j++) if (!mask.real(b, j)) d[off + j] = 0f;
    }

    /** {@code y = max(y, 0)} on {@code n} floats. */
    static void relu(CpuRuntime rt, float[] y, int n) {
        rt.parallelRanges(n, ROW_WORK * 4, (from, to) -> {
            for (int i = from; i < to; i++) y[i] = Math.max(y[i], 0f); // branch-free: vectorizes; NaN stays NaN, as the reference's
        });
    }

    /** {@code d[i] = 0} where {@code r[i] <= 0} (ReLU's backward, r its output), on {@code n} floats. */
    static void reluBackward(CpuRuntime rt, float[] r, float[] d, int n) {
        rt.parallelRanges(n, ROW_WORK * 4, (from, to) -> {
            for (int i = from; i < to; i++) d[i] = r[i] > 0 ? d[i] : 0f;
        });
    }

    /** {@code dW = dyᵀ·x} ({@code out × in}) and {@code db = Σ_rows dy} (when {@code bias}), fresh, for a column block of dy. */
    static LinearGradients parameterGradients(CpuRuntime rt, int rows, float[] dy, int dyOff, int lddy, int out, float[] x, int ldx, int in, boolean bias,
            float[] ones) {
        float[] dW = new float[out * in];
        Sgemm.gemm(rt, true, false, out, in, rows, 1f, dy, dyOff, lddy, x, 0, ldx, 0f, dW, 0, in);
        float[] db = null;
        if (bias) {
            db = new float[out];
            Sgemm.gemm(rt, false, false, 1, out, rows, 1f, ones, 0, rows, dy, dyOff, lddy, 0f, db, 0, out);
        }
        return new LinearGradients(dW, db);
    }

    /** The layers stacked by rows ({@code Σ out × in}); a bias when any has one (zeros for the others). */
    static Linear stack(Linear... layers) {
        int in = layers[0].in(), out = 0;
        boolean bias = false;
        for (Linear l : layers) {
            out += l.out();
            bias |= l.hasBias();
        }
        float[] w = new float[out * in], b = bias ? new float[out] : null;
        int at = 0;
        for (Linear l : layers) {
            l.copyWeightTo(w, at * in);
            if (l.hasBias()) l.copyBiasTo(b, at);
            at += l.out();
        }
        return new Linear(out, in, w, b);
    }

    /**
     * One multi-head attention prepared once: the projections as {@link CpuLinear}s (self-attention: one
     * {@code 3H × H} layer for q, k and v; guided: q alone and one {@code 2H × H} layer for k and v over the
     * guide; general: three), the merge, and the attention core per (sample, head): {@code S = scale·Q Kᵀ}
     * and {@code O = P V} as two GEMMs with the masked softmax between them, all (sample, head) pairs in one
     * {@link CpuRuntime#parallelFor}.
     */
    static final class Attention {
        enum Kind { SELF, GUIDED, GENERAL }

        final Kind kind;
        final int heads, d, hidden, out, dq, dk, dv;
        final float scale;
        private final CpuLinear q, k, v, fused, merge;
        private final boolean qBias, kBias, vBias;

        Attention(MultiHeadAttention op, Kind kind) {
            MultiHeadAttention.Weights w = op.weights();
            this.kind = kind;
            heads = op.heads();
            d = op.headDim();
            hidden = op.hidden();
            out = op.out();
            dq = op.queryDim();
            dk = op.keyDim();
            dv = op.valueDim();
            scale = (float) op.scale();
            qBias = w.query().hasBias();
            kBias = w.key().hasBias();
            vBias = w.value().hasBias();
            merge = new CpuLinear(w.merge());
            switch (kind) {
                case SELF -> {
                    fused = new CpuLinear(stack(w.query(), w.key(), w.value()));
                    q = k = v = null;
                }
                case GUIDED -> {
                    q = new CpuLinear(w.query());
                    fused = new CpuLinear(stack(w.key(), w.value()));
                    k = v = null;
                }
                default -> {
                    q = new CpuLinear(w.query());
                    k = new CpuLinear(w.key());
                    v = new CpuLinear(w.value());
                    fused = null;
                }
            }
        }

        /** A forward's projections (views with offset and row stride), probabilities and heads' outputs. */
        static final class State {
            float[] q, k, v, p, o;
            int qOff, kOff, vOff, ldq, ldk, ldv;
        }

        /** The floats a call over these sizes needs, checked before anything is allocated. */
        void checkSizes(int batch, int lq, int lk) {
            elements("attention maps", batch, heads, lq, lk);
            switch (kind) {
                case SELF -> elements("projections", batch, lq, 3L * hidden);
                case GUIDED -> {
                    elements("projections", batch, lq, hidden);
                    elements("projections", batch, lk, 2L * hidden);
                }
                default -> elements("projections", batch, Math.max(lq, lk), hidden);
            }
        }

        /**
         * Projections, scores, softmax and {@code P V}: the state ({@code p}: the attention maps, or null for
         * a scratch array); then, unless {@code outArr} is null (a backward's recomputation), {@code outArr (+)= O W_mᵀ + b_m}
         * ({@code B·Lq × Out}).
         */
        State forward(CpuRuntime rt, Arena a, float[] x, float[] kin, float[] vin, Mask mask, int batch, int lq, int lk, float[] p, float[] outArr,
                boolean accumulate) {
            checkSizes(batch, lq, lk);
            int rq = batch * lq, rk = batch * lk, h = hidden;
            State s = new State();
            switch (kind) {
                case SELF -> {
                    float[] qkv = a.floats(rq * 3 * h);
                    fused.forward(rt, rq, x, 0, h, qkv, 0, 3 * h, false);
                    s.q = s.k = s.v = qkv;
                    s.qOff = 0;
                    s.kOff = h;
                    s.vOff = 2 * h;
                    s.ldq = s.ldk = s.ldv = 3 * h;
                }
                case GUIDED -> {
                    s.q = a.floats(rq * h);
                    q.forward(rt, rq, x, 0, dq, s.q, 0, h, false);
                    float[] kv = a.floats(rk * 2 * h);
                    fused.forward(rt, rk, kin, 0, dk, kv, 0, 2 * h, false);
                    s.k = s.v = kv;
                    s.kOff = 0;
                    s.vOff = h;
                    s.ldq = h;
                    s.ldk = s.ldv = 2 * h;
                }
                default -> {
                    s.q = a.floats(rq * h);
                    s.k = a.floats(rk * h);
                    s.v = a.floats(rk * h);
                    q.forward(rt, rq, x, 0, dq, s.q, 0, h, false);
                    k.forward(rt, rk, kin, 0, dk, s.k, 0, h, false);
                    v.forward(rt, rk, vin, 0, dv, s.v, 0, h, false);
                    s.ldq = s.ldk = s.ldv = h;
                }
            }
            s.p = p != null ? p : a.floats(batch * heads * lq * lk);
            s.o = a.floats(rq * h);
            core(rt, s, mask, batch, lq, lk);
            if (outArr != null) merge.forward(rt, rq, s.o, 0, h, outArr, 0, out, accumulate);
            return s;
        }

        private void core(CpuRuntime rt, State s, Mask mask, int batch, int lq, int lk) {
            float[] qa = s.q, ka = s.k, va = s.v, p = s.p, o = s.o;
            int h = hidden;
            rt.parallelFor(batch * heads, t -> {
                int b = t / heads, c0 = (t % heads) * d, pOff = t * lq * lk;
                Sgemm.gemm(rt, false, true, lq, lk, d, scale, qa, s.qOff + b * lq * s.ldq + c0, s.ldq, ka, s.kOff + b * lk * s.ldk + c0, s.ldk, 0f,
                        p, pOff, lk);
                for (int i = 0; i < lq; i++) softmaxRow(p, pOff + i * lk, lk, mask, b);
                Sgemm.gemm(rt, false, false, lq, d, lk, 1f, p, pOff, lk, va, s.vOff + b * lk * s.ldv + c0, s.ldv, 0f, o, b * lq * h + c0, h);
            });
        }

        /**
         * Every gradient given {@code gradOut} ({@code B·Lq × Out}) and a forward's state: the input gradients
         * into {@code dX} (the query's; self-attention: of the one input, all three projections' parts), {@code dKin}
         * and {@code dVin} (guided: the guide's, k and v parts summed, into {@code dKin}), each written or, with its
         * flag, added; the layers' gradients returned fresh (query, key, value, merge; the key bias's exact zeros).
         * {@code ones}: at least {@code B·max(Lq, Lk)} ones.
         */
        LinearGradients[] backward(CpuRuntime rt, Arena a, State s, float[] x, float[] kin, float[] vin, Mask mask, int batch, int lq, int lk,
                float[] gradOut, float[] ones, float[] dX, boolean accX, float[] dKin, boolean accK, float[] dVin, boolean accV) {
            int rq = batch * lq, rk = batch * lk, h = hidden;
            float[] dO = a.floats(rq * h);
            merge.backwardInput(rt, rq, gradOut, 0, out, dO, 0, h, false);
            LinearGradients gm = parameterGradients(rt, rq, gradOut, 0, out, out, s.o, h, h, merge.bias != null, ones);
            float[] dS = a.floats(batch * heads * lq * lk);
            // the projection-space gradients, laid out as the projections are
            float[] gq, gk, gv;
            switch (kind) {
                case SELF -> gq = gk = gv = a.floats(rq * 3 * h);
                case GUIDED -> {
                    gq = a.floats(rq * h);
                    gk = gv = a.floats(rk * 2 * h);
                }
                default -> {
                    gq = a.floats(rq * h);
                    gk = a.floats(rk * h);
                    gv = a.floats(rk * h);
                }
            }
            float[] p = s.p, qa = s.q, ka = s.k, va = s.v;
            rt.parallelFor(batch * heads, t -> {
                int b = t / heads, c0 = (t % heads) * d, pOff = t * lq * lk;
                int qs = s.qOff + b * lq * s.ldq + c0, ks = s.kOff + b * lk * s.ldk + c0, vs = s.vOff + b * lk * s.ldv + c0, os = b * lq * h + c0;
                Sgemm.gemm(rt, true, false, lk, d, lq, 1f, p, pOff, lk, dO, os, h, 0f, gv, vs, s.ldv);          // dV = Pᵀ dO
                Sgemm.gemm(rt, false, true, lq, lk, d, 1f, dO, os, h, va, vs, s.ldv, 0f, dS, pOff, lk);         // dP = dO Vᵀ
                for (int i = 0; i < lq; i++) softmaxBackwardRow(p, dS, pOff + i * lk, lk, scale, mask, b);    // dS (scaled)
                Sgemm.gemm(rt, false, false, lq, d, lk, 1f, dS, pOff, lk, ka, ks, s.ldk, 0f, gq, qs, s.ldq);    // dQ = dS K
                Sgemm.gemm(rt, true, false, lk, d, lq, 1f, dS, pOff, lk, qa, qs, s.ldq, 0f, gk, ks, s.ldk);     // dK = dSᵀ Q
            });
            LinearGradients gqL, gkL, gvL;
            switch (kind) {
                case SELF -> {
                    fused.backwardInput(rt, rq, gq, 0, 3 * h, dX, 0, h, accX);
                    gqL = parameterGradients(rt, rq, gq, 0, 3 * h, h, x, dq, dq, qBias, ones);
                    gkL = parameterGradients(rt, rq, gq, h, 3 * h, h, x, dk, dk, false, ones);
                    gvL = parameterGradients(rt, rq, gq, 2 * h, 3 * h, h, x, dv, dv, vBias, ones);
                }
                case GUIDED -> {
                    q.backwardInput(rt, rq, gq, 0, h, dX, 0, dq, accX);
                    fused.backwardInput(rt, rk, gk, 0, 2 * h, dKin, 0, dk, accK);
                    gqL = parameterGradients(rt, rq, gq, 0, h, h, x, dq, dq, qBias, ones);
                    gkL = parameterGradients(rt, rk, gk, 0, 2 * h, h, kin, dk, dk, false, ones);
                    gvL = parameterGradients(rt, rk, gk, h, 2 * h, h, kin, dv, dv, vBias, ones);
                }
                default -> {
                    q.backwardInput(rt, rq, gq, 0, h, dX, 0, dq, accX);
                    k.backwardInput(rt, rk, gk, 0, h, dKin, 0, dk, accK);
                    v.backwardInput(rt, rk, gv, 0, h, dVin, 0, dv, accV);
                    gqL = parameterGradients(rt, rq, gq, 0, h, h, x, dq, dq, qBias, ones);
                    gkL = parameterGradients(rt, rk, gk, 0, h, h, kin, dk, dk, false, ones);
                    gvL = parameterGradients(rt, rk, gv, 0, h, h, vin, dv, dv, vBias, ones);
                }
            }
            // the key bias shifts a query's scores alike, which the softmax cancels: exactly zero
            if (kBias) gkL = new LinearGradients(gkL.weight(), new float[h]);
            return new LinearGradients[] {gqL, gkL, gvL, gm};
        }
    }

    /**
     * A LayerNorm over rows of width n prepared once. Forward per row: mean and the sum of squares in double
     * (two passes), {@code y = a ⊙ (x − μ)/s + b}; the row's μ, 1/s and {@code k} kept (x itself stays with the
     * caller). Backward per row in double, with {@code ĝ = gy ⊙ a} and {@code x_c = x − μ}:
     * {@code gc = ĝ/s − (Σ ĝ x_c)·k/s²·x_c}, {@code gx = gc − mean(gc)}, {@code k = 1/((n−1)σ)} (MCAN,
     * {@code s = σ + eps}) or {@code 1/(n s)} (PyTorch). Double there because that difference cancels: at n = 2
     * the normalized row is (almost) a constant and gx is ~eps/σ of its terms, beyond float32. The gain's and
     * bias's gradients are column sums over the rows in row order (double accumulators), per block of columns.
     */
    static final class Norm {
        private final float[] gain, bias;
        final int n;
        private final boolean mcan;
        private final double eps;

        Norm(LayerNorm ln, LayerNorm.Affine a) {
            gain = a.gain();
            bias = a.bias();
            n = gain.length;
            mcan = ln.variant() == LayerNorm.Variant.MCAN;
            eps = ln.eps();
        }

        /** Per row: μ, 1/s and k; {@code x} the forward's input (kept by the caller, unchanged until the backward). */
        static final class State {
            float[] x;
            double[] mu, rstd, c;
        }

        /** {@code y = LN(x)} for {@code rows} rows ({@code y} must not be {@code x}: the backward reads x). */
        State forward(CpuRuntime rt, Arena a, int rows, float[] x, float[] y) {
            State s = new State();
            s.x = x;
            s.mu = a.doubles(rows);
            s.rstd = a.doubles(rows);
            s.c = a.doubles(rows);
            double[] mus = s.mu, rstd = s.rstd, cc = s.c;
            rt.parallelRanges(rows, Math.max(1, ROW_WORK / n), (from, to) -> {
                for (int r = from; r < to; r++) {
                    int o = r * n;
                    double mu = 0;
                    for (int j = 0; j < n; j++) mu += x[o + j];
                    mu /= n;
                    double ss = 0;
                    for (int j = 0; j < n; j++) {
                        double e = x[o + j] - mu;
                        ss += e * e;
                    }
                    double sd, c;
                    if (mcan) {
                        double sigma = Math.sqrt(ss / (n - 1));
                        sd = sigma + eps;
                        c = 1 / ((n - 1) * sigma);
                    } else {
                        sd = Math.sqrt(ss / n + eps);
                        c = 1 / (n * sd);
                    }
                    double inv = 1 / sd;
                    mus[r] = mu;
                    rstd[r] = inv;
                    cc[r] = c;
                    for (int j = 0; j < n; j++) y[o + j] = (float) (gain[j] * ((x[o + j] - mu) * inv) + bias[j]);
                }
            });
            return s;
        }

        /** {@code gx} (may be {@code gy}) given {@code gy}; the gain's and bias's gradients written into {@code dGain}, {@code dBias}. */
        void backward(CpuRuntime rt, int rows, State s, float[] gy, float[] gx, float[] dGain, float[] dBias) {
            float[] x = s.x;
            double[] mus = s.mu, rstd = s.rstd, cc = s.c;
            rt.parallelRanges(n, 64, (c0, c1) -> {
                double[] g = new double[c1 - c0], b = new double[c1 - c0];
                for (int r = 0; r < rows; r++) {
                    int o = r * n;
                    double mu = mus[r], inv = rstd[r];
                    for (int j = c0; j < c1; j++) {
                        g[j - c0] += gy[o + j] * ((x[o + j] - mu) * inv);
                        b[j - c0] += gy[o + j];
                    }
                }
                for (int j = c0; j < c1; j++) {
                    dGain[j] = (float) g[j - c0];
                    dBias[j] = (float) b[j - c0];
                }
            });
            rt.parallelRanges(rows, Math.max(1, ROW_WORK / n), (from, to) -> {
                for (int r = from; r < to; r++) {
                    int o = r * n;
                    double mu = mus[r], inv = rstd[r], dot = 0, sg = 0, sx = 0;
                    for (int j = 0; j < n; j++) {
                        double gh = (double) gy[o + j] * gain[j], xc = x[o + j] - mu;
                        dot += gh * xc;
                        sg += gh;
                        sx += xc;
                    }
                    double k = dot * cc[r] * inv * inv, mean = (sg * inv - k * sx) / n;
                    for (int j = 0; j < n; j++) gx[o + j] = (float) ((double) gy[o + j] * gain[j] * inv - k * (x[o + j] - mu) - mean);
                }
            });
        }
    }

    /** The feed-forward block {@code s = y + W2 relu(W1 y + b1) + b2} prepared once (two {@link CpuLinear}s). */
    static final class FeedForward {
        final int h, f;
        private final CpuLinear hidden, out;

        FeedForward(Linear ffnHidden, Linear ffnOut) {
            hidden = new CpuLinear(ffnHidden);
            out = new CpuLinear(ffnOut);
            h = ffnHidden.in();
            f = ffnHidden.out();
        }

        /** {@code r = relu(W1 y + b1)} ({@code rows × F}) and {@code s = y + W2 r + b2}. */
        void forward(CpuRuntime rt, int rows, float[] y, float[] r, float[] s) {
            hidden.forward(rt, rows, y, 0, h, r, 0, f, false);
            relu(rt, r, rows * f);
            System.arraycopy(y, 0, s, 0, rows * h);
            out.forward(rt, rows, r, 0, f, s, 0, h, true);
        }

        /** {@code dy = ds + W1ᵀ dr} given {@code ds}, {@code dr} ({@code rows × F}) scratch; the two layers' gradients. */
        LinearGradients[] backward(CpuRuntime rt, int rows, float[] y, float[] r, float[] ds, float[] dr, float[] dy, float[] ones) {
            out.backwardInput(rt, rows, ds, 0, h, dr, 0, f, false);
            reluBackward(rt, r, dr, rows * f);
            LinearGradients g2 = parameterGradients(rt, rows, ds, 0, h, h, r, f, f, out.bias != null, ones);
            LinearGradients g1 = parameterGradients(rt, rows, dr, 0, f, f, y, h, h, hidden.bias != null, ones);
            System.arraycopy(ds, 0, dy, 0, rows * h);
            hidden.backwardInput(rt, rows, dr, 0, f, dy, 0, h, true);
            return new LinearGradients[] {g1, g2};
        }
    }

    static int elements(String what, long... dims) { return CpuBackend.elements(what, dims); }
}
