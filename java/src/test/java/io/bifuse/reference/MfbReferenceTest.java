package io.bifuse.reference;

import static io.bifuse.reference.Vectors.*;
import static org.junit.jupiter.api.Assertions.*;

import io.bifuse.Activation;
import io.bifuse.Linear;
import io.bifuse.Mfb;
import io.bifuse.Normalization;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/** The oracle itself: hand-computed MFB and MFH cases, a chain identity, and float64 finite differences of every tensor. */
class MfbReferenceTest {
    // Block 1: U = {1, 2, 3, 4}ᵀ (4 × 1), V = {1, 1, -1, 2}ᵀ, no biases; x = 2, y = 3, k = 2 (o = 2).
    //   p = {2, 4, 6, 8}, q = {3, 3, -3, 6}, h = {6, 12, -18, 48}, z = {6 + 12, -18 + 48} = {18, 30}.
    static final Linear U1 = new Linear(4, 1, new float[] {1, 2, 3, 4}, null);
    static final Linear V1 = new Linear(4, 1, new float[] {1, 1, -1, 2}, null);
    // Block 2: p = 1·2 + 0 = 2, q = 1·3 + 0 = 3 everywhere: h2 = 6, e2 = 6·h1 = {36, 72, -108, 288}, z2 = {108, 180}.
    static final Linear U2 = new Linear(4, 1, new float[] {1, 1, 1, 1}, new float[] {0, 0, 0, 0});
    static final Linear V2 = new Linear(4, 1, new float[] {1, 1, 1, 1}, null);

    @Test void handComputedMfb() {
        Mfb op = Mfb.mfb(U1, V1, 2, Activation.NONE, Normalization.NONE);
        assertArrayEquals(new double[] {18, 30}, MfbReference.forward(op, new float[] {2}, new float[] {3}, 1), 0);
        // ssqrt then F.normalize: {√18, √30} / √48.
        Mfb norm = Mfb.mfb(U1, V1, 2, Activation.NONE, Normalization.pytorch());
        assertArrayEquals(new double[] {Math.sqrt(18.0 / 48), Math.sqrt(30.0 / 48)}, MfbReference.forward(norm, new float[] {2}, new float[] {3}, 1), 1e-15);
        // ReLU zeroes q[2] = -3: h = {6, 12, 0, 48}, z = {18, 48}.
        Mfb relu = Mfb.mfb(U1, V1, 2, Activation.RELU, Normalization.NONE);
        assertArrayEquals(new double[] {18, 48}, MfbReference.forward(relu, new float[] {2}, new float[] {3}, 1), 0);
        // k = 1: no pooling, z = h. k = 4: one output, the sum 48.
        assertArrayEquals(new double[] {6, 12, -18, 48}, MfbReference.forward(Mfb.mfb(U1, V1, 1, Activation.NONE, Normalization.NONE),
                new float[] {2}, new float[] {3}, 1), 0);
        assertArrayEquals(new double[] {48}, MfbReference.forward(Mfb.mfb(U1, V1, 4, Activation.NONE, Normalization.NONE),
                new float[] {2}, new float[] {3}, 1), 0);
    }

    @Test void handComputedMfhChainsAndNormalizesPerBlock() {
        Mfb op = Mfb.mfh(List.of(U1, U2), List.of(V1, V2), 2, Activation.NONE, Normalization.NONE);
        assertArrayEquals(new double[] {18, 30, 108, 180}, MfbReference.forward(op, new float[] {2}, new float[] {3}, 1), 0);
        // Per-block l2: block 2 = 6 × block 1 before the sqrt, so after ssqrt + l2 both blocks are equal.
        Mfb norm = Mfb.mfh(List.of(U1, U2), List.of(V1, V2), 2, Activation.NONE, Normalization.pytorch());
        double a = Math.sqrt(18.0 / 48), b = Math.sqrt(30.0 / 48);
        assertArrayEquals(new double[] {a, b, a, b}, MfbReference.forward(norm, new float[] {2}, new float[] {3}, 1), 1e-15);
        // A batch of two: the second sample (x = 1, y = -1) scales p by 1/2, q by -1/3 → h1 = h1/(-6), h2 = -1.
        double[] two = MfbReference.forward(op, new float[] {2, 1}, new float[] {3, -1}, 2);
        assertArrayEquals(new double[] {18, 30, 108, 180, -3, -5, 3, 5}, two, 1e-12);
    }

    @Test void aBlockWhoseProductIsOneRepeatsThePreviousBlock() {
        // Zero weights and unit biases make h_2 = 1, so e_2 = e_1 and block 2's output equals block 1's.
        SplittableRandom r = new SplittableRandom(3);
        int dx = 7, dy = 5, o = 6, k = 3, batch = 3;
        Linear u1 = Linear.random(o * k, dx, true, 1), v1 = Linear.random(o * k, dy, true, 2);
        float[] ones = new float[o * k];
        java.util.Arrays.fill(ones, 1f);
        Linear u2 = new Linear(o * k, dx, new float[o * k * dx], ones), v2 = new Linear(o * k, dy, new float[o * k * dy], ones);
        Mfb op = Mfb.mfh(List.of(u1, u2), List.of(v1, v2), k, Activation.TANH, Normalization.caffe());
        double[] x = gaussian(r, batch * dx), y = gaussian(r, batch * dy);
        // tanh(1)² per unit, not 1: the chain multiplies by a constant, which l2 removes.
        double[] out = MfbReference.forward(op, x, y, batch);
        for (int b = 0; b < batch; b++) for (int u = 0; u < o; u++) assertEquals(out[b * 2 * o + u], out[b * 2 * o + o + u], 1e-6);
    }

    @Test void gradientsMatchFiniteDifferences() {
        SplittableRandom r = new SplittableRandom(5);
        Normalization[] norms = {
            Normalization.NONE,
            Normalization.pytorch(),
            // Caffe's ssqrt gradient eps is deliberately not the derivative: its l2 variant, with the exact one.
            new Normalization(true, 0, Normalization.L2.SUM_SQUARES, 1e-7f),
            new Normalization(false, 0, Normalization.L2.MAX_NORM, 1e-12f),
            new Normalization(true, 0, Normalization.L2.NONE, 0),
        };
        int batch = 2, dx = 3, dy = 4, o = 3, k = 2;
        for (Normalization n : norms) {
            for (Activation act : Activation.values()) {
                for (int blocks = 1; blocks <= 3; blocks++) {
                    Mfb op = Mfb.random(dx, dy, o, k, blocks, act, n, r.nextLong());
                    double[] x = gaussian(r, batch * dx), y = gaussian(r, batch * dy), g = gaussian(r, batch * blocks * o);
                    // Redraw until no pooled entry sits at the signed sqrt's kink and no pre-activation at ReLU's.
                    for (int tries = 0; !smooth(op, x, y, batch); tries++) {
                        assertTrue(tries < 10_000, "no draw kept z and the pre-activations away from the kinks");
                        op = Mfb.random(dx, dy, o, k, blocks, act, n, r.nextLong());
                        x = gaussian(r, batch * dx);
                        y = gaussian(r, batch * dy);
                    }
                    MfbReference.Params w = MfbReference.Params.of(op);
                    MfbReference.Grads grad = MfbReference.backward(op, w, x, y, g, batch);
                    String what = n + " " + act + " blocks=" + blocks;
                    // Central differences, step 1e-6, in float64: truncation ~1e-12·f''', rounding ~1e-16/1e-6,
                    // so 1e-7 relative leaves a wide margin while a wrong term is off by O(1).
                    Mfb fop = op;
                    double[] fx = x, fy = y;
                    assertGrad(grad.dx(), fd(x, () -> loss(fop, w, fx, fy, g, batch)), what + " dx");
                    assertGrad(grad.dy(), fd(y, () -> loss(fop, w, fx, fy, g, batch)), what + " dy");
                    for (int i = 0; i < blocks; i++) {
                        assertGrad(grad.du()[i], fd(w.uw()[i], () -> loss(fop, w, fx, fy, g, batch)), what + " dU" + i);
                        assertGrad(grad.dbu()[i], fd(w.ub()[i], () -> loss(fop, w, fx, fy, g, batch)), what + " dbu" + i);
                        assertGrad(grad.dv()[i], fd(w.vw()[i], () -> loss(fop, w, fx, fy, g, batch)), what + " dV" + i);
                        assertGrad(grad.dbv()[i], fd(w.vb()[i], () -> loss(fop, w, fx, fy, g, batch)), what + " dbv" + i);
                    }
                }
            }
        }
    }

    /** block.bootstrap's output layer (linear_out, activ_output) on MFB and MFH: every tensor, the layer's included, against finite differences. */
    @Test void outputLayerGradientsMatchFiniteDifferences() {
        SplittableRandom r = new SplittableRandom(15);
        int batch = 3, dx = 4, dy = 3, o = 3, k = 2, out = 4;
        for (Activation outAct : new Activation[] {Activation.NONE, Activation.RELU, Activation.TANH, Activation.SIGMOID}) {
            for (int blocks = 1; blocks <= 2; blocks++) {
                Normalization n = blocks == 1 ? Normalization.NONE : Normalization.pytorch();
                Mfb op = null;
                double[] x = null, y = null;
                for (int tries = 0; op == null || !smooth(op, x, y, batch) || nearKink(op, x, y, batch); tries++) {
                    assertTrue(tries < 10_000, "no draw kept z and the pre-activations away from the kinks");
                    op = Mfb.random(dx, dy, o, k, blocks, Activation.TANH, n, r.nextLong()).withOutput(Linear.random(out, blocks * o, true, r.nextLong()), outAct);
                    x = gaussian(r, batch * dx);
                    y = gaussian(r, batch * dy);
                }
                double[] g = gaussian(r, batch * out);
                MfbReference.Params w = MfbReference.Params.of(op);
                MfbReference.Grads grad = MfbReference.backward(op, w, x, y, g, batch);
                String what = op.toString();
                Mfb fop = op;
                double[] fx = x, fy = y;
                java.util.function.DoubleSupplier l = () -> loss(fop, w, fx, fy, g, batch);
                assertGrad(grad.dx(), fd(x, l), what + " dx");
                assertGrad(grad.dy(), fd(y, l), what + " dy");
                assertGrad(grad.dout(), fd(w.ow(), l), what + " dW_out");
                assertGrad(grad.dbout(), fd(w.ob(), l), what + " db_out");
                for (int i = 0; i < blocks; i++) {
                    assertGrad(grad.du()[i], fd(w.uw()[i], l), what + " dU" + i);
                    assertGrad(grad.dbv()[i], fd(w.vb()[i], l), what + " dbv" + i);
                }
                assertEquals(op.gradientNames().size(), grad.tensors(op).size(), "one name per tensor");
            }
        }
    }

    /** Whether an output unit's pre-activation is within 1e-3 of ReLU's kink (a central difference across it is wrong). */
    private static boolean nearKink(Mfb op, double[] x, double[] y, int batch) {
        if (op.outputActivation() != Activation.RELU) return false;
        double[] n = MfbReference.normalized(op, MfbReference.Params.of(op), x, y, batch);
        Linear lo = op.linearOut();
        float[] w = lo.weight(), b = lo.biasOrZeros();
        for (int s = 0; s < batch; s++) {
            for (int j = 0; j < lo.out(); j++) {
                double p = b[j];
                for (int d = 0; d < lo.in(); d++) p += w[j * lo.in() + d] * n[s * lo.in() + d];
                if (Math.abs(p) < 1e-3) return true;
            }
        }
        return false;
    }

    /** block.bootstrap's MFB and MFH modules (float64 fixtures written by its own code): forward and every gradient to 1e-12. */
    @org.junit.jupiter.params.ParameterizedTest(name = "{0}")
    @org.junit.jupiter.params.provider.CsvSource({"mfb-default,RELU,RELU,1", "mfb-factor3-normalized,TANH,TANH,1", "mfh-default,RELU,RELU,2",
            "mfh-normalized,TANH,SIGMOID,2"})
    void matchesBlockBootstrapsModule(String stem, Activation in, Activation outAct, int blocks, @org.junit.jupiter.api.io.TempDir java.nio.file.Path dir)
            throws java.io.IOException {
        try (io.bifuse.StateDict sd = io.bifuse.testing.Fixtures.open(dir, stem)) {
            Mfb op = Mfb.fromStateDict(sd, "", in, outAct, io.bifuse.testing.Fixtures.flag(sd, "normalize"));
            assertEquals(blocks, op.blocks(), stem);
            int batch = io.bifuse.testing.FusionChecks.batch(sd);
            double[] x = sd.doubles("input.0"), y = sd.doubles("input.1"), g = sd.doubles("grad_out");
            MfbReference.Params w = MfbReference.Params.of(op);
            io.bifuse.testing.FusionChecks.assertReferenceMatchesFixture(sd, stem, MfbReference.forward(op, w, x, y, batch),
                    MfbReference.backward(op, w, x, y, g, batch).tensors(op), op.gradientNames(), 1e-12);
        }
    }

    @Test void fromStateDictReadsTheDimensionsAndRefusesMisshapenTensorsByName() {
        java.util.Map<String, double[]> v = new java.util.LinkedHashMap<>();
        java.util.Map<String, long[]> s = new java.util.LinkedHashMap<>();
        put(v, s, "m.linear0_0", Linear.random(12, 5, true, 1));
        put(v, s, "m.linear1_0", Linear.random(12, 4, true, 2));
        put(v, s, "m.linear0_1", Linear.random(12, 5, true, 3));
        put(v, s, "m.linear1_1", Linear.random(12, 4, true, 4));
        put(v, s, "m.linear_out", Linear.random(7, 8, true, 5)); // 2·mm_dim = 8: mm_dim 4, factor 3
        Mfb op = Mfb.fromStateDict(io.bifuse.StateDict.of(v, s), "m.", Activation.RELU, Activation.RELU, false);
        assertEquals(List.of(2, 4, 3, 7), List.of(op.blocks(), op.o(), op.k(), op.outputWidth()));
        assertEquals(List.of("input.0", "input.1", "linear0_0.weight", "linear0_0.bias", "linear1_0.weight", "linear1_0.bias", "linear0_1.weight",
                "linear0_1.bias", "linear1_1.weight", "linear1_1.bias", "linear_out.weight", "linear_out.bias"), op.gradientNames());

        put(v, s, "m.linear_out", Linear.random(7, 10, true, 5)); // mm_dim 5 does not divide 12
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> Mfb.fromStateDict(io.bifuse.StateDict.of(v, s), "m.", Activation.RELU, Activation.RELU, false));
        assertTrue(e.getMessage().contains("'m.linear_out.weight': expected 2·mm_dim columns with mm_dim dividing m.linear0_0's 12 rows"), e.getMessage());
        put(v, s, "m.linear_out", Linear.random(7, 8, true, 5));
        put(v, s, "m.linear1_1", Linear.random(10, 4, true, 4));
        e = assertThrows(IllegalArgumentException.class, () -> Mfb.fromStateDict(io.bifuse.StateDict.of(v, s), "m.", Activation.RELU, Activation.RELU, false));
        assertTrue(e.getMessage().contains("'m.linear1_1.weight': expected 12 rows"), e.getMessage());
        put(v, s, "m.linear1_1", Linear.random(12, 4, true, 4));
        v.remove("m.linear_out.weight");
        s.remove("m.linear_out.weight");
        e = assertThrows(IllegalArgumentException.class, () -> Mfb.fromStateDict(io.bifuse.StateDict.of(v, s), "m.", Activation.RELU, Activation.RELU, false));
        assertTrue(e.getMessage().contains("m.linear_out.weight"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> op.withOutput(Linear.random(3, 7, true, 1), Activation.RELU), "in = blocks·o = 8");
        assertThrows(IllegalArgumentException.class, () -> op.withOutput(null, Activation.RELU));
    }

    private static void put(java.util.Map<String, double[]> v, java.util.Map<String, long[]> s, String name, Linear l) {
        v.put(name + ".weight", l.weightAsDouble());
        s.put(name + ".weight", new long[] {l.out(), l.in()});
        if (l.hasBias()) {
            v.put(name + ".bias", l.biasAsDouble());
            s.put(name + ".bias", new long[] {l.out()});
        }
    }

    @Test void conditioningBaselineIsZeroWithoutNormalizationAndSmallWithIt() {
        SplittableRandom r = new SplittableRandom(8);
        int batch = 2, dx = 16, dy = 12, o = 50, k = 5;
        for (Normalization n : new Normalization[] {Normalization.NONE, Normalization.pytorch()}) {
            Mfb op = Mfb.random(dx, dy, o, k, 2, Activation.RELU, n, 4);
            float[] x = io.bifuse.testing.Stats.gaussian(r, batch * dx), y = io.bifuse.testing.Stats.gaussian(r, batch * dy);
            float[] g = io.bifuse.testing.Stats.gaussian(r, batch * 2 * o);
            MfbReference.Grads ref = MfbReference.backward(op, x, y, g, batch), scale = MfbReference.backwardScale(op, x, y, g, batch);
            double e = MfbReference.conditioningBaseline(op, x, y, g, batch, ref, scale, 1e-7, 9);
            if (n.isIdentity()) assertEquals(0, e);
            else assertTrue(e > 0 && e < 1e-3, n + ": baseline " + e); // must stay far below the ~1 of a real bug
        }
    }

    @Test void oneOutputPerBlockFollowsTheDefinition() {
        // o = k = 1, Dx = Dy = 1, no biases, σ = none: z = (U·x)(V·y) per sample, ∂z/∂x = U·V·y.
        Linear u = new Linear(1, 1, new float[] {0.75f}, null), v = new Linear(1, 1, new float[] {-1.25f}, null);
        float[] x = {0.5f, -2f, 1.5f}, y = {0.8f, 0.3f, 2f}, g = {0.7f, -1.1f, 0.4f};
        int batch = 3;
        // F.normalize of one value is sign(u) (|u| > eps): constant, so every gradient is 0, up to the
        // double rounding of s·g − s³·u²·g (~1e-16 of s·g).
        for (Normalization n : new Normalization[] {Normalization.pytorch(), new Normalization(false, 0, Normalization.L2.MAX_NORM, 1e-12f)}) {
            Mfb op = Mfb.mfb(u, v, 1, Activation.NONE, n);
            double[] out = MfbReference.forward(op, x, y, batch);
            for (int b = 0; b < batch; b++) assertEquals(Math.signum(0.75 * x[b] * -1.25 * y[b]), out[b], 1e-15, n + " forward " + b);
            MfbReference.Grads gr = MfbReference.backward(op, x, y, g, batch);
            for (double[] t : new double[][] {gr.dx(), gr.dy(), gr.du()[0], gr.dv()[0]}) {
                for (double d : t) assertEquals(0, d, 1e-14, n + " backward");
            }
        }
        // Caffe: out = u/sqrt(u² + eps), u = ssqrt(z); ∂out/∂u = eps/(u² + eps)^(3/2), ∂u/∂z = 0.5/(sqrt|z| + 0.03)
        // (the Caffe gradient eps): nonzero but ~1e-7 of g here, a cancellation the reference resolves in double.
        Mfb op = Mfb.mfb(u, v, 1, Activation.NONE, Normalization.caffe());
        MfbReference.Grads gr = MfbReference.backward(op, x, y, g, batch);
        double eps = 1e-7f;
        for (int b = 0; b < batch; b++) {
            double p = 0.75 * x[b], q = -1.25 * y[b], z = p * q;
            double gz = g[b] * eps / Math.pow(Math.abs(z) + eps, 1.5) * 0.5 / (Math.sqrt(Math.abs(z)) + 0.03f);
            assertEquals(gz * q * 0.75, gr.dx()[b], 1e-6 * Math.abs(gz * q * 0.75), "caffe dx " + b);
            assertEquals(gz * p * -1.25, gr.dy()[b], 1e-6 * Math.abs(gz * p * -1.25), "caffe dy " + b);
        }
    }

    @Test void scaledErrorIgnoresRoundingWhereTheL2TermsCancelButNotAWrongProjection() {
        // One output per block with F.normalize: the exact gradient is 0, so float32 rounding of the l2
        // backward's terms (~1e-7 of them) is an arbitrarily large *relative* error; maxScaledError measures
        // it against the terms. Dropping the projection term (a kernel bug) must still be an O(1) error.
        SplittableRandom r = new SplittableRandom(12);
        int batch = 4, dx = 5, dy = 3;
        Mfb op = Mfb.random(dx, dy, 1, 1, 2, Activation.TANH, Normalization.pytorch(), 7);
        float[] x = io.bifuse.testing.Stats.gaussian(r, batch * dx), y = io.bifuse.testing.Stats.gaussian(r, batch * dy);
        float[] g = io.bifuse.testing.Stats.gaussian(r, batch * 2);
        MfbReference.Grads ref = MfbReference.backward(op, x, y, g, batch), scale = MfbReference.backwardScale(op, x, y, g, batch);
        Mfb.Gradients rounding = gradients(op, ref, scale, 1e-7, r), dropped = gradients(op, scale, scale, 0, r);
        double refNorm = 0, scaleNorm = 0;
        for (int i = 0; i < ref.dx().length; i++) { refNorm += ref.dx()[i] * ref.dx()[i]; scaleNorm += scale.dx()[i] * scale.dx()[i]; }
        assertTrue(scaleNorm > 1e-6 && refNorm <= 1e-24 * scaleNorm, "the terms cancel: |dx|² " + refNorm + ", terms² " + scaleNorm);
        assertTrue(MfbReference.maxScaledError(op, rounding, ref, scale) < 1e-6, "rounding-level error must pass");
        assertTrue(MfbReference.maxScaledError(op, dropped, ref, scale) > 0.5, "a missing projection term must fail");
        // With many outputs per block the terms do not cancel: the scaled error is the relative error, up to
        // the share of the gradient the projection removes (one direction of o).
        Mfb wide = Mfb.random(dx, dy, 40, 3, 2, Activation.TANH, Normalization.pytorch(), 8);
        float[] gw = io.bifuse.testing.Stats.gaussian(r, batch * 80);
        MfbReference.Grads refW = MfbReference.backward(wide, x, y, gw, batch), scaleW = MfbReference.backwardScale(wide, x, y, gw, batch);
        Mfb.Gradients noisy = gradients(wide, refW, refW, 1e-3, r);
        double rel = MfbReference.maxRelativeL2(wide, noisy, refW), scaled = MfbReference.maxScaledError(wide, noisy, refW, scaleW);
        assertTrue(scaled <= rel && scaled > 0.5 * rel, "relative " + rel + ", scaled " + scaled);
    }

    /** {@code base + noise·|ref|_rms·N(0,1)} per entry of every tensor, in float: a stand-in for a backend's result. */
    private static Mfb.Gradients gradients(Mfb op, MfbReference.Grads base, MfbReference.Grads ref, double noise, SplittableRandom r) {
        java.util.function.BiFunction<double[], double[], float[]> f = (a, s) -> {
            double rms = 0;
            for (double v : s) rms += v * v;
            rms = Math.sqrt(rms / s.length);
            float[] out = new float[a.length];
            for (int i = 0; i < a.length; i++) out[i] = (float) (a[i] + noise * rms * r.nextGaussian());
            return out;
        };
        List<io.bifuse.LinearGradients> gu = new java.util.ArrayList<>(), gv = new java.util.ArrayList<>();
        for (int i = 0; i < op.blocks(); i++) {
            gu.add(new io.bifuse.LinearGradients(f.apply(base.du()[i], ref.du()[i]), f.apply(base.dbu()[i], ref.dbu()[i])));
            gv.add(new io.bifuse.LinearGradients(f.apply(base.dv()[i], ref.dv()[i]), f.apply(base.dbv()[i], ref.dbv()[i])));
        }
        return new Mfb.Gradients(f.apply(base.dx(), ref.dx()), f.apply(base.dy(), ref.dy()), gu, gv);
    }

    private static boolean smooth(Mfb op, double[] x, double[] y, int batch) {
        if (op.normalization().signedSqrt()) {
            // Exactly 0 is fine: with the pre-activations away from ReLU's kink it stays 0 under the probes.
            for (double v : MfbReference.pooled(op, x, y, batch)) if (v != 0 && Math.abs(v) < 1e-2) return false;
        }
        if (op.activation() == Activation.RELU) {
            for (int i = 0; i < op.blocks(); i++) {
                if (nearZero(op.u(i), x, batch) || nearZero(op.v(i), y, batch)) return false;
            }
        }
        return true;
    }

    private static boolean nearZero(Linear l, double[] in, int batch) {
        float[] w = l.weight(), b = l.biasOrZeros();
        for (int s = 0; s < batch; s++) {
            for (int j = 0; j < l.out(); j++) {
                double p = b[j];
                for (int d = 0; d < l.in(); d++) p += w[j * l.in() + d] * in[s * l.in() + d];
                if (Math.abs(p) < 1e-3) return true;
            }
        }
        return false;
    }

    private static double loss(Mfb op, MfbReference.Params w, double[] x, double[] y, double[] g, int batch) {
        double[] out = MfbReference.forward(op, w, x, y, batch);
        double s = 0;
        for (int i = 0; i < out.length; i++) s += g[i] * out[i];
        return s;
    }

    /** Central differences of {@code f} with respect to every entry of {@code p} (perturbed in place, restored). */
    private static double[] fd(double[] p, java.util.function.DoubleSupplier f) { return centralDifferences(p, 1e-6, f); }

    private static void assertGrad(double[] got, double[] fd, String what) {
        double num = 0, den = 0;
        for (int i = 0; i < got.length; i++) { num += (got[i] - fd[i]) * (got[i] - fd[i]); den += fd[i] * fd[i]; }
        double e = den == 0 ? Math.sqrt(num) : Math.sqrt(num / den);
        // Or an absolute floor: the probes' rounding error is ~1e-16·|L|/h = 1e-10 per entry, which
        // dominates for a tensor whose gradient is itself ~1e-5 (a block mostly switched off by ReLU).
        assertTrue(e < 1e-7 || Math.sqrt(num) < 1e-8, what + " error " + e + " (|fd| = " + Math.sqrt(den) + ", |got - fd| = " + Math.sqrt(num) + ")");
    }
}
