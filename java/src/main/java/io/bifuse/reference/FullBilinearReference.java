package io.bifuse.reference;

import io.bifuse.FullBilinear;
import io.bifuse.Precision;
import java.util.stream.IntStream;

/**
 * The oracle for {@link FullBilinear}: straight from the definition, double accumulation.
 * <pre>
 *   Z_b[a, c] = α Σ_l X_b[l, a]·Y_b[l, c]                      (Y = X when homologous), then the normalization
 *   ∂L/∂X_b[l, a] = α Σ_c G_b[a, c]·Y_b[l, c]                  ∂L/∂Y_b[l, c] = α Σ_a X_b[l, a]·G_b[a, c]
 *   homologous:  ∂L/∂X_b[l, a] = α Σ_c G_b[a, c]·X_b[l, c] + α Σ_c X_b[l, c]·G_b[c, a]   (X as left and as right factor)
 * </pre>
 * with {@code G_b = ∂L/∂Z_b} from {@link NormalizationReference#backward}. Each entry is one dot product
 * over contiguous (transposed) rows in a fixed order; the (sample, row) pairs run in parallel.
 * Inputs of a homologous op: pass {@code y = null} (or {@code x} itself).
 */
public final class FullBilinearReference {
    private FullBilinearReference() {}

    public static double[] forward(FullBilinear op, float[] x, float[] y, int batch, int positions) {
        double[] xd = toDouble(x);
        return forward(op, xd, y == null || y == x ? xd : toDouble(y), batch, positions);
    }

    /** {@code B × C1·C2}, normalized per {@link FullBilinear#normalization()}. */
    public static double[] forward(FullBilinear op, double[] x, double[] y, int batch, int positions) {
        double[] z = pooled(op, x, y, batch, positions);
        if (op.normalization().isIdentity()) return z;
        int d = op.outputSize();
        double[] out = new double[z.length];
        for (int b = 0; b < batch; b++) NormalizationReference.forward(op.normalization(), z, b * d, d, out);
        return out;
    }

    public static double[][] backward(FullBilinear op, float[] x, float[] y, float[] gradOut, int batch, int positions) {
        double[] xd = toDouble(x);
        return backward(op, xd, y == null || y == x ? xd : toDouble(y), toDouble(gradOut), batch, positions);
    }

    /**
     * {@code {∂L/∂x (B × L × C1), ∂L/∂y (B × L × C2)}} given {@code gradOut = ∂L/∂output}; for a
     * homologous op {@code {∂L/∂x, null}} with both paths summed.
     */
    public static double[][] backward(FullBilinear op, double[] x, double[] y, double[] gradOut, int batch, int positions) {
        double[] z = op.normalization().isIdentity() ? null : pooled(op, x, y, batch, positions);
        return backwardFromPooled(op, x, y, z, gradOut, batch, positions);
    }

    /**
     * The backward with the pooled {@code z} (before normalization) supplied rather than recomputed:
     * with a perturbed {@code z} it measures how much the signed sqrt's derivative amplifies errors in
     * z (see {@link #float32Baseline}). {@code z} is unused without normalization.
     */
    public static double[][] backwardFromPooled(FullBilinear op, double[] x, double[] y, double[] z, double[] gradOut,
                                                int batch, int positions) {
        int c1 = op.c1(), c2 = op.c2(), d = op.outputSize(), len = positions;
        double alpha = op.scale(positions);
        double[] yy = op.isHomologous() ? x : y;
        double[] g = gradOut;
        if (!op.normalization().isIdentity()) {
            g = new double[z.length];
            for (int b = 0; b < batch; b++) NormalizationReference.backward(op.normalization(), z, gradOut, b * d, d, g);
        }
        double[] gz = g;
        double[] gx = new double[batch * len * c1], gy = op.isHomologous() ? null : new double[batch * len * c2];
        IntStream.range(0, batch * len).parallel().forEach(bl -> {
            int b = bl / len;
            int xo = bl * c1, yo = bl * c2, go = b * d;
            for (int a = 0; a < c1; a++) {
                double acc = 0;
                for (int c = 0; c < c2; c++) acc += gz[go + a * c2 + c] * yy[yo + c];
                if (op.isHomologous()) for (int c = 0; c < c1; c++) acc += x[xo + c] * gz[go + c * c1 + a];
                gx[xo + a] = alpha * acc;
            }
            if (gy == null) return;
            for (int c = 0; c < c2; c++) {
                double acc = 0;
                for (int a = 0; a < c1; a++) acc += x[xo + a] * gz[go + a * c2 + c];
                gy[yo + c] = alpha * acc;
            }
        });
        return new double[][] {gx, gy};
    }

    /** {@code α·X_bᵀY_b} per sample, vectorized row-major, before normalization ({@code B × C1·C2}). */
    public static double[] pooled(FullBilinear op, double[] x, double[] y, int batch, int positions) {
        int c1 = op.c1(), c2 = op.c2(), d = op.outputSize(), len = positions;
        double[] yy = op.isHomologous() ? x : y;
        double alpha = op.scale(positions);
        // Channel-major copies so that each entry's sum over l reads two contiguous rows.
        double[] xt = transpose(x, batch, len, c1), yt = op.isHomologous() ? xt : transpose(yy, batch, len, c2);
        double[] z = new double[batch * d];
        IntStream.range(0, batch * c1).parallel().forEach(ba -> {
            int b = ba / c1, a = ba % c1;
            int xr = (b * c1 + a) * len;
            for (int c = 0; c < c2; c++) {
                int yr = (b * c2 + c) * len;
                double acc = 0;
                for (int l = 0; l < len; l++) acc += xt[xr + l] * yt[yr + l];
                z[b * d + a * c2 + c] = alpha * acc;
            }
        });
        return z;
    }

    /**
     * How well a float32 backend's backward can match {@link #backward} at all: the relative L2 error
     * (max over the input gradients) of the exact float64 backward evaluated at a {@code z} computed
     * the way a float32 GEMM computes it (operands rounded as {@code precision} rounds them, products
     * accumulated in float32 in position order, times α in float32). The signed sqrt's derivative
     * {@code 0.5/(sqrt|z| + eps)} amplifies the unavoidable float32 error of z where {@code z ≈ 0}; this
     * number is that amplification on the actual inputs, the baseline that float32 tolerances scale.
     * Sequential float32 accumulation is the least accurate order a GEMM uses (cuBLAS sums in tiles),
     * so the baseline errs on the large side. {@code ref} is {@link #backward}'s result on the same inputs.
     */
    public static double float32Baseline(FullBilinear op, float[] x, float[] y, float[] gradOut, int batch, int positions,
                                         Precision precision, double[][] ref) {
        if (op.normalization().isIdentity()) return 0; // nothing depends on z
        int c1 = op.c1(), c2 = op.c2(), d = op.outputSize(), len = positions;
        float[] xr = precision.round(x), yr = op.isHomologous() ? xr : precision.round(y);
        float alpha = (float) op.scale(positions);
        float[] xt = transpose(xr, batch, len, c1), yt = op.isHomologous() ? xt : transpose(yr, batch, len, c2);
        double[] z = new double[batch * d];
        IntStream.range(0, batch * c1).parallel().forEach(ba -> {
            int b = ba / c1, a = ba % c1;
            int xo = (b * c1 + a) * len;
            for (int c = 0; c < c2; c++) {
                int yo = (b * c2 + c) * len;
                float acc = 0;
                for (int l = 0; l < len; l++) acc += xt[xo + l] * yt[yo + l];
                z[b * d + a * c2 + c] = alpha * acc;
            }
        });
        double[] xd = toDouble(x);
        double[][] base = backwardFromPooled(op, xd, op.isHomologous() ? xd : toDouble(y), z, toDouble(gradOut), batch, positions);
        double e = relativeL2(base[0], ref[0]);
        if (!op.isHomologous()) e = Math.max(e, relativeL2(base[1], ref[1]));
        return e;
    }

    private static double relativeL2(double[] a, double[] ref) {
        double num = 0, den = 0;
        for (int i = 0; i < a.length; i++) {
            num += (a[i] - ref[i]) * (a[i] - ref[i]);
            den += ref[i] * ref[i];
        }
        return den == 0 ? Math.sqrt(num) : Math.sqrt(num / den);
    }

    private static double[] transpose(double[] a, int batch, int rows, int cols) {
        double[] t = new double[a.length];
        for (int b = 0; b < batch; b++)
            for (int r = 0; r < rows; r++)
                for (int c = 0; c < cols; c++) t[(b * cols + c) * rows + r] = a[(b * rows + r) * cols + c];
        return t;
    }

    private static float[] transpose(float[] a, int batch, int rows, int cols) {
        float[] t = new float[a.length];
        for (int b = 0; b < batch; b++)
            for (int r = 0; r < rows; r++)
                for (int c = 0; c < cols; c++) t[(b * cols + c) * rows + r] = a[(b * rows + r) * cols + c];
        return t;
    }

    public static double[] toDouble(float[] a) {
        double[] r = new double[a.length];
        for (int i = 0; i < a.length; i++) r[i] = a[i];
        return r;
    }
}
