package io.bifuse.reference;

import static io.bifuse.reference.Vectors.*;
import static org.junit.jupiter.api.Assertions.*;

import io.bifuse.ObjectMask;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/** The oracle itself: hand-computed cases, the attention's limiting cases, padding, and finite differences of every tensor. */
class BanBlockReferenceTest {

    /**
     * The conditioning baseline behind the TF32/BF16 gradient tolerances: zero without a perturbation,
     * first order in it where no ReLU decision flips (a 1e-9 move changes every gradient by ~1e-9), and
     * never NaN, also with an empty and a single-object sample.
     */
    @Test void perturbationBaselineIsZeroWithoutPerturbationAndFirstOrderInIt() {
        SplittableRandom r = new SplittableRandom(21);
        int b = 3, n = 4, m = 3;
        io.bifuse.BanBlock op = io.bifuse.BanBlock.random(6, 5, 6, 4, 2, 2, 9);
        float[] x = io.bifuse.testing.Stats.gaussian(r, b * n * 6), y = io.bifuse.testing.Stats.gaussian(r, b * m * 5),
                g = io.bifuse.testing.Stats.gaussian(r, b * 5);
        ObjectMask mask = ObjectMask.counts(new int[] {0, 1, 4}, n);
        List<double[]> ref = BanBlockReference.backward(op, x, y, mask, g, b, n, m).tensors();
        for (double e : BanBlockReference.perturbationBaseline(op, x, y, mask, g, b, n, m, ref, 0, 2, 1)) assertEquals(0, e);
        double[] tiny = BanBlockReference.perturbationBaseline(op, x, y, mask, g, b, n, m, ref, 1e-9, 2, 1);
        int moved = 0;
        for (int t = 0; t < tiny.length; t++) {
            assertTrue(tiny[t] < 1e-7, "tensor " + t + ": " + tiny[t]); // NaN fails too
            if (tiny[t] > 0) moved++;
        }
        // all but the few that do not depend on any perturbed value (the residual biases' gradients are
        // M·Σ_b gradOut; the logits bias gradient is exactly zero)
        assertTrue(moved > tiny.length - 2 - op.glimpses(), moved + " of " + tiny.length + " moved");
    }

    @Test void handComputedScalarCase() {
        // Every width 1, one object, one token, one glimpse: A = 1 whatever the logits, so
        // out = y + Q·relu(U x + u)·relu(T y + t) + q, with each weight g·v/|v| = g·sign(v).
        BanBlockReference.Params p = new BanBlockReference.Params(layer(1, 1, 2, 0.5, 0.1), layer(1, 1, -1, 0.3, 0.2), layer(1, 1, 1, 2, 0.7),
                List.of(layer(1, 1, 3, 1.5, 0.25)), List.of(layer(1, 1, -2, 0.5, 1)), List.of(layer(1, 1, 4, -2, 0.5)), 1);
        double x = 0.8, y = -0.6;
        double xpp = Math.max(1.5 * x + 0.25, 0), ypp = Math.max(-0.5 * y + 1, 0);
        BanBlockReference.Result r = BanBlockReference.forward(p, new double[] {x}, new double[] {y}, ObjectMask.all(1, 1), 1, 1, 1);
        assertArrayEquals(new double[] {1}, r.attention(), 0);
        assertEquals(y + (-2) * xpp * ypp + 0.5, r.out()[0], 1e-15);
    }

    @Test void deadTokenProjectionGivesUniformAttentionOverRealObjects() {
        // A token bias of −100 makes Y' = 0, so every logit is c_g: the attention is 1/(N_b·M) over the real
        // objects and 0 at padded ones; the output is then computed here independently, glimpse by glimpse.
        SplittableRandom r = new SplittableRandom(3);
        int batch = 2, n = 4, m = 3, dx = 3, dy = 2, k = 4, gs = 2, kp = 4, group = 2;
        BanBlockReference.Params q = gaussianParams(r, dx, dy, k, gs, kp, group);
        double[] tb = q.tokens().bias();
        java.util.Arrays.fill(tb, -100);
        double[] x = gaussian(r, batch * n * dx), y = gaussian(r, batch * m * dy);
        for (int i = 0; i < y.length; i++) y[i] *= 0.1; // keeps W_y y far below 100
        ObjectMask mask = ObjectMask.counts(new int[] {3, 1}, n);
        BanBlockReference.Result res = BanBlockReference.forward(q, x, y, mask, batch, n, m);
        for (int b = 0; b < batch; b++) {
            int nb = mask.count(b);
            for (int g = 0; g < gs; g++) {
                for (int i = 0; i < n; i++) {
                    for (int j = 0; j < m; j++) {
                        assertEquals(i < nb ? 1.0 / (nb * m) : 0.0, res.attention()[((b * gs + g) * n + i) * m + j], 1e-15);
                    }
                }
            }
            double[][] yc = new double[m][];
            for (int j = 0; j < m; j++) yc[j] = java.util.Arrays.copyOfRange(y, (b * m + j) * dy, (b * m + j + 1) * dy);
            for (int g = 0; g < gs; g++) {
                double[] sx = new double[kp], sy = new double[kp];
                for (int i = 0; i < nb; i++) {
                    double[] h = relu(linear(q.glimpseObjects().get(g), java.util.Arrays.copyOfRange(x, (b * n + i) * dx, (b * n + i + 1) * dx)));
                    for (int kk = 0; kk < kp; kk++) sx[kk] += h[kk];
                }
                for (int j = 0; j < m; j++) {
                    double[] h = relu(linear(q.glimpseTokens().get(g), yc[j]));
                    for (int kk = 0; kk < kp; kk++) sy[kk] += h[kk];
                }
                double[] s = new double[kp / group];
                for (int kk = 0; kk < kp; kk++) s[kk / group] += sx[kk] * sy[kk] / (nb * m);
                double[] add = linear(q.residuals().get(g), s);
                for (int j = 0; j < m; j++) for (int d = 0; d < dy; d++) yc[j][d] += add[d];
            }
            for (int d = 0; d < dy; d++) {
                double o = 0;
                for (int j = 0; j < m; j++) o += yc[j][d];
                assertEquals(o, res.out()[b * dy + d], 1e-12);
            }
        }
    }

    @Test void paddedObjectsAreNeverRead() {
        // Whatever a padded row holds (here huge values), the output is that of the same batch with the
        // row zeroed, and its input gradient is zero.
        SplittableRandom r = new SplittableRandom(5);
        int batch = 2, n = 3, m = 2, dx = 3, dy = 2;
        BanBlockReference.Params p = gaussianParams(r, dx, dy, 4, 2, 3, 1);
        double[] x = gaussian(r, batch * n * dx), y = gaussian(r, batch * m * dy), go = gaussian(r, batch * dy);
        ObjectMask mask = ObjectMask.counts(new int[] {2, 3}, n);
        double[] zeroed = x.clone();
        for (int d = 0; d < dx; d++) {
            x[2 * dx + d] = 1e6 * (d + 1);
            zeroed[2 * dx + d] = 0;
        }
        assertArrayEquals(BanBlockReference.forward(p, zeroed, y, mask, batch, n, m).out(), BanBlockReference.forward(p, x, y, mask, batch, n, m).out(), 0);
        double[] dx0 = BanBlockReference.backward(p, x, y, mask, go, batch, n, m).dx();
        for (int d = 0; d < dx; d++) assertEquals(0, dx0[2 * dx + d], 0);
    }

    @Test void emptySampleHasZeroAttentionAndTheResidualPathAlone() {
        // No real object: A = 0 (not ban-vqa's NaN), so each glimpse adds only the residual bias q_g, and
        // nothing flows back into that sample's objects.
        SplittableRandom r = new SplittableRandom(7);
        int batch = 2, n = 3, m = 2, dx = 3, dy = 2, gs = 2;
        BanBlockReference.Params p = gaussianParams(r, dx, dy, 4, gs, 3, 1);
        double[] x = gaussian(r, batch * n * dx), y = gaussian(r, batch * m * dy), go = gaussian(r, batch * dy);
        ObjectMask mask = ObjectMask.counts(new int[] {0, 2}, n);
        BanBlockReference.Result res = BanBlockReference.forward(p, x, y, mask, batch, n, m);
        for (int i = 0; i < gs * n * m; i++) assertEquals(0, res.attention()[i], 0);
        for (double v : res.attention()) assertFalse(Double.isNaN(v));
        for (int d = 0; d < dy; d++) {
            double o = 0;
            for (int j = 0; j < m; j++) o += y[j * dy + d];
            for (int g = 0; g < gs; g++) o += m * p.residuals().get(g).bias()[d];
            assertEquals(o, res.out()[d], 1e-12);
        }
        BanBlockReference.Grads gr = BanBlockReference.backward(p, x, y, mask, go, batch, n, m);
        for (int i = 0; i < n * dx; i++) assertEquals(0, gr.dx()[i], 0);
        for (double[] t : gr.tensors()) for (double v : t) assertTrue(Double.isFinite(v));
        checkAgainstFiniteDifferences(p, x, y, mask, go, batch, n, m);
    }

    @ParameterizedTest(name = "B={0} N={1} M={2} Dx={3} Dy={4} K={5} G={6} K'={7} group={8}")
    @CsvSource({"3,4,3,4,3,5,2,4,2", "3,4,3,3,4,6,3,3,1", "2,1,1,2,2,3,1,2,1"})
    void gradientsOfEveryTensorMatchFiniteDifferences(int batch, int n, int m, int dx, int dy, int k, int gs, int kp, int group) {
        // All entries of every input and parameter tensor (weight_v, weight_g, bias of every layer), with
        // padded objects (nonzero padded rows: they must get exactly zero gradient) and a single-object
        // sample. Central differences with step 1e-6 in float64: truncation ~1e-12·f''', rounding
        // ~1e-16/1e-6, so 1e-6 relative separates them from any real error.
        SplittableRandom r = new SplittableRandom(17L * batch + 31L * k + gs);
        BanBlockReference.Params p = gaussianParams(r, dx, dy, k, gs, kp, group);
        double[] x = gaussian(r, batch * n * dx), y = gaussian(r, batch * m * dy), go = gaussian(r, batch * dy);
        int[] counts = new int[batch];
        for (int b = 0; b < batch; b++) counts[b] = b == 0 ? n : b == 1 ? 1 : Math.max(1, n - 2);
        checkAgainstFiniteDifferences(p, x, y, ObjectMask.counts(counts, n), go, batch, n, m);
    }

    @Test void logitsBiasGradientIsExactlyZero() {
        // Σ_{i,j} dl_{g,i,j} = 0 for a softmax: the reference returns exact zeros (see its class comment).
        SplittableRandom r = new SplittableRandom(11);
        BanBlockReference.Params p = gaussianParams(r, 3, 2, 4, 3, 2, 1);
        double[] x = gaussian(r, 2 * 3 * 3), y = gaussian(r, 2 * 4 * 2), go = gaussian(r, 2 * 2);
        BanBlockReference.Grads gr = BanBlockReference.backward(p, x, y, ObjectMask.counts(new int[] {3, 2}, 3), go, 2, 3, 4);
        // tensors: objects v, g, b; tokens v, g, b; logits v, g, b
        assertArrayEquals(new double[3], gr.parameters().get(8), 0.0);
        assertTrue(norm(gr.parameters().get(6)) > 1e-6, "the logits direction does get a gradient");
    }

    static void checkAgainstFiniteDifferences(BanBlockReference.Params p, double[] x, double[] y, ObjectMask mask, double[] go,
                                              int batch, int n, int m) {
        // Zero in exact arithmetic: the logits bias; every attention parameter when each sample has one
        // real object and one token.
        List<double[]> wrt = new ArrayList<>(List.of(x, y));
        wrt.addAll(p.tensors());
        assertMatchesFiniteDifferences("BanBlock", wrt, BanBlockReference.backward(p, x, y, mask, go, batch, n, m).tensors(),
                () -> dot(go, BanBlockReference.forward(p, x, y, mask, batch, n, m).out()));
    }

    /** Directions gaussian, gains around 1.5 (effective weights of norm |g|), biases O(0.3). */
    static BanBlockReference.Params gaussianParams(SplittableRandom r, int dx, int dy, int k, int gs, int kp, int group) {
        List<BanBlockReference.Layer> go = new ArrayList<>(), gt = new ArrayList<>(), res = new ArrayList<>();
        for (int g = 0; g < gs; g++) go.add(layer(r, kp, dx));
        for (int g = 0; g < gs; g++) gt.add(layer(r, kp, dy));
        for (int g = 0; g < gs; g++) res.add(layer(r, dy, kp / group));
        return new BanBlockReference.Params(layer(r, k, dx), layer(r, k, dy), layer(r, gs, k), go, gt, res, group);
    }

    static BanBlockReference.Layer layer(SplittableRandom r, int out, int in) {
        double[] b = gaussian(r, out);
        for (int i = 0; i < out; i++) b[i] *= 0.3;
        double g = (r.nextBoolean() ? 1 : -1) * (1 + r.nextDouble());
        return new BanBlockReference.Layer(out, in, gaussian(r, out * in), new double[] {g}, b);
    }

    static BanBlockReference.Layer layer(int out, int in, double v, double g, double bias) {
        return new BanBlockReference.Layer(out, in, new double[] {v}, new double[] {g}, new double[] {bias});
    }

    /** The effective layer applied to one vector, written here from the weight-norm definition. */
    static double[] linear(BanBlockReference.Layer l, double[] v) {
        double n = norm(l.v());
        double[] o = new double[l.out()];
        for (int i = 0; i < l.out(); i++) {
            double acc = l.bias()[i];
            for (int j = 0; j < l.in(); j++) acc += l.g()[0] * l.v()[i * l.in() + j] / n * v[j];
            o[i] = acc;
        }
        return o;
    }

    static double[] relu(double[] a) {
        for (int i = 0; i < a.length; i++) a[i] = Math.max(a[i], 0);
        return a;
    }
}
