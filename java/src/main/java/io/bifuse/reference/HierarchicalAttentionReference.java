package io.bifuse.reference;

import io.bifuse.HierarchicalAttention;
import io.bifuse.reference.MlbAttentionReference.Layer;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.IntStream;

/**
 * The oracle for {@link HierarchicalAttention}: the definition (see its class comment) evaluated group
 * by group in double, and its gradient by the chain rule written out step by step, level by level from
 * the last ({@code g_g = ∂L/∂s_g}, starting from {@code gradOut}):
 * <pre>
 *   dα_i = g_g · x_i,  dx_i = α_i g_g                                   (s_g = Σ α_i x_i)
 *   da_i = α_i (dα_i − Σ_{j in g} α_j dα_j)                             (softmax Jacobian, per group)
 *   dc += Σ_i da_i u_i,  db_c = Σ_i da_i = 0,  dp_i = da_i c ⊙ (1 − u_i²)
 *   dW += Σ_i dp_i x_iᵀ,  db += Σ_i dp_i,  dx_i += Wᵀ dp_i
 * </pre>
 * and {@code dx} of level {@code ℓ} is {@code g} of level {@code ℓ − 1}. {@code db_c} sums to zero within
 * every group (a softmax's Jacobian sums to zero): the reference returns exact zeros rather than the
 * rounding noise of that sum, so that backends that write zeros compare exactly. An empty group pools
 * to zero and contributes nothing to any gradient.
 *
 * <p>The layers are taken in double ({@link Params}), so that the tests can perturb any parameter by a
 * float64 step for central finite differences. Groups run in parallel; within a group every sum runs
 * in one fixed order, and the parameter gradients sum their rows (the level's items) in order.
 */
public final class HierarchicalAttentionReference {
    private HierarchicalAttentionReference() {}

    /** One level in double: projection {@code k × d}, logits {@code 1 × k}. */
    public record LevelParams(Layer projection, Layer logits) {}

    /** The op's parameters in double, in the order of {@link HierarchicalAttention#gradientNames()}. */
    public record Params(List<LevelParams> levels) {
        int d() { return levels.get(0).projection().in(); }

        List<Layer> flat() {
            List<Layer> l = new ArrayList<>();
            for (LevelParams p : levels) l.addAll(List.of(p.projection(), p.logits()));
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

    public static Params params(HierarchicalAttention op) {
        List<LevelParams> l = new ArrayList<>();
        for (HierarchicalAttention.Level x : op.weights().levels()) l.add(new LevelParams(Layer.of(x.projection()), Layer.of(x.logits())));
        return new Params(l);
    }

    /** Output {@code G_{L−1} × d} and per level the attention weights ({@code N_ℓ}). */
    public record Result(double[] out, List<double[]> attention) {}

    /** Gradients of the input and of {@link Params#tensors()}, in that order. */
    public record Grads(double[] dx, List<double[]> parameters) {
        /** dx, then the parameter gradients: the order of {@link HierarchicalAttention#gradientNames()}. */
        public List<double[]> tensors() {
            List<double[]> t = new ArrayList<>();
            t.add(dx);
            t.addAll(parameters);
            return t;
        }
    }

    public static Result forward(HierarchicalAttention op, float[] x, int items, int[][] offsets) {
        op.groupCounts(items, offsets);
        return forward(params(op), MlbAttentionReference.toDouble(x), offsets);
    }

    /** {@code offsets} as the op checks them (not checked again here). */
    public static Result forward(Params p, double[] x, int[][] offsets) {
        List<double[]> att = new ArrayList<>();
        double[] items = x;
        for (int l = 0; l < p.levels.size(); l++) {
            Level lv = new Level(p.levels.get(l), items, offsets[l], p.d());
            att.add(lv.alpha);
            items = lv.pooled;
        }
        return new Result(items, att);
    }

    public static Grads backward(HierarchicalAttention op, float[] x, float[] gradOut, int items, int[][] offsets) {
        op.groupCounts(items, offsets);
        return backward(params(op), MlbAttentionReference.toDouble(x), MlbAttentionReference.toDouble(gradOut), offsets);
    }

    public static Grads backward(Params p, double[] x, double[] gradOut, int[][] offsets) {
        int d = p.d(), levels = p.levels.size();
        Level[] lv = new Level[levels];
        double[] items = x;
        for (int l = 0; l < levels; l++) {
            lv[l] = new Level(p.levels.get(l), items, offsets[l], d);
            items = lv[l].pooled;
        }
        List<double[]> par = new ArrayList<>();
        for (double[] t : p.tensors()) par.add(new double[t.length]);
        int[] slot = MlbAttentionReference.slots(p.flat());
        double[] g = gradOut;
        for (int l = levels - 1; l >= 0; l--) {
            Level v = lv[l];
            LevelParams lp = p.levels.get(l);
            int k = lp.projection().out(), n = v.n;
            double[] gx = new double[n * d], dp = new double[n * k], da = new double[n];
            double[] gl = g;
            int[] off = offsets[l];
            IntStream.range(0, off.length - 1).parallel().forEach(grp -> {
                int lo = off[grp], hi = off[grp + 1];
                double c = 0;
                for (int i = lo; i < hi; i++) {
                    double acc = 0;
                    for (int j = 0; j < d; j++) {
                        acc += gl[grp * d + j] * v.x[i * d + j];
                        gx[i * d + j] = v.alpha[i] * gl[grp * d + j];
                    }
                    da[i] = acc;
                    c += v.alpha[i] * acc;
                }
                for (int i = lo; i < hi; i++) {
                    da[i] = v.alpha[i] * (da[i] - c);
                    for (int j = 0; j < k; j++) {
                        double u = v.u[i * k + j];
                        dp[i * k + j] = da[i] * lp.logits().weight()[j] * (1 - u * u);
                    }
                    double[] dxi = MlbAttentionReference.transposed(lp.projection(), dp, i * k);
                    for (int j = 0; j < d; j++) gx[i * d + j] += dxi[j];
                }
            });
            MlbAttentionReference.outer(lp.projection(), dp, k, 0, v.x, d, 0, n, par, slot[2 * l]);
            MlbAttentionReference.outer(lp.logits(), da, 1, 0, v.u, k, 0, n, par, slot[2 * l + 1]);
            if (lp.logits().bias() != null) java.util.Arrays.fill(par.get(slot[2 * l + 1] + 1), 0); // exactly zero: see the class comment
            g = gx;
        }
        return new Grads(g, par);
    }

    /** Every intermediate of one level's forward over all its groups. */
    private static final class Level {
        final int n;
        /** x: the level's items (N × d); u: tanh(W x_i + b) (N × k); alpha (N); pooled (G × d). */
        final double[] x, u, alpha, pooled;

        Level(LevelParams lp, double[] x, int[] off, int d) {
            int k = lp.projection().out(), groups = off.length - 1;
            this.x = x;
            n = x.length / d;
            u = new double[n * k];
            alpha = new double[n];
            pooled = new double[groups * d];
            IntStream.range(0, groups).parallel().forEach(grp -> {
                int lo = off[grp], hi = off[grp + 1];
                double[][] logit = {new double[hi - lo]};
                for (int i = lo; i < hi; i++) {
                    double[] p = lp.projection().apply(x, i * d);
                    for (int j = 0; j < k; j++) u[i * k + j] = p[j] = Math.tanh(p[j]);
                    logit[0][i - lo] = lp.logits().apply(p, 0)[0];
                }
                double[] a = CellAttention.softmax(logit)[0];
                for (int i = lo; i < hi; i++) {
                    alpha[i] = a[i - lo];
                    for (int j = 0; j < d; j++) pooled[grp * d + j] += alpha[i] * x[i * d + j];
                }
            });
        }
    }
}
