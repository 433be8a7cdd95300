package io.bifuse.reference;

import io.bifuse.BilinearLayer;
import io.bifuse.Block;
import io.bifuse.BlockTucker;
import io.bifuse.Linear;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.IntStream;

/**
 * The oracle for {@link BlockTucker} (and, through its one-chunk form, {@link io.bifuse.Tucker}): its
 * definition in double, every sum in one fixed order; samples in parallel, parameter gradients summed
 * over the samples in order.
 */
public final class BlockTuckerReference {
    private BlockTuckerReference() {}

    /** Gradients in double, in the order and layout of {@link BlockTucker#gradientNames()}. */
    public record Grads(List<double[]> tensors) {}

    private record Pass(double[] xt, double[] yt, double[] z, double[] zh, double[] out) {}

    public static double[] forward(BlockTucker op, float[] x, float[] y, int batch) {
        op.checkInputs(x, y, batch);
        return pass(op, MlbReference.toDouble(x), MlbReference.toDouble(y), batch).out;
    }

    /** {@code f} given float64 inputs: B × Out. */
    public static double[] forward(BlockTucker op, double[] x, double[] y, int batch) {
        return pass(op, x, y, batch).out;
    }

    private static Pass pass(BlockTucker op, double[] x, double[] y, int batch) {
        int m = op.mmDim();
        double[] xt = BlockReference.affineRows(x, batch, op.dx(), op.linear0(), m), yt = BlockReference.affineRows(y, batch, op.dy(), op.linear1(), m);
        double[] z = new double[batch * m], zh = new double[batch * m];
        List<double[]> a = new ArrayList<>(), bias = new ArrayList<>();
        for (BilinearLayer l : op.bilinears()) {
            a.add(l.weightAsDouble());
            bias.add(l.biasAsDouble());
        }
        IntStream.range(0, batch).parallel().forEach(b -> {
            for (int c = 0; c < op.chunks(); c++) {
                int s = op.chunkSize(c), o = b * m + op.chunkOffset(c);
                double[] w = a.get(c);
                for (int k = 0; k < s; k++) {
                    double acc = bias.get(c)[k];
                    for (int i = 0; i < s; i++) {
                        double inner = 0;
                        for (int j = 0; j < s; j++) inner += w[(k * s + i) * s + j] * yt[o + j];
                        acc += xt[o + i] * inner;
                    }
                    z[o + k] = acc;
                }
            }
            if (op.position() == Block.NormPosition.AFTER_CAT) NormalizationReference.forward(op.normalization(), z, b * m, m, zh);
            else for (int c = 0; c < op.chunks(); c++) NormalizationReference.forward(op.normalization(), z, b * m + op.chunkOffset(c), op.chunkSize(c), zh);
        });
        return new Pass(xt, yt, z, zh, BlockReference.affineRows(zh, batch, m, op.linearOut(), op.out()));
    }

    public static Grads backward(BlockTucker op, float[] x, float[] y, float[] gradOut, int batch) {
        op.checkInputs(x, y, batch);
        io.bifuse.CompactBilinear.checkLength("gradOut", gradOut, batch, op.out());
        return backward(op, MlbReference.toDouble(x), MlbReference.toDouble(y), MlbReference.toDouble(gradOut), batch);
    }

    /** Every gradient given {@code g = ∂L/∂f} (B × Out), float64 inputs. */
    public static Grads backward(BlockTucker op, double[] x, double[] y, double[] g, int batch) {
        int m = op.mmDim(), out = op.out(), dx = op.dx(), dy = op.dy(), chunks = op.chunks();
        Pass p = pass(op, x, y, batch);
        double[] gzh = BlockReference.inputGradient(g, batch, out, op.linearOut(), m), gz = new double[batch * m];
        double[] gxt = new double[batch * m], gyt = new double[batch * m];
        IntStream.range(0, batch).parallel().forEach(b -> {
            double[] zb = java.util.Arrays.copyOfRange(p.z, b * m, (b + 1) * m), gb = java.util.Arrays.copyOfRange(gzh, b * m, (b + 1) * m), r = new double[m];
            if (op.position() == Block.NormPosition.AFTER_CAT) NormalizationReference.backward(op.normalization(), zb, gb, 0, m, r);
            else for (int c = 0; c < chunks; c++) NormalizationReference.backward(op.normalization(), zb, gb, op.chunkOffset(c), op.chunkSize(c), r);
            System.arraycopy(r, 0, gz, b * m, m);
            for (int c = 0; c < chunks; c++) {
                int s = op.chunkSize(c), o = b * m + op.chunkOffset(c);
                double[] w = op.bilinears().get(c).weightAsDouble();
                for (int k = 0; k < s; k++) {
                    double gk = gz[o + k];
                    for (int i = 0; i < s; i++) {
                        for (int j = 0; j < s; j++) {
                            double a = w[(k * s + i) * s + j];
                            gxt[o + i] += gk * a * p.yt[o + j];
                            gyt[o + j] += gk * p.xt[o + i] * a;
                        }
                    }
                }
            }
        });
        List<double[][]> gb = new ArrayList<>();
        for (int c = 0; c < chunks; c++) {
            int s = op.chunkSize(c), off = op.chunkOffset(c);
            double[] dw = new double[s * s * s], db = new double[s];
            IntStream.range(0, s).parallel().forEach(k -> {
                for (int b = 0; b < batch; b++) {
                    double gk = gz[b * m + off + k];
                    for (int i = 0; i < s; i++) {
                        double gi = gk * p.xt[b * m + off + i];
                        for (int j = 0; j < s; j++) dw[(k * s + i) * s + j] += gi * p.yt[b * m + off + j];
                    }
                }
                for (int b = 0; b < batch; b++) db[k] += gz[b * m + off + k];
            });
            gb.add(new double[][] {dw, db});
        }
        double[][] w0 = {MlbReference.outerSum(gxt, x, batch, m, dx), MlbReference.columnSums(gxt, batch, m)};
        double[][] w1 = {MlbReference.outerSum(gyt, y, batch, m, dy), MlbReference.columnSums(gyt, batch, m)};
        double[][] wo = {MlbReference.outerSum(g, p.zh, batch, out, m), MlbReference.columnSums(g, batch, out)};
        double[] gx = BlockReference.inputGradient(gxt, batch, m, op.linear0(), dx), gy = BlockReference.inputGradient(gyt, batch, m, op.linear1(), dy);
        if (op.isShared()) {
            double[][] t = {w0[0].clone(), w0[1].clone()};
            for (int k = 0; k < 2; k++) for (int i = 0; i < t[k].length; i++) t[k][i] += w1[k][i];
            w0 = w1 = t;
        }
        List<double[]> t = new ArrayList<>(List.of(gx, gy));
        add(t, w0, op.linear0());
        add(t, w1, op.linear1());
        for (int c = 0; c < chunks; c++) {
            t.add(gb.get(c)[0]);
            if (op.bilinears().get(c).hasBias()) t.add(gb.get(c)[1]);
        }
        add(t, wo, op.linearOut());
        return new Grads(List.copyOf(t));
    }

    private static void add(List<double[]> t, double[][] g, Linear l) {
        t.add(g[0].clone());
        if (l.hasBias()) t.add(g[1].clone());
    }
}
