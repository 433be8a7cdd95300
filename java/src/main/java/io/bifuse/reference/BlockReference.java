package io.bifuse.reference;

import io.bifuse.Block;
import io.bifuse.Linear;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.IntStream;

/**
 * The oracle for {@link Block}: its definition (the descriptor's javadoc) in double, every sum in one
 * fixed order; samples in parallel, each weight gradient a sum over the samples in order
 * ({@link MlbReference}'s helpers), one chunk's layers at a time.
 */
public final class BlockReference {
    private BlockReference() {}

    /** Gradients in double, in the order and layout of {@link Block#gradientNames()}. */
    public record Grads(List<double[]> tensors) {
        public double[] dx() { return tensors.get(0); }
        public double[] dy() { return tensors.get(1); }
    }

    /** One batch's intermediates: x̃, ỹ (B × M), per chunk p_c, q_c (B × R·s_c), the cores z (B × M), ẑ (B × M) and the output. */
    private record Pass(double[] xt, double[] yt, double[][] p, double[][] q, double[] z, double[] zh, double[] out) {}

    public static double[] forward(Block op, float[] x, float[] y, int batch) {
        op.checkInputs(x, y, batch);
        return pass(op, MlbReference.toDouble(x), MlbReference.toDouble(y), batch).out;
    }

    /** {@code f} given float64 inputs (a fixture's, exactly): B × Out. */
    public static double[] forward(Block op, double[] x, double[] y, int batch) {
        return pass(op, x, y, batch).out;
    }

    private static Pass pass(Block op, double[] x, double[] y, int batch) {
        int m = op.mmDim(), out = op.out(), chunks = op.chunks(), rank = op.rank();
        double[] xt = affineRows(x, batch, op.dx(), op.linear0(), m), yt = affineRows(y, batch, op.dy(), op.linear1(), m);
        double[][] p = new double[chunks][], q = new double[chunks][];
        double[] z = new double[batch * m], zh = new double[batch * m];
        for (int c = 0; c < chunks; c++) {
            int s = op.chunkSize(c), o = op.chunkOffset(c), rs = rank * s;
            double[] xc = slice(xt, batch, m, o, s), yc = slice(yt, batch, m, o, s);
            p[c] = affineRows(xc, batch, s, op.merge0().get(c), rs);
            q[c] = affineRows(yc, batch, s, op.merge1().get(c), rs);
            for (int b = 0; b < batch; b++) {
                for (int j = 0; j < s; j++) {
                    double acc = 0;
                    for (int r = 0; r < rank; r++) acc += p[c][b * rs + r * s + j] * q[c][b * rs + r * s + j];
                    z[b * m + o + j] = acc;
                }
            }
        }
        for (int b = 0; b < batch; b++) {
            if (op.position() == Block.NormPosition.AFTER_CAT) {
                NormalizationReference.forward(op.normalization(), z, b * m, m, zh);
            } else {
                for (int c = 0; c < chunks; c++) NormalizationReference.forward(op.normalization(), z, b * m + op.chunkOffset(c), op.chunkSize(c), zh);
            }
        }
        return new Pass(xt, yt, p, q, z, zh, affineRows(zh, batch, m, op.linearOut(), out));
    }

    public static Grads backward(Block op, float[] x, float[] y, float[] gradOut, int batch) {
        op.checkInputs(x, y, batch);
        io.bifuse.CompactBilinear.checkLength("gradOut", gradOut, batch, op.out());
        return backward(op, MlbReference.toDouble(x), MlbReference.toDouble(y), MlbReference.toDouble(gradOut), batch);
    }

    /** Every gradient given {@code g = ∂L/∂f} (B × Out), float64 inputs. */
    public static Grads backward(Block op, double[] x, double[] y, double[] g, int batch) {
        int m = op.mmDim(), out = op.out(), chunks = op.chunks(), rank = op.rank(), dx = op.dx(), dy = op.dy();
        Pass p = pass(op, x, y, batch);
        double[] gzh = inputGradient(g, batch, out, op.linearOut(), m), gz = new double[batch * m];
        for (int b = 0; b < batch; b++) {
            double[] zb = java.util.Arrays.copyOfRange(p.z, b * m, (b + 1) * m), gb = java.util.Arrays.copyOfRange(gzh, b * m, (b + 1) * m), r = new double[m];
            if (op.position() == Block.NormPosition.AFTER_CAT) {
                NormalizationReference.backward(op.normalization(), zb, gb, 0, m, r);
            } else {
                for (int c = 0; c < chunks; c++) NormalizationReference.backward(op.normalization(), zb, gb, op.chunkOffset(c), op.chunkSize(c), r);
            }
            System.arraycopy(r, 0, gz, b * m, m);
        }
        double[] gxt = new double[batch * m], gyt = new double[batch * m];
        List<double[][]> g0 = new ArrayList<>(), g1 = new ArrayList<>();
        for (int c = 0; c < chunks; c++) {
            int s = op.chunkSize(c), o = op.chunkOffset(c), rs = rank * s;
            double[] gp = new double[batch * rs], gq = new double[batch * rs];
            for (int b = 0; b < batch; b++) {
                for (int r = 0; r < rank; r++) {
                    for (int j = 0; j < s; j++) {
                        int at = b * rs + r * s + j;
                        gp[at] = gz[b * m + o + j] * p.q[c][at];
                        gq[at] = gz[b * m + o + j] * p.p[c][at];
                    }
                }
            }
            double[] xc = slice(p.xt, batch, m, o, s), yc = slice(p.yt, batch, m, o, s);
            g0.add(new double[][] {MlbReference.outerSum(gp, xc, batch, rs, s), MlbReference.columnSums(gp, batch, rs)});
            g1.add(new double[][] {MlbReference.outerSum(gq, yc, batch, rs, s), MlbReference.columnSums(gq, batch, rs)});
            double[] gxc = inputGradient(gp, batch, rs, op.merge0().get(c), s), gyc = inputGradient(gq, batch, rs, op.merge1().get(c), s);
            for (int b = 0; b < batch; b++) {
                System.arraycopy(gxc, b * s, gxt, b * m + o, s);
                System.arraycopy(gyc, b * s, gyt, b * m + o, s);
            }
        }
        double[][] w0 = {MlbReference.outerSum(gxt, x, batch, m, dx), MlbReference.columnSums(gxt, batch, m)};
        double[][] w1 = {MlbReference.outerSum(gyt, y, batch, m, dy), MlbReference.columnSums(gyt, batch, m)};
        double[][] wo = {MlbReference.outerSum(g, p.zh, batch, out, m), MlbReference.columnSums(g, batch, out)};
        double[] gx = inputGradient(gxt, batch, m, op.linear0(), dx), gy = inputGradient(gyt, batch, m, op.linear1(), dy);
        if (op.isShared()) { // one layer per role on both sides: both names carry the sum
            w0 = w1 = sum(w0, w1);
            for (int c = 0; c < chunks; c++) {
                double[][] t = sum(g0.get(c), g1.get(c));
                g0.set(c, t);
                g1.set(c, t);
            }
        }
        List<double[]> t = new ArrayList<>(List.of(gx, gy));
        List<Linear> layers = new ArrayList<>(List.of(op.linear0(), op.linear1()));
        List<double[][]> grads = new ArrayList<>(List.of(w0, w1));
        layers.addAll(op.merge0());
        grads.addAll(g0);
        layers.addAll(op.merge1());
        grads.addAll(g1);
        layers.add(op.linearOut());
        grads.add(wo);
        for (int i = 0; i < layers.size(); i++) {
            t.add(grads.get(i)[0].clone());
            if (layers.get(i).hasBias()) t.add(grads.get(i)[1].clone());
        }
        return new Grads(List.copyOf(t));
    }

    /** {@code in·Wᵀ + b} over {@code rows} rows of width {@code cols} ({@code W} is {@code outDim × cols}). */
    static double[] affineRows(double[] in, int rows, int cols, Linear l, int outDim) {
        double[] w = l.weightAsDouble(), b = l.biasAsDouble(), r = new double[rows * outDim];
        IntStream.range(0, rows).parallel().forEach(i -> System.arraycopy(MlbReference.affine(in, i, cols, w, b, outDim), 0, r, i * outDim, outDim));
        return r;
    }

    /** {@code g·W} over {@code rows} rows ({@code g} is {@code rows × outDim}, {@code W} is {@code outDim × inDim}). */
    static double[] inputGradient(double[] g, int rows, int outDim, Linear l, int inDim) {
        double[] w = l.weightAsDouble(), r = new double[rows * inDim];
        IntStream.range(0, rows).parallel().forEach(i -> {
            for (int o = 0; o < outDim; o++) {
                double go = g[i * outDim + o];
                for (int k = 0; k < inDim; k++) r[i * inDim + k] += go * w[o * inDim + k];
            }
        });
        return r;
    }

    private static double[] slice(double[] a, int rows, int width, int off, int n) {
        double[] r = new double[rows * n];
        for (int b = 0; b < rows; b++) System.arraycopy(a, b * width + off, r, b * n, n);
        return r;
    }

    private static double[][] sum(double[][] a, double[][] b) {
        double[][] r = new double[2][];
        for (int k = 0; k < 2; k++) {
            r[k] = a[k].clone();
            for (int i = 0; i < r[k].length; i++) r[k][i] += b[k][i];
        }
        return r;
    }
}
