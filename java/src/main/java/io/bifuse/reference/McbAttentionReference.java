package io.bifuse.reference;

import io.bifuse.Activation;
import io.bifuse.CompactBilinear;
import io.bifuse.McbAttention;
import io.bifuse.Normalization;
import io.bifuse.reference.MlbAttentionReference.Layer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.stream.IntStream;

/**
 * The oracle for {@link McbAttention}: the definition (see its class comment) evaluated in double, the
 * poolings by the outer-product count sketch ({@link CompactBilinearReference}, no FFT), the
 * normalizations by {@link NormalizationReference}, and the gradient by the chain rule written out step
 * by step, over the rows {@code r = b·L + s} (one per cell):
 * <pre>
 *   dũ = W3ᵀ g,  dW3 = Σ_b g ũᵀ,  db3 = Σ_b g
 *   (dv̂, dq) = MCB_fus backward (v̂, q; dũ)                 through fusion.normalization()
 *   dα_{g,s} = dv̂_g · I_s,  dI_s += Σ_g α_{g,s} dv̂_g
 *   da_{g,s} = α_{g,s} (dα_{g,s} − Σ_t α_{g,t} dα_{g,t})      (softmax Jacobian)
 *   dW2 = Σ_r da_r h_rᵀ,  dh_r = W2ᵀ da_r,  dp_r = dh_r ⊙ [h_r > 0]
 *   dW1 = Σ_r dp_r t_rᵀ,  db1 = Σ_r dp_r,  dt_r = W1ᵀ dp_r
 *   dz = normalization backward of dt, per cell (CELL) or per sample's L × d1 map (MAP)
 *   (dq_r, dI'_r) = MCB_att backward (q, I_r; dz_r),  dq += Σ_s dq_{b·L+s},  dI_r += dI'_r
 * </pre>
 * With the cells of a sample contiguous, the {@link McbAttention.L2Scope#MAP MAP} normalization is just
 * {@link NormalizationReference} over one block of {@code L·d1} values (the signed sqrt is elementwise,
 * so only the l2 norm sees the block), and {@link McbAttention.L2Scope#CELL CELL} over blocks of
 * {@code d1}. The question is tiled over the cells ({@code q} for every row) so that the attention pooling
 * is {@link CompactBilinearReference} on {@code B·L} rows.
 *
 * <p>{@code db2 = Σ_r da_r} is exactly zero ({@code Σ_s da_{g,s} = 0} for a softmax over s): the reference
 * returns exact zeros rather than the rounding noise of that sum, so that backends that write zeros
 * compare exactly.
 *
 * <p>The layers are taken in double ({@link Params}), so that the tests can perturb any parameter by a
 * float64 step for central finite differences. Rows and samples run in parallel; every sum runs in one
 * fixed order. Memory is {@code O(B·L·(Dq + d1))}, time {@code O(B·L·Dq·Dv)}: meant for tests, not the
 * paper's sizes.
 */
public final class McbAttentionReference {
    private McbAttentionReference() {}

    /** The op's parameters in double (layers in the order of {@link McbAttention#gradientNames()}); the poolings as they are. */
    public record Params(CompactBilinear attention, McbAttention.L2Scope scope, CompactBilinear fusion, Layer hidden, Layer logits, Layer answer) {
        int dq() { return attention.dx(); }
        int dv() { return attention.dy(); }
        int g() { return logits.out(); }

        public List<Layer> layers() { return List.of(hidden, logits, answer); }

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

    public static Params params(McbAttention op) {
        McbAttention.Weights w = op.weights();
        return new Params(op.attention(), op.scope(), op.fusion(), Layer.of(w.hidden()), Layer.of(w.logits()), Layer.of(w.answer()));
    }

    /** Output {@code B × A} and attention maps {@code B × G × L}. */
    public record Result(double[] out, double[] attention) {}

    /** Gradients of the inputs and of {@link Params#tensors()}, in that order. */
    public record Grads(double[] dq, double[] dI, List<double[]> parameters) {
        /** dq, dI, then the parameter gradients: the order of {@link McbAttention#gradientNames()}. */
        public List<double[]> tensors() {
            List<double[]> t = new ArrayList<>(List.of(dq, dI));
            t.addAll(parameters);
            return t;
        }
    }

    public static Result forward(McbAttention op, float[] q, float[] image, int batch, int cells) {
        return forward(params(op), CompactBilinearReference.toDouble(q), CompactBilinearReference.toDouble(image), batch, cells);
    }

    public static Result forward(Params p, double[] q, double[] image, int batch, int cells) {
        Trace t = trace(p, q, image, batch, cells);
        int gs = p.g();
        double[] att = new double[batch * gs * cells];
        for (int b = 0; b < batch; b++) for (int g = 0; g < gs; g++) System.arraycopy(t.alpha[b][g], 0, att, (b * gs + g) * cells, cells);
        return new Result(t.out, att);
    }

    public static Grads backward(McbAttention op, float[] q, float[] image, float[] gradOut, int batch, int cells) {
        return backward(params(op), CompactBilinearReference.toDouble(q), CompactBilinearReference.toDouble(image),
                CompactBilinearReference.toDouble(gradOut), batch, cells);
    }

    public static Grads backward(Params p, double[] q, double[] image, double[] gradOut, int batch, int cells) {
        Trace t = trace(p, q, image, batch, cells);
        int dq = p.dq(), dv = p.dv(), d1 = p.attention.d(), hd = p.hidden.out(), gs = p.g(), d2 = p.fusion.d(), a = p.answer.out();
        int rows = t.rows;
        List<double[]> par = new ArrayList<>();
        for (double[] x : p.tensors()) par.add(new double[x.length]);
        int[] slot = MlbAttentionReference.slots(p.layers());
        // the answer layer, then the fusion pooling (through its normalization)
        double[] du = new double[batch * d2];
        IntStream.range(0, batch).parallel().forEach(b -> System.arraycopy(MlbAttentionReference.transposed(p.answer, gradOut, b * a), 0, du, b * d2, d2));
        MlbAttentionReference.outer(p.answer, gradOut, a, 0, t.u2, d2, 0, batch, par, slot[2]);
        double[][] fus = CompactBilinearReference.backward(p.fusion, t.vhat, q, du, batch);
        // the attention: weighted sums (dI) and the softmax Jacobian (da)
        double[] gI = new double[Math.multiplyExact(rows, dv)], da = new double[rows * gs];
        IntStream.range(0, batch).parallel().forEach(b -> {
            double[][] dvhat = new double[gs][];
            for (int g = 0; g < gs; g++) dvhat[g] = Arrays.copyOfRange(fus[0], (b * gs + g) * dv, (b * gs + g + 1) * dv);
            CellAttention.backward(t.alpha[b], dvhat, image, b, cells, dv, gI, da);
        });
        // logits and hidden layers, per row
        MlbAttentionReference.outer(p.logits, da, gs, 0, t.h, hd, 0, rows, par, slot[1]);
        if (p.logits.bias() != null) Arrays.fill(par.get(slot[1] + 1), 0); // exactly zero: see the class comment
        double[] dp = new double[rows * hd], dt = new double[Math.multiplyExact(rows, d1)];
        IntStream.range(0, rows).parallel().forEach(r -> {
            double[] dh = MlbAttentionReference.transposed(p.logits, da, r * gs);
            for (int k = 0; k < hd; k++) dp[r * hd + k] = dh[k] * Activation.RELU.derivativeFromOutput(t.h[r * hd + k]);
            System.arraycopy(MlbAttentionReference.transposed(p.hidden, dp, r * hd), 0, dt, r * d1, d1);
        });
        MlbAttentionReference.outer(p.hidden, dp, hd, 0, t.t, d1, 0, rows, par, slot[0]);
        // the attention normalization, then the attention pooling (on the raw sketch)
        double[] dz = new double[dt.length];
        int block = block(p, cells);
        IntStream.range(0, dt.length / block).parallel()
                .forEach(k -> NormalizationReference.backward(p.attention.normalization(), t.z1, dt, k * block, block, dz));
        double[][] att = CompactBilinearReference.backwardFromPooled(p.attention.withNormalization(Normalization.NONE), t.qt, image, null, dz, rows);
        double[] gq = fus[1];
        for (int r = 0; r < rows; r++) for (int i = 0; i < dq; i++) gq[(r / cells) * dq + i] += att[0][r * dq + i];
        for (int i = 0; i < gI.length; i++) gI[i] += att[1][i];
        return new Grads(gq, gI, par);
    }

    /** The length of one l2 block: a cell's {@code d1} values, or a sample's {@code L·d1}. */
    private static int block(Params p, int cells) {
        return p.scope == McbAttention.L2Scope.CELL ? p.attention.d() : Math.multiplyExact(cells, p.attention.d());
    }

    /**
     * Every intermediate of the forward, over the {@code rows = B·L} rows {@code r = b·L + s}: the tiled
     * question {@code qt} ({@code rows × Dq}), the raw attention sketch {@code z1} and its normalization
     * {@code t} ({@code rows × d1}), the hidden pre-activations {@code p} and activations {@code h}
     * ({@code rows × H}), the attention {@code alpha[b][g][s]}, the glimpses {@code vhat} ({@code B × G·Dv}),
     * the normalized fusion {@code u2} ({@code B × d2}) and the output ({@code B × A}).
     */
    record Trace(int rows, double[] qt, double[] z1, double[] t, double[] p, double[] h, double[][][] alpha, double[] vhat, double[] u2,
                 double[] out) {}

    static Trace trace(Params p, double[] q, double[] image, int batch, int cells) {
        int dq = p.dq(), dv = p.dv(), d1 = p.attention.d(), hd = p.hidden.out(), gs = p.g(), d2 = p.fusion.d(), a = p.answer.out();
        int rows = Math.multiplyExact(batch, cells);
        double[] qt = new double[Math.multiplyExact(rows, dq)];
        for (int r = 0; r < rows; r++) System.arraycopy(q, (r / cells) * dq, qt, r * dq, dq);
        double[] z1 = CompactBilinearReference.pooled(p.attention, qt, image, rows), t = new double[z1.length];
        int block = block(p, cells);
        IntStream.range(0, z1.length / block).parallel().forEach(k -> NormalizationReference.forward(p.attention.normalization(), z1, k * block, block, t));
        double[] pre = new double[rows * hd], h = new double[rows * hd], logit = new double[rows * gs];
        IntStream.range(0, rows).parallel().forEach(r -> {
            System.arraycopy(p.hidden.apply(t, r * d1), 0, pre, r * hd, hd);
            for (int k = 0; k < hd; k++) h[r * hd + k] = Activation.RELU.apply(pre[r * hd + k]);
            System.arraycopy(p.logits.apply(h, r * hd), 0, logit, r * gs, gs);
        });
        double[][][] alpha = new double[batch][][];
        double[] vhat = new double[batch * gs * dv];
        IntStream.range(0, batch).parallel().forEach(b -> {
            double[][] l = new double[gs][cells];
            for (int s = 0; s < cells; s++) for (int g = 0; g < gs; g++) l[g][s] = logit[(b * cells + s) * gs + g];
            alpha[b] = CellAttention.softmax(l);
            double[][] v = CellAttention.pool(alpha[b], image, b, cells, dv);
            for (int g = 0; g < gs; g++) System.arraycopy(v[g], 0, vhat, (b * gs + g) * dv, dv);
        });
        double[] u2 = CompactBilinearReference.forward(p.fusion, vhat, q, batch), out = new double[batch * a];
        for (int b = 0; b < batch; b++) System.arraycopy(p.answer.apply(u2, b * d2), 0, out, b * a, a);
        return new Trace(rows, qt, z1, t, pre, h, alpha, vhat, u2, out);
    }
}
