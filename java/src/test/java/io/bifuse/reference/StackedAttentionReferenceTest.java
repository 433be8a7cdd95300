package io.bifuse.reference;

import static io.bifuse.reference.Vectors.*;
import static org.junit.jupiter.api.Assertions.*;

import io.bifuse.StackedAttention;
import io.bifuse.StackedAttention.Placement;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.params.provider.EnumSource;

/** The oracle itself: hand-computed cases, the attention's limiting cases, and finite differences of every tensor. */
class StackedAttentionReferenceTest {

    @Test void handComputedTwoLayerCase() {
        // d = k = 1, every weight 1, every bias 0; u = 0, two cells v = {0, 1}; t = tanh(1).
        // Paper:  layer 1 logits tanh(v_s + 0) = {0, t}, α = {1, e^t}/(1 + e^t), u1 = e^t/(1 + e^t);
        //         layer 2 logits tanh(v_s + u1), u2 = u1 + α2[1].
        // Public: layer 1 h = tanh(v_s) + tanh(0) = {0, t}, logits tanh(h) = {0, tanh t}, u1 = α[1];
        //         layer 2 h = tanh(v_s) + tanh(u1), logits tanh(h).
        float[] u = {0}, v = {0, 1};
        double t = Math.tanh(1);
        StackedAttention paper = StackedAttention.of(new StackedAttention.Weights(List.of(ones(), ones())), Placement.PAPER);
        double u1 = Math.exp(t) / (1 + Math.exp(t));
        double a20 = Math.tanh(u1), a21 = Math.tanh(1 + u1), p21 = Math.exp(a21) / (Math.exp(a20) + Math.exp(a21));
        StackedAttentionReference.Result r = StackedAttentionReference.forward(paper, u, v, 1, 2);
        assertArrayEquals(new double[] {u1 + p21}, r.out(), 1e-15);
        assertArrayEquals(new double[] {1 - u1, u1, 1 - p21, p21}, r.attention(), 1e-15);

        StackedAttention pub = StackedAttention.of(new StackedAttention.Weights(List.of(ones(), ones())), Placement.PUBLIC_CODE);
        double w1 = Math.exp(Math.tanh(t)) / (1 + Math.exp(Math.tanh(t)));
        double b0 = Math.tanh(0 + Math.tanh(w1)), b1 = Math.tanh(t + Math.tanh(w1)), q21 = Math.exp(b1) / (Math.exp(b0) + Math.exp(b1));
        r = StackedAttentionReference.forward(pub, u, v, 1, 2);
        assertArrayEquals(new double[] {w1 + q21}, r.out(), 1e-15);
        assertArrayEquals(new double[] {1 - w1, w1, 1 - q21, q21}, r.attention(), 1e-15);
    }

    @ParameterizedTest @EnumSource(Placement.class)
    void zeroLogitWeightsAddTheMeanCellOncePerLayer(Placement placement) {
        // w_P = 0: every logit is b_P (or tanh b_P), the attention is uniform, each layer adds the mean cell.
        SplittableRandom r = new SplittableRandom(3 + placement.ordinal());
        int d = 4, k = 3, kk = 3, cells = 5, batch = 2;
        StackedAttentionReference.Params p = gaussianParams(r, d, k, kk, placement, true);
        for (StackedAttentionReference.LayerParams lp : p.layers()) java.util.Arrays.fill(lp.logits().weight(), 0);
        double[] u = gaussian(r, batch * d), v = gaussian(r, batch * cells * d);
        StackedAttentionReference.Result res = StackedAttentionReference.forward(p, u, v, batch, cells);
        for (double a : res.attention()) assertEquals(1.0 / cells, a, 1e-15);
        for (int b = 0; b < batch; b++) {
            for (int i = 0; i < d; i++) {
                double mean = 0;
                for (int s = 0; s < cells; s++) mean += v[(b * cells + s) * d + i] / cells;
                assertEquals(u[b * d + i] + kk * mean, res.out()[b * d + i], 1e-13);
            }
        }
    }

    @ParameterizedTest(name = "{0} B={1} L={2} d={3} k={4} K={5} bias={6}")
    @CsvSource({"PAPER,2,3,4,5,2,true", "PUBLIC_CODE,2,3,4,5,2,true", "PAPER,3,5,7,3,3,false", "PUBLIC_CODE,3,5,7,3,3,false",
            "PAPER,1,6,3,5,1,true", "PUBLIC_CODE,1,6,3,5,1,true", "PUBLIC_CODE,2,1,3,4,2,true", "PAPER,2,1,3,4,2,true"})
    void gradientsOfEveryTensorMatchFiniteDifferences(Placement placement, int batch, int cells, int d, int k, int kk, boolean bias) {
        SplittableRandom r = new SplittableRandom(17L * batch + 31L * cells + d + placement.ordinal());
        StackedAttentionReference.Params p = gaussianParams(r, d, k, kk, placement, bias);
        double[] u = gaussian(r, batch * d), v = gaussian(r, batch * cells * d), go = gaussian(r, batch * d);
        checkAgainstFiniteDifferences(p, u, v, go, batch, cells);
    }

    @ParameterizedTest @EnumSource(Placement.class)
    void singleCellGetsAllAttentionAndNoParameterGradient(Placement placement) {
        // L = 1: α = 1 whatever the logits, so u_K = u + K v and every parameter's gradient is exactly 0.
        SplittableRandom r = new SplittableRandom(29);
        StackedAttentionReference.Params p = gaussianParams(r, 3, 4, 2, placement, true);
        double[] u = gaussian(r, 2 * 3), v = gaussian(r, 2 * 3), go = gaussian(r, 2 * 3);
        assertArrayEquals(new double[] {1, 1, 1, 1}, StackedAttentionReference.forward(p, u, v, 2, 1).attention(), 0.0);
        StackedAttentionReference.Grads gr = StackedAttentionReference.backward(p, u, v, go, 2, 1);
        for (double[] t : gr.parameters()) assertArrayEquals(new double[t.length], t, 0.0);
        assertArrayEquals(go, gr.du(), 0.0);
        for (int i = 0; i < go.length; i++) assertEquals(2 * go[i], gr.dv()[i], 1e-15);
    }

    @Test void thePapersLogitsBiasGradientIsAnExactZeroAndThePublicCodesIsNot() {
        // Paper: b_P shifts every logit alike, the softmax cancels it (see the reference's class comment).
        // Public code: the outer tanh makes it matter. In the paper's placement b_I and b_Q are one bias.
        SplittableRandom r = new SplittableRandom(31);
        for (Placement placement : Placement.values()) {
            StackedAttentionReference.Params p = gaussianParams(r, 4, 3, 2, placement, true);
            double[] u = gaussian(r, 2 * 4), v = gaussian(r, 2 * 6 * 4), go = gaussian(r, 2 * 4);
            List<double[]> par = StackedAttentionReference.backward(p, u, v, go, 2, 6).parameters();
            for (int l = 0; l < 2; l++) {
                double[] dbp = par.get(6 * l + 5), dbi = par.get(6 * l + 1), dbq = par.get(6 * l + 3);
                if (placement == Placement.PAPER) {
                    assertArrayEquals(new double[1], dbp, 0.0, "paper: layers[" + l + "].logits.bias");
                    assertArrayEquals(dbi, dbq, 1e-13, "paper: one bias b = b_I + b_Q");
                } else {
                    assertTrue(Math.abs(dbp[0]) > 1e-4, "public code: layers[" + l + "].logits.bias " + dbp[0]);
                    assertTrue(relErr(dbi, dbq) > 1e-2, "public code: the two sides' biases differ");
                }
            }
        }
    }

    static void checkAgainstFiniteDifferences(StackedAttentionReference.Params p, double[] u, double[] v, double[] go, int batch, int cells) {
        // Zero in exact arithmetic, checked as such by assertMatchesFiniteDifferences: the paper's logits
        // bias (the softmax ignores it), every parameter when L = 1.
        List<double[]> wrt = new ArrayList<>(List.of(u, v));
        wrt.addAll(p.tensors());
        assertMatchesFiniteDifferences(p.placement().toString(), wrt, StackedAttentionReference.backward(p, u, v, go, batch, cells).tensors(),
                () -> dot(go, StackedAttentionReference.forward(p, u, v, batch, cells).out()));
    }

    static StackedAttentionReference.Params gaussianParams(SplittableRandom r, int d, int k, int kk, Placement placement, boolean bias) {
        List<StackedAttentionReference.LayerParams> l = new ArrayList<>();
        for (int i = 0; i < kk; i++) {
            l.add(new StackedAttentionReference.LayerParams(MlbAttentionReferenceTest.layer(r, k, d, bias), MlbAttentionReferenceTest.layer(r, k, d, bias),
                    MlbAttentionReferenceTest.layer(r, 1, k, true)));
        }
        return new StackedAttentionReference.Params(l, placement);
    }

    private static StackedAttention.Layer ones() {
        return new StackedAttention.Layer(MlbAttentionReferenceTest.one(), MlbAttentionReferenceTest.one(), MlbAttentionReferenceTest.one());
    }

}
