package io.bifuse;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Objects;

/**
 * Block-superdiagonal Tucker fusion, as block.bootstrap's {@code fusions.BlockTucker} computes it: an
 * immutable op descriptor. {@link Tucker} is its one-chunk case.
 *
 * <p>Math (M = {@code mm_dim}, cut into C chunks of sizes {@code s_c} by {@link Block#chunkSizes}, chunk c
 * at offset {@code o_c}; each chunk's core an {@code nn.Bilinear} {@link BilinearLayer} {@code s_c × s_c → s_c}):
 * <pre>
 *   x̃ = x·W₀ᵀ + b₀,   ỹ = y·W₁ᵀ + b₁                                          (B × M)    linear0, linear1
 *   z_c[k] = Σ_{i,j} x̃[o_c + i] · A_c[k, i, j] · ỹ[o_c + j] + a_c[k]             (B × s_c)  bilinears.c
 *   before_cat: z = [normalize(z_0), ...];  after_cat: z = normalize([z_0, ...])   (normalize optional here)
 *   f = z·W_outᵀ + b_out                                                         (B × Out)  linear_out
 * </pre>
 * Backward: {@code ∂A_c[k, i, j] = Σ_b gz_c[k]·x̃_i·ỹ_j}, {@code gx̃_i = Σ_k gz_k Σ_j A[k, i, j]·ỹ_j},
 * {@code gỹ_j = Σ_k gz_k Σ_i x̃_i·A[k, i, j]}, and the linear layers as usual. No activation; dropout is
 * identity (inference), training-time dropout not provided. {@code shared} (equal input widths): linear1
 * is linear0 (its gradient the sum of both sides', under both names).
 *
 * <p>Backends ({@link Backend}): {@code io.bifuse.cpu.BlockTuckerCpu} (float32) and the float64
 * {@code io.bifuse.reference.BlockTuckerReference}; {@code io.bifuse.cuda.BlockTuckerCuda} (CUDA; simulated-device-tested only).
 */
public final class BlockTucker implements Op<BlockTucker.Backend>, Fusion {
    /** What every backend offers on host arrays: forward {@code B × Dx}, {@code B × Dy} → {@code B × Out}; backward every gradient, recomputing the forward. */
    public interface Backend extends FusionBackend<BlockTucker, Gradients> {}

    @Override public Class<Backend> backendType() { return Backend.class; }

    private final Linear linear0, linear1, linearOut;
    private final List<BilinearLayer> bilinears;
    private final int[] sizes, offsets;
    private final boolean shared;
    private final Normalization normalization;
    private final Block.NormPosition position;

    private BlockTucker(Linear linear0, Linear linear1, List<BilinearLayer> bilinears, Linear linearOut, int[] sizes, boolean shared, Normalization normalization,
                        Block.NormPosition position) {
        this.linear0 = linear0;
        this.linear1 = linear1;
        this.bilinears = List.copyOf(bilinears);
        this.linearOut = linearOut;
        this.sizes = sizes;
        this.offsets = new int[sizes.length];
        for (int c = 1; c < sizes.length; c++) offsets[c] = offsets[c - 1] + sizes[c - 1];
        this.shared = shared;
        this.normalization = normalization;
        this.position = position;
    }

    /** With the given layers: linear0 Dx → M, linear1 Dy → M, per chunk a bilinear {@code s_c × s_c → s_c} ({@link Block#chunkSizes}{@code (M, C)}), linearOut M → Out. */
    public static BlockTucker of(Linear linear0, Linear linear1, List<BilinearLayer> bilinears, Linear linearOut, Normalization normalization,
                                 Block.NormPosition position) {
        return checked(linear0, linear1, bilinears, linearOut, false, normalization, position);
    }

    /** Shared ({@code shared=True}: Dx = Dy, one linear0 for both sides). */
    public static BlockTucker shared(Linear linear0, List<BilinearLayer> bilinears, Linear linearOut, Normalization normalization, Block.NormPosition position) {
        return checked(linear0, linear0, bilinears, linearOut, true, normalization, position);
    }

    static BlockTucker checked(Linear linear0, Linear linear1, List<BilinearLayer> bilinears, Linear linearOut, boolean shared, Normalization normalization,
                               Block.NormPosition position) {
        Linear.require("linear0", linear0);
        Linear.require("linear1", linear1);
        Linear.require("linearOut", linearOut);
        if (normalization == null) throw new IllegalArgumentException("normalization: expected a Normalization (NONE for none), got null");
        if (position == null) throw new IllegalArgumentException("position: expected BEFORE_CAT or AFTER_CAT, got null");
        if (bilinears == null || bilinears.isEmpty()) throw new IllegalArgumentException("bilinears: expected one layer per chunk, got " + (bilinears == null ? "null" : "none"));
        int m = linear0.out();
        linear1.requireShape("linear1", m, linear1.in());
        linearOut.requireShape("linearOut", linearOut.out(), m);
        int[] sizes = Block.chunkSizes(m, bilinears.size());
        for (int c = 0; c < sizes.length; c++) {
            if (bilinears.get(c) == null) throw new IllegalArgumentException("bilinears[" + c + "]: expected a BilinearLayer, got null");
            bilinears.get(c).requireShape("bilinears[" + c + "]", sizes[c], sizes[c], sizes[c]);
        }
        return new BlockTucker(linear0, linear1, bilinears, linearOut, sizes, shared, normalization, position);
    }

    /**
     * A trained block.bootstrap {@code BlockTucker} from its state dict (names after {@code prefix}):
     * linear0, linear1, bilinears.c (c = 0, 1, ...), linear_out; M and the chunks from the shapes, which
     * must agree with {@code get_sizes_list(M, C)}. The normalization is block.bootstrap's, always on.
     */
    public static BlockTucker fromStateDict(StateDict sd, String prefix, boolean shared, Block.NormPosition position) {
        Objects.requireNonNull(sd, "sd");
        Objects.requireNonNull(prefix, "prefix");
        Linear l0 = Linear.fromStateDict(sd, prefix + "linear0"), out = Linear.fromStateDict(sd, prefix + "linear_out");
        int chunks = 0;
        while (sd.contains(prefix + "bilinears." + chunks + ".weight")) chunks++;
        if (chunks == 0) throw new IllegalArgumentException(sd.source() + ": no tensor '" + prefix + "bilinears.0.weight' (a BlockTucker has one bilinear layer per chunk)");
        int[] sizes = Block.chunkSizes(l0.out(), chunks);
        List<BilinearLayer> bl = new ArrayList<>();
        for (int c = 0; c < chunks; c++) {
            BilinearLayer b = BilinearLayer.fromStateDict(sd, prefix + "bilinears." + c);
            if (b.out() != sizes[c] || b.in1() != sizes[c] || b.in2() != sizes[c]) {
                throw new IllegalArgumentException(sd.source() + ": '" + prefix + "bilinears." + c + ".weight': expected shape [" + sizes[c] + ", " + sizes[c] + ", " + sizes[c]
                        + "] (chunk " + c + " of get_sizes_list(" + l0.out() + ", " + chunks + ") = " + Arrays.toString(sizes) + "), got [" + b.out() + ", " + b.in1() + ", "
                        + b.in2() + "]");
            }
            bl.add(b);
        }
        if (sd.contains(prefix + "bilinears." + chunks + ".bias")) {
            throw new IllegalArgumentException(sd.source() + ": '" + prefix + "bilinears." + chunks + ".bias' without its weight");
        }
        if (shared) {
            if (sd.contains(prefix + "linear1.weight") && !Linear.fromStateDict(sd, prefix + "linear1").equals(l0)) {
                throw new IllegalArgumentException(sd.source() + ": '" + prefix + "linear1': shared=true, so expected the same values as linear0");
            }
            return StateDict.loading(sd, prefix, NAMES, () -> shared(l0, bl, out, Normalization.pytorch(), position));
        }
        Linear l1 = Linear.fromStateDict(sd, prefix + "linear1");
        return StateDict.loading(sd, prefix, NAMES, () -> of(l0, l1, bl, out, Normalization.pytorch(), position));
    }

    /** The factories' argument names → block.bootstrap's tensor names (for {@link StateDict#loading}). */
    private static final java.util.Map<String, String> NAMES = java.util.Map.of("linear0", "linear0.weight", "linear1", "linear1.weight",
            "bilinears[]", "bilinears.%d.weight", "linearOut", "linear_out.weight");

    /** With every layer biased and initialized as PyTorch does, from {@code seed}: for tests and benchmarks. */
    public static BlockTucker random(int dx, int dy, int mmDim, int chunks, int out, boolean shared, Normalization normalization, Block.NormPosition position,
                                     long seed) {
        if (dx < 1 || dy < 1 || mmDim < 1 || out < 1) throw new IllegalArgumentException("dx, dy, mmDim, out: expected >= 1, got " + dx + ", " + dy + ", " + mmDim + ", " + out);
        if (shared && dx != dy) throw new IllegalArgumentException("shared: expected dx == dy, got " + dx + " and " + dy);
        int[] sizes = Block.chunkSizes(mmDim, chunks);
        List<BilinearLayer> bl = new ArrayList<>();
        for (int c = 0; c < chunks; c++) bl.add(BilinearLayer.random(sizes[c], sizes[c], sizes[c], true, seed + 10 + c));
        Linear l0 = Linear.random(mmDim, dx, true, seed), lo = Linear.random(out, mmDim, true, seed + 2);
        return shared ? shared(l0, bl, lo, normalization, position) : of(l0, Linear.random(mmDim, dy, true, seed + 1), bl, lo, normalization, position);
    }

    public Linear linear0() { return linear0; }
    public Linear linear1() { return linear1; }
    public List<BilinearLayer> bilinears() { return bilinears; }
    public Linear linearOut() { return linearOut; }
    public int chunks() { return sizes.length; }
    public int chunkSize(int c) { return sizes[c]; }
    public int chunkOffset(int c) { return offsets[c]; }
    public boolean isShared() { return shared; }
    public Normalization normalization() { return normalization; }
    public Block.NormPosition position() { return position; }
    @Override public int dx() { return linear0.in(); }
    @Override public int dy() { return linear1.in(); }
    public int mmDim() { return linear0.out(); }
    @Override public int out() { return linearOut.out(); }

    /** A bilinear layer's gradients: {@code weight} ({@code out × in1 × in2}) and {@code bias} (null where it has none). */
    public record BilinearGradients(float[] weight, float[] bias) {}

    /** Gradients: dx, dy, each layer's; with a shared op linear1's are linear0's summed ones (both names, as the state dict shows them). */
    public record Gradients(float[] dx, float[] dy, LinearGradients linear0, LinearGradients linear1, List<BilinearGradients> bilinears, LinearGradients linearOut) {
        public Gradients {
            bilinears = List.copyOf(bilinears);
        }

        /** The tensors in the order of {@link BlockTucker#gradientNames()}. */
        public List<float[]> tensors() {
            List<float[]> t = new ArrayList<>(List.of(dx, dy));
            for (LinearGradients l : List.of(linear0, linear1)) {
                t.add(l.weight());
                if (l.bias() != null) t.add(l.bias());
            }
            for (BilinearGradients b : bilinears) {
                t.add(b.weight());
                if (b.bias() != null) t.add(b.bias());
            }
            t.add(linearOut.weight());
            if (linearOut.bias() != null) t.add(linearOut.bias());
            return t;
        }
    }

    /** input.0, input.1, then the state-dict names (linear0, linear1, bilinears.c, linear_out; weight then bias). */
    public List<String> gradientNames() {
        List<String> n = new ArrayList<>(List.of("input.0", "input.1"));
        addNames(n, "linear0", linear0.hasBias());
        addNames(n, "linear1", linear1.hasBias());
        for (int c = 0; c < sizes.length; c++) addNames(n, "bilinears." + c, bilinears.get(c).hasBias());
        addNames(n, "linear_out", linearOut.hasBias());
        return n;
    }

    private static void addNames(List<String> n, String layer, boolean bias) {
        n.add(layer + ".weight");
        if (bias) n.add(layer + ".bias");
    }

    @Override public boolean equals(Object o) {
        return o instanceof BlockTucker b && shared == b.shared && position == b.position && normalization.equals(b.normalization) && linear0.equals(b.linear0)
                && linear1.equals(b.linear1) && bilinears.equals(b.bilinears) && linearOut.equals(b.linearOut);
    }

    @Override public int hashCode() { return Objects.hash(linear0, linear1, bilinears, linearOut, shared, normalization, position); }

    @Override public String toString() {
        return "BlockTucker[Dx=" + dx() + ", Dy=" + dy() + ", mm_dim=" + mmDim() + ", chunks=" + Arrays.toString(sizes) + ", Out=" + out() + (shared ? ", shared" : "")
                + ", " + normalization + " " + position + "]";
    }
}
