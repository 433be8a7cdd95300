package io.bifuse;

import java.util.ArrayList;
import java.util.List;

/**
 * Multi-head scaled dot-product attention as modular co-attention (MCAN, Yu et al. 2019; MILVLG/mcan-vqa's
 * {@code MHAtt}) uses it: an immutable op descriptor.
 *
 * <p>Math, per sample, with {@code n} heads of width {@code d = H / n}, the query sequence {@code x}
 * ({@code Lq} rows) and the key and value sequences {@code k, v} ({@code Lk} rows each):
 * <pre>
 *   Q = x W_qᵀ + b_q,  K = k W_kᵀ + b_k,  V = v W_vᵀ + b_v          Lq × H, Lk × H, Lk × H
 *   S_h = Q_h K_hᵀ / sqrt(d)                                        Lq × Lk per head h (columns [h·d, (h+1)·d))
 *   S_h[i, j] = −1e9 where key j is padding                          (mcan-vqa's masked_fill)
 *   P_h = softmax over the keys j of S_h                             Lq × Lk
 *   O   = [P_h V_h]_{h &lt; n}                                          Lq × H (heads concatenated, h major)
 *   out = O W_mᵀ + b_m                                               Lq × Out
 * </pre>
 * Self-attention passes the same sequence as query, key and value; MCAN's guided attention passes the
 * image as query and the question as key and value. Dropout on {@code P} (training only) is identity
 * here.
 *
 * <p>The key padding mask is an {@link ObjectMask} over the keys (null: every key real), as mcan-vqa's
 * {@code make_mask} gives it: a question token of index 0, or an image object whose feature row is all
 * zeros ({@link ObjectMask#zeroRows}). A padded key gets exactly zero attention whenever its sample has
 * a real key (its score is replaced by −1e9, and {@code exp(−1e9 − max)} is 0 in float and in double);
 * it then also gets zero gradients. <b>A sample whose keys are all padding</b> gets what mcan-vqa computes
 * for it, never NaN: every score is the same −1e9, so its attention is uniform, {@code 1/Lk} on every key,
 * and each query's output is the mean of the value rows; then only the value side has gradients (the
 * scores are constants: their gradient is zero, as masked_fill's is). Queries are never masked (mcan-vqa
 * computes padded queries too).
 *
 * <p>Shapes, row-major: {@code query} {@code B × Lq × Dq}, {@code key} {@code B × Lk × Dk}, {@code value}
 * {@code B × Lk × Dv}, the output {@code B × Lq × Out}, the attention maps {@code B × n × Lq × Lk}.
 * Backward takes {@code gradOut = ∂L/∂out} and returns the gradients of the three inputs and of every
 * layer's weight and bias ({@link Gradients}). Any {@code B, Lq, Lk >= 1}.
 *
 * <p>Weights ({@link Weights}) are {@link Linear} layers in {@code nn.Linear} layout: {@code query}
 * H × Dq, {@code key} H × Dk, {@code value} H × Dv, {@code merge} Out × H; in mcan-vqa's state dict they
 * are {@code linear_q}, {@code linear_k}, {@code linear_v} and {@code linear_merge}
 * ({@link #STATE_DICT_NAMES}). MCAN's sizes: H = Dq = Dk = Dv = Out = 512, 8 heads of 64.
 *
 * <p>Backends ({@link Backend}): {@code io.bifuse.cpu.MultiHeadAttentionCpu}, the float64 definition
 * ({@code MultiHeadAttentionReference}) rounded to float: exact, not fast; and
 * {@code io.bifuse.cuda.MultiHeadAttentionCuda}.
 */
public final class MultiHeadAttention implements Op<MultiHeadAttention.Backend> {
    /**
     * What every backend of this op offers on host arrays: the forward ({@code B × Lq × Out}), with the
     * attention maps ({@code B × n × Lq × Lk}), and every gradient given {@code gradOut}
     * ({@code B × Lq × Out}), written, not accumulated. {@code mask}: the keys' padding, or null.
     */
    public interface Backend extends OpBackend {
        float[] forward(float[] query, float[] key, float[] value, ObjectMask mask, int batch, int queries, int keys);
        Result forwardWithAttention(float[] query, float[] key, float[] value, ObjectMask mask, int batch, int queries, int keys);
        Gradients backward(float[] query, float[] key, float[] value, ObjectMask mask, float[] gradOut, int batch, int queries, int keys);

        /** The descriptor this backend runs. */
        MultiHeadAttention op();

        /**
         * The forward over views of the caller's memory ({@link FloatView}: part of a float[], a
         * FloatBuffer, a MemorySegment): query (B × Lq × Dq), key (B × Lk × Dk), value (B × Lk × Dv) → out (B × Lq × Out), {@code out} written, nothing returned. Every length is
         * checked, by name, before anything runs; inputs that are not one whole array are copied once,
         * and the result is copied into {@code out}.
         */
        default void forward(FloatView query, FloatView key, FloatView value, ObjectMask mask, FloatView out, int batch, int queries, int keys) {
            FloatView.requireLength("out", out, (long) batch * queries * op().out());
            float[] r = forward(FloatView.input("query", query, (long) batch * queries * op().queryDim()), FloatView.input("key", key, (long) batch * keys * op().keyDim()), FloatView.input("value", value, (long) batch * keys * op().valueDim()), mask, batch, queries, keys);
            out.copyFrom(r, 0, r.length);
        }
    }

    @Override public Class<Backend> backendType() { return Backend.class; }

    /** mcan-vqa's names of the four layers, in the order of {@link Weights}: {@code linear_q, linear_k, linear_v, linear_merge}. */
    public static final List<String> STATE_DICT_NAMES = List.of("linear_q", "linear_k", "linear_v", "linear_merge");

    /** The score given to a padded key before the softmax, as mcan-vqa's {@code masked_fill(mask, -1e9)}. */
    public static final double MASKED_SCORE = -1e9;

    /**
     * The four layers, validated against each other by name: {@code query} fixes H (its outputs) and Dq,
     * {@code key} and {@code value} must give H too, {@code merge} takes H. Biases are optional (a layer
     * without one behaves as with zeros and gets no bias gradient).
     */
    public record Weights(Linear query, Linear key, Linear value, Linear merge) {
        public Weights {
            Linear.require("query", query);
            Linear.require("key", key);
            Linear.require("value", value);
            Linear.require("merge", merge);
            int h = query.out();
            if (key.out() != h) throw new IllegalArgumentException("key: expected " + h + " outputs (H = query.out()), got a layer " + key.in() + " → " + key.out());
            if (value.out() != h) throw new IllegalArgumentException("value: expected " + h + " outputs (H = query.out()), got a layer " + value.in() + " → " + value.out());
            if (merge.in() != h) throw new IllegalArgumentException("merge: expected " + h + " inputs (H = query.out()), got a layer " + merge.in() + " → " + merge.out());
        }

        /** The layers in the order of {@link #STATE_DICT_NAMES}. */
        public List<Linear> layers() { return List.of(query, key, value, merge); }
    }

    /**
     * Gradients of a loss with respect to the inputs ({@code dQuery} {@code B × Lq × Dq}, {@code dKey}
     * {@code B × Lk × Dk}, {@code dValue} {@code B × Lk × Dv}) and to every layer's parameters, in the
     * layers' own layout. Self-attention's input gradient is the sum of the three. {@code key.bias} is all
     * zeros: the key bias adds {@code Q_h[i]·b_k} to every score of a query's row alike, which the softmax
     * cancels, so its gradient is zero in exact arithmetic, and every backend writes exact zeros.
     */
    public record Gradients(float[] dQuery, float[] dKey, float[] dValue, LinearGradients query, LinearGradients key, LinearGradients value,
                            LinearGradients merge) {
        /** Every gradient tensor in the order of {@link #gradientNames}. */
        public List<float[]> tensors() {
            List<float[]> t = new ArrayList<>(List.of(dQuery, dKey, dValue));
            for (LinearGradients l : List.of(query, key, value, merge)) {
                t.add(l.weight());
                if (l.bias() != null) t.add(l.bias());
            }
            return t;
        }
    }

    /** The result of {@link Backend#forwardWithAttention}: the output and the attention maps ({@code B × n × Lq × Lk}). */
    public record Result(float[] out, float[] attention) {}

    private final Weights weights;
    private final int heads;

    private MultiHeadAttention(Weights weights, int heads) {
        this.weights = weights;
        this.heads = heads;
    }

    /** The op with these layers and {@code heads} heads ({@code heads} must divide H). */
    public static MultiHeadAttention of(Weights weights, int heads) {
        if (weights == null) throw new IllegalArgumentException("weights: expected MultiHeadAttention.Weights, got null");
        int h = weights.query().out();
        if (heads < 1 || h % heads != 0) {
            throw new IllegalArgumentException("heads: expected a divisor of H = " + h + " (the layers' width), got " + heads);
        }
        return new MultiHeadAttention(weights, heads);
    }

    /**
     * Layers initialized as {@code nn.Linear} does, all with biases, {@code H × H} for the given input
     * width {@code dim} (query, key, value: H × dim; merge: dim × H), layer {@code i} in the order query,
     * key, value, merge from {@code Linear.random(..., seed + i)}.
     */
    public static MultiHeadAttention random(int dim, int hidden, int heads, long seed) {
        if (dim < 1) throw new IllegalArgumentException("dim: expected >= 1, got " + dim);
        if (hidden < 1) throw new IllegalArgumentException("hidden: expected >= 1, got " + hidden);
        return of(new Weights(Linear.random(hidden, dim, true, seed), Linear.random(hidden, dim, true, seed + 1),
                Linear.random(hidden, dim, true, seed + 2), Linear.random(dim, hidden, true, seed + 3)), heads);
    }

    public Weights weights() { return weights; }
    /** n, the number of heads. */
    public int heads() { return heads; }
    /** H, the width of the projections (all heads). */
    public int hidden() { return weights.query.out(); }
    /** d = H / n, one head's width. */
    public int headDim() { return hidden() / heads; }
    public int queryDim() { return weights.query.in(); }
    public int keyDim() { return weights.key.in(); }
    public int valueDim() { return weights.value.in(); }
    public int out() { return weights.merge.out(); }
    /** {@code 1 / sqrt(d)}, the scores' scale. */
    public double scale() { return 1 / Math.sqrt(headDim()); }

    /** The names of the tensors of {@link Gradients#tensors()}, in the same order. */
    public List<String> gradientNames() {
        List<String> n = new ArrayList<>(List.of("dQuery", "dKey", "dValue"));
        String[] layer = {"query", "key", "value", "merge"};
        List<Linear> l = weights.layers();
        for (int i = 0; i < 4; i++) {
            n.add(layer[i] + ".weight");
            if (l.get(i).hasBias()) n.add(layer[i] + ".bias");
        }
        return n;
    }

    /** Checks host inputs; every entry point calls it before any work. */
    public void checkInputs(float[] query, float[] key, float[] value, ObjectMask mask, int batch, int queries, int keys) {
        checkSizes(batch, queries, keys);
        CompactBilinear.checkLength("query", query, batch * queries, queryDim());
        CompactBilinear.checkLength("key", key, batch * keys, keyDim());
        CompactBilinear.checkLength("value", value, batch * keys, valueDim());
        if (mask != null) mask.requireShape("mask", batch, keys);
    }

    /** Checks {@code gradOut} ({@code B × Lq × Out}) after {@link #checkInputs}. */
    public void checkGradOut(float[] gradOut, int batch, int queries) {
        CompactBilinear.checkLength("gradOut", gradOut, batch * queries, out());
    }

    /** {@code batch, queries, keys >= 1} and the row counts {@code B·Lq}, {@code B·Lk} ints. */
    public static void checkSizes(int batch, int queries, int keys) {
        if (batch < 1) throw new IllegalArgumentException("batch: expected >= 1, got " + batch);
        if (queries < 1) throw new IllegalArgumentException("queries: expected >= 1, got " + queries);
        if (keys < 1) throw new IllegalArgumentException("keys: expected >= 1, got " + keys);
        if ((long) batch * queries > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("batch, queries: expected batch·queries <= " + Integer.MAX_VALUE + ", got " + (long) batch * queries);
        }
        if ((long) batch * keys > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("batch, keys: expected batch·keys <= " + Integer.MAX_VALUE + ", got " + (long) batch * keys);
        }
    }

    @Override public String toString() {
        return "MultiHeadAttention[H=" + hidden() + ", heads=" + heads + "×" + headDim() + ", Dq=" + queryDim() + ", Dk=" + keyDim() + ", Dv=" + valueDim()
                + ", Out=" + out() + "]";
    }
}
