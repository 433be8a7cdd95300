package io.bifuse.testing;

import java.util.Arrays;

/** Error and timing summaries shared by check, bench and the tests. */
public final class Stats {
    private Stats() {}

    /**
     * A fresh seed for a test's random inputs, {@link System#nanoTime()}, unless the system property
     * {@code bifuse.seed} names one: a failure message gives its seed, and
     * {@code -Dbifuse.seed=N -Dtest=Class#method} reruns exactly that case.
     */
    public static long freshSeed() {
        String s = System.getProperty("bifuse.seed");
        if (s == null || s.isBlank()) return System.nanoTime();
        try {
            return Long.parseLong(s.strip());
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("bifuse.seed: expected a long, got '" + s + "'", e);
        }
    }

    /**
     * Fails with an {@link AssertionError} naming the first tensor whose relative L2 error is not below
     * {@code tol} (NaN included), or a count that differs: {@code names}, {@code got} and {@code ref}
     * are one op's gradients in its {@code gradientNames()} order.
     */
    public static void assertEachBelow(java.util.List<String> names, java.util.List<float[]> got, java.util.List<double[]> ref, double tol) {
        if (names.size() != got.size() || ref.size() != got.size()) {
            throw new AssertionError("tensor counts: " + names.size() + " names, " + got.size() + " computed, " + ref.size() + " in the reference");
        }
        for (int i = 0; i < got.size(); i++) {
            double e = relativeL2(got.get(i), ref.get(i));
            if (!(e < tol)) throw new AssertionError(names.get(i) + ": relative L2 " + e + " (tolerance " + tol + ")");
        }
    }

    /** {@code ‖a − ref‖₂ / ‖ref‖₂} in double (0 when both are zero). NaN anywhere gives NaN. */
    public static double relativeL2(float[] a, double[] ref) {
        if (a.length != ref.length) throw new IllegalArgumentException("lengths differ: " + a.length + " vs " + ref.length);
        double num = 0, den = 0;
        for (int i = 0; i < a.length; i++) {
            double e = a[i] - ref[i];
            num += e * e;
            den += ref[i] * ref[i];
        }
        return den == 0 ? Math.sqrt(num) : Math.sqrt(num / den);
    }

    /** The largest relative L2 error over matching tensors (e.g. every gradient of an op); NaN (an unwritten element) or a null tensor sticks. */
    public static double worstError(java.util.List<float[]> got, java.util.List<double[]> ref) {
        if (got.size() != ref.size()) throw new IllegalStateException("tensors: " + got.size() + " vs " + ref.size());
        double worst = 0;
        for (int i = 0; i < got.size(); i++) {
            double e = got.get(i) == null ? Double.NaN : relativeL2(got.get(i), ref.get(i));
            if (!(e <= worst)) worst = e;
        }
        return worst;
    }

    /**
     * A reference gradient this small is cancellation, not signal: a real one at the tests' sizes is 1e-4 or
     * more, this the float64 residue (1e-16 to 1e-15 relative) of a sum that is zero in exact arithmetic,
     * e.g. a hidden or cell bias under ReLU whose units are active in every cell of a sample (its gradient is
     * then a softmax gradient's sum over the cells). A relative error against it means nothing.
     */
    public static final double CANCELLED = 1e-12;
    /** What float32 leaves of such a sum: ~6e-8 of the sum of its |terms| (at most a few hundred of O(0.1)). */
    public static final double CANCELLED_DEVICE = 1e-4;

    /** Whether {@code ref} is a cancelled sum ({@link #CANCELLED}) but not exactly zero. */
    public static boolean cancelled(double[] ref) {
        double n = norm(ref);
        return n > 0 && n <= CANCELLED;
    }

    public static double norm(double[] a) {
        double n = 0;
        for (double x : a) n += x * x;
        return Math.sqrt(n);
    }

    public static double norm(float[] a) {
        double n = 0;
        for (float x : a) n += (double) x * x;
        return Math.sqrt(n);
    }

    /** {@code ‖a − ref‖₂ / ‖ref‖₂} for double results. */
    public static double relativeL2(double[] a, double[] ref) {
        if (a.length != ref.length) throw new IllegalArgumentException("lengths differ: " + a.length + " vs " + ref.length);
        double num = 0, den = 0;
        for (int i = 0; i < a.length; i++) {
            num += (a[i] - ref[i]) * (a[i] - ref[i]);
            den += ref[i] * ref[i];
        }
        return den == 0 ? Math.sqrt(num) : Math.sqrt(num / den);
    }

    /** The q-quantile (nearest rank) of {@code xs}; q = 0.5 is the median. */
    public static double quantile(double[] xs, double q) {
        double[] s = xs.clone();
        Arrays.sort(s);
        return s[(int) Math.min(s.length - 1, Math.round(q * (s.length - 1)))];
    }

    public static float[] gaussian(java.util.SplittableRandom r, int n) {
        float[] a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float) r.nextGaussian();
        return a;
    }
}
