package io.bifuse.reference;

import io.bifuse.GuidedAttentionUnit;
import io.bifuse.LayerNorm;
import io.bifuse.ObjectMask;
import io.bifuse.reference.MlbAttentionReference.Layer;
import io.bifuse.reference.SelfAttentionUnitReference.Norm;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.IntStream;

/**
 * The oracle for {@link GuidedAttentionUnit}: the definition in double, both attentions by
 * {@link MultiHeadAttentionReference} and the normalizations by {@link SelfAttentionUnitReference}, the backward by
 * the chain rule:
 * <pre>
 *   s1 = x + MHA1(x, x, x);  x1 = LN1(s1);  s2 = x1 + MHA2(x1, y, y);  x2 = LN2(s2);  s3 = x2 + FFN(x2);  out = LN3(s3)
 *   ds3 = LN3ᵀ(g);  dx2 = ds3 + FFNᵀ(ds3);  ds2 = LN2ᵀ(dx2);  (dq2, dk2, dv2) = MHA2ᵀ(ds2);  dy = dk2 + dv2
 *   dx1 = ds2 + dq2;  ds1 = LN1ᵀ(dx1);  dx = ds1 + (dq1 + dk1 + dv1 of MHA1ᵀ(ds1))
 * </pre>
 * Parameters in double ({@link Params}) so that tests can perturb any of them by a float64 step.
 */
public final class GuidedAttentionUnitReference {
    private GuidedAttentionUnitReference() {}

    /** The unit's parameters in double, in the order of {@link GuidedAttentionUnit#gradientNames()} (after dx, dy). */
    public record Params(MultiHeadAttentionReference.Params selfAttention, MultiHeadAttentionReference.Params guidedAttention, Layer ffnHidden,
                         Layer ffnOut, Norm norm1, Norm norm2, Norm norm3, LayerNorm norm) {
        int hidden() { return selfAttention.hidden(); }

        public List<double[]> tensors() {
            List<double[]> t = new ArrayList<>(selfAttention.tensors());
            t.addAll(guidedAttention.tensors());
            for (Layer l : List.of(ffnHidden, ffnOut)) {
                t.add(l.weight());
                if (l.bias() != null) t.add(l.bias());
            }
            for (Norm n : List.of(norm1, norm2, norm3)) t.addAll(List.of(n.gain(), n.bias()));
            return t;
        }
    }

    public static Params params(GuidedAttentionUnit op) {
        GuidedAttentionUnit.Weights w = op.weights();
        return new Params(MultiHeadAttentionReference.params(op.selfAttention()), MultiHeadAttentionReference.params(op.guidedAttention()),
                Layer.of(w.ffnHidden()), Layer.of(w.ffnOut()), Norm.of(w.norm1()), Norm.of(w.norm2()), Norm.of(w.norm3()), op.norm());
    }

    public static double[] forward(GuidedAttentionUnit op, float[] x, ObjectMask xMask, float[] y, ObjectMask yMask, int batch, int lx, int ly) {
        return forward(params(op), MlbAttentionReference.toDouble(x), MultiHeadAttentionReference.real(xMask, batch, lx), MlbAttentionReference.toDouble(y),
                MultiHeadAttentionReference.real(yMask, batch, ly), batch, lx, ly);
    }

    public static double[] forward(Params p, double[] x, boolean[] xr, double[] y, boolean[] yr, int batch, int lx, int ly) {
        return new Pass(p, x, xr, y, yr, batch, lx, ly).out;
    }

    /** dx, dy, then the parameters' gradients in {@link Params#tensors()}'s order. */
    public static List<double[]> backward(GuidedAttentionUnit op, float[] x, ObjectMask xMask, float[] y, ObjectMask yMask, float[] gradOut, int batch,
                                          int lx, int ly) {
        return backward(params(op), MlbAttentionReference.toDouble(x), MultiHeadAttentionReference.real(xMask, batch, lx), MlbAttentionReference.toDouble(y),
                MultiHeadAttentionReference.real(yMask, batch, ly), MlbAttentionReference.toDouble(gradOut), batch, lx, ly);
    }

    public static List<double[]> backward(Params p, double[] x, boolean[] xr, double[] y, boolean[] yr, double[] g, int batch, int lx, int ly) {
        int h = p.hidden(), f = p.ffnHidden().out(), rows = batch * lx;
        Pass s = new Pass(p, x, xr, y, yr, batch, lx, ly);
        double[][] dn = new double[6][h];
        double[] ds3 = SelfAttentionUnitReference.normBackward(p.norm(), p.norm3(), s.s3, g, rows, h, dn[4], dn[5]);
        double[] dr = new double[rows * f], dx2 = ds3.clone();
        IntStream.range(0, rows).parallel().forEach(i -> {
            double[] t = MlbAttentionReference.transposed(p.ffnOut(), ds3, i * h);
            for (int j = 0; j < f; j++) dr[i * f + j] = s.r[i * f + j] > 0 ? t[j] : 0;
            double[] u = MlbAttentionReference.transposed(p.ffnHidden(), dr, i * f);
            for (int c = 0; c < h; c++) dx2[i * h + c] += u[c];
        });
        double[] ds2 = SelfAttentionUnitReference.normBackward(p.norm(), p.norm2(), s.s2, dx2, rows, h, dn[2], dn[3]);
        MultiHeadAttentionReference.Grads g2 = MultiHeadAttentionReference.backward(p.guidedAttention(), s.x1, y, y, yr, ds2, batch, lx, ly);
        double[] dx1 = new double[rows * h], dy = new double[batch * ly * h];
        for (int i = 0; i < dx1.length; i++) dx1[i] = ds2[i] + g2.dQuery()[i];
        for (int i = 0; i < dy.length; i++) dy[i] = g2.dKey()[i] + g2.dValue()[i];
        double[] ds1 = SelfAttentionUnitReference.normBackward(p.norm(), p.norm1(), s.s1, dx1, rows, h, dn[0], dn[1]);
        MultiHeadAttentionReference.Grads g1 = MultiHeadAttentionReference.backward(p.selfAttention(), x, x, x, xr, ds1, batch, lx, lx);
        double[] dx = new double[rows * h];
        for (int i = 0; i < dx.length; i++) dx[i] = ds1[i] + g1.dQuery()[i] + g1.dKey()[i] + g1.dValue()[i];
        List<double[]> out = new ArrayList<>(List.of(dx, dy));
        out.addAll(g1.parameters());
        out.addAll(g2.parameters());
        List<double[]> ffn = new ArrayList<>();
        for (Layer l : List.of(p.ffnHidden(), p.ffnOut())) {
            ffn.add(new double[l.weight().length]);
            if (l.bias() != null) ffn.add(new double[l.out()]);
        }
        int[] slot = MlbAttentionReference.slots(List.of(p.ffnHidden(), p.ffnOut()));
        MlbAttentionReference.outer(p.ffnHidden(), dr, f, 0, s.x2, h, 0, rows, ffn, slot[0]);
        MlbAttentionReference.outer(p.ffnOut(), ds3, h, 0, s.r, f, 0, rows, ffn, slot[1]);
        out.addAll(ffn);
        out.addAll(List.of(dn));
        return out;
    }

    private static final class Pass {
        final double[] s1, x1, s2, x2, r, s3, out;

        Pass(Params p, double[] x, boolean[] xr, double[] y, boolean[] yr, int batch, int lx, int ly) {
            int h = p.hidden(), f = p.ffnHidden().out(), rows = batch * lx;
            double[] a1 = MultiHeadAttentionReference.forward(p.selfAttention(), x, x, x, xr, batch, lx, lx).out();
            s1 = add(x, a1);
            x1 = SelfAttentionUnitReference.normForward(p.norm(), p.norm1(), s1, rows, h);
            double[] a2 = MultiHeadAttentionReference.forward(p.guidedAttention(), x1, y, y, yr, batch, lx, ly).out();
            s2 = add(x1, a2);
            x2 = SelfAttentionUnitReference.normForward(p.norm(), p.norm2(), s2, rows, h);
            r = new double[rows * f];
            s3 = new double[rows * h];
            IntStream.range(0, rows).parallel().forEach(i -> {
                double[] hid = p.ffnHidden().apply(x2, i * h);
                for (int j = 0; j < f; j++) r[i * f + j] = Math.max(0, hid[j]);
                double[] o = p.ffnOut().apply(r, i * f);
                for (int c = 0; c < h; c++) s3[i * h + c] = x2[i * h + c] + o[c];
            });
            out = SelfAttentionUnitReference.normForward(p.norm(), p.norm3(), s3, rows, h);
        }

        private static double[] add(double[] a, double[] b) {
            double[] s = new double[a.length];
            for (int i = 0; i < a.length; i++) s[i] = a[i] + b[i];
            return s;
        }
    }
}
