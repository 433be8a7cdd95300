package io.bifuse.reference;

import io.bifuse.CompactBilinear;
import java.util.stream.IntStream;

/**
 * The oracle for {@link CompactBilinear}: straight from the definition, no FFT, double accumulation.
 * <pre>
 *   z[(h1[a] + h2[b]) mod d] += s1[a]·s2[b]·x[a]·y[b]        for all a < Dx, b < Dy
 *   ∂L/∂x[a] = Σ_b s1[a]·s2[b]·y[b]·g[(h1[a] + h2[b]) mod d]   and symmetrically for y
 * </pre>
 * then the normalization, and with an output layer {@code out = σ_out(z·Wᵀ + b)}, whose backward
 * ({@code gpre = g ⊙ σ_out'(out)}, {@code ∂W = gpreᵀ·z}, {@code ∂b = Σ gpre}, {@code ∂z = gpre·W}) comes first.
 * O(Dx·Dy) per sample. Samples run in parallel; each sample's sum runs in one fixed order.
 */
public final class CompactBilinearReference {
    private CompactBilinearReference() {}

    public static double[] forward(CompactBilinear op, float[] x, float[] y, int batch) {
        return forward(op, toDouble(x), toDouble(y), batch);
    }

    /** {@code B × outputWidth}: z normalized per {@link CompactBilinear#normalization()}, then the output layer if the op has one. */
    public static double[] forward(CompactBilinear op, double[] x, double[] y, int batch) {
        double[] n = normalized(op, x, y, batch);
        return op.hasOutput() ? output(op, n, batch) : n;
    }

    /** {@code B × d}: z normalized (the output layer's input; the output without one). */
    public static double[] normalized(CompactBilinear op, double[] x, double[] y, int batch) {
        double[] z = pooled(op, x, y, batch);
        if (op.normalization().isIdentity()) return z;
        double[] out = new double[z.length];
        for (int b = 0; b < batch; b++) NormalizationReference.forward(op.normalization(), z, b * op.d(), op.d(), out);
        return out;
    }

    private static double[] output(CompactBilinear op, double[] n, int batch) {
        int d = op.d(), out = op.outputWidth();
        double[] w = op.linearOut().weightAsDouble(), bias = op.linearOut().biasAsDouble(), f = new double[batch * out];
        IntStream.range(0, batch).parallel().forEach(b -> {
            double[] r = MlbReference.affine(n, b, d, w, bias, out);
            for (int o = 0; o < out; o++) f[b * out + o] = op.outputActivation().apply(r[o]);
        });
        return f;
    }

    public static double[][] backward(CompactBilinear op, float[] x, float[] y, float[] gradOut, int batch) {
        return backward(op, toDouble(x), toDouble(y), toDouble(gradOut), batch);
    }

    /**
     * {@code {∂L/∂x (B × Dx), ∂L/∂y (B × Dy)}} given {@code gradOut = ∂L/∂output} ({@code B × outputWidth}),
     * and with an output layer also its {@code ∂W (Out × d)}, {@code ∂b (Out)}: the order of {@link CompactBilinear#gradientNames()}
     * (∂b whether or not the layer has a bias).
     */
    public static double[][] backward(CompactBilinear op, double[] x, double[] y, double[] gradOut, int batch) {
        double[] gz = gradOut, dw = null, db = null;
        if (op.hasOutput()) {
            int d = op.d(), out = op.outputWidth();
            double[] n = normalized(op, x, y, batch), f = output(op, n, batch), gpre = new double[batch * out], w = op.linearOut().weightAsDouble();
            for (int i = 0; i < gpre.length; i++) gpre[i] = gradOut[i] * op.outputActivation().derivativeFromOutput(f[i]);
            double[] gn = new double[batch * d];
            IntStream.range(0, batch).parallel().forEach(b -> {
                for (int o = 0; o < out; o++) {
                    double g = gpre[b * out + o];
                    for (int j = 0; j < d; j++) gn[b * d + j] += g * w[o * d + j];
                }
            });
            gz = gn;
            dw = MlbReference.outerSum(gpre, n, batch, out, d);
            db = MlbReference.columnSums(gpre, batch, out);
        }
        double[][] g = backwardFromPooled(op, x, y, op.normalization().isIdentity() ? null : pooled(op, x, y, batch), gz, batch);
        return dw == null ? g : new double[][] {g[0], g[1], dw, db};
    }

    /**
     * The backward with the pooled vector {@code z} (before normalization) supplied rather than
     * recomputed: with a perturbed {@code z} it measures how sensitive the gradient is to errors in z
     * (the signed sqrt's derivative amplifies them near 0). {@code z} is unused without normalization.
     * {@code gradOut} is the gradient of the normalized z (the output layer, if any, is not in this backward).
     */
    public static double[][] backwardFromPooled(CompactBilinear op, double[] x, double[] y, double[] z, double[] gradOut, int batch) {
        int dx = op.dx(), dy = op.dy(), d = op.d();
        int[] h1 = op.h1(), h2 = op.h2();
        float[] s1 = op.s1(), s2 = op.s2();
        double[] g = gradOut;
        if (!op.normalization().isIdentity()) {
            g = new double[z.length];
            for (int b = 0; b < batch; b++) NormalizationReference.backward(op.normalization(), z, gradOut, b * d, d, g);
        }
        double[] gz = g;
        double[] gx = new double[batch * dx], gy = new double[batch * dy];
        IntStream.range(0, batch).parallel().forEach(b -> {
            for (int a = 0; a < dx; a++) {
                double acc = 0;
                for (int c = 0; c < dy; c++) acc += s2[c] * y[b * dy + c] * gz[b * d + Math.floorMod(h1[a] + h2[c], d)];
                gx[b * dx + a] = s1[a] * acc;
            }
            for (int c = 0; c < dy; c++) {
                double acc = 0;
                for (int a = 0; a < dx; a++) acc += s1[a] * x[b * dx + a] * gz[b * d + Math.floorMod(h1[a] + h2[c], d)];
                gy[b * dy + c] = s2[c] * acc;
            }
        });
        return new double[][] {gx, gy};
    }

    /** The count sketch of each sample's outer product, before normalization ({@code B × d}). */
    public static double[] pooled(CompactBilinear op, double[] x, double[] y, int batch) {
        int dx = op.dx(), dy = op.dy(), d = op.d();
        int[] h1 = op.h1(), h2 = op.h2();
        float[] s1 = op.s1(), s2 = op.s2();
        double[] z = new double[batch * d];
        IntStream.range(0, batch).parallel().forEach(b -> {
            for (int a = 0; a < dx; a++) {
                double xa = s1[a] * x[b * dx + a];
                for (int c = 0; c < dy; c++) z[b * d + Math.floorMod(h1[a] + h2[c], d)] += xa * s2[c] * y[b * dy + c];
            }
        });
        return z;
    }

    public static double[] toDouble(float[] a) {
        double[] r = new double[a.length];
        for (int i = 0; i < a.length; i++) r[i] = a[i];
        return r;
    }
}
