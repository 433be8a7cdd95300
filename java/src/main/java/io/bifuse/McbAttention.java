package io.bifuse;

import java.util.ArrayList;
import java.util.List;

/**
 * MCB attention (Fukui et al. 2016, the attention model of "Multimodal compact bilinear pooling for
 * visual question answering"): an immutable op descriptor.
 *
 * <p>Math, per sample, with {@code q ∈ R^Dq} the question and {@code I_s ∈ R^Dv} the {@code L} image
 * cells ({@code s < L}, 14×14 = 196 in the paper), {@code MCB_att} and {@code MCB_fus} the compact
 * bilinear poolings {@link #attention()} and {@link #fusion()} (count sketch of the outer product, see
 * {@link CompactBilinear}):
 * <pre>
 *   z_s   = MCB_att(q, I_s)                                 d1     per cell (x = q, y = the cell)
 *   u_s   = ssqrt(z_s)  (if attention.normalization().signedSqrt(), else z_s; always elementwise)
 *   t_s   = inv·u_s                                         d1     the l2 step of attention.normalization()
 *   p_s   = W1 t_s + b1,  h_s = ReLU(p_s)                   H      (hidden: a 1×1 conv d1 → H)
 *   a_s   = W2 h_s + b2                                     G      (logits: a 1×1 conv H → G)
 *   α_g   = softmax over the L cells of (a_{s,g})_s          L      per glimpse g &lt; G
 *   v̂_g   = Σ_s α_{g,s} I_s                                 Dv     per glimpse
 *   v̂     = [v̂_0 … v̂_{G−1}]                                 G·Dv   (glimpses concatenated, g major)
 *   ũ     = normalize(MCB_fus(v̂, q))                        d2     fusion.normalization(), per sample
 *   out   = W3 ũ + b3                                       A      (answer)
 * </pre>
 * {@code inv} is the inverse l2 norm of {@code attention.normalization()} ({@link Normalization.L2}):
 * {@code 1/max(‖u‖, eps)} ({@code MAX_NORM}), {@code (Σu² + eps)^−½} ({@code SUM_SQUARES}), 1 ({@code NONE}),
 * where {@code ‖u‖} is taken per {@link L2Scope}: over each cell's {@code d1} values ({@link L2Scope#CELL},
 * one {@code inv_s} per cell) or over the whole {@code L × d1} map of the sample ({@link L2Scope#MAP},
 * one {@code inv} per sample, as the Caffe original does). The signed-sqrt backward is
 * {@code 0.5·g/(sqrt|z| + signedSqrtGradEps)}, 0 where {@code z = 0} and eps = 0 (see {@link Normalization}).
 *
 * <p>The logits bias {@code b2} is kept for parity with trained models, but a softmax over the cells is
 * invariant to a per-glimpse constant: it changes neither the output nor the attention maps, and its
 * gradient is exactly zero.
 *
 * <p>Shapes, row-major: {@code q} is {@code B × Dq}; the image {@code I} is {@code B × L × Dv} (cell
 * {@code s} of sample {@code b} at {@code (b·L + s)·Dv}); the output is {@code B × A}; the attention maps
 * are {@code B × G × L}. Backward takes {@code gradOut = ∂L/∂out} ({@code B × A}) and returns the
 * gradients of {@code q} (through both poolings), of {@code I} (through the attention pooling and
 * through {@code v̂}) and of every layer's weight and bias ({@link Gradients}). Any {@code B, L >= 1}.
 *
 * <p>Weights ({@link Weights}) are {@link Linear} layers in the layout of a PyTorch {@code nn.Linear}
 * state dict; the paper's 1×1 convolutions load through {@link #conv1x1}: {@code hidden} H×d1,
 * {@code logits} G×H, {@code answer} A×d2. The hashes (fixed, not learned) are those of the two
 * {@link CompactBilinear} descriptors, seeded or given ({@link CompactBilinear#fromHashes}). Paper sizes:
 * Dq = Dv = 2048, d1 = d2 = 16000, H = 512, G = 2, L = 196, A = 3000.
 *
 * <p>Backends ({@link Backend}): {@code io.bifuse.cpu.McbAttentionCpu}, the float64 definition
 * ({@code McbAttentionReference}) rounded to float: exact, not fast; and {@code io.bifuse.cuda.McbAttentionCuda}.
 */
public final class McbAttention implements Op<McbAttention.Backend> {
    /**
     * What every backend of this op offers on host arrays ({@code McbAttentionCpu} in io.bifuse.cpu,
     * {@code McbAttentionCuda} in io.bifuse.cuda): the forward {@code q (B × Dq)}, {@code image (B × L × Dv)}
     * → {@code B × A}, with the attention maps α ({@code B × G × L}), and every gradient given
     * {@code gradOut = ∂L/∂out} ({@code B × A}), written, not accumulated.
     */
    public interface Backend extends OpBackend {
        float[] forward(float[] q, float[] image, int batch, int cells);
        Result forwardWithAttention(float[] q, float[] image, int batch, int cells);
        Gradients backward(float[] q, float[] image, float[] gradOut, int batch, int cells);

        /** The descriptor this backend runs. */
        McbAttention op();

        /**
         * The forward over views of the caller's memory ({@link FloatView}: part of a float[], a
         * FloatBuffer, a MemorySegment): q (B × Dq), image (B × L × Dv) → out (B × A), {@code out} written, nothing returned. Every length is
         * checked, by name, before anything runs; inputs that are not one whole array are copied once,
         * and the result is copied into {@code out}.
         */
        default void forward(FloatView q, FloatView image, FloatView out, int batch, int cells) {
            FloatView.requireLength("out", out, (long) batch * op().answers());
            float[] r = forward(FloatView.input("q", q, (long) batch * op().dq()), FloatView.input("image", image, (long) batch * cells * op().dv()), batch, cells);
            out.copyFrom(r, 0, r.length);
        }
    }

    @Override public Class<Backend> backendType() { return Backend.class; }

    /** Over what the attention pooling's l2 norm is taken (its signed sqrt is always elementwise). */
    public enum L2Scope {
        /** One norm per cell, over its {@code d1} values. */
        CELL,
        /** One norm per sample, over the whole {@code L × d1} map (the Caffe original). */
        MAP
    }

    /**
     * The three layers, validated against each other by name: {@code logits} takes the {@code hidden}
     * layer's H outputs and fixes {@code G = logits.out()}. Their inputs against the poolings
     * ({@code hidden.in() = d1}, {@code answer.in() = d2}) are checked by {@link #of}. Biases are optional
     * (a layer without one behaves as with zeros and gets no bias gradient).
     */
    public record Weights(Linear hidden, Linear logits, Linear answer) {
        public Weights {
            Linear.require("hidden", hidden);
            Linear.require("logits", logits);
            Linear.require("answer", answer);
            if (logits.in() != hidden.out()) {
                throw new IllegalArgumentException("logits: expected a layer " + hidden.out() + " → " + logits.out()
                        + " (H = hidden.out() inputs), got " + logits.in() + " → " + logits.out());
            }
        }
    }

    /**
     * Gradients of a loss with respect to the inputs ({@code dq} {@code B × Dq}, {@code dI}
     * {@code B × L × Dv}) and to every layer's parameters, in the layers' own layout. {@code logits.bias}
     * is all zeros (see the class comment).
     */
    public record Gradients(float[] dq, float[] dI, LinearGradients hidden, LinearGradients logits, LinearGradients answer) {
        /** Every gradient tensor in the order of {@link #gradientNames}: dq, dI, then each layer's weight and bias (if any). */
        public List<float[]> tensors() {
            List<float[]> t = new ArrayList<>(List.of(dq, dI));
            for (LinearGradients l : List.of(hidden, logits, answer)) {
                t.add(l.weight());
                if (l.bias() != null) t.add(l.bias());
            }
            return t;
        }
    }

    /** The result of {@link Backend#forwardWithAttention}: the output ({@code B × A}) and the attention maps α ({@code B × G × L}). */
    public record Result(float[] out, float[] attention) {}

    private final CompactBilinear attention, fusion;
    private final L2Scope scope;
    private final Weights weights;

    private McbAttention(CompactBilinear attention, L2Scope scope, CompactBilinear fusion, Weights weights) {
        this.attention = attention;
        this.scope = scope;
        this.fusion = fusion;
        this.weights = weights;
    }

    /**
     * The op with these poolings and layers. {@code attention} pools {@code x = q} with {@code y = a cell}
     * ({@code Dx = Dq}, {@code Dy = Dv}, {@code d = d1}), its normalization the per-cell post-processing
     * with its l2 norm over {@code scope}; {@code fusion} pools {@code x = v̂} with {@code y = q}
     * ({@code Dx = G·Dv}, {@code Dy = Dq}, {@code d = d2}), its normalization per sample.
     */
    public static McbAttention of(CompactBilinear attention, L2Scope scope, CompactBilinear fusion, Weights weights) {
        if (attention == null) throw new IllegalArgumentException("attention: expected a CompactBilinear (x = q, y = a cell), got null");
        if (scope == null) throw new IllegalArgumentException("scope: expected one of " + java.util.Arrays.toString(L2Scope.values()) + ", got null");
        if (fusion == null) throw new IllegalArgumentException("fusion: expected a CompactBilinear (x = the glimpses, y = q), got null");
        if (weights == null) throw new IllegalArgumentException("weights: expected McbAttention.Weights, got null");
        Linear hidden = weights.hidden(), answer = weights.answer();
        if (hidden.in() != attention.d()) {
            throw new IllegalArgumentException("hidden: expected a layer " + attention.d() + " → " + hidden.out() + " (d1 = attention.d() inputs), got "
                    + hidden.in() + " → " + hidden.out());
        }
        if (answer.in() != fusion.d()) {
            throw new IllegalArgumentException("answer: expected a layer " + fusion.d() + " → " + answer.out() + " (d2 = fusion.d() inputs), got "
                    + answer.in() + " → " + answer.out());
        }
        if (fusion.dy() != attention.dx()) {
            throw new IllegalArgumentException("fusion: expected Dy = " + attention.dx() + " (y is q, Dq = attention.dx()), got " + fusion.dy());
        }
        int g = weights.logits().out();
        if (fusion.dx() != (long) g * attention.dy()) {
            throw new IllegalArgumentException("fusion: expected Dx = " + (long) g * attention.dy() + " (x is the glimpses concatenated, G·Dv = "
                    + g + " × " + attention.dy() + "), got " + fusion.dx());
        }
        return new McbAttention(attention, scope, fusion, weights);
    }

    /**
     * Both poolings with {@link Normalization#pytorch()} and seeded hashes ({@code attention} from
     * {@code CompactBilinear.seeded(dq, dv, d1, seed)}, {@code fusion} from
     * {@code seeded(glimpses·dv, dq, d2, seed + 1)}), the l2 norm over the {@link L2Scope#MAP map} as the
     * original, layers initialized as {@code nn.Linear} does, all with biases: {@code hidden},
     * {@code logits}, {@code answer} from {@code Linear.random(..., seed + 2)}, {@code seed + 3}, {@code seed + 4}.
     */
    public static McbAttention random(int dq, int dv, int d1, int hidden, int glimpses, int d2, int answers, long seed) {
        positive("dq", dq);
        positive("dv", dv);
        positive("d1", d1);
        positive("hidden", hidden);
        positive("glimpses", glimpses);
        positive("d2", d2);
        positive("answers", answers);
        CompactBilinear att = CompactBilinear.seeded(dq, dv, d1, seed).withNormalization(Normalization.pytorch());
        CompactBilinear fus = CompactBilinear.seeded(Math.multiplyExact(glimpses, dv), dq, d2, seed + 1).withNormalization(Normalization.pytorch());
        return of(att, L2Scope.MAP, fus, new Weights(Linear.random(hidden, d1, true, seed + 2), Linear.random(glimpses, hidden, true, seed + 3),
                Linear.random(answers, d2, true, seed + 4)));
    }

    /**
     * A layer from a PyTorch 1×1 {@code Conv2d} (or {@code nn.Linear}) state dict: {@code shape} the weight's
     * shape, {@code (out, in, 1, 1)} or {@code (out, in)}, {@code weight} its values flattened,
     * {@code bias} {@code out} values or null. {@code name} names the layer in every message; any other
     * shape (a 3×3 kernel, a 3-d tensor) is rejected.
     */
    public static Linear conv1x1(String name, int[] shape, float[] weight, float[] bias) {
        if (shape == null) throw new IllegalArgumentException(name + ": expected a 1×1 convolution weight shape (out, in, 1, 1) or (out, in), got null");
        boolean ok = shape.length == 2 || shape.length == 4 && shape[2] == 1 && shape[3] == 1;
        if (!ok) {
            StringBuilder s = new StringBuilder("(");
            for (int i = 0; i < shape.length; i++) s.append(i == 0 ? "" : ", ").append(shape[i]);
            throw new IllegalArgumentException(name + ": expected a 1×1 convolution weight of shape (out, in, 1, 1) or (out, in), got " + s + ")");
        }
        return Linear.named(name, shape[0], shape[1], weight, bias);
    }

    public CompactBilinear attention() { return attention; }
    public L2Scope scope() { return scope; }
    public CompactBilinear fusion() { return fusion; }
    public Weights weights() { return weights; }
    public int dq() { return attention.dx(); }
    public int dv() { return attention.dy(); }
    /** d1, the attention pooling's dimension. */
    public int d1() { return attention.d(); }
    /** H, the hidden layer's width. */
    public int hidden() { return weights.hidden.out(); }
    /** G, the number of glimpses. */
    public int glimpses() { return weights.logits.out(); }
    /** d2, the fusion pooling's dimension. */
    public int d2() { return fusion.d(); }
    /** A, the number of outputs (answers). */
    public int answers() { return weights.answer.out(); }

    /** The names of the tensors of {@link Gradients#tensors()}, in the same order. */
    public List<String> gradientNames() {
        List<String> n = new ArrayList<>(List.of("dq", "dI"));
        addNames(n, "hidden", weights.hidden);
        addNames(n, "logits", weights.logits);
        addNames(n, "answer", weights.answer);
        return n;
    }

    private static void addNames(List<String> n, String layer, Linear l) {
        n.add(layer + ".weight");
        if (l.hasBias()) n.add(layer + ".bias");
    }

    /** Checks host inputs ({@code q} {@code B × Dq}, {@code image} {@code B × L × Dv}); every entry point calls it before any work. */
    public void checkInputs(float[] q, float[] image, int batch, int cells) {
        MlbAttention.checkCellInputs(q, dq(), "image", image, dv(), batch, cells);
    }

    private static void positive(String name, int v) {
        if (v < 1) throw new IllegalArgumentException(name + ": expected >= 1, got " + v);
    }

    @Override public String toString() {
        return "McbAttention[Dq=" + dq() + ", Dv=" + dv() + ", d1=" + d1() + ", H=" + hidden() + ", G=" + glimpses() + ", d2=" + d2()
                + ", A=" + answers() + ", " + scope + ", attention " + attention.normalization() + ", fusion " + fusion.normalization() + "]";
    }
}
