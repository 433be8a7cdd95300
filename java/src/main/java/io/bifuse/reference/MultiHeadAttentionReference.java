package io.bifuse.reference;

import io.bifuse.MultiHeadAttention;
import io.bifuse.ObjectMask;
import io.bifuse.reference.MlbAttentionReference.Layer;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.IntStream;

/**
 * The oracle for {@link MultiHeadAttention}: the definition (see its class comment) evaluated per sample
 * in double, the mask applied literally as mcan-vqa does (a padded key's score REPLACED by −1e9, then an
 * ordinary max-subtracted softmax over all {@code Lk} keys), and the gradient by the chain rule written
 * out step by step, per head {@code h} ({@code s = 1/sqrt(d)}):
 * <pre>
 *   dO = g W_m,  dW_m = Σ_rows gᵀ O,  db_m = Σ_rows g
 *   dP_h = dO_h V_hᵀ,   dV_h = P_hᵀ dO_h
 *   dS_h[i, j] = P_h[i, j] (dP_h[i, j] − Σ_t P_h[i, t] dP_h[i, t])   for a real key j; 0 for a padded one
 *   dQ_h = s dS_h K_h,   dK_h = s dS_hᵀ Q_h
 *   dx = dQ W_q,  dW_q = Σ_rows dQᵀ x,  db_q = Σ_rows dQ     (and so for the key and value layers)
 * </pre>
 * A padded key's score is a constant (masked_fill), so its {@code dS} is 0 even in a sample whose keys
 * are all padding (there P is uniform, and only {@code dV} is nonzero). The key layer's bias gradient is
 * exactly zero: {@code b_k} adds {@code Q_h[i]·b_k} to every score of a row alike, which the softmax
 * cancels ({@code db_k = Σ_j dK[j] = s Σ_i Q[i] Σ_j dS[i, j]} and every row of dS sums to 0); the
 * reference returns exact zeros rather than the rounding noise of that sum, so that backends that write
 * zeros compare exactly. The layers are taken in double
 * ({@link Params}), so that the tests can perturb any parameter by a float64 step for central finite
 * differences. Samples run in parallel; within a sample every sum runs in one fixed order.
 */
public final class MultiHeadAttentionReference {
    private MultiHeadAttentionReference() {}

    /** The op's parameters in double: the layers in the order of {@link MultiHeadAttention.Weights}, and the head count. */
    public record Params(Layer query, Layer key, Layer value, Layer merge, int heads) {
        int hidden() { return query.out(); }
        int headDim() { return hidden() / heads; }

        public List<Layer> layers() { return List.of(query, key, value, merge); }

        /** Every parameter tensor (weight, then bias if any, per layer): the same arrays, for perturbing in place. */
        public List<double[]> tensors() {
            List<double[]> t = new ArrayList<>();
            for (Layer l : layers()) {
                t.add(l.weight());
                if (l.bias() != null) t.add(l.bias());
            }
            return t;
        }
    }

    public static Params params(MultiHeadAttention op) {
        MultiHeadAttention.Weights w = op.weights();
        return new Params(Layer.of(w.query()), Layer.of(w.key()), Layer.of(w.value()), Layer.of(w.merge()), op.heads());
    }

    /** Output {@code B × Lq × Out} and attention maps {@code B × n × Lq × Lk}. */
    public record Result(double[] out, double[] attention) {}

    /** Gradients of the three inputs and of {@link Params#tensors()}, in that order. */
    public record Grads(double[] dQuery, double[] dKey, double[] dValue, List<double[]> parameters) {
        /** dQuery, dKey, dValue, then the parameter gradients: the order of {@link MultiHeadAttention#gradientNames()}. */
        public List<double[]> tensors() {
            List<double[]> t = new ArrayList<>(List.of(dQuery, dKey, dValue));
            t.addAll(parameters);
            return t;
        }
    }

    public static Result forward(MultiHeadAttention op, float[] query, float[] key, float[] value, ObjectMask mask, int batch, int queries, int keys) {
        return forward(params(op), toDouble(query), toDouble(key), toDouble(value), real(mask, batch, keys), batch, queries, keys);
    }

    /** {@code real[b·Lk + j]}: whether key j of sample b is real (every key when {@code mask} is null). */
    public static boolean[] real(ObjectMask mask, int batch, int keys) {
        boolean[] r = new boolean[batch * keys];
        if (mask == null) {
            java.util.Arrays.fill(r, true);
            return r;
        }
        int[] idx = mask.indices();
        for (int b = 0; b < batch; b++) for (int c = 0; c < mask.count(b); c++) r[b * keys + idx[b * keys + c]] = true;
        return r;
    }

    public static Result forward(Params p, double[] x, double[] k, double[] v, boolean[] real, int batch, int lq, int lk) {
        int od = p.merge().out(), n = p.heads();
        double[] out = new double[batch * lq * od], att = new double[batch * n * lq * lk];
        IntStream.range(0, batch).parallel().forEach(b -> {
            Sample s = new Sample(p, x, k, v, real, b, lq, lk);
            for (int i = 0; i < lq; i++) {
                double[] o = p.merge().apply(s.o, i * p.hidden());
                System.arraycopy(o, 0, out, (b * lq + i) * od, od);
            }
            System.arraycopy(s.prob, 0, att, b * n * lq * lk, n * lq * lk);
        });
        return new Result(out, att);
    }

    public static Grads backward(MultiHeadAttention op, float[] query, float[] key, float[] value, ObjectMask mask, float[] gradOut, int batch,
                                 int queries, int keys) {
        return backward(params(op), toDouble(query), toDouble(key), toDouble(value), real(mask, batch, keys), toDouble(gradOut), batch, queries, keys);
    }

    public static Grads backward(Params p, double[] x, double[] k, double[] v, boolean[] real, double[] gradOut, int batch, int lq, int lk) {
        int hd = p.hidden(), n = p.heads(), d = p.headDim(), od = p.merge().out();
        double scale = 1 / Math.sqrt(d);
        int dqd = p.query().in(), dkd = p.key().in(), dvd = p.value().in();
        double[] gx = new double[batch * lq * dqd], gk = new double[batch * lk * dkd], gv = new double[batch * lk * dvd];
        // the projection-space gradients and activations that the parameter gradients are made of
        double[] dQ = new double[batch * lq * hd], dK = new double[batch * lk * hd], dV = new double[batch * lk * hd];
        double[] o = new double[batch * lq * hd];
        IntStream.range(0, batch).parallel().forEach(b -> {
            Sample s = new Sample(p, x, k, v, real, b, lq, lk);
            System.arraycopy(s.o, 0, o, b * lq * hd, lq * hd);
            double[] dO = new double[lq * hd];
            for (int i = 0; i < lq; i++) System.arraycopy(MlbAttentionReference.transposed(p.merge(), gradOut, (b * lq + i) * od), 0, dO, i * hd, hd);
            for (int h = 0; h < n; h++) {
                int c0 = h * d;
                for (int i = 0; i < lq; i++) {
                    double[] dp = new double[lk];
                    double dot = 0;
                    int pr = (h * lq + i) * lk;
                    for (int j = 0; j < lk; j++) {
                        double acc = 0;
                        for (int c = 0; c < d; c++) acc += dO[i * hd + c0 + c] * s.v[j * hd + c0 + c];
                        dp[j] = acc;
                        dot += s.prob[pr + j] * acc;
                        for (int c = 0; c < d; c++) dV[(b * lk + j) * hd + c0 + c] += s.prob[pr + j] * dO[i * hd + c0 + c];
                    }
                    for (int j = 0; j < lk; j++) {
                        if (!real[b * lk + j]) continue; // a masked score is a constant: no gradient
                        double ds = s.prob[pr + j] * (dp[j] - dot) * scale;
                        for (int c = 0; c < d; c++) {
                            dQ[(b * lq + i) * hd + c0 + c] += ds * s.k[j * hd + c0 + c];
                            dK[(b * lk + j) * hd + c0 + c] += ds * s.q[i * hd + c0 + c];
                        }
                    }
                }
            }
            for (int i = 0; i < lq; i++) {
                int r = b * lq + i;
                System.arraycopy(MlbAttentionReference.transposed(p.query(), dQ, r * hd), 0, gx, r * dqd, dqd);
            }
            for (int j = 0; j < lk; j++) {
                int r = b * lk + j;
                System.arraycopy(MlbAttentionReference.transposed(p.key(), dK, r * hd), 0, gk, r * dkd, dkd);
                System.arraycopy(MlbAttentionReference.transposed(p.value(), dV, r * hd), 0, gv, r * dvd, dvd);
            }
        });
        List<double[]> par = new ArrayList<>();
        for (double[] t : p.tensors()) par.add(new double[t.length]);
        int[] slot = MlbAttentionReference.slots(p.layers());
        MlbAttentionReference.outer(p.query(), dQ, hd, 0, x, dqd, 0, batch * lq, par, slot[0]);
        MlbAttentionReference.outer(p.key(), dK, hd, 0, k, dkd, 0, batch * lk, par, slot[1]);
        if (p.key().bias() != null) java.util.Arrays.fill(par.get(slot[1] + 1), 0); // exactly zero: see the class comment
        MlbAttentionReference.outer(p.value(), dV, hd, 0, v, dvd, 0, batch * lk, par, slot[2]);
        MlbAttentionReference.outer(p.merge(), gradOut, od, 0, o, hd, 0, batch * lq, par, slot[3]);
        return new Grads(gx, gk, gv, par);
    }

    /** One sample's projections ({@code Lq × H}, {@code Lk × H} twice), probabilities ({@code n × Lq × Lk}) and heads' outputs ({@code Lq × H}). */
    private static final class Sample {
        final double[] q, k, v, prob, o;

        Sample(Params p, double[] x, double[] kin, double[] vin, boolean[] real, int b, int lq, int lk) {
            int hd = p.hidden(), n = p.heads(), d = p.headDim();
            double scale = 1 / Math.sqrt(d);
            q = project(p.query(), x, b * lq, lq);
            k = project(p.key(), kin, b * lk, lk);
            v = project(p.value(), vin, b * lk, lk);
            prob = new double[n * lq * lk];
            o = new double[lq * hd];
            double[] sc = new double[lk];
            for (int h = 0; h < n; h++) {
                int c0 = h * d;
                for (int i = 0; i < lq; i++) {
                    double m = Double.NEGATIVE_INFINITY, sum = 0;
                    for (int j = 0; j < lk; j++) {
                        double acc = 0;
                        for (int c = 0; c < d; c++) acc += q[i * hd + c0 + c] * k[j * hd + c0 + c];
                        sc[j] = real[b * lk + j] ? acc * scale : MultiHeadAttention.MASKED_SCORE;
                        m = Math.max(m, sc[j]);
                    }
                    int pr = (h * lq + i) * lk;
                    for (int j = 0; j < lk; j++) sum += prob[pr + j] = Math.exp(sc[j] - m);
                    for (int j = 0; j < lk; j++) prob[pr + j] /= sum;
                    for (int j = 0; j < lk; j++) {
                        double a = prob[pr + j];
                        for (int c = 0; c < d; c++) o[i * hd + c0 + c] += a * v[j * hd + c0 + c];
                    }
                }
            }
        }

        /** {@code rows} rows of {@code x} from row {@code first}, through {@code l}: {@code rows × l.out()}. */
        private static double[] project(Layer l, double[] x, int first, int rows) {
            double[] y = new double[rows * l.out()];
            for (int r = 0; r < rows; r++) System.arraycopy(l.apply(x, (first + r) * l.in()), 0, y, r * l.out(), l.out());
            return y;
        }
    }

    static double[] toDouble(float[] a) { return MlbAttentionReference.toDouble(a); }
}
