package io.bifuse;

import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

/**
 * MCAN's guided-attention unit (GA; mcan-vqa's {@code SGA} module): an immutable op descriptor. Post-norm
 * residual blocks over a sequence {@code x} ({@code Lx} rows of width H, e.g. the image objects) guided by a
 * sequence {@code y} ({@code Ly} rows of width H, e.g. the question's final encoding):
 * <pre>
 *   x1  = LN1(x + MHA1(x, x, x, xMask))                    self-attention ({@link MultiHeadAttention})
 *   x2  = LN2(x1 + MHA2(q = x1, k = v = y, yMask))          guided attention: x attends to y
 *   out = LN3(x2 + W2 relu(W1 x2 + b1) + b2)                feed-forward (H → F → H)
 * </pre>
 * with the op's {@link LayerNorm} variant (mcan-vqa's by default) and the two sequences' padding masks
 * ({@link ObjectMask}s over their rows, null: none) as {@link MultiHeadAttention} applies them. Dropout is
 * identity here.
 *
 * <p>Shapes, row-major: {@code x} and the output {@code B × Lx × H}, {@code y} {@code B × Ly × H}. Backward
 * takes {@code gradOut} and returns the gradients of {@code x}, of {@code y} and of every parameter
 * ({@link Gradients}). MCAN's sizes: H = 512, 8 heads, F = 2048, Lx = 100 objects, Ly = 14 tokens.
 *
 * <p>Weights ({@link Weights}): the two attentions' layers (H × H each), {@code ffnHidden} F × H,
 * {@code ffnOut} H × F, and three normalizations; in mcan-vqa's state dict {@code mhatt1.*}, {@code mhatt2.*},
 * {@code ffn.mlp.fc.linear}, {@code ffn.mlp.linear}, {@code norm1..3.a_2 / b_2} ({@link #STATE_DICT_NAMES}).
 *
 * <p>Backends ({@link Backend}): {@code io.bifuse.cpu.GuidedAttentionUnitCpu}, the float64 definition rounded to
 * float; and {@code io.bifuse.cuda.GuidedAttentionUnitCuda}.
 */
public final class GuidedAttentionUnit implements Op<GuidedAttentionUnit.Backend> {
    /** What every backend offers on host arrays: {@code x (B × Lx × H)}, {@code y (B × Ly × H)} → {@code B × Lx × H}, and every gradient, written. */
    public interface Backend extends OpBackend {
        float[] forward(float[] x, ObjectMask xMask, float[] y, ObjectMask yMask, int batch, int xTokens, int yTokens);
        Gradients backward(float[] x, ObjectMask xMask, float[] y, ObjectMask yMask, float[] gradOut, int batch, int xTokens, int yTokens);

        /** The descriptor this backend runs. */
        GuidedAttentionUnit op();

        /**
         * The forward over views of the caller's memory ({@link FloatView}: part of a float[], a
         * FloatBuffer, a MemorySegment): x (B × Lx × H), y (B × Ly × H) → out (B × Lx × H), {@code out} written, nothing returned. Every length is
         * checked, by name, before anything runs; inputs that are not one whole array are copied once,
         * and the result is copied into {@code out}.
         */
        default void forward(FloatView x, ObjectMask xMask, FloatView y, ObjectMask yMask, FloatView out, int batch, int xTokens, int yTokens) {
            FloatView.requireLength("out", out, (long) batch * xTokens * op().hidden());
            float[] r = forward(FloatView.input("x", x, (long) batch * xTokens * op().hidden()), xMask, FloatView.input("y", y, (long) batch * yTokens * op().hidden()), yMask, batch, xTokens, yTokens);
            out.copyFrom(r, 0, r.length);
        }
    }

    @Override public Class<Backend> backendType() { return Backend.class; }

    /** mcan-vqa's names of the parameter tensors of {@link #gradientNames()} (after dx, dy), in the same order. */
    public static final List<String> STATE_DICT_NAMES;

    static {
        List<String> n = new ArrayList<>();
        for (String m : List.of("mhatt1", "mhatt2")) {
            for (String l : MultiHeadAttention.STATE_DICT_NAMES) n.addAll(List.of(m + "." + l + ".weight", m + "." + l + ".bias"));
        }
        n.addAll(List.of("ffn.mlp.fc.linear.weight", "ffn.mlp.fc.linear.bias", "ffn.mlp.linear.weight", "ffn.mlp.linear.bias"));
        for (int i = 1; i <= 3; i++) n.addAll(List.of("norm" + i + ".a_2", "norm" + i + ".b_2"));
        STATE_DICT_NAMES = List.copyOf(n);
    }

    /** The parameters, validated by name: both attentions H × H throughout, the feed-forward and the norms as {@link SelfAttentionUnit.Weights}'s. */
    public record Weights(MultiHeadAttention.Weights selfAttention, MultiHeadAttention.Weights guidedAttention, Linear ffnHidden, Linear ffnOut,
                          LayerNorm.Affine norm1, LayerNorm.Affine norm2, LayerNorm.Affine norm3) {
        public Weights {
            int h = SelfAttentionUnit.requireSquare("selfAttention", selfAttention, -1);
            SelfAttentionUnit.requireSquare("guidedAttention", guidedAttention, h);
            SelfAttentionUnit.requireFeedForward(ffnHidden, ffnOut, h);
            SelfAttentionUnit.requireNorm("norm1", norm1, h);
            SelfAttentionUnit.requireNorm("norm2", norm2, h);
            SelfAttentionUnit.requireNorm("norm3", norm3, h);
        }
    }

    /**
     * Gradients with respect to {@code x}, {@code y} and every parameter: the two attentions' layers (each
     * {@code key.bias} exactly zero, see {@link MultiHeadAttention.Gradients}; their input gradients are folded
     * into dx and dy and left null), the feed-forward layers, and each normalization's gain (as weight) and bias.
     */
    public record Gradients(float[] dx, float[] dy, MultiHeadAttention.Gradients selfAttention, MultiHeadAttention.Gradients guidedAttention,
                            LinearGradients ffnHidden, LinearGradients ffnOut, LinearGradients norm1, LinearGradients norm2, LinearGradients norm3) {
        /** dx, dy, then the tensors named by {@link #gradientNames}. */
        public List<float[]> tensors() {
            List<float[]> t = new ArrayList<>(List.of(dx, dy));
            List<LinearGradients> l = new ArrayList<>(List.of(selfAttention.query(), selfAttention.key(), selfAttention.value(), selfAttention.merge(),
                    guidedAttention.query(), guidedAttention.key(), guidedAttention.value(), guidedAttention.merge(), ffnHidden, ffnOut, norm1, norm2, norm3));
            for (LinearGradients g : l) {
                t.add(g.weight());
                if (g.bias() != null) t.add(g.bias());
            }
            return t;
        }
    }

    private final Weights weights;
    private final MultiHeadAttention selfAttention, guidedAttention;
    private final LayerNorm norm;

    private GuidedAttentionUnit(Weights weights, MultiHeadAttention selfAttention, MultiHeadAttention guidedAttention, LayerNorm norm) {
        this.weights = weights;
        this.selfAttention = selfAttention;
        this.guidedAttention = guidedAttention;
        this.norm = norm;
    }

    /** The unit with these weights, {@code heads} heads in both attentions and the normalization {@code norm}. */
    public static GuidedAttentionUnit of(Weights weights, int heads, LayerNorm norm) {
        if (weights == null) throw new IllegalArgumentException("weights: expected GuidedAttentionUnit.Weights, got null");
        SelfAttentionUnit.of(new SelfAttentionUnit.Weights(weights.selfAttention(), weights.ffnHidden(), weights.ffnOut(), weights.norm1(), weights.norm3()),
                heads, norm); // the same checks of heads and norm
        return new GuidedAttentionUnit(weights, MultiHeadAttention.of(weights.selfAttention(), heads), MultiHeadAttention.of(weights.guidedAttention(), heads),
                norm);
    }

    /**
     * The self-attention layers from {@code seed + 0..3}, the guided ones from {@code seed + 10..13}, the
     * feed-forward layers from {@code seed + 4, + 5} (nn.Linear's initialization), the norms' gains
     * {@code 1 + 0.1 N(0, 1)} and biases {@code 0.1 N(0, 1)} from {@code seed + 6}.
     */
    public static GuidedAttentionUnit random(int hidden, int heads, int ffn, LayerNorm norm, long seed) {
        SelfAttentionUnit sa = SelfAttentionUnit.random(hidden, heads, ffn, norm, seed);
        SplittableRandom r = new SplittableRandom(seed + 7);
        SelfAttentionUnit.Weights w = sa.weights();
        return of(new Weights(w.attention(), MultiHeadAttention.random(hidden, hidden, heads, seed + 10).weights(), w.ffnHidden(), w.ffnOut(), w.norm1(),
                SelfAttentionUnit.randomNorm(r, hidden), w.norm2()), heads, norm);
    }

    public Weights weights() { return weights; }
    public MultiHeadAttention selfAttention() { return selfAttention; }
    public MultiHeadAttention guidedAttention() { return guidedAttention; }
    public LayerNorm norm() { return norm; }
    public int hidden() { return selfAttention.hidden(); }
    public int heads() { return selfAttention.heads(); }
    public int ffn() { return weights.ffnHidden().out(); }

    /** The names of the tensors of {@link Gradients#tensors()}, in the same order. */
    public List<String> gradientNames() {
        List<String> n = new ArrayList<>(List.of("dx", "dy"));
        for (String a : selfAttention.gradientNames().subList(3, selfAttention.gradientNames().size())) n.add("selfAttention." + a);
        for (String a : guidedAttention.gradientNames().subList(3, guidedAttention.gradientNames().size())) n.add("guidedAttention." + a);
        n.add("ffnHidden.weight");
        if (weights.ffnHidden().hasBias()) n.add("ffnHidden.bias");
        n.add("ffnOut.weight");
        if (weights.ffnOut().hasBias()) n.add("ffnOut.bias");
        for (int i = 1; i <= 3; i++) n.addAll(List.of("norm" + i + ".gain", "norm" + i + ".bias"));
        return n;
    }

    /** Checks host inputs; every entry point calls it before any work. */
    public void checkInputs(float[] x, ObjectMask xMask, float[] y, ObjectMask yMask, int batch, int xTokens, int yTokens) {
        checkSizes(batch, xTokens, yTokens);
        CompactBilinear.checkLength("x", x, batch * xTokens, hidden());
        if (xMask != null) xMask.requireShape("xMask", batch, xTokens);
        CompactBilinear.checkLength("y", y, batch * yTokens, hidden());
        if (yMask != null) yMask.requireShape("yMask", batch, yTokens);
    }

    /** {@code batch, xTokens, yTokens >= 1} and the row counts ints. */
    public static void checkSizes(int batch, int xTokens, int yTokens) {
        if (batch < 1) throw new IllegalArgumentException("batch: expected >= 1, got " + batch);
        if (xTokens < 1) throw new IllegalArgumentException("xTokens: expected >= 1, got " + xTokens);
        if (yTokens < 1) throw new IllegalArgumentException("yTokens: expected >= 1, got " + yTokens);
        if ((long) batch * Math.max(xTokens, yTokens) > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("batch, xTokens, yTokens: expected batch·tokens <= " + Integer.MAX_VALUE + ", got "
                    + (long) batch * Math.max(xTokens, yTokens));
        }
    }

    /** Checks {@code gradOut} ({@code B × Lx × H}). */
    public void checkGradOut(float[] gradOut, int batch, int xTokens) {
        CompactBilinear.checkLength("gradOut", gradOut, batch * xTokens, hidden());
    }

    @Override public String toString() {
        return "GuidedAttentionUnit[H=" + hidden() + ", heads=" + heads() + ", F=" + ffn() + ", " + norm.variant() + " eps=" + norm.eps() + "]";
    }
}
