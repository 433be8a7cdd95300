package io.bifuse.cpu;

import io.bifuse.CompactBilinear;
import io.bifuse.Normalization;

/**
 * The float32 per-sample kernels of MCB ({@link CompactBilinear}), shared by {@link CompactBilinearCpu}
 * and {@link McbAttentionCpu}: count sketches, one packed complex FFT for both sketches, the spectral
 * products, the transforms back, the gathers, and the {@link Normalization} in float (its sums in
 * double). Immutable after construction (hashes copied, FFT plan made once); each call works in the
 * caller's {@link Scratch.Lease} (slots 0 to 5) and {@link Fft.Work}, so kernels run concurrently on
 * different samples.
 *
 * <p>Paths: small outer products ({@code Dx·Dy <= 2d(log2 d + 1)}) are summed directly (cheaper, and each
 * bin's error is relative to its own terms); otherwise the FFT route, with the real-output inverse and the
 * real gradient's spectrum through complex FFTs of length d/2 when d is even, and the bins that no pair of
 * hashes reaches written as exact zeros (see {@link #emptyBins}).
 *
 * <p>Packing two real signals {@code a + i·b} into one complex FFT costs the smaller of the two the
 * larger's absolute rounding error; so {@code x} is scaled by a power of two {@code 2^e} (exact) that
 * brings its norm to {@code y}'s before it is sketched, and the results are scaled back by {@code 2^−e}.
 * Inputs of very different sizes (the glimpses and the question, say) keep float32's relative accuracy.
 */
final class CompactBilinearKernels {
    final int dx, dy, d;
    private final int[] h1, h2;
    private final float[] s1, s2;
    final Normalization norm;
    final Fft fft;
    /**
     * Small products ({@code Dx·Dy <= 2·d·(log2 d + 1)}, about what the FFTs cost): the count sketch of the
     * outer product summed directly, which is also the more accurate: each bin's float32 error is relative
     * to its own few terms, where an FFT's is relative to the whole signal (what the signed sqrt's
     * derivative amplifies at small bins).
     */
    private final boolean direct;
    /** Even d: the plan of d/2 for real signals (and the half-length twiddles exp(2πi·k/d), k <= d/2); else null. */
    private final Fft half;
    private final float[] halfCos, halfSin;
    /** The bins no pair {@code (a, b)} hashes to ({@code (h1[a] + h2[b]) mod d}), or null: see {@link #emptyBins}. */
    private final int[] empty;

    CompactBilinearKernels(CompactBilinear op) {
        this.dx = op.dx();
        this.dy = op.dy();
        this.d = op.d();
        this.h1 = op.h1();
        this.h2 = op.h2();
        this.s1 = op.s1();
        this.s2 = op.s2();
        this.norm = op.normalization();
        this.fft = Fft.of(d);
        this.direct = (double) dx * dy <= 2.0 * d * (Math.log(d) / Math.log(2) + 1);
        this.empty = emptyBins(d, h1, h2); // also for McbAttention's cell path, which always takes the FFT
        if (d % 2 == 0) {
            int n = d / 2;
            half = Fft.of(n);
            halfCos = new float[n + 1];
            halfSin = new float[n + 1];
            for (int k = 0; k <= n; k++) {
                halfCos[k] = (float) Fft.cosTurn(k, d);
                halfSin[k] = (float) Fft.sinTurn(k, d);
            }
        } else {
            half = null;
            halfCos = halfSin = null;
        }
    }

    /**
     * The bins that are exactly 0 in the definition for every input (no pair of hashes reaches them), or
     * null when there are none (or when finding them would take more than 2^27 steps: then they are
     * assumed populated). A float32 FFT leaves rounding noise there, which the signed sqrt turns into an
     * O(1) relative error and its exact derivative into an unbounded one; so the kernels write those bins
     * as exact zeros, and zero the gradient there (it reaches no input in exact arithmetic).
     */
    static int[] emptyBins(int d, int[] h1, int[] h2) {
        int[] a = distinct(h1, d), b = distinct(h2, d);
        if ((long) a.length * b.length > 1L << 27) return null;
        boolean[] hit = new boolean[d];
        for (int x : a) {
            for (int y : b) {
                int j = x + y;
                hit[j >= d ? j - d : j] = true;
            }
        }
        int n = 0;
        for (boolean h : hit) if (!h) n++;
        if (n == 0) return null;
        int[] e = new int[n];
        n = 0;
        for (int j = 0; j < d; j++) if (!hit[j]) e[n++] = j;
        return e;
    }

    private static int[] distinct(int[] h, int d) {
        boolean[] seen = new boolean[d];
        int n = 0;
        for (int v : h) if (!seen[v]) { seen[v] = true; n++; }
        int[] r = new int[n];
        n = 0;
        for (int v = 0; v < d; v++) if (seen[v]) r[n++] = v;
        return r;
    }

    /** Zeroes the {@link #emptyBins} of {@code a[off, off + d)}. */
    void clearEmpty(float[] a, int off) {
        if (empty != null) for (int j : empty) a[off + j] = 0f;
    }

    /** {@code out[oo, oo + d) = normalize(MCB(x[xo, xo + Dx), y[yo, yo + Dy)))}. */
    void forward(float[] x, int xo, float[] y, int yo, float[] out, int oo, Scratch.Lease l, Fft.Work w) {
        pooled(x, xo, y, yo, out, oo, l, w);
        if (!norm.isIdentity()) normalizeForward(norm, out, oo, d, out, oo);
    }

    /** {@code out[oo, oo + d) = MCB(x, y)} before the normalization (lease slots 0 to 3, 6, 7). */
    void pooled(float[] x, int xo, float[] y, int yo, float[] out, int oo, Scratch.Lease l, Fft.Work w) {
        if (direct) {
            float[] sy = l.floats(0, dy);
            for (int c = 0; c < dy; c++) sy[c] = s2[c] * y[yo + c];
            java.util.Arrays.fill(out, oo, oo + d, 0f);
            for (int a = 0; a < dx; a++) {
                float xa = s1[a] * x[xo + a];
                int base = h1[a];
                for (int c = 0; c < dy; c++) {
                    int j = base + h2[c];
                    out[oo + (j >= d ? j - d : j)] += xa * sy[c];
                }
            }
        } else {
            float[] pr = l.floats(0, d), pi = l.floats(1, d);
            int e = sketch(x, xo, y, yo, pr, pi);
            fft.forward(pr, 0, pi, 0, w);
            convolution(pr, pi, e, out, oo, l, w);
        }
    }

    /**
     * {@code gx[gxo, +Dx)}, {@code gy[gyo, +Dy)}: the gradients of one sample given {@code g[go, go + d)}
     * (∂L/∂ of the normalized output), the forward recomputed.
     */
    void backward(float[] x, int xo, float[] y, int yo, float[] g, int go, float[] gx, int gxo, float[] gy, int gyo, Scratch.Lease l, Fft.Work w) {
        if (direct) {
            directBackward(x, xo, y, yo, g, go, gx, gxo, gy, gyo, l);
            return;
        }
        float[] pr = l.floats(0, d), pi = l.floats(1, d), gr = l.floats(3, d), gi = l.floats(4, d);
        int e = sketch(x, xo, y, yo, pr, pi);
        fft.forward(pr, 0, pi, 0, w);
        float[] gz = g;
        int gzo = go;
        if (!norm.isIdentity()) {
            float[] zr = l.floats(5, d);
            convolution(pr, pi, e, zr, 0, l, w);
            gz = l.floats(2, d);
            gzo = 0;
            normalizeBackward(norm, zr, 0, g, go, d, gz, 0);
            clearEmpty(gz, 0);
        }
        realSpectrum(gz, gzo, gr, gi, l, w); // G[k], k <= d/2: all gradientSpectrum reads
        gradientSpectrum(pr, pi, gr, gi, 1f / d);
        fft.forward(gr, 0, gi, 0, w); // conj(V)/d forward: dΨx in the real part, −2^e·dΨy in the imaginary part
        float back = -Math.scalb(1f, -e);
        for (int a = 0; a < dx; a++) gx[gxo + a] = s1[a] * gr[h1[a]];
        for (int c = 0; c < dy; c++) gy[gyo + c] = s2[c] * (back * gi[h2[c]]);
    }

    /**
     * {@code out[oo, +d) = x ⊛ y} from the packed spectrum of {@code (2^e·Ψx, Ψy)}, its unreachable bins exactly
     * 0. Even d: the product's half spectrum, then one complex FFT of length d/2 (the real-output inverse);
     * odd d: the full conjugated product and one FFT of length d. Uses lease slots 2, 3, 6, 7.
     */
    void convolution(float[] pr, float[] pi, int e, float[] out, int oo, Scratch.Lease l, Fft.Work w) {
        if (half == null) {
            float[] zi = l.floats(2, d);
            product(pr, pi, out, oo, zi, Math.scalb(1f / d, -e));
            fft.forward(out, oo, zi, 0, w); // conj(Z)/d forward: z in the real part (see product)
        } else {
            int n = d / 2;
            float[] hr = l.floats(2, n + 1), hi = l.floats(3, n + 1), cr = l.floats(6, n), ci = l.floats(7, n);
            for (int k = 0; k <= n; k++) {
                int m = k == 0 ? 0 : d - k;
                float ar = pr[k], ai = pi[k], br = pr[m], bi = pi[m];
                float xr = 0.5f * (ar + br), xi = 0.5f * (ai - bi);
                float yr = 0.5f * (ai + bi), yi = 0.5f * (br - ar);
                hr[k] = xr * yr - xi * yi;
                hi[k] = xr * yi + xi * yr;
            }
            // C[k] = E[k] + i·O[k], E = (Z[k] + Z[k+n])/2, O = (Z[k] − Z[k+n])/2·exp(2πi·k/d), Z[k+n] = conj(Z[n−k]);
            // IFFT_n(C) = z[2j] + i·z[2j+1], taken as the forward FFT of conj(C)/n
            float s = Math.scalb(1f / n, -e);
            for (int k = 0; k < n; k++) {
                float ar = hr[k], ai = hi[k], br = hr[n - k], bi = -hi[n - k];
                float er = 0.5f * (ar + br), ei = 0.5f * (ai + bi), dr = 0.5f * (ar - br), di = 0.5f * (ai - bi);
                float c = halfCos[k], sn = halfSin[k];
                float or = dr * c - di * sn, oi = dr * sn + di * c;
                cr[k] = s * (er - oi);
                ci[k] = -s * (ei + or);
            }
            Fft.Work hw = half.work();
            try {
                half.forward(cr, 0, ci, 0, hw);
            } finally {
                half.release(hw);
            }
            for (int j = 0; j < n; j++) {
                out[oo + 2 * j] = cr[j];
                out[oo + 2 * j + 1] = -ci[j];
            }
        }
        clearEmpty(out, oo);
    }

    /**
     * {@code G[k] = FFT(g[go, +d))[k]} of a real signal into {@code gr/gi[k]}, at least for {@code k <= d/2}
     * (even d: one FFT of length d/2; odd d: the full transform). Uses lease slots 6, 7.
     */
    void realSpectrum(float[] g, int go, float[] gr, float[] gi, Scratch.Lease l, Fft.Work w) {
        if (half == null) {
            System.arraycopy(g, go, gr, 0, d);
            java.util.Arrays.fill(gi, 0, d, 0f);
            fft.forward(gr, 0, gi, 0, w);
            return;
        }
        int n = d / 2;
        float[] cr = l.floats(6, n), ci = l.floats(7, n);
        for (int j = 0; j < n; j++) {
            cr[j] = g[go + 2 * j];
            ci[j] = g[go + 2 * j + 1];
        }
        Fft.Work hw = half.work();
        try {
            half.forward(cr, 0, ci, 0, hw);
        } finally {
            half.release(hw);
        }
        // E = FFT of the even samples, O of the odd ones, unpacked from C; G[k] = E[k] + exp(−2πi·k/d)·O[k]
        for (int k = 0; k <= n; k++) {
            int kk = k == n ? 0 : k, mk = k == 0 ? 0 : n - k;
            float ar = cr[kk], ai = ci[kk], br = cr[mk], bi = -ci[mk];
            float er = 0.5f * (ar + br), ei = 0.5f * (ai + bi);
            float or = 0.5f * (ai - bi), oi = -0.5f * (ar - br);
            float c = halfCos[k], sn = -halfSin[k];
            gr[k] = er + (or * c - oi * sn);
            gi[k] = ei + (or * sn + oi * c);
        }
    }

    /** The backward of the direct path: {@code ∂x[a] = s1[a]·Σ_c s2[c]·y[c]·gz[(h1[a] + h2[c]) mod d]}, and symmetrically. */
    private void directBackward(float[] x, int xo, float[] y, int yo, float[] g, int go, float[] gx, int gxo, float[] gy, int gyo, Scratch.Lease l) {
        float[] sy = l.floats(0, dy), gz = g, acc = l.floats(2, dy);
        int gzo = go;
        for (int c = 0; c < dy; c++) sy[c] = s2[c] * y[yo + c];
        if (!norm.isIdentity()) {
            float[] z = l.floats(5, d);
            pooled(x, xo, y, yo, z, 0, l, null);
            gz = l.floats(3, d);
            gzo = 0;
            normalizeBackward(norm, z, 0, g, go, d, gz, 0); // pooled wrote the same sy into slot 0
        }
        java.util.Arrays.fill(acc, 0, dy, 0f);
        for (int a = 0; a < dx; a++) {
            float xa = s1[a] * x[xo + a], sum = 0;
            int base = h1[a];
            for (int c = 0; c < dy; c++) {
                int j = base + h2[c];
                float gj = gz[gzo + (j >= d ? j - d : j)];
                sum += sy[c] * gj;
                acc[c] += xa * gj;
            }
            gx[gxo + a] = s1[a] * sum;
        }
        for (int c = 0; c < dy; c++) gy[gyo + c] = s2[c] * acc[c];
    }

    /** {@code pr = 2^e·Ψ(x)}, {@code pi = Ψ(y)}; returns {@code e}, the power of two that balances their norms. */
    private int sketch(float[] x, int xo, float[] y, int yo, float[] pr, float[] pi) {
        int e = balance(x, xo, dx, y, yo, dy);
        float sx = Math.scalb(1f, e);
        java.util.Arrays.fill(pr, 0, d, 0f);
        java.util.Arrays.fill(pi, 0, d, 0f);
        for (int a = 0; a < dx; a++) pr[h1[a]] += s1[a] * (sx * x[xo + a]);
        for (int c = 0; c < dy; c++) pi[h2[c]] += s2[c] * y[yo + c];
        return e;
    }

    /** {@code dst[dOff + h1[a]] += s1[a]·scale·x[xo + a]} (x's count sketch, added). */
    void sketchX(float[] x, int xo, float scale, float[] dst, int dOff) {
        for (int a = 0; a < dx; a++) dst[dOff + h1[a]] += s1[a] * (scale * x[xo + a]);
    }

    /** {@code dst[dOff + h2[c]] += s2[c]·scale·y[yo + c]} (y's count sketch, added). */
    void sketchY(float[] y, int yo, float scale, float[] dst, int dOff) {
        for (int c = 0; c < dy; c++) dst[dOff + h2[c]] += s2[c] * (scale * y[yo + c]);
    }

    /** {@code dst[dOff + a] += s1[a]·scale·src[so + h1[a]]} (the sketch's adjoint for x). */
    void gatherXAdd(float[] src, int so, float scale, float[] dst, int dOff) {
        for (int a = 0; a < dx; a++) dst[dOff + a] += s1[a] * (scale * src[so + h1[a]]);
    }

    /** {@code dst[dOff + c] += s2[c]·scale·src[so + h2[c]]} (the sketch's adjoint for y). */
    void gatherYAdd(float[] src, int so, float scale, float[] dst, int dOff) {
        for (int c = 0; c < dy; c++) dst[dOff + c] += s2[c] * (scale * src[so + h2[c]]);
    }

    /** The power of two nearest {@code ‖b‖/‖a‖} (0 where either is zero or not finite), kept where scaling stays normal. */
    static int balance(float[] a, int ao, int na, float[] b, int bo, int nb) {
        double sa = 0, sb = 0;
        for (int i = 0; i < na; i++) sa += (double) a[ao + i] * a[ao + i];
        for (int i = 0; i < nb; i++) sb += (double) b[bo + i] * b[bo + i];
        if (!(sa > 0) || !(sb > 0) || Double.isInfinite(sa) || Double.isInfinite(sb)) return 0;
        int e = (int) Math.round(0.5 * (Math.log(sb) - Math.log(sa)) / Math.log(2));
        return Math.max(-60, Math.min(60, e));
    }

    /**
     * From the packed spectrum {@code P = FFT(a + i·b)} of two real signals ({@code A = (P[k] + conj(P[−k]))/2},
     * {@code B = (P[k] − conj(P[−k]))/(2i)}), writes {@code scale·conj(A·B)} into {@code zr[zo..]}, {@code zi}:
     * the forward FFT of that is {@code scale·d·conj(IFFT(A·B))}, whose real part is the circular
     * convolution {@code scale·d·(a ⊛ b)} (real, so the conjugate changes nothing there).
     */
    void product(float[] pr, float[] pi, float[] zr, int zo, float[] zi, float scale) {
        for (int k = 0; k <= d / 2; k++) {
            int m = k == 0 ? 0 : d - k;
            float ar = pr[k], ai = pi[k], br = pr[m], bi = pi[m];
            float xr = 0.5f * (ar + br), xi = 0.5f * (ai - bi);
            float yr = 0.5f * (ai + bi), yi = 0.5f * (br - ar);
            float vr = xr * yr - xi * yi, vi = xr * yi + xi * yr;
            zr[zo + k] = scale * vr;
            zi[k] = -scale * vi;
            zr[zo + m] = scale * vr; // Z[−k] = conj(Z[k])
            zi[m] = scale * vi;
            if (m == k) zi[k] = 0f;
        }
    }

    /**
     * Given {@code G = FFT(g)} in (gr, gi) and the packed spectrum of (2^e·Ψx, Ψy), overwrites G with
     * {@code scale·conj(V)}, {@code V = G·conj(Y) + i·G·conj(X')}: forward-transformed, the real part is
     * {@code scale·d·IFFT(G·conj(Y))} = {@code d·scale·(g ⋆ Ψy)} and the imaginary part
     * {@code −2^e·scale·d·(g ⋆ Ψx)} (circular cross-correlations, both real).
     */
    void gradientSpectrum(float[] pr, float[] pi, float[] gr, float[] gi, float scale) {
        for (int k = 0; k <= d / 2; k++) {
            int m = k == 0 ? 0 : d - k;
            float ar = pr[k], ai = pi[k], br = pr[m], bi = pi[m];
            float xr = 0.5f * (ar + br), xi = 0.5f * (ai - bi);
            float yr = 0.5f * (ai + bi), yi = 0.5f * (br - ar);
            float g0 = gr[k], g1 = gi[k];
            float pAr = g0 * yr + g1 * yi, pAi = g1 * yr - g0 * yi; // G·conj(Y)
            float pBr = g0 * xr + g1 * xi, pBi = g1 * xr - g0 * xi; // G·conj(X')
            // conj(A + iB) at k, and at −k (where A, B are conjugated: g, Ψx, Ψy are real)
            gr[k] = scale * (pAr - pBi);
            gi[k] = -scale * (pAi + pBr);
            if (m != k) {
                gr[m] = scale * (pAr + pBi);
                gi[m] = scale * (pAi - pBr);
            }
        }
    }

    // ---- normalization in float (sums in double) ------------------------------------------------

    /** {@code sign(v)·sqrt|v|} or {@code v}. */
    static float root(Normalization n, float v) {
        return n.signedSqrt() ? Math.copySign((float) Math.sqrt(Math.abs(v)), v) : v;
    }

    /** The l2 scale {@code s} for a block whose {@code Σu² = sumsq}. */
    static double l2Scale(Normalization n, double sumsq) {
        return switch (n.l2()) {
            case NONE -> 1;
            case MAX_NORM -> 1 / Math.max(Math.sqrt(sumsq), n.l2Eps());
            case SUM_SQUARES -> 1 / Math.sqrt(sumsq + n.l2Eps());
        };
    }

    /** {@code ds} of {@code ∂u = s·g + ds·u·<u, g>} (0 where the l2 scale is constant or absent). */
    static double l2ScaleDerivative(Normalization n, double sumsq) {
        return switch (n.l2()) {
            case NONE -> 0;
            case MAX_NORM -> {
                double norm = Math.sqrt(sumsq);
                yield norm > n.l2Eps() ? -1 / (norm * norm * norm) : 0;
            }
            case SUM_SQUARES -> {
                double s = 1 / Math.sqrt(sumsq + n.l2Eps());
                yield -s * s * s;
            }
        };
    }

    /** {@code 0.5/(sqrt|z| + eps)}, 0 where that divides by 0, or 1 without a signed sqrt. */
    static float rootDerivative(Normalization n, float z) {
        if (!n.signedSqrt()) return 1f;
        float r = (float) Math.sqrt(Math.abs(z)) + n.signedSqrtGradEps();
        return r > 0 ? 0.5f / r : 0f;
    }

    /** {@code out[oo, +len) = normalize(z[zo, +len))} (may be in place). */
    static void normalizeForward(Normalization n, float[] z, int zo, int len, float[] out, int oo) {
        double sumsq = 0;
        for (int j = 0; j < len; j++) {
            float u = root(n, z[zo + j]);
            out[oo + j] = u;
            sumsq += (double) u * u;
        }
        if (n.l2() == Normalization.L2.NONE) return;
        float s = (float) l2Scale(n, sumsq);
        for (int j = oo; j < oo + len; j++) out[j] *= s;
    }

    /** {@code gz[gzo, +len) = ∂L/∂z} given {@code g = ∂L/∂normalize(z)} (gz may be z, not g). */
    static void normalizeBackward(Normalization n, float[] z, int zo, float[] g, int go, int len, float[] gz, int gzo) {
        double sumsq = 0, ug = 0;
        for (int j = 0; j < len; j++) {
            float u = root(n, z[zo + j]);
            sumsq += (double) u * u;
            ug += (double) u * g[go + j];
        }
        // s·g + ds·u·<u, g> cancels where g is nearly parallel to u (entirely at d = 1): in double, so
        // that only the operands' float rounding remains.
        double s = l2Scale(n, sumsq), c = l2ScaleDerivative(n, sumsq) * ug;
        for (int j = 0; j < len; j++) {
            float zj = z[zo + j];
            gz[gzo + j] = (float) ((s * g[go + j] + c * root(n, zj)) * rootDerivative(n, zj));
        }
    }
}
