package io.bifuse.reference;

import io.bifuse.Activation;
import io.bifuse.Mlb;
import io.bifuse.Normalization;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.IntStream;

/**
 * The oracle for {@link Mlb}: straight from the definition, in double.
 * <pre>
 *   pu = x·Uᵀ + b_u,  pv = y·Vᵀ + b_v,  h = σ(pu) ⊙ σ(pv),  f = h·Pᵀ + b_p
 *   gh = g·P,  dpu = gh ⊙ σ(pv) ⊙ σ'(pu),  dpv = gh ⊙ σ(pu) ⊙ σ'(pv)
 *   ∂x = dpu·U,  ∂U = dpuᵀ·x,  ∂b_u = Σ_rows dpu   (V, y likewise),   ∂P = gᵀ·h,  ∂b_p = Σ_rows g
 * </pre>
 * With block.bootstrap's options, {@code h} is normalized before P ({@link NormalizationReference}), f
 * goes through σ_out, and the backward starts from {@code g ⊙ σ_out'(f)} and takes {@code gh} back
 * through the normalization.
 * Every sum runs in one fixed order; samples (or, for the weight gradients, weight rows) run in
 * parallel. The steps {@link #hidden} and {@link #output} are public so that tests can round the
 * operands of each GEMM as a reduced-precision GPU mode would.
 */
public final class MlbReference {
    private MlbReference() {}

    /** The op's parameters in double (biases as zeros where a layer has none). */
    public record Weights(int dx, int dy, int joint, int out, Activation activation,
                          double[] u, double[] bu, double[] v, double[] bv, double[] p, double[] bp,
                          Normalization normalization, Activation outputActivation) {
        /** Without block.bootstrap's options (no normalization, no output activation). */
        public Weights(int dx, int dy, int joint, int out, Activation activation, double[] u, double[] bu, double[] v, double[] bv, double[] p, double[] bp) {
            this(dx, dy, joint, out, activation, u, bu, v, bv, p, bp, Normalization.NONE, Activation.NONE);
        }

        public static Weights of(Mlb op) {
            return new Weights(op.dx(), op.dy(), op.joint(), op.out(), op.activation(),
                    op.u().weightAsDouble(), op.u().biasAsDouble(),
                    op.v().weightAsDouble(), op.v().biasAsDouble(),
                    op.p().weightAsDouble(), op.p().biasAsDouble(), op.normalization(), op.outputActivation());
        }
    }

    /** Gradients in double, each in its tensor's layout (zero-bias layers still get their bias gradient). */
    public record Grads(double[] dx, double[] dy, double[] u, double[] bu, double[] v, double[] bv, double[] p, double[] bp) {
        /** The eight tensors in the order of the record's components. */
        public double[][] all() { return new double[][] {dx, dy, u, bu, v, bv, p, bp}; }

        /** The tensors in the order of {@link Mlb#gradientNames()} (a bias gradient only where {@code op}'s layer has a bias). */
        public List<double[]> tensors(Mlb op) {
            List<double[]> t = new ArrayList<>(List.of(dx, dy, u));
            if (op.u().hasBias()) t.add(bu);
            t.add(v);
            if (op.v().hasBias()) t.add(bv);
            t.add(p);
            if (op.p().hasBias()) t.add(bp);
            return t;
        }
    }

    public static double[] forward(Mlb op, float[] x, float[] y, int batch) {
        return forward(Weights.of(op), toDouble(x), toDouble(y), batch);
    }

    /** {@code f = σ_out(normalize(h)·Pᵀ + b_p)} ({@code B × Out}). */
    public static double[] forward(Weights w, double[] x, double[] y, int batch) {
        double[] h = hidden(w, x, y, batch);
        for (int b = 0; b < batch; b++) NormalizationReference.forward(w.normalization, h, b * w.joint, w.joint, h);
        double[] f = output(w, h, batch);
        for (int i = 0; i < f.length; i++) f[i] = w.outputActivation.apply(f[i]);
        return f;
    }

    /** {@code h = σ(x·Uᵀ + b_u) ⊙ σ(y·Vᵀ + b_v)} ({@code B × J}). */
    public static double[] hidden(Weights w, double[] x, double[] y, int batch) {
        int j = w.joint;
        double[] h = new double[batch * j];
        IntStream.range(0, batch).parallel().forEach(b -> {
            double[] au = activated(w.activation, affine(x, b, w.dx, w.u, w.bu, j));
            double[] av = activated(w.activation, affine(y, b, w.dy, w.v, w.bv, j));
            for (int k = 0; k < j; k++) h[b * j + k] = au[k] * av[k];
        });
        return h;
    }

    /** {@code f = h·Pᵀ + b_p} ({@code B × Out}). */
    public static double[] output(Weights w, double[] h, int batch) {
        double[] f = new double[batch * w.out];
        IntStream.range(0, batch).parallel().forEach(b -> System.arraycopy(affine(h, b, w.joint, w.p, w.bp, w.out), 0, f, b * w.out, w.out));
        return f;
    }

    public static Grads backward(Mlb op, float[] x, float[] y, float[] gradOut, int batch) {
        return backward(Weights.of(op), toDouble(x), toDouble(y), toDouble(gradOut), batch);
    }

    /** Every gradient given {@code g = ∂L/∂f} ({@code B × Out}). */
    public static Grads backward(Weights w, double[] x, double[] y, double[] g, int batch) {
        int dx = w.dx, dy = w.dy, j = w.joint, out = w.out;
        Activation act = w.activation;
        double[] hn = new double[batch * j], go = new double[batch * out], dpu = new double[batch * j], dpv = new double[batch * j];
        double[] gx = new double[batch * dx], gy = new double[batch * dy];
        IntStream.range(0, batch).parallel().forEach(b -> {
            double[] au = activated(act, affine(x, b, dx, w.u, w.bu, j));
            double[] av = activated(act, affine(y, b, dy, w.v, w.bv, j));
            double[] h = new double[j], hr = new double[j];
            for (int k = 0; k < j; k++) h[k] = au[k] * av[k];
            NormalizationReference.forward(w.normalization, h, 0, j, hr);
            System.arraycopy(hr, 0, hn, b * j, j);
            double[] f = affine(hr, 0, j, w.p, w.bp, out); // go = g ⊙ σ_out'(f)
            for (int o = 0; o < out; o++) go[b * out + o] = g[b * out + o] * w.outputActivation.derivativeFromOutput(w.outputActivation.apply(f[o]));
            double[] ghn = new double[j], gh = new double[j]; // ghn = go·P: row b of go times P (out × J), then back through the normalization
            for (int o = 0; o < out; o++) {
                double gv = go[b * out + o];
                for (int k = 0; k < j; k++) ghn[k] += gv * w.p[o * j + k];
            }
            NormalizationReference.backward(w.normalization, h, ghn, 0, j, gh);
            for (int k = 0; k < j; k++) {
                dpu[b * j + k] = gh[k] * av[k] * act.derivativeFromOutput(au[k]);
                dpv[b * j + k] = gh[k] * au[k] * act.derivativeFromOutput(av[k]);
            }
            for (int k = 0; k < j; k++) { // ∂x = dpu·U, ∂y = dpv·V
                double cu = dpu[b * j + k], cv = dpv[b * j + k];
                for (int i = 0; i < dx; i++) gx[b * dx + i] += cu * w.u[k * dx + i];
                for (int i = 0; i < dy; i++) gy[b * dy + i] += cv * w.v[k * dy + i];
            }
        });
        double[] gu = outerSum(dpu, x, batch, j, dx), gv = outerSum(dpv, y, batch, j, dy), gp = outerSum(go, hn, batch, out, j);
        return new Grads(gx, gy, gu, columnSums(dpu, batch, j), gv, columnSums(dpv, batch, j), gp, columnSums(go, batch, out));
    }

    /** Row {@code b} of {@code in} ({@code cols} wide) times {@code wᵀ} ({@code w} is {@code rows × cols}) plus {@code bias}. */
    static double[] affine(double[] in, int b, int cols, double[] w, double[] bias, int rows) {
        double[] r = new double[rows];
        for (int o = 0; o < rows; o++) {
            double acc = bias[o];
            for (int i = 0; i < cols; i++) acc += in[b * cols + i] * w[o * cols + i];
            r[o] = acc;
        }
        return r;
    }

    private static double[] activated(Activation act, double[] p) {
        for (int k = 0; k < p.length; k++) p[k] = act.apply(p[k]);
        return p;
    }

    /** {@code Σ_b a[b, :]ᵀ ⊗ c[b, :]}: {@code aRows × cCols}, i.e. {@code aᵀ·c}. */
    static double[] outerSum(double[] a, double[] c, int batch, int aCols, int cCols) {
        double[] r = new double[aCols * cCols];
        IntStream.range(0, aCols).parallel().forEach(o -> {
            for (int b = 0; b < batch; b++) {
                double s = a[b * aCols + o];
                for (int i = 0; i < cCols; i++) r[o * cCols + i] += s * c[b * cCols + i];
            }
        });
        return r;
    }

    static double[] columnSums(double[] a, int batch, int cols) {
        double[] r = new double[cols];
        for (int b = 0; b < batch; b++) for (int k = 0; k < cols; k++) r[k] += a[b * cols + k];
        return r;
    }

    public static double[] toDouble(float[] a) {
        double[] r = new double[a.length];
        for (int i = 0; i < a.length; i++) r[i] = a[i];
        return r;
    }
}
