package io.bifuse.cpu;

import static io.bifuse.cpu.Floats.toFloat;

import io.bifuse.FullBilinear;
import io.bifuse.Gradients;
import io.bifuse.Normalization;
import io.bifuse.reference.NormalizationReference;
import java.util.stream.IntStream;

/**
 * {@link FullBilinear} on the CPU, in double: the outer products accumulated per sample in position
 * order, then {@code NormalizationReference}; results rounded to float; samples in parallel. Its own
 * algorithm, checked against the definition-based {@code FullBilinearReference}. Immutable and
 * thread-safe; {@link #close()} frees nothing.
 */
public final class FullBilinearCpu extends CpuBackend<FullBilinear> implements FullBilinear.Backend {
    private final int c1, c2;
    private final boolean homologous;
    private final Normalization normalization;

    public FullBilinearCpu(FullBilinear op) {
        super(op, "a FullBilinear", Backends.DOUBLE);
        this.c1 = op.c1();
        this.c2 = op.c2();
        this.homologous = op.isHomologous();
        this.normalization = op.normalization();
    }

    /** {@code x (B × L × C1)}, {@code y (B × L × C2)} → {@code B × C1·C2}. Two-input ops only. */
    @Override public float[] forward(float[] x, float[] y, int batch, int positions) {
        op.checkInputs(x, y, batch, positions);
        return toFloat(forwardDouble(x, y, batch, positions));
    }

    /** The homologous form: {@code x (B × L × C)} → {@code B × C·C}. */
    @Override public float[] forward(float[] x, int batch, int positions) {
        op.checkInput(x, batch, positions);
        return toFloat(forwardDouble(x, x, batch, positions));
    }

    /** {@code ∂L/∂x}, {@code ∂L/∂y} given {@code gradOut = ∂L/∂out} ({@code B × C1·C2}). Two-input ops only. */
    @Override public Gradients backward(float[] x, float[] y, float[] gradOut, int batch, int positions) {
        op.checkInputs(x, y, batch, positions);
        FullBilinear.checkLength("gradOut", gradOut, batch, outputSize());
        double[][] g = backwardDouble(x, y, gradOut, batch, positions);
        return new Gradients(toFloat(g[0]), toFloat(g[1]));
    }

    /** The homologous form: {@code ∂L/∂x} ({@code B × L × C}), the sum of both paths. */
    @Override public float[] backward(float[] x, float[] gradOut, int batch, int positions) {
        op.checkInput(x, batch, positions);
        FullBilinear.checkLength("gradOut", gradOut, batch, outputSize());
        return toFloat(backwardDouble(x, x, gradOut, batch, positions)[0]);
    }


    private int outputSize() { return c1 * c2; }

    private double scale(int positions) { return op.scale(positions); }

    private double[] forwardDouble(float[] x, float[] y, int batch, int positions) {
        int d = outputSize();
        double[] out = new double[batch * d];
        IntStream.range(0, batch).parallel().forEach(b -> {
            double[] z = pooledSample(x, y, b, positions);
            if (normalization.isIdentity()) System.arraycopy(z, 0, out, b * d, d);
            else {
                double[] o = new double[d];
                NormalizationReference.forward(normalization, z, 0, d, o);
                System.arraycopy(o, 0, out, b * d, d);
            }
        });
        return out;
    }

    private double[][] backwardDouble(float[] x, float[] y, float[] gradOut, int batch, int positions) {
        int d = outputSize();
        double alpha = scale(positions);
        double[] gx = new double[batch * positions * c1], gy = homologous ? null : new double[batch * positions * c2];
        IntStream.range(0, batch).parallel().forEach(b -> {
            double[] g = new double[d];
            for (int j = 0; j < d; j++) g[j] = gradOut[b * d + j];
            double[] gz = g;
            if (!normalization.isIdentity()) {
                gz = new double[d];
                NormalizationReference.backward(normalization, pooledSample(x, y, b, positions), g, 0, d, gz);
            }
            if (homologous) { // G + Gᵀ once, then one product
                double[] s = new double[d];
                for (int a = 0; a < c1; a++) for (int c = 0; c < c1; c++) s[a * c1 + c] = gz[a * c1 + c] + gz[c * c1 + a];
                gz = s;
            }
            int xo = b * positions * c1, yo = b * positions * c2;
            double[] yRow = new double[c2];
            for (int l = 0; l < positions; l++) {
                // ∂L/∂X[l, a] = α Σ_c G[a, c] Y[l, c]   (homologous: Y = X, G symmetrized)
                for (int c = 0; c < c2; c++) yRow[c] = y[yo + l * c2 + c];
                for (int a = 0; a < c1; a++) {
                    double acc = 0;
                    for (int c = 0; c < c2; c++) acc += gz[a * c2 + c] * yRow[c];
                    gx[xo + l * c1 + a] = alpha * acc;
                }
                if (homologous) continue;
                // ∂L/∂Y[l, c] = α Σ_a X[l, a] G[a, c]
                double[] acc = new double[c2];
                for (int a = 0; a < c1; a++) {
                    double xa = x[xo + l * c1 + a];
                    if (xa == 0) continue; // post-ReLU maps are sparse
                    for (int c = 0; c < c2; c++) acc[c] += xa * gz[a * c2 + c];
                }
                for (int c = 0; c < c2; c++) gy[yo + l * c2 + c] = alpha * acc[c];
            }
        });
        return new double[][] {gx, gy};
    }

    /** {@code α·X_bᵀY_b} as outer products accumulated over the positions (the axpy order vectorizes). */
    private double[] pooledSample(float[] x, float[] y, int b, int positions) {
        double[] z = new double[c1 * c2], yRow = new double[c2];
        int xo = b * positions * c1, yo = b * positions * c2;
        for (int l = 0; l < positions; l++) {
            for (int c = 0; c < c2; c++) yRow[c] = y[yo + l * c2 + c];
            for (int a = 0; a < c1; a++) {
                double xa = x[xo + l * c1 + a];
                if (xa == 0) continue;
                int row = a * c2;
                for (int c = 0; c < c2; c++) z[row + c] += xa * yRow[c];
            }
        }
        double alpha = scale(positions);
        if (alpha != 1) for (int j = 0; j < z.length; j++) z[j] *= alpha;
        return z;
    }
}
