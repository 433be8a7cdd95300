package io.bifuse.reference;

import static io.bifuse.reference.Vectors.*;
import static org.junit.jupiter.api.Assertions.*;

import io.bifuse.CompactBilinear;
import io.bifuse.Normalization;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/** The oracle itself: hand-computed cases, the convolution identity, finite differences, and the sketch's expectation. */
class CompactBilinearReferenceTest {

    @Test void handComputedCase() {
        // z[(h1[a] + h2[b]) mod 3] += s1[a]·s2[b]·x[a]·y[b]:
        //   a=0: bin (0+1)%3 = 1 gets 1·3 + 1·4 = 7;  a=1: bin (2+1)%3 = 0 gets -(2·3) - (2·4) = -14.
        CompactBilinear op = CompactBilinear.fromHashes(3, new int[] {0, 2}, new float[] {1, -1}, new int[] {1, 1}, new float[] {1, 1});
        assertArrayEquals(new double[] {-14, 7, 0}, CompactBilinearReference.forward(op, new float[] {1, 2}, new float[] {3, 4}, 1), 0);
    }

    @Test void handComputedBatchWithWrapAround() {
        // d = 4, h1 = {3, 1}, h2 = {2, 3}, all signs +1 but s2[1] = -1.
        // Sample 0: x = {1, 0}, y = {1, 1}: bins (3+2)%4 = 1 += 1, (3+3)%4 = 2 += -1.
        // Sample 1: x = {0, 2}, y = {1, 0}: bin (1+2)%4 = 3 += 2.
        CompactBilinear op = CompactBilinear.fromHashes(4, new int[] {3, 1}, new float[] {1, 1}, new int[] {2, 3}, new float[] {1, -1});
        double[] z = CompactBilinearReference.forward(op, new float[] {1, 0, 0, 2}, new float[] {1, 1, 1, 0}, 2);
        assertArrayEquals(new double[] {0, 1, -1, 0, 0, 0, 0, 2}, z, 0);
    }

    @Test void handComputedNormalization() {
        // z = {-14, 7, 0}: ssqrt -> {-√14, √7, 0}, norm √21; F.normalize -> {-√(14/21), √(7/21), 0}.
        CompactBilinear op = CompactBilinear.fromHashes(3, new int[] {0, 2}, new float[] {1, -1}, new int[] {1, 1}, new float[] {1, 1})
                .withNormalization(Normalization.pytorch());
        double[] z = CompactBilinearReference.forward(op, new float[] {1, 2}, new float[] {3, 4}, 1);
        assertArrayEquals(new double[] {-Math.sqrt(14.0 / 21), Math.sqrt(7.0 / 21), 0}, z, 1e-15);
    }

    @Test void equalsCircularConvolutionOfTheSketches() {
        // The spec's FFT form, written as an O(d²) circular convolution: z[j] = Σ_i Ψx[i]·Ψy[(j − i) mod d].
        SplittableRandom r = new SplittableRandom(11);
        for (int d : new int[] {1, 2, 7, 16, 31, 100}) {
            CompactBilinear op = CompactBilinear.seeded(13, 9, d, r.nextLong());
            double[] x = gaussian(r, 13), y = gaussian(r, 9);
            double[] px = sketch(x, op.h1(), op.s1(), d), py = sketch(y, op.h2(), op.s2(), d);
            double[] conv = new double[d];
            for (int j = 0; j < d; j++) for (int i = 0; i < d; i++) conv[j] += px[i] * py[Math.floorMod(j - i, d)];
            assertArrayEquals(conv, CompactBilinearReference.forward(op, x, y, 1), 1e-12, "d=" + d);
        }
    }

    @Test void gradientsMatchFiniteDifferences() {
        SplittableRandom r = new SplittableRandom(5);
        Normalization[] norms = {
            Normalization.NONE,
            new Normalization(false, 0, Normalization.L2.MAX_NORM, 1e-12f),
            new Normalization(false, 0, Normalization.L2.SUM_SQUARES, 1e-7f),
            new Normalization(false, 0, Normalization.L2.MAX_NORM, 1e3f), // eps clamp active: a constant scale
            new Normalization(true, 0, Normalization.L2.NONE, 0),
            Normalization.pytorch(),
        };
        for (Normalization n : norms) {
            int batch = 2, dx = 5, dy = 7, d = 11;
            CompactBilinear op = CompactBilinear.seeded(dx, dy, d, r.nextLong()).withNormalization(n);
            double[] x = gaussian(r, batch * dx), y = gaussian(r, batch * dy), g = gaussian(r, batch * d);
            // The signed sqrt is not differentiable at 0 (an empty bin is exactly 0): redraw hashes and
            // inputs until every pooled entry is away from it.
            for (int tries = 0; n.signedSqrt() && minAbs(CompactBilinearReference.pooled(op, x, y, batch)) < 1e-2; tries++) {
                assertTrue(tries < 10_000, "no draw kept the pooled entries away from 0");
                op = CompactBilinear.seeded(dx, dy, d, r.nextLong()).withNormalization(n);
                x = gaussian(r, batch * dx);
                y = gaussian(r, batch * dy);
            }
            double[][] grad = CompactBilinearReference.backward(op, x, y, g, batch);
            double[] fx = finiteDifference(op, x, y, g, batch, true), fy = finiteDifference(op, x, y, g, batch, false);
            // Central differences with step 1e-6 in float64: truncation ~1e-12·f''', rounding ~1e-16/1e-6.
            assertTrue(relErr(grad[0], fx) < 1e-7, n + " dx error " + relErr(grad[0], fx));
            assertTrue(relErr(grad[1], fy) < 1e-7, n + " dy error " + relErr(grad[1], fy));
        }
    }

    /**
     * block.bootstrap's MCB: the pooling then {@code σ_out(z·Wᵀ + b)}. dx and dy by finite differences
     * through the whole op; dW and db by finite differences of the layer alone, in double, at the pooled z.
     */
    @Test void outputLayerGradientsMatchFiniteDifferences() {
        SplittableRandom r = new SplittableRandom(17);
        int batch = 3, dx = 5, dy = 6, d = 9, out = 4;
        for (io.bifuse.Activation act : io.bifuse.Activation.values()) {
            io.bifuse.Linear lo = io.bifuse.Linear.random(out, d, true, r.nextLong());
            CompactBilinear op = CompactBilinear.seeded(dx, dy, d, r.nextLong()).withOutput(lo, act);
            double[] x = gaussian(r, batch * dx), y = gaussian(r, batch * dy), g = gaussian(r, batch * out);
            double[] z = CompactBilinearReference.normalized(op, x, y, batch);
            for (int tries = 0; act == io.bifuse.Activation.RELU && minAbs(layer(lo.weightAsDouble(), lo.biasAsDouble(), z, batch, io.bifuse.Activation.NONE)) < 1e-3; tries++) {
                assertTrue(tries < 10_000, "no draw kept the output units away from ReLU's kink");
                x = gaussian(r, batch * dx);
                z = CompactBilinearReference.normalized(op, x, y, batch);
            }
            double[][] grad = CompactBilinearReference.backward(op, x, y, g, batch);
            assertEquals(4, grad.length);
            double[] fx = finiteDifference(op, x, y, g, batch, true), fy = finiteDifference(op, x, y, g, batch, false);
            assertTrue(relErr(grad[0], fx) < 1e-7, act + " dx error " + relErr(grad[0], fx));
            assertTrue(relErr(grad[1], fy) < 1e-7, act + " dy error " + relErr(grad[1], fy));
            double[] w = lo.weightAsDouble(), b = lo.biasAsDouble(), zz = z;
            double[] fw = centralDifferences(w, 1e-6, () -> dot(g, layer(w, b, zz, batch, act)));
            double[] fb = centralDifferences(b, 1e-6, () -> dot(g, layer(w, b, zz, batch, act)));
            assertTrue(relErr(grad[2], fw) < 1e-7, act + " dW error " + relErr(grad[2], fw));
            assertTrue(relErr(grad[3], fb) < 1e-7, act + " db error " + relErr(grad[3], fb));
            double[] f = CompactBilinearReference.forward(op, x, y, batch);
            assertArrayEquals(layer(w, b, z, batch, act), f, 1e-15, act + " forward = the layer at z");
        }
    }

    /** {@code act(z·wᵀ + b)}, {@code w} is {@code out × d}. */
    private static double[] layer(double[] w, double[] b, double[] z, int batch, io.bifuse.Activation act) {
        int out = b.length, d = w.length / out;
        double[] f = new double[batch * out];
        for (int s = 0; s < batch; s++) {
            for (int o = 0; o < out; o++) {
                double acc = b[o];
                for (int j = 0; j < d; j++) acc += w[o * d + j] * z[s * d + j];
                f[s * out + o] = act.apply(acc);
            }
        }
        return f;
    }

    /** block.bootstrap's MCB module (float64 fixtures written by its own code): forward and every gradient to 1e-12. */
    @org.junit.jupiter.params.ParameterizedTest(name = "{0}")
    @org.junit.jupiter.params.provider.CsvSource({"mcb-default,RELU,16", "mcb-odd-tanh,TANH,15"})
    void matchesBlockBootstrapsModule(String stem, io.bifuse.Activation act, int d, @org.junit.jupiter.api.io.TempDir java.nio.file.Path dir)
            throws java.io.IOException {
        try (io.bifuse.StateDict sd = io.bifuse.testing.Fixtures.open(dir, stem)) {
            CompactBilinear op = CompactBilinear.fromStateDict(sd, "", act);
            assertEquals(d, op.d(), stem);
            int batch = io.bifuse.testing.FusionChecks.batch(sd);
            double[] x = sd.doubles("input.0"), y = sd.doubles("input.1"), g = sd.doubles("grad_out");
            io.bifuse.testing.FusionChecks.assertReferenceMatchesFixture(sd, stem, CompactBilinearReference.forward(op, x, y, batch),
                    java.util.List.of(CompactBilinearReference.backward(op, x, y, g, batch)), op.gradientNames(), 1e-12);
        }
    }

    @Test void fromStateDictRefusesMisshapenOrOutOfRangeHashesByName() {
        java.util.Map<String, double[]> v = new java.util.LinkedHashMap<>();
        java.util.Map<String, long[]> s = new java.util.LinkedHashMap<>();
        io.bifuse.Linear lo = io.bifuse.Linear.random(3, 8, true, 1);
        v.put("linear_out.weight", lo.weightAsDouble());
        s.put("linear_out.weight", new long[] {3, 8});
        v.put("mcb.sketch1.h", new double[] {0, 7, 3});
        s.put("mcb.sketch1.h", new long[] {3});
        v.put("mcb.sketch1.s", new double[] {1, -1, 1});
        s.put("mcb.sketch1.s", new long[] {3});
        v.put("mcb.sketch2.h", new double[] {5, 2});
        s.put("mcb.sketch2.h", new long[] {2});
        v.put("mcb.sketch2.s", new double[] {-1, -1});
        s.put("mcb.sketch2.s", new long[] {2});
        CompactBilinear op = CompactBilinear.fromStateDict(io.bifuse.StateDict.of(v, s), "", io.bifuse.Activation.RELU);
        assertEquals(java.util.List.of(3, 2, 8, 3), java.util.List.of(op.dx(), op.dy(), op.d(), op.outputWidth()));
        assertEquals(java.util.List.of("input.0", "input.1", "linear_out.weight"), op.gradientNames());
        v.put("mcb.sketch2.h", new double[] {5, 8});
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> CompactBilinear.fromStateDict(io.bifuse.StateDict.of(v, s), "", io.bifuse.Activation.RELU));
        assertTrue(e.getMessage().contains("'mcb.sketch2.h'[1]: expected a hash in [0, 8)"), e.getMessage());
        v.put("mcb.sketch2.h", new double[] {5, 2});
        v.put("mcb.sketch1.s", new double[] {1, -1});
        s.put("mcb.sketch1.s", new long[] {2});
        e = assertThrows(IllegalArgumentException.class, () -> CompactBilinear.fromStateDict(io.bifuse.StateDict.of(v, s), "", io.bifuse.Activation.RELU));
        assertTrue(e.getMessage().contains("'mcb.sketch1.s': expected 3 signs"), e.getMessage());
        v.remove("mcb.sketch2.s");
        s.remove("mcb.sketch2.s");
        v.put("mcb.sketch1.s", new double[] {1, -1, 1});
        s.put("mcb.sketch1.s", new long[] {3});
        e = assertThrows(IllegalArgumentException.class, () -> CompactBilinear.fromStateDict(io.bifuse.StateDict.of(v, s), "", io.bifuse.Activation.RELU));
        assertTrue(e.getMessage().contains("no tensor 'mcb.sketch2.s'"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> op.withOutput(io.bifuse.Linear.random(3, 9, true, 2), io.bifuse.Activation.RELU), "in = d = 8");
    }

    @Test void caffeSignedSqrtGradientUsesItsEps() {
        // With l2 off: ∂L/∂z = 0.5·g/(sqrt|z| + 0.03). z = {-14, 7, 0}, g = {1, 2, 3}.
        Normalization caffeSsqrt = new Normalization(true, 0.03f, Normalization.L2.NONE, 0);
        double[] z = {-14, 7, 0}, g = {1, 2, 3}, gz = new double[3];
        NormalizationReference.backward(caffeSsqrt, z, g, 0, 3, gz);
        double eps = 0.03f; // the float parameter, widened
        assertArrayEquals(new double[] {0.5 / (Math.sqrt(14) + eps), 2 * 0.5 / (Math.sqrt(7) + eps), 3 * 0.5 / eps}, gz, 1e-12);
        // Exact derivative (eps 0) leaves z = 0 with gradient 0 rather than infinity.
        NormalizationReference.backward(new Normalization(true, 0, Normalization.L2.NONE, 0), z, g, 0, 3, gz);
        assertEquals(0, gz[2]);
    }

    @Test void sketchPreservesInnerProductsInExpectation() {
        // E_h,s[⟨Φ(x,y), Φ(u,v)⟩] = ⟨x,u⟩·⟨y,v⟩ (Pham & Pagh). Averaged over many hash draws, the mean
        // must land within a few standard errors of the target; a wrong hash or sign rule biases it.
        SplittableRandom r = new SplittableRandom(99);
        int dx = 16, dy = 12, d = 64, draws = 4000;
        double[] x = gaussian(r, dx), u = gaussian(r, dx), y = gaussian(r, dy), v = gaussian(r, dy);
        for (int i = 0; i < dx; i++) u[i] += x[i]; // correlate so the target is far from 0
        for (int i = 0; i < dy; i++) v[i] += y[i];
        double target = dot(x, u) * dot(y, v);
        double sum = 0, sumSq = 0;
        for (int k = 0; k < draws; k++) {
            CompactBilinear op = CompactBilinear.seeded(dx, dy, d, r.nextLong());
            double ip = dot(CompactBilinearReference.forward(op, x, y, 1), CompactBilinearReference.forward(op, u, v, 1));
            sum += ip;
            sumSq += ip * ip;
        }
        double mean = sum / draws, stderr = Math.sqrt((sumSq / draws - mean * mean) / draws);
        assertTrue(Math.abs(mean - target) < 5 * stderr, "mean " + mean + " vs " + target + " ± " + stderr);
        assertTrue(stderr < 0.1 * Math.abs(target), "too few draws to mean anything: stderr " + stderr);
    }

    static double[] finiteDifference(CompactBilinear op, double[] x, double[] y, double[] g, int batch, boolean wrtX) {
        double[] p = (wrtX ? x : y).clone(), out = new double[p.length];
        double h = 1e-6;
        for (int i = 0; i < p.length; i++) {
            double keep = p[i];
            p[i] = keep + h;
            double up = dot(g, CompactBilinearReference.forward(op, wrtX ? p : x, wrtX ? y : p, batch));
            p[i] = keep - h;
            double down = dot(g, CompactBilinearReference.forward(op, wrtX ? p : x, wrtX ? y : p, batch));
            p[i] = keep;
            out[i] = (up - down) / (2 * h);
        }
        return out;
    }

    static double[] sketch(double[] v, int[] h, float[] s, int d) {
        double[] out = new double[d];
        for (int i = 0; i < v.length; i++) out[h[i]] += s[i] * v[i];
        return out;
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
