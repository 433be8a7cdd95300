package io.bifuse;

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
 * <p>Backends ({@link Backend}): {@code io.bifuse.cpu.FullBilinearCpu}, in float32 (one GEMM per sample,
 * then the normalization in place), in parallel over the samples, and {@code io.bifuse.cuda.FullBilinearCuda} (cuBLAS strided-batched GEMMs in a chosen
 * {@link Precision}); {@code io.bifuse.reference.FullBilinearReference} is the definition-based oracle
 * both are tested against.
 */
public final class FullBilinear implements Op<FullBilinear.Backend> {
    /**
     * What every backend of this op offers on host arrays ({@code FullBilinearCpu} in io.bifuse.cpu,
     * {@code FullBilinearCuda} in io.bifuse.cuda): the two-input forms ({@code x (B × L × C1)},
     * {@code y (B × L × C2)} → {@code B × C1·C2}, and {@code ∂L/∂x, ∂L/∂y} given {@code gradOut}) and the
     * homologous ones ({@code x (B × L × C)} → {@code B × C·C}, and {@code ∂L/∂x}, the sum of both paths).
     */
    public interface Backend extends OpBackend {
        float[] forward(float[] x, float[] y, int batch, int positions);
        float[] forward(float[] x, int batch, int positions);
        Gradients backward(float[] x, float[] y, float[] gradOut, int batch, int positions);
        float[] backward(float[] x, float[] gradOut, int batch, int positions);

        /** The descriptor this backend runs. */
        FullBilinear op();

        /**
         * The forward over views of the caller's memory ({@link FloatView}: part of a float[], a
         * FloatBuffer, a MemorySegment): x (B × L × C1), y (B × L × C2) → out (B × C1·C2), {@code out} written, nothing returned. Every length is
         * checked, by name, before anything runs; inputs that are not one whole array are copied once,
         * and the result is copied into {@code out}.
         */
        default void forward(FloatView x, FloatView y, FloatView out, int batch, int positions) {
            FloatView.requireLength("out", out, (long) batch * op().outputSize());
            float[] r = forward(FloatView.input("x", x, (long) batch * positions * op().c1()), FloatView.input("y", y, (long) batch * positions * op().c2()), batch, positions);
            out.copyFrom(r, 0, r.length);
        }
    }

    @Override public Class<Backend> backendType() { return Backend.class; }

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
                    + "; use the DeviceMemory forms of FullBilinearCuda");
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
