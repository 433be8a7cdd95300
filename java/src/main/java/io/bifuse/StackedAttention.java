package io.bifuse;

import java.util.ArrayList;
import java.util.List;

/**
 * Stacked attention (SAN, Yang et al. 2016, "Stacked Attention Networks for Image Question
 * Answering"): an immutable op descriptor.
 *
 * <p>Math, per sample, with {@code V ∈ R^{L×d}} the image cells ({@code v_s}, {@code s < L}: 14×14 = 196
 * in the paper) and {@code u_0 ∈ R^d} the question vector; {@code K} attention layers
 * ({@link #layers()}), layer {@code l} with its own image layer {@code W_I, b_I} ({@code k × d}), question
 * layer {@code W_Q, b_Q} ({@code k × d}) and logits layer {@code w_P, b_P} ({@code 1 × k}):
 * <pre>
 *   {@link Placement#PAPER}:        h_s = tanh(W_I v_s + b_I + W_Q u_l + b_Q)        k     per cell
 *                             a_s = w_P · h_s + b_P                                 (linear logits)
 *   {@link Placement#PUBLIC_CODE}:  h_s = tanh(W_I v_s + b_I) + tanh(W_Q u_l + b_Q)  k     per cell
 *                             a_s = tanh(w_P · h_s + b_P)
 *   α       = softmax over the L cells of (a_s)_s                                     L
 *   ṽ       = Σ_s α_s v_s                                                             d
 *   u_{l+1} = ṽ + u_l                                                                 d
 * </pre>
 * The output is {@code u_K}; the attention maps are the {@code K} α's. The question side
 * {@code W_Q u_l + b_Q} is computed once per sample and layer, never per cell; the image side
 * {@code W_I v_s + b_I} does not depend on {@code u} at all.
 *
 * <p>In the paper's placement the logits bias {@code b_P} shifts every cell's logit alike, which the
 * softmax cancels: it changes nothing and its gradient is exactly zero (backends return exact zeros).
 * {@code b_I} and {@code b_Q} are then one sum {@code b} (the paper's single bias) and get the same
 * gradient; either may be absent. In the public code's placement the outer tanh makes {@code b_P}, and
 * the question side's constant-over-cells term, matter.
 *
 * <p>Shapes, row-major: {@code u} is {@code B × d}; {@code v} is {@code B × L × d} (cell {@code s} of
 * sample {@code b} at {@code (b·L + s)·d}); the output is {@code B × d}; the attention maps are
 * {@code B × K × L} (layer {@code l}'s map of sample {@code b} at {@code (b·K + l)·L}). Backward takes
 * {@code gradOut = ∂L/∂u_K} ({@code B × d}) and returns the gradients of {@code u}, {@code v} and of every
 * layer's parameters ({@link Gradients}). Any {@code B, L, K >= 1}.
 *
 * <p>Weights ({@link Weights}) are {@link Linear} layers in the layout of a PyTorch {@code nn.Linear}
 * state dict. Sizes: the spec's {@code d = 1024}, {@code L = 196}, {@code K = 2}; the attention width
 * {@code k = 512}, the {@code n_attention} of the public code's VQA configuration
 * (zcyang/imageqa-san, {@code san_att_conv_twolayer.py}); {@code random} takes any {@code k}.
 *
 * <p>Backends ({@link Backend}): {@code io.bifuse.cpu.StackedAttentionCpu} (float32, multithreaded: the
 * projections as GEMMs, fused per-sample attention passes) and {@code io.bifuse.cuda.StackedAttentionCuda};
 * {@code io.bifuse.reference.StackedAttentionReference} is the float64 definition both are tested against.
 */
public final class StackedAttention implements Op<StackedAttention.Backend> {
    /**
     * What every backend of this op offers on host arrays ({@code StackedAttentionCpu} in io.bifuse.cpu,
     * {@code StackedAttentionCuda} in io.bifuse.cuda): the forward {@code u (B × d)}, {@code v (B × L × d)}
     * → {@code B × d}, with the attention maps ({@code B × K × L}), and every gradient given
     * {@code gradOut = ∂L/∂u_K} ({@code B × d}), written, not accumulated.
     */
    public interface Backend extends OpBackend {
        float[] forward(float[] u, float[] v, int batch, int cells);
        Result forwardWithAttention(float[] u, float[] v, int batch, int cells);
        Gradients backward(float[] u, float[] v, float[] gradOut, int batch, int cells);

        /** The descriptor this backend runs. */
        StackedAttention op();

        /**
         * A training step: the forward of {@code u, v}, and its backward for a {@code gradOut} to come
         * ({@link TrainingStep}: bitwise {@link #backward}'s gradients; u and v held by reference until then).
         * The CPU backend keeps the forward's pass for it; this default recomputes.
         */
        default TrainingStep<Gradients> trainingStep(float[] u, float[] v, int batch, int cells) {
            float[] out = forward(u, v, batch, cells);
            return TrainingStep.recomputing(out, batch, op().dim(), g -> backward(u, v, g, batch, cells));
        }

        /**
         * The forward over views of the caller's memory ({@link FloatView}: part of a float[], a
         * FloatBuffer, a MemorySegment): u (B × d), v (B × L × d) → out (B × d), {@code out} written, nothing returned. Every length is
         * checked, by name, before anything runs; inputs that are not one whole array are copied once,
         * and the result is copied into {@code out}.
         */
        default void forward(FloatView u, FloatView v, FloatView out, int batch, int cells) {
            FloatView.requireLength("out", out, (long) batch * op().dim());
            float[] r = forward(FloatView.input("u", u, (long) batch * op().dim()), FloatView.input("v", v, (long) batch * cells * op().dim()), batch, cells);
            out.copyFrom(r, 0, r.length);
        }
    }

    @Override public Class<Backend> backendType() { return Backend.class; }

    /** The paper's attention width with the public code's value ({@code n_attention}): see the class comment. */
    public static final int DEFAULT_WIDTH = 512;

    /**
     * Where the tanh's go ({@link #code()} is what the CUDA kernels take).
     * <ul>
     *   <li>{@link #PAPER}: Yang et al. 2016, Eq. (15)-(16), {@code h = tanh(W_I V ⊕ (W_Q u + b))} and
     *       linear logits {@code W_P h + b_P}. The PyTorch ports write it so (e.g. rshivansh/San-Pytorch
     *       {@code misc/san.py}: {@code tanh(fc11(u) + fc12(V))}, then {@code fc13}).</li>
     *   <li>{@link #PUBLIC_CODE}: the authors' Theano code (zcyang/imageqa-san,
     *       {@code san_att_conv_twolayer_theano.py}, its default activations): {@code image_att_mlp} and
     *       {@code sent_att_mlp} each end in tanh and are added, and {@code combined_att_mlp} (the logit)
     *       ends in tanh too: {@code h = tanh(W_I V + b_I) + tanh(W_Q u + b_Q)}, {@code a = tanh(w_P·h + b_P)}.</li>
     * </ul>
     */
    public enum Placement {
        PAPER, PUBLIC_CODE;

        /** {@code 0} paper, {@code 1} public code. */
        public int code() { return ordinal(); }
    }

    /**
     * One attention layer: {@code image} {@code k × d} (W_I), {@code question} {@code k × d} (W_Q),
     * {@code logits} {@code 1 × k} (w_P). Biases are optional (a layer without one behaves as with zeros
     * and gets no bias gradient).
     */
    public record Layer(Linear image, Linear question, Linear logits) {}

    /**
     * The {@code K} attention layers, validated against each other by name: layer 0's image layer fixes
     * {@code k} and {@code d}.
     */
    public record Weights(List<Layer> layers) {
        public Weights {
            if (layers == null) throw new IllegalArgumentException("layers: expected a list of K >= 1 attention layers, got null");
            if (layers.isEmpty()) throw new IllegalArgumentException("layers: expected K >= 1 attention layers, got 0");
            int k = -1, d = -1;
            for (int i = 0; i < layers.size(); i++) {
                String n = "layers[" + i + "]";
                Layer l = layers.get(i);
                if (l == null) throw new IllegalArgumentException(n + ": expected a StackedAttention.Layer, got null");
                Linear.require(n + ".image", l.image());
                if (i == 0) {
                    k = l.image().out();
                    d = l.image().in();
                } else {
                    l.image().requireShape(n + ".image", k, d);
                }
                Linear.require(n + ".question", l.question()).requireShape(n + ".question", k, d);
                Linear.require(n + ".logits", l.logits()).requireShape(n + ".logits", 1, k);
            }
            layers = List.copyOf(layers);
        }
    }

    /** One layer's parameter gradients, as {@link Layer}. */
    public record LayerGradients(LinearGradients image, LinearGradients question, LinearGradients logits) {}

    /**
     * Gradients of a loss with respect to the inputs ({@code du} {@code B × d}, {@code dv}
     * {@code B × L × d}) and to every layer's parameters, in the layers' own layout. In the paper's
     * placement every {@code logits.bias} is all zeros (see the class comment).
     */
    public record Gradients(float[] du, float[] dv, List<LayerGradients> layers) {
        public Gradients { layers = List.copyOf(layers); }

        /** Every gradient tensor in the order of {@link #gradientNames()}: du, dv, then per layer image, question, logits (weight, then bias if any). */
        public List<float[]> tensors() {
            List<float[]> t = new ArrayList<>(List.of(du, dv));
            for (LayerGradients l : layers) {
                for (LinearGradients g : List.of(l.image(), l.question(), l.logits())) {
                    t.add(g.weight());
                    if (g.bias() != null) t.add(g.bias());
                }
            }
            return t;
        }
    }

    /** The result of {@link Backend#forwardWithAttention}: the output ({@code B × d}) and the attention maps ({@code B × K × L}). */
    public record Result(float[] out, float[] attention) {}

    private final Weights weights;
    private final Placement placement;

    private StackedAttention(Weights weights, Placement placement) {
        this.weights = weights;
        this.placement = placement;
    }

    /** The op with these layers and tanh placement. */
    public static StackedAttention of(Weights weights, Placement placement) {
        if (weights == null) throw new IllegalArgumentException("weights: expected StackedAttention.Weights, got null");
        if (placement == null) throw new IllegalArgumentException("placement: expected PAPER or PUBLIC_CODE, got null");
        return new StackedAttention(weights, placement);
    }

    /**
     * Layers initialized as {@code nn.Linear} does, all with biases; layer {@code l}'s image, question and
     * logits layers from {@code Linear.random(..., seed + 3l + 0, 1, 2)}.
     */
    public static StackedAttention random(int d, int width, int layers, Placement placement, long seed) {
        positive("d", d);
        positive("width", width);
        positive("layers", layers);
        List<Layer> l = new ArrayList<>();
        for (int i = 0; i < layers; i++) {
            l.add(new Layer(Linear.random(width, d, true, seed + 3L * i), Linear.random(width, d, true, seed + 3L * i + 1),
                    Linear.random(1, width, true, seed + 3L * i + 2)));
        }
        return of(new Weights(l), placement);
    }

    public Weights weights() { return weights; }
    public Placement placement() { return placement; }
    /** d, the width of the question vector and of every cell. */
    public int dim() { return weights.layers.get(0).image().in(); }
    /** k, the attention width. */
    public int width() { return weights.layers.get(0).image().out(); }
    /** K, the number of attention layers. */
    public int layers() { return weights.layers.size(); }

    /** The names of the tensors of {@link Gradients#tensors()}, in the same order. */
    public List<String> gradientNames() {
        List<String> n = new ArrayList<>(List.of("du", "dv"));
        for (int i = 0; i < layers(); i++) {
            Layer l = weights.layers.get(i);
            addNames(n, "layers[" + i + "].image", l.image());
            addNames(n, "layers[" + i + "].question", l.question());
            addNames(n, "layers[" + i + "].logits", l.logits());
        }
        return n;
    }

    private static void addNames(List<String> n, String layer, Linear l) {
        n.add(layer + ".weight");
        if (l.hasBias()) n.add(layer + ".bias");
    }

    /** Checks host inputs; every entry point calls it before any work. */
    public void checkInputs(float[] u, float[] v, int batch, int cells) {
        MlbAttention.checkCellInputs(u, "u", dim(), "v", v, dim(), batch, cells);
    }

    private static void positive(String name, int v) {
        if (v < 1) throw new IllegalArgumentException(name + ": expected >= 1, got " + v);
    }

    @Override public String toString() {
        return "StackedAttention[d=" + dim() + ", k=" + width() + ", K=" + layers() + ", " + placement + "]";
    }
}
