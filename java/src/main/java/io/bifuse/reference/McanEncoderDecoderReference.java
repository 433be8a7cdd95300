package io.bifuse.reference;

import io.bifuse.LayerNorm;
import io.bifuse.McanEncoderDecoder;
import io.bifuse.ObjectMask;
import io.bifuse.reference.MlbAttentionReference.Layer;
import io.bifuse.reference.SelfAttentionUnitReference.Norm;
import java.util.ArrayList;
import java.util.List;

/**
 * The oracle for {@link McanEncoderDecoder}: the encoder and decoder layers by {@link SelfAttentionUnitReference}
 * and {@link GuidedAttentionUnitReference}, the reductions and the final LayerNorm here, in double, the backward by
 * the chain rule: the final norm's, each reduction's (below), the decoder layers from the last, each adding its
 * guiding gradient to {@code dx_n}, then the encoder layers from the last. A reduction ({@link Flatten}):
 * <pre>
 *   r_l = relu(W1 z_l + b1),  a_l = W2 r_l + b2 (G),  α_g = softmax over l of a_{l,g} (padded rows −1e9),  p_g = Σ_l α_{l,g} z_l
 *   out = Wm [p_g]_g + bm;   dp = Wmᵀ g;  dz_l = Σ_g α_{l,g} dp_g + W1ᵀ dr_l;  da_{l,g} = α_{l,g} (dp_g·z_l − Σ_t α_{t,g} dp_g·z_t) (0 when padded)
 *   dr_l = W2ᵀ da_l ⊙ [r_l > 0]
 * </pre>
 * The logits' bias {@code b2} shifts a glimpse's logits over the rows alike, which the softmax cancels: its
 * gradient is zero in exact arithmetic and returned as exact zeros (so is every attention's key bias gradient).
 */
public final class McanEncoderDecoderReference {
    private McanEncoderDecoderReference() {}

    /** One reduction's layers in double. */
    public record Flatten(Layer mlpHidden, Layer mlpOut, Layer merge) {
        static Flatten of(McanEncoderDecoder.Flatten f) { return new Flatten(Layer.of(f.mlpHidden()), Layer.of(f.mlpOut()), Layer.of(f.merge())); }

        List<Layer> layers() { return List.of(mlpHidden, mlpOut, merge); }
    }

    public record Params(List<SelfAttentionUnitReference.Params> encoder, List<GuidedAttentionUnitReference.Params> decoder, Flatten questionFlatten,
                         Flatten imageFlatten, Norm norm, LayerNorm ln) {
        /** Every parameter tensor in the order of {@link McanEncoderDecoder#stateDictNames()}: the same arrays, for perturbing in place. */
        public List<double[]> tensors() {
            List<double[]> t = new ArrayList<>();
            for (SelfAttentionUnitReference.Params e : encoder) t.addAll(e.tensors());
            for (GuidedAttentionUnitReference.Params d : decoder) t.addAll(d.tensors());
            for (Flatten f : List.of(questionFlatten, imageFlatten)) {
                for (Layer l : f.layers()) {
                    t.add(l.weight());
                    if (l.bias() != null) t.add(l.bias());
                }
            }
            t.addAll(List.of(norm.gain(), norm.bias()));
            return t;
        }
    }

    public static Params params(McanEncoderDecoder op) {
        List<SelfAttentionUnitReference.Params> enc = new ArrayList<>();
        List<GuidedAttentionUnitReference.Params> dec = new ArrayList<>();
        for (var u : op.encoder()) enc.add(SelfAttentionUnitReference.params(u));
        for (var u : op.decoder()) dec.add(GuidedAttentionUnitReference.params(u));
        McanEncoderDecoder.Weights w = op.weights();
        return new Params(enc, dec, Flatten.of(w.questionFlatten()), Flatten.of(w.imageFlatten()), Norm.of(w.norm()), op.norm());
    }

    public static double[] forward(McanEncoderDecoder op, float[] q, ObjectMask qMask, float[] v, ObjectMask vMask, int batch, int lq, int lv) {
        return forward(params(op), MlbAttentionReference.toDouble(q), MultiHeadAttentionReference.real(qMask, batch, lq), MlbAttentionReference.toDouble(v),
                MultiHeadAttentionReference.real(vMask, batch, lv), batch, lq, lv);
    }

    public static double[] forward(Params p, double[] q, boolean[] qr, double[] v, boolean[] vr, int batch, int lq, int lv) {
        return new Pass(p, q, qr, v, vr, batch, lq, lv).out;
    }

    /** dq, dv, then {@link Params#tensors()}'s gradients. */
    public static List<double[]> backward(McanEncoderDecoder op, float[] q, ObjectMask qMask, float[] v, ObjectMask vMask, float[] gradOut, int batch,
                                          int lq, int lv) {
        return backward(params(op), MlbAttentionReference.toDouble(q), MultiHeadAttentionReference.real(qMask, batch, lq), MlbAttentionReference.toDouble(v),
                MultiHeadAttentionReference.real(vMask, batch, lv), MlbAttentionReference.toDouble(gradOut), batch, lq, lv);
    }

    public static List<double[]> backward(Params p, double[] q, boolean[] qr, double[] v, boolean[] vr, double[] g, int batch, int lq, int lv) {
        Pass s = new Pass(p, q, qr, v, vr, batch, lq, lv);
        int n = p.encoder().size(), o = p.questionFlatten().merge().out();
        double[] dg = new double[o], db = new double[o];
        double[] ds = SelfAttentionUnitReference.normBackward(p.ln(), p.norm(), s.sum, g, batch, o, dg, db);
        List<double[]> fqGrads = new ArrayList<>(), fvGrads = new ArrayList<>();
        double[] dxn = flattenBackward(p.questionFlatten(), s.x.get(n), qr, ds, batch, lq, fqGrads);
        double[] dy = flattenBackward(p.imageFlatten(), s.y.get(n), vr, ds, batch, lv, fvGrads);
        List<List<double[]>> decGrads = new ArrayList<>();
        for (int i = n - 1; i >= 0; i--) {
            List<double[]> gi = GuidedAttentionUnitReference.backward(p.decoder().get(i), s.y.get(i), vr, s.x.get(n), qr, dy, batch, lv, lq);
            dy = gi.get(0);
            for (int k = 0; k < dxn.length; k++) dxn[k] += gi.get(1)[k];
            decGrads.add(0, gi.subList(2, gi.size()));
        }
        List<List<double[]>> encGrads = new ArrayList<>();
        double[] dx = dxn;
        for (int i = n - 1; i >= 0; i--) {
            List<double[]> gi = SelfAttentionUnitReference.backward(p.encoder().get(i), s.x.get(i), qr, dx, batch, lq);
            dx = gi.get(0);
            encGrads.add(0, gi.subList(1, gi.size()));
        }
        List<double[]> out = new ArrayList<>(List.of(dx, dy));
        encGrads.forEach(out::addAll);
        decGrads.forEach(out::addAll);
        out.addAll(fqGrads);
        out.addAll(fvGrads);
        out.addAll(List.of(dg, db));
        return out;
    }

    /** x_0..x_n, y_0..y_n, the two reductions, their sum and the output. */
    private static final class Pass {
        final List<double[]> x = new ArrayList<>(), y = new ArrayList<>();
        final double[] sum, out;

        Pass(Params p, double[] q, boolean[] qr, double[] v, boolean[] vr, int batch, int lq, int lv) {
            int n = p.encoder().size(), o = p.questionFlatten().merge().out();
            x.add(q);
            for (int i = 0; i < n; i++) x.add(SelfAttentionUnitReference.forward(p.encoder().get(i), x.get(i), qr, batch, lq));
            y.add(v);
            for (int i = 0; i < n; i++) y.add(GuidedAttentionUnitReference.forward(p.decoder().get(i), y.get(i), vr, x.get(n), qr, batch, lv, lq));
            double[] fq = flatten(p.questionFlatten(), x.get(n), qr, batch, lq), fv = flatten(p.imageFlatten(), y.get(n), vr, batch, lv);
            sum = new double[batch * o];
            for (int i = 0; i < sum.length; i++) sum[i] = fq[i] + fv[i];
            out = SelfAttentionUnitReference.normForward(p.ln(), p.norm(), sum, batch, o);
        }
    }

    /** A reduction's per-sample intermediates: r (L × M), α (G × L) and the pooled p (G·H). */
    private record Reduced(double[] r, double[][] alpha, double[] pooled) {}

    private static Reduced reduce(Flatten f, double[] z, boolean[] real, int b, int l) {
        int h = f.mlpHidden().in(), m = f.mlpHidden().out(), gs = f.mlpOut().out();
        double[] r = new double[l * m];
        double[][] logit = new double[gs][l];
        for (int t = 0; t < l; t++) {
            double[] hid = f.mlpHidden().apply(z, (b * l + t) * h);
            for (int j = 0; j < m; j++) r[t * m + j] = Math.max(0, hid[j]);
            double[] a = f.mlpOut().apply(r, t * m);
            for (int g = 0; g < gs; g++) logit[g][t] = real[b * l + t] ? a[g] : io.bifuse.MultiHeadAttention.MASKED_SCORE;
        }
        double[][] alpha = CellAttention.softmax(logit);
        double[][] pool = CellAttention.pool(alpha, z, b, l, h);
        double[] pooled = new double[gs * h];
        for (int g = 0; g < gs; g++) System.arraycopy(pool[g], 0, pooled, g * h, h);
        return new Reduced(r, alpha, pooled);
    }

    static double[] flatten(Flatten f, double[] z, boolean[] real, int batch, int l) {
        int o = f.merge().out();
        double[] out = new double[batch * o];
        for (int b = 0; b < batch; b++) System.arraycopy(f.merge().apply(reduce(f, z, real, b, l).pooled(), 0), 0, out, b * o, o);
        return out;
    }

    /** dz of a reduction given {@code g} ({@code B × O}); its layers' gradients (weight, bias per layer) appended to {@code grads}. */
    static double[] flattenBackward(Flatten f, double[] z, boolean[] real, double[] g, int batch, int l, List<double[]> grads) {
        int h = f.mlpHidden().in(), m = f.mlpHidden().out(), gs = f.mlpOut().out(), o = f.merge().out();
        double[] dz = new double[batch * l * h];
        double[] dr = new double[batch * l * m], da = new double[batch * l * gs], r = new double[batch * l * m], pooled = new double[batch * gs * h];
        for (int b = 0; b < batch; b++) {
            Reduced red = reduce(f, z, real, b, l);
            System.arraycopy(red.r(), 0, r, b * l * m, l * m);
            System.arraycopy(red.pooled(), 0, pooled, b * gs * h, gs * h);
            double[] dp = MlbAttentionReference.transposed(f.merge(), g, b * o);
            double[][] dpg = new double[gs][h];
            for (int gg = 0; gg < gs; gg++) System.arraycopy(dp, gg * h, dpg[gg], 0, h);
            CellAttention.backward(red.alpha(), dpg, z, b, l, h, dz, da); // the pooling's dz, and da by the softmax Jacobian
            for (int t = 0; t < l; t++) {
                int row = b * l + t;
                if (!real[row]) java.util.Arrays.fill(da, row * gs, (row + 1) * gs, 0); // a masked logit is a constant
                double[] u = MlbAttentionReference.transposed(f.mlpOut(), da, row * gs);
                for (int j = 0; j < m; j++) dr[row * m + j] = red.r()[t * m + j] > 0 ? u[j] : 0;
                double[] w = MlbAttentionReference.transposed(f.mlpHidden(), dr, row * m);
                for (int c = 0; c < h; c++) dz[row * h + c] += w[c];
            }
        }
        List<double[]> par = new ArrayList<>();
        for (Layer lay : f.layers()) {
            par.add(new double[lay.weight().length]);
            if (lay.bias() != null) par.add(new double[lay.out()]);
        }
        int[] slot = MlbAttentionReference.slots(f.layers());
        MlbAttentionReference.outer(f.mlpHidden(), dr, m, 0, z, h, 0, batch * l, par, slot[0]);
        MlbAttentionReference.outer(f.mlpOut(), da, gs, 0, r, m, 0, batch * l, par, slot[1]);
        MlbAttentionReference.outer(f.merge(), g, o, 0, pooled, gs * h, 0, batch, par, slot[2]);
        if (f.mlpOut().bias() != null) java.util.Arrays.fill(par.get(slot[1] + 1), 0); // exactly zero: see the class comment
        grads.addAll(par);
        return dz;
    }
}
