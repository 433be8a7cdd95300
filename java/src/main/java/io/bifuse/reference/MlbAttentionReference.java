package io.bifuse.reference;

import io.bifuse.Activation;
import io.bifuse.Linear;
import io.bifuse.MlbAttention;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.IntStream;

/**
 * The oracle for {@link MlbAttention}: the definition (see its class comment) evaluated per sample in
 * double, and its gradient by the chain rule written out step by step:
 * <pre>
 *   dz = W_oᵀ g,  dW_o = Σ_b g zᵀ,  db_o = Σ_b g                      (z = u ⊙ f)
 *   du = dz ⊙ f,  df = dz ⊙ u;  dp_u = du ⊙ σ'(u),  dp_f = df ⊙ σ'(f)
 *   dW_g = Σ_b dp_{u,g} v̂_gᵀ,  dv̂_g = W_gᵀ dp_{u,g};   dW_f = Σ_b dp_f qᵀ,  dq += W_fᵀ dp_f
 *   dα_{g,s} = dv̂_g · v_s,  dv_s += Σ_g α_{g,s} dv̂_g
 *   da_{g,s} = α_{g,s} (dα_{g,s} − Σ_t α_{g,t} dα_{g,t})                 (softmax Jacobian)
 *   dh_s = Σ_g da_{g,s} W_a[g],  dW_a = Σ_{b,s} da_s h_sᵀ                (h_s = q' ⊙ v'_s)
 *   dp_{v,s} = dh_s ⊙ q' ⊙ σ'(v'_s),  dW_v = Σ dp_{v,s} v_sᵀ,  dv_s += W_vᵀ dp_{v,s}
 *   dp_q = (Σ_s dh_s ⊙ v'_s) ⊙ σ'(q'),  dW_q = Σ_b dp_q qᵀ,  dq += W_qᵀ dp_q
 * </pre>
 * Bias gradients are the sums of the corresponding {@code dp} over the rows. {@code db_a = Σ_{b,s} da_s}
 * is exactly zero ({@code Σ_s da_{g,s} = 0} for a softmax over s): the reference returns exact zeros
 * rather than the rounding noise of that sum, so that backends that write zeros compare exactly. The
 * same holds for the cells' bias {@code db_v} when σ is the identity ({@link Activation#NONE}): then
 * {@code b_v} adds {@code W_a (q' ⊙ b_v)} to every cell's logits alike, which the softmax cancels, so
 * {@code db_v = Σ_b q' ⊙ W_aᵀ Σ_s da_s = 0}, and it too is returned as exact zeros (a relative error
 * against the rounding noise of a sum that cancels exactly would say nothing).
 *
 * <p>The layers are taken in double ({@link Params}), so that the tests can perturb any parameter by
 * a float64 step for central finite differences. Samples run in parallel; within a sample every sum
 * runs in one fixed order.
 */
public final class MlbAttentionReference {
    private MlbAttentionReference() {}

    /** One layer in double, nn.Linear layout: {@code weight} {@code out × in}, {@code bias} {@code out} or null. */
    public record Layer(int out, int in, double[] weight, double[] bias) {
        public static Layer of(Linear l) {
            return new Layer(l.out(), l.in(), l.weightAsDouble(), l.hasBias() ? toDouble(l.bias()) : null);
        }

        double b(int o) { return bias == null ? 0 : bias[o]; }

        /** {@code y[o] = b[o] + Σ_i W[o, i] x[xOff + i]}. */
        double[] apply(double[] x, int xOff) {
            double[] y = new double[out];
            for (int o = 0; o < out; o++) {
                double acc = b(o);
                for (int i = 0; i < in; i++) acc += weight[o * in + i] * x[xOff + i];
                y[o] = acc;
            }
            return y;
        }
    }

    /** The op's parameters in double, layers in the order of {@link MlbAttention#gradientNames()}. */
    public record Params(Layer question, Layer cells, Layer logits, List<Layer> glimpses, Layer questionFusion, Layer answer,
                         Activation activation) {
        int dq() { return question.in; }
        int dv() { return cells.in; }
        int j() { return question.out; }
        int g() { return logits.out; }
        int outDim() { return answer.out; }

        public List<Layer> layers() {
            List<Layer> l = new ArrayList<>(List.of(question, cells, logits));
            l.addAll(glimpses);
            l.add(questionFusion);
            l.add(answer);
            return l;
        }

        /** Every parameter tensor (weight, then bias if any, per layer): the same arrays, for perturbing in place. */
        public List<double[]> tensors() {
            List<double[]> t = new ArrayList<>();
            for (Layer l : layers()) {
                t.add(l.weight);
                if (l.bias != null) t.add(l.bias);
            }
            return t;
        }
    }

    public static Params params(MlbAttention op) {
        MlbAttention.Weights w = op.weights();
        List<Layer> g = new ArrayList<>();
        for (Linear l : w.glimpses()) g.add(Layer.of(l));
        return new Params(Layer.of(w.question()), Layer.of(w.cells()), Layer.of(w.logits()), g, Layer.of(w.questionFusion()),
                Layer.of(w.answer()), op.activation());
    }

    /** Output {@code B × Out} and attention maps {@code B × G × L}. */
    public record Result(double[] out, double[] attention) {}

    /** Gradients of the inputs and of {@link Params#tensors()}, in that order. */
    public record Grads(double[] dq, double[] dv, List<double[]> parameters) {
        /** dq, dv, then the parameter gradients: the order of {@link MlbAttention#gradientNames()}. */
        public List<double[]> tensors() {
            List<double[]> t = new ArrayList<>(List.of(dq, dv));
            t.addAll(parameters);
            return t;
        }
    }

    public static Result forward(MlbAttention op, float[] q, float[] v, int batch, int cells) {
        return forward(params(op), toDouble(q), toDouble(v), batch, cells);
    }

    public static Result forward(Params p, double[] q, double[] v, int batch, int cells) {
        double[] out = new double[batch * p.outDim()], att = new double[batch * p.g() * cells];
        IntStream.range(0, batch).parallel().forEach(b -> {
            Sample s = new Sample(p, q, v, b, cells);
            System.arraycopy(s.out, 0, out, b * p.outDim(), p.outDim());
            for (int g = 0; g < p.g(); g++) System.arraycopy(s.alpha[g], 0, att, (b * p.g() + g) * cells, cells);
        });
        return new Result(out, att);
    }

    public static Grads backward(MlbAttention op, float[] q, float[] v, float[] gradOut, int batch, int cells) {
        return backward(params(op), toDouble(q), toDouble(v), toDouble(gradOut), batch, cells);
    }

    public static Grads backward(Params p, double[] q, double[] v, double[] gradOut, int batch, int cells) {
        int dq = p.dq(), dv = p.dv(), j = p.j(), gs = p.g(), gj = gs * j, od = p.outDim();
        int rows = Math.multiplyExact(batch, cells);
        double[] gq = new double[batch * dq], gv = new double[Math.multiplyExact(rows, dv)];
        // Phase 1, per sample: the input gradients and the row vectors the parameter gradients are made of.
        double[] z = new double[batch * gj], dpu = new double[batch * gj], dpf = new double[batch * gj], dpq = new double[batch * j];
        double[] vhat = new double[batch * gs * dv], da = new double[rows * gs];
        double[] h = new double[Math.multiplyExact(rows, j)], dpv = new double[rows * j];
        Activation act = p.activation;
        IntStream.range(0, batch).parallel().forEach(b -> {
            Sample s = new Sample(p, q, v, b, cells);
            System.arraycopy(s.z, 0, z, b * gj, gj);
            double[] dz = new double[gj];
            for (int o = 0; o < od; o++) {
                double g = gradOut[b * od + o];
                for (int k = 0; k < gj; k++) dz[k] += p.answer.weight[o * gj + k] * g;
            }
            for (int k = 0; k < gj; k++) {
                dpu[b * gj + k] = dz[k] * s.f[k] * act.derivativeFromOutput(s.u[k]);
                dpf[b * gj + k] = dz[k] * s.u[k] * act.derivativeFromOutput(s.f[k]);
            }
            double[] dqs = transposed(p.questionFusion, dpf, b * gj);
            double[][] dvhat = new double[gs][];
            for (int g = 0; g < gs; g++) {
                System.arraycopy(s.vhat[g], 0, vhat, (b * gs + g) * dv, dv);
                dvhat[g] = transposed(p.glimpses.get(g), dpu, b * gj + g * j);
            }
            CellAttention.backward(s.alpha, dvhat, v, b, cells, dv, gv, da); // weighted sums (dv) and the softmax Jacobian (da)
            // per-cell logits and cell projections; the question projection collects over the cells
            double[] dqa = new double[j];
            for (int t = 0; t < cells; t++) {
                int r = b * cells + t;
                for (int jj = 0; jj < j; jj++) {
                    double dh = 0;
                    for (int g = 0; g < gs; g++) dh += da[r * gs + g] * p.logits.weight[g * j + jj];
                    h[r * j + jj] = s.qa[jj] * s.va[t][jj];
                    dpv[r * j + jj] = dh * s.qa[jj] * act.derivativeFromOutput(s.va[t][jj]);
                    dqa[jj] += dh * s.va[t][jj];
                }
                double[] dvt = transposed(p.cells, dpv, r * j);
                for (int d = 0; d < dv; d++) gv[r * dv + d] += dvt[d];
            }
            for (int jj = 0; jj < j; jj++) dpq[b * j + jj] = dqa[jj] * act.derivativeFromOutput(s.qa[jj]);
            double[] dqq = transposed(p.question, dpq, b * j);
            for (int i = 0; i < dq; i++) gq[b * dq + i] = dqs[i] + dqq[i];
        });
        // Phase 2: each parameter gradient is a sum over rows (samples, or samples × cells) of dp xᵀ.
        List<double[]> par = new ArrayList<>();
        for (double[] t : p.tensors()) par.add(new double[t.length]);
        int[] slot = slots(p.layers());
        outer(p.question, dpq, j, 0, q, dq, 0, batch, par, slot[0]);
        outer(p.cells, dpv, j, 0, v, dv, 0, rows, par, slot[1]);
        if (p.cells.bias != null && act == Activation.NONE) java.util.Arrays.fill(par.get(slot[1] + 1), 0); // exactly zero: see the class comment
        outer(p.logits, da, gs, 0, h, j, 0, rows, par, slot[2]);
        if (p.logits.bias != null) java.util.Arrays.fill(par.get(slot[2] + 1), 0); // exactly zero: see the class comment
        for (int g = 0; g < gs; g++) outer(p.glimpses.get(g), dpu, gj, g * j, vhat, gs * dv, g * dv, batch, par, slot[3 + g]);
        outer(p.questionFusion, dpf, gj, 0, q, dq, 0, batch, par, slot[3 + gs]);
        outer(p.answer, gradOut, od, 0, z, gj, 0, batch, par, slot[4 + gs]);
        return new Grads(gq, gv, par);
    }

    /** Index into the parameter tensors (weight, then bias if any, per layer) of each layer's weight. */
    static int[] slots(List<Layer> layers) {
        int[] slot = new int[layers.size()];
        int next = 0;
        for (int i = 0; i < layers.size(); i++) {
            slot[i] = next;
            next += layers.get(i).bias == null ? 1 : 2;
        }
        return slot;
    }

    /** {@code Wᵀ dp} for the {@code out} values of {@code dp} at {@code off}. */
    static double[] transposed(Layer l, double[] dp, int off) {
        double[] dx = new double[l.in];
        for (int o = 0; o < l.out; o++) {
            double d = dp[off + o];
            for (int i = 0; i < l.in; i++) dx[i] += l.weight[o * l.in + i] * d;
        }
        return dx;
    }

    /**
     * {@code dW = Σ_r dp_r x_rᵀ} and {@code db = Σ_r dp_r} over {@code rows} rows, row {@code r} of dp at
     * {@code r·dpLd + dpOff}, of x at {@code r·xLd + xOff}; parallel over the outputs, rows summed in order.
     */
    static void outer(Layer l, double[] dp, int dpLd, int dpOff, double[] x, int xLd, int xOff, int rows, List<double[]> par, int slot) {
        double[] gw = par.get(slot), gb = l.bias == null ? null : par.get(slot + 1);
        IntStream.range(0, l.out).parallel().forEach(o -> {
            double sb = 0;
            for (int r = 0; r < rows; r++) {
                double d = dp[r * dpLd + dpOff + o];
                sb += d;
                int xo = r * xLd + xOff;
                for (int i = 0; i < l.in; i++) gw[o * l.in + i] += d * x[xo + i];
            }
            if (gb != null) gb[o] = sb;
        });
    }

    /** Every intermediate of one sample's forward. */
    private static final class Sample {
        final double[] qa, f, u, z, out;
        final double[][] va, alpha, vhat;

        Sample(Params p, double[] q, double[] v, int b, int cells) {
            int dq = p.dq(), dv = p.dv(), j = p.j(), gs = p.g();
            Activation act = p.activation;
            qa = activate(act, p.question.apply(q, b * dq));
            va = new double[cells][];
            double[][] logit = new double[gs][cells];
            for (int t = 0; t < cells; t++) {
                va[t] = activate(act, p.cells.apply(v, (b * cells + t) * dv));
                double[] h = new double[j];
                for (int jj = 0; jj < j; jj++) h[jj] = qa[jj] * va[t][jj];
                double[] a = p.logits.apply(h, 0);
                for (int g = 0; g < gs; g++) logit[g][t] = a[g];
            }
            alpha = CellAttention.softmax(logit);
            vhat = CellAttention.pool(alpha, v, b, cells, dv);
            u = new double[gs * j];
            for (int g = 0; g < gs; g++) System.arraycopy(activate(act, p.glimpses.get(g).apply(vhat[g], 0)), 0, u, g * j, j);
            f = activate(act, p.questionFusion.apply(q, b * dq));
            z = new double[gs * j];
            for (int k = 0; k < gs * j; k++) z[k] = u[k] * f[k];
            out = p.answer.apply(z, 0);
        }
    }

    private static double[] activate(Activation a, double[] p) {
        for (int i = 0; i < p.length; i++) p[i] = a.apply(p[i]);
        return p;
    }

    public static double[] toDouble(float[] a) {
        double[] r = new double[a.length];
        for (int i = 0; i < a.length; i++) r[i] = a[i];
        return r;
    }
}
