package io.bifuse.reference;

import java.util.SplittableRandom;
import java.util.function.DoubleSupplier;

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

    /** Central differences {@code (L(v + h e_i) − L(v − h e_i)) / 2h} for every entry of {@code v} (restored after each). */
    static double[] centralDifferences(double[] v, double h, DoubleSupplier loss) {
        double[] fd = new double[v.length];
        for (int i = 0; i < v.length; i++) {
            double keep = v[i];
            v[i] = keep + h;
            double up = loss.getAsDouble();
            v[i] = keep - h;
            double down = loss.getAsDouble();
            v[i] = keep;
            fd[i] = (up - down) / (2 * h);
        }
        return fd;
    }
}
