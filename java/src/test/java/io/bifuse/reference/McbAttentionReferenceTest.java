package io.bifuse.reference;

import static io.bifuse.reference.Vectors.*;
import static org.junit.jupiter.api.Assertions.*;

import io.bifuse.CompactBilinear;
import io.bifuse.Linear;
import io.bifuse.McbAttention;
import io.bifuse.McbAttention.L2Scope;
import io.bifuse.Normalization;
import io.bifuse.reference.MlbAttentionReference.Layer;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/** The oracle itself: hand-computed cases, the attention's limiting cases, the l2 scopes, and finite differences of every tensor. */
class McbAttentionReferenceTest {
    /** Caffe's l2 ({@code SUM_SQUARES}, eps 1e-7) with the exact signed-sqrt derivative: caffe() as finite differences can check it. */
    static final Normalization CAFFE_EXACT = new Normalization(true, 0f, Normalization.L2.SUM_SQUARES, 1e-7f);

    @Test void handComputedCase() {
        // Every dimension 1, hashes 0, signs +1; every layer weight 1, bias 0, but the answer's bias 0.5.
        // q = 1, cells I = {1, 4}: z = {1, 4}, signed sqrt u = {1, 2} (no l2), h = p = {1, 2}, logits {1, 2},
        // α = {1, e}/(1 + e), v̂ = (1 + 4e)/(1 + e) = z2 (fusion without normalization), out = v̂ + 0.5.
        double e = Math.E, vhat = (1 + 4 * e) / (1 + e);
        for (L2Scope scope : L2Scope.values()) {
            McbAttention op = tiny(new Normalization(true, 0, Normalization.L2.NONE, 0), scope);
            McbAttentionReference.Result r = McbAttentionReference.forward(op, new float[] {1}, new float[] {1, 4}, 1, 2);
            assertArrayEquals(new double[] {vhat + 0.5}, r.out(), 1e-15, scope.toString());
            assertArrayEquals(new double[] {1 / (1 + e), e / (1 + e)}, r.attention(), 1e-15);
            // gradOut = 1: ∂out/∂W3 = z2, ∂out/∂b3 = 1, and the logits bias gets exactly nothing.
            List<double[]> g = McbAttentionReference.backward(op, new float[] {1}, new float[] {1, 4}, new float[] {1}, 1, 2).tensors();
            assertArrayEquals(new double[] {vhat}, g.get(6), 1e-15);
            assertArrayEquals(new double[] {1}, g.get(7), 0);
            assertArrayEquals(new double[] {0}, g.get(5), 0);
        }
        // With F.normalize's l2, CELL scales each one-value cell to 1: uniform attention, v̂ = 2.5, out = 3.
        // MAP scales the map {1, 2} to {1, 2}/√5: α ∝ {exp(1/√5), exp(2/√5)}.
        Normalization l2 = Normalization.pytorch();
        McbAttentionReference.Result cell = McbAttentionReference.forward(tiny(l2, L2Scope.CELL), new float[] {1}, new float[] {1, 4}, 1, 2);
        assertArrayEquals(new double[] {3.0}, cell.out(), 1e-15);
        assertArrayEquals(new double[] {0.5, 0.5}, cell.attention(), 1e-15);
        McbAttentionReference.Result map = McbAttentionReference.forward(tiny(l2, L2Scope.MAP), new float[] {1}, new float[] {1, 4}, 1, 2);
        double a1 = 1 / (1 + Math.exp(-1 / Math.sqrt(5)));
        assertArrayEquals(new double[] {1 - a1, a1}, map.attention(), 1e-15);
        assertArrayEquals(new double[] {(1 - a1) + 4 * a1 + 0.5}, map.out(), 1e-14);
    }

    @Test void zeroLogitWeightsAverageTheCells() {
        // W2 = 0: every logit is b2, the attention is uniform and fixed, v̂_g is the mean cell for every g.
        // out, and every gradient, are then the fusion MCB of (mean, mean) with q followed by the answer
        // layer, composed here independently from CompactBilinearReference and Layer: dq = the fusion's
        // dy, dI_s = Σ_g dv̂_g / L, and nothing reaches the hidden layer. caffe()'s gradient eps included.
        SplittableRandom r = new SplittableRandom(3);
        int dq = 3, dv = 4, d1 = 7, hd = 5, g = 2, d2 = 9, a = 3, cells = 6, batch = 2;
        for (Normalization n : List.of(Normalization.pytorch(), Normalization.caffe())) {
            McbAttentionReference.Params p0 = gaussianParams(r, dq, dv, d1, hd, g, d2, a, L2Scope.MAP, n, true);
            McbAttentionReference.Params p = new McbAttentionReference.Params(p0.attention(), p0.scope(), p0.fusion(), p0.hidden(),
                    new Layer(g, hd, new double[g * hd], new double[] {0.3, -2}), p0.answer());
            double[] q = gaussian(r, batch * dq), im = gaussian(r, batch * cells * dv), go = gaussian(r, batch * a);
            McbAttentionReference.Result res = McbAttentionReference.forward(p, q, im, batch, cells);
            for (double x : res.attention()) assertEquals(1.0 / cells, x, 1e-15);
            double[] vhat = new double[batch * g * dv];
            for (int b = 0; b < batch; b++) {
                for (int s = 0; s < cells; s++) {
                    for (int gg = 0; gg < g; gg++) for (int d = 0; d < dv; d++) vhat[(b * g + gg) * dv + d] += im[(b * cells + s) * dv + d] / cells;
                }
            }
            double[] u = CompactBilinearReference.forward(p.fusion(), vhat, q, batch), du = new double[batch * d2];
            for (int b = 0; b < batch; b++) {
                double[] o = p.answer().apply(u, b * d2);
                for (int k = 0; k < a; k++) assertEquals(o[k], res.out()[b * a + k], 1e-12, n + " out");
                double[] t = MlbAttentionReference.transposed(p.answer(), go, b * a);
                System.arraycopy(t, 0, du, b * d2, d2);
            }
            double[][] fus = CompactBilinearReference.backward(p.fusion(), vhat, q, du, batch);
            double[] dI = new double[im.length];
            for (int b = 0; b < batch; b++) {
                for (int s = 0; s < cells; s++) {
                    for (int gg = 0; gg < g; gg++) for (int d = 0; d < dv; d++) dI[(b * cells + s) * dv + d] += fus[0][(b * g + gg) * dv + d] / cells;
                }
            }
            McbAttentionReference.Grads gr = McbAttentionReference.backward(p, q, im, go, batch, cells);
            assertArrayEquals(fus[1], gr.dq(), 1e-12, n + " dq");
            assertArrayEquals(dI, gr.dI(), 1e-12, n + " dI");
            assertArrayEquals(new double[hd * d1], gr.parameters().get(0), 0, "hidden.weight");
            assertArrayEquals(new double[hd], gr.parameters().get(1), 0, "hidden.bias");
            assertArrayEquals(new double[g], gr.parameters().get(3), 0, "logits.bias");
            assertTrue(norm(gr.parameters().get(2)) > 1e-3, "the logits weight still gets a gradient");
        }
    }

    @Test void theScopesDifferOnlyWithSeveralCellsAndAnL2() {
        SplittableRandom r = new SplittableRandom(5);
        int dq = 5, dv = 4, d1 = 7, hd = 6, g = 2, d2 = 9, a = 3, batch = 2;
        for (Normalization n : List.of(Normalization.pytorch(), Normalization.caffe(), new Normalization(true, 0, Normalization.L2.NONE, 0))) {
            McbAttentionReference.Params cell = gaussianParams(r, dq, dv, d1, hd, g, d2, a, L2Scope.CELL, n, true), map = withScope(cell, L2Scope.MAP);
            for (int cells : new int[] {1, 3}) {
                double[] q = gaussian(r, batch * dq), im = gaussian(r, batch * cells * dv), go = gaussian(r, batch * a);
                McbAttentionReference.Result rc = McbAttentionReference.forward(cell, q, im, batch, cells), rm = McbAttentionReference.forward(map, q, im, batch, cells);
                List<double[]> gc = McbAttentionReference.backward(cell, q, im, go, batch, cells).tensors();
                List<double[]> gm = McbAttentionReference.backward(map, q, im, go, batch, cells).tensors();
                if (cells == 1 || n.l2() == Normalization.L2.NONE) {
                    // One cell: the map is the cell, the same block, the same arithmetic. No l2: the scope is unused.
                    assertArrayEquals(rc.out(), rm.out(), 0, n + " L=" + cells);
                    assertArrayEquals(rc.attention(), rm.attention(), 0);
                    for (int t = 0; t < gc.size(); t++) assertArrayEquals(gc.get(t), gm.get(t), 0, "tensor " + t);
                } else {
                    assertTrue(relErr(rm.attention(), rc.attention()) > 1e-3, n + ": the attention maps should differ");
                    assertTrue(relErr(rm.out(), rc.out()) > 1e-4, n + ": the outputs should differ");
                    // MAP: the map's norm is 1; CELL: each cell's is.
                    McbAttentionReference.Trace tm = McbAttentionReference.trace(map, q, im, batch, cells), tc = McbAttentionReference.trace(cell, q, im, batch, cells);
                    for (int b = 0; b < batch; b++) {
                        assertEquals(1, norm(java.util.Arrays.copyOfRange(tm.t(), b * cells * d1, (b + 1) * cells * d1)), 1e-6);
                        for (int s = 0; s < cells; s++) {
                            int off = (b * cells + s) * d1;
                            assertEquals(1, norm(java.util.Arrays.copyOfRange(tc.t(), off, off + d1)), 1e-6);
                        }
                    }
                }
            }
        }
    }

    @Test void singleCellGetsAllAttentionAndNoLogitGradient() {
        // L = 1: α = 1 whatever the logits, so nothing reaches the logits, hidden layer or attention pooling.
        SplittableRandom r = new SplittableRandom(29);
        McbAttentionReference.Params p = gaussianParams(r, 3, 4, 7, 5, 2, 9, 2, L2Scope.MAP, Normalization.pytorch(), true);
        double[] q = gaussian(r, 2 * 3), im = gaussian(r, 2 * 4), go = gaussian(r, 2 * 2);
        assertArrayEquals(new double[] {1, 1, 1, 1}, McbAttentionReference.forward(p, q, im, 2, 1).attention(), 1e-15);
        McbAttentionReference.Grads gr = McbAttentionReference.backward(p, q, im, go, 2, 1);
        for (int i : new int[] {0, 1, 2, 3}) { // hidden, logits weights and biases
            for (double x : gr.parameters().get(i)) assertEquals(0, x, 1e-14, "tensor " + i);
        }
    }

    @ParameterizedTest(name = "{0} {1}")
    @CsvSource({"CELL,pytorch", "MAP,pytorch", "CELL,caffe", "MAP,caffe"})
    void gradientsOfEveryTensorMatchFiniteDifferences(L2Scope scope, String norm) {
        // All entries of every input and parameter tensor (Vectors.assertMatchesFiniteDifferences: central
        // differences, step 1e-6 in float64, relative error < 1e-6; truncation ~1e-12·f''' and rounding
        // ~1e-10 sit far below it). "caffe" is caffe()'s l2 with the exact signed-sqrt derivative: caffe()'s
        // gradient eps 0.03 makes its backward deliberately not the forward's derivative (see
        // caffeGradientEpsOnlyChangesWhatPassesTheSignedSqrt). The case is redrawn until it is smooth
        // within the step (see smoothCase). B = 2, L = 3, odd d1 = 7, d2 = 9.
        Normalization n = norm.equals("pytorch") ? Normalization.pytorch() : CAFFE_EXACT;
        checkAgainstFiniteDifferences(smoothCase(new SplittableRandom(17 + scope.ordinal() + 2 * norm.length()), scope, n, true, 2, 3));
    }

    @Test void gradientsWithoutBiasesMatchFiniteDifferences() {
        checkAgainstFiniteDifferences(smoothCase(new SplittableRandom(23), L2Scope.MAP, Normalization.pytorch(), false, 3, 2));
    }

    @Test void caffeGradientEpsOnlyChangesWhatPassesTheSignedSqrt() {
        // caffe() differs from CAFFE_EXACT (checked by finite differences) only in the signed-sqrt backward,
        // 0.5·g/(sqrt|z| + 0.03) (NormalizationReference, tested on its own). Switched on in one pooling at
        // a time, it leaves every gradient the backward reaches before that pooling's signed sqrt the same
        // numbers, and changes every one after it. (zeroLogitWeightsAverageTheCells checks the fusion's
        // caffe() backward against an independent composition.)
        Case c = smoothCase(new SplittableRandom(41), L2Scope.MAP, CAFFE_EXACT, true, 2, 3);
        McbAttentionReference.Params p = c.p();
        List<double[]> exact = McbAttentionReference.backward(p, c.q(), c.image(), c.go(), 2, 3).tensors();
        // tensors: dq, dI, hidden w, b, logits w, b, answer w, b
        McbAttentionReference.Params att = new McbAttentionReference.Params(p.attention().withNormalization(Normalization.caffe()), p.scope(),
                p.fusion(), p.hidden(), p.logits(), p.answer());
        List<double[]> ga = McbAttentionReference.backward(att, c.q(), c.image(), c.go(), 2, 3).tensors();
        for (int t = 2; t < 8; t++) assertArrayEquals(exact.get(t), ga.get(t), 0, "attention eps: tensor " + t);
        for (int t = 0; t < 2; t++) assertTrue(relErr(ga.get(t), exact.get(t)) > 1e-4, "attention eps: tensor " + t + " should feel it");
        McbAttentionReference.Params fus = new McbAttentionReference.Params(p.attention(), p.scope(), p.fusion().withNormalization(Normalization.caffe()),
                p.hidden(), p.logits(), p.answer());
        List<double[]> gf = McbAttentionReference.backward(fus, c.q(), c.image(), c.go(), 2, 3).tensors();
        for (int t = 6; t < 8; t++) assertArrayEquals(exact.get(t), gf.get(t), 0, "fusion eps: tensor " + t);
        for (int t : new int[] {0, 1, 2, 3, 4}) assertTrue(relErr(gf.get(t), exact.get(t)) > 1e-4, "fusion eps: tensor " + t + " should feel it");
        assertArrayEquals(new double[2], gf.get(5), 0, "logits.bias");
    }

    static void checkAgainstFiniteDifferences(Case c) {
        McbAttentionReference.Params p = c.p();
        List<double[]> wrt = new ArrayList<>(List.of(c.q(), c.image()));
        wrt.addAll(p.tensors());
        // Zero in exact arithmetic: the logits bias (the softmax ignores a per-glimpse shift).
        assertMatchesFiniteDifferences(p.scope() + " " + p.attention().normalization(), wrt,
                McbAttentionReference.backward(p, c.q(), c.image(), c.go(), c.batch(), c.cells()).tensors(),
                () -> dot(c.go(), McbAttentionReference.forward(p, c.q(), c.image(), c.batch(), c.cells()).out()));
    }

    record Case(McbAttentionReference.Params p, double[] q, double[] image, double[] go, int batch, int cells) {}

    /**
     * Dq = 5, Dv = 4, d1 = 7, H = 6, G = 2, d2 = 9, A = 3, hashes, layers and inputs redrawn until the
     * forward is smooth within the finite-difference step: every entry of both pooled sketches at least
     * 1e-2 from 0 (the signed sqrt's kink; an empty bin, exactly 0, is redrawn too), every hidden
     * pre-activation at least 1e-3 from 0 (ReLU's kink). A step of 1e-6 moves them by ~1e-6.
     */
    static Case smoothCase(SplittableRandom r, L2Scope scope, Normalization n, boolean bias, int batch, int cells) {
        int dq = 5, dv = 4, d1 = 7, hd = 6, g = 2, d2 = 9, a = 3;
        for (int tries = 0; tries < 10_000; tries++) {
            McbAttentionReference.Params p = gaussianParams(r, dq, dv, d1, hd, g, d2, a, scope, n, bias);
            double[] q = gaussian(r, batch * dq), im = gaussian(r, batch * cells * dv), go = gaussian(r, batch * a);
            McbAttentionReference.Trace t = McbAttentionReference.trace(p, q, im, batch, cells);
            double[] z2 = CompactBilinearReference.pooled(p.fusion(), t.vhat(), q, batch);
            if (CompactBilinearReferenceTest.minAbs(t.z1()) >= 1e-2 && CompactBilinearReferenceTest.minAbs(z2) >= 1e-2
                    && CompactBilinearReferenceTest.minAbs(t.p()) >= 1e-3) {
                return new Case(p, q, im, go, batch, cells);
            }
        }
        return fail("no draw kept the pooled entries and hidden pre-activations away from 0");
    }

    /** Seeded hashes, both poolings normalized by {@code n}; layers as MlbAttentionReferenceTest.layer (the logits layer always with a bias). */
    static McbAttentionReference.Params gaussianParams(SplittableRandom r, int dq, int dv, int d1, int hd, int g, int d2, int a, L2Scope scope,
                                                        Normalization n, boolean bias) {
        CompactBilinear att = CompactBilinear.seeded(dq, dv, d1, r.nextLong()).withNormalization(n);
        CompactBilinear fus = CompactBilinear.seeded(g * dv, dq, d2, r.nextLong()).withNormalization(n);
        return new McbAttentionReference.Params(att, scope, fus, MlbAttentionReferenceTest.layer(r, hd, d1, bias),
                MlbAttentionReferenceTest.layer(r, g, hd, true), MlbAttentionReferenceTest.layer(r, a, d2, bias));
    }

    static McbAttentionReference.Params withScope(McbAttentionReference.Params p, L2Scope scope) {
        return new McbAttentionReference.Params(p.attention(), scope, p.fusion(), p.hidden(), p.logits(), p.answer());
    }

    /** All dimensions 1, hashes 0, signs +1, the attention pooling normalized by {@code n}, the fusion not; weights 1, biases 0 but the answer's 0.5. */
    static McbAttention tiny(Normalization n, L2Scope scope) {
        CompactBilinear att = CompactBilinear.fromHashes(1, new int[] {0}, new float[] {1}, new int[] {0}, new float[] {1}).withNormalization(n);
        CompactBilinear fus = CompactBilinear.fromHashes(1, new int[] {0}, new float[] {1}, new int[] {0}, new float[] {1});
        Linear one = new Linear(1, 1, new float[] {1}, new float[] {0});
        return McbAttention.of(att, scope, fus, new McbAttention.Weights(one, one, new Linear(1, 1, new float[] {1}, new float[] {0.5f})));
    }
}
