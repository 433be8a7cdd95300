package io.bifuse.reference;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
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

    /**
     * Central differences (step 1e-6 in float64) of {@code loss} for every entry of every tensor of
     * {@code wrt} (perturbed in place, restored), against {@code analytic} (same order): each relative
     * error below 1e-6. Truncation is ~1e-12·f‴ and rounding ~1e-16/1e-6 relative, so 1e-6 separates
     * them from any real error. A tensor whose differences are below 1e-8 is zero in exact arithmetic
     * (a bias a softmax ignores, a path cut off): its differences are rounding noise, and the analytic
     * gradient must be as small (below 1e-9). {@code what} starts every message.
     */
    static void assertMatchesFiniteDifferences(String what, List<double[]> wrt, List<double[]> analytic, DoubleSupplier loss) {
        assertEquals(wrt.size(), analytic.size(), what + ": tensor count");
        for (int t = 0; t < wrt.size(); t++) {
            double[] fd = centralDifferences(wrt.get(t), 1e-6, loss), a = analytic.get(t);
            if (norm(fd) < 1e-8) {
                assertTrue(norm(a) < 1e-9, what + ": tensor " + t + ": finite differences " + norm(fd) + " but analytic " + norm(a));
            } else {
                double e = relErr(a, fd);
                assertTrue(e < 1e-6, what + ": tensor " + t + ": relative error " + e);
            }
        }
    }
}
