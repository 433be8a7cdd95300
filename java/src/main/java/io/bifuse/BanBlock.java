package io.bifuse;


import java.util.ArrayList;
import java.util.List;

/**
 * One block of the bilinear attention networks (BAN, Kim, Jun and Zhang 2018; parity: jnhwkim/ban-vqa's
 * {@code BanModel.forward} without the counter): bilinear attention maps between the objects of an
 * image and the tokens of a question, then G glimpses of bilinear attention pooling, each added back
 * to every token (residual learning of attention). An immutable op descriptor.
 *
 * <p>Math, per sample, with {@code x_i ∈ R^Dx} the {@code N} objects (detector features; padded
 * objects are those of the {@link ObjectMask}), {@code y_j ∈ R^Dy} the {@code M} tokens (question
 * hidden states), every weight the effective {@code g·V/‖V‖} of a {@link WeightNormLinear} and
 * {@code relu} applied to every projection except the residual one:
 * <pre>
 *   X'_i = relu(W_x x_i + b_x),  Y'_j = relu(W_y y_j + b_y)                              K = h·k
 *   logits_{g,i,j} = Σ_K p_{g,K} X'_{i,K} Y'_{j,K} + c_g       (−∞ for a padded object i)
 *   A_g = softmax of logits_g over the flattened N·M map                                  g &lt; G
 *   Y_0 = y;  for g = 0 .. G−1:
 *     X''_i = relu(U_g x_i + u_g),  Y''_j = relu(T_g Y_{g,j} + t_g)                       K'
 *     f_g = Σ_i Σ_j A_{g,i,j} X''_i ⊙ Y''_j,  then sums of {@code group} adjacent units     K'/group
 *     Y_{g+1,j} = Y_{g,j} + Q_g f_g + q_g                     (no activation; every token alike)
 *   out = Σ_j Y_{G,j}                                                                      Dy
 * </pre>
 * The attention maps come from the ORIGINAL tokens {@code y}; each glimpse's pooling reads the CURRENT
 * {@code Y_g}. In ban-vqa: objects/tokens = {@code v_att.logits.v_net/q_net} (k = 3), logits =
 * {@code h_mat} (weight-normed with one gain over G × K) and {@code h_bias}, glimpseObjects/Tokens =
 * {@code b_net[g].v_net/q_net} (BCNet with k = 1: group 1, K' = h), residuals = {@code q_prj[g]}.
 * Dropout is inference-mode (none); ban-vqa's counting module is not part of the block.
 *
 * <p>Padded objects: {@code mask} null means ban-vqa's rule (an object whose row {@code x[b,i,:]} is
 * all zeros is padding: {@link ObjectMask#zeroRows}). A padded object gets zero attention and
 * contributes nothing (its gradient rows are zero). A sample with no real object at all, for which
 * ban-vqa gives NaN (a softmax over nothing but −∞), has all-zero attention here, so everything
 * pooled from it is zero and its output is the residual path alone, {@code Σ_j (y_j + Σ_g q_g)}.
 * {@link ObjectMask#emptySamples()} lets callers reject such batches.
 *
 * <p>The logits bias {@code c_g} is kept for parity with trained models, but the softmax ignores a
 * per-glimpse constant: its gradient is exactly zero.
 *
 * <p>Shapes, row-major: {@code x} is {@code B × N × Dx}, {@code y} {@code B × M × Dy}, the output
 * {@code B × Dy}, the attention maps {@code B × G × N × M}. Backward takes {@code gradOut = ∂L/∂out}
 * ({@code B × Dy}) and returns the gradients of {@code x}, {@code y} and of every layer's stored
 * parameters ({@code weight_v}, {@code weight_g}, {@code bias}). ban-vqa's sizes: Dx = 2048,
 * Dy = K' = 1280, K = 3840, G = 8, N = 10..100 objects, M = 14 tokens.
 *
 * <p>Backends ({@link Backend}): {@code io.bifuse.cpu.BanBlockCpu}, float32 on the CPU (batch-wide projection GEMMs, per-sample maps and pooling,
 * multithreaded, bitwise the same for every thread count; {@code cpu-fp32}); and
 * {@code io.bifuse.cuda.BanBlockCuda}.
 */
public final class BanBlock implements Op<BanBlock.Backend> {
    /**
     * What every backend of this op offers on host arrays ({@code BanBlockCpu} in io.bifuse.cpu,
     * {@code BanBlockCuda} in io.bifuse.cuda): the forward {@code x (B × N × Dx)}, {@code y (B × M × Dy)}
     * → {@code B × Dy} ({@code mask} null: zero rows of x are padding), with the attention maps
     * ({@code B × G × N × M}), and every gradient given {@code gradOut = ∂L/∂out} ({@code B × Dy}).
     */
    public interface Backend extends OpBackend {
        float[] forward(float[] x, float[] y, ObjectMask mask, int batch, int objects, int tokens);
        Result forwardWithAttention(float[] x, float[] y, ObjectMask mask, int batch, int objects, int tokens);
        Gradients backward(float[] x, float[] y, ObjectMask mask, float[] gradOut, int batch, int objects, int tokens);

        /** The descriptor this backend runs. */
        BanBlock op();

        /**
         * A training step: the forward of {@code x, y}, and its backward for a {@code gradOut} to come
         * ({@link TrainingStep}: bitwise {@link #backward}'s gradients; x, y and the mask held by reference
         * until then). The CPU backend keeps the forward's state for it; this default recomputes.
         */
        default TrainingStep<Gradients> trainingStep(float[] x, float[] y, ObjectMask mask, int batch, int objects, int tokens) {
            float[] out = forward(x, y, mask, batch, objects, tokens);
            return TrainingStep.recomputing(out, batch, op().dy(), g -> backward(x, y, mask, g, batch, objects, tokens));
        }

        /**
         * The forward over views of the caller's memory ({@link FloatView}: part of a float[], a
         * FloatBuffer, a MemorySegment): x (B × N × Dx), y (B × M × Dy) → out (B × Dy), {@code out} written, nothing returned. Every length is
         * checked, by name, before anything runs; inputs that are not one whole array are copied once,
         * and the result is copied into {@code out}.
         */
        default void forward(FloatView x, FloatView y, ObjectMask mask, FloatView out, int batch, int objects, int tokens) {
            FloatView.requireLength("out", out, (long) batch * op().dy());
            float[] r = forward(FloatView.input("x", x, (long) batch * objects * op().dx()), FloatView.input("y", y, (long) batch * tokens * op().dy()), mask, batch, objects, tokens);
            out.copyFrom(r, 0, r.length);
        }
    }

    @Override public Class<Backend> backendType() { return Backend.class; }

    /**
     * The most glimpses: ban-vqa's BCNet keeps the low-rank bilinear logits ({@code h_mat}) only up to
     * 32 outputs, and computes larger maps differently (a linear layer over the full outer product).
     */
    public static final int MAX_GLIMPSES = 32;

    /**
     * The layers, validated against each other by name: {@code objects} fixes K and Dx, {@code tokens}
     * Dy, {@code logits} G (one output per glimpse, bias optional), {@code glimpseObjects[0]} K'. The
     * residual layers' input width K'/group is checked by {@link #of(Weights, int)}. Biases are optional
     * (a layer without one behaves as with zeros and gets no bias gradient).
     *
     * @param objects        K × Dx ({@code v_att.logits.v_net})
     * @param tokens         K × Dy ({@code v_att.logits.q_net})
     * @param logits         G × K, bias G ({@code h_mat}, {@code h_bias})
     * @param glimpseObjects G layers K' × Dx ({@code b_net[g].v_net})
     * @param glimpseTokens  G layers K' × Dy ({@code b_net[g].q_net})
     * @param residuals      G layers Dy × K'/group ({@code q_prj[g]})
     */
    public record Weights(WeightNormLinear objects, WeightNormLinear tokens, WeightNormLinear logits, List<WeightNormLinear> glimpseObjects,
                          List<WeightNormLinear> glimpseTokens, List<WeightNormLinear> residuals) {
        public Weights {
            WeightNormLinear.require("objects", objects);
            WeightNormLinear.require("tokens", tokens);
            WeightNormLinear.require("logits", logits);
            int k = objects.out(), dx = objects.in(), dy = tokens.in(), g = logits.out();
            if (tokens.out() != k) {
                throw new IllegalArgumentException("tokens: expected a layer " + dy + " → " + k + " (K = objects.out()), got "
                        + tokens.in() + " → " + tokens.out());
            }
            if (logits.in() != k) {
                throw new IllegalArgumentException("logits: expected a layer " + k + " → " + g + " (K = objects.out() inputs), got "
                        + logits.in() + " → " + logits.out());
            }
            if (g > MAX_GLIMPSES) throw new IllegalArgumentException("logits: expected at most " + MAX_GLIMPSES + " glimpses (outputs), got " + g);
            list("glimpseObjects", glimpseObjects, g);
            list("glimpseTokens", glimpseTokens, g);
            list("residuals", residuals, g);
            int kp = glimpseObjects.get(0).out();
            for (int i = 0; i < g; i++) glimpseObjects.get(i).requireShape("glimpseObjects[" + i + "]", kp, dx);
            for (int i = 0; i < g; i++) glimpseTokens.get(i).requireShape("glimpseTokens[" + i + "]", kp, dy);
            int pooled = residuals.get(0).in();
            for (int i = 0; i < g; i++) residuals.get(i).requireShape("residuals[" + i + "]", dy, pooled);
            glimpseObjects = List.copyOf(glimpseObjects);
            glimpseTokens = List.copyOf(glimpseTokens);
            residuals = List.copyOf(residuals);
        }

        private static void list(String name, List<WeightNormLinear> l, int g) {
            if (l == null) throw new IllegalArgumentException(name + ": expected a list of G = " + g + " WeightNormLinear layers, got null");
            if (l.size() != g) {
                throw new IllegalArgumentException(name + ": expected " + g + " layers (one per glimpse, G = logits.out()), got " + l.size());
            }
            for (int i = 0; i < g; i++) WeightNormLinear.require(name + "[" + i + "]", l.get(i));
        }
    }

    /**
     * Gradients of a loss with respect to the inputs ({@code dx} {@code B × N × Dx}, zero rows at padded
     * objects; {@code dy} {@code B × M × Dy}) and to every layer's stored parameters, in the layers' own
     * layout. {@code logits.bias} is all zeros (see the class comment).
     */
    public record Gradients(float[] dx, float[] dy, WeightNormGradients objects, WeightNormGradients tokens, WeightNormGradients logits,
                            List<WeightNormGradients> glimpseObjects, List<WeightNormGradients> glimpseTokens,
                            List<WeightNormGradients> residuals) {
        public Gradients {
            glimpseObjects = List.copyOf(glimpseObjects);
            glimpseTokens = List.copyOf(glimpseTokens);
            residuals = List.copyOf(residuals);
        }

        /** Every layer's gradients in the order of {@link BanBlock#gradientNames()}. */
        public List<WeightNormGradients> layers() {
            List<WeightNormGradients> l = new ArrayList<>(List.of(objects, tokens, logits));
            l.addAll(glimpseObjects);
            l.addAll(glimpseTokens);
            l.addAll(residuals);
            return l;
        }

        /** Every gradient tensor in the order of {@link BanBlock#gradientNames()}: dx, dy, then each layer's weight_v, weight_g (one element), bias (if any). */
        public List<float[]> tensors() {
            List<float[]> t = new ArrayList<>(List.of(dx, dy));
            for (WeightNormGradients l : layers()) {
                t.add(l.weightV());
                t.add(l.gArray());
                if (l.bias() != null) t.add(l.bias());
            }
            return t;
        }
    }

    /** The result of {@link Backend#forwardWithAttention}: the output ({@code B × Dy}) and the attention maps ({@code B × G × N × M}). */
    public record Result(float[] out, float[] attention) {}

    private final Weights weights;
    private final int group;

    private BanBlock(Weights weights, int group) {
        this.weights = weights;
        this.group = group;
    }

    /**
     * The block with these layers, pooling sums of {@code group} adjacent units (ban-vqa's BCNet
     * {@code k}; 1 in the BAN model): K' must be a multiple of it (ban-vqa's AvgPool1d would silently
     * drop a remainder; bifuse rejects it), and the residual layers must take K'/group inputs.
     */
    public static BanBlock of(Weights weights, int group) {
        if (weights == null) throw new IllegalArgumentException("weights: expected BanBlock.Weights, got null");
        int kp = weights.glimpseObjects.get(0).out();
        requireGroup(group, kp);
        if (weights.residuals.get(0).in() != kp / group) {
            throw new IllegalArgumentException("residuals: expected layers " + kp / group + " → " + weights.tokens.in() + " (K'/group = " + kp
                    + "/" + group + " inputs), got " + weights.residuals.get(0).in() + " → " + weights.residuals.get(0).out());
        }
        return new BanBlock(weights, group);
    }

    private static void requireGroup(int group, int kp) {
        if (group < 1) throw new IllegalArgumentException("group: expected >= 1, got " + group);
        if (kp % group != 0) {
            throw new IllegalArgumentException("group: expected a divisor of glimpseWidth K' = " + kp + ", got " + group);
        }
    }

    /**
     * Freshly wrapped layers (see {@link WeightNormLinear#random}), all with biases, layer {@code i} (in the
     * order objects, tokens, logits, glimpseObjects..., glimpseTokens..., residuals...) from seed
     * {@code seed + i}. The logits layer is drawn like the others (nn.Linear's initialization), not with
     * ban-vqa's {@code normal_()} for {@code h_mat}, whose logits of size ~sqrt(K) give one-hot maps.
     *
     * @param width        K, the attention projections' width (ban-vqa: h·3)
     * @param glimpseWidth K', the pooling projections' width (ban-vqa: h)
     */
    public static BanBlock random(int dx, int dy, int width, int glimpseWidth, int glimpses, int group, long seed) {
        positive("dx", dx);
        positive("dy", dy);
        positive("width", width);
        positive("glimpseWidth", glimpseWidth);
        positive("glimpses", glimpses);
        if (glimpses > MAX_GLIMPSES) throw new IllegalArgumentException("glimpses: expected at most " + MAX_GLIMPSES + ", got " + glimpses);
        requireGroup(group, glimpseWidth);
        List<WeightNormLinear> go = new ArrayList<>(), gt = new ArrayList<>(), res = new ArrayList<>();
        for (int g = 0; g < glimpses; g++) go.add(WeightNormLinear.random(glimpseWidth, dx, true, seed + 3 + g));
        for (int g = 0; g < glimpses; g++) gt.add(WeightNormLinear.random(glimpseWidth, dy, true, seed + 3 + glimpses + g));
        for (int g = 0; g < glimpses; g++) res.add(WeightNormLinear.random(dy, glimpseWidth / group, true, seed + 3 + 2L * glimpses + g));
        return of(new Weights(WeightNormLinear.random(width, dx, true, seed), WeightNormLinear.random(width, dy, true, seed + 1),
                WeightNormLinear.random(glimpses, width, true, seed + 2), go, gt, res), group);
    }

    public Weights weights() { return weights; }
    /** Object feature size Dx. */
    public int dx() { return weights.objects.in(); }
    /** Token feature size Dy (also the output's). */
    public int dy() { return weights.tokens.in(); }
    /** K, the width of the attention projections. */
    public int width() { return weights.objects.out(); }
    /** K', the width of the pooling projections. */
    public int glimpseWidth() { return weights.glimpseObjects.get(0).out(); }
    /** G, the number of glimpses. */
    public int glimpses() { return weights.logits.out(); }
    /** The pooling's group k (sums of k adjacent units). */
    public int group() { return group; }
    /** K'/group, the width of each glimpse's pooled vector. */
    public int pooledWidth() { return glimpseWidth() / group; }

    /** Every parameter float in state-dict form (weight_v, weight_g, bias of each layer). */
    public long parameterCount() {
        long n = 0;
        for (WeightNormLinear l : layers()) n += l.parameterCount();
        return n;
    }

    private List<WeightNormLinear> layers() {
        List<WeightNormLinear> l = new ArrayList<>(List.of(weights.objects, weights.tokens, weights.logits));
        l.addAll(weights.glimpseObjects);
        l.addAll(weights.glimpseTokens);
        l.addAll(weights.residuals);
        return l;
    }

    /** The names of the tensors of {@link Gradients#tensors()}, in the same order (state-dict suffixes). */
    public List<String> gradientNames() {
        List<String> n = new ArrayList<>(List.of("dx", "dy"));
        addNames(n, "objects", weights.objects);
        addNames(n, "tokens", weights.tokens);
        addNames(n, "logits", weights.logits);
        for (int g = 0; g < glimpses(); g++) addNames(n, "glimpseObjects[" + g + "]", weights.glimpseObjects.get(g));
        for (int g = 0; g < glimpses(); g++) addNames(n, "glimpseTokens[" + g + "]", weights.glimpseTokens.get(g));
        for (int g = 0; g < glimpses(); g++) addNames(n, "residuals[" + g + "]", weights.residuals.get(g));
        return n;
    }

    private static void addNames(List<String> n, String layer, WeightNormLinear l) {
        n.add(layer + ".weight_v");
        n.add(layer + ".weight_g");
        if (l.hasBias()) n.add(layer + ".bias");
    }

    /** Checks host inputs ({@code mask} may be null); every entry point calls it before any work. */
    public void checkInputs(float[] x, float[] y, ObjectMask mask, int batch, int objects, int tokens) {
        positive("batch", batch);
        positive("objects", objects);
        positive("tokens", tokens);
        long maps = (long) batch * glimpses() * objects * tokens;
        if ((long) batch * objects * Math.max(dx(), width()) > Integer.MAX_VALUE || (long) batch * tokens * Math.max(dy(), width()) > Integer.MAX_VALUE
                || maps > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("batch, objects, tokens: expected every tensor (B·N·max(Dx, K), B·M·max(Dy, K), B·G·N·M) <= "
                    + Integer.MAX_VALUE + " floats, got B = " + batch + ", N = " + objects + ", M = " + tokens);
        }
        checkLength3("x", x, batch, objects, dx());
        checkLength3("y", y, batch, tokens, dy());
        if (mask != null) mask.requireShape("mask", batch, objects);
    }

    private static void checkLength3(String name, float[] a, int b, int n, int d) {
        String shape = b + " × " + n + " × " + d;
        if (a == null) throw new IllegalArgumentException(name + ": expected " + shape + " floats, got null");
        if (a.length != (long) b * n * d) {
            throw new IllegalArgumentException(name + ": expected " + shape + " = " + (long) b * n * d + " floats, got " + a.length);
        }
    }

    private static void positive(String name, int v) {
        if (v < 1) throw new IllegalArgumentException(name + ": expected >= 1, got " + v);
    }

    @Override public String toString() {
        return "BanBlock[Dx=" + dx() + ", Dy=" + dy() + ", K=" + width() + ", G=" + glimpses() + ", K'=" + glimpseWidth() + ", group=" + group + "]";
    }
}
