package io.bifuse;

import static org.junit.jupiter.api.Assertions.*;

import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/** The weight-normalized layer: its effective weight, the chain rule through it, and its argument checks. */
class WeightNormLinearTest {

    @Test void effectiveWeightIsGainTimesDirection() {
        // V = [[3, 0], [0, 4]]: ‖V‖_F = 5, so W = g·V/5 exactly for g = 10.
        WeightNormLinear l = new WeightNormLinear(2, 2, new float[] {3, 0, 0, 4}, 10, new float[] {1, -1});
        assertEquals(5.0, l.norm(), 0.0);
        Linear e = l.effective();
        assertArrayEquals(new float[] {6, 0, 0, 8}, e.weight(), 0f);
        assertArrayEquals(new float[] {1, -1}, e.bias(), 0f);
        assertEquals(2 * 2 + 1 + 2, l.parameterCount());
    }

    @Test void effectiveWeightHasNormG() {
        // dim=None: one gain for the whole matrix, so ‖W‖_F = |g| whatever V (rows are not normalized one by one).
        WeightNormLinear l = WeightNormLinear.random(7, 5, true, 3);
        WeightNormLinear scaled = new WeightNormLinear(7, 5, l.weightV(), -2.5f, null);
        double s = 0;
        for (double w : scaled.effectiveWeight()) s += w * w;
        assertEquals(2.5, Math.sqrt(s), 1e-12);
        assertFalse(scaled.hasBias());
    }

    @Test void randomIsAFreshlyWrappedLinear() {
        // weight_norm sets g = ‖V‖ when it wraps a layer, so W equals nn.Linear's initial weight (to rounding).
        WeightNormLinear l = WeightNormLinear.random(6, 4, true, 11);
        Linear plain = Linear.random(6, 4, true, 11);
        assertArrayEquals(plain.weight(), l.weightV());
        assertArrayEquals(plain.bias(), l.bias());
        assertEquals((float) l.norm(), l.g());
        assertArrayEquals(plain.weight(), l.effective().weight(), 1e-7f);
        assertEquals(l, WeightNormLinear.random(6, 4, true, 11));
        assertNotEquals(l, WeightNormLinear.random(6, 4, true, 12));
    }

    @Test void gradientsMatchFiniteDifferencesThroughTheEffectiveWeight() {
        // L(V, g) = ⟨R, W⟩ + ½‖W‖² with W = g·V/‖V‖, so dW = R + W. Central differences with step 1e-6 in
        // float64 (truncation ~1e-12, rounding ~1e-10 relative) against gradients rounded once to float (~6e-8): 1e-6 separates them from a wrong formula.
        SplittableRandom r = new SplittableRandom(5);
        int out = 4, in = 3;
        float[] v = new float[out * in], b = new float[out];
        for (int i = 0; i < v.length; i++) v[i] = (float) r.nextGaussian();
        for (int i = 0; i < out; i++) b[i] = (float) r.nextGaussian();
        float g = 1.7f;
        double[] rr = new double[out * in], db = new double[out];
        for (int i = 0; i < rr.length; i++) rr[i] = r.nextGaussian();
        for (int i = 0; i < out; i++) db[i] = r.nextGaussian();
        WeightNormLinear l = new WeightNormLinear(out, in, v, g, b);
        double[] w = l.effectiveWeight(), dW = new double[w.length];
        for (int i = 0; i < w.length; i++) dW[i] = rr[i] + w[i];
        WeightNormGradients gr = l.backward(dW, db);

        double[] vd = new double[v.length];
        for (int i = 0; i < v.length; i++) vd[i] = v[i];
        double h = 1e-6;
        double[] fdV = new double[v.length];
        for (int i = 0; i < v.length; i++) {
            double keep = vd[i];
            vd[i] = keep + h;
            double up = loss(vd, g, rr);
            vd[i] = keep - h;
            double down = loss(vd, g, rr);
            vd[i] = keep;
            fdV[i] = (up - down) / (2 * h);
        }
        double fdG = (loss(vd, g + h, rr) - loss(vd, g - h, rr)) / (2 * h);
        assertTrue(relErr(gr.weightV(), fdV) < 1e-6, "dV relative error " + relErr(gr.weightV(), fdV));
        assertEquals(fdG, gr.g(), 1e-6 * Math.abs(fdG));
        for (int o = 0; o < out; o++) assertEquals((float) db[o], gr.bias()[o]);
        assertArrayEquals(new float[] {gr.g()}, gr.gArray());
    }

    @Test void deviceFormFromWAloneEqualsTheDefinition() {
        // dg = ⟨dW, W⟩/g, dV = (g/‖V‖)(dW − (dg/g)·W): what a GPU computes without V. Same values up to rounding.
        SplittableRandom r = new SplittableRandom(9);
        WeightNormLinear l = new WeightNormLinear(5, 6, gaussian(r, 30), -0.8f, null);
        double[] dW = new double[30];
        for (int i = 0; i < 30; i++) dW[i] = r.nextGaussian();
        WeightNormGradients gr = l.backward(dW, null);
        assertNull(gr.bias());
        double[] w = l.effectiveWeight();
        double dg = 0;
        for (int i = 0; i < 30; i++) dg += dW[i] * w[i];
        dg /= l.g();
        assertEquals(dg, gr.g(), 1e-6 * Math.abs(dg));
        double[] dv = new double[30];
        for (int i = 0; i < 30; i++) dv[i] = l.g() / l.norm() * (dW[i] - dg / l.g() * w[i]);
        assertTrue(relErr(gr.weightV(), dv) < 1e-6);
        // The direction's gradient is orthogonal to V: scaling V does not change W.
        double dot = 0;
        for (int i = 0; i < 30; i++) dot += gr.weightV()[i] * (double) l.weightVArray()[i];
        assertEquals(0, dot, 1e-5);
    }

    @Test void floatGradientsOverloadMatches() {
        WeightNormLinear l = WeightNormLinear.random(3, 2, true, 1);
        float[] dW = {1, 2, 3, 4, 5, 6}, db = {1, 0, -1};
        WeightNormGradients a = l.backward(new LinearGradients(dW, db));
        WeightNormGradients b = l.backward(new double[] {1, 2, 3, 4, 5, 6}, new double[] {1, 0, -1});
        assertArrayEquals(b.weightV(), a.weightV());
        assertEquals(b.g(), a.g());
        assertArrayEquals(db, a.bias());
    }

    @Test void argumentsAreCheckedByName() {
        float[] v = {1, 2, 3, 4, 5, 6};
        expect("out: expected >= 1 output features, got 0", () -> new WeightNormLinear(0, 6, v, 1, null));
        expect("in: expected >= 1 input features, got -1", () -> new WeightNormLinear(2, -1, v, 1, null));
        expect("weightV: expected 2 × 3 floats (out × in, as weight_v), got null", () -> new WeightNormLinear(2, 3, null, 1, null));
        expect("weightV: expected 2 × 4 = 8 floats (out × in, as weight_v), got 6", () -> new WeightNormLinear(2, 4, v, 1, null));
        expect("weightV: expected a nonzero tensor", () -> new WeightNormLinear(2, 3, new float[6], 1, null));
        expect("weightV[2]: expected a finite value, got NaN", () -> new WeightNormLinear(2, 3, new float[] {1, 2, Float.NaN, 4, 5, 6}, 1, null));
        expect("weightV[0]: expected a finite value, got Infinity",
                () -> new WeightNormLinear(1, 1, new float[] {Float.POSITIVE_INFINITY}, 1, null));
        expect("g: expected a nonzero gain (weight_g)", () -> new WeightNormLinear(2, 3, v, 0, null));
        expect("g: expected a nonzero gain (weight_g)", () -> new WeightNormLinear(2, 3, v, -0f, null));
        expect("g: expected a finite gain (weight_g), got NaN", () -> new WeightNormLinear(2, 3, v, Float.NaN, null));
        expect("bias: expected 2 floats (one per output feature), got 3", () -> new WeightNormLinear(2, 3, v, 1, new float[3]));
        expect("bias[1]: expected a finite value, got -Infinity",
                () -> new WeightNormLinear(2, 3, v, 1, new float[] {0, Float.NEGATIVE_INFINITY}));
        expect("out, in: expected >= 1, got 0, 3", () -> WeightNormLinear.random(0, 3, true, 1));
        WeightNormLinear l = new WeightNormLinear(2, 3, v, 1, new float[2]);
        expect("dW: expected 2 × 3 = 6 values, got 5", () -> l.backward(new double[5], new double[2]));
        expect("dBias: expected 2 values, got null", () -> l.backward(new double[6], null));
        expect("layer: expected a layer 3 → 4 (weight_v 4 × 3), got 3 → 2 (weight_v 2 × 3)", () -> l.requireShape("layer", 4, 3));
        expect("effective: expected the effective layer's gradients, got null", () -> l.backward((LinearGradients) null));
    }

    @Test void copiesInAndOut() {
        float[] v = {1, 2}, b = {3};
        WeightNormLinear l = new WeightNormLinear(1, 2, v, 1, b);
        v[0] = 100;
        b[0] = 100;
        assertEquals(1f, l.weightV()[0]);
        assertEquals(3f, l.bias()[0]);
        l.weightV()[1] = 50;
        assertEquals(2f, l.weightV()[1]);
        assertEquals("WeightNormLinear[2 → 1, g=1.0]", l.toString());
    }

    private static double loss(double[] v, double g, double[] rr) {
        double s = 0;
        for (double x : v) s += x * x;
        double n = Math.sqrt(s), l = 0;
        for (int i = 0; i < v.length; i++) {
            double w = g * v[i] / n;
            l += rr[i] * w + 0.5 * w * w;
        }
        return l;
    }

    private static float[] gaussian(SplittableRandom r, int n) {
        float[] a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float) r.nextGaussian();
        return a;
    }

    private static double relErr(float[] a, double[] ref) {
        double num = 0, den = 0;
        for (int i = 0; i < a.length; i++) {
            num += (a[i] - ref[i]) * (a[i] - ref[i]);
            den += ref[i] * ref[i];
        }
        return Math.sqrt(num / den);
    }

    private static void expect(String message, Runnable call) {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, call::run);
        assertTrue(e.getMessage().startsWith(message), "'" + e.getMessage() + "' does not start with '" + message + "'");
    }
}
