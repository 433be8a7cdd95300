package io.bifuse.cpu;

import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.concurrent.ConcurrentHashMap;

/**
 * A double-precision complex FFT plan for any length {@code n >= 1}, transforming in place.
 *
 * <h2>Convention and scaling</h2>
 * <ul>
 *   <li>{@link #forward}: {@code X[k] = Σ_j x[j]·exp(−2πi·jk/n)}, unscaled.</li>
 *   <li>{@link #inverse}: {@code x[j] = Σ_k X[k]·exp(+2πi·jk/n)}, also <b>unscaled</b>: there is no
 *       {@code 1/n} factor, so {@code inverse(forward(x)) == n·x} and the caller divides by {@code n}.</li>
 * </ul>
 * Data are split into a real array and an imaginary array. Both must hold at least {@code n} values;
 * only the first {@code n} are read and written, anything after them is left untouched.
 *
 * <h2>Algorithms</h2>
 * <ul>
 *   <li>If every prime factor of {@code n} is at most {@value #MAX_RADIX}: a mixed-radix Cooley–Tukey
 *       FFT in the self-sorting Stockham form (decimation in frequency, ping-pong between the caller's
 *       arrays and one scratch pair, so no bit-reversal permutation), with specialised butterflies for
 *       radices 4, 2, 3 and 5 and a generic odd-prime butterfly for 7, 11 and 13.</li>
 *   <li>Otherwise: Bluestein's chirp-z identity, which turns the length-{@code n} DFT into a circular
 *       convolution of power-of-two length {@code m >= 2n − 1}, done with the mixed-radix path.</li>
 * </ul>
 * Either way the cost is O(n log n) for every {@code n}. The inverse is the forward transform of the
 * complex conjugate, conjugated back (exact: negation does not round).
 *
 * <h2>Accuracy</h2>
 * Every twiddle factor and chirp is computed directly from an exactly reduced integer angle folded into
 * the first octant (never by repeated multiplication, which accumulates error with n), and the Bluestein
 * chirp index {@code j² mod 2n} is formed in {@code long} arithmetic. The relative L2 error against an
 * exact DFT is typically around 1e-15 to 1e-14 for lengths up to tens of thousands, growing like
 * {@code ε·log n}; Bluestein lengths lose a small constant factor more than smooth lengths.
 *
 * <h2>Threads</h2>
 * A plan is immutable after construction; each call allocates its own scratch, so one plan may be used
 * concurrently from any number of threads (for example one call per batch row in a parallel stream).
 * Plans are cached by length in a small bounded map (an arbitrary plan is dropped when it is full).
 */
final class Fft {
    /** Largest prime handled by a Cooley–Tukey butterfly; any larger prime factor sends n to Bluestein. */
    private static final int MAX_RADIX = 13;
    /** At most about this many plans are kept, so callers cycling through many lengths cannot grow memory. */
    private static final int CACHE_LIMIT = 64;
    /** Bluestein's power-of-two length must stay a valid array length. */
    private static final int MAX_BLUESTEIN_M = 1 << 30;
    private static final ConcurrentHashMap<Integer, Fft> PLANS = new ConcurrentHashMap<>();

    private static final double SIN_60 = Math.sqrt(3.0) / 2.0;
    private static final double COS_72 = cosTurn(1, 5), SIN_72 = sinTurn(1, 5);
    private static final double COS_144 = cosTurn(2, 5), SIN_144 = sinTurn(2, 5);

    /**
     * One Stockham pass: {@code s} interleaved sequences of current length {@code radix·m}, each split
     * into {@code radix} sequences of length {@code m}. {@code twRe/twIm[p·(radix−1) + t − 1]} holds
     * {@code exp(−2πi·pt/(radix·m))}; {@code rootCos/rootSin[k]} hold {@code cos/sin(2πk/radix)} for the
     * generic butterfly only.
     */
    private record Stage(int radix, int m, int s, double[] twRe, double[] twIm, double[] rootCos, double[] rootSin) {}

    private final int n;
    private final Stage[] stages;          // mixed radix; null for Bluestein
    private final Fft inner;               // Bluestein: the power-of-two plan of length m
    private final double[] chirpRe, chirpIm;   // exp(−πi·j²/n), j < n
    private final double[] kernelRe, kernelIm; // FFT_m of conj(chirp) laid out circularly, times 1/m

    /**
     * The plan for length {@code n}, shared through a small cache.
     *
     * @param n the transform length, at least 1
     * @return the plan, immutable and safe to share between threads
     * @throws IllegalArgumentException if {@code n < 1}, or if {@code n} needs Bluestein and its
     *         power-of-two convolution length would exceed 2^30
     */
    public static Fft of(int n) {
        if (n < 1) throw new IllegalArgumentException("n must be >= 1, got n = " + n);
        Fft plan = PLANS.get(n);
        if (plan != null) return plan;
        // Built outside the map: a Bluestein plan fetches its inner plan through of(), and a nested
        // computeIfAbsent on the same ConcurrentHashMap is not allowed.
        plan = new Fft(n);
        if (PLANS.size() >= CACHE_LIMIT) {
            // Evict rather than refuse: callers look plans up per row, so the length in use now must
            // stay cached even after many others have been seen. Racing threads may overshoot the
            // limit by a few entries, which is harmless.
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
            stages = buildStages(n, factors);
            inner = null;
            chirpRe = chirpIm = kernelRe = kernelIm = null;
            return;
        }
        stages = null;
        long need = 2L * n - 1;
        if (need > MAX_BLUESTEIN_M) {
            throw new IllegalArgumentException("n = " + n + " is too large for a Bluestein transform (largest prime factor > "
                    + MAX_RADIX + " and 2n − 1 > 2^30)");
        }
        int m = Integer.highestOneBit((int) need);
        if (m < need) m <<= 1;
        inner = of(m);
        chirpRe = new double[n];
        chirpIm = new double[n];
        long twoN = 2L * n;
        for (int j = 0; j < n; j++) {
            // exp(−πi·j²/n) = exp(−2πi·(j² mod 2n)/(2n)); j² reaches ~4.6e18 at most, inside long.
            long r = ((long) j * j) % twoN;
            chirpRe[j] = cosTurn(r, twoN);
            chirpIm[j] = -sinTurn(r, twoN);
        }
        kernelRe = new double[m];
        kernelIm = new double[m];
        kernelRe[0] = chirpRe[0];
        kernelIm[0] = -chirpIm[0];
        for (int j = 1; j < n; j++) {
            kernelRe[j] = kernelRe[m - j] = chirpRe[j];
            kernelIm[j] = kernelIm[m - j] = -chirpIm[j];
        }
        inner.stockham(kernelRe, kernelIm, new double[m], new double[m]);
        // m is a power of two, so folding the convolution's 1/m in here is exact.
        double scale = 1.0 / m;
        for (int k = 0; k < m; k++) {
            kernelRe[k] *= scale;
            kernelIm[k] *= scale;
        }
    }

    /**
     * The transform length.
     *
     * @return n
     */
    public int length() {
        return n;
    }

    /**
     * In-place forward DFT of the first {@code n} entries: {@code X[k] = Σ_j x[j]·exp(−2πi·jk/n)},
     * without scaling. Entries at index {@code n} and beyond are neither read nor written.
     *
     * @param re real parts, at least {@code n} long; overwritten with the spectrum's real parts
     * @param im imaginary parts, at least {@code n} long; overwritten with the spectrum's imaginary parts
     * @throws IllegalArgumentException if an array is shorter than {@code n}, or both are the same array
     * @throws NullPointerException if an array is null
     */
    public void forward(double[] re, double[] im) {
        check(re, im);
        if (n > 1) transform(re, im);
    }

    /**
     * In-place inverse DFT of the first {@code n} entries: {@code x[j] = Σ_k X[k]·exp(+2πi·jk/n)}.
     * <b>Not scaled:</b> there is no {@code 1/n} factor, so {@code inverse(forward(x))} returns
     * {@code n·x}; the caller applies {@code 1/n}. Entries at index {@code n} and beyond are untouched.
     *
     * @param re real parts of the spectrum, at least {@code n} long; overwritten with the (n-times) signal
     * @param im imaginary parts of the spectrum, at least {@code n} long; overwritten likewise
     * @throws IllegalArgumentException if an array is shorter than {@code n}, or both are the same array
     * @throws NullPointerException if an array is null
     */
    public void inverse(double[] re, double[] im) {
        check(re, im);
        if (n == 1) return;
        negate(im, n);
        transform(re, im);
        negate(im, n);
    }

    private void check(double[] re, double[] im) {
        Objects.requireNonNull(re, "re");
        Objects.requireNonNull(im, "im");
        if (re.length < n) throw new IllegalArgumentException("re: expected length >= " + n + ", got " + re.length);
        if (im.length < n) throw new IllegalArgumentException("im: expected length >= " + n + ", got " + im.length);
        // The passes read re and im as independent inputs while writing both.
        if (re == im) throw new IllegalArgumentException("re and im must be distinct arrays");
    }

    private static void negate(double[] a, int n) {
        for (int i = 0; i < n; i++) a[i] = -a[i];
    }

    private void transform(double[] re, double[] im) {
        if (stages != null) stockham(re, im, new double[n], new double[n]);
        else bluestein(re, im);
    }

    /** X[k] = w[k]·Σ_j (x[j]·w[j])·conj(w[k−j]) with w[j] = exp(−πi·j²/n): a circular convolution over m. */
    private void bluestein(double[] re, double[] im) {
        int m = inner.n;
        double[] ar = new double[m], ai = new double[m];
        for (int j = 0; j < n; j++) {
            double cr = chirpRe[j], ci = chirpIm[j];
            ar[j] = re[j] * cr - im[j] * ci;
            ai[j] = re[j] * ci + im[j] * cr;
        }
        double[] sr = new double[m], si = new double[m];
        inner.stockham(ar, ai, sr, si);
        // The inverse FFT of the product is conj(FFT(conj(product))): conjugate on the way in here and
        // on the way out below, so the same forward passes serve.
        for (int k = 0; k < m; k++) {
            double xr = ar[k], xi = ai[k], kr = kernelRe[k], ki = kernelIm[k];
            ar[k] = xr * kr - xi * ki;
            ai[k] = -(xr * ki + xi * kr);
        }
        inner.stockham(ar, ai, sr, si);
        for (int k = 0; k < n; k++) {
            double yr = ar[k], yi = -ai[k], cr = chirpRe[k], ci = chirpIm[k];
            re[k] = yr * cr - yi * ci;
            im[k] = yr * ci + yi * cr;
        }
    }

    /** Runs all passes, ping-ponging between (xr, xi) and the scratch (yr, yi); the result ends in x. */
    private void stockham(double[] xr, double[] xi, double[] yr, double[] yi) {
        double[] ar = xr, ai = xi, br = yr, bi = yi;
        for (Stage st : stages) {
            switch (st.radix) {
                case 2 -> pass2(st, ar, ai, br, bi);
                case 3 -> pass3(st, ar, ai, br, bi);
                case 4 -> pass4(st, ar, ai, br, bi);
                case 5 -> pass5(st, ar, ai, br, bi);
                default -> passOdd(st, ar, ai, br, bi);
            }
            double[] t = ar; ar = br; br = t;
            t = ai; ai = bi; bi = t;
        }
        if (ar != xr) {
            System.arraycopy(ar, 0, xr, 0, n);
            System.arraycopy(ai, 0, xi, 0, n);
        }
    }

    // Each pass: input element r of sub-sequence p sits at q + s·(p + r·m); output t of butterfly p goes
    // to q + s·(radix·p + t), already multiplied by the twiddle exp(−2πi·pt/(radix·m)). The output is
    // then s·radix interleaved sequences of length m for the next pass, which is what makes it self-sorting.

    private static void pass2(Stage st, double[] xr, double[] xi, double[] yr, double[] yi) {
        int m = st.m, s = st.s, sm = s * m;
        double[] wr = st.twRe, wi = st.twIm;
        for (int p = 0; p < m; p++) {
            double w1r = wr[p], w1i = wi[p];
            int in = s * p, out = 2 * s * p;
            for (int q = 0; q < s; q++) {
                int i0 = in + q, i1 = i0 + sm, o0 = out + q, o1 = o0 + s;
                double a0r = xr[i0], a0i = xi[i0], a1r = xr[i1], a1i = xi[i1];
                double dr = a0r - a1r, di = a0i - a1i;
                yr[o0] = a0r + a1r;
                yi[o0] = a0i + a1i;
                yr[o1] = dr * w1r - di * w1i;
                yi[o1] = dr * w1i + di * w1r;
            }
        }
    }

    private static void pass3(Stage st, double[] xr, double[] xi, double[] yr, double[] yi) {
        int m = st.m, s = st.s, sm = s * m;
        double[] wr = st.twRe, wi = st.twIm;
        for (int p = 0; p < m; p++) {
            double w1r = wr[2 * p], w1i = wi[2 * p], w2r = wr[2 * p + 1], w2i = wi[2 * p + 1];
            int in = s * p, out = 3 * s * p;
            for (int q = 0; q < s; q++) {
                int i0 = in + q, i1 = i0 + sm, i2 = i1 + sm;
                double a0r = xr[i0], a0i = xi[i0];
                double br = xr[i1] + xr[i2], bi = xi[i1] + xi[i2];
                double dr = xr[i1] - xr[i2], di = xi[i1] - xi[i2];
                double sr = a0r - 0.5 * br, si = a0i - 0.5 * bi;
                double ur = SIN_60 * dr, ui = SIN_60 * di;
                // y1 = S − iU, y2 = S + iU
                double y1r = sr + ui, y1i = si - ur, y2r = sr - ui, y2i = si + ur;
                int o0 = out + q, o1 = o0 + s, o2 = o1 + s;
                yr[o0] = a0r + br;
                yi[o0] = a0i + bi;
                yr[o1] = y1r * w1r - y1i * w1i;
                yi[o1] = y1r * w1i + y1i * w1r;
                yr[o2] = y2r * w2r - y2i * w2i;
                yi[o2] = y2r * w2i + y2i * w2r;
            }
        }
    }

    private static void pass4(Stage st, double[] xr, double[] xi, double[] yr, double[] yi) {
        int m = st.m, s = st.s, sm = s * m;
        double[] wr = st.twRe, wi = st.twIm;
        for (int p = 0; p < m; p++) {
            int w = 3 * p;
            double w1r = wr[w], w1i = wi[w], w2r = wr[w + 1], w2i = wi[w + 1], w3r = wr[w + 2], w3i = wi[w + 2];
            int in = s * p, out = 4 * s * p;
            for (int q = 0; q < s; q++) {
                int i0 = in + q, i1 = i0 + sm, i2 = i1 + sm, i3 = i2 + sm;
                double a0r = xr[i0], a0i = xi[i0], a1r = xr[i1], a1i = xi[i1];
                double a2r = xr[i2], a2i = xi[i2], a3r = xr[i3], a3i = xi[i3];
                double t0r = a0r + a2r, t0i = a0i + a2i;
                double t1r = a0r - a2r, t1i = a0i - a2i;
                double t2r = a1r + a3r, t2i = a1i + a3i;
                double t3r = a1i - a3i, t3i = a3r - a1r; // (a1 − a3)·(−i)
                double u1r = t1r + t3r, u1i = t1i + t3i;
                double u2r = t0r - t2r, u2i = t0i - t2i;
                double u3r = t1r - t3r, u3i = t1i - t3i;
                int o0 = out + q, o1 = o0 + s, o2 = o1 + s, o3 = o2 + s;
                yr[o0] = t0r + t2r;
                yi[o0] = t0i + t2i;
                yr[o1] = u1r * w1r - u1i * w1i;
                yi[o1] = u1r * w1i + u1i * w1r;
                yr[o2] = u2r * w2r - u2i * w2i;
                yi[o2] = u2r * w2i + u2i * w2r;
                yr[o3] = u3r * w3r - u3i * w3i;
                yi[o3] = u3r * w3i + u3i * w3r;
            }
        }
    }

    private static void pass5(Stage st, double[] xr, double[] xi, double[] yr, double[] yi) {
        int m = st.m, s = st.s, sm = s * m;
        double[] wr = st.twRe, wi = st.twIm;
        for (int p = 0; p < m; p++) {
            int w = 4 * p;
            double w1r = wr[w], w1i = wi[w], w2r = wr[w + 1], w2i = wi[w + 1];
            double w3r = wr[w + 2], w3i = wi[w + 2], w4r = wr[w + 3], w4i = wi[w + 3];
            int in = s * p, out = 5 * s * p;
            for (int q = 0; q < s; q++) {
                int i0 = in + q, i1 = i0 + sm, i2 = i1 + sm, i3 = i2 + sm, i4 = i3 + sm;
                double a0r = xr[i0], a0i = xi[i0];
                double b1r = xr[i1] + xr[i4], b1i = xi[i1] + xi[i4];
                double d1r = xr[i1] - xr[i4], d1i = xi[i1] - xi[i4];
                double b2r = xr[i2] + xr[i3], b2i = xi[i2] + xi[i3];
                double d2r = xr[i2] - xr[i3], d2i = xi[i2] - xi[i3];
                double s1r = a0r + COS_72 * b1r + COS_144 * b2r, s1i = a0i + COS_72 * b1i + COS_144 * b2i;
                double s2r = a0r + COS_144 * b1r + COS_72 * b2r, s2i = a0i + COS_144 * b1i + COS_72 * b2i;
                double u1r = SIN_72 * d1r + SIN_144 * d2r, u1i = SIN_72 * d1i + SIN_144 * d2i;
                double u2r = SIN_144 * d1r - SIN_72 * d2r, u2i = SIN_144 * d1i - SIN_72 * d2i;
                // y1 = S1 − iU1, y4 = S1 + iU1, y2 = S2 − iU2, y3 = S2 + iU2
                double y1r = s1r + u1i, y1i = s1i - u1r, y4r = s1r - u1i, y4i = s1i + u1r;
                double y2r = s2r + u2i, y2i = s2i - u2r, y3r = s2r - u2i, y3i = s2i + u2r;
                int o0 = out + q, o1 = o0 + s, o2 = o1 + s, o3 = o2 + s, o4 = o3 + s;
                yr[o0] = a0r + b1r + b2r;
                yi[o0] = a0i + b1i + b2i;
                yr[o1] = y1r * w1r - y1i * w1i;
                yi[o1] = y1r * w1i + y1i * w1r;
                yr[o2] = y2r * w2r - y2i * w2i;
                yi[o2] = y2r * w2i + y2i * w2r;
                yr[o3] = y3r * w3r - y3i * w3i;
                yi[o3] = y3r * w3i + y3i * w3r;
                yr[o4] = y4r * w4r - y4i * w4i;
                yi[o4] = y4r * w4i + y4i * w4r;
            }
        }
    }

    /** Any odd prime radix P: pairs r and P − r share a cosine, which halves the multiplications. */
    private static void passOdd(Stage st, double[] xr, double[] xi, double[] yr, double[] yi) {
        int P = st.radix, h = (P - 1) / 2, m = st.m, s = st.s, sm = s * m;
        double[] wr = st.twRe, wi = st.twIm, cs = st.rootCos, sn = st.rootSin;
        double[] br = new double[h + 1], bi = new double[h + 1], dr = new double[h + 1], di = new double[h + 1];
        for (int p = 0; p < m; p++) {
            int w = (P - 1) * p;
            int in = s * p, out = P * s * p;
            for (int q = 0; q < s; q++) {
                int i0 = in + q;
                double a0r = xr[i0], a0i = xi[i0], y0r = a0r, y0i = a0i;
                for (int r = 1; r <= h; r++) {
                    int ia = i0 + r * sm, ib = i0 + (P - r) * sm;
                    br[r] = xr[ia] + xr[ib];
                    bi[r] = xi[ia] + xi[ib];
                    dr[r] = xr[ia] - xr[ib];
                    di[r] = xi[ia] - xi[ib];
                    y0r += br[r];
                    y0i += bi[r];
                }
                int o0 = out + q;
                yr[o0] = y0r;
                yi[o0] = y0i;
                for (int t = 1; t <= h; t++) {
                    double sr = a0r, si = a0i, ur = 0, ui = 0;
                    int k = 0;
                    for (int r = 1; r <= h; r++) {
                        k += t;
                        if (k >= P) k -= P; // k = r·t mod P
                        double c = cs[k], sv = sn[k];
                        sr += c * br[r];
                        si += c * bi[r];
                        ur += sv * dr[r];
                        ui += sv * di[r];
                    }
                    // y_t = S − iU, y_{P−t} = S + iU
                    double ytr = sr + ui, yti = si - ur, yur = sr - ui, yui = si + ur;
                    int t2 = P - t;
                    double wtr = wr[w + t - 1], wti = wi[w + t - 1], wur = wr[w + t2 - 1], wui = wi[w + t2 - 1];
                    int ot = o0 + t * s, ou = o0 + t2 * s;
                    yr[ot] = ytr * wtr - yti * wti;
                    yi[ot] = ytr * wti + yti * wtr;
                    yr[ou] = yur * wur - yui * wui;
                    yi[ou] = yur * wui + yui * wur;
                }
            }
        }
    }

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

    private static Stage[] buildStages(int n, List<Integer> factors) {
        Stage[] st = new Stage[factors.size()];
        int len = n, s = 1;
        for (int i = 0; i < st.length; i++) {
            int P = factors.get(i), m = len / P;
            double[] twRe = new double[m * (P - 1)], twIm = new double[m * (P - 1)];
            for (int p = 0; p < m; p++) {
                for (int t = 1; t < P; t++) {
                    long k = (long) p * t; // < len, so the angle needs no further reduction
                    twRe[p * (P - 1) + t - 1] = cosTurn(k, len);
                    twIm[p * (P - 1) + t - 1] = -sinTurn(k, len);
                }
            }
            double[] rootCos = null, rootSin = null;
            if (P > 5) {
                rootCos = new double[P];
                rootSin = new double[P];
                for (int k = 0; k < P; k++) {
                    rootCos[k] = cosTurn(k, P);
                    rootSin[k] = sinTurn(k, P);
                }
            }
            st[i] = new Stage(P, m, s, twRe, twIm, rootCos, rootSin);
            len = m;
            s *= P;
        }
        return st;
    }

    /** cos(2π·k/d), accurate to about an ulp for any k and d (see {@link #turn}). */
    private static double cosTurn(long k, long d) {
        return turn(k, d, true);
    }

    /** sin(2π·k/d), accurate to about an ulp for any k and d (see {@link #turn}). */
    private static double sinTurn(long k, long d) {
        return turn(k, d, false);
    }

    /**
     * Folds the angle 2π·k/d into [0, π/4] with exact integer arithmetic (in units of 1/8 of d) before
     * calling Math.cos/Math.sin, so the argument carries only the rounding of one small product and
     * quotient, and symmetric values (e.g. exp(−2πi·k/d) at k = d/4, d/2) come out exact.
     */
    private static double turn(long k, long d, boolean wantCos) {
        long e = 8 * Math.floorMod(k, d); // the angle is 2π·e/(8d); 8d < 2^36 for int-sized transforms
        boolean negSin = false, negCos = false, swap = false;
        if (e > 4 * d) { e = 8 * d - e; negSin = true; } // θ → 2π − θ
        if (e > 2 * d) { e = 4 * d - e; negCos = true; } // θ → π − θ
        if (e > d) { e = 2 * d - e; swap = true; }       // θ → π/2 − θ
        double a = Math.PI * e / (4.0 * d);
        if (wantCos) {
            double c = swap ? Math.sin(a) : Math.cos(a);
            return negCos ? -c : c;
        }
        double sv = swap ? Math.cos(a) : Math.sin(a);
        return negSin ? -sv : sv;
    }
}
