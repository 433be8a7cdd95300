package io.bifuse.reference;

import static io.bifuse.reference.Vectors.*;
import static org.junit.jupiter.api.Assertions.*;

import io.bifuse.Activation;
import io.bifuse.Linear;
import io.bifuse.MlbAttention;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/** The oracle itself: hand-computed cases, the attention's limiting cases, and finite differences of every tensor. */
class MlbAttentionReferenceTest {

    @Test void handComputedCase() {
        // Every layer 1 → 1 with weight 1, bias 0, σ = identity; q = 1, two cells v = {1, 2}:
        // q' = 1, v' = {1, 2}, logits {1, 2}, α = {1, e}/(1 + e), v̂ = (1 + 2e)/(1 + e) = u, f = 1, out = v̂.
        MlbAttention op = MlbAttention.of(new MlbAttention.Weights(one(), one(), one(), List.of(one()), one(), one()), Activation.NONE);
        MlbAttentionReference.Result r = MlbAttentionReference.forward(op, new float[] {1}, new float[] {1, 2}, 1, 2);
        double e = Math.E;
        assertArrayEquals(new double[] {(1 + 2 * e) / (1 + e)}, r.out(), 1e-15);
        assertArrayEquals(new double[] {1 / (1 + e), e / (1 + e)}, r.attention(), 1e-15);
    }

    @Test void zeroLogitWeightsAverageTheCells() {
        // W_a = 0: every logit is b_a, the attention is uniform, v̂_g is the mean cell; out is then the
        // MLB fusion of that mean with q, computed here independently.
        SplittableRandom r = new SplittableRandom(3);
        int dq = 3, dv = 4, j = 5, g = 2, out = 3, cells = 6, batch = 2;
        MlbAttention rnd = MlbAttention.random(dq, dv, j, g, out, Activation.TANH, 9);
        MlbAttention.Weights w = rnd.weights();
        MlbAttention op = MlbAttention.of(new MlbAttention.Weights(w.question(), w.cells(), new Linear(g, j, new float[g * j], new float[] {0.3f, -2}),
                w.glimpses(), w.questionFusion(), w.answer()), Activation.TANH);
        double[] q = gaussian(r, batch * dq), v = gaussian(r, batch * cells * dv);
        MlbAttentionReference.Params p = MlbAttentionReference.params(op);
        MlbAttentionReference.Result res = MlbAttentionReference.forward(p, q, v, batch, cells);
        for (double a : res.attention()) assertEquals(1.0 / cells, a, 1e-15);
        for (int b = 0; b < batch; b++) {
            double[] mean = new double[dv];
            for (int s = 0; s < cells; s++) for (int d = 0; d < dv; d++) mean[d] += v[(b * cells + s) * dv + d] / cells;
            double[] f = p.questionFusion().apply(q, b * dq), z = new double[g * j];
            for (int gg = 0; gg < g; gg++) {
                double[] u = p.glimpses().get(gg).apply(mean, 0);
                for (int jj = 0; jj < j; jj++) z[gg * j + jj] = Math.tanh(u[jj]) * Math.tanh(f[gg * j + jj]);
            }
            double[] o = p.answer().apply(z, 0);
            for (int k = 0; k < out; k++) assertEquals(o[k], res.out()[b * out + k], 1e-12);
        }
    }

    @Test void aDominantLogitSelectsItsCell() {
        // Scale W_a up until one cell takes (almost) all the attention: α is one-hot at the argmax logit.
        SplittableRandom r = new SplittableRandom(4);
        MlbAttention op = MlbAttention.random(3, 4, 5, 1, 2, Activation.TANH, 11);
        MlbAttentionReference.Params p = MlbAttentionReference.params(op);
        for (int i = 0; i < p.logits().weight().length; i++) p.logits().weight()[i] *= 1e4;
        double[] q = gaussian(r, 3), v = gaussian(r, 7 * 4);
        double[] att = MlbAttentionReference.forward(p, q, v, 1, 7).attention();
        int arg = 0;
        for (int s = 1; s < 7; s++) if (att[s] > att[arg]) arg = s;
        assertEquals(1.0, att[arg], 1e-9);
        double sum = 0;
        for (double a : att) sum += a;
        assertEquals(1.0, sum, 1e-12);
    }

    @ParameterizedTest @EnumSource(Activation.class)
    void gradientsOfEveryTensorMatchFiniteDifferences(Activation act) {
        // All entries of every input and parameter tensor, central differences with step 1e-6 in float64:
        // truncation ~1e-12·f''', rounding ~1e-16/1e-6, so 1e-6 relative separates them from any real error.
        SplittableRandom r = new SplittableRandom(17 + act.ordinal());
        int batch = 2, cells = 3, dq = 4, dv = 5, j = 6, g = 2, out = 3;
        MlbAttentionReference.Params p = gaussianParams(r, dq, dv, j, g, out, act, true);
        double[] q = gaussian(r, batch * dq), v = gaussian(r, batch * cells * dv), go = gaussian(r, batch * out);
        checkAgainstFiniteDifferences(p, q, v, go, batch, cells);
    }

    @Test void gradientsWithoutBiasesAndManyGlimpsesMatchFiniteDifferences() {
        SplittableRandom r = new SplittableRandom(23);
        int batch = 3, cells = 5, dq = 3, dv = 2, j = 4, g = 3, out = 2;
        MlbAttentionReference.Params p = gaussianParams(r, dq, dv, j, g, out, Activation.TANH, false);
        double[] q = gaussian(r, batch * dq), v = gaussian(r, batch * cells * dv), go = gaussian(r, batch * out);
        checkAgainstFiniteDifferences(p, q, v, go, batch, cells);
    }

    @Test void singleCellGetsAllAttentionAndNoLogitGradient() {
        // L = 1: α = 1 whatever the logits, so every logits-layer gradient and the cell projection's are 0.
        SplittableRandom r = new SplittableRandom(29);
        MlbAttentionReference.Params p = gaussianParams(r, 3, 4, 5, 2, 2, Activation.TANH, true);
        double[] q = gaussian(r, 2 * 3), v = gaussian(r, 2 * 4), go = gaussian(r, 2 * 2);
        assertArrayEquals(new double[] {1, 1, 1, 1}, MlbAttentionReference.forward(p, q, v, 2, 1).attention(), 1e-15);
        MlbAttentionReference.Grads gr = MlbAttentionReference.backward(p, q, v, go, 2, 1);
        for (int i : new int[] {0, 1, 2, 3, 4, 5}) { // question, cells, logits weights and biases
            for (double x : gr.parameters().get(i)) assertEquals(0, x, 1e-14, "tensor " + i);
        }
        checkAgainstFiniteDifferences(p, q, v, go, 2, 1);
    }

    @Test void gradientsThatCancelExactlyAreExactZeros() {
        // db_a always, db_v when σ is the identity: zero in exact arithmetic (softmax invariance, see the
        // class comment). The CUDA path writes exact zeros for them, so the reference must return exact
        // zeros too, not the rounding noise of the cancelling sum; with tanh, relu and sigmoid db_v is a real gradient.
        SplittableRandom r = new SplittableRandom(31);
        for (Activation act : Activation.values()) {
            MlbAttentionReference.Params p = gaussianParams(r, 3, 4, 5, 2, 2, act, true);
            double[] q = gaussian(r, 2 * 3), v = gaussian(r, 2 * 6 * 4), go = gaussian(r, 2 * 2);
            MlbAttentionReference.Grads gr = MlbAttentionReference.backward(p, q, v, go, 2, 6);
            assertArrayEquals(new double[2], gr.parameters().get(5), 0.0, act + ": logits.bias");
            double[] dbv = gr.parameters().get(3);
            if (act == Activation.NONE) assertArrayEquals(new double[5], dbv, 0.0, "NONE: cells.bias");
            else assertTrue(norm(dbv) > 1e-6, act + ": cells.bias " + norm(dbv)); // real (sigmoid's is small: σ' <= 1/4), far above a cancelled sum's 1e-15
        }
    }

    static void checkAgainstFiniteDifferences(MlbAttentionReference.Params p, double[] q, double[] v, double[] go, int batch, int cells) {
        // Zero in exact arithmetic: the logits bias, the cells bias with σ = identity (both shift every
        // logit of a glimpse equally, and the softmax ignores that), a path that L = 1 cuts.
        List<double[]> wrt = new ArrayList<>(List.of(q, v));
        wrt.addAll(p.tensors());
        assertMatchesFiniteDifferences(p.activation().toString(), wrt, MlbAttentionReference.backward(p, q, v, go, batch, cells).tensors(),
                () -> dot(go, MlbAttentionReference.forward(p, q, v, batch, cells).out()));
    }

    static MlbAttentionReference.Params gaussianParams(SplittableRandom r, int dq, int dv, int j, int g, int out, Activation act, boolean bias) {
        List<MlbAttentionReference.Layer> gl = new ArrayList<>();
        for (int i = 0; i < g; i++) gl.add(layer(r, j, dv, bias));
        return new MlbAttentionReference.Params(layer(r, j, dq, bias), layer(r, j, dv, bias), layer(r, g, j, true), gl,
                layer(r, g * j, dq, bias), layer(r, out, g * j, bias), act);
    }

    /** Weights of scale 1/sqrt(in) (activations away from saturation), biases O(0.3). */
    static MlbAttentionReference.Layer layer(SplittableRandom r, int out, int in, boolean bias) {
        double[] w = gaussian(r, out * in);
        for (int i = 0; i < w.length; i++) w[i] /= Math.sqrt(in);
        double[] b = null;
        if (bias) {
            b = gaussian(r, out);
            for (int i = 0; i < out; i++) b[i] *= 0.3;
        }
        return new MlbAttentionReference.Layer(out, in, w, b);
    }

    static Linear one() { return new Linear(1, 1, new float[] {1}, new float[] {0}); }
}
