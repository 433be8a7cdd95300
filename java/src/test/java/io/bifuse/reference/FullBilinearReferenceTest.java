package io.bifuse.reference;

import static io.bifuse.reference.Vectors.*;
import static org.junit.jupiter.api.Assertions.*;

import io.bifuse.FullBilinear;
import io.bifuse.Normalization;
import io.bifuse.Precision;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/** The oracle itself: hand-computed cases, float64 finite differences of its own forward, and the conditioning baseline. */
class FullBilinearReferenceTest {
    static final Normalization[] NORMS = {
        Normalization.NONE,
        new Normalization(false, 0, Normalization.L2.MAX_NORM, 1e-12f),
        new Normalization(false, 0, Normalization.L2.SUM_SQUARES, 1e-7f),
        new Normalization(false, 0, Normalization.L2.MAX_NORM, 1e3f), // eps clamp active: a constant scale
        new Normalization(true, 0, Normalization.L2.NONE, 0),
        Normalization.pytorch(),
        // Caffe's ssqrt gradient eps (0.03) is deliberately not the derivative: NormalizationReference's own test covers it.
        new Normalization(true, 0, Normalization.L2.SUM_SQUARES, 1e-7f),
    };

    @Test void handComputedCase() {
        // X (L=2 × C1=2) = [[1, 2], [3, 4]], Y (2 × 3) = [[1, 0, -1], [2, 1, 0]]:
        //   Z = XᵀY = [[1·1 + 3·2, 3, -1], [2·1 + 4·2, 4, -2]] = [[7, 3, -1], [10, 4, -2]].
        FullBilinear op = FullBilinear.of(2, 3, false, Normalization.NONE);
        double[] z = FullBilinearReference.forward(op, new float[] {1, 2, 3, 4}, new float[] {1, 0, -1, 2, 1, 0}, 1, 2);
        assertArrayEquals(new double[] {7, 3, -1, 10, 4, -2}, z, 0);
        // Averaged: / L = 2.  Homologous XᵀX = [[10, 14], [14, 20]].
        assertArrayEquals(new double[] {3.5, 1.5, -0.5, 5, 2, -1},
                FullBilinearReference.forward(FullBilinear.of(2, 3, true, Normalization.NONE), new float[] {1, 2, 3, 4}, new float[] {1, 0, -1, 2, 1, 0}, 1, 2), 0);
        assertArrayEquals(new double[] {10, 14, 14, 20},
                FullBilinearReference.forward(FullBilinear.homologous(2, false, Normalization.NONE), new float[] {1, 2, 3, 4}, null, 1, 2), 0);
    }

    @Test void handComputedNormalizationAndGradient() {
        // z = XᵀX = [[10, 14], [14, 20]] -> ssqrt -> {√10, √14, √14, √20}, ‖u‖ = √58.
        FullBilinear op = FullBilinear.homologous(2, false, Normalization.pytorch());
        double[] o = FullBilinearReference.forward(op, new float[] {1, 2, 3, 4}, null, 1, 2);
        assertArrayEquals(new double[] {Math.sqrt(10 / 58.0), Math.sqrt(14 / 58.0), Math.sqrt(14 / 58.0), Math.sqrt(20 / 58.0)}, o, 1e-15);
        // No normalization, G = [[1, 0], [0, 0]] (only ∂L/∂Z[0,0] = 1): Z[0,0] = Σ_l X[l,0]², so ∂/∂X[l,0] = 2X[l,0].
        FullBilinear raw = FullBilinear.homologous(2, false, Normalization.NONE);
        double[] gx = FullBilinearReference.backward(raw, new float[] {1, 2, 3, 4}, null, new float[] {1, 0, 0, 0}, 1, 2)[0];
        assertArrayEquals(new double[] {2, 0, 6, 0}, gx, 0);
    }

    @Test void gradientsMatchFiniteDifferences() {
        SplittableRandom r = new SplittableRandom(5);
        for (Normalization n : NORMS) {
            for (boolean homologous : new boolean[] {false, true}) {
                for (boolean average : new boolean[] {false, true}) {
                    int batch = 2, len = 4, c1 = 3, c2 = homologous ? 3 : 5;
                    FullBilinear op = homologous ? FullBilinear.homologous(c1, average, n) : FullBilinear.of(c1, c2, average, n);
                    double[] x = gaussian(r, batch * len * c1), y = homologous ? x : gaussian(r, batch * len * c2);
                    // The signed sqrt is not differentiable at 0: redraw until every pooled entry is away from it.
                    for (int tries = 0; n.signedSqrt() && minAbs(FullBilinearReference.pooled(op, x, y, batch, len)) < 5e-2; tries++) {
                        assertTrue(tries < 10_000, "no draw kept the pooled entries away from 0");
                        x = gaussian(r, batch * len * c1);
                        y = homologous ? x : gaussian(r, batch * len * c2);
                    }
                    double[] g = gaussian(r, batch * op.outputSize());
                    double[][] grad = FullBilinearReference.backward(op, x, y, g, batch, len);
                    String what = n + (homologous ? " homologous" : " two-input") + (average ? " avg" : " sum");
                    // Central differences with step 1e-6 in float64: truncation ~1e-12·f''', rounding ~1e-16/1e-6.
                    double[] fx = finiteDifference(op, x, y, g, batch, len, true);
                    assertTrue(relErr(grad[0], fx) < 1e-7, what + " dx error " + relErr(grad[0], fx));
                    if (homologous) {
                        assertNull(grad[1]);
                    } else {
                        double[] fy = finiteDifference(op, x, y, g, batch, len, false);
                        assertTrue(relErr(grad[1], fy) < 1e-7, what + " dy error " + relErr(grad[1], fy));
                    }
                }
            }
        }
    }

    @Test void float32BaselineSeparatesWellAndIllConditionedInputs() {
        // Without normalization nothing depends on z: 0. Rectified inputs (z > 0, far from 0): tiny.
        // Signed inputs with the exact ssqrt derivative: entries with z ≈ 0 amplify the float32 error of z.
        SplittableRandom r = new SplittableRandom(9);
        int batch = 2, len = 196, c1 = 48, c2 = 40;
        float[] x = io.bifuse.testing.Stats.gaussian(r, batch * len * c1), y = io.bifuse.testing.Stats.gaussian(r, batch * len * c2);
        float[] g = io.bifuse.testing.Stats.gaussian(r, batch * c1 * c2);
        FullBilinear none = FullBilinear.of(c1, c2, false, Normalization.NONE), torch = FullBilinear.of(c1, c2, false, Normalization.pytorch());
        assertEquals(0, FullBilinearReference.float32Baseline(none, x, y, g, batch, len, Precision.FP32, null));
        double signed = FullBilinearReference.float32Baseline(torch, x, y, g, batch, len, Precision.FP32,
                FullBilinearReference.backward(torch, x, y, g, batch, len));
        float[] xr = x.clone(), yr = y.clone();
        for (int i = 0; i < xr.length; i++) xr[i] = Math.max(0, xr[i]);
        for (int i = 0; i < yr.length; i++) yr[i] = Math.max(0, yr[i]);
        double relu = FullBilinearReference.float32Baseline(torch, xr, yr, g, batch, len, Precision.FP32,
                FullBilinearReference.backward(torch, xr, yr, g, batch, len));
        double reluTf32 = FullBilinearReference.float32Baseline(torch, xr, yr, g, batch, len, Precision.TF32,
                FullBilinearReference.backward(torch, xr, yr, g, batch, len));
        assertTrue(relu > 0 && relu < 1e-6, "relu baseline " + relu);
        assertTrue(signed > 10 * relu, "signed baseline " + signed + " vs relu " + relu);
        assertTrue(reluTf32 > relu && reluTf32 < Precision.TF32.bound(), "relu TF32 baseline " + reluTf32);
    }

    static double[] finiteDifference(FullBilinear op, double[] x, double[] y, double[] g, int batch, int len, boolean wrtX) {
        double[] p = (wrtX ? x : y).clone(), out = new double[p.length];
        double h = 1e-6;
        for (int i = 0; i < p.length; i++) {
            double keep = p[i];
            p[i] = keep + h;
            double up = dot(g, forwardAt(op, wrtX, p, x, y, batch, len));
            p[i] = keep - h;
            double down = dot(g, forwardAt(op, wrtX, p, x, y, batch, len));
            p[i] = keep;
            out[i] = (up - down) / (2 * h);
        }
        return out;
    }

    /** The forward with the perturbed tensor {@code p} in place of x (homologous: in both factors) or of y. */
    private static double[] forwardAt(FullBilinear op, boolean wrtX, double[] p, double[] x, double[] y, int batch, int len) {
        if (op.isHomologous()) return FullBilinearReference.forward(op, p, p, batch, len);
        return FullBilinearReference.forward(op, wrtX ? p : x, wrtX ? y : p, batch, len);
    }

    static double minAbs(double[] a) {
        double m = Double.POSITIVE_INFINITY;
        for (double v : a) m = Math.min(m, Math.abs(v));
        return m;
    }

    static double relErr(double[] a, double[] ref) {
        double num = 0, den = 0;
        for (int i = 0; i < a.length; i++) { num += (a[i] - ref[i]) * (a[i] - ref[i]); den += ref[i] * ref[i]; }
        return Math.sqrt(num / den);
    }
}
