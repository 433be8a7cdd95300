package io.bifuse.reference;

import java.util.SplittableRandom;

/** The small double-vector helpers the reference tests share (inputs, probe directions, errors). */
final class Vectors {
    private Vectors() {}

    static double[] gaussian(SplittableRandom r, int n) {
        double[] a = new double[n];
        for (int i = 0; i < n; i++) a[i] = r.nextGaussian();
        return a;
    }

    static double dot(double[] a, double[] b) {
        double s = 0;
        for (int i = 0; i < a.length; i++) s += a[i] * b[i];
        return s;
    }

    static double norm(double[] a) { return Math.sqrt(dot(a, a)); }

    /** {@code ‖a − ref‖ / ‖ref‖}. */
    static double relErr(double[] a, double[] ref) {
        double num = 0;
        for (int i = 0; i < a.length; i++) num += (a[i] - ref[i]) * (a[i] - ref[i]);
        return Math.sqrt(num) / norm(ref);
    }
}
