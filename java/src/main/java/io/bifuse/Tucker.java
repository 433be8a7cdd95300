package io.bifuse;

import java.util.ArrayList;
import java.util.List;
import java.util.Objects;

/**
 * Tucker fusion, as block.bootstrap's {@code fusions.Tucker} computes it: an immutable op descriptor.
 * <pre>
 *   x̃ = x·W₀ᵀ + b₀,   ỹ = y·W₁ᵀ + b₁                            (B × M)    linear0, linear1
 *   z_k = Σ_{i,j} x̃_i · A[k, i, j] · ỹ_j + a_k                    (B × M)    bilinear (nn.Bilinear M × M → M)
 *   ẑ = normalize(z)  (optional: signed sqrt, then l2)
 *   f = ẑ·W_outᵀ + b_out                                           (B × Out)  linear_out
 * </pre>
 * It is {@link BlockTucker} with one chunk ({@link #asBlockTucker()}), whose backends and reference run
 * it. block.bootstrap's {@code shared} argument has no effect on its Tucker (the module builds a second
 * linear1 either way), so there is none here: linear1 is always its own layer. No activation; dropout is
 * identity (inference). Backends: {@code io.bifuse.cpu.TuckerCpu}, {@code io.bifuse.reference.TuckerReference};
 * {@code io.bifuse.cuda.TuckerCuda} (CUDA; simulated-device-tested only).
 */
public final class Tucker implements Op<Tucker.Backend>, Fusion {
    /** What every backend offers on host arrays (as {@link BlockTucker.Backend}). */
    public interface Backend extends FusionBackend<Tucker, Gradients> {}

    @Override public Class<Backend> backendType() { return Backend.class; }

    private final BlockTucker block;

    private Tucker(BlockTucker block) {
        this.block = block;
    }

    /** linear0 Dx → M, linear1 Dy → M, bilinear M × M → M, linearOut M → Out; {@code normalization} NONE or {@link Normalization#pytorch()} ({@code normalize=True}). */
    public static Tucker of(Linear linear0, Linear linear1, BilinearLayer bilinear, Linear linearOut, Normalization normalization) {
        if (bilinear == null) throw new IllegalArgumentException("bilinear: expected a BilinearLayer, got null");
        try {
            return new Tucker(BlockTucker.checked(linear0, linear1, List.of(bilinear), linearOut, false, normalization, Block.NormPosition.AFTER_CAT));
        } catch (IllegalArgumentException e) { // Tucker's one core is BlockTucker's bilinears[0]: say it as Tucker's argument
            String m = String.valueOf(e.getMessage());
            if (!m.startsWith("bilinears[0]: ")) throw e;
            throw new IllegalArgumentException("bilinear: " + m.substring("bilinears[0]: ".length()), e);
        }
    }

    /** A trained block.bootstrap {@code Tucker} from its state dict (linear0, linear1, bilinear, linear_out after {@code prefix}); {@code normalize}: its constructor argument. */
    public static Tucker fromStateDict(StateDict sd, String prefix, boolean normalize) {
        Objects.requireNonNull(sd, "sd");
        Objects.requireNonNull(prefix, "prefix");
        Linear l0 = Linear.fromStateDict(sd, prefix + "linear0"), l1 = Linear.fromStateDict(sd, prefix + "linear1"), lo = Linear.fromStateDict(sd, prefix + "linear_out");
        BilinearLayer b = BilinearLayer.fromStateDict(sd, prefix + "bilinear");
        return StateDict.loading(sd, prefix, java.util.Map.of("linear0", "linear0.weight", "linear1", "linear1.weight", "bilinear", "bilinear.weight",
                "linearOut", "linear_out.weight"), () -> of(l0, l1, b, lo, normalize ? Normalization.pytorch() : Normalization.NONE));
    }

    /** With every layer biased and initialized as PyTorch does, from {@code seed}. */
    public static Tucker random(int dx, int dy, int mmDim, int out, Normalization normalization, long seed) {
        BlockTucker b = BlockTucker.random(dx, dy, mmDim, 1, out, false, normalization, Block.NormPosition.AFTER_CAT, seed);
        return new Tucker(b);
    }

    /** The same fusion as a one-chunk {@link BlockTucker} (what its backends run). */
    public BlockTucker asBlockTucker() { return block; }

    public Linear linear0() { return block.linear0(); }
    public Linear linear1() { return block.linear1(); }
    public BilinearLayer bilinear() { return block.bilinears().get(0); }
    public Linear linearOut() { return block.linearOut(); }
    public Normalization normalization() { return block.normalization(); }
    @Override public int dx() { return block.dx(); }
    @Override public int dy() { return block.dy(); }
    public int mmDim() { return block.mmDim(); }
    @Override public int out() { return block.out(); }

    /** Gradients: dx, dy and each layer's. */
    public record Gradients(float[] dx, float[] dy, LinearGradients linear0, LinearGradients linear1, BlockTucker.BilinearGradients bilinear,
                            LinearGradients linearOut) {
        /** The same gradients of the one-chunk {@link BlockTucker}. */
        public static Gradients of(BlockTucker.Gradients g) {
            return new Gradients(g.dx(), g.dy(), g.linear0(), g.linear1(), g.bilinears().get(0), g.linearOut());
        }

        /** The tensors in the order of {@link Tucker#gradientNames()}. */
        public List<float[]> tensors() {
            return new BlockTucker.Gradients(dx, dy, linear0, linear1, List.of(bilinear), linearOut).tensors();
        }
    }

    /** input.0, input.1, then the state-dict names (linear0, linear1, bilinear, linear_out; weight then bias). */
    public List<String> gradientNames() {
        List<String> n = new ArrayList<>();
        for (String s : block.gradientNames()) n.add(s.startsWith("bilinears.0.") ? "bilinear." + s.substring("bilinears.0.".length()) : s);
        return n;
    }

    @Override public boolean equals(Object o) { return o instanceof Tucker t && block.equals(t.block); }

    @Override public int hashCode() { return block.hashCode(); }

    @Override public String toString() {
        return "Tucker[Dx=" + dx() + ", Dy=" + dy() + ", mm_dim=" + mmDim() + ", Out=" + out() + (normalization().isIdentity() ? "" : ", " + normalization()) + "]";
    }
}
