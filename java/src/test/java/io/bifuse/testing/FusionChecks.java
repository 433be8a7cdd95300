package io.bifuse.testing;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.bifuse.StateDict;
import java.util.List;
import java.util.SplittableRandom;

/**
 * The checks the block.bootstrap fusions' tests share: a backend's tensors against the float64
 * reference under {@link Conditioning}'s rule (tensors it finds not comparable are held to finite
 * values, and said so), results against a fixture's, and the float-exact inputs and linear losses of the
 * finite-difference checks.
 */
public final class FusionChecks {
    private FusionChecks() {}

    /** Each of {@code got} against {@code want} at {@code tol}, raised where {@code cond} explains more (see the class comment). */
    public static void assertMatchesReference(List<float[]> got, List<double[]> want, List<String> names, Conditioning cond, double tol, long seed) {
        assertEquals(want.size(), got.size(), "tensor count, seed " + seed);
        for (int t = 0; t < got.size(); t++) {
            double e = Stats.relativeL2(got.get(t), want.get(t)), bound = cond.bound(t, tol, e);
            if (!cond.comparable(t)) { // see Conditioning.NOT_COMPARABLE: finite values only
                for (float v : got.get(t)) assertTrue(Float.isFinite(v), names.get(t) + ": not finite, seed " + seed);
                System.out.println(names.get(t) + ": not comparable in float32 (baseline above 1e-2; error " + e + "), seed " + seed);
                continue;
            }
            assertTrue(e <= bound, names.get(t) + ": relative L2 " + e + " > " + bound + " (" + cond.draws() + " conditioning draws), seed " + seed);
        }
    }

    /** A float32 backend's output and gradients (in {@code names}' order, {@code input.0}, ...) against the fixture's {@code out} and {@code grad.<name>}. */
    public static void assertMatchesFixture(StateDict sd, String what, float[] out, List<float[]> grads, List<String> names, double tol) {
        double e = Stats.relativeL2(out, sd.doubles("out"));
        assertTrue(e <= tol, what + " forward: relative L2 " + e);
        assertEquals(names.size(), grads.size(), what + ": tensor count");
        for (int t = 0; t < names.size(); t++) {
            e = Stats.relativeL2(grads.get(t), sd.doubles("grad." + names.get(t)));
            assertTrue(e <= tol, what + " " + names.get(t) + ": relative L2 " + e);
        }
    }

    /** The same for a float64 reference's results. */
    public static void assertReferenceMatchesFixture(StateDict sd, String what, double[] out, List<double[]> grads, List<String> names, double tol) {
        double e = Stats.relativeL2(out, sd.doubles("out"));
        assertTrue(e <= tol, what + " forward: relative L2 " + e);
        assertEquals(names.size(), grads.size(), what + ": tensor count");
        for (int t = 0; t < names.size(); t++) {
            e = Stats.relativeL2(grads.get(t), sd.doubles("grad." + names.get(t)));
            assertTrue(e <= tol, what + " " + names.get(t) + ": relative L2 " + e);
        }
    }

    /** {@code n} Gaussians rounded to float (so the float32 op's inputs are these exactly), in double. */
    public static double[] floatExactGaussian(SplittableRandom r, int n) {
        double[] a = new double[n];
        for (int i = 0; i < n; i++) a[i] = (float) r.nextGaussian();
        return a;
    }

    /** {@code Σ w ⊙ f}: the linear loss whose gradient is the backward given {@code gradOut = w}. */
    public static double dot(double[] w, double[] f) {
        double s = 0;
        for (int i = 0; i < f.length; i++) s += w[i] * f[i];
        return s;
    }

    /** The batch of a fixture (input.0's first dimension). */
    public static int batch(StateDict sd) { return (int) sd.info("input.0").shape()[0]; }
}
