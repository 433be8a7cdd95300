package io.bifuse.cpu;

import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentLinkedDeque;

/**
 * A float32 complex FFT plan for any length {@code n >= 1}, transforming in place; every twiddle,
 * chirp and table is made once, in double and rounded, when the plan is built.
 *
 * <h2>Convention and scaling</h2>
 * <ul>
 *   <li>{@link #forward}: {@code X[k] = Σ_j x[j]·exp(−2πi·jk/n)}, unscaled.</li>
 *   <li>{@link #inverse}: {@code x[j] = Σ_k X[k]·exp(+2πi·jk/n)}, also <b>unscaled</b>: there is no
 *       {@code 1/n} factor, so {@code inverse(forward(x)) == n·x} and the caller divides by {@code n}.</li>
 * </ul>
 * Data are split into a real array and an imaginary array, each read and written at its own offset.
 *
 * <h2>Algorithms</h2>
 * <ul>
 *   <li>Every prime factor of {@code n} at most {@value #MAX_RADIX}, and {@code n = n1·n2} with both
 *       factors at least {@value #MIN_SPLIT}: the four-step form. The data are viewed as an
 *       {@code n1 × n2} matrix; length-{@code n1} FFTs run down its columns, the result is multiplied by
 *       {@code exp(−2πi·k1·j2/n)} while it is transposed, and length-{@code n2} FFTs run down the columns
 *       of the transpose. Each column FFT is a self-sorting mixed-radix Stockham FFT (decimation in
 *       frequency, radices 4, 2, 3, 5 specialised, 7, 11, 13 generic) whose butterflies process whole
 *       matrix rows at once. Rows are separate arrays indexed from 0 because HotSpot's superword
 *       vectorizes a loop only when every array in it is indexed by the same expression (measured: a
 *       butterfly over offsets into flat arrays runs about 3x slower), so every butterfly here is a loop
 *       over a row that the JIT turns into SIMD code.</li>
 *   <li>Smooth but shorter: the same Stockham passes on the flat arrays (scalar).</li>
 *   <li>A prime factor above {@value #MAX_RADIX}: Bluestein's chirp-z identity, a circular convolution of
 *       power-of-two length {@code m >= 2n − 1} done with the four-step plan of {@code m}.</li>
 * </ul>
 * The inverse is the forward transform of the complex conjugate, conjugated back (negation is exact).
 *
 * <h2>Accuracy</h2>
 * Twiddles and chirps are computed in double from exactly reduced integer angles and rounded once to
 * float; the arithmetic is float32. Against an exact DFT the relative L2 error is a few times
 * {@code 2^-24·sqrt(log2 n)}: measured 1.4e-7 at n = 16000 and 32768, 2.8e-7 through Bluestein (FftTest
 * holds every length it tries to 2e-6).
 *
 * <h2>Threads and memory</h2>
 * A plan is immutable; the buffers of a transform are a {@link Work} that the caller takes from the plan
 * ({@link #work()}) and gives back ({@link #release}): pooled, one per concurrent caller, so after the
 * first calls a transform allocates nothing. Every result is a fixed sequence of float operations:
 * bitwise the same on every thread. Plans are cached by length in a small bounded map.
 */
final class Fft {
    /** Largest prime handled by a Cooley–Tukey butterfly; any larger prime factor sends n to Bluestein. */
    private static final int MAX_RADIX = 13;
    /** The four-step form needs rows (and columns) at least this long to vectorize. */
    private static final int MIN_SPLIT = 8;
    private static final int CACHE_LIMIT = 64;
    private static final int MAX_BLUESTEIN_M = 1 << 30;
    private static final ConcurrentHashMap<Integer, Fft> PLANS = new ConcurrentHashMap<>();

    private static final float SIN_60 = (float) (Math.sqrt(3.0) / 2.0);
    private static final float COS_72 = (float) cosTurn(1, 5), SIN_72 = (float) sinTurn(1, 5);
    private static final float COS_144 = (float) cosTurn(2, 5), SIN_144 = (float) sinTurn(2, 5);

    /**
     * One Stockham pass over {@code s} interleaved sequences of length {@code radix·m}:
     * {@code twRe/twIm[p·(radix−1) + t − 1] = exp(−2πi·pt/(radix·m))}; {@code rootCos/rootSin} (radix > 5 only)
     * {@code cos/sin(2πk/radix)}.
     */
    private record Stage(int radix, int m, int s, float[] twRe, float[] twIm, float[] rootCos, float[] rootSin) {}

    private final int n;
    // four-step
    private final int n1, n2;
    private final Stage[] stagesA, stagesC; // columns of length n1 (rows of n2), then of length n2 (rows of n1)
    private final float[][] midRe, midIm;   // [j2][k1]: exp(−2πi·k1·j2/n)
    // flat
    private final Stage[] stages;
    // Bluestein
    private final Fft inner;
    private final float[] chirpRe, chirpIm, kernelRe, kernelIm;

    private final ConcurrentLinkedDeque<Work> pool = new ConcurrentLinkedDeque<>();

    /** The buffers of one transform at a time (see the class comment). */
    static final class Work {
        final float[][] aRe, aIm, bRe, bIm, cRe, cIm, dRe, dIm; // four-step: n1 × n2 twice, n2 × n1 twice
        final float[] flatRe, flatIm;                           // flat: n; Bluestein: m
        final Work inner;                                       // Bluestein's plan of m

        private Work(Fft f) {
            if (f.stagesA != null) {
                aRe = new float[f.n1][f.n2]; aIm = new float[f.n1][f.n2]; bRe = new float[f.n1][f.n2]; bIm = new float[f.n1][f.n2];
                cRe = new float[f.n2][f.n1]; cIm = new float[f.n2][f.n1]; dRe = new float[f.n2][f.n1]; dIm = new float[f.n2][f.n1];
            } else {
                aRe = aIm = bRe = bIm = cRe = cIm = dRe = dIm = null;
            }
            int flat = f.stages != null ? f.n : f.inner != null ? f.inner.n : 0;
            flatRe = flat > 0 ? new float[flat] : null;
            flatIm = flat > 0 ? new float[flat] : null;
            inner = f.inner != null ? f.inner.work() : null;
        }
    }

    /**
     * The plan for length {@code n}, shared through a small cache.
     *
     * @throws IllegalArgumentException if {@code n < 1}, or if {@code n} needs Bluestein and its
     *         power-of-two convolution length would exceed 2^30
     */
    static Fft of(int n) {
        if (n < 1) throw new IllegalArgumentException("n must be >= 1, got n = " + n);
        Fft plan = PLANS.get(n);
        if (plan != null) return plan;
        // Built outside the map: a Bluestein plan fetches its inner plan through of(), and a nested
        // computeIfAbsent on the same map is not allowed.
        plan = new Fft(n);
        if (PLANS.size() >= CACHE_LIMIT) {
            var it = PLANS.keySet().iterator();
            if (it.hasNext()) {
                it.next();
                it.remove();
            }
        }
        Fft prior = PLANS.putIfAbsent(n, plan);
        return prior != null ? prior : plan;
    }

    private Fft(int n) {
        this.n = n;
        List<Integer> factors = smoothFactors(n);
        if (factors != null) {
            inner = null;
            chirpRe = chirpIm = kernelRe = kernelIm = null;
            int split = split(n, factors);
            if (split > 0) {
                n1 = split;
                n2 = n / split;
                stagesA = buildStages(n1, smoothFactors(n1));
                stagesC = buildStages(n2, smoothFactors(n2));
                midRe = new float[n2][n1];
                midIm = new float[n2][n1];
                for (int j2 = 0; j2 < n2; j2++) {
                    for (int k1 = 0; k1 < n1; k1++) {
                        long k = (long) k1 * j2; // < n
                        midRe[j2][k1] = (float) cosTurn(k, n);
                        midIm[j2][k1] = (float) -sinTurn(k, n);
                    }
                }
                stages = null;
            } else {
                n1 = n2 = 0;
                stagesA = stagesC = null;
                midRe = midIm = null;
                stages = buildStages(n, factors);
            }
            return;
        }
        n1 = n2 = 0;
        stagesA = stagesC = stages = null;
        midRe = midIm = null;
        long need = 2L * n - 1;
        if (need > MAX_BLUESTEIN_M) {
            throw new IllegalArgumentException("n = " + n + " is too large for a Bluestein transform (largest prime factor > "
                    + MAX_RADIX + " and 2n − 1 > 2^30)");
        }
        int m = Integer.highestOneBit((int) need);
        if (m < need) m <<= 1;
        inner = of(m);
        chirpRe = new float[n];
        chirpIm = new float[n];
        double[] cr = new double[n], ci = new double[n];
        long twoN = 2L * n;
        for (int j = 0; j < n; j++) {
            // exp(−πi·j²/n) = exp(−2πi·(j² mod 2n)/(2n)); j² reaches ~4.6e18 at most, inside long.
            long r = ((long) j * j) % twoN;
            cr[j] = cosTurn(r, twoN);
            ci[j] = -sinTurn(r, twoN);
            chirpRe[j] = (float) cr[j];
            chirpIm[j] = (float) ci[j];
        }
        // The kernel's spectrum FFT_m(conj(chirp) laid out circularly)/m, by the float plan of m: its
        // rounding is of the same size as the transforms' own.
        kernelRe = new float[m];
        kernelIm = new float[m];
        kernelRe[0] = (float) cr[0];
        kernelIm[0] = (float) -ci[0];
        for (int j = 1; j < n; j++) {
            kernelRe[j] = kernelRe[m - j] = (float) cr[j];
            kernelIm[j] = kernelIm[m - j] = (float) -ci[j];
        }
        Work w = inner.work();
        inner.forward(kernelRe, 0, kernelIm, 0, w);
        inner.release(w);
        float scale = 1f / m; // a power of two: exact
        for (int k = 0; k < m; k++) {
            kernelRe[k] *= scale;
            kernelIm[k] *= scale;
        }
    }

    /** The transform length. */
    int length() { return n; }

    /** A work buffer set for this plan, from its pool (new only when every pooled one is in use). */
    Work work() {
        Work w = pool.pollFirst();
        return w != null ? w : new Work(this);
    }

    /** Gives {@code w} (from {@link #work()} of this plan) back to the pool. */
    void release(Work w) {
        pool.addFirst(w);
    }

    /** In-place forward DFT of {@code re/im[off, off + n)} (unscaled), with a pooled {@link Work}. */
    void forward(float[] re, float[] im) {
        Work w = work();
        try {
            forward(re, 0, im, 0, w);
        } finally {
            release(w);
        }
    }

    /** In-place inverse DFT of {@code re/im[0, n)}, unscaled, with a pooled {@link Work}. */
    void inverse(float[] re, float[] im) {
        Work w = work();
        try {
            inverse(re, 0, im, 0, w);
        } finally {
            release(w);
        }
    }

    /**
     * In-place forward DFT of {@code re[ro, ro + n)}, {@code im[io, io + n)}: {@code X[k] = Σ_j x[j]·exp(−2πi·jk/n)},
     * without scaling; {@code w} from {@link #work()}. Entries outside the ranges are neither read nor written.
     */
    void forward(float[] re, int ro, float[] im, int io, Work w) {
        check(re, ro, im, io);
        if (n > 1) transform(re, ro, im, io, w);
    }

    /** In-place inverse DFT of {@code re[ro, ro + n)}, {@code im[io, io + n)}: {@code x[j] = Σ_k X[k]·exp(+2πi·jk/n)}, <b>not scaled</b>. */
    void inverse(float[] re, int ro, float[] im, int io, Work w) {
        check(re, ro, im, io);
        if (n == 1) return;
        negate(im, io, n);
        transform(re, ro, im, io, w);
        negate(im, io, n);
    }

    private void check(float[] re, int ro, float[] im, int io) {
        Objects.requireNonNull(re, "re");
        Objects.requireNonNull(im, "im");
        if (ro < 0 || io < 0) throw new IllegalArgumentException("offsets: expected >= 0, got " + ro + ", " + io);
        if (re.length - (long) ro < n) throw new IllegalArgumentException("re: expected length >= " + ((long) ro + n) + ", got " + re.length);
        if (im.length - (long) io < n) throw new IllegalArgumentException("im: expected length >= " + ((long) io + n) + ", got " + im.length);
        // The passes read re and im as independent inputs while writing both: one array only with disjoint ranges.
        if (re == im && ro < io + (long) n && io < ro + (long) n) {
            throw new IllegalArgumentException("re and im must be distinct arrays or disjoint ranges of one");
        }
    }

    private static void negate(float[] a, int off, int n) {
        for (int i = off; i < off + n; i++) a[i] = -a[i];
    }

    private void transform(float[] re, int ro, float[] im, int io, Work w) {
        if (stagesA != null) fourStep(re, ro, im, io, w);
        else if (stages != null) flat(re, ro, im, io, w.flatRe, w.flatIm);
        else bluestein(re, ro, im, io, w);
    }

    // ---- four-step -------------------------------------------------------------------------------

    private void fourStep(float[] re, int ro, float[] im, int io, Work w) {
        float[][] xr = w.aRe, xi = w.aIm, yr = w.bRe, yi = w.bIm;
        for (int j1 = 0; j1 < n1; j1++) {
            System.arraycopy(re, ro + j1 * n2, xr[j1], 0, n2);
            System.arraycopy(im, io + j1 * n2, xi[j1], 0, n2);
        }
        for (Stage st : stagesA) {
            rows(st, xr, xi, yr, yi, n2);
            float[][] t = xr; xr = yr; yr = t;
            t = xi; xi = yi; yi = t;
        }
        // transpose with the twiddles exp(−2πi·k1·j2/n): row k1 of x is column k1 of c
        float[][] cr = w.cRe, ci = w.cIm, dr = w.dRe, di = w.dIm;
        // In blocks of four source rows, so that each destination row is written four values at a time
        // from row references held in registers.
        int k1 = 0;
        for (; k1 + 4 <= n1; k1 += 4) {
            float[] r0 = xr[k1], r1 = xr[k1 + 1], r2 = xr[k1 + 2], r3 = xr[k1 + 3];
            float[] i0 = xi[k1], i1 = xi[k1 + 1], i2 = xi[k1 + 2], i3 = xi[k1 + 3];
            for (int j2 = 0; j2 < n2; j2++) {
                float[] or = cr[j2], oi = ci[j2], mr = midRe[j2], mi = midIm[j2];
                twiddle(r0[j2], i0[j2], mr, mi, or, oi, k1);
                twiddle(r1[j2], i1[j2], mr, mi, or, oi, k1 + 1);
                twiddle(r2[j2], i2[j2], mr, mi, or, oi, k1 + 2);
                twiddle(r3[j2], i3[j2], mr, mi, or, oi, k1 + 3);
            }
        }
        for (; k1 < n1; k1++) {
            float[] r0 = xr[k1], i0 = xi[k1];
            for (int j2 = 0; j2 < n2; j2++) twiddle(r0[j2], i0[j2], midRe[j2], midIm[j2], cr[j2], ci[j2], k1);
        }
        for (Stage st : stagesC) {
            rows(st, cr, ci, dr, di, n1);
            float[][] t = cr; cr = dr; dr = t;
            t = ci; ci = di; di = t;
        }
        // row k2 holds X[k1 + n1·k2], k1 < n1: natural order
        for (int k2 = 0; k2 < n2; k2++) {
            System.arraycopy(cr[k2], 0, re, ro + k2 * n1, n1);
            System.arraycopy(ci[k2], 0, im, io + k2 * n1, n1);
        }
    }

    private static void twiddle(float ar, float ai, float[] mr, float[] mi, float[] or, float[] oi, int k) {
        float tr = mr[k], ti = mi[k];
        or[k] = ar * tr - ai * ti;
        oi[k] = ar * ti + ai * tr;
    }

    /** One pass over row arrays of length {@code len}: row index as the flat pass's element index. */
    private static void rows(Stage st, float[][] xr, float[][] xi, float[][] yr, float[][] yi, int len) {
        switch (st.radix) {
            case 2 -> rows2(st, xr, xi, yr, yi, len);
            case 3 -> rows3(st, xr, xi, yr, yi, len);
            case 4 -> rows4(st, xr, xi, yr, yi, len);
            case 5 -> rows5(st, xr, xi, yr, yi, len);
            default -> rowsOdd(st, xr, xi, yr, yi, len);
        }
    }

    // Each pass: input r of sub-sequence p is row q + s·(p + r·m); output t of butterfly p goes to row
    // q + s·(radix·p + t), multiplied by exp(−2πi·pt/(radix·m)). Within a row, c runs over the batch.

    // HotSpot unrolls (and so vectorizes) only loops with small bodies: a whole radix-4 or radix-5
    // butterfly in one loop stays scalar (measured about 2.5x slower than the same work split). So each
    // butterfly is a few short loops over rows, the later ones in place on the output rows, each touching
    // at most eight rows. The rows are in L1, so the extra passes over them cost little.

    /** {@code p = a + b}, {@code q = a − b} (rows may be the inputs). */
    private static void sumDiff(float[] ar, float[] ai, float[] br, float[] bi, float[] pr, float[] pi, float[] qr, float[] qi, int len) {
        for (int c = 0; c < len; c++) {
            float xr = ar[c], xi = ai[c], yr = br[c], yi = bi[c];
            pr[c] = xr + yr;
            pi[c] = xi + yi;
            qr[c] = xr - yr;
            qi[c] = xi - yi;
        }
    }

    /** In place: {@code (s, u) → ((s − iu)·w1, (s + iu)·w2)}. */
    private static void rotatePair(float[] sr, float[] si, float[] ur, float[] ui, float w1r, float w1i, float w2r, float w2i, int len) {
        for (int c = 0; c < len; c++) {
            float a = sr[c], b = si[c], e = ur[c], f = ui[c];
            float v1r = a + f, v1i = b - e, v2r = a - f, v2i = b + e;
            sr[c] = v1r * w1r - v1i * w1i;
            si[c] = v1r * w1i + v1i * w1r;
            ur[c] = v2r * w2r - v2i * w2i;
            ui[c] = v2r * w2i + v2i * w2r;
        }
    }

    private static void rows2(Stage st, float[][] xr, float[][] xi, float[][] yr, float[][] yi, int len) {
        int m = st.m, s = st.s, sm = s * m;
        for (int p = 0; p < m; p++) {
            float w1r = st.twRe[p], w1i = st.twIm[p];
            for (int q = 0; q < s; q++) {
                int i0 = s * p + q, o0 = 2 * s * p + q;
                float[] a0r = xr[i0], a0i = xi[i0], a1r = xr[i0 + sm], a1i = xi[i0 + sm];
                float[] y0r = yr[o0], y0i = yi[o0], y1r = yr[o0 + s], y1i = yi[o0 + s];
                for (int c = 0; c < len; c++) {
                    float ar = a0r[c], ai = a0i[c], br = a1r[c], bi = a1i[c];
                    float dr = ar - br, di = ai - bi;
                    y0r[c] = ar + br;
                    y0i[c] = ai + bi;
                    y1r[c] = dr * w1r - di * w1i;
                    y1i[c] = dr * w1i + di * w1r;
                }
            }
        }
    }

    private static void rows3(Stage st, float[][] xr, float[][] xi, float[][] yr, float[][] yi, int len) {
        int m = st.m, s = st.s, sm = s * m;
        for (int p = 0; p < m; p++) {
            float w1r = st.twRe[2 * p], w1i = st.twIm[2 * p], w2r = st.twRe[2 * p + 1], w2i = st.twIm[2 * p + 1];
            for (int q = 0; q < s; q++) {
                int i0 = s * p + q, o0 = 3 * s * p + q;
                float[] a0r = xr[i0], a0i = xi[i0];
                float[] y0r = yr[o0], y0i = yi[o0], y1r = yr[o0 + s], y1i = yi[o0 + s], y2r = yr[o0 + 2 * s], y2i = yi[o0 + 2 * s];
                sumDiff(xr[i0 + sm], xi[i0 + sm], xr[i0 + 2 * sm], xi[i0 + 2 * sm], y1r, y1i, y2r, y2i, len); // b, d
                for (int c = 0; c < len; c++) {
                    float x0r = a0r[c], x0i = a0i[c], br = y1r[c], bi = y1i[c];
                    y0r[c] = x0r + br;
                    y0i[c] = x0i + bi;
                    y1r[c] = x0r - 0.5f * br; // S
                    y1i[c] = x0i - 0.5f * bi;
                }
                for (int c = 0; c < len; c++) { // U = sin60·d
                    y2r[c] *= SIN_60;
                    y2i[c] *= SIN_60;
                }
                rotatePair(y1r, y1i, y2r, y2i, w1r, w1i, w2r, w2i, len);
            }
        }
    }

    private static void rows4(Stage st, float[][] xr, float[][] xi, float[][] yr, float[][] yi, int len) {
        int m = st.m, s = st.s, sm = s * m;
        for (int p = 0; p < m; p++) {
            int w = 3 * p;
            float w1r = st.twRe[w], w1i = st.twIm[w], w2r = st.twRe[w + 1], w2i = st.twIm[w + 1], w3r = st.twRe[w + 2], w3i = st.twIm[w + 2];
            for (int q = 0; q < s; q++) {
                int i0 = s * p + q, o0 = 4 * s * p + q;
                float[] y0r = yr[o0], y0i = yi[o0], y1r = yr[o0 + s], y1i = yi[o0 + s];
                float[] y2r = yr[o0 + 2 * s], y2i = yi[o0 + 2 * s], y3r = yr[o0 + 3 * s], y3i = yi[o0 + 3 * s];
                // t0 = a0 + a2 (y0), t1 = a0 − a2 (y1), t2 = a1 + a3 (y2), a1 − a3 (y3)
                sumDiff(xr[i0], xi[i0], xr[i0 + 2 * sm], xi[i0 + 2 * sm], y0r, y0i, y1r, y1i, len);
                sumDiff(xr[i0 + sm], xi[i0 + sm], xr[i0 + 3 * sm], xi[i0 + 3 * sm], y2r, y2i, y3r, y3i, len);
                for (int c = 0; c < len; c++) { // out0 = t0 + t2, out2 = (t0 − t2)·w2
                    float ar = y0r[c], ai = y0i[c], br = y2r[c], bi = y2i[c];
                    float ur = ar - br, ui = ai - bi;
                    y0r[c] = ar + br;
                    y0i[c] = ai + bi;
                    y2r[c] = ur * w2r - ui * w2i;
                    y2i[c] = ur * w2i + ui * w2r;
                }
                // t3 = (a1 − a3)·(−i); out1 = (t1 + t3)·w1 = (t1 − i·e)·w1, out3 = (t1 + i·e)·w3 with e = a1 − a3
                rotatePair(y1r, y1i, y3r, y3i, w1r, w1i, w3r, w3i, len);
            }
        }
    }

    private static void rows5(Stage st, float[][] xr, float[][] xi, float[][] yr, float[][] yi, int len) {
        int m = st.m, s = st.s, sm = s * m;
        for (int p = 0; p < m; p++) {
            int w = 4 * p;
            float w1r = st.twRe[w], w1i = st.twIm[w], w2r = st.twRe[w + 1], w2i = st.twIm[w + 1];
            float w3r = st.twRe[w + 2], w3i = st.twIm[w + 2], w4r = st.twRe[w + 3], w4i = st.twIm[w + 3];
            for (int q = 0; q < s; q++) {
                int i0 = s * p + q, o0 = 5 * s * p + q;
                float[] a0r = xr[i0], a0i = xi[i0];
                float[] y0r = yr[o0], y0i = yi[o0], y1r = yr[o0 + s], y1i = yi[o0 + s], y2r = yr[o0 + 2 * s], y2i = yi[o0 + 2 * s];
                float[] y3r = yr[o0 + 3 * s], y3i = yi[o0 + 3 * s], y4r = yr[o0 + 4 * s], y4i = yi[o0 + 4 * s];
                sumDiff(xr[i0 + sm], xi[i0 + sm], xr[i0 + 4 * sm], xi[i0 + 4 * sm], y1r, y1i, y4r, y4i, len); // b1, d1
                sumDiff(xr[i0 + 2 * sm], xi[i0 + 2 * sm], xr[i0 + 3 * sm], xi[i0 + 3 * sm], y2r, y2i, y3r, y3i, len); // b2, d2
                for (int c = 0; c < len; c++) {
                    float x0r = a0r[c], x0i = a0i[c], b1r = y1r[c], b1i = y1i[c], b2r = y2r[c], b2i = y2i[c];
                    y0r[c] = x0r + b1r + b2r;
                    y0i[c] = x0i + b1i + b2i;
                }
                for (int c = 0; c < len; c++) { // S1, S2
                    float x0r = a0r[c], x0i = a0i[c], b1r = y1r[c], b1i = y1i[c], b2r = y2r[c], b2i = y2i[c];
                    y1r[c] = x0r + COS_72 * b1r + COS_144 * b2r;
                    y1i[c] = x0i + COS_72 * b1i + COS_144 * b2i;
                    y2r[c] = x0r + COS_144 * b1r + COS_72 * b2r;
                    y2i[c] = x0i + COS_144 * b1i + COS_72 * b2i;
                }
                for (int c = 0; c < len; c++) { // U1 (y4), U2 (y3)
                    float d1r = y4r[c], d1i = y4i[c], d2r = y3r[c], d2i = y3i[c];
                    y4r[c] = SIN_72 * d1r + SIN_144 * d2r;
                    y4i[c] = SIN_72 * d1i + SIN_144 * d2i;
                    y3r[c] = SIN_144 * d1r - SIN_72 * d2r;
                    y3i[c] = SIN_144 * d1i - SIN_72 * d2i;
                }
                // y1 = S1 − iU1, y4 = S1 + iU1, y2 = S2 − iU2, y3 = S2 + iU2, each times its twiddle
                rotatePair(y1r, y1i, y4r, y4i, w1r, w1i, w4r, w4i, len);
                rotatePair(y2r, y2i, y3r, y3i, w2r, w2i, w3r, w3i, len);
            }
        }
    }

    /** Any odd prime radix P (7, 11, 13): pairs r and P − r share a cosine. */
    private static void rowsOdd(Stage st, float[][] xr, float[][] xi, float[][] yr, float[][] yi, int len) {
        int P = st.radix, h = (P - 1) / 2, m = st.m, s = st.s, sm = s * m;
        for (int p = 0; p < m; p++) {
            int w = (P - 1) * p;
            for (int q = 0; q < s; q++) {
                int i0 = s * p + q, o0 = P * s * p + q;
                float[] a0r = xr[i0], a0i = xi[i0], y0r = yr[o0], y0i = yi[o0];
                for (int c = 0; c < len; c++) {
                    y0r[c] = a0r[c];
                    y0i[c] = a0i[c];
                }
                for (int r = 1; r <= h; r++) {
                    float[] ar = xr[i0 + r * sm], ai = xi[i0 + r * sm], br = xr[i0 + (P - r) * sm], bi = xi[i0 + (P - r) * sm];
                    for (int c = 0; c < len; c++) {
                        y0r[c] += ar[c] + br[c];
                        y0i[c] += ai[c] + bi[c];
                    }
                }
                for (int t = 1; t <= h; t++) {
                    int t2 = P - t;
                    float[] ytr = yr[o0 + t * s], yti = yi[o0 + t * s], yur = yr[o0 + t2 * s], yui = yi[o0 + t2 * s];
                    // S = a0 + Σ cos·(a_r + a_{P−r}) in ytr/yti, U = Σ sin·(a_r − a_{P−r}) in yur/yui
                    for (int c = 0; c < len; c++) {
                        ytr[c] = a0r[c];
                        yti[c] = a0i[c];
                        yur[c] = 0;
                        yui[c] = 0;
                    }
                    int k = 0;
                    for (int r = 1; r <= h; r++) {
                        k += t;
                        if (k >= P) k -= P; // r·t mod P
                        float cs = st.rootCos[k], sn = st.rootSin[k];
                        float[] ar = xr[i0 + r * sm], ai = xi[i0 + r * sm], br = xr[i0 + (P - r) * sm], bi = xi[i0 + (P - r) * sm];
                        for (int c = 0; c < len; c++) {
                            ytr[c] += cs * (ar[c] + br[c]);
                            yti[c] += cs * (ai[c] + bi[c]);
                            yur[c] += sn * (ar[c] - br[c]);
                            yui[c] += sn * (ai[c] - bi[c]);
                        }
                    }
                    float wtr = st.twRe[w + t - 1], wti = st.twIm[w + t - 1], wur = st.twRe[w + t2 - 1], wui = st.twIm[w + t2 - 1];
                    for (int c = 0; c < len; c++) {
                        float sr = ytr[c], si = yti[c], ur = yur[c], ui = yui[c];
                        // y_t = S − iU, y_{P−t} = S + iU
                        float vtr = sr + ui, vti = si - ur, vur = sr - ui, vui = si + ur;
                        ytr[c] = vtr * wtr - vti * wti;
                        yti[c] = vtr * wti + vti * wtr;
                        yur[c] = vur * wur - vui * wui;
                        yui[c] = vur * wui + vui * wur;
                    }
                }
            }
        }
    }

    // ---- flat (short lengths) --------------------------------------------------------------------

    /** The Stockham passes on the flat range, ping-ponging with (yr, yi); the result ends in the range. */
    private void flat(float[] re, int ro, float[] im, int io, float[] yr, float[] yi) {
        float[] ar = re, ai = im, br = yr, bi = yi;
        int aro = ro, aio = io, bro = 0, bio = 0;
        for (Stage st : stages) {
            flatPass(st, ar, aro, ai, aio, br, bro, bi, bio);
            float[] t = ar; ar = br; br = t;
            t = ai; ai = bi; bi = t;
            int o = aro; aro = bro; bro = o;
            o = aio; aio = bio; bio = o;
        }
        if (ar != re) {
            System.arraycopy(ar, aro, re, ro, n);
            System.arraycopy(ai, aio, im, io, n);
        }
    }

    /** Any radix on flat arrays, by the generic DFT of the butterfly (short lengths only: scalar). */
    private static void flatPass(Stage st, float[] xr, int xro, float[] xi, int xio, float[] yr, int yro, float[] yi, int yio) {
        int P = st.radix, m = st.m, s = st.s, sm = s * m;
        for (int p = 0; p < m; p++) {
            for (int q = 0; q < s; q++) {
                int i0 = s * p + q, o0 = P * s * p + q;
                for (int t = 0; t < P; t++) {
                    // Σ_r a_r·exp(−2πi·rt/P), then the twiddle of output t
                    float sr = 0, si = 0;
                    int k = 0;
                    for (int r = 0; r < P; r++) {
                        float c = rootCos(st, k), sn = rootSin(st, k);
                        float ar = xr[xro + i0 + r * sm], ai = xi[xio + i0 + r * sm];
                        sr += ar * c + ai * sn;
                        si += ai * c - ar * sn;
                        k += t;
                        if (k >= P) k -= P;
                    }
                    float wr = t == 0 ? 1 : st.twRe[(P - 1) * p + t - 1], wi = t == 0 ? 0 : st.twIm[(P - 1) * p + t - 1];
                    yr[yro + o0 + t * s] = sr * wr - si * wi;
                    yi[yio + o0 + t * s] = sr * wi + si * wr;
                }
            }
        }
    }

    private static float rootCos(Stage st, int k) { return st.rootCos[k]; }

    private static float rootSin(Stage st, int k) { return st.rootSin[k]; }

    // ---- Bluestein -------------------------------------------------------------------------------

    /** X[k] = w[k]·Σ_j (x[j]·w[j])·conj(w[k−j]) with w[j] = exp(−πi·j²/n): a circular convolution over m. */
    private void bluestein(float[] re, int ro, float[] im, int io, Work w) {
        int m = inner.n;
        float[] ar = w.flatRe, ai = w.flatIm;
        for (int j = 0; j < n; j++) {
            float xr = re[ro + j], xi = im[io + j], cr = chirpRe[j], ci = chirpIm[j];
            ar[j] = xr * cr - xi * ci;
            ai[j] = xr * ci + xi * cr;
        }
        java.util.Arrays.fill(ar, n, m, 0f);
        java.util.Arrays.fill(ai, n, m, 0f);
        inner.transform(ar, 0, ai, 0, w.inner);
        // The inverse FFT of the product is conj(FFT(conj(product))): conjugate here and below.
        for (int k = 0; k < m; k++) {
            float xr = ar[k], xi = ai[k], kr = kernelRe[k], ki = kernelIm[k];
            ar[k] = xr * kr - xi * ki;
            ai[k] = -(xr * ki + xi * kr);
        }
        inner.transform(ar, 0, ai, 0, w.inner);
        for (int k = 0; k < n; k++) {
            float yr = ar[k], yi = -ai[k], cr = chirpRe[k], ci = chirpIm[k];
            re[ro + k] = yr * cr - yi * ci;
            im[io + k] = yr * ci + yi * cr;
        }
    }

    // ---- plans -----------------------------------------------------------------------------------

    /** The radices of n (fours first, then a two, then odd primes), or null if a prime factor exceeds MAX_RADIX. */
    private static List<Integer> smoothFactors(int n) {
        List<Integer> f = new ArrayList<>();
        int rest = n;
        while (rest % 4 == 0) { f.add(4); rest /= 4; }
        if (rest % 2 == 0) { f.add(2); rest /= 2; }
        for (int p = 3; p <= MAX_RADIX; p += 2) {
            while (rest % p == 0) { f.add(p); rest /= p; }
        }
        return rest == 1 ? f : null;
    }

    /**
     * The divisor n1 of n with n1, n/n1 >= MIN_SPLIT nearest sqrt(n), preferring (within a factor 4 of it)
     * one where both are multiples of 8, so that the row loops have no scalar tails (16000 = 80·200, not
     * 128·125); 0 if there is none.
     */
    private static int split(int n, List<Integer> factors) {
        int best = 0, aligned = 0;
        double target = Math.sqrt(n);
        for (int d = MIN_SPLIT; (long) d * MIN_SPLIT <= n; d++) {
            if (n % d != 0) continue;
            double off = Math.abs(Math.log(d / target));
            if (best == 0 || off < Math.abs(Math.log(best / target))) best = d;
            if (d % 8 == 0 && (n / d) % 8 == 0 && off <= Math.log(4) && (aligned == 0 || off < Math.abs(Math.log(aligned / target)))) aligned = d;
        }
        return aligned != 0 ? aligned : best;
    }

    private static Stage[] buildStages(int n, List<Integer> factors) {
        Stage[] st = new Stage[factors.size()];
        int len = n, s = 1;
        for (int i = 0; i < st.length; i++) {
            int P = factors.get(i), m = len / P;
            float[] twRe = new float[m * (P - 1)], twIm = new float[m * (P - 1)];
            for (int p = 0; p < m; p++) {
                for (int t = 1; t < P; t++) {
                    long k = (long) p * t; // < len
                    twRe[p * (P - 1) + t - 1] = (float) cosTurn(k, len);
                    twIm[p * (P - 1) + t - 1] = (float) -sinTurn(k, len);
                }
            }
            float[] rootCos = new float[P], rootSin = new float[P];
            for (int k = 0; k < P; k++) {
                rootCos[k] = (float) cosTurn(k, P);
                rootSin[k] = (float) sinTurn(k, P);
            }
            st[i] = new Stage(P, m, s, twRe, twIm, rootCos, rootSin);
            len = m;
            s *= P;
        }
        return st;
    }

    /** cos(2π·k/d), accurate to about an ulp for any k and d (see {@link #turn}). */
    static double cosTurn(long k, long d) { return turn(k, d, true); }

    /** sin(2π·k/d), accurate to about an ulp for any k and d (see {@link #turn}). */
    static double sinTurn(long k, long d) { return turn(k, d, false); }

    /**
     * Folds the angle 2π·k/d into [0, π/4] with exact integer arithmetic (in units of 1/8 of d) before
     * calling Math.cos/Math.sin, so symmetric values (e.g. at k = d/4, d/2) come out exact.
     */
    private static double turn(long k, long d, boolean wantCos) {
        long e = 8 * Math.floorMod(k, d);
        boolean negSin = false, negCos = false, swap = false;
        if (e > 4 * d) { e = 8 * d - e; negSin = true; }
        if (e > 2 * d) { e = 4 * d - e; negCos = true; }
        if (e > d) { e = 2 * d - e; swap = true; }
        double a = Math.PI * e / (4.0 * d);
        if (wantCos) {
            double c = swap ? Math.sin(a) : Math.cos(a);
            return negCos ? -c : c;
        }
        double sv = swap ? Math.cos(a) : Math.sin(a);
        return negSin ? -sv : sv;
    }
}
