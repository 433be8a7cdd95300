package io.bifuse.reference;

import io.bifuse.Linear;
import io.bifuse.Mutan;
import io.bifuse.Normalization;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.IntStream;

/**
 * The oracle for {@link Mutan}: its definition (the descriptor's javadoc) in double, every sum in one
 * fixed order. Samples run in parallel; each weight gradient is a sum over the samples in order, one
 * weight row per task ({@link MlbReference}'s helpers).
 */
public final class MutanReference {
    private MutanReference() {}

    /** Every intermediate of one batch: x̃, ỹ (B × M), p, q (B × R·M), z, ẑ (B × M), and the output. */
    record Pass(double[] xt, double[] yt, double[] p, double[] q, double[] z, double[] zh, double[] out) {}

    /** Gradients in double, in the order and layout of {@link Mutan#gradientNames()}. */
    public record Grads(List<double[]> tensors) {
        public double[] dx() { return tensors.get(0); }
        public double[] dy() { return tensors.get(1); }
    }

    public static double[] forward(Mutan op, float[] x, float[] y, int batch) {
        op.checkInputs(x, y, batch);
        return pass(op, MlbReference.toDouble(x), MlbReference.toDouble(y), batch).out;
    }

    /** {@code f} given float64 inputs (a fixture's, exactly): B × Out. */
    public static double[] forward(Mutan op, double[] x, double[] y, int batch) {
        return pass(op, x, y, batch).out;
    }

    static Pass pass(Mutan op, double[] x, double[] y, int batch) {
        int m = op.mmDim(), rm = op.rank() * m, out = op.out(), dx = op.dx(), dy = op.dy();
        L l0 = L.of(op.linear0()), l1 = L.of(op.linear1()), m0 = L.of(op.mergeLinear0()), m1 = L.of(op.mergeLinear1()), lo = L.of(op.linearOut());
        Pass p = new Pass(new double[batch * m], new double[batch * m], new double[batch * rm], new double[batch * rm], new double[batch * m],
                new double[batch * m], new double[batch * out]);
        IntStream.range(0, batch).parallel().forEach(b -> {
            System.arraycopy(MlbReference.affine(x, b, dx, l0.w, l0.b, m), 0, p.xt, b * m, m);
            System.arraycopy(MlbReference.affine(y, b, dy, l1.w, l1.b, m), 0, p.yt, b * m, m);
            System.arraycopy(MlbReference.affine(p.xt, b, m, m0.w, m0.b, rm), 0, p.p, b * rm, rm);
            System.arraycopy(MlbReference.affine(p.yt, b, m, m1.w, m1.b, rm), 0, p.q, b * rm, rm);
            for (int j = 0; j < m; j++) {
                double s = 0;
                for (int r = 0; r < op.rank(); r++) s += p.p[b * rm + r * m + j] * p.q[b * rm + r * m + j];
                p.z[b * m + j] = s;
            }
            NormalizationReference.forward(op.normalization(), p.z, b * m, m, p.zh);
            System.arraycopy(MlbReference.affine(p.zh, b, m, lo.w, lo.b, out), 0, p.out, b * out, out);
        });
        return p;
    }

    public static Grads backward(Mutan op, float[] x, float[] y, float[] gradOut, int batch) {
        op.checkInputs(x, y, batch);
        io.bifuse.CompactBilinear.checkLength("gradOut", gradOut, batch, op.out());
        return backward(op, MlbReference.toDouble(x), MlbReference.toDouble(y), MlbReference.toDouble(gradOut), batch);
    }

    /** Every gradient given {@code g = ∂L/∂f} (B × Out), float64 inputs. */
    public static Grads backward(Mutan op, double[] x, double[] y, double[] g, int batch) {
        int m = op.mmDim(), rank = op.rank(), rm = rank * m, out = op.out(), dx = op.dx(), dy = op.dy();
        Pass p = pass(op, x, y, batch);
        L l0 = L.of(op.linear0()), l1 = L.of(op.linear1()), m0 = L.of(op.mergeLinear0()), m1 = L.of(op.mergeLinear1()), lo = L.of(op.linearOut());
        Normalization n = op.normalization();
        double[] gp = new double[batch * rm], gq = new double[batch * rm], gxt = new double[batch * m], gyt = new double[batch * m];
        double[] gx = new double[batch * dx], gy = new double[batch * dy];
        IntStream.range(0, batch).parallel().forEach(b -> {
            double[] gzh = new double[m], gz = new double[m];
            for (int o = 0; o < out; o++) {
                double go = g[b * out + o];
                for (int j = 0; j < m; j++) gzh[j] += go * lo.w[o * m + j];
            }
            double[] zb = java.util.Arrays.copyOfRange(p.z, b * m, (b + 1) * m);
            NormalizationReference.backward(n, zb, gzh, 0, m, gz);
            for (int r = 0; r < rank; r++) {
                for (int j = 0; j < m; j++) {
                    int at = b * rm + r * m + j;
                    gp[at] = gz[j] * p.q[at];
                    gq[at] = gz[j] * p.p[at];
                }
            }
            for (int o = 0; o < rm; o++) { // gx̃ = gp·M₀, gỹ = gq·M₁
                double a = gp[b * rm + o], c = gq[b * rm + o];
                for (int j = 0; j < m; j++) {
                    gxt[b * m + j] += a * m0.w[o * m + j];
                    gyt[b * m + j] += c * m1.w[o * m + j];
                }
            }
            for (int j = 0; j < m; j++) { // ∂x = gx̃·W₀, ∂y = gỹ·W₁
                double a = gxt[b * m + j], c = gyt[b * m + j];
                for (int i = 0; i < dx; i++) gx[b * dx + i] += a * l0.w[j * dx + i];
                for (int i = 0; i < dy; i++) gy[b * dy + i] += c * l1.w[j * dy + i];
            }
        });
        double[][] w0 = {MlbReference.outerSum(gxt, x, batch, m, dx), MlbReference.columnSums(gxt, batch, m)};
        double[][] w1 = {MlbReference.outerSum(gyt, y, batch, m, dy), MlbReference.columnSums(gyt, batch, m)};
        double[][] mm0 = {MlbReference.outerSum(gp, p.xt, batch, rm, m), MlbReference.columnSums(gp, batch, rm)};
        double[][] mm1 = {MlbReference.outerSum(gq, p.yt, batch, rm, m), MlbReference.columnSums(gq, batch, rm)};
        double[][] wo = {MlbReference.outerSum(g, p.zh, batch, out, m), MlbReference.columnSums(g, batch, out)};
        if (op.isShared()) { // one layer on both sides: both names carry the sum
            w0 = w1 = sum(w0, w1);
            mm0 = mm1 = sum(mm0, mm1);
        }
        List<double[]> t = new ArrayList<>(List.of(gx, gy));
        Linear[] layers = {op.linear0(), op.linear1(), op.mergeLinear0(), op.mergeLinear1(), op.linearOut()};
        double[][][] grads = {w0, w1, mm0, mm1, wo};
        for (int i = 0; i < layers.length; i++) {
            t.add(grads[i][0].clone());
            if (layers[i].hasBias()) t.add(grads[i][1].clone());
        }
        return new Grads(List.copyOf(t));
    }

    private static double[][] sum(double[][] a, double[][] b) {
        double[][] r = new double[2][];
        for (int k = 0; k < 2; k++) {
            r[k] = a[k].clone();
            for (int i = 0; i < r[k].length; i++) r[k][i] += b[k][i];
        }
        return r;
    }

    /** A layer's weight and bias (zeros where it has none) in double. */
    private record L(double[] w, double[] b) {
        static L of(Linear l) { return new L(l.weightAsDouble(), l.biasAsDouble()); }
    }
}
