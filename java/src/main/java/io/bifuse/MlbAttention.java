package io.bifuse;

import java.util.ArrayList;
import java.util.List;

/**
 * MLB attention (Kim et al. 2017, the attention model of "Hadamard product for low-rank bilinear
 * pooling"): an immutable op descriptor.
 *
 * <p>Math, per sample, with σ the {@link Activation} (tanh in the paper), {@code q ∈ R^Dq} the question
 * and {@code v_s ∈ R^Dv} the {@code L} image cells ({@code s < L}, 14×14 = 196 in the paper):
 * <pre>
 *   q'    = σ(W_q q + b_q)                                  J      (once per sample, never per cell)
 *   v'_s  = σ(W_v v_s + b_v)                                J      per cell
 *   a_s   = W_a (q' ⊙ v'_s) + b_a                           G      per cell, no activation
 *   α_g   = softmax over the L cells of (a_{s,g})_s          L      per glimpse g &lt; G
 *   v̂_g   = Σ_s α_{g,s} v_s                                 Dv     per glimpse
 *   u     = [σ(W_g v̂_g + b_g)]_{g &lt; G}                      G·J    (glimpses concatenated, g major)
 *   f     = σ(W_f q + b_f)                                  G·J
 *   out   = W_o (u ⊙ f) + b_o                               Out
 * </pre>
 * The logits bias {@code b_a} is kept for parity with trained models, but a softmax over the cells is
 * invariant to a per-glimpse constant: it changes neither the output nor the attention maps, and its
 * gradient is exactly zero. For the same reason, with σ = identity ({@link Activation#NONE}) the cells'
 * bias {@code b_v} only adds {@code W_a (q' ⊙ b_v)} to every cell's logits alike, and its gradient is
 * exactly zero too.
 *
 * <p>Shapes, row-major: {@code q} is {@code B × Dq}; {@code v} is {@code B × L × Dv} (cell {@code s} of
 * sample {@code b} at {@code (b·L + s)·Dv}); the output is {@code B × Out}; the attention maps are
 * {@code B × G × L}. Backward takes {@code gradOut = ∂L/∂out} ({@code B × Out}) and returns the
 * gradients of {@code q}, {@code v} and of every layer's weight and bias ({@link Gradients}). Any
 * {@code B, L >= 1}; {@code 1 <= G <=} {@value #MAX_GLIMPSES}.
 *
 * <p>Weights ({@link Weights}) are {@link Linear} layers in the layout of a PyTorch {@code nn.Linear}
 * state dict: {@code question} J×Dq, {@code cells} J×Dv, {@code logits} G×J, {@code glimpses} G layers of
 * J×Dv, {@code questionFusion} (G·J)×Dq, {@code answer} Out×(G·J). Paper sizes: Dq = 2400, Dv = 2048,
 * J = 1200, G = 2, Out = 2000, L = 196.
 *
 * <p>Backends ({@link Backend}): {@code io.bifuse.cpu.MlbAttentionCpu} (float32: GEMMs for every
 * projection and for the attention's weighted sums, fused elementwise passes; multithreaded, bitwise the
 * same for every thread count), and {@code io.bifuse.cuda.MlbAttentionCuda}.
 */
public final class MlbAttention implements Op<MlbAttention.Backend> {
    /**
     * What every backend of this op offers on host arrays ({@code MlbAttentionCpu} in io.bifuse.cpu,
     * {@code MlbAttentionCuda} in io.bifuse.cuda): the forward {@code q (B × Dq)}, {@code v (B × L × Dv)}
     * → {@code B × Out}, with the attention maps α ({@code B × G × L}), and every gradient given
     * {@code gradOut = ∂L/∂out} ({@code B × Out}), written, not accumulated.
     */
    public interface Backend extends OpBackend {
        float[] forward(float[] q, float[] v, int batch, int cells);
        Result forwardWithAttention(float[] q, float[] v, int batch, int cells);
        Gradients backward(float[] q, float[] v, float[] gradOut, int batch, int cells);

        /** The descriptor this backend runs. */
        MlbAttention op();

        /**
         * The forward over views of the caller's memory ({@link FloatView}: part of a float[], a
         * FloatBuffer, a MemorySegment): q (B × Dq), v (B × L × Dv) → out (B × Out), {@code out} written, nothing returned. Every length is
         * checked, by name, before anything runs; inputs that are not one whole array are copied once,
         * and the result is copied into {@code out}.
         */
        default void forward(FloatView q, FloatView v, FloatView out, int batch, int cells) {
            FloatView.requireLength("out", out, (long) batch * op().out());
            float[] r = forward(FloatView.input("q", q, (long) batch * op().dq()), FloatView.input("v", v, (long) batch * cells * op().dv()), batch, cells);
            out.copyFrom(r, 0, r.length);
        }

        /**
         * A training step: the forward of {@code q, v}, and its backward for a {@code gradOut} to come
         * ({@link TrainingStep}: bitwise {@link #backward}'s gradients; q and v held by reference until then).
         * The CPU backend keeps the forward's intermediates for it; this default recomputes.
         */
        default TrainingStep<Gradients> trainingStep(float[] q, float[] v, int batch, int cells) {
            float[] out = forward(q, v, batch, cells);
            return TrainingStep.recomputing(out, batch, op().out(), g -> backward(q, v, g, batch, cells));
        }
    }

    @Override public Class<Backend> backendType() { return Backend.class; }

    /**
     * The most glimpses the CUDA kernels support: they keep one accumulator per glimpse in registers.
     * The literature uses 1 to 4.
     */
    public static final int MAX_GLIMPSES = 16;

    /**
     * The six layers, validated against each other by name: the question layer fixes {@code J} and
     * {@code Dq}, the cells layer {@code Dv}, the logits layer {@code G}, the answer layer {@code Out}.
     * Biases are optional (a layer without one behaves as with zeros and gets no bias gradient).
     */
    public record Weights(Linear question, Linear cells, Linear logits, List<Linear> glimpses, Linear questionFusion, Linear answer) {
        public Weights {
            Linear.require("question", question);
            Linear.require("cells", cells);
            Linear.require("logits", logits);
            if (glimpses == null) throw new IllegalArgumentException("glimpses: expected a list of G Linear layers, got null");
            Linear.require("questionFusion", questionFusion);
            Linear.require("answer", answer);
            int j = question.out(), dq = question.in(), dv = cells.in(), g = logits.out();
            if (cells.out() != j) {
                throw new IllegalArgumentException("cells: expected a layer " + dv + " → " + j + " (J = question.out()), got "
                        + cells.in() + " → " + cells.out());
            }
            logits.requireShape("logits", g, j);
            if (g > MAX_GLIMPSES) throw new IllegalArgumentException("logits: expected at most " + MAX_GLIMPSES + " glimpses (outputs), got " + g);
            if (glimpses.size() != g) {
                throw new IllegalArgumentException("glimpses: expected " + g + " layers (one per glimpse, G = logits.out()), got " + glimpses.size());
            }
            for (int i = 0; i < g; i++) Linear.require("glimpses[" + i + "]", glimpses.get(i)).requireShape("glimpses[" + i + "]", j, dv);
            questionFusion.requireShape("questionFusion", g * j, dq);
            if (answer.in() != g * j) {
                throw new IllegalArgumentException("answer: expected a layer " + g * j + " → " + answer.out() + " (G·J inputs), got "
                        + answer.in() + " → " + answer.out());
            }
            glimpses = List.copyOf(glimpses);
        }
    }

    /**
     * Gradients of a loss with respect to the inputs ({@code dq} {@code B × Dq}, {@code dv}
     * {@code B × L × Dv}) and to every layer's parameters, in the layers' own layout. {@code logits.bias}
     * is all zeros (see the class comment), and so is {@code cells.bias} when σ is {@link Activation#NONE}
     * (then {@code b_v} shifts every cell's logits alike).
     */
    public record Gradients(float[] dq, float[] dv, LinearGradients question, LinearGradients cells, LinearGradients logits,
                            List<LinearGradients> glimpses, LinearGradients questionFusion, LinearGradients answer) {
        public Gradients { glimpses = List.copyOf(glimpses); }

        /** Every gradient tensor in the order of {@link #names}: dq, dv, then each layer's weight and bias (if any). */
        public List<float[]> tensors() {
            List<float[]> t = new ArrayList<>(List.of(dq, dv));
            List<LinearGradients> layers = new ArrayList<>(List.of(question, cells, logits));
            layers.addAll(glimpses);
            layers.add(questionFusion);
            layers.add(answer);
            for (LinearGradients l : layers) {
                t.add(l.weight());
                if (l.bias() != null) t.add(l.bias());
            }
            return t;
        }
    }

    /** The result of {@link Backend#forwardWithAttention}: the output ({@code B × Out}) and the attention maps α ({@code B × G × L}). */
    public record Result(float[] out, float[] attention) {}

    private final Weights weights;
    private final Activation activation;

    private MlbAttention(Weights weights, Activation activation) {
        this.weights = weights;
        this.activation = activation;
    }

    /** The op with these layers and activation σ (applied to q', v', the glimpse projections and the question fusion). */
    public static MlbAttention of(Weights weights, Activation activation) {
        if (weights == null) throw new IllegalArgumentException("weights: expected MlbAttention.Weights, got null");
        return new MlbAttention(weights, Activation.require("activation", activation));
    }

    /**
     * Layers initialized as {@code nn.Linear} does, all with biases, layer {@code i} (in the order question,
     * cells, logits, glimpses..., questionFusion, answer) from {@code Linear.random(..., seed + i)}.
     */
    public static MlbAttention random(int dq, int dv, int joint, int glimpses, int out, Activation activation, long seed) {
        positive("dq", dq);
        positive("dv", dv);
        positive("joint", joint);
        positive("glimpses", glimpses);
        if (glimpses > MAX_GLIMPSES) throw new IllegalArgumentException("glimpses: expected at most " + MAX_GLIMPSES + ", got " + glimpses);
        positive("out", out);
        List<Linear> g = new ArrayList<>();
        for (int i = 0; i < glimpses; i++) g.add(Linear.random(joint, dv, true, seed + 3 + i));
        return of(new Weights(Linear.random(joint, dq, true, seed), Linear.random(joint, dv, true, seed + 1),
                Linear.random(glimpses, joint, true, seed + 2), g, Linear.random(glimpses * joint, dq, true, seed + 3 + glimpses),
                Linear.random(out, glimpses * joint, true, seed + 4 + glimpses)), activation);
    }

    public Weights weights() { return weights; }
    public Activation activation() { return activation; }
    public int dq() { return weights.question.in(); }
    public int dv() { return weights.cells.in(); }
    /** J, the joint (low-rank) dimension. */
    public int joint() { return weights.question.out(); }
    /** G, the number of glimpses. */
    public int glimpses() { return weights.logits.out(); }
    public int out() { return weights.answer.out(); }

    /** The names of the tensors of {@link Gradients#tensors()}, in the same order. */
    public List<String> gradientNames() {
        List<String> n = new ArrayList<>(List.of("dq", "dv"));
        addNames(n, "question", weights.question);
        addNames(n, "cells", weights.cells);
        addNames(n, "logits", weights.logits);
        for (int i = 0; i < glimpses(); i++) addNames(n, "glimpses[" + i + "]", weights.glimpses.get(i));
        addNames(n, "questionFusion", weights.questionFusion);
        addNames(n, "answer", weights.answer);
        return n;
    }

    private static void addNames(List<String> n, String layer, Linear l) {
        n.add(layer + ".weight");
        if (l.hasBias()) n.add(layer + ".bias");
    }

    /** Checks host inputs; every entry point calls it before any work. */
    public void checkInputs(float[] q, float[] v, int batch, int cells) {
        checkCellInputs(q, dq(), "v", v, dv(), batch, cells);
    }

    /**
     * The checks of an attention over cells (this op's and {@code McbAttention}'s): {@code batch, cells >= 1},
     * {@code batch·cells} an int, {@code q} {@code B × dq}, the cells {@code B × L × dv} (named {@code cellsName}).
     */
    static void checkCellInputs(float[] q, int dq, String cellsName, float[] v, int dv, int batch, int cells) {
        checkCellInputs(q, "q", dq, cellsName, v, dv, batch, cells);
    }

    /** As {@link #checkCellInputs(float[], int, String, float[], int, int, int)}, the question named {@code qName} (StackedAttention's {@code u}). */
    static void checkCellInputs(float[] q, String qName, int dq, String cellsName, float[] v, int dv, int batch, int cells) {
        positive("batch", batch);
        positive("cells", cells);
        if ((long) batch * cells > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("batch, cells: expected batch·cells <= " + Integer.MAX_VALUE + ", got " + (long) batch * cells);
        }
        CompactBilinear.checkLength(qName, q, batch, dq);
        if (v == null) throw new IllegalArgumentException(cellsName + ": expected " + batch + " × " + cells + " × " + dv + " floats, got null");
        if (v.length != (long) batch * cells * dv) {
            throw new IllegalArgumentException(cellsName + ": expected " + batch + " × " + cells + " × " + dv + " = " + (long) batch * cells * dv
                    + " floats, got " + v.length);
        }
    }

    private static void positive(String name, int v) {
        if (v < 1) throw new IllegalArgumentException(name + ": expected >= 1, got " + v);
    }

    @Override public String toString() {
        return "MlbAttention[Dq=" + dq() + ", Dv=" + dv() + ", J=" + joint() + ", G=" + glimpses() + ", Out=" + out() + ", " + activation + "]";
    }
}
