package io.bifuse.reference;

import static io.bifuse.reference.Vectors.*;
import static org.junit.jupiter.api.Assertions.*;

import io.bifuse.BanAttention;
import io.bifuse.Linear;
import io.bifuse.ObjectMask;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/** The oracle itself: a hand-computed map, the mask's limiting cases, and finite differences of every tensor. */
class BanAttentionReferenceTest {

    @Test void handComputedMap() {
        // K = 1, p = 1, bias 0.5; two objects x = {1, 2}, two tokens y = {1, −1}: logits {1, −1, 2, −2} + 0.5,
        // softmax over all four entries: e^{l} / Σ e^{l} (the bias cancels).
        BanAttention op = BanAttention.of(new Linear(1, 1, new float[] {1}, new float[] {0.5f}));
        BanAttentionReference.Result r = BanAttentionReference.forward(op, new float[] {1, 2}, new float[] {1, -1}, null, 1, 2, 2);
        double e1 = Math.E, z = e1 + 1 / e1 + e1 * e1 + 1 / (e1 * e1);
        assertArrayEquals(new double[] {1.5, -0.5, 2.5, -1.5}, r.logits(), 1e-15);
        assertArrayEquals(new double[] {e1 / z, 1 / e1 / z, e1 * e1 / z, 1 / (e1 * e1) / z}, r.attention(), 1e-15);
    }

    @Test void paddedObjectsAndEmptySamples() {
        // sample 0: objects 0 and 2 real; sample 1: none (the documented all-zero map); sample 2: only object 1.
        SplittableRandom r = new SplittableRandom(3);
        int b = 3, n = 3, m = 2, k = 4, g = 2;
        BanAttentionReference.Params p = params(r, g, k, true);
        ObjectMask mask = ObjectMask.of(new boolean[] {true, false, true, false, false, false, false, true, false}, b, n);
        double[] x = gaussian(r, b * n * k), y = gaussian(r, b * m * k);
        BanAttentionReference.Result res = BanAttentionReference.forward(p, x, y, mask, b, n, m);
        for (int bb = 0; bb < b; bb++) {
            for (int gg = 0; gg < g; gg++) {
                double sum = 0;
                for (int i = 0; i < n; i++) {
                    for (int j = 0; j < m; j++) {
                        int at = ((bb * g + gg) * n + i) * m + j;
                        if (mask.isReal(bb, i)) {
                            assertTrue(res.attention()[at] > 0 && Double.isFinite(res.logits()[at]));
                        } else {
                            assertEquals(0.0, res.attention()[at]);
                            assertEquals(Double.NEGATIVE_INFINITY, res.logits()[at]);
                        }
                        sum += res.attention()[at];
                    }
                }
                assertEquals(bb == 1 ? 0 : 1, sum, 1e-12, "sample " + bb + " glimpse " + gg);
            }
        }
        BanAttentionReference.Grads gr = BanAttentionReference.backward(p, x, y, mask, gaussian(r, b * g * n * m), b, n, m);
        for (int kk = 0; kk < k; kk++) {
            assertEquals(0.0, gr.dxp()[(0 * n + 1) * k + kk]);      // padded object of sample 0
            for (int i = 0; i < n; i++) assertEquals(0.0, gr.dxp()[(1 * n + i) * k + kk]);  // empty sample
            for (int j = 0; j < m; j++) assertEquals(0.0, gr.dyp()[(1 * m + j) * k + kk]);
        }
        assertArrayEquals(new double[g], gr.dbias(), 0.0);
    }

    @Test void gradientsMatchFiniteDifferencesWithoutMask() {
        SplittableRandom r = new SplittableRandom(17);
        checkAgainstFiniteDifferences(params(r, 2, 5, true), r, null, 3, 4, 3);
    }

    @Test void gradientsMatchFiniteDifferencesWithMasks() {
        // counts: a padded sample, an EMPTY sample, a single-object sample and a full one
        SplittableRandom r = new SplittableRandom(19);
        checkAgainstFiniteDifferences(params(r, 3, 4, true), r, ObjectMask.counts(new int[] {2, 0, 1, 4}, 4), 4, 4, 3);
        // a scattered mask, one glimpse, no bias, one token
        checkAgainstFiniteDifferences(params(r, 1, 6, false), r, ObjectMask.of(new boolean[] {false, true, false, true, true, false}, 2, 3), 2, 3, 1);
    }

    @Test void theBiasGradientIsExactlyZeroAndItsSumCancels() {
        // dbias = Σ dl, which cancels in exact arithmetic; the reference returns exact zeros. Check the cancellation itself.
        SplittableRandom r = new SplittableRandom(23);
        int b = 2, n = 5, m = 3, k = 4, g = 2;
        BanAttentionReference.Params p = params(r, g, k, true);
        double[] x = gaussian(r, b * n * k), y = gaussian(r, b * m * k), ga = gaussian(r, b * g * n * m);
        double[] att = BanAttentionReference.forward(p, x, y, null, b, n, m).attention();
        for (int map = 0; map < b * g; map++) {
            double c = 0, s = 0, abs = 0;
            for (int e = 0; e < n * m; e++) c += att[map * n * m + e] * ga[map * n * m + e];
            for (int e = 0; e < n * m; e++) {
                double dl = att[map * n * m + e] * (ga[map * n * m + e] - c);
                s += dl;
                abs += Math.abs(dl);
            }
            assertTrue(Math.abs(s) < 1e-14 * abs, "Σ dl = " + s + " of terms summing to " + abs);
        }
        assertArrayEquals(new double[g], BanAttentionReference.backward(p, x, y, null, ga, b, n, m).dbias(), 0.0);
    }

    /**
     * Loss = Σ gA ⊙ A for a random gA; every entry of xp, yp, p and the bias perturbed by ±1e-6 in float64:
     * truncation ~1e-12, rounding ~1e-10 relative, so 1e-6 separates them from any real error. A gradient
     * that is zero in exact arithmetic (the bias; padded objects' rows) must be below 1e-9 where the finite
     * differences are rounding noise.
     */
    static void checkAgainstFiniteDifferences(BanAttentionReference.Params p, SplittableRandom r, ObjectMask mask, int b, int n, int m) {
        int k = p.width(), g = p.glimpses();
        double[] x = gaussian(r, b * n * k), y = gaussian(r, b * m * k), ga = gaussian(r, b * g * n * m);
        BanAttentionReference.Grads gr = BanAttentionReference.backward(p, x, y, mask, ga, b, n, m);
        List<double[]> wrt = new ArrayList<>(List.of(x, y));
        wrt.addAll(p.tensors());
        List<double[]> analytic = gr.tensors();
        assertEquals(wrt.size(), analytic.size());
        double h = 1e-6;
        for (int t = 0; t < wrt.size(); t++) {
            double[] v = wrt.get(t), fd = centralDifferences(v, h, () -> dot(ga, BanAttentionReference.forward(p, x, y, mask, b, n, m).attention()));
            double[] a = analytic.get(t);
            if (norm(fd) < 1e-8) {
                assertTrue(norm(a) < 1e-9, "tensor " + t + ": finite differences " + norm(fd) + " but analytic " + norm(a));
            } else {
                double num = 0;
                for (int i = 0; i < a.length; i++) num += (a[i] - fd[i]) * (a[i] - fd[i]);
                double e = Math.sqrt(num) / norm(fd);
                assertTrue(e < 1e-6, "tensor " + t + " (mask " + mask + "): relative error " + e);
            }
            for (int i = 0; i < a.length; i++) assertTrue(Double.isFinite(a[i]), "tensor " + t + " [" + i + "] = " + a[i]);
        }
        // padded objects' rows of dxp are exactly zero
        for (int bb = 0; bb < b; bb++) {
            for (int i = 0; i < n; i++) {
                if (mask != null && !mask.isReal(bb, i)) for (int kk = 0; kk < k; kk++) assertEquals(0.0, gr.dxp()[(bb * n + i) * k + kk]);
            }
        }
    }

    /** p of scale 1/sqrt(K)·3 (maps far from uniform), bias O(1). */
    static BanAttentionReference.Params params(SplittableRandom r, int g, int k, boolean bias) {
        double[] w = gaussian(r, g * k);
        for (int i = 0; i < w.length; i++) w[i] *= 3 / Math.sqrt(k);
        return new BanAttentionReference.Params(g, k, w, bias ? gaussian(r, g) : null);
    }
}
