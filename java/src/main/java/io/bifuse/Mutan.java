package io.bifuse;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Objects;

/**
 * MUTAN (Ben-younes et al. 2017, "MUTAN: Multimodal Tucker Fusion for Visual Question Answering"), as
 * block.bootstrap's {@code fusions.Mutan} computes it: an immutable op descriptor.
 *
 * <p>Math, in {@code nn.Linear} terms (weights {@code out × in}, rows are samples; M = {@code mm_dim},
 * R = {@code rank}):
 * <pre>
 *   x̃ = x·W₀ᵀ + b₀,   ỹ = y·W₁ᵀ + b₁                         (B × M)    linear0, linear1
 *   p = x̃·M₀ᵀ + c₀,   q = ỹ·M₁ᵀ + c₁                         (B × R·M)  merge_linear0, merge_linear1
 *   z_j = Σ_{r<R} p[r·M + j] · q[r·M + j]                     (B × M)    the rank-R Tucker core
 *   ẑ = normalize(z)                                          (B × M)    optional: signed sqrt, then l2
 *   f = ẑ·W_outᵀ + b_out                                      (B × Out)  linear_out
 * </pre>
 * {@code z} is block.bootstrap's {@code (p * q).view(-1, R, M).sum(1)}: the R slices of M adjacent units
 * summed (MFB's sum pooling instead adds k <em>adjacent</em> units). There is no activation anywhere;
 * dropout is identity (inference), and training-time dropout is not provided. With {@code shared}
 * ({@code input_dims} equal) the two sides use one linear0 and one merge_linear0, whose gradients are the
 * sums of both sides' (and, as in the module's state dict, appear under both names).
 *
 * <p>Backward, given {@code g = ∂L/∂f}:
 * <pre>
 *   ∂W_out = gᵀ·ẑ,  ∂b_out = Σ_rows g,  gẑ = g·W_out,  gz = normalize'(z)ᵀ·gẑ
 *   gp[r·M + j] = gz_j · q[r·M + j],   gq[r·M + j] = gz_j · p[r·M + j]
 *   ∂M₀ = gpᵀ·x̃,  ∂c₀ = Σ_rows gp,  gx̃ = gp·M₀;   ∂W₀ = gx̃ᵀ·x,  ∂b₀ = Σ_rows gx̃,  ∂x = gx̃·W₀   (q, y alike)
 * </pre>
 *
 * <p>Shapes: {@code x} is {@code B × Dx}, {@code y} is {@code B × Dy}, the output {@code B × Out}.
 * Loading a trained block.bootstrap model: {@link #fromStateDict}. Backends ({@link Backend}):
 * {@code io.bifuse.cpu.MutanCpu} (float32) and the float64 {@code io.bifuse.reference.MutanReference};
 * {@code io.bifuse.cuda.MutanCuda} (BLOCK's kernels on {@link #asBlock()}; simulated-device-tested only).
 */
public final class Mutan implements Op<Mutan.Backend>, Fusion {
    /**
     * What every backend of this op offers on host arrays: {@code forward} {@code B × Dx}, {@code B × Dy}
     * → {@code B × Out}; {@code backward} the gradients of the inputs and of every parameter given
     * {@code gradOut = ∂L/∂f} ({@code B × Out}), recomputing the forward, written, not accumulated.
     */
    public interface Backend extends FusionBackend<Mutan, Gradients> {}

    @Override public Class<Backend> backendType() { return Backend.class; }

    private final Linear linear0, linear1, mergeLinear0, mergeLinear1, linearOut;
    private final int rank;
    private final boolean shared;
    private final Normalization normalization;

    private Mutan(Linear linear0, Linear linear1, Linear mergeLinear0, Linear mergeLinear1, Linear linearOut, int rank, boolean shared,
                  Normalization normalization) {
        this.linear0 = linear0;
        this.linear1 = linear1;
        this.mergeLinear0 = mergeLinear0;
        this.mergeLinear1 = mergeLinear1;
        this.linearOut = linearOut;
        this.rank = rank;
        this.shared = shared;
        this.normalization = normalization;
    }

    /**
     * MUTAN with the given layers: {@code linear0} Dx → M, {@code linear1} Dy → M, {@code mergeLinear0}
     * and {@code mergeLinear1} M → R·M, {@code linearOut} M → Out; each may lack its bias.
     * {@code normalization}: {@link Normalization#NONE}, or {@link Normalization#pytorch()} for
     * block.bootstrap's {@code normalize=True}.
     */
    public static Mutan of(Linear linear0, Linear linear1, Linear mergeLinear0, Linear mergeLinear1, Linear linearOut, int rank,
                           Normalization normalization) {
        return checked(linear0, linear1, mergeLinear0, mergeLinear1, linearOut, rank, false, normalization);
    }

    /** Shared MUTAN ({@code shared=True}: Dx = Dy, one linear0 and one merge_linear0 for both sides). */
    public static Mutan shared(Linear linear0, Linear mergeLinear0, Linear linearOut, int rank, Normalization normalization) {
        return checked(linear0, linear0, mergeLinear0, mergeLinear0, linearOut, rank, true, normalization);
    }

    private static Mutan checked(Linear linear0, Linear linear1, Linear mergeLinear0, Linear mergeLinear1, Linear linearOut, int rank, boolean shared,
                                 Normalization normalization) {
        Linear.require("linear0", linear0);
        Linear.require("linear1", linear1);
        Linear.require("mergeLinear0", mergeLinear0);
        Linear.require("mergeLinear1", mergeLinear1);
        Linear.require("linearOut", linearOut);
        if (rank < 1) throw new IllegalArgumentException("rank: expected >= 1, got " + rank);
        if (normalization == null) throw new IllegalArgumentException("normalization: expected a Normalization (NONE for none), got null");
        int m = linear0.out();
        linear1.requireShape("linear1", m, linear1.in());
        long rm = (long) rank * m;
        if (rm > Integer.MAX_VALUE) throw new IllegalArgumentException("rank: rank × mm_dim = " + rm + " does not fit an int");
        mergeLinear0.requireShape("mergeLinear0", (int) rm, m);
        mergeLinear1.requireShape("mergeLinear1", (int) rm, m);
        linearOut.requireShape("linearOut", linearOut.out(), m);
        return new Mutan(linear0, linear1, mergeLinear0, mergeLinear1, linearOut, rank, shared, normalization);
    }

    /**
     * The fusion of a trained block.bootstrap {@code Mutan}, from its state dict (names after
     * {@code prefix}, e.g. {@code ""} for the module's own, {@code "network.fusion."} for a VQA model's):
     * {@code linear0}, {@code linear1}, {@code merge_linear0}, {@code merge_linear1}, {@code linear_out}.
     * M, R, Dx, Dy and Out come from the shapes (R from merge_linear0's {@code R·M} rows, which must be a
     * multiple of M). {@code shared} and {@code normalize} are the module's constructor arguments (a
     * state dict does not record them); with {@code shared}, linear1 and merge_linear1 must equal linear0
     * and merge_linear0 where present.
     */
    public static Mutan fromStateDict(StateDict sd, String prefix, boolean shared, boolean normalize) {
        Objects.requireNonNull(sd, "sd");
        Objects.requireNonNull(prefix, "prefix");
        Linear l0 = Linear.fromStateDict(sd, prefix + "linear0"), m0 = Linear.fromStateDict(sd, prefix + "merge_linear0");
        Linear out = Linear.fromStateDict(sd, prefix + "linear_out");
        int m = l0.out();
        if (m0.in() != m || m0.out() % m != 0) {
            throw new IllegalArgumentException(sd.source() + ": '" + prefix + "merge_linear0.weight': expected shape [rank × " + m + ", " + m
                    + "] (mm_dim = linear0's " + m + " rows), got [" + m0.out() + ", " + m0.in() + "]");
        }
        int rank = m0.out() / m;
        Normalization n = normalize ? Normalization.pytorch() : Normalization.NONE;
        if (shared) {
            requireSame(sd, prefix + "linear1", prefix + "linear0", l0);
            requireSame(sd, prefix + "merge_linear1", prefix + "merge_linear0", m0);
            return StateDict.loading(sd, prefix, NAMES, () -> shared(l0, m0, out, rank, n));
        }
        Linear l1 = Linear.fromStateDict(sd, prefix + "linear1"), m1 = Linear.fromStateDict(sd, prefix + "merge_linear1");
        return StateDict.loading(sd, prefix, NAMES, () -> of(l0, l1, m0, m1, out, rank, n));
    }

    /** The factories' argument names → block.bootstrap's tensor names (for {@link StateDict#loading}). */
    private static final java.util.Map<String, String> NAMES = java.util.Map.of("linear0", "linear0.weight", "linear1", "linear1.weight",
            "mergeLinear0", "merge_linear0.weight", "mergeLinear1", "merge_linear1.weight", "linearOut", "linear_out.weight");

    private static void requireSame(StateDict sd, String name, String side0, Linear expected) {
        if (!sd.contains(name + ".weight")) return;
        if (!Linear.fromStateDict(sd, name).equals(expected)) {
            throw new IllegalArgumentException(sd.source() + ": '" + name + "': shared=true, so expected the same values as " + side0
                    + " (a shared module's state dict holds the one layer under both names)");
        }
    }

    /** MUTAN with every layer biased and initialized as {@code nn.Linear} does, from {@code seed}: for tests and benchmarks. */
    public static Mutan random(int dx, int dy, int mmDim, int rank, int out, boolean shared, Normalization normalization, long seed) {
        for (String[] nv : new String[][] {{"dx", "" + dx}, {"dy", "" + dy}, {"mmDim", "" + mmDim}, {"rank", "" + rank}, {"out", "" + out}}) {
            if (Integer.parseInt(nv[1]) < 1) throw new IllegalArgumentException(nv[0] + ": expected >= 1, got " + nv[1]);
        }
        if (shared && dx != dy) throw new IllegalArgumentException("shared: expected dx == dy, got " + dx + " and " + dy);
        Linear l0 = Linear.random(mmDim, dx, true, seed), m0 = Linear.random(Math.multiplyExact(rank, mmDim), mmDim, true, seed + 2);
        Linear lo = Linear.random(out, mmDim, true, seed + 4);
        if (shared) return shared(l0, m0, lo, rank, normalization);
        return of(l0, Linear.random(mmDim, dy, true, seed + 1), m0, Linear.random(rank * mmDim, mmDim, true, seed + 3), lo, rank, normalization);
    }

    /**
     * The same fusion as a one-chunk {@link Block} (MUTAN's core is BLOCK's with one chunk of all M units,
     * normalized as a whole): what its CUDA backend runs. Its gradients map back by {@link Gradients#of}.
     */
    public Block asBlock() {
        return shared ? Block.shared(linear0, List.of(mergeLinear0), linearOut, rank, normalization, Block.NormPosition.BEFORE_CAT)
                : Block.of(linear0, linear1, List.of(mergeLinear0), List.of(mergeLinear1), linearOut, rank, normalization, Block.NormPosition.BEFORE_CAT);
    }

    public Linear linear0() { return linear0; }
    public Linear linear1() { return linear1; }
    public Linear mergeLinear0() { return mergeLinear0; }
    public Linear mergeLinear1() { return mergeLinear1; }
    public Linear linearOut() { return linearOut; }
    public int rank() { return rank; }
    public boolean isShared() { return shared; }
    public Normalization normalization() { return normalization; }
    @Override public int dx() { return linear0.in(); }
    @Override public int dy() { return linear1.in(); }
    /** M, block.bootstrap's {@code mm_dim}. */
    public int mmDim() { return linear0.out(); }
    @Override public int out() { return linearOut.out(); }

    /**
     * Gradients of MUTAN: {@code dx}, {@code dy}, and each layer's (bias null where the layer has none).
     * With a shared op, {@code linear1} and {@code mergeLinear1} hold the same summed gradients as
     * {@code linear0} and {@code mergeLinear0} (as the module's parameters show them under both names).
     */
    public record Gradients(float[] dx, float[] dy, LinearGradients linear0, LinearGradients linear1, LinearGradients mergeLinear0,
                            LinearGradients mergeLinear1, LinearGradients linearOut) {
        /** The same gradients of the one-chunk {@link Block} ({@link Mutan#asBlock()}). */
        public static Gradients of(Block.Gradients g) {
            return new Gradients(g.dx(), g.dy(), g.linear0(), g.linear1(), g.merge0().get(0), g.merge1().get(0), g.linearOut());
        }

        /** The tensors in the order of {@link Mutan#gradientNames()}: dx, dy, then each layer's weight and bias (if any). */
        public List<float[]> tensors() {
            List<float[]> t = new ArrayList<>(List.of(dx, dy));
            for (LinearGradients l : List.of(linear0, linear1, mergeLinear0, mergeLinear1, linearOut)) {
                t.add(l.weight());
                if (l.bias() != null) t.add(l.bias());
            }
            return t;
        }
    }

    /** The names of {@link Gradients#tensors()}: {@code input.0}, {@code input.1}, then the state-dict names. */
    public List<String> gradientNames() {
        List<String> n = new ArrayList<>(List.of("input.0", "input.1"));
        String[] names = {"linear0", "linear1", "merge_linear0", "merge_linear1", "linear_out"};
        Linear[] layers = {linear0, linear1, mergeLinear0, mergeLinear1, linearOut};
        for (int i = 0; i < names.length; i++) {
            n.add(names[i] + ".weight");
            if (layers[i].hasBias()) n.add(names[i] + ".bias");
        }
        return n;
    }

    @Override public boolean equals(Object o) {
        return o instanceof Mutan m && rank == m.rank && shared == m.shared && normalization.equals(m.normalization) && linear0.equals(m.linear0)
                && linear1.equals(m.linear1) && mergeLinear0.equals(m.mergeLinear0) && mergeLinear1.equals(m.mergeLinear1) && linearOut.equals(m.linearOut);
    }

    @Override public int hashCode() { return Objects.hash(linear0, linear1, mergeLinear0, mergeLinear1, linearOut, rank, shared, normalization); }

    @Override public String toString() {
        return "Mutan[Dx=" + dx() + ", Dy=" + dy() + ", mm_dim=" + mmDim() + ", rank=" + rank + ", Out=" + out() + (shared ? ", shared" : "")
                + (normalization.isIdentity() ? "" : ", " + normalization) + "]";
    }
}
