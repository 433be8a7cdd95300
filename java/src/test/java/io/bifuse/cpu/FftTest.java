package io.bifuse.cpu;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.stream.IntStream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;
import org.junit.jupiter.params.provider.ValueSource;

class FftTest {
    /**
     * Against an exact DFT the FFT's relative L2 error grows roughly like ε·log n (ε ≈ 1.1e-16) times a
     * small constant, i.e. ~1e-15..1e-14 here; the naive reference adds its own rounding of a similar
     * size. 1e-12 leaves two orders of magnitude of headroom while still catching any wrong twiddle,
     * index or sign, which produce errors of order 1.
     */
    private static final double DFT_TOL = 1e-12;
    /** The round trip has no reference error in it, so it is held tighter. */
    private static final double ROUND_TRIP_TOL = 1e-13;
    /** Above this length the O(n²) reference is evaluated on a random subset of bins only. */
    private static final int FULL_REFERENCE_MAX = 4096;
    private static final int SAMPLED_BINS = 64;

    /** 1..64 (every small radix mix and the Bluestein primes 17..61), and selected larger lengths. */
    static IntStream lengths() {
        return IntStream.concat(IntStream.rangeClosed(1, 64),
                IntStream.of(97, 128, 243, 625, 1000, 1001, 2310, 4096, 7919, 15998, 16000, 16001, 2 * 7919));
    }

    @ParameterizedTest(name = "n = {0}")
    @MethodSource("lengths")
    void forwardMatchesNaiveDft(int n) {
        checkAgainstNaive(n, false);
    }

    @ParameterizedTest(name = "n = {0}")
    @MethodSource("lengths")
    void inverseMatchesNaiveDft(int n) {
        checkAgainstNaive(n, true);
    }

    @ParameterizedTest(name = "n = {0}")
    @MethodSource("lengths")
    void inverseUndoesForwardUpToFactorN(int n) {
        SplittableRandom rng = new SplittableRandom(7_000 + n);
        double[] xr = random(rng, n), xi = random(rng, n);
        double[] re = xr.clone(), im = xi.clone();
        Fft fft = Fft.of(n);
        fft.forward(re, im);
        fft.inverse(re, im);
        for (int j = 0; j < n; j++) {
            re[j] /= n;
            im[j] /= n;
        }
        double err = relativeError(re, im, xr, xi, allBins(n));
        assertTrue(err <= ROUND_TRIP_TOL, "n = " + n + ": round-trip relative L2 error " + err);
    }

    @ParameterizedTest(name = "n = {0}")
    @ValueSource(ints = {16000, 16001})
    void linearityAndParseval(int n) {
        SplittableRandom rng = new SplittableRandom(99 + n);
        double[] xr = random(rng, n), xi = random(rng, n), yr = random(rng, n), yi = random(rng, n);
        double a = 0.75, b = -2.5;
        double[] zr = new double[n], zi = new double[n];
        for (int j = 0; j < n; j++) {
            zr[j] = a * xr[j] + b * yr[j];
            zi[j] = a * xi[j] + b * yi[j];
        }
        double energyX = 0;
        for (int j = 0; j < n; j++) energyX += xr[j] * xr[j] + xi[j] * xi[j];

        Fft fft = Fft.of(n);
        fft.forward(xr, xi);
        fft.forward(yr, yi);
        fft.forward(zr, zi);

        double[] cr = new double[n], ci = new double[n];
        for (int k = 0; k < n; k++) {
            cr[k] = a * xr[k] + b * yr[k];
            ci[k] = a * xi[k] + b * yi[k];
        }
        double linErr = relativeError(zr, zi, cr, ci, allBins(n));
        assertTrue(linErr <= DFT_TOL, "linearity relative L2 error " + linErr);

        // Parseval for the unscaled forward transform: Σ|X|² = n·Σ|x|².
        double energyF = 0;
        for (int k = 0; k < n; k++) energyF += xr[k] * xr[k] + xi[k] * xi[k];
        double parsevalErr = Math.abs(energyF - n * energyX) / (n * energyX);
        assertTrue(parsevalErr <= DFT_TOL, "Parseval relative error " + parsevalErr);
    }

    @Test
    void lengthOneIsIdentity() {
        Fft fft = Fft.of(1);
        assertEquals(1, fft.length());
        double[] re = {3.5}, im = {-1.25};
        fft.forward(re, im);
        assertArrayEquals(new double[] {3.5}, re);
        assertArrayEquals(new double[] {-1.25}, im);
        fft.inverse(re, im);
        assertArrayEquals(new double[] {3.5}, re);
        assertArrayEquals(new double[] {-1.25}, im);
    }

    @Test
    void plansAreCachedAndReportTheirLength() {
        assertSame(Fft.of(16000), Fft.of(16000));
        assertEquals(16000, Fft.of(16000).length());
        assertEquals(16001, Fft.of(16001).length());
    }

    @ParameterizedTest(name = "n = {0}")
    @ValueSource(ints = {12, 17, 1000, 7919})
    void longerArraysUseOnlyTheFirstN(int n) {
        SplittableRandom rng = new SplittableRandom(5 + n);
        double[] xr = random(rng, n), xi = random(rng, n);
        double[] longRe = new double[n + 5], longIm = new double[n + 3];
        System.arraycopy(xr, 0, longRe, 0, n);
        System.arraycopy(xi, 0, longIm, 0, n);
        for (int j = n; j < longRe.length; j++) longRe[j] = 100 + j;
        for (int j = n; j < longIm.length; j++) longIm[j] = -100 - j;
        double[] tailRe = Arrays.copyOfRange(longRe, n, longRe.length);
        double[] tailIm = Arrays.copyOfRange(longIm, n, longIm.length);

        Fft fft = Fft.of(n);
        fft.forward(xr, xi);
        fft.forward(longRe, longIm);
        assertArrayEquals(xr, Arrays.copyOf(longRe, n));
        assertArrayEquals(xi, Arrays.copyOf(longIm, n));
        fft.inverse(xr, xi);
        fft.inverse(longRe, longIm);
        assertArrayEquals(xr, Arrays.copyOf(longRe, n));
        assertArrayEquals(xi, Arrays.copyOf(longIm, n));
        assertArrayEquals(tailRe, Arrays.copyOfRange(longRe, n, longRe.length));
        assertArrayEquals(tailIm, Arrays.copyOfRange(longIm, n, longIm.length));
    }

    @Test
    void rejectsNonPositiveLength() {
        for (int n : new int[] {0, -1, -16000, Integer.MIN_VALUE}) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Fft.of(n));
            assertTrue(e.getMessage().contains("n") && e.getMessage().contains(Integer.toString(n)),
                    "message should name n and its value: " + e.getMessage());
        }
    }

    @ParameterizedTest(name = "n = {0}")
    @ValueSource(ints = {8, 17, 16000})
    void rejectsShortArraysNamingTheArgument(int n) {
        Fft fft = Fft.of(n);
        double[] ok = new double[n], shortArr = new double[n - 1];
        for (boolean inverse : new boolean[] {false, true}) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> call(fft, inverse, shortArr, ok));
            assertTrue(e.getMessage().startsWith("re") && e.getMessage().contains(Integer.toString(n)),
                    "message should name re and the expected length: " + e.getMessage());
            e = assertThrows(IllegalArgumentException.class, () -> call(fft, inverse, ok, shortArr));
            assertTrue(e.getMessage().startsWith("im") && e.getMessage().contains(Integer.toString(n)),
                    "message should name im and the expected length: " + e.getMessage());
        }
        NullPointerException npe = assertThrows(NullPointerException.class, () -> fft.forward(null, ok));
        assertEquals("re", npe.getMessage());
        npe = assertThrows(NullPointerException.class, () -> fft.forward(ok, null));
        assertEquals("im", npe.getMessage());
        assertThrows(IllegalArgumentException.class, () -> fft.forward(ok, ok));
    }

    /** One shared plan, 8 threads, each on its own arrays: results must be bit-identical to sequential calls. */
    @ParameterizedTest(name = "n = {0}")
    @ValueSource(ints = {16000, 16001})
    void sharedPlanIsThreadSafe(int n) throws Exception {
        int threads = 8, perThread = 4;
        Fft fft = Fft.of(n);
        SplittableRandom rng = new SplittableRandom(31 + n);
        double[][][] inputs = new double[threads * perThread][][];
        double[][][] expected = new double[threads * perThread][][];
        for (int i = 0; i < inputs.length; i++) {
            double[] re = random(rng, n), im = random(rng, n);
            inputs[i] = new double[][] {re, im};
            double[] er = re.clone(), ei = im.clone();
            // Even items go forward, odd ones inverse, so both directions run concurrently.
            call(fft, i % 2 == 1, er, ei);
            expected[i] = new double[][] {er, ei};
        }

        ExecutorService pool = Executors.newFixedThreadPool(threads);
        try {
            CountDownLatch start = new CountDownLatch(1);
            List<Future<double[][][]>> futures = new ArrayList<>();
            for (int t = 0; t < threads; t++) {
                int first = t * perThread;
                futures.add(pool.submit(() -> {
                    start.await();
                    double[][][] out = new double[perThread][][];
                    for (int i = 0; i < perThread; i++) {
                        double[] re = inputs[first + i][0].clone(), im = inputs[first + i][1].clone();
                        call(fft, (first + i) % 2 == 1, re, im);
                        out[i] = new double[][] {re, im};
                    }
                    return out;
                }));
            }
            start.countDown();
            for (int t = 0; t < threads; t++) {
                double[][][] out = futures.get(t).get();
                for (int i = 0; i < perThread; i++) {
                    assertArrayEquals(expected[t * perThread + i][0], out[i][0], "re, item " + (t * perThread + i));
                    assertArrayEquals(expected[t * perThread + i][1], out[i][1], "im, item " + (t * perThread + i));
                }
            }
        } finally {
            pool.shutdownNow();
        }
    }

    private static void call(Fft fft, boolean inverse, double[] re, double[] im) {
        if (inverse) fft.inverse(re, im);
        else fft.forward(re, im);
    }

    private static void checkAgainstNaive(int n, boolean inverse) {
        SplittableRandom rng = new SplittableRandom((inverse ? 2_000_000L : 1_000_000L) + n);
        double[] xr = random(rng, n), xi = random(rng, n);
        int[] bins = n <= FULL_REFERENCE_MAX ? allBins(n) : sampledBins(rng, n);
        double[][] ref = naiveDft(xr, xi, bins, inverse ? +1 : -1);
        double[] re = xr.clone(), im = xi.clone();
        call(Fft.of(n), inverse, re, im);
        double[] gotRe = new double[bins.length], gotIm = new double[bins.length];
        for (int b = 0; b < bins.length; b++) {
            gotRe[b] = re[bins[b]];
            gotIm[b] = im[bins[b]];
        }
        double err = relativeError(gotRe, gotIm, ref[0], ref[1], allBins(bins.length));
        assertTrue(err <= DFT_TOL, "n = " + n + (inverse ? " inverse" : " forward") + ": relative L2 error " + err);
    }

    /** Σ_j x[j]·exp(sign·2πi·jk/n) for the given bins; the angle index jk mod n is formed exactly in long. */
    private static double[][] naiveDft(double[] xr, double[] xi, int[] bins, int sign) {
        int n = xr.length;
        double[] c = new double[n], s = new double[n];
        for (int t = 0; t < n; t++) {
            // Reduce to |t| <= n/2 so the argument to cos/sin stays within [−π, π].
            long u = 2L * t > n ? t - (long) n : t;
            double a = 2 * Math.PI * u / n;
            c[t] = Math.cos(a);
            s[t] = sign * Math.sin(a);
        }
        double[] outRe = new double[bins.length], outIm = new double[bins.length];
        for (int b = 0; b < bins.length; b++) {
            long k = bins[b];
            double sr = 0, si = 0;
            for (int j = 0; j < n; j++) {
                int t = (int) ((j * k) % n);
                sr += xr[j] * c[t] - xi[j] * s[t];
                si += xr[j] * s[t] + xi[j] * c[t];
            }
            outRe[b] = sr;
            outIm[b] = si;
        }
        return new double[][] {outRe, outIm};
    }

    /** sqrt(Σ|got − want|²) / sqrt(Σ|want|²) over the given indices. */
    private static double relativeError(double[] gotRe, double[] gotIm, double[] wantRe, double[] wantIm, int[] idx) {
        double num = 0, den = 0;
        for (int i : idx) {
            double dr = gotRe[i] - wantRe[i], di = gotIm[i] - wantIm[i];
            num += dr * dr + di * di;
            den += wantRe[i] * wantRe[i] + wantIm[i] * wantIm[i];
        }
        return Math.sqrt(num / den);
    }

    private static int[] allBins(int n) {
        return IntStream.range(0, n).toArray();
    }

    /** Bins 0, 1 and n − 1 (where index mistakes show first), plus random distinct others. */
    private static int[] sampledBins(SplittableRandom rng, int n) {
        IntStream edges = IntStream.of(0, 1, n - 1);
        return IntStream.concat(edges, rng.ints(0, n).distinct().limit(SAMPLED_BINS * 2L))
                .distinct().limit(SAMPLED_BINS).toArray();
    }

    private static double[] random(SplittableRandom rng, int n) {
        double[] a = new double[n];
        for (int i = 0; i < n; i++) a[i] = rng.nextDouble(-1.0, 1.0);
        return a;
    }
}
