package io.bifuse.reference;

import io.bifuse.StackedAttention;
import io.bifuse.StackedAttention.Placement;
import io.bifuse.reference.MlbAttentionReference.Layer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.stream.IntStream;

/**
 * The oracle for {@link StackedAttention}: the definition (see its class comment) evaluated per sample
 * in double, and its gradient by the chain rule written out step by step, layer by layer from the last
 * ({@code g = ∂L/∂u_{l+1}}, starting from {@code gradOut}):
 * <pre>
 *   dα_s = g · v_s,  dv_s += α_s g                                    (ṽ = Σ α_s v_s, dṽ = g)
 *   da_s = α_s (dα_s − Σ_t α_t dα_t)                                  (softmax Jacobian)
 *   dz_s = da_s (paper),  da_s (1 − a_s²) (public code: a_s = tanh z_s)
 *   dw_P += Σ_s dz_s h_s,  db_P += Σ_s dz_s,  dh_s = dz_s w_P
 *   paper:        dp_s = dh_s ⊙ (1 − h_s²),  dq = Σ_s dp_s
 *   public code:  dp_s = dh_s ⊙ (1 − i_s²) (i_s = tanh(W_I v_s + b_I)),  dq = (Σ_s dh_s) ⊙ (1 − q²)
 *   dW_I += Σ_s dp_s v_sᵀ,  db_I += Σ_s dp_s,  dv_s += W_Iᵀ dp_s
 *   dW_Q += dq u_lᵀ,  db_Q += dq,  ∂L/∂u_l = g + W_Qᵀ dq             (the residual, then the question side)
 * </pre>
 * In the paper's placement {@code db_P = Σ_{b,s} da_s} is exactly zero (a softmax's Jacobian sums to
 * zero over the cells): the reference returns exact zeros rather than the rounding noise of that sum,
 * so that backends that write zeros compare exactly.
 *
 * <p>The layers are taken in double ({@link Params}), so that the tests can perturb any parameter by
 * a float64 step for central finite differences. Samples run in parallel; within a sample every sum
 * runs in one fixed order, and the parameter gradients sum their rows (samples, or samples × cells)
 * in order.
 */
public final class StackedAttentionReference {
    private StackedAttentionReference() {}

    /** One attention layer in double: image {@code k × d}, question {@code k × d}, logits {@code 1 × k}. */
    public record LayerParams(Layer image, Layer question, Layer logits) {}

    /** The op's parameters in double, in the order of {@link StackedAttention#gradientNames()}. */
    public record Params(List<LayerParams> layers, Placement placement) {
        int d() { return layers.get(0).image().in(); }
        int k() { return layers.get(0).image().out(); }

        /** The layers flat: per attention layer image, question, logits. */
        List<Layer> flat() {
            List<Layer> l = new ArrayList<>();
            for (LayerParams p : layers) l.addAll(List.of(p.image(), p.question(), p.logits()));
            return l;
        }

        /** Every parameter tensor (weight, then bias if any, per layer): the same arrays, for perturbing in place. */
        public List<double[]> tensors() {
            List<double[]> t = new ArrayList<>();
            for (Layer l : flat()) {
                t.add(l.weight());
                if (l.bias() != null) t.add(l.bias());
            }
            return t;
        }
    }

    public static Params params(StackedAttention op) {
        List<LayerParams> l = new ArrayList<>();
        for (StackedAttention.Layer x : op.weights().layers()) l.add(new LayerParams(Layer.of(x.image()), Layer.of(x.question()), Layer.of(x.logits())));
        return new Params(l, op.placement());
    }

    /** Output {@code B × d} and attention maps {@code B × K × L}. */
    public record Result(double[] out, double[] attention) {}

    /** Gradients of the inputs and of {@link Params#tensors()}, in that order. */
    public record Grads(double[] du, double[] dv, List<double[]> parameters) {
        /** du, dv, then the parameter gradients: the order of {@link StackedAttention#gradientNames()}. */
        public List<double[]> tensors() {
            List<double[]> t = new ArrayList<>(List.of(du, dv));
            t.addAll(parameters);
            return t;
        }
    }

    public static Result forward(StackedAttention op, float[] u, float[] v, int batch, int cells) {
        return forward(params(op), MlbAttentionReference.toDouble(u), MlbAttentionReference.toDouble(v), batch, cells);
    }

    public static Result forward(Params p, double[] u, double[] v, int batch, int cells) {
        int d = p.d(), kk = p.layers.size();
        double[] out = new double[batch * d], att = new double[batch * kk * cells];
        IntStream.range(0, batch).parallel().forEach(b -> {
            Sample s = new Sample(p, u, v, b, cells);
            System.arraycopy(s.u[kk], 0, out, b * d, d);
            for (int l = 0; l < kk; l++) System.arraycopy(s.alpha[l], 0, att, (b * kk + l) * cells, cells);
        });
        return new Result(out, att);
    }

    public static Grads backward(StackedAttention op, float[] u, float[] v, float[] gradOut, int batch, int cells) {
        return backward(params(op), MlbAttentionReference.toDouble(u), MlbAttentionReference.toDouble(v), MlbAttentionReference.toDouble(gradOut),
                batch, cells);
    }

    public static Grads backward(Params p, double[] u, double[] v, double[] gradOut, int batch, int cells) {
        int d = p.d(), k = p.k(), kk = p.layers.size();
        int rows = Math.multiplyExact(batch, cells);
        boolean paper = p.placement == Placement.PAPER;
        double[] gu = new double[batch * d], gv = new double[Math.multiplyExact(rows, d)];
        // Phase 1, per sample: the input gradients and the row vectors the parameter gradients are made of, per layer.
        double[][] dp = new double[kk][Math.multiplyExact(rows, k)], h = new double[kk][rows * k], dz = new double[kk][rows];
        double[][] dq = new double[kk][batch * k], uin = new double[kk][batch * d];
        IntStream.range(0, batch).parallel().forEach(b -> {
            Sample s = new Sample(p, u, v, b, cells);
            double[] g = Arrays.copyOfRange(gradOut, b * d, (b + 1) * d);
            for (int l = kk - 1; l >= 0; l--) {
                LayerParams lp = p.layers.get(l);
                System.arraycopy(s.u[l], 0, uin[l], b * d, d);
                double[] da = new double[rows];
                CellAttention.backward(new double[][] {s.alpha[l]}, new double[][] {g}, v, b, cells, d, gv, da); // dv += α g; da
                double[] dqs = new double[k];
                for (int t = 0; t < cells; t++) {
                    int r = b * cells + t;
                    double a = s.logit[l][t], z = paper ? da[r] : da[r] * (1 - a * a);
                    dz[l][r] = z;
                    for (int j = 0; j < k; j++) {
                        double hj = s.h[l][t][j], dh = z * lp.logits().weight()[j], x;
                        h[l][r * k + j] = hj;
                        if (paper) {
                            x = dh * (1 - hj * hj);
                            dqs[j] += x;
                        } else {
                            double i = s.image[l][t][j];
                            x = dh * (1 - i * i);
                            dqs[j] += dh;
                        }
                        dp[l][r * k + j] = x;
                    }
                    double[] dvt = MlbAttentionReference.transposed(lp.image(), dp[l], r * k);
                    for (int i = 0; i < d; i++) gv[r * d + i] += dvt[i];
                }
                for (int j = 0; j < k; j++) {
                    double qj = s.q[l][j];
                    dq[l][b * k + j] = paper ? dqs[j] : dqs[j] * (1 - qj * qj);
                }
                double[] du = MlbAttentionReference.transposed(lp.question(), dq[l], b * k);
                for (int i = 0; i < d; i++) g[i] += du[i];
            }
            System.arraycopy(g, 0, gu, b * d, d);
        });
        // Phase 2: each parameter gradient is a sum over rows (samples, or samples × cells) of dp xᵀ.
        List<double[]> par = new ArrayList<>();
        for (double[] t : p.tensors()) par.add(new double[t.length]);
        int[] slot = MlbAttentionReference.slots(p.flat());
        for (int l = 0; l < kk; l++) {
            LayerParams lp = p.layers.get(l);
            MlbAttentionReference.outer(lp.image(), dp[l], k, 0, v, d, 0, rows, par, slot[3 * l]);
            MlbAttentionReference.outer(lp.question(), dq[l], k, 0, uin[l], d, 0, batch, par, slot[3 * l + 1]);
            MlbAttentionReference.outer(lp.logits(), dz[l], 1, 0, h[l], k, 0, rows, par, slot[3 * l + 2]);
            if (paper && lp.logits().bias() != null) Arrays.fill(par.get(slot[3 * l + 2] + 1), 0); // exactly zero: see the class comment
        }
        return new Grads(gu, gv, par);
    }

    /** Every intermediate of one sample's forward, per layer {@code l}. */
    private static final class Sample {
        /** u[l]: the question vector entering layer l (u[K] the output). */
        final double[][] u;
        /** q[l]: the question side, W_Q u_l + b_Q (paper) or its tanh (public code). */
        final double[][] q;
        /** h[l][s]: the hidden vector of cell s; image[l][s]: tanh(W_I v_s + b_I) (public code only). */
        final double[][][] h, image;
        /** logit[l][s]: a_s (after the tanh in the public code's placement); alpha[l][s]. */
        final double[][] logit, alpha;

        Sample(Params p, double[] uIn, double[] v, int b, int cells) {
            int d = p.d(), k = p.k(), kk = p.layers.size();
            boolean paper = p.placement == Placement.PAPER;
            u = new double[kk + 1][];
            u[0] = Arrays.copyOfRange(uIn, b * d, (b + 1) * d);
            q = new double[kk][];
            h = new double[kk][cells][];
            image = new double[kk][cells][];
            logit = new double[kk][cells];
            alpha = new double[kk][];
            for (int l = 0; l < kk; l++) {
                LayerParams lp = p.layers.get(l);
                q[l] = lp.question().apply(u[l], 0);
                if (!paper) for (int j = 0; j < k; j++) q[l][j] = Math.tanh(q[l][j]);
                for (int t = 0; t < cells; t++) {
                    double[] pi = lp.image().apply(v, (b * cells + t) * d), hs = new double[k];
                    if (paper) {
                        for (int j = 0; j < k; j++) hs[j] = Math.tanh(pi[j] + q[l][j]);
                    } else {
                        for (int j = 0; j < k; j++) hs[j] = (pi[j] = Math.tanh(pi[j])) + q[l][j];
                        image[l][t] = pi;
                    }
                    h[l][t] = hs;
                    double z = lp.logits().apply(hs, 0)[0];
                    logit[l][t] = paper ? z : Math.tanh(z);
                }
                alpha[l] = CellAttention.softmax(new double[][] {logit[l]})[0];
                double[] vh = CellAttention.pool(new double[][] {alpha[l]}, v, b, cells, d)[0];
                u[l + 1] = new double[d];
                for (int i = 0; i < d; i++) u[l + 1][i] = vh[i] + u[l][i];
            }
        }
    }
}
