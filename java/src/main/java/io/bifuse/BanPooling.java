package io.bifuse;

import java.util.List;

/**
 * Bilinear attention pooling (Kim et al. 2018, "Bilinear Attention Networks", the pooling step of
 * ban-vqa's {@code BCNet.forward_with_weights}): an immutable op descriptor. No parameters.
 *
 * <p>Math, per sample {@code b}, with {@code A_b ∈ R^{N×M}} an attention map over objects × tokens,
 * {@code X''_b ∈ R^{N×K'}} the objects' and {@code Y''_b ∈ R^{M×K'}} the tokens' projections (ReLU
 * outputs in BAN), {@code k} the group and {@code R_b} the real (unpadded) objects of the sample:
 * <pre>
 *   F[b, c]  = Σ_{i ∈ R_b} Σ_{j &lt; M} A[b,i,j] · X''[b,i,c] · Y''[b,j,c]          c &lt; K'
 *   f[b, u]  = Σ_{t &lt; k} F[b, u·k + t]                                           u &lt; K'/k
 * </pre>
 * i.e. {@code F[b,c] = X''[:,c]ᵀ A_b Y''[:,c]}, then sum pooling over groups of {@code k} adjacent
 * units. Backward, given {@code g = ∂L/∂f} ({@code B × K'/k}) and {@code dF[b,c] = g[b, c / k]}:
 * <pre>
 *   ∂L/∂A[b,i,j]  = Σ_c dF[b,c] · X''[b,i,c] · Y''[b,j,c]      (i ∈ R_b; 0 for a padded i)
 *   ∂L/∂X''[b,i,c] = dF[b,c] · Σ_j A[b,i,j] · Y''[b,j,c]        (i ∈ R_b; 0 for a padded i)
 *   ∂L/∂Y''[b,j,c] = dF[b,c] · Σ_{i ∈ R_b} A[b,i,j] · X''[b,i,c]
 * </pre>
 *
 * <p>Parity with jnhwkim/ban-vqa: its {@code einsum('bvk,bvq,bqk->bk', v_, w, q_)} is {@code F} with
 * {@code v} the objects, {@code q} the tokens and {@code w = A}; for a BCNet with {@code k > 1} it then
 * applies {@code AvgPool1d(k, stride=k)} and multiplies by {@code k}, which is exactly the group sum
 * above. AvgPool1d silently drops a remainder of {@code K' mod k} units; this op instead REJECTS a width
 * that the group does not divide. In the BAN model each glimpse's BCNet has {@code K' = 1280, k = 1}.
 *
 * <p>Mask: an {@link ObjectMask} (null = every object real). Padded objects contribute nothing, even
 * where {@code A} is nonzero on their rows (ban-vqa's softmax gives them zero attention; here the rule
 * does not depend on that), and their rows of {@code ∂L/∂A} and {@code ∂L/∂X''} are zero. A sample
 * without any real object pools to zeros and gets zero gradients. Tokens are not masked.
 *
 * <p>Shapes, row-major: {@code attention} {@code B × N × M}, {@code x} {@code B × N × K'}, {@code y}
 * {@code B × M × K'}, output {@code B × K'/k}. Any {@code B, N, M >= 1}. The CUDA form
 * ({@code BanPoolingCuda}) also takes row strides and a per-sample stride of the attention maps, so that it
 * reads one glimpse of a {@code B × G × N × M} tensor and column slices of wider projections in place.
 *
 * <p>Backends ({@link Backend}): {@code io.bifuse.cpu.BanPoolingCpu}, float32 on the CPU (per-sample GEMMs,
 * multithreaded, bitwise the same for every thread count; {@code cpu-fp32}); and
 * {@code io.bifuse.cuda.BanPoolingCuda}.
 */
public final class BanPooling implements Op<BanPooling.Backend> {
    /**
     * What every backend of this op offers on host arrays ({@code BanPoolingCpu} in io.bifuse.cpu,
     * {@code BanPoolingCuda} in io.bifuse.cuda): the forward {@code attention (B × N × M)},
     * {@code x (B × N × K')}, {@code y (B × M × K')} → {@code B × K'/k} ({@code mask} null: every object is
     * real), and the gradients of the three inputs given {@code gradOut = ∂L/∂f} ({@code B × K'/k}).
     */
    public interface Backend extends OpBackend {
        float[] forward(float[] attention, float[] x, float[] y, ObjectMask mask, int batch, int objects, int tokens);
        Gradients backward(float[] attention, float[] x, float[] y, ObjectMask mask, float[] gradOut, int batch, int objects, int tokens);

        /** The descriptor this backend runs. */
        BanPooling op();

        /**
         * The forward over views of the caller's memory ({@link FloatView}: part of a float[], a
         * FloatBuffer, a MemorySegment): attention (B × N × M), x (B × N × K'), y (B × M × K') → out (B × K'/k), {@code out} written, nothing returned. Every length is
         * checked, by name, before anything runs; inputs that are not one whole array are copied once,
         * and the result is copied into {@code out}.
         */
        default void forward(FloatView attention, FloatView x, FloatView y, ObjectMask mask, FloatView out, int batch, int objects, int tokens) {
            FloatView.requireLength("out", out, (long) batch * op().outWidth());
            float[] r = forward(FloatView.input("attention", attention, (long) batch * objects * tokens), FloatView.input("x", x, (long) batch * objects * op().width()), FloatView.input("y", y, (long) batch * tokens * op().width()), mask, batch, objects, tokens);
            out.copyFrom(r, 0, r.length);
        }
    }

    @Override public Class<Backend> backendType() { return Backend.class; }

    private final int width, group;

    private BanPooling(int width, int group) {
        this.width = width;
        this.group = group;
    }

    /**
     * Gradients of a loss with respect to the three inputs, in their layouts: {@code da}
     * {@code B × N × M}, {@code dx} {@code B × N × K'}, {@code dy} {@code B × M × K'}.
     */
    public record Gradients(float[] da, float[] dx, float[] dy) {
        /** The tensors in the order of {@link #NAMES}. */
        public List<float[]> tensors() { return List.of(da, dx, dy); }

        /** The names of {@link #tensors()}. */
        public static final List<String> NAMES = List.of("da", "dx", "dy");
    }

    /**
     * Pooling of projections of width {@code width} (K') summed in groups of {@code group} (k)
     * adjacent units: the output has {@code width / group} units per sample.
     */
    public static BanPooling of(int width, int group) {
        if (width < 1) throw new IllegalArgumentException("width: expected K' >= 1 units, got " + width);
        if (group < 1) throw new IllegalArgumentException("group: expected k >= 1 units per pooled group, got " + group);
        if (width % group != 0) {
            throw new IllegalArgumentException("group: expected a divisor of width " + width + " (ban-vqa's AvgPool1d would drop "
                    + width % group + " units; bifuse rejects it), got " + group);
        }
        return new BanPooling(width, group);
    }

    /** K', the width of the projections. */
    public int width() { return width; }
    /** k, the number of adjacent units summed into one output unit. */
    public int group() { return group; }
    /** K'/k, the output units per sample. */
    public int outWidth() { return width / group; }

    /** Checks the sizes alone: {@code batch, objects, tokens >= 1}, and every tensor's element count below 2^31. */
    public void checkSizes(int batch, int objects, int tokens) {
        if (batch < 1) throw new IllegalArgumentException("batch: expected >= 1 samples, got " + batch);
        if (objects < 1) throw new IllegalArgumentException("objects: expected N >= 1 objects per sample, got " + objects);
        if (tokens < 1) throw new IllegalArgumentException("tokens: expected M >= 1 tokens per sample, got " + tokens);
        long maps = (long) batch * objects * tokens, xs = (long) batch * objects * width, ys = (long) batch * tokens * width;
        if (Math.max(maps, Math.max(xs, ys)) > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("batch: expected B·N·M, B·N·K' and B·M·K' < 2^31, got B = " + batch + ", N = " + objects
                    + ", M = " + tokens + ", K' = " + width);
        }
    }

    /** Checks host inputs by name; every CPU entry point calls it before any work. */
    public void checkInputs(float[] attention, float[] x, float[] y, ObjectMask mask, int batch, int objects, int tokens) {
        checkSizes(batch, objects, tokens);
        checkLength("attention", attention, batch, objects, tokens, "B × N × M");
        checkLength("x", x, batch, objects, width, "B × N × K'");
        checkLength("y", y, batch, tokens, width, "B × M × K'");
        if (mask != null) mask.requireShape("mask", batch, objects);
    }

    private static void checkLength(String name, float[] a, int batch, int rows, int cols, String dims) {
        long n = (long) batch * rows * cols;
        String shape = batch + " × " + rows + " × " + cols;
        if (a == null) throw new IllegalArgumentException(name + ": expected " + dims + " = " + shape + " floats, got null");
        if (a.length != n) throw new IllegalArgumentException(name + ": expected " + dims + " = " + shape + " = " + n + " floats, got " + a.length);
    }

    @Override public boolean equals(Object o) { return o instanceof BanPooling p && p.width == width && p.group == group; }

    @Override public int hashCode() { return 31 * width + group; }

    @Override public String toString() { return "BanPooling[K'=" + width + ", k=" + group + "]"; }
}
