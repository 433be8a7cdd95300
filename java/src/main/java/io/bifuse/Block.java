package io.bifuse;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Objects;

/**
 * BLOCK (Ben-younes et al. 2019, "BLOCK: Bilinear Superdiagonal Fusion for Visual Question Answering and
 * Visual Relationship Detection"), as block.bootstrap's {@code fusions.Block} computes it: an immutable op
 * descriptor.
 *
 * <p>Math, in {@code nn.Linear} terms (M = {@code mm_dim}, R = {@code rank}, the M units cut into C
 * chunks of sizes {@code s_c} by {@link #chunkSizes(int, int)}, chunk c at offset {@code o_c}):
 * <pre>
 *   x̃ = x·W₀ᵀ + b₀,   ỹ = y·W₁ᵀ + b₁                               (B × M)       linear0, linear1
 *   p_c = x̃[o_c, o_c + s_c)·A_cᵀ + a_c,   q_c = ỹ[o_c, o_c + s_c)·B_cᵀ + b_c   (B × R·s_c)   merge_linears0.c, merge_linears1.c
 *   z_c[j] = Σ_{r<R} p_c[r·s_c + j] · q_c[r·s_c + j]                 (B × s_c)     each chunk's rank-R core
 *   before_cat: z = [normalize(z_0), ..., normalize(z_{C−1})];  after_cat: z = normalize([z_0, ..., z_{C−1}])
 *   f = z·W_outᵀ + b_out                                             (B × Out)     linear_out
 * </pre>
 * {@code normalize} is block.bootstrap's {@code sqrt(relu(z)) − sqrt(relu(−z))} then {@code F.normalize}
 * ({@link Normalization#pytorch()}, always on there; {@link Normalization#NONE} is allowed here). There is
 * no activation; dropout is identity (inference), training-time dropout is not provided. With
 * {@code shared} (equal input widths) both sides use linear0 and merge_linears0.c, whose gradients are
 * the sums of both sides' and appear under both names, as in the module's state dict.
 *
 * <p>Backward, per chunk, as {@link Mutan}'s core: {@code gp_c = gz_c ⊙ q_c}, {@code gq_c = gz_c ⊙ p_c}
 * (broadcast over r), then each layer's {@code ∂W = gᵀ·in}, {@code ∂b = Σ_rows g}, {@code g_in = g·W}.
 *
 * <p>Backends ({@link Backend}): {@code io.bifuse.cpu.BlockCpu} (float32) and the float64
 * {@code io.bifuse.reference.BlockReference}; {@code io.bifuse.cuda.BlockCuda} (CUDA; simulated-device-tested only).
 * Loading a trained model: {@link #fromStateDict}.
 */
public final class Block implements Op<Block.Backend>, Fusion {
    /** Where the normalization sits: on each chunk's core ({@code 'before_cat'}, block.bootstrap's default) or on their concatenation. */
    public enum NormPosition { BEFORE_CAT, AFTER_CAT }

    /**
     * What every backend of this op offers on host arrays: {@code forward} {@code B × Dx}, {@code B × Dy}
     * → {@code B × Out}; {@code backward} every gradient given {@code gradOut} ({@code B × Out}),
     * recomputing the forward, written, not accumulated.
     */
    public interface Backend extends FusionBackend<Block, Gradients> {}

    @Override public Class<Backend> backendType() { return Backend.class; }

    private final Linear linear0, linear1, linearOut;
    private final List<Linear> merge0, merge1;
    private final int rank;
    private final int[] sizes, offsets;
    private final boolean shared;
    private final Normalization normalization;
    private final NormPosition position;

    private Block(Linear linear0, Linear linear1, List<Linear> merge0, List<Linear> merge1, Linear linearOut, int rank, int[] sizes, boolean shared,
                  Normalization normalization, NormPosition position) {
        this.linear0 = linear0;
        this.linear1 = linear1;
        this.merge0 = List.copyOf(merge0);
        this.merge1 = List.copyOf(merge1);
        this.linearOut = linearOut;
        this.rank = rank;
        this.sizes = sizes;
        this.offsets = new int[sizes.length];
        for (int c = 1; c < sizes.length; c++) offsets[c] = offsets[c - 1] + sizes[c - 1];
        this.shared = shared;
        this.normalization = normalization;
        this.position = position;
    }

    /**
     * block.bootstrap's {@code get_sizes_list(dim, chunks)}: {@code ceil(dim / chunks)} units per chunk,
     * the last one short by the excess; where that would leave it negative, the last chunks give up a
     * unit each instead. Every size is at least 1 and they sum to {@code dim}.
     */
    public static int[] chunkSizes(int dim, int chunks) {
        if (chunks < 1) throw new IllegalArgumentException("chunks: expected >= 1, got " + chunks);
        if (dim < chunks) throw new IllegalArgumentException("chunks: expected at most mm_dim = " + dim + " chunks (one unit each at least), got " + chunks);
        int split = (dim + chunks - 1) / chunks;
        int[] s = new int[chunks];
        Arrays.fill(s, split);
        s[chunks - 1] -= split * chunks - dim;
        if (s[chunks - 1] < 0) {
            int miss = s[chunks - 2] - s[chunks - 1];
            s[chunks - 1] = s[chunks - 2];
            for (int j = 0; j < miss; j++) s[chunks - 1 - j] -= 1;
        }
        int sum = 0;
        for (int v : s) {
            if (v < 1) throw new IllegalArgumentException("chunks: " + chunks + " chunks of mm_dim = " + dim + " leave an empty chunk " + Arrays.toString(s));
            sum += v;
        }
        if (sum != dim) throw new AssertionError(Arrays.toString(s) + " for " + dim);
        return s;
    }

    /**
     * BLOCK with the given layers: {@code linear0} Dx → M, {@code linear1} Dy → M, for each chunk c
     * {@code merge0.get(c)} and {@code merge1.get(c)} {@code s_c → R·s_c} (the chunk sizes
     * {@link #chunkSizes}{@code (M, C)}), {@code linearOut} M → Out; each may lack its bias.
     */
    public static Block of(Linear linear0, Linear linear1, List<Linear> merge0, List<Linear> merge1, Linear linearOut, int rank,
                           Normalization normalization, NormPosition position) {
        return checked(linear0, linear1, merge0, merge1, linearOut, rank, false, normalization, position);
    }

    /** Shared BLOCK ({@code shared=True}: Dx = Dy, one linear0 and one merge layer per chunk for both sides). */
    public static Block shared(Linear linear0, List<Linear> merge0, Linear linearOut, int rank, Normalization normalization, NormPosition position) {
        return checked(linear0, linear0, merge0, merge0, linearOut, rank, true, normalization, position);
    }

    private static Block checked(Linear linear0, Linear linear1, List<Linear> merge0, List<Linear> merge1, Linear linearOut, int rank, boolean shared,
                                 Normalization normalization, NormPosition position) {
        Linear.require("linear0", linear0);
        Linear.require("linear1", linear1);
        Linear.require("linearOut", linearOut);
        if (rank < 1) throw new IllegalArgumentException("rank: expected >= 1, got " + rank);
        if (normalization == null) throw new IllegalArgumentException("normalization: expected a Normalization (NONE for none), got null");
        if (position == null) throw new IllegalArgumentException("position: expected BEFORE_CAT or AFTER_CAT, got null");
        if (merge0 == null || merge0.isEmpty()) throw new IllegalArgumentException("merge0: expected one layer per chunk, got " + (merge0 == null ? "null" : "none"));
        if (merge1 == null || merge1.size() != merge0.size()) {
            throw new IllegalArgumentException("merge1: expected " + merge0.size() + " layers (one per chunk, as merge0), got " + (merge1 == null ? "null" : merge1.size()));
        }
        int m = linear0.out();
        linear1.requireShape("linear1", m, linear1.in());
        linearOut.requireShape("linearOut", linearOut.out(), m);
        int[] sizes = chunkSizes(m, merge0.size());
        for (int c = 0; c < sizes.length; c++) {
            long rs = (long) rank * sizes[c];
            if (rs > Integer.MAX_VALUE) throw new IllegalArgumentException("rank: rank × chunk size = " + rs + " does not fit an int");
            Linear.require("merge0[" + c + "]", merge0.get(c)).requireShape("merge0[" + c + "]", (int) rs, sizes[c]);
            Linear.require("merge1[" + c + "]", merge1.get(c)).requireShape("merge1[" + c + "]", (int) rs, sizes[c]);
        }
        return new Block(linear0, linear1, merge0, merge1, linearOut, rank, sizes, shared, normalization, position);
    }

    /**
     * The fusion of a trained block.bootstrap {@code Block}, from its state dict (names after
     * {@code prefix}): {@code linear0}, {@code linear1}, {@code merge_linears0.c}, {@code merge_linears1.c}
     * for c = 0, 1, ... (as many as there are), {@code linear_out}. M, the chunks C, R, Dx, Dy, Out come
     * from the shapes, which must agree with {@code get_sizes_list(M, C)} and one R. {@code shared} and
     * {@code position} ({@code pos_norm}) are the module's constructor arguments; the normalization is
     * always block.bootstrap's ({@link Normalization#pytorch()}).
     */
    public static Block fromStateDict(StateDict sd, String prefix, boolean shared, NormPosition position) {
        Objects.requireNonNull(sd, "sd");
        Objects.requireNonNull(prefix, "prefix");
        Linear l0 = Linear.fromStateDict(sd, prefix + "linear0"), out = Linear.fromStateDict(sd, prefix + "linear_out");
        int m = l0.out();
        int chunks = 0;
        while (sd.contains(prefix + "merge_linears0." + chunks + ".weight")) chunks++;
        if (chunks == 0) throw new IllegalArgumentException(sd.source() + ": no tensor '" + prefix + "merge_linears0.0.weight' (a Block has one merge layer per chunk)");
        int[] sizes = chunkSizes(m, chunks);
        List<Linear> m0 = new ArrayList<>(), m1 = new ArrayList<>();
        int rank = -1;
        for (int c = 0; c < chunks; c++) {
            Linear a = Linear.fromStateDict(sd, prefix + "merge_linears0." + c);
            if (a.in() != sizes[c] || a.out() % sizes[c] != 0 || (rank > 0 && a.out() != rank * sizes[c])) {
                throw new IllegalArgumentException(sd.source() + ": '" + prefix + "merge_linears0." + c + ".weight': expected shape [" + (rank > 0 ? rank + " × " : "rank × ")
                        + sizes[c] + ", " + sizes[c] + "] (chunk " + c + " of get_sizes_list(" + m + ", " + chunks + ") = " + Arrays.toString(sizes) + "), got ["
                        + a.out() + ", " + a.in() + "]");
            }
            rank = a.out() / sizes[c];
            m0.add(a);
            if (!shared) m1.add(Linear.fromStateDict(sd, prefix + "merge_linears1." + c));
            else requireSame(sd, prefix + "merge_linears1." + c, a);
        }
        if (sd.contains(prefix + "merge_linears0." + chunks + ".bias")) {
            throw new IllegalArgumentException(sd.source() + ": '" + prefix + "merge_linears0." + chunks + ".bias' without its weight");
        }
        if (shared) {
            requireSame(sd, prefix + "linear1", l0);
            int r = rank;
            return StateDict.loading(sd, prefix, NAMES, () -> shared(l0, m0, out, r, Normalization.pytorch(), position));
        }
        Linear l1 = Linear.fromStateDict(sd, prefix + "linear1");
        int r = rank;
        return StateDict.loading(sd, prefix, NAMES, () -> of(l0, l1, m0, m1, out, r, Normalization.pytorch(), position));
    }

    /** The factories' argument names → block.bootstrap's tensor names (for {@link StateDict#loading}). */
    private static final java.util.Map<String, String> NAMES = java.util.Map.of("linear0", "linear0.weight", "linear1", "linear1.weight",
            "merge0[]", "merge_linears0.%d.weight", "merge1[]", "merge_linears1.%d.weight", "linearOut", "linear_out.weight");

    private static void requireSame(StateDict sd, String name, Linear expected) {
        if (sd.contains(name + ".weight") && !Linear.fromStateDict(sd, name).equals(expected)) {
            throw new IllegalArgumentException(sd.source() + ": '" + name + "': shared=true, so expected the same values as its side-0 layer"
                    + " (a shared module's state dict holds the one layer under both names)");
        }
    }

    /** BLOCK with every layer biased and initialized as {@code nn.Linear} does, from {@code seed}: for tests and benchmarks. */
    public static Block random(int dx, int dy, int mmDim, int chunks, int rank, int out, boolean shared, Normalization normalization, NormPosition position,
                               long seed) {
        if (dx < 1 || dy < 1 || mmDim < 1 || rank < 1 || out < 1) {
            throw new IllegalArgumentException("dx, dy, mmDim, rank, out: expected >= 1, got " + dx + ", " + dy + ", " + mmDim + ", " + rank + ", " + out);
        }
        if (shared && dx != dy) throw new IllegalArgumentException("shared: expected dx == dy, got " + dx + " and " + dy);
        int[] sizes = chunkSizes(mmDim, chunks);
        List<Linear> m0 = new ArrayList<>(), m1 = new ArrayList<>();
        for (int c = 0; c < chunks; c++) {
            m0.add(Linear.random(Math.multiplyExact(rank, sizes[c]), sizes[c], true, seed + 10 + 2L * c));
            m1.add(Linear.random(rank * sizes[c], sizes[c], true, seed + 11 + 2L * c));
        }
        Linear l0 = Linear.random(mmDim, dx, true, seed), lo = Linear.random(out, mmDim, true, seed + 2);
        if (shared) return shared(l0, m0, lo, rank, normalization, position);
        return of(l0, Linear.random(mmDim, dy, true, seed + 1), m0, m1, lo, rank, normalization, position);
    }

    public Linear linear0() { return linear0; }
    public Linear linear1() { return linear1; }
    public List<Linear> merge0() { return merge0; }
    public List<Linear> merge1() { return merge1; }
    public Linear linearOut() { return linearOut; }
    public int rank() { return rank; }
    public int chunks() { return sizes.length; }
    /** Chunk c's size {@code s_c}. */
    public int chunkSize(int c) { return sizes[c]; }
    /** Chunk c's first unit {@code o_c}. */
    public int chunkOffset(int c) { return offsets[c]; }
    public boolean isShared() { return shared; }
    public Normalization normalization() { return normalization; }
    public NormPosition position() { return position; }
    @Override public int dx() { return linear0.in(); }
    @Override public int dy() { return linear1.in(); }
    public int mmDim() { return linear0.out(); }
    @Override public int out() { return linearOut.out(); }

    /**
     * Gradients of BLOCK: {@code dx}, {@code dy} and every layer's (bias null where it has none); with a
     * shared op, {@code linear1} and {@code merge1} hold the same summed gradients as {@code linear0} and
     * {@code merge0}.
     */
    public record Gradients(float[] dx, float[] dy, LinearGradients linear0, LinearGradients linear1, List<LinearGradients> merge0,
                            List<LinearGradients> merge1, LinearGradients linearOut) {
        public Gradients {
            merge0 = List.copyOf(merge0);
            merge1 = List.copyOf(merge1);
        }

        /** The tensors in the order of {@link Block#gradientNames()}. */
        public List<float[]> tensors() {
            List<float[]> t = new ArrayList<>(List.of(dx, dy));
            List<LinearGradients> layers = new ArrayList<>(List.of(linear0, linear1));
            layers.addAll(merge0);
            layers.addAll(merge1);
            layers.add(linearOut);
            for (LinearGradients l : layers) {
                t.add(l.weight());
                if (l.bias() != null) t.add(l.bias());
            }
            return t;
        }
    }

    /** The names of {@link Gradients#tensors()}: {@code input.0}, {@code input.1}, then the state-dict names in that order. */
    public List<String> gradientNames() {
        List<String> n = new ArrayList<>(List.of("input.0", "input.1"));
        List<String> names = new ArrayList<>(List.of("linear0", "linear1"));
        List<Linear> layers = new ArrayList<>(List.of(linear0, linear1));
        for (int c = 0; c < sizes.length; c++) {
            names.add("merge_linears0." + c);
            layers.add(merge0.get(c));
        }
        for (int c = 0; c < sizes.length; c++) {
            names.add("merge_linears1." + c);
            layers.add(merge1.get(c));
        }
        names.add("linear_out");
        layers.add(linearOut);
        for (int i = 0; i < names.size(); i++) {
            n.add(names.get(i) + ".weight");
            if (layers.get(i).hasBias()) n.add(names.get(i) + ".bias");
        }
        return n;
    }

    @Override public boolean equals(Object o) {
        return o instanceof Block b && rank == b.rank && shared == b.shared && position == b.position && normalization.equals(b.normalization)
                && linear0.equals(b.linear0) && linear1.equals(b.linear1) && merge0.equals(b.merge0) && merge1.equals(b.merge1) && linearOut.equals(b.linearOut);
    }

    @Override public int hashCode() { return Objects.hash(linear0, linear1, merge0, merge1, linearOut, rank, shared, normalization, position); }

    @Override public String toString() {
        return "Block[Dx=" + dx() + ", Dy=" + dy() + ", mm_dim=" + mmDim() + ", chunks=" + Arrays.toString(sizes) + ", rank=" + rank + ", Out=" + out()
                + (shared ? ", shared" : "") + ", " + normalization + " " + position + "]";
    }
}
