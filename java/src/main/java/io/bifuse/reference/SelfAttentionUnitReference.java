package io.bifuse.reference;

import io.bifuse.LayerNorm;
import io.bifuse.ObjectMask;
import io.bifuse.SelfAttentionUnit;
import io.bifuse.reference.MlbAttentionReference.Layer;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.IntStream;

/**
 * The oracle for {@link SelfAttentionUnit}: the definition in double, the attention step by
 * {@link MultiHeadAttentionReference}, and the backward by the chain rule, step by step:
 * <pre>
 *   out = LN2(s2),  s2 = y + f,  f = W2 r + b2,  r = relu(W1 y + b1),  y = LN1(s1),  s1 = x + MHA(x)
 *   ds2 = LN2ᵀ(g);  dW2 = Σ ds2 rᵀ;  dr = W2ᵀ ds2 ⊙ [r > 0];  dW1 = Σ dr yᵀ;  dy = ds2 + W1ᵀ dr
 *   ds1 = LN1ᵀ(dy);  dx = ds1 + (dQuery + dKey + dValue of MHA's backward given ds1)
 * </pre>
 * and {@link #normBackward} for a LayerNorm of either variant. The parameters are taken in double
 * ({@link Params}) so that tests can perturb any of them by a float64 step for finite differences.
 */
public final class SelfAttentionUnitReference {
    private SelfAttentionUnitReference() {}

    /** One normalization's gain and bias in double. */
    public record Norm(double[] gain, double[] bias) {
        static Norm of(LayerNorm.Affine a) { return new Norm(MlbAttentionReference.toDouble(a.gain()), MlbAttentionReference.toDouble(a.bias())); }
    }

    /** The unit's parameters in double, in the order of {@link SelfAttentionUnit#gradientNames()} (after dx). */
    public record Params(MultiHeadAttentionReference.Params attention, Layer ffnHidden, Layer ffnOut, Norm norm1, Norm norm2, LayerNorm norm) {
        int hidden() { return attention.hidden(); }

        public List<double[]> tensors() {
            List<double[]> t = new ArrayList<>(attention.tensors());
            for (Layer l : List.of(ffnHidden, ffnOut)) {
                t.add(l.weight());
                if (l.bias() != null) t.add(l.bias());
            }
            t.addAll(List.of(norm1.gain, norm1.bias, norm2.gain, norm2.bias));
            return t;
        }
    }

    public static Params params(SelfAttentionUnit op) {
        SelfAttentionUnit.Weights w = op.weights();
        return new Params(MultiHeadAttentionReference.params(op.attention()), Layer.of(w.ffnHidden()), Layer.of(w.ffnOut()), Norm.of(w.norm1()),
                Norm.of(w.norm2()), op.norm());
    }

    public static double[] forward(SelfAttentionUnit op, float[] x, ObjectMask mask, int batch, int tokens) {
        return forward(params(op), MlbAttentionReference.toDouble(x), MultiHeadAttentionReference.real(mask, batch, tokens), batch, tokens);
    }

    public static double[] forward(Params p, double[] x, boolean[] real, int batch, int tokens) {
        return new Pass(p, x, real, batch, tokens).out;
    }

    /** dx, then the parameters' gradients in {@link Params#tensors()}'s order. */
    public static List<double[]> backward(SelfAttentionUnit op, float[] x, ObjectMask mask, float[] gradOut, int batch, int tokens) {
        return backward(params(op), MlbAttentionReference.toDouble(x), MultiHeadAttentionReference.real(mask, batch, tokens),
                MlbAttentionReference.toDouble(gradOut), batch, tokens);
    }

    public static List<double[]> backward(Params p, double[] x, boolean[] real, double[] g, int batch, int tokens) {
        int h = p.hidden(), f = p.ffnHidden().out(), rows = batch * tokens;
        Pass s = new Pass(p, x, real, batch, tokens);
        double[] dn2g = new double[h], dn2b = new double[h], dn1g = new double[h], dn1b = new double[h];
        double[] ds2 = normBackward(p.norm(), p.norm2(), s.s2, g, rows, h, dn2g, dn2b);
        double[] dr = new double[rows * f], dy = ds2.clone();
        IntStream.range(0, rows).parallel().forEach(i -> {
            double[] t = MlbAttentionReference.transposed(p.ffnOut(), ds2, i * h);
            for (int j = 0; j < f; j++) dr[i * f + j] = s.r[i * f + j] > 0 ? t[j] : 0;
            double[] u = MlbAttentionReference.transposed(p.ffnHidden(), dr, i * f);
            for (int c = 0; c < h; c++) dy[i * h + c] += u[c];
        });
        double[] ds1 = normBackward(p.norm(), p.norm1(), s.s1, dy, rows, h, dn1g, dn1b);
        MultiHeadAttentionReference.Grads ga = MultiHeadAttentionReference.backward(p.attention(), x, x, x, real, ds1, batch, tokens, tokens);
        double[] dx = new double[rows * h];
        for (int i = 0; i < dx.length; i++) dx[i] = ds1[i] + ga.dQuery()[i] + ga.dKey()[i] + ga.dValue()[i];
        List<double[]> out = new ArrayList<>(List.of(dx));
        out.addAll(ga.parameters());
        List<double[]> ffn = new ArrayList<>();
        for (Layer l : List.of(p.ffnHidden(), p.ffnOut())) {
            ffn.add(new double[l.weight().length]);
            if (l.bias() != null) ffn.add(new double[l.out()]);
        }
        int[] slot = MlbAttentionReference.slots(List.of(p.ffnHidden(), p.ffnOut()));
        MlbAttentionReference.outer(p.ffnHidden(), dr, f, 0, s.y, h, 0, rows, ffn, slot[0]);
        MlbAttentionReference.outer(p.ffnOut(), ds2, h, 0, s.r, f, 0, rows, ffn, slot[1]);
        out.addAll(ffn);
        out.addAll(List.of(dn1g, dn1b, dn2g, dn2b));
        return out;
    }

    /** Every intermediate of a forward: s1 = x + MHA(x), y = LN1(s1), r = relu(W1 y + b1), s2 = y + W2 r + b2, out = LN2(s2). */
    private static final class Pass {
        final double[] s1, y, r, s2, out;

        Pass(Params p, double[] x, boolean[] real, int batch, int tokens) {
            int h = p.hidden(), f = p.ffnHidden().out(), rows = batch * tokens;
            double[] a = MultiHeadAttentionReference.forward(p.attention(), x, x, x, real, batch, tokens, tokens).out();
            s1 = new double[rows * h];
            for (int i = 0; i < s1.length; i++) s1[i] = x[i] + a[i];
            y = normForward(p.norm(), p.norm1(), s1, rows, h);
            r = new double[rows * f];
            s2 = new double[rows * h];
            IntStream.range(0, rows).parallel().forEach(i -> {
                double[] hid = p.ffnHidden().apply(y, i * h);
                for (int j = 0; j < f; j++) r[i * f + j] = Math.max(0, hid[j]);
                double[] o = p.ffnOut().apply(r, i * f);
                for (int c = 0; c < h; c++) s2[i * h + c] = y[i * h + c] + o[c];
            });
            out = normForward(p.norm(), p.norm2(), s2, rows, h);
        }
    }

    /** The normalization of each of {@code rows} rows of width {@code n}: {@code a ⊙ (x − μ)/s + b}, s by the variant. */
    public static double[] normForward(LayerNorm ln, Norm a, double[] x, int rows, int n) {
        double[] y = new double[rows * n];
        for (int i = 0; i < rows; i++) {
            double mu = mean(x, i * n, n), s = scale(ln, x, i * n, n, mu);
            for (int c = 0; c < n; c++) y[i * n + c] = a.gain[c] * (x[i * n + c] - mu) / s + a.bias[c];
        }
        return y;
    }

    /**
     * The gradient with respect to the rows {@code x} of {@link #normForward} given {@code gy}, and
     * ({@code +=}) the gain's and bias's. With {@code c = x − μ}, {@code ĝ = gy ⊙ a} and the scale {@code s(c)}:
     * {@code gc = ĝ/s − (Σ ĝ ⊙ c) c ∂s/∂c ... }, written as {@code gc_i = ĝ_i/s − (Σ_j ĝ_j c_j)/s² · k c_i} with
     * {@code k = 1/((n−1) σ)} (MCAN: {@code s = σ + eps}) or {@code k = 1/(n s)} (PyTorch: {@code s = sqrt(v + eps)});
     * then {@code gx = gc − mean(gc)} (the mean's Jacobian).
     */
    public static double[] normBackward(LayerNorm ln, Norm a, double[] x, double[] gy, int rows, int n, double[] dGain, double[] dBias) {
        double[] gx = new double[rows * n];
        for (int i = 0; i < rows; i++) {
            int o = i * n;
            double mu = mean(x, o, n), s = scale(ln, x, o, n, mu), dot = 0;
            for (int c = 0; c < n; c++) {
                double xc = x[o + c] - mu;
                dot += gy[o + c] * a.gain[c] * xc;
                dGain[c] += gy[o + c] * xc / s;
                dBias[c] += gy[o + c];
            }
            double k = ln.variant() == LayerNorm.Variant.MCAN ? 1 / ((n - 1) * (s - ln.eps())) : 1 / (n * s);
            double gcMean = 0;
            double[] gc = new double[n];
            for (int c = 0; c < n; c++) {
                gc[c] = gy[o + c] * a.gain[c] / s - dot / (s * s) * k * (x[o + c] - mu);
                gcMean += gc[c];
            }
            gcMean /= n;
            for (int c = 0; c < n; c++) gx[o + c] = gc[c] - gcMean;
        }
        return gx;
    }

    private static double mean(double[] x, int o, int n) {
        double m = 0;
        for (int c = 0; c < n; c++) m += x[o + c];
        return m / n;
    }

    /** MCAN: {@code σ + eps} with the unbiased σ; PyTorch: {@code sqrt(v + eps)} with the biased variance. */
    private static double scale(LayerNorm ln, double[] x, int o, int n, double mu) {
        double ss = 0;
        for (int c = 0; c < n; c++) ss += (x[o + c] - mu) * (x[o + c] - mu);
        return ln.variant() == LayerNorm.Variant.MCAN ? Math.sqrt(ss / (n - 1)) + ln.eps() : Math.sqrt(ss / n + ln.eps());
    }
}
