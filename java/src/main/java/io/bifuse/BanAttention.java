package io.bifuse;

import java.util.ArrayList;
import java.util.List;

/**
 * The attention maps of bilinear attention networks (BAN; Kim, Jun and Zhang 2018, jnhwkim/ban-vqa's
 * {@code BiAttention}): an immutable op descriptor.
 *
 * <p>Math, per sample {@code b} and glimpse {@code g < G}, with {@code X'} the projected objects and
 * {@code Y'} the projected question tokens (both of width {@code K}; in ban-vqa they are ReLU outputs of
 * weight-normed linear layers, which this op takes as given):
 * <pre>
 *   logits[b,g,i,j] = Σ_k p[g,k]·X'[b,i,k]·Y'[b,j,k] + bias[g]      object i real
 *   logits[b,g,i,j] = −inf                                           object i padding (the mask)
 *   A[b,g]          = softmax over the FLATTENED N·M map of logits[b,g]  (not per row)
 * </pre>
 * {@code p} is the layer's weight ({@code G × K}, the EFFECTIVE weight: ban-vqa's {@code h_mat} after
 * weight normalization, {@code W = g·V/‖V‖}), {@code bias} its bias ({@code h_bias}, optional). A
 * per-glimpse constant does not change a softmax: the bias shifts the logits but not the maps, and its
 * gradient is exactly zero ({@code Σ_{i,j} ∂L/∂logits = 0}); it is returned as exact zeros. Question
 * tokens are never masked.
 *
 * <p>Masked objects ({@link ObjectMask}; null = every object real) get logit {@code −inf} and attention
 * exactly 0, and their rows of {@code dxp} are 0. A sample with NO real object gets the documented
 * all-zero map (its logits are all {@code −inf}), and zero gradients, where ban-vqa's softmax over nothing
 * but {@code −inf} gives NaN ({@link ObjectMask#emptySamples()} lets a caller reject such batches).
 *
 * <p>Shapes, row-major: {@code xp} {@code B × N × K} (object {@code i} of sample {@code b} at
 * {@code (b·N + i)·K}), {@code yp} {@code B × M × K}; attention and logits {@code B × G × N × M}.
 * Backward takes {@code gradAttention = ∂L/∂A} ({@code B × G × N × M}; its entries at padded objects are
 * never read) and returns {@code dxp}, {@code dyp} and the layer's gradients ({@link Gradients}):
 * <pre>
 *   dl        = A ⊙ (dA − Σ_{i,j} A·dA)                     per (b, g): the softmax Jacobian
 *   dxp[b,i,k] = Σ_g p[g,k] Σ_j dl[b,g,i,j]·Y'[b,j,k],    dyp[b,j,k] = Σ_g p[g,k] Σ_i dl[b,g,i,j]·X'[b,i,k]
 *   dp[g,k]   = Σ_b Σ_i Σ_j dl[b,g,i,j]·X'[b,i,k]·Y'[b,j,k],    dbias = 0
 * </pre>
 * Any {@code B, N, M, K >= 1}; {@code 1 <= G <=} {@value #MAX_GLIMPSES} (ban-vqa's {@code h_mat} path).
 * ban-vqa's sizes: N = 10..100 objects padded to 36 or 100, M = 14 tokens, K = 3840, G = 8.
 *
 * <p>Backends ({@link Backend}): {@code io.bifuse.cpu.BanAttentionCpu}, float32 on the CPU (all glimpses' logits in one GEMM per sample,
 * multithreaded, bitwise the same for every thread count; {@code cpu-fp32}); and
 * {@code io.bifuse.cuda.BanAttentionCuda} (FP32, its own kernels: no GEMM, so no {@link Precision} to choose).
 */
public final class BanAttention implements Op<BanAttention.Backend> {
    /**
     * What every backend of this op offers on host arrays ({@code BanAttentionCpu} in io.bifuse.cpu,
     * {@code BanAttentionCuda} in io.bifuse.cuda): the attention maps and logits of {@code xp}
     * ({@code B × N × K}) and {@code yp} ({@code B × M × K}) ({@code mask} null: every object is real),
     * and every gradient given {@code gradAttention = ∂L/∂A} ({@code B × G × N × M}).
     */
    public interface Backend extends OpBackend {
        Result forward(float[] xp, float[] yp, ObjectMask mask, int batch, int objects, int tokens);
        Gradients backward(float[] xp, float[] yp, ObjectMask mask, float[] gradAttention, int batch, int objects, int tokens);

        /** The descriptor this backend runs. */
        BanAttention op();

        /**
         * The forward over views of the caller's memory ({@link FloatView}: part of a float[], a
         * FloatBuffer, a MemorySegment): xp (B × N × K), yp (B × M × K) → the attention maps
         * {@code attention} (B × G × N × M) written, nothing returned. Every length is checked, by name,
         * before anything runs; inputs that are not one whole array are copied once, and the maps are
         * copied into {@code attention}.
         */
        default void forward(FloatView xp, FloatView yp, ObjectMask mask, FloatView attention, int batch, int objects, int tokens) {
            FloatView.requireLength("attention", attention, (long) batch * op().glimpses() * objects * tokens);
            float[] r = forward(FloatView.input("xp", xp, (long) batch * objects * op().width()), FloatView.input("yp", yp,
                    (long) batch * tokens * op().width()), mask, batch, objects, tokens).attention();
            attention.copyFrom(r, 0, r.length);
        }
    }

    @Override public Class<Backend> backendType() { return Backend.class; }

    /** The most glimpses: ban-vqa's bilinear {@code h_mat} path is used for G <= 32; the CUDA backward keeps per-glimpse sums in registers. */
    public static final int MAX_GLIMPSES = 32;

    /** Attention maps ({@code B × G × N × M}) and their logits (same shape, {@code −inf} at padded objects). */
    public record Result(float[] attention, float[] logits) {}

    /**
     * Gradients: {@code dxp} ({@code B × N × K}, zero rows at padded objects), {@code dyp}
     * ({@code B × M × K}), and the logits layer's ({@code weight} {@code G × K}; {@code bias} {@code G},
     * exact zeros, null when the layer has none). Written, not accumulated.
     */
    public record Gradients(float[] dxp, float[] dyp, LinearGradients logits) {
        /** dxp, dyp, logits.weight, then logits.bias if any: the order of {@link #gradientNames()}. */
        public List<float[]> tensors() {
            List<float[]> t = new ArrayList<>(List.of(dxp, dyp, logits.weight()));
            if (logits.bias() != null) t.add(logits.bias());
            return t;
        }
    }

    private final Linear logits;

    private BanAttention(Linear logits) { this.logits = logits; }

    /**
     * The op with this logits layer: weight {@code G × K} is {@code p} (the effective, already
     * weight-normed {@code h_mat}), bias {@code G} ({@code h_bias}) or none.
     */
    public static BanAttention of(Linear logits) {
        Linear.require("logits", logits);
        if (logits.out() > MAX_GLIMPSES) {
            throw new IllegalArgumentException("logits: expected at most " + MAX_GLIMPSES + " glimpses (outputs), got " + logits.out());
        }
        return new BanAttention(logits);
    }

    /** A logits layer initialized as {@code nn.Linear} does ({@code Linear.random(G, K, true, seed)}), with a bias. */
    public static BanAttention random(int glimpses, int width, long seed) {
        if (glimpses < 1) throw new IllegalArgumentException("glimpses: expected >= 1, got " + glimpses);
        if (glimpses > MAX_GLIMPSES) throw new IllegalArgumentException("glimpses: expected at most " + MAX_GLIMPSES + ", got " + glimpses);
        if (width < 1) throw new IllegalArgumentException("width: expected >= 1, got " + width);
        return of(Linear.random(glimpses, width, true, seed));
    }

    /** The logits layer ({@code p} and {@code h_bias}). */
    public Linear logits() { return logits; }
    /** G, the number of glimpses (attention maps per sample). */
    public int glimpses() { return logits.out(); }
    /** K, the width of {@code X'} and {@code Y'}. */
    public int width() { return logits.in(); }

    /** The names of the tensors of {@link Gradients#tensors()}, in the same order. */
    public List<String> gradientNames() {
        List<String> n = new ArrayList<>(List.of("dxp", "dyp", "logits.weight"));
        if (logits.hasBias()) n.add("logits.bias");
        return n;
    }

    /** Checks host inputs by name; every CPU entry point calls it before any work. */
    public void checkInputs(float[] xp, float[] yp, ObjectMask mask, int batch, int objects, int tokens) {
        checkSizes(batch, objects, tokens);
        checkRows("xp", xp, batch, objects, "objects");
        checkRows("yp", yp, batch, tokens, "tokens");
        if (mask != null) mask.requireShape("mask", batch, objects);
    }

    /**
     * Checks the call sizes by name: each {@code >= 1}, and every tensor of the call addressable with
     * int indices ({@code B·N·K}, {@code B·M·K}, {@code B·G·N·M} <= {@value Integer#MAX_VALUE}).
     */
    public void checkSizes(int batch, int objects, int tokens) {
        positive("batch", batch);
        positive("objects", objects);
        positive("tokens", tokens);
        long k = width(), maps = (long) batch * glimpses() * objects * tokens;
        if ((long) batch * objects * k > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("objects: expected batch·objects·K <= " + Integer.MAX_VALUE + ", got " + (long) batch * objects * k);
        }
        if ((long) batch * tokens * k > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("tokens: expected batch·tokens·K <= " + Integer.MAX_VALUE + ", got " + (long) batch * tokens * k);
        }
        if (maps > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("batch, objects, tokens: expected batch·G·objects·tokens <= " + Integer.MAX_VALUE + ", got " + maps);
        }
    }

    /** {@code a} holds {@code batch × G × objects × tokens} floats (a map-shaped tensor), named {@code name}. */
    public void checkMaps(String name, float[] a, int batch, int objects, int tokens) {
        long n = (long) batch * glimpses() * objects * tokens;
        String shape = batch + " × " + glimpses() + " × " + objects + " × " + tokens;
        if (a == null) throw new IllegalArgumentException(name + ": expected " + shape + " floats (batch × G × objects × tokens), got null");
        if (a.length != n) {
            throw new IllegalArgumentException(name + ": expected " + shape + " = " + n + " floats (batch × G × objects × tokens), got " + a.length);
        }
    }

    private void checkRows(String name, float[] a, int batch, int rows, String what) {
        long n = (long) batch * rows * width();
        String shape = batch + " × " + rows + " × " + width();
        if (a == null) throw new IllegalArgumentException(name + ": expected " + shape + " floats (batch × " + what + " × K), got null");
        if (a.length != n) {
            String hint = a.length % ((long) batch * rows) == 0 && a.length > 0
                    ? " (width " + a.length / ((long) batch * rows) + " instead of the layer's K = " + width() + "?)" : "";
            throw new IllegalArgumentException(name + ": expected " + shape + " = " + n + " floats (batch × " + what + " × K), got "
                    + a.length + hint);
        }
    }

    private static void positive(String name, int v) {
        if (v < 1) throw new IllegalArgumentException(name + ": expected >= 1, got " + v);
    }

    @Override public boolean equals(Object o) { return o instanceof BanAttention b && logits.equals(b.logits); }

    @Override public int hashCode() { return logits.hashCode(); }

    @Override public String toString() {
        return "BanAttention[G=" + glimpses() + ", K=" + width() + (logits.hasBias() ? "" : ", no bias") + "]";
    }
}
