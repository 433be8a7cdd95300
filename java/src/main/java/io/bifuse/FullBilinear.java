package io.bifuse;

import static io.bifuse.Floats.toFloat;
import io.bifuse.cuda.CudaContext;
import io.bifuse.cuda.FullBilinearCuda;
import io.bifuse.reference.NormalizationReference;
import java.util.stream.IntStream;

/**
 * Full bilinear pooling (bilinear CNN, Lin et al. 2015; second-order pooling when both inputs are the
 * same feature map): an immutable op descriptor. No parameters.
 *
 * <p>Math, per sample {@code b}, with {@code X_b ∈ R^{L×C1}}, {@code Y_b ∈ R^{L×C2}} ({@code L} spatial
 * positions):
 * <pre>
 *   Z_b = α · Σ_l X_{b,l}ᵀ Y_{b,l} = α · X_bᵀ Y_b ∈ R^{C1×C2},   α = 1/L when averaging, else 1
 *   z_b = vec(Z_b)            (row-major: entry (c1, c2) at index c1·C2 + c2)
 *   out_b = normalize(z_b)    (the op's {@link Normalization}: signed sqrt, l2, over the C1·C2 vector)
 * </pre>
 * Some ports divide by {@code L} (average pooling of the outer products), some do not; with an l2
 * normalization the factor cancels in the forward (not in the eps terms), so it is a parameter.
 * Homologous ({@link #homologous}): {@code Y = X}, one input, {@code Z_b = α·X_bᵀX_b} (symmetric).
 *
 * <p>Backward, given {@code g = ∂L/∂out} ({@code B × C1·C2}) and {@code G_b = ∂L/∂Z_b} (g through the
 * normalization's chain rule, reshaped to {@code C1×C2}):
 * <pre>
 *   ∂L/∂X_b = α · Y_b G_bᵀ    (L × C1)        ∂L/∂Y_b = α · X_b G_b    (L × C2)
 *   homologous:  ∂L/∂X_b = α · X_b (G_b + G_bᵀ)   (both paths of X)
 * </pre>
 *
 * <p>Shapes, row-major: {@code x} is {@code B × L × C1}, {@code y} is {@code B × L × C2} (position-major:
 * a channels-last feature map, e.g. an NCHW map permuted to NHWC and flattened over H·W), output
 * {@code B × C1·C2}. Any {@code B, L, C1, C2 >= 1} with {@code C1·C2 < 2^31}.
 *
 * <p>Backends: {@link #forward}/{@link #backward} run on the CPU in double (outer products accumulated
 * per sample, then {@link NormalizationReference}; results rounded to float), in parallel over the
 * samples; {@link #onCuda} gives the CUDA implementation (cuBLAS strided-batched GEMMs in a chosen
 * {@link Precision}); {@code io.bifuse.reference.FullBilinearReference} is the definition-based oracle
 * both are tested against.
 */
public final class FullBilinear {
    private final int c1, c2;
    private final boolean homologous, average;
    private final Normalization normalization;

    private FullBilinear(int c1, int c2, boolean homologous, boolean average, Normalization normalization) {
        this.c1 = c1;
        this.c2 = c2;
        this.homologous = homologous;
        this.average = average;
        this.normalization = normalization;
    }

    /**
     * Two inputs, {@code x} with {@code c1} channels and {@code y} with {@code c2}; {@code average}
     * divides the sum over positions by {@code L}.
     */
    public static FullBilinear of(int c1, int c2, boolean average, Normalization normalization) {
        positive("c1", c1);
        positive("c2", c2);
        checkProduct(c1, c2);
        return new FullBilinear(c1, c2, false, average, requireNormalization(normalization));
    }

    /** Homologous (second-order) pooling of one input with {@code c} channels: {@code Z = α·XᵀX}. */
    public static FullBilinear homologous(int c, boolean average, Normalization normalization) {
        positive("c", c);
        checkProduct(c, c);
        return new FullBilinear(c, c, true, average, requireNormalization(normalization));
    }

    public int c1() { return c1; }
    /** Channels of the second input ({@code = c1} when homologous). */
    public int c2() { return c2; }
    /** {@code C1·C2}: the length of one output sample. */
    public int outputSize() { return c1 * c2; }
    public boolean isHomologous() { return homologous; }
    /** Whether the sum over positions is divided by {@code L}. */
    public boolean averages() { return average; }
    public Normalization normalization() { return normalization; }

    /** The factor α on the sum over positions: {@code 1/L} when averaging, else 1. */
    public double scale(int positions) { return average ? 1.0 / positions : 1.0; }

    /** Forward on the CPU: {@code x (B × L × C1)}, {@code y (B × L × C2)} → {@code B × C1·C2}. Two-input ops only. */
    public float[] forward(float[] x, float[] y, int batch, int positions) {
        checkInputs(x, y, batch, positions);
        return toFloat(forwardDouble(x, y, batch, positions));
    }

    /** Forward on the CPU of a homologous op: {@code x (B × L × C)} → {@code B × C·C}. */
    public float[] forward(float[] x, int batch, int positions) {
        checkInput(x, batch, positions);
        return toFloat(forwardDouble(x, x, batch, positions));
    }

    /** Backward on the CPU: {@code ∂L/∂x}, {@code ∂L/∂y} given {@code gradOut = ∂L/∂out} ({@code B × C1·C2}). Two-input ops only. */
    public Gradients backward(float[] x, float[] y, float[] gradOut, int batch, int positions) {
        checkInputs(x, y, batch, positions);
        checkLength("gradOut", gradOut, batch, outputSize());
        double[][] g = backwardDouble(x, y, gradOut, batch, positions);
        return new Gradients(toFloat(g[0]), toFloat(g[1]));
    }

    /** Backward on the CPU of a homologous op: {@code ∂L/∂x} ({@code B × L × C}), the sum of both paths. */
    public float[] backward(float[] x, float[] gradOut, int batch, int positions) {
        checkInput(x, batch, positions);
        checkLength("gradOut", gradOut, batch, outputSize());
        return toFloat(backwardDouble(x, x, gradOut, batch, positions)[0]);
    }

    /** This op on a GPU with FP32 GEMMs (the default; TF32 and BF16 only through {@link #onCuda(CudaContext, Precision)}). */
    public FullBilinearCuda onCuda(CudaContext context) {
        return onCuda(context, Precision.FP32);
    }

    /** This op on a GPU with its GEMMs in {@code precision}; close it to free its workspaces. */
    public FullBilinearCuda onCuda(CudaContext context, Precision precision) {
        return new FullBilinearCuda(this, context, Precision.require("precision", precision));
    }

    /** Checks the host inputs of the two-input form; every entry point calls it before any work. */
    public void checkInputs(float[] x, float[] y, int batch, int positions) {
        if (homologous) {
            throw new IllegalArgumentException("y: this op is homologous (Y = X) and takes one input; call the form without y");
        }
        checkShape(batch, positions);
        checkHostOutput(batch);
        checkLength("x", x, batch, positions, c1);
        checkLength("y", y, batch, positions, c2);
    }

    /** Checks the host input of the one-input (homologous) form. */
    public void checkInput(float[] x, int batch, int positions) {
        if (!homologous) {
            throw new IllegalArgumentException("y: this op takes two inputs (C1 = " + c1 + ", C2 = " + c2
                    + "), got only x; call the form with y, or make the op with FullBilinear.homologous");
        }
        checkShape(batch, positions);
        checkHostOutput(batch);
        checkLength("x", x, batch, positions, c1);
    }

    /** A Java array holds fewer than 2^31 elements: the host forms need {@code B·C1·C2} below that. */
    private void checkHostOutput(int batch) {
        if ((long) batch * outputSize() > Integer.MAX_VALUE - 8) {
            throw new IllegalArgumentException("batch: expected B·C1·C2 < 2^31 for the float[] forms, got " + batch + " · " + outputSize()
                    + "; use the DeviceMemory forms of onCuda");
        }
    }

    /** Throws unless {@code batch >= 1} and {@code positions >= 1}. */
    public static void checkShape(int batch, int positions) {
        positive("batch", batch);
        if (positions < 1) throw new IllegalArgumentException("positions: expected L >= 1 spatial positions, got " + positions);
    }

    /** Throws unless {@code a} holds exactly {@code rows × cols} values. */
    public static void checkLength(String name, float[] a, int rows, int cols) {
        CompactBilinear.checkLength(name, a, rows, cols);
    }

    /** Throws unless {@code a} holds exactly {@code batch × positions × channels} values. */
    public static void checkLength(String name, float[] a, int batch, int positions, int channels) {
        long n = (long) batch * positions * channels;
        String shape = batch + " × " + positions + " × " + channels;
        if (a == null) throw new IllegalArgumentException(name + ": expected " + shape + " floats, got null");
        if (a.length != n) throw new IllegalArgumentException(name + ": expected " + shape + " = " + n + " floats, got " + a.length);
    }

    // ---- CPU backend: double accumulation, outer products in position order --------------------------------

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

    private static Normalization requireNormalization(Normalization n) {
        if (n == null) throw new IllegalArgumentException("normalization: expected a Normalization (Normalization.NONE for none), got null");
        return n;
    }

    private static void positive(String name, int v) {
        if (v < 1) throw new IllegalArgumentException(name + ": expected >= 1, got " + v);
    }

    private static void checkProduct(int c1, int c2) {
        if ((long) c1 * c2 > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("c2: expected C1·C2 < 2^31 (one output sample), got " + c1 + " · " + c2 + " = " + (long) c1 * c2);
        }
    }

    @Override public boolean equals(Object o) {
        return o instanceof FullBilinear f && c1 == f.c1 && c2 == f.c2 && homologous == f.homologous && average == f.average
                && normalization.equals(f.normalization);
    }

    @Override public int hashCode() { return ((31 * c1 + c2) * 31 + (homologous ? 1 : 0) + (average ? 2 : 0)) * 31 + normalization.hashCode(); }

    @Override public String toString() {
        return "FullBilinear[" + (homologous ? "homologous C=" + c1 : "C1=" + c1 + ", C2=" + c2) + (average ? ", average" : ", sum")
                + ", " + normalization + "]";
    }
}
