package io.bifuse.cpu;

import io.bifuse.CompactBilinear;
import io.bifuse.Linear;
import io.bifuse.LinearGradients;
import io.bifuse.McbAttention;
import io.bifuse.Normalization;
import java.util.Arrays;

/**
 * The float32 CPU backend of {@link McbAttention} (the math: its class comment), over the {@code R = B·L}
 * cell rows {@code r = b·L + s}.
 *
 * <p>Forward. The question's sketch spectrum {@code Q_b = FFT(Ψ(q_b))} is made once per sample. The cells
 * go in chunks of rows (their size fixed by d1 and R, at most about 4M floats per buffer): for each pair
 * of rows, one complex FFT of both cells' sketches packed ({@code 2^e·Ψ(I_r) + i·Ψ(I_{r+1})}, {@code 2^e}
 * balancing their norms), the spectral products {@code Q·Y} of both packed again, one more FFT, and the
 * two convolutions come out as the real and imaginary parts, written straight into the chunk's
 * {@code u = ssqrt(z)} rows (per-row {@code Σu²} in double). The hidden 1×1 conv is one GEMM per chunk,
 * {@code P' = U·W1ᵀ} ({@link Sgemm}); the l2 scale is applied afterwards ({@code pre = inv·P' + b1}, since
 * the conv is linear), so the whole {@code L × d1} map of a sample is never held, for either
 * {@link McbAttention.L2Scope}. Then ReLU, the logits GEMM ({@link CpuLinear}), the softmax over the cells
 * (sums in double), the glimpses {@code v̂_b = α_b·I_b} (a GEMM per sample), the fusion pooling
 * ({@link CompactBilinearKernels}, per sample) and the answer GEMM. Kept: {@code B × L × H} (P' and h), never
 * {@code B × L × d1}.
 *
 * <p>Backward: the forward recomputed (nothing is cached between calls), the answer layer and the fusion
 * pooling backward, the attention's weighted-sum and softmax backward (GEMMs per sample), the logits and
 * ReLU backward, then the cell chunks again: each chunk's u rows recomputed, {@code dW1 += (inv·dp)ᵀ·U}
 * (one GEMM per chunk, chunks in order) and {@code dT = (inv·dp)·W1}, the l2 backward's
 * {@code ds·<u, dt>} term taken from {@code Σ_r <P'_r, dp_r>} (no d1-long sum), the signed-sqrt derivative
 * {@code 0.5/(|u| + eps)}, and per row pair one FFT of both {@code dz}, the cells' gradient spectra
 * {@code G·conj(Q)} packed into one more FFT (gathered into dI), and {@code G·conj(Y)} summed per sample in
 * the spectral domain, so the question's attention gradient costs one FFT per sample.
 *
 * <p>Threads: the pairs of rows of a chunk, the samples, and the GEMMs' tiles in parallel
 * ({@link CpuRuntime}); every reduction (a chunk's GEMM, the per-sample sums over cells, the spectral sums
 * in row order) has one order fixed by the shapes, so results are bitwise the same for every thread count.
 * Memory: intermediates from a pooled {@link Scratch} (a call allocates what it returns), each checked
 * against a Java array's limit ({@link CpuBackend#elements}) before allocation. Immutable and thread-safe.
 */
public final class McbAttentionCpu extends CpuBackend<McbAttention> implements McbAttention.Backend {
    /** Floats per chunk buffer (the u rows, dT, the spectral rows): about 16 MB each. */
    private static final long CHUNK_FLOATS = 1L << 22;

    private final CompactBilinearKernels att, fus;
    private final CpuLinear hidden, logits, answer; // hidden without its bias (the l2 scale comes between)
    private final float[] hiddenBias;               // or null
    private final boolean logitsBias;
    private final Normalization attNorm;
    private final boolean cellScope;
    private final int dq, dv, d1, hd, gs, d2, as, half1;
    private final Scratch scratch = new Scratch(), tasks = new Scratch();

    public McbAttentionCpu(McbAttention op) {
        this(op, CpuRuntime.defaults());
    }

    public McbAttentionCpu(McbAttention op, CpuRuntime runtime) {
        super(op, "an McbAttention", Backends.FP32, runtime);
        McbAttention.Weights w = op.weights();
        this.att = new CompactBilinearKernels(op.attention());
        this.fus = new CompactBilinearKernels(op.fusion());
        Linear h = w.hidden();
        this.hidden = new CpuLinear(new Linear(h.out(), h.in(), h.weight(), null));
        this.hiddenBias = h.hasBias() ? h.bias() : null;
        this.logits = new CpuLinear(w.logits());
        this.logitsBias = w.logits().hasBias();
        this.answer = new CpuLinear(w.answer());
        this.attNorm = op.attention().normalization();
        this.cellScope = op.scope() == McbAttention.L2Scope.CELL;
        this.dq = op.dq();
        this.dv = op.dv();
        this.d1 = op.d1();
        this.hd = op.hidden();
        this.gs = op.glimpses();
        this.d2 = op.d2();
        this.as = op.answers();
        this.half1 = d1 / 2 + 1;
    }

    /** {@code q (B × Dq)}, {@code image (B × L × Dv)} → {@code B × A}. */
    @Override public float[] forward(float[] q, float[] image, int batch, int cells) {
        op.checkInputs(q, image, batch, cells);
        try (Scratch.Lease l = scratch.lease()) {
            return trace(l, q, image, batch, cells, null).out;
        }
    }

    /** The forward, also returning the attention maps α ({@code B × G × L}). */
    @Override public McbAttention.Result forwardWithAttention(float[] q, float[] image, int batch, int cells) {
        op.checkInputs(q, image, batch, cells);
        float[] alpha = new float[elements("McbAttention attention", batch, gs, cells)];
        try (Scratch.Lease l = scratch.lease()) {
            return new McbAttention.Result(trace(l, q, image, batch, cells, alpha).out, alpha);
        }
    }

    // Call-lease slots.
    private static final int Q_RE = 0, Q_IM = 1, PRAW = 2, HID = 3, LOGIT = 4, ALPHA = 5, VHAT = 6, U2 = 7, UBUF = 8, DTBUF = 9,
            SBUF = 10, QACC_RE = 11, QACC_IM = 12, DU2 = 13, DVHAT = 14, DALPHA = 15, DA = 16, DH = 17, ONES = 18, DPS = 19;
    private static final int SUMSQ = 0, DOTS = 1;

    /** What the forward leaves for the backward (arrays from the lease, valid until it closes). */
    private record Trace(int rows, int chunk, float[] qRe, float[] qIm, float[] pRaw, float[] h, float[] alpha, float[] vhat, float[] u2,
                         double[] sumsq, float[] out) {}

    private Trace trace(Scratch.Lease l, float[] q, float[] image, int batch, int cells, float[] alphaOut) {
        int rows = batch * cells; // checkInputs: fits an int
        int chunk = chunkRows(rows);
        // every batch-dependent intermediate, checked before any is allocated
        int qLen = elements("McbAttention question spectra", batch, half1);
        int rh = elements("McbAttention hidden activations", rows, hd);
        int rg = elements("McbAttention logits", rows, gs);
        int bgl = elements("McbAttention attention", batch, gs, cells);
        int vLen = elements("McbAttention glimpses", batch, gs, dv);
        int u2Len = elements("McbAttention fusion", batch, d2);
        int outLen = elements("McbAttention output", batch, as);
        int cLen = elements("McbAttention cell chunk", chunk, d1);
        float[] qRe = l.floats(Q_RE, qLen), qIm = l.floats(Q_IM, qLen), pRaw = l.floats(PRAW, rh), h = l.floats(HID, rh);
        float[] logit = l.floats(LOGIT, rg), alpha = alphaOut != null ? alphaOut : l.floats(ALPHA, bgl), vhat = l.floats(VHAT, vLen);
        float[] u2 = l.floats(U2, u2Len), ubuf = l.floats(UBUF, cLen);
        double[] sumsq = l.doubles(SUMSQ, rows);
        float[] out = new float[outLen];

        questionSpectra(q, batch, qRe, qIm);
        for (int c0 = 0; c0 < rows; c0 += chunk) {
            int c1 = Math.min(rows, c0 + chunk), n = c1 - c0, first = c0;
            runtime.parallelFor((n + 1) / 2, t -> cellPair(image, cells, first, first + 2 * t, Math.min(c1, first + 2 * t + 2), qRe, qIm, ubuf, sumsq));
            hidden.forward(runtime, n, ubuf, 0, d1, pRaw, c0 * hd, hd, false);
        }
        // pre = inv·P' + b1, h = ReLU(pre)
        runtime.parallelFor(batch, b -> {
            double mapScale = cellScope ? 0 : mapScale(sumsq, b, cells, false);
            for (int s = 0; s < cells; s++) {
                int r = b * cells + s;
                float inv = (float) (cellScope ? CompactBilinearKernels.l2Scale(attNorm, sumsq[r]) : mapScale);
                for (int k = 0; k < hd; k++) {
                    float p = inv * pRaw[r * hd + k] + (hiddenBias == null ? 0f : hiddenBias[k]);
                    h[r * hd + k] = p > 0f ? p : 0f;
                }
            }
        });
        logits.forward(runtime, rows, h, 0, hd, logit, 0, gs, false);
        runtime.parallelFor(batch, b -> {
            softmax(logit, alpha, b, cells);
            Sgemm.gemm(runtime, false, false, gs, dv, cells, 1f, alpha, b * gs * cells, cells, image, b * cells * dv, dv, 0f, vhat, b * gs * dv, dv);
            Fft.Work w = fus.fft.work();
            try (Scratch.Lease tl = tasks.lease()) {
                fus.forward(vhat, b * gs * dv, q, b * dq, u2, b * d2, tl, w);
            } finally {
                fus.fft.release(w);
            }
        });
        answer.forward(runtime, batch, u2, 0, d2, out, 0, as, false);
        return new Trace(rows, chunk, qRe, qIm, pRaw, h, alpha, vhat, u2, sumsq, out);
    }

    /** Rows per chunk: even, fixed by R and d1 only (at most about CHUNK_FLOATS floats per buffer). */
    private int chunkRows(int rows) {
        long c = Math.max(2, CHUNK_FLOATS / Math.max(1, d1));
        c -= c % 2;
        return (int) Math.min(c, rows);
    }

    /** The l2 scale of sample b's map ({@code derivative}: its ds instead). */
    private double mapScale(double[] sumsq, int b, int cells, boolean derivative) {
        double ss = 0;
        for (int s = 0; s < cells; s++) ss += sumsq[b * cells + s];
        return derivative ? CompactBilinearKernels.l2ScaleDerivative(attNorm, ss) : CompactBilinearKernels.l2Scale(attNorm, ss);
    }

    /** {@code Q_b[k] = FFT(Ψ(q_b))[k]}, {@code k <= d1/2} (the rest is its conjugate: Ψ(q) is real). */
    private void questionSpectra(float[] q, int batch, float[] qRe, float[] qIm) {
        runtime.parallelFor(batch, b -> {
            Fft.Work w = att.fft.work();
            try (Scratch.Lease tl = tasks.lease()) {
                float[] pr = tl.floats(0, d1), pi = tl.floats(1, d1);
                Arrays.fill(pr, 0, d1, 0f);
                Arrays.fill(pi, 0, d1, 0f);
                att.sketchX(q, b * dq, 1f, pr, 0);
                att.fft.forward(pr, 0, pi, 0, w);
                System.arraycopy(pr, 0, qRe, b * half1, half1);
                System.arraycopy(pi, 0, qIm, b * half1, half1);
            } finally {
                att.fft.release(w);
            }
        });
    }

    /**
     * Rows {@code [r0, r1)} ({@code r1 − r0} is 1 or 2) of the chunk starting at {@code c0}: {@code u = ssqrt(z)} into
     * {@code ubuf} (row {@code r − c0}), unreachable bins exactly 0, {@code Σu²} into {@code sumsq[r]}; returns the
     * exponent e of the cells' balance {@code 2^e}.
     */
    private int cellPair(float[] image, int cells, int c0, int r0, int r1, float[] qRe, float[] qIm, float[] ubuf, double[] sumsq) {
        Fft.Work w = att.fft.work();
        try (Scratch.Lease tl = tasks.lease()) {
            return cellPair(tl, w, image, cells, c0, r0, r1, qRe, qIm, ubuf, sumsq);
        } finally {
            att.fft.release(w);
        }
    }

    private int cellPair(Scratch.Lease tl, Fft.Work w, float[] image, int cells, int c0, int r0, int r1, float[] qRe, float[] qIm, float[] ubuf,
            double[] sumsq) {
        boolean two = r1 - r0 == 2;
        float[] pr = tl.floats(0, d1), pi = tl.floats(1, d1), wr = tl.floats(2, d1), wi = two ? null : tl.floats(3, d1);
        int e = two ? CompactBilinearKernels.balance(image, r0 * dv, dv, image, (r0 + 1) * dv, dv) : 0;
        Arrays.fill(pr, 0, d1, 0f);
        Arrays.fill(pi, 0, d1, 0f);
        att.sketchY(image, r0 * dv, Math.scalb(1f, e), pr, 0);
        if (two) att.sketchY(image, (r0 + 1) * dv, 1f, pi, 0);
        att.fft.forward(pr, 0, pi, 0, w);
        // W = Q_b0·Y0' + i·Q_b1·Y1, written as conj(W)/d: its forward FFT is z0' + i·z1 (see CompactBilinearKernels.product)
        int q0 = (r0 / cells) * half1, q1 = two ? ((r0 + 1) / cells) * half1 : q0;
        float sc = 1f / d1;
        int o0 = (r0 - c0) * d1, o1 = o0 + d1;
        float[] outIm = two ? ubuf : wi;
        int imOff = two ? o1 : 0;
        for (int k = 0; k <= d1 / 2; k++) {
            int m = k == 0 ? 0 : d1 - k;
            float ar = pr[k], ai = pi[k], br = pr[m], bi = pi[m];
            float y0r = 0.5f * (ar + br), y0i = 0.5f * (ai - bi);  // Y0' (from the real part)
            float y1r = 0.5f * (ai + bi), y1i = 0.5f * (br - ar);  // Y1
            float a0r = qRe[q0 + k], a0i = qIm[q0 + k], a1r = qRe[q1 + k], a1i = qIm[q1 + k];
            float z0r = a0r * y0r - a0i * y0i, z0i = a0r * y0i + a0i * y0r;
            float z1r = two ? a1r * y1r - a1i * y1i : 0f, z1i = two ? a1r * y1i + a1i * y1r : 0f;
            // W[k] = Z0 + i·Z1, W[−k] = conj(Z0) + i·conj(Z1); stored conjugated, times 1/d
            ubuf[o0 + k] = sc * (z0r - z1i);
            outIm[imOff + k] = -sc * (z0i + z1r);
            if (m != k) {
                ubuf[o0 + m] = sc * (z0r + z1i);
                outIm[imOff + m] = sc * (z0i - z1r);
            }
        }
        att.fft.forward(ubuf, o0, outIm, imOff, w);
        // The imaginary part came out as −z1 (the conjugate); z0 carries 2^e.
        att.clearEmpty(ubuf, o0);
        if (two) att.clearEmpty(ubuf, o1);
        float un = Math.scalb(1f, -e);
        sumsq[r0] = root(ubuf, o0, un);
        if (two) sumsq[r0 + 1] = root(ubuf, o1, -1f);
        return e;
    }

    /** {@code u = ssqrt(scale·z)} in place over one row; returns {@code Σu²}. */
    private double root(float[] a, int off, float scale) {
        double ss = 0;
        for (int j = off; j < off + d1; j++) {
            float u = CompactBilinearKernels.root(attNorm, scale * a[j]);
            a[j] = u;
            ss += (double) u * u;
        }
        return ss;
    }

    /** α for sample b, each glimpse over the cells (max-shifted, sums in double), layout {@code B × G × L}. */
    private void softmax(float[] logit, float[] alpha, int b, int cells) {
        for (int g = 0; g < gs; g++) {
            float mx = Float.NEGATIVE_INFINITY;
            for (int s = 0; s < cells; s++) mx = Math.max(mx, logit[(b * cells + s) * gs + g]);
            double sum = 0;
            int at = (b * gs + g) * cells;
            for (int s = 0; s < cells; s++) {
                float e = (float) Math.exp(logit[(b * cells + s) * gs + g] - mx);
                alpha[at + s] = e;
                sum += e;
            }
            float inv = (float) (1 / sum);
            for (int s = 0; s < cells; s++) alpha[at + s] *= inv;
        }
    }

    /** Every gradient given {@code gradOut = ∂L/∂out} ({@code B × A}). */
    @Override public McbAttention.Gradients backward(float[] q, float[] image, float[] gradOut, int batch, int cells) {
        op.checkInputs(q, image, batch, cells);
        CompactBilinear.checkLength("gradOut", gradOut, batch, op.answers());
        try (Scratch.Lease l = scratch.lease()) {
            return backward(l, q, image, gradOut, batch, cells);
        }
    }

    private McbAttention.Gradients backward(Scratch.Lease l, float[] q, float[] image, float[] gradOut, int batch, int cells) {
        Trace t = trace(l, q, image, batch, cells, null);
        int rows = t.rows, chunk = t.chunk;
        int qAccLen = elements("McbAttention question gradient spectra", batch, half1);
        int rh = rows * hd, rg = rows * gs, bgl = batch * gs * cells;
        int sLen = elements("McbAttention cell chunk", chunk, 2L * half1);
        float[] du2 = l.floats(DU2, batch * d2), dvhat = l.floats(DVHAT, batch * gs * dv), dalpha = l.floats(DALPHA, bgl);
        float[] da = l.floats(DA, rg), dh = l.floats(DH, rh), ones = CpuLinear.ones(l, ONES, Math.max(rows, batch));
        float[] dps = l.floats(DPS, rh), ubuf = l.floats(UBUF, chunk * d1), dt = l.floats(DTBUF, chunk * d1), sbuf = l.floats(SBUF, sLen);
        float[] qAccRe = l.floats(QACC_RE, qAccLen), qAccIm = l.floats(QACC_IM, qAccLen);
        double[] dots = l.doubles(DOTS, rows);
        // outputs
        float[] gq = new float[batch * dq], gI = new float[image.length];
        Linear wa = op.weights().answer(), wl = op.weights().logits(), wh = op.weights().hidden();
        float[] dW3 = new float[as * d2], db3 = wa.hasBias() ? new float[as] : null;
        float[] dW2 = new float[gs * hd], db2 = logitsBias ? new float[gs] : null;
        float[] dW1 = new float[hd * d1], db1 = hiddenBias != null ? new float[hd] : null;

        // answer layer, fusion pooling
        answer.backwardParameters(runtime, batch, gradOut, 0, as, t.u2, 0, d2, dW3, db3, ones, false);
        answer.backwardInput(runtime, batch, gradOut, 0, as, du2, 0, d2, false);
        runtime.parallelFor(batch, b -> {
            Fft.Work w = fus.fft.work();
            try (Scratch.Lease tl = tasks.lease()) {
                fus.backward(t.vhat, b * gs * dv, q, b * dq, du2, b * d2, dvhat, b * gs * dv, gq, b * dq, tl, w);
            } finally {
                fus.fft.release(w);
            }
            // dα = dv̂·Iᵀ, dI = αᵀ·dv̂, then the softmax Jacobian
            Sgemm.gemm(runtime, false, true, gs, cells, dv, 1f, dvhat, b * gs * dv, dv, image, b * cells * dv, dv, 0f, dalpha, b * gs * cells, cells);
            Sgemm.gemm(runtime, true, false, cells, dv, gs, 1f, t.alpha, b * gs * cells, cells, dvhat, b * gs * dv, dv, 0f, gI, b * cells * dv, dv);
            for (int g = 0; g < gs; g++) {
                int at = (b * gs + g) * cells;
                double c = 0;
                for (int s = 0; s < cells; s++) c += (double) t.alpha[at + s] * dalpha[at + s];
                for (int s = 0; s < cells; s++) da[(b * cells + s) * gs + g] = (float) (t.alpha[at + s] * (dalpha[at + s] - c));
            }
        });
        // logits and ReLU
        logits.backwardParameters(runtime, rows, da, 0, gs, t.h, 0, hd, dW2, null, ones, false);
        logits.backwardInput(runtime, rows, da, 0, gs, dh, 0, hd, false);
        runtime.parallelFor(batch, b -> {
            for (int s = 0; s < cells; s++) {
                int r = b * cells + s;
                double dot = 0;
                float inv = (float) (cellScope ? CompactBilinearKernels.l2Scale(attNorm, t.sumsq[r]) : 0);
                for (int k = 0; k < hd; k++) {
                    int i = r * hd + k;
                    float p = t.h[i] > 0f ? dh[i] : 0f;
                    dh[i] = p;
                    dot += (double) t.pRaw[i] * p;
                }
                dots[r] = dot; // <P'_r, dp_r> = <u_r, W1ᵀ dp_r>
                if (cellScope) for (int k = 0; k < hd; k++) dps[r * hd + k] = inv * dh[r * hd + k];
            }
            if (!cellScope) {
                float inv = (float) mapScale(t.sumsq, b, cells, false);
                for (int i = b * cells * hd; i < (b + 1) * cells * hd; i++) dps[i] = inv * dh[i];
            }
        });
        if (db1 != null) Sgemm.gemm(runtime, false, false, 1, hd, rows, 1f, ones, 0, rows, dh, 0, hd, 0f, db1, 0, hd);
        // the l2 backward's ds·<u, dt> per block
        double[] cBlock = l.doubles(DOTS + 1, rows);
        for (int b = 0; b < batch; b++) {
            if (cellScope) {
                for (int s = 0; s < cells; s++) {
                    int r = b * cells + s;
                    cBlock[r] = CompactBilinearKernels.l2ScaleDerivative(attNorm, t.sumsq[r]) * dots[r];
                }
            } else {
                double dot = 0;
                for (int s = 0; s < cells; s++) dot += dots[b * cells + s];
                double c = mapScale(t.sumsq, b, cells, true) * dot;
                for (int s = 0; s < cells; s++) cBlock[b * cells + s] = c;
            }
        }
        // the cells again, chunk by chunk
        for (int c0 = 0; c0 < rows; c0 += chunk) {
            int c1 = Math.min(rows, c0 + chunk), n = c1 - c0, first = c0;
            runtime.parallelFor((n + 1) / 2, p -> cellPair(image, cells, first, first + 2 * p, Math.min(c1, first + 2 * p + 2), t.qRe, t.qIm, ubuf,
                    t.sumsq));
            hidden.backwardParameters(runtime, n, dps, c0 * hd, hd, ubuf, 0, d1, dW1, null, ones, c0 > 0);
            hidden.backwardInput(runtime, n, dps, c0 * hd, hd, dt, 0, d1, false);
            runtime.parallelFor((n + 1) / 2, p -> cellPairBackward(image, cells, first, first + 2 * p, Math.min(c1, first + 2 * p + 2), t.qRe,
                    t.qIm, ubuf, dt, cBlock, sbuf, gI));
            // the question's spectral sums, per sample in row order
            runtime.parallelFor(batch, b -> {
                int r0 = Math.max(first, b * cells), r1 = Math.min(c1, (b + 1) * cells);
                if (r0 >= r1) return;
                int at = b * half1;
                if (r0 == b * cells) {
                    Arrays.fill(qAccRe, at, at + half1, 0f);
                    Arrays.fill(qAccIm, at, at + half1, 0f);
                }
                for (int r = r0; r < r1; r++) {
                    int so = (r - first) * 2 * half1;
                    for (int k = 0; k < half1; k++) {
                        qAccRe[at + k] += sbuf[so + k];
                        qAccIm[at + k] += sbuf[so + half1 + k];
                    }
                }
            });
        }
        // dΨq = IFFT(Σ_s G_s·conj(Y_s)), gathered into dq
        runtime.parallelFor(batch, b -> {
            Fft.Work w = att.fft.work();
            try (Scratch.Lease tl = tasks.lease()) {
                float[] re = tl.floats(0, d1), im = tl.floats(1, d1);
                float sc = 1f / d1;
                int at = b * half1;
                for (int k = 0; k < half1; k++) {
                    int m = k == 0 ? 0 : d1 - k;
                    float vr = qAccRe[at + k], vi = qAccIm[at + k];
                    re[k] = sc * vr; // conj(V)/d at k, and at −k (V[−k] = conj(V[k]))
                    im[k] = -sc * vi;
                    if (m != k) {
                        re[m] = sc * vr;
                        im[m] = sc * vi;
                    }
                }
                if (d1 % 2 == 0) im[d1 / 2] = 0f;
                im[0] = 0f;
                att.fft.forward(re, 0, im, 0, w);
                att.gatherXAdd(re, 0, 1f, gq, b * dq);
            } finally {
                att.fft.release(w);
            }
        });
        return new McbAttention.Gradients(gq, gI, new LinearGradients(dW1, db1), new LinearGradients(dW2, db2), new LinearGradients(dW3, db3));
    }

    /**
     * Rows {@code [r0, r1)} of the chunk at {@code c0}, after {@code ubuf} holds their u rows and {@code dt} their
     * {@code W1ᵀ·(inv·dp)}: {@code dz = (dt + c·u)·0.5/(|u| + eps)}, one FFT of both rows' dz packed, then
     * {@code G·conj(Q)} of both packed into one FFT (gathered into gI), and {@code G·conj(Y)} per row into the
     * chunk's spectral rows {@code sbuf}.
     */
    private void cellPairBackward(float[] image, int cells, int c0, int r0, int r1, float[] qRe, float[] qIm, float[] ubuf, float[] dt,
            double[] cBlock, float[] sbuf, float[] gI) {
        Fft.Work w = att.fft.work();
        try (Scratch.Lease tl = tasks.lease()) {
            boolean two = r1 - r0 == 2;
            float[] pr = tl.floats(0, d1), pi = tl.floats(1, d1), gr = tl.floats(2, d1), gi = tl.floats(3, d1);
            // the cells' sketch spectrum again (cellPair's packing)
            int e = two ? CompactBilinearKernels.balance(image, r0 * dv, dv, image, (r0 + 1) * dv, dv) : 0;
            Arrays.fill(pr, 0, d1, 0f);
            Arrays.fill(pi, 0, d1, 0f);
            att.sketchY(image, r0 * dv, Math.scalb(1f, e), pr, 0);
            if (two) att.sketchY(image, (r0 + 1) * dv, 1f, pi, 0);
            att.fft.forward(pr, 0, pi, 0, w);
            // dz rows, packed with their own balance 2^f
            int o0 = (r0 - c0) * d1, o1 = o0 + d1;
            dz(ubuf, dt, o0, (float) cBlock[r0], gr);
            att.clearEmpty(gr, 0);
            if (two) {
                dz(ubuf, dt, o1, (float) cBlock[r0 + 1], gi);
                att.clearEmpty(gi, 0);
            } else {
                Arrays.fill(gi, 0, d1, 0f);
            }
            int f = two ? CompactBilinearKernels.balance(gr, 0, d1, gi, 0, d1) : 0;
            if (f != 0) {
                float sf = Math.scalb(1f, f);
                for (int j = 0; j < d1; j++) gr[j] *= sf;
            }
            att.fft.forward(gr, 0, gi, 0, w);
            int q0 = (r0 / cells) * half1, q1 = two ? ((r0 + 1) / cells) * half1 : q0;
            float sc = 1f / d1, unF = Math.scalb(1f, -f), unE = Math.scalb(1f, -e);
            int s0 = (r0 - c0) * 2 * half1, s1 = s0 + 2 * half1;
            // in place over (gr, gi): G0' = 2^f·G0 and G1 unpacked; V = G0'·conj(Q0) + i·G1·conj(Q1), stored as conj(V)/d
            for (int k = 0; k <= d1 / 2; k++) {
                int m = k == 0 ? 0 : d1 - k;
                float ar = gr[k], ai = gi[k], br = gr[m], bi = gi[m];
                float g0r = 0.5f * (ar + br), g0i = 0.5f * (ai - bi);
                float g1r = 0.5f * (ai + bi), g1i = 0.5f * (br - ar);
                float xr = pr[k], xi = pi[k], yr = pr[m], yi = pi[m];
                float y0r = 0.5f * (xr + yr), y0i = 0.5f * (xi - yi);  // Y0' = 2^e·Y0
                float y1r = 0.5f * (xi + yi), y1i = 0.5f * (yr - xr);  // Y1
                float a0r = qRe[q0 + k], a0i = qIm[q0 + k], a1r = qRe[q1 + k], a1i = qIm[q1 + k];
                // G·conj(Y) of each row, unscaled, for dq
                float u0 = unF * unE;
                sbuf[s0 + k] = u0 * (g0r * y0r + g0i * y0i);
                sbuf[s0 + half1 + k] = u0 * (g0i * y0r - g0r * y0i);
                if (two) {
                    sbuf[s1 + k] = g1r * y1r + g1i * y1i;
                    sbuf[s1 + half1 + k] = g1i * y1r - g1r * y1i;
                }
                float v0r = g0r * a0r + g0i * a0i, v0i = g0i * a0r - g0r * a0i; // G0'·conj(Q0)
                float v1r = g1r * a1r + g1i * a1i, v1i = g1i * a1r - g1r * a1i; // G1·conj(Q1)
                gr[k] = sc * (v0r - v1i);
                gi[k] = -sc * (v0i + v1r);
                if (m != k) {
                    gr[m] = sc * (v0r + v1i);
                    gi[m] = sc * (v0i - v1r);
                }
            }
            att.fft.forward(gr, 0, gi, 0, w); // dΨI0' = 2^f·dΨI0 in the real part, −dΨI1 in the imaginary part
            att.gatherYAdd(gr, 0, unF, gI, r0 * dv);
            if (two) att.gatherYAdd(gi, 0, -1f, gI, (r0 + 1) * dv);
        } finally {
            att.fft.release(w);
        }
    }

    /** {@code out[j] = (dt[o + j] + c·u[o + j])·0.5/(|u| + eps)} over one row (the l2 and signed-sqrt backward). */
    private void dz(float[] u, float[] dt, int o, float c, float[] out) {
        boolean sq = attNorm.signedSqrt();
        float eps = attNorm.signedSqrtGradEps();
        for (int j = 0; j < d1; j++) {
            float uj = u[o + j], g = dt[o + j] + c * uj;
            if (sq) {
                float r = Math.abs(uj) + eps;
                g = r > 0f ? g * (0.5f / r) : 0f;
            }
            out[j] = g;
        }
    }
}
