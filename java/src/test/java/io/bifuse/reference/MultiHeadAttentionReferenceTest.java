package io.bifuse.reference;

import static io.bifuse.reference.Vectors.*;
import static org.junit.jupiter.api.Assertions.*;

import io.bifuse.Linear;
import io.bifuse.MultiHeadAttention;
import io.bifuse.ObjectMask;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/** The oracle itself: a hand-computed case, the mask's limiting cases, and finite differences of every tensor. */
class MultiHeadAttentionReferenceTest {

    @Test void handComputedCase() {
        // H = 2, two heads of width 1 (scale 1), every layer the identity without bias; one query
        // x = (1, 2), two keys k = v = {(1, 0), (0, 1)}: head 0 scores {1, 0}, head 1 scores {0, 2}.
        Linear id = new Linear(2, 2, new float[] {1, 0, 0, 1}, null);
        MultiHeadAttention op = MultiHeadAttention.of(new MultiHeadAttention.Weights(id, id, id, id), 2);
        float[] kv = {1, 0, 0, 1};
        MultiHeadAttentionReference.Result r = MultiHeadAttentionReference.forward(op, new float[] {1, 2}, kv, kv, null, 1, 1, 2);
        double e = Math.E, e2 = e * e;
        double[] att = {e / (1 + e), 1 / (1 + e), 1 / (1 + e2), e2 / (1 + e2)};
        assertArrayEquals(att, r.attention(), 1e-15);
        // head 0 reads column 0 of v (1, 0), head 1 column 1 (0, 1)
        assertArrayEquals(new double[] {e / (1 + e), e2 / (1 + e2)}, r.out(), 1e-15);
    }

    @Test void paddedKeysGetExactlyZeroAttentionAndNoGradient() {
        SplittableRandom r = new SplittableRandom(5);
        int batch = 3, lq = 4, lk = 6, dim = 8, heads = 2;
        MultiHeadAttentionReference.Params p = gaussianParams(r, dim, dim, dim, 8, dim, heads, true);
        ObjectMask mask = ObjectMask.of(new boolean[] {true, false, true, true, false, true, /**/ true, true, true, true, true, true,
                /**/ false, false, false, false, false, true}, batch, lk);
        boolean[] real = MultiHeadAttentionReference.real(mask, batch, lk);
        double[] x = gaussian(r, batch * lq * dim), k = gaussian(r, batch * lk * dim), v = gaussian(r, batch * lk * dim);
        double[] go = gaussian(r, batch * lq * dim);
        double[] att = MultiHeadAttentionReference.forward(p, x, k, v, real, batch, lq, lk).attention();
        for (int b = 0; b < batch; b++) {
            for (int rest = 0; rest < heads * lq; rest++) {
                double sum = 0;
                for (int j = 0; j < lk; j++) {
                    double a = att[(b * heads * lq + rest) * lk + j];
                    if (!real[b * lk + j]) assertEquals(0.0, a, 0.0, "sample " + b + " key " + j);
                    sum += a;
                }
                assertEquals(1, sum, 1e-14);
            }
        }
        // The padded keys' rows are not read at all: changing them changes nothing.
        double[] k2 = k.clone(), v2 = v.clone();
        for (int b = 0; b < batch; b++) for (int j = 0; j < lk; j++) if (!real[b * lk + j]) for (int c = 0; c < dim; c++) {
            k2[(b * lk + j) * dim + c] += 7;
            v2[(b * lk + j) * dim + c] -= 3;
        }
        assertArrayEquals(MultiHeadAttentionReference.forward(p, x, k, v, real, batch, lq, lk).out(),
                MultiHeadAttentionReference.forward(p, x, k2, v2, real, batch, lq, lk).out(), 0.0);
        MultiHeadAttentionReference.Grads g = MultiHeadAttentionReference.backward(p, x, k, v, real, go, batch, lq, lk);
        for (int b = 0; b < batch; b++) for (int j = 0; j < lk; j++) if (!real[b * lk + j]) for (int c = 0; c < dim; c++) {
            assertEquals(0.0, g.dKey()[(b * lk + j) * dim + c], 0.0);
            assertEquals(0.0, g.dValue()[(b * lk + j) * dim + c], 0.0);
        }
        checkAgainstFiniteDifferences(p, x, k, v, real, go, batch, lq, lk);
    }

    @Test void anAllPaddedSampleAveragesItsValuesAsMcanVqaDoes() {
        // Every score −1e9: the softmax is uniform over all Lk keys, each query's head output the mean of
        // the value rows; the scores are constants, so dQuery and dKey are 0 and only dValue flows.
        SplittableRandom r = new SplittableRandom(7);
        int lq = 3, lk = 5, dim = 4;
        MultiHeadAttentionReference.Params p = gaussianParams(r, dim, dim, dim, 4, dim, 2, true);
        boolean[] real = new boolean[lk];
        double[] x = gaussian(r, lq * dim), k = gaussian(r, lk * dim), v = gaussian(r, lk * dim), go = gaussian(r, lq * dim);
        MultiHeadAttentionReference.Result res = MultiHeadAttentionReference.forward(p, x, k, v, real, 1, lq, lk);
        for (double a : res.attention()) assertEquals(1.0 / lk, a, 1e-16);
        double[] mean = new double[4];
        for (int j = 0; j < lk; j++) {
            double[] vj = p.value().apply(v, j * dim);
            for (int c = 0; c < 4; c++) mean[c] += vj[c] / lk;
        }
        double[] o = p.merge().apply(mean, 0);
        for (int i = 0; i < lq; i++) for (int c = 0; c < dim; c++) assertEquals(o[c], res.out()[i * dim + c], 1e-12);
        MultiHeadAttentionReference.Grads g = MultiHeadAttentionReference.backward(p, x, k, v, real, go, 1, lq, lk);
        assertArrayEquals(new double[lq * dim], g.dQuery(), 0.0);
        assertArrayEquals(new double[lk * dim], g.dKey(), 0.0);
        assertTrue(norm(g.dValue()) > 1e-3);
        checkAgainstFiniteDifferences(p, x, k, v, real, go, 1, lq, lk);
    }

    @Test void gradientsOfEveryTensorMatchFiniteDifferences() {
        // Every entry of every input and parameter tensor, central differences with step 1e-6 in float64:
        // truncation ~1e-12·f''', rounding ~1e-16/1e-6, so 1e-6 relative separates them from any real error.
        // Different widths on every side (Dq, Dk, Dv, Out) and 3 heads, so a transposed layer or a
        // head's column offset cannot cancel.
        SplittableRandom r = new SplittableRandom(17);
        int batch = 2, lq = 3, lk = 4;
        MultiHeadAttentionReference.Params p = gaussianParams(r, 5, 4, 3, 6, 2, 3, true);
        double[] x = gaussian(r, batch * lq * 5), k = gaussian(r, batch * lk * 4), v = gaussian(r, batch * lk * 3), go = gaussian(r, batch * lq * 2);
        boolean[] real = new boolean[batch * lk];
        Arrays.fill(real, true);
        checkAgainstFiniteDifferences(p, x, k, v, real, go, batch, lq, lk);
    }

    @Test void gradientsWithoutBiasesAndOneKeyMatchFiniteDifferences() {
        // Lk = 1: the key gets all the attention whatever the scores, so dQuery and dKey are exactly 0.
        SplittableRandom r = new SplittableRandom(23);
        int batch = 2, lq = 2, lk = 1;
        MultiHeadAttentionReference.Params p = gaussianParams(r, 3, 3, 3, 4, 3, 1, false);
        double[] x = gaussian(r, batch * lq * 3), k = gaussian(r, batch * lk * 3), v = gaussian(r, batch * lk * 3), go = gaussian(r, batch * lq * 3);
        boolean[] real = {true, true};
        MultiHeadAttentionReference.Grads g = MultiHeadAttentionReference.backward(p, x, k, v, real, go, batch, lq, lk);
        assertEquals(0, norm(g.dQuery()), 1e-15);
        assertEquals(0, norm(g.dKey()), 1e-15);
        checkAgainstFiniteDifferences(p, x, k, v, real, go, batch, lq, lk);
    }

    static void checkAgainstFiniteDifferences(MultiHeadAttentionReference.Params p, double[] x, double[] k, double[] v, boolean[] real, double[] go,
                                              int batch, int lq, int lk) {
        List<double[]> wrt = new ArrayList<>(List.of(x, k, v));
        wrt.addAll(p.tensors());
        assertMatchesFiniteDifferences("mha", wrt, MultiHeadAttentionReference.backward(p, x, k, v, real, go, batch, lq, lk).tensors(),
                () -> dot(go, MultiHeadAttentionReference.forward(p, x, k, v, real, batch, lq, lk).out()));
    }

    static MultiHeadAttentionReference.Params gaussianParams(SplittableRandom r, int dq, int dk, int dv, int hidden, int out, int heads, boolean bias) {
        return new MultiHeadAttentionReference.Params(MlbAttentionReferenceTest.layer(r, hidden, dq, bias), MlbAttentionReferenceTest.layer(r, hidden, dk, bias),
                MlbAttentionReferenceTest.layer(r, hidden, dv, bias), MlbAttentionReferenceTest.layer(r, out, hidden, bias), heads);
    }
}
