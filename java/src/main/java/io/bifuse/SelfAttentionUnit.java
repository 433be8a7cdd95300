package io.bifuse;

import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

/**
 * MCAN's self-attention unit (SA; mcan-vqa's {@code SA} module): an immutable op descriptor. Post-norm
 * residual blocks over a sequence {@code x} of {@code L} rows of width {@code H}:
 * <pre>
 *   y   = LN1(x + MHA(x, x, x, mask))                            the attention step ({@link MultiHeadAttention})
 *   out = LN2(y + W2 relu(W1 y + b1) + b2)                        the feed-forward step (H → F → H)
 * </pre>
 * with the {@link LayerNorm} variant of the op (mcan-vqa's own by default: unbiased std, eps 1e-6 outside the
 * root) and the keys' {@code mask} (an {@link ObjectMask} over the L rows, null: none) as
 * {@link MultiHeadAttention} applies it. Dropout (training only) is identity here.
 *
 * <p>Shapes, row-major: {@code x} and the output {@code B × L × H}. Backward takes {@code gradOut} and returns
 * the gradient of {@code x} and of every parameter ({@link Gradients}). MCAN's sizes: H = 512, 8 heads,
 * F = 2048, L = 14 (question) or 100 (image).
 *
 * <p>Weights ({@link Weights}): the attention's four layers (H × H each, {@link MultiHeadAttention.Weights}),
 * {@code ffnHidden} F × H and {@code ffnOut} H × F ({@link Linear}, nn.Linear layout), and the two
 * normalizations' gains and biases. In mcan-vqa's state dict: {@code mhatt.linear_{q,k,v,merge}},
 * {@code ffn.mlp.fc.linear}, {@code ffn.mlp.linear}, {@code norm1.a_2 / b_2}, {@code norm2.a_2 / b_2}
 * ({@link #STATE_DICT_NAMES}).
 *
 * <p>Backends ({@link Backend}): {@code io.bifuse.cpu.SelfAttentionUnitCpu}, the float64 definition rounded to
 * float; and {@code io.bifuse.cuda.SelfAttentionUnitCuda}.
 */
public final class SelfAttentionUnit implements Op<SelfAttentionUnit.Backend> {
    /** What every backend offers on host arrays: {@code x (B × L × H)} → {@code B × L × H}, and every gradient, written. */
    public interface Backend extends OpBackend {
        float[] forward(float[] x, ObjectMask mask, int batch, int tokens);
        Gradients backward(float[] x, ObjectMask mask, float[] gradOut, int batch, int tokens);

        /** The descriptor this backend runs. */
        SelfAttentionUnit op();

        /**
         * The forward over views of the caller's memory ({@link FloatView}: part of a float[], a
         * FloatBuffer, a MemorySegment): x (B × L × H) → out (B × L × H), {@code out} written, nothing returned. Every length is
         * checked, by name, before anything runs; inputs that are not one whole array are copied once,
         * and the result is copied into {@code out}.
         */
        default void forward(FloatView x, ObjectMask mask, FloatView out, int batch, int tokens) {
            FloatView.requireLength("out", out, (long) batch * tokens * op().hidden());
            float[] r = forward(FloatView.input("x", x, (long) batch * tokens * op().hidden()), mask, batch, tokens);
            out.copyFrom(r, 0, r.length);
        }
    }

    @Override public Class<Backend> backendType() { return Backend.class; }

    /** mcan-vqa's names of the tensors of {@link #gradientNames()} after {@code dx}, in the same order. */
    public static final List<String> STATE_DICT_NAMES = List.of("mhatt.linear_q.weight", "mhatt.linear_q.bias", "mhatt.linear_k.weight",
            "mhatt.linear_k.bias", "mhatt.linear_v.weight", "mhatt.linear_v.bias", "mhatt.linear_merge.weight", "mhatt.linear_merge.bias",
            "ffn.mlp.fc.linear.weight", "ffn.mlp.fc.linear.bias", "ffn.mlp.linear.weight", "ffn.mlp.linear.bias", "norm1.a_2", "norm1.b_2",
            "norm2.a_2", "norm2.b_2");

    /**
     * The parameters, validated against each other by name: the attention fixes H (its input, hidden and
     * output widths must all be H), {@code ffnHidden} is F × H, {@code ffnOut} H × F, each norm has H entries.
     */
    public record Weights(MultiHeadAttention.Weights attention, Linear ffnHidden, Linear ffnOut, LayerNorm.Affine norm1, LayerNorm.Affine norm2) {
        public Weights {
            int h = requireSquare("attention", attention, -1);
            requireFeedForward(ffnHidden, ffnOut, h);
            requireNorm("norm1", norm1, h);
            requireNorm("norm2", norm2, h);
        }
    }

    /** An attention's four layers all {@code H × H} ({@code h}, or the query layer's width when {@code h < 0}); returns H. */
    static int requireSquare(String name, MultiHeadAttention.Weights a, int h) {
        if (a == null) throw new IllegalArgumentException(name + ": expected MultiHeadAttention.Weights, got null");
        int w = h < 0 ? a.query().out() : h;
        for (Linear l : a.layers()) {
            if (l.in() != w || l.out() != w) {
                throw new IllegalArgumentException(name + ": expected four " + w + " × " + w + " layers (H), got a layer " + l.in() + " → " + l.out());
            }
        }
        return w;
    }

    /** {@code ffnHidden} F × H and {@code ffnOut} H × F. */
    static void requireFeedForward(Linear ffnHidden, Linear ffnOut, int h) {
        Linear.require("ffnHidden", ffnHidden);
        if (ffnHidden.in() != h) throw new IllegalArgumentException("ffnHidden: expected " + h + " inputs (H), got a layer " + ffnHidden.in() + " → " + ffnHidden.out());
        Linear.require("ffnOut", ffnOut).requireShape("ffnOut", h, ffnHidden.out());
    }

    static void requireNorm(String name, LayerNorm.Affine n, int h) {
        if (n == null) throw new IllegalArgumentException(name + ": expected LayerNorm.Affine of " + h + " gains and biases, got null");
        if (n.width() != h) throw new IllegalArgumentException(name + ": expected " + h + " gains and biases (H), got " + n.width());
    }

    /**
     * Gradients of a loss with respect to {@code x} ({@code B × L × H}) and every parameter: the attention's
     * layers (its {@code key.bias} exactly zero, see {@link MultiHeadAttention.Gradients}), the feed-forward
     * layers, and each normalization's gain (as {@code weight}) and bias.
     */
    public record Gradients(float[] dx, MultiHeadAttention.Gradients attention, LinearGradients ffnHidden, LinearGradients ffnOut,
                            LinearGradients norm1, LinearGradients norm2) {
        /** dx, then the tensors named by {@link #gradientNames}. */
        public List<float[]> tensors() {
            List<float[]> t = new ArrayList<>(List.of(dx));
            for (LinearGradients l : List.of(attention.query(), attention.key(), attention.value(), attention.merge(), ffnHidden, ffnOut, norm1, norm2)) {
                t.add(l.weight());
                if (l.bias() != null) t.add(l.bias());
            }
            return t;
        }
    }

    private final Weights weights;
    private final MultiHeadAttention attention;
    private final LayerNorm norm;

    private SelfAttentionUnit(Weights weights, MultiHeadAttention attention, LayerNorm norm) {
        this.weights = weights;
        this.attention = attention;
        this.norm = norm;
    }

    /** The unit with these weights, {@code heads} attention heads and the normalization {@code norm}. */
    public static SelfAttentionUnit of(Weights weights, int heads, LayerNorm norm) {
        if (weights == null) throw new IllegalArgumentException("weights: expected SelfAttentionUnit.Weights, got null");
        if (norm == null) throw new IllegalArgumentException("norm: expected a LayerNorm (LayerNorm.mcan() for mcan-vqa's), got null");
        if (norm.variant() == LayerNorm.Variant.MCAN && weights.attention().query().out() < 2) {
            throw new IllegalArgumentException("norm: the MCAN variant's unbiased std needs H >= 2, got H = " + weights.attention().query().out());
        }
        return new SelfAttentionUnit(weights, MultiHeadAttention.of(weights.attention(), heads), norm);
    }

    /**
     * Layers as nn.Linear initializes them (attention layer i from {@code seed + i}, the feed-forward layers
     * from {@code seed + 4, + 5}), the norms' gains {@code 1 + 0.1 N(0, 1)} and biases {@code 0.1 N(0, 1)}
     * (not the modules' 1 and 0, so that a test sees a swapped gain or bias), from {@code seed + 6}.
     */
    public static SelfAttentionUnit random(int hidden, int heads, int ffn, LayerNorm norm, long seed) {
        if (ffn < 1) throw new IllegalArgumentException("ffn: expected >= 1, got " + ffn);
        MultiHeadAttention a = MultiHeadAttention.random(hidden, hidden, heads, seed);
        SplittableRandom r = new SplittableRandom(seed + 6);
        return of(new Weights(a.weights(), Linear.random(ffn, hidden, true, seed + 4), Linear.random(hidden, ffn, true, seed + 5), randomNorm(r, hidden),
                randomNorm(r, hidden)), heads, norm);
    }

    static LayerNorm.Affine randomNorm(SplittableRandom r, int h) {
        float[] g = new float[h], b = new float[h];
        for (int i = 0; i < h; i++) {
            g[i] = (float) (1 + 0.1 * r.nextGaussian());
            b[i] = (float) (0.1 * r.nextGaussian());
        }
        return new LayerNorm.Affine(g, b);
    }

    public Weights weights() { return weights; }
    /** The attention step as its own op (same weights). */
    public MultiHeadAttention attention() { return attention; }
    public LayerNorm norm() { return norm; }
    public int hidden() { return attention.hidden(); }
    public int heads() { return attention.heads(); }
    /** F, the feed-forward layer's width. */
    public int ffn() { return weights.ffnHidden().out(); }

    /** The names of the tensors of {@link Gradients#tensors()}, in the same order. */
    public List<String> gradientNames() {
        List<String> n = new ArrayList<>(List.of("dx"));
        for (String a : attention.gradientNames().subList(3, attention.gradientNames().size())) n.add("attention." + a);
        for (String l : List.of("ffnHidden", "ffnOut")) {
            n.add(l + ".weight");
            if ((l.equals("ffnHidden") ? weights.ffnHidden() : weights.ffnOut()).hasBias()) n.add(l + ".bias");
        }
        n.addAll(List.of("norm1.gain", "norm1.bias", "norm2.gain", "norm2.bias"));
        return n;
    }

    /** Checks host inputs; every entry point calls it before any work. */
    public void checkInputs(float[] x, ObjectMask mask, int batch, int tokens) {
        checkSizes(batch, tokens);
        CompactBilinear.checkLength("x", x, batch * tokens, hidden());
        if (mask != null) mask.requireShape("mask", batch, tokens);
    }

    /** {@code batch, tokens >= 1} and {@code B·L} an int. */
    public static void checkSizes(int batch, int tokens) {
        if (batch < 1) throw new IllegalArgumentException("batch: expected >= 1, got " + batch);
        if (tokens < 1) throw new IllegalArgumentException("tokens: expected >= 1, got " + tokens);
        if ((long) batch * tokens > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("batch, tokens: expected batch·tokens <= " + Integer.MAX_VALUE + ", got " + (long) batch * tokens);
        }
    }

    /** Checks {@code gradOut} ({@code B × L × H}). */
    public void checkGradOut(float[] gradOut, int batch, int tokens) {
        CompactBilinear.checkLength("gradOut", gradOut, batch * tokens, hidden());
    }

    @Override public String toString() {
        return "SelfAttentionUnit[H=" + hidden() + ", heads=" + heads() + ", F=" + ffn() + ", " + norm.variant() + " eps=" + norm.eps() + "]";
    }
}
