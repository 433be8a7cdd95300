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

/** The float32 {@link Fft} against a float64 naive DFT of the same float inputs. */
class FftTest {
    /**
     * The plan computes in float32 (ε = 2^-24 ≈ 6e-8): its relative L2 error grows like ε·sqrt(log2 n)
     * times a small constant (measured against a float64 FFT: 1.3e-7 to 1.6e-7 on smooth lengths up to 32768, 2.8e-7 through
     * Bluestein). 2e-6 leaves a few times that, while a wrong twiddle, index or sign gives an error of
     * order 1; MCB's 1e-5 bound needs the transform well below it.
     */
    private static final double DFT_TOL = 2e-6;
    /** The round trip: two transforms' rounding. */
    private static final double ROUND_TRIP_TOL = 2e-6;
    /** Above this length the O(n²) reference is evaluated on a random subset of bins only. */
    private static final int FULL_REFERENCE_MAX = 4096;
    private static final int SAMPLED_BINS = 64;

    /** 1..64 (every small radix mix, the flat path, the Bluestein primes 17..61), and the four-step and Bluestein at size. */
    static IntStream lengths() {
        return IntStream.concat(IntStream.rangeClosed(1, 64),
                IntStream.of(97, 128, 243, 625, 1000, 1001, 2310, 4096, 7919, 15625, 15998, 16000, 16001, 2 * 7919, 32768));
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
        float[] xr = random(rng, n), xi = random(rng, n);
        float[] re = xr.clone(), im = xi.clone();
        Fft fft = Fft.of(n);
        fft.forward(re, im);
        fft.inverse(re, im);
        double[] gr = new double[n], gi = new double[n];
        for (int j = 0; j < n; j++) {
            gr[j] = re[j] / (double) n;
            gi[j] = im[j] / (double) n;
        }
        double err = relativeError(gr, gi, toDouble(xr), toDouble(xi));
        assertTrue(err <= ROUND_TRIP_TOL, "n = " + n + ": round-trip relative L2 error " + err);
    }

    @Test
    void lengthOneIsIdentity() {
        Fft fft = Fft.of(1);
        assertEquals(1, fft.length());
        float[] re = {3.5f}, im = {-1.25f};
        fft.forward(re, im);
        assertArrayEquals(new float[] {3.5f}, re);
        assertArrayEquals(new float[] {-1.25f}, im);
        fft.inverse(re, im);
        assertArrayEquals(new float[] {3.5f}, re);
        assertArrayEquals(new float[] {-1.25f}, im);
    }

    @Test
    void plansAreCachedAndReportTheirLength() {
        assertSame(Fft.of(16000), Fft.of(16000));
        assertEquals(16000, Fft.of(16000).length());
        assertEquals(16001, Fft.of(16001).length());
    }

    /** At an offset inside longer arrays: the same values as at 0, and nothing outside the range touched. */
    @ParameterizedTest(name = "n = {0}")
    @ValueSource(ints = {12, 17, 1000, 7919, 16000})
    void offsetRangesOnly(int n) {
        SplittableRandom rng = new SplittableRandom(5 + n);
        float[] xr = random(rng, n), xi = random(rng, n);
        int off = 7;
        float[] longRe = new float[off + n + 5], longIm = new float[off + n + 3];
        for (int j = 0; j < longRe.length; j++) longRe[j] = 100 + j;
        for (int j = 0; j < longIm.length; j++) longIm[j] = -100 - j;
        System.arraycopy(xr, 0, longRe, off, n);
        System.arraycopy(xi, 0, longIm, off, n);
        float[] before = longRe.clone(), beforeIm = longIm.clone();
        Fft fft = Fft.of(n);
        Fft.Work w = fft.work();
        fft.forward(xr, xi);
        fft.forward(longRe, off, longIm, off, w);
        assertArrayEquals(xr, Arrays.copyOfRange(longRe, off, off + n));
        assertArrayEquals(xi, Arrays.copyOfRange(longIm, off, off + n));
        fft.inverse(xr, xi);
        fft.inverse(longRe, off, longIm, off, w);
        fft.release(w);
        assertArrayEquals(xr, Arrays.copyOfRange(longRe, off, off + n));
        assertArrayEquals(xi, Arrays.copyOfRange(longIm, off, off + n));
        assertArrayEquals(Arrays.copyOf(before, off), Arrays.copyOf(longRe, off));
        assertArrayEquals(Arrays.copyOfRange(before, off + n, before.length), Arrays.copyOfRange(longRe, off + n, longRe.length));
        assertArrayEquals(Arrays.copyOf(beforeIm, off), Arrays.copyOf(longIm, off));
        assertArrayEquals(Arrays.copyOfRange(beforeIm, off + n, beforeIm.length), Arrays.copyOfRange(longIm, off + n, longIm.length));
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
        float[] ok = new float[n], shortArr = new float[n - 1];
        for (boolean inverse : new boolean[] {false, true}) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> call(fft, inverse, shortArr, ok));
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

    /** One shared plan, 8 threads, each with its own work: results must be bit-identical to sequential calls. */
    @ParameterizedTest(name = "n = {0}")
    @ValueSource(ints = {16000, 16001})
    void sharedPlanIsThreadSafe(int n) throws Exception {
        int threads = 8, perThread = 4;
        Fft fft = Fft.of(n);
        SplittableRandom rng = new SplittableRandom(31 + n);
        float[][][] inputs = new float[threads * perThread][][];
        float[][][] expected = new float[threads * perThread][][];
        for (int i = 0; i < inputs.length; i++) {
            float[] re = random(rng, n), im = random(rng, n);
            inputs[i] = new float[][] {re, im};
            float[] er = re.clone(), ei = im.clone();
            call(fft, i % 2 == 1, er, ei); // even items forward, odd ones inverse: both run concurrently
            expected[i] = new float[][] {er, ei};
        }
        ExecutorService pool = Executors.newFixedThreadPool(threads);
        try {
            CountDownLatch start = new CountDownLatch(1);
            List<Future<float[][][]>> futures = new ArrayList<>();
            for (int t = 0; t < threads; t++) {
                int first = t * perThread;
                futures.add(pool.submit(() -> {
                    start.await();
                    float[][][] out = new float[perThread][][];
                    for (int i = 0; i < perThread; i++) {
                        float[] re = inputs[first + i][0].clone(), im = inputs[first + i][1].clone();
                        call(fft, (first + i) % 2 == 1, re, im);
                        out[i] = new float[][] {re, im};
                    }
                    return out;
                }));
            }
            start.countDown();
            for (int t = 0; t < threads; t++) {
                float[][][] out = futures.get(t).get();
                for (int i = 0; i < perThread; i++) {
                    assertArrayEquals(expected[t * perThread + i][0], out[i][0], "re, item " + (t * perThread + i));
                    assertArrayEquals(expected[t * perThread + i][1], out[i][1], "im, item " + (t * perThread + i));
                }
            }
        } finally {
            pool.shutdownNow();
        }
    }

    private static void call(Fft fft, boolean inverse, float[] re, float[] im) {
        if (inverse) fft.inverse(re, im);
        else fft.forward(re, im);
    }

    private static void checkAgainstNaive(int n, boolean inverse) {
        SplittableRandom rng = new SplittableRandom((inverse ? 2_000_000L : 1_000_000L) + n);
        float[] xr = random(rng, n), xi = random(rng, n);
        int[] bins = n <= FULL_REFERENCE_MAX ? IntStream.range(0, n).toArray() : sampledBins(rng, n);
        double[][] ref = naiveDft(toDouble(xr), toDouble(xi), bins, inverse ? +1 : -1);
        float[] re = xr.clone(), im = xi.clone();
        call(Fft.of(n), inverse, re, im);
        double[] gotRe = new double[bins.length], gotIm = new double[bins.length];
        for (int b = 0; b < bins.length; b++) {
            gotRe[b] = re[bins[b]];
            gotIm[b] = im[bins[b]];
        }
        double err = relativeError(gotRe, gotIm, ref[0], ref[1]);
        assertTrue(err <= DFT_TOL, "n = " + n + (inverse ? " inverse" : " forward") + ": relative L2 error " + err);
    }

    /** Σ_j x[j]·exp(sign·2πi·jk/n) for the given bins; the angle index jk mod n is formed exactly in long. */
    private static double[][] naiveDft(double[] xr, double[] xi, int[] bins, int sign) {
        int n = xr.length;
        double[] c = new double[n], s = new double[n];
        for (int t = 0; t < n; t++) {
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

    private static double relativeError(double[] gotRe, double[] gotIm, double[] wantRe, double[] wantIm) {
        double num = 0, den = 0;
        for (int i = 0; i < gotRe.length; i++) {
            double dr = gotRe[i] - wantRe[i], di = gotIm[i] - wantIm[i];
            num += dr * dr + di * di;
            den += wantRe[i] * wantRe[i] + wantIm[i] * wantIm[i];
        }
        return Math.sqrt(num / den);
    }

    /** Bins 0, 1 and n − 1 (where index mistakes show first), plus random distinct others. */
    private static int[] sampledBins(SplittableRandom rng, int n) {
        return IntStream.concat(IntStream.of(0, 1, n - 1), rng.ints(0, n).distinct().limit(SAMPLED_BINS * 2L)).distinct().limit(SAMPLED_BINS).toArray();
    }

    private static float[] random(SplittableRandom rng, int n) {
        float[] a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float) rng.nextDouble(-1.0, 1.0);
        return a;
    }

    private static double[] toDouble(float[] a) {
        double[] r = new double[a.length];
        for (int i = 0; i < a.length; i++) r[i] = a[i];
        return r;
    }
}
