package io.bifuse;

import java.util.ArrayList;
import java.util.List;

/**
 * Hierarchical attention pooling (the attention of HAN, Yang et al. 2016, "Hierarchical Attention
 * Networks for Document Classification", without its GRUs): the same attention pooling applied level by
 * level (words → sentences → documents, or words → phrases → sentences → ...), each level's pooled
 * vectors the items of the next; an immutable op descriptor.
 *
 * <p>Math. Level {@code ℓ < L} ({@link #levels()}) has a projection {@code W_ℓ, b_ℓ} ({@code k_ℓ × d}) and
 * a logits layer {@code c_ℓ, b_cℓ} ({@code 1 × k_ℓ}: HAN's context vector {@code u_w}, with an optional
 * bias), and its {@code N_ℓ} items {@code x_i ∈ R^d} fall into {@code G_ℓ} groups given CSR style by
 * {@code offsets_ℓ} (group {@code g} holds items {@code offsets_ℓ[g] ≤ i < offsets_ℓ[g+1]}):
 * <pre>
 *   u_i = tanh(W_ℓ x_i + b_ℓ)                                  k_ℓ   per item
 *   a_i = c_ℓ · u_i + b_cℓ                                           per item
 *   α_i = softmax over the items of i's group of (a_j)_j              per item
 *   s_g = Σ_{i in group g} α_i x_i                             d     per group
 * </pre>
 * Level 0's items are the input rows ({@code N_0 × d}, every sample's items together); level
 * {@code ℓ + 1}'s items are level {@code ℓ}'s pooled vectors ({@code N_{ℓ+1} = G_ℓ}); the output is the
 * last level's {@code G_{L−1} × d} pooled vectors. The width {@code d} is the same at every level (a
 * pooled vector is a convex combination of items); the attention widths {@code k_ℓ} may differ.
 *
 * <p>An EMPTY group ({@code offsets[g] == offsets[g+1]}) pools to the zero vector (a sum over no
 * items; never the NaN of a softmax over nothing), has no attention weights, and passes no gradient
 * back; at the next level that zero vector is an item like any other. The logits bias {@code b_cℓ}
 * shifts every logit of a group alike, which the softmax cancels: it changes nothing and its gradient
 * is exactly zero (backends return exact zeros).
 *
 * <p>Offsets ({@code int[L][]}, level {@code ℓ}'s of length {@code G_ℓ + 1 >= 2}) are checked by name
 * before any work ({@link #groupCounts}): {@code offsets[ℓ][0] == 0}, non-decreasing, and
 * {@code offsets[ℓ][G_ℓ] == N_ℓ} ({@code items} at level 0, {@code G_{ℓ−1}} above). No padding: work is
 * proportional to the items, whatever the groups' lengths.
 *
 * <p>Shapes, row-major: {@code x} is {@code N_0 × d}; the output {@code G_{L−1} × d}; the attention
 * weights one array per level, {@code N_ℓ} each (item {@code i}'s weight within its group). Backward
 * takes {@code gradOut = ∂L/∂out} ({@code G_{L−1} × d}) and returns the gradients of {@code x} and of
 * every level's parameters ({@link Gradients}).
 *
 * <p>Weights ({@link Weights}) are {@link Linear} layers in the layout of a PyTorch {@code nn.Linear}
 * state dict (HAN's {@code nn.Linear(d, k)} and its context vector as {@code nn.Linear(k, 1, bias=False)}).
 * Sizes: HAN's GRU outputs give {@code d = 100} (2 × 50) at {@code k = 100}; {@link #random} takes any.
 *
 * <p>Backends ({@link Backend}): {@code io.bifuse.cpu.HierarchicalAttentionCpu} (float32, multithreaded:
 * one projection GEMM per level, fused per-group pooling over the offsets) and
 * {@code io.bifuse.cuda.HierarchicalAttentionCuda}; {@code io.bifuse.reference.HierarchicalAttentionReference}
 * is the float64 definition both are tested against.
 */
public final class HierarchicalAttention implements Op<HierarchicalAttention.Backend> {
    /**
     * What every backend of this op offers on host arrays ({@code HierarchicalAttentionCpu} in
     * io.bifuse.cpu, {@code HierarchicalAttentionCuda} in io.bifuse.cuda): the forward
     * {@code x (N_0 × d)} → {@code G_{L−1} × d}, with every level's attention weights, and every gradient
     * given {@code gradOut} ({@code G_{L−1} × d}), written, not accumulated. {@code offsets[ℓ]} are level
     * {@code ℓ}'s group boundaries (see the class comment).
     */
    public interface Backend extends OpBackend {
        float[] forward(float[] x, int items, int[][] offsets);
        Result forwardWithAttention(float[] x, int items, int[][] offsets);
        Gradients backward(float[] x, float[] gradOut, int items, int[][] offsets);

        /** The descriptor this backend runs. */
        HierarchicalAttention op();

        /**
         * The forward over views of the caller's memory ({@link FloatView}: part of a float[], a
         * FloatBuffer, a MemorySegment): x ({@code items × d}) → out ({@code G_{L−1} × d}), written,
         * nothing returned. The offsets and every length are checked, by name, before anything runs; an
         * input that is not one whole array is copied once, and the result is copied into {@code out}.
         */
        default void forward(FloatView x, FloatView out, int items, int[][] offsets) {
            int[] groups = op().groupCounts(items, offsets);
            FloatView.requireLength("out", out, (long) groups[groups.length - 1] * op().dim());
            float[] r = forward(FloatView.input("x", x, (long) items * op().dim()), items, offsets);
            out.copyFrom(r, 0, r.length);
        }
    }

    @Override public Class<Backend> backendType() { return Backend.class; }

    /** HAN's attention width (and its GRUs' output width 2 × 50 = d). */
    public static final int DEFAULT_WIDTH = 100;

    /**
     * One level: {@code projection} {@code k × d} (W, b), {@code logits} {@code 1 × k} (the context
     * vector c, b_c). Biases are optional (a layer without one behaves as with zeros and gets no bias
     * gradient).
     */
    public record Level(Linear projection, Linear logits) {}

    /** The {@code L} levels, validated by name: level 0's projection fixes {@code d}; each level its own {@code k_ℓ}. */
    public record Weights(List<Level> levels) {
        public Weights {
            if (levels == null) throw new IllegalArgumentException("levels: expected a list of L >= 1 attention levels, got null");
            if (levels.isEmpty()) throw new IllegalArgumentException("levels: expected L >= 1 attention levels, got 0");
            int d = -1;
            for (int i = 0; i < levels.size(); i++) {
                String n = "levels[" + i + "]";
                Level l = levels.get(i);
                if (l == null) throw new IllegalArgumentException(n + ": expected a HierarchicalAttention.Level, got null");
                Linear.require(n + ".projection", l.projection());
                if (i == 0) d = l.projection().in();
                else l.projection().requireShape(n + ".projection", l.projection().out(), d);
                Linear.require(n + ".logits", l.logits()).requireShape(n + ".logits", 1, l.projection().out());
            }
            levels = List.copyOf(levels);
        }
    }

    /** One level's parameter gradients, as {@link Level}. */
    public record LevelGradients(LinearGradients projection, LinearGradients logits) {}

    /**
     * Gradients of a loss with respect to the input ({@code dx}, {@code N_0 × d}) and to every level's
     * parameters, in the layers' own layout; every {@code logits.bias} is all zeros (see the class comment).
     */
    public record Gradients(float[] dx, List<LevelGradients> levels) {
        public Gradients { levels = List.copyOf(levels); }

        /** Every gradient tensor in the order of {@link #gradientNames()}: dx, then per level projection, logits (weight, then bias if any). */
        public List<float[]> tensors() {
            List<float[]> t = new ArrayList<>();
            t.add(dx);
            for (LevelGradients l : levels) {
                for (LinearGradients g : List.of(l.projection(), l.logits())) {
                    t.add(g.weight());
                    if (g.bias() != null) t.add(g.bias());
                }
            }
            return t;
        }
    }

    /** The result of {@link Backend#forwardWithAttention}: the output ({@code G_{L−1} × d}) and per level the attention weights ({@code N_ℓ}). */
    public record Result(float[] out, List<float[]> attention) {
        public Result { attention = List.copyOf(attention); }
    }

    private final Weights weights;

    private HierarchicalAttention(Weights weights) { this.weights = weights; }

    /** The op with these levels. */
    public static HierarchicalAttention of(Weights weights) {
        if (weights == null) throw new IllegalArgumentException("weights: expected HierarchicalAttention.Weights, got null");
        return new HierarchicalAttention(weights);
    }

    /**
     * {@code levels} levels of attention width {@code width}, initialized as {@code nn.Linear} does, all
     * with biases; level {@code ℓ}'s projection and logits layers from {@code Linear.random(..., seed + 2ℓ + 0, 1)}.
     */
    public static HierarchicalAttention random(int d, int width, int levels, long seed) {
        positive("d", d);
        positive("width", width);
        positive("levels", levels);
        List<Level> l = new ArrayList<>();
        for (int i = 0; i < levels; i++) l.add(new Level(Linear.random(width, d, true, seed + 2L * i), Linear.random(1, width, true, seed + 2L * i + 1)));
        return of(new Weights(l));
    }

    public Weights weights() { return weights; }
    /** d, the width of every item and pooled vector. */
    public int dim() { return weights.levels.get(0).projection().in(); }
    /** k_ℓ, level {@code level}'s attention width. */
    public int width(int level) { return weights.levels.get(level).projection().out(); }
    /** L, the number of levels. */
    public int levels() { return weights.levels.size(); }

    /** The names of the tensors of {@link Gradients#tensors()}, in the same order. */
    public List<String> gradientNames() {
        List<String> n = new ArrayList<>(List.of("dx"));
        for (int i = 0; i < levels(); i++) {
            Level l = weights.levels.get(i);
            addNames(n, "levels[" + i + "].projection", l.projection());
            addNames(n, "levels[" + i + "].logits", l.logits());
        }
        return n;
    }

    private static void addNames(List<String> n, String layer, Linear l) {
        n.add(layer + ".weight");
        if (l.hasBias()) n.add(layer + ".bias");
    }

    /**
     * Checks {@code offsets} for {@code items} input rows (see the class comment) and returns the group
     * counts {@code G_ℓ} per level; every message starts with the offending entry's name
     * ({@code offsets[ℓ][g]}).
     */
    public int[] groupCounts(int items, int[][] offsets) {
        positive("items", items);
        int levels = levels();
        if (offsets == null) throw new IllegalArgumentException("offsets: expected " + levels + " levels' group offsets, got null");
        if (offsets.length != levels) throw new IllegalArgumentException("offsets: expected " + levels + " levels' group offsets, got " + offsets.length);
        int[] groups = new int[levels];
        int n = items;
        for (int l = 0; l < levels; l++) {
            String name = "offsets[" + l + "]";
            int[] o = offsets[l];
            if (o == null) throw new IllegalArgumentException(name + ": expected G + 1 >= 2 group offsets, got null");
            if (o.length < 2) throw new IllegalArgumentException(name + ": expected G + 1 >= 2 group offsets (at least one group), got " + o.length);
            if (o[0] != 0) throw new IllegalArgumentException(name + "[0]: expected 0 (the first group starts at item 0), got " + o[0]);
            for (int g = 1; g < o.length; g++) {
                if (o[g] < o[g - 1]) {
                    throw new IllegalArgumentException(name + "[" + g + "]: expected >= " + name + "[" + (g - 1) + "] = " + o[g - 1]
                            + " (offsets are non-decreasing), got " + o[g]);
                }
            }
            int last = o.length - 1;
            if (o[last] != n) {
                throw new IllegalArgumentException(name + "[" + last + "]: expected " + n + " (level " + l + "'s items"
                        + (l == 0 ? "" : ", the groups of level " + (l - 1)) + "), got " + o[last]);
            }
            groups[l] = last;
            n = last;
        }
        return groups;
    }

    /** Checks host inputs and returns the group counts per level; every entry point calls it before any work. */
    public int[] checkInputs(float[] x, int items, int[][] offsets) {
        int[] groups = groupCounts(items, offsets);
        CompactBilinear.checkLength("x", x, items, dim());
        return groups;
    }

    /** As {@link #checkInputs(float[], int, int[][])}, and {@code gradOut} {@code G_{L−1} × d}. */
    public int[] checkInputs(float[] x, float[] gradOut, int items, int[][] offsets) {
        int[] groups = checkInputs(x, items, offsets);
        CompactBilinear.checkLength("gradOut", gradOut, groups[groups.length - 1], dim());
        return groups;
    }

    /**
     * Every level's offsets concatenated, level {@code ℓ}'s {@code G_ℓ + 1} entries from
     * {@code Σ_{m<ℓ} (G_m + 1)}: the device layout of the CUDA backend's offsets (check them first with
     * {@link #groupCounts}).
     */
    public static int[] flatOffsets(int[][] offsets) {
        if (offsets == null) throw new IllegalArgumentException("offsets: expected every level's group offsets, got null");
        int n = 0;
        for (int l = 0; l < offsets.length; l++) {
            if (offsets[l] == null) throw new IllegalArgumentException("offsets[" + l + "]: expected G + 1 >= 2 group offsets, got null");
            n = Math.addExact(n, offsets[l].length);
        }
        int[] flat = new int[n];
        int at = 0;
        for (int[] o : offsets) {
            System.arraycopy(o, 0, flat, at, o.length);
            at += o.length;
        }
        return flat;
    }

    private static void positive(String name, int v) {
        if (v < 1) throw new IllegalArgumentException(name + ": expected >= 1, got " + v);
    }

    @Override public String toString() {
        StringBuilder k = new StringBuilder();
        for (int l = 0; l < levels(); l++) k.append(l == 0 ? "" : ",").append(width(l));
        return "HierarchicalAttention[d=" + dim() + ", k=" + k + ", L=" + levels() + "]";
    }
}
