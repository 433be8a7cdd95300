package io.bifuse.reference;

import io.bifuse.BanAttention;
import io.bifuse.ObjectMask;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.IntStream;

/**
 * The oracle for {@link BanAttention}: the definition (see its class comment) evaluated per sample and
 * glimpse in double, every sum in one fixed order, samples in parallel. Padded objects (the mask) get
 * logit {@code −inf} and attention 0; a sample without a real object gets an all-zero map and zero
 * gradients. The gradient, by the chain rule written out:
 * <pre>
 *   c_g = Σ_{i real, j} A·dA;   dl[g,i,j] = A[g,i,j]·(dA[g,i,j] − c_g)        (0 at padded objects)
 *   dxp[i,k] = Σ_g p[g,k] Σ_j dl[g,i,j]·yp[j,k]       (i real; padded rows 0)
 *   dyp[j,k] = Σ_g p[g,k] Σ_{i real} dl[g,i,j]·xp[i,k]
 *   dp[g,k] += Σ_{i real} xp[i,k] Σ_j dl[g,i,j]·yp[j,k]      summed over the samples in order
 * </pre>
 * {@code dbias[g] = Σ dl} is zero in exact arithmetic ({@code Σ_{i,j} dl = c_g − c_g·Σ A = 0}): returned
 * as exact zeros, as the CUDA path writes them, rather than the rounding noise of that sum.
 *
 * <p>Parameters in double ({@link Params}), so that tests can perturb any of them by a float64 step for
 * central finite differences.
 */
public final class BanAttentionReference {
    private BanAttentionReference() {}

    /** The logits layer in double: {@code weight} {@code G × K} (p), {@code bias} {@code G} or null. */
    public record Params(int glimpses, int width, double[] weight, double[] bias) {
        double b(int g) { return bias == null ? 0 : bias[g]; }

        /** weight, then bias if any: the same arrays, for perturbing in place. */
        public List<double[]> tensors() {
            List<double[]> t = new ArrayList<>(List.of(weight));
            if (bias != null) t.add(bias);
            return t;
        }
    }

    public static Params params(BanAttention op) {
        return new Params(op.glimpses(), op.width(), op.logits().weightAsDouble(),
                op.logits().hasBias() ? toDouble(op.logits().bias()) : null);
    }

    /** Attention maps and logits, both {@code B × G × N × M}; logits {@code −inf} at padded objects. */
    public record Result(double[] attention, double[] logits) {}

    /** Gradients of xp, yp, the weight p and the bias (null when the layer has none). */
    public record Grads(double[] dxp, double[] dyp, double[] dweight, double[] dbias) {
        /** dxp, dyp, dweight, then dbias if any: the order of {@link BanAttention#gradientNames()}. */
        public List<double[]> tensors() {
            List<double[]> t = new ArrayList<>(List.of(dxp, dyp, dweight));
            if (dbias != null) t.add(dbias);
            return t;
        }
    }

    public static Result forward(BanAttention op, float[] xp, float[] yp, ObjectMask mask, int batch, int objects, int tokens) {
        return forward(params(op), toDouble(xp), toDouble(yp), mask, batch, objects, tokens);
    }

    public static Result forward(Params p, double[] xp, double[] yp, ObjectMask mask, int batch, int objects, int tokens) {
        int g = p.glimpses, nm = objects * tokens;
        double[] att = new double[batch * g * nm], logits = new double[batch * g * nm];
        boolean[] real = real(mask, batch, objects);
        IntStream.range(0, batch).parallel().forEach(b -> {
            for (int gg = 0; gg < g; gg++) {
                int at = (b * g + gg) * nm;
                double[] l = logits(p, xp, yp, real, b, gg, objects, tokens);
                System.arraycopy(l, 0, logits, at, nm);
                System.arraycopy(softmax(l), 0, att, at, nm);
            }
        });
        return new Result(att, logits);
    }

    public static Grads backward(BanAttention op, float[] xp, float[] yp, ObjectMask mask, float[] gradAttention, int batch, int objects,
                                 int tokens) {
        return backward(params(op), toDouble(xp), toDouble(yp), mask, toDouble(gradAttention), batch, objects, tokens);
    }

    public static Grads backward(Params p, double[] xp, double[] yp, ObjectMask mask, double[] gradAttention, int batch, int objects,
                                 int tokens) {
        int g = p.glimpses, k = p.width, nm = objects * tokens;
        double[] dxp = new double[batch * objects * k], dyp = new double[batch * tokens * k];
        double[][] dpSample = new double[batch][];
        boolean[] real = real(mask, batch, objects);
        IntStream.range(0, batch).parallel().forEach(b -> {
            double[] dps = new double[g * k];
            for (int gg = 0; gg < g; gg++) {
                double[] a = softmax(logits(p, xp, yp, real, b, gg, objects, tokens));
                int at = (b * g + gg) * nm;
                double c = 0;
                for (int e = 0; e < nm; e++) if (real[b * objects + e / tokens]) c += a[e] * gradAttention[at + e];
                for (int i = 0; i < objects; i++) {
                    if (!real[b * objects + i]) continue;
                    int xi = (b * objects + i) * k;
                    for (int j = 0; j < tokens; j++) {
                        double dl = a[i * tokens + j] * (gradAttention[at + i * tokens + j] - c);
                        int yj = (b * tokens + j) * k;
                        for (int kk = 0; kk < k; kk++) {
                            double w = p.weight[gg * k + kk];
                            dxp[xi + kk] += w * dl * yp[yj + kk];
                            dyp[yj + kk] += w * dl * xp[xi + kk];
                            dps[gg * k + kk] += dl * xp[xi + kk] * yp[yj + kk];
                        }
                    }
                }
            }
            dpSample[b] = dps;
        });
        double[] dp = new double[g * k];
        for (int b = 0; b < batch; b++) for (int t = 0; t < g * k; t++) dp[t] += dpSample[b][t];
        return new Grads(dxp, dyp, dp, p.bias == null ? null : new double[g]);
    }

    /** One map's logits (N·M, {@code −inf} at padded objects) from the definition. */
    static double[] logits(Params p, double[] xp, double[] yp, boolean[] real, int b, int g, int objects, int tokens) {
        int k = p.width;
        double[] l = new double[objects * tokens];
        for (int i = 0; i < objects; i++) {
            for (int j = 0; j < tokens; j++) {
                if (!real[b * objects + i]) {
                    l[i * tokens + j] = Double.NEGATIVE_INFINITY;
                    continue;
                }
                double s = 0;
                int xi = (b * objects + i) * k, yj = (b * tokens + j) * k;
                for (int kk = 0; kk < k; kk++) s += p.weight[g * k + kk] * xp[xi + kk] * yp[yj + kk];
                l[i * tokens + j] = s + p.b(g);
            }
        }
        return l;
    }

    /** Softmax over the whole map; a map of nothing but {@code −inf} (no real object) gives all zeros. */
    static double[] softmax(double[] l) {
        double m = Double.NEGATIVE_INFINITY;
        for (double v : l) m = Math.max(m, v);
        double[] a = new double[l.length];
        if (m == Double.NEGATIVE_INFINITY) return a;
        double s = 0;
        for (int e = 0; e < l.length; e++) s += a[e] = Math.exp(l[e] - m);
        for (int e = 0; e < l.length; e++) a[e] /= s;
        return a;
    }

    private static boolean[] real(ObjectMask mask, int batch, int objects) {
        boolean[] r = new boolean[batch * objects];
        for (int b = 0; b < batch; b++) for (int i = 0; i < objects; i++) r[b * objects + i] = mask == null || mask.isReal(b, i);
        return r;
    }

    static double[] toDouble(float[] a) {
        double[] r = new double[a.length];
        for (int i = 0; i < a.length; i++) r[i] = a[i];
        return r;
    }
}
