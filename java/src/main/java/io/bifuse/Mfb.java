package io.bifuse;

import java.util.ArrayList;
import java.util.List;

/**
 * Multi-modal factorized bilinear pooling (MFB, Yu et al. 2017) and its high-order cascade MFH
 * (Yu et al. 2018): an immutable op descriptor. MFH is this op with more than one block
 * ({@link #mfh}); MFB is the single-block case ({@link #mfb}).
 *
 * <p>Math. Block {@code i = 1..n} has two projections {@code U_i} ({@code o·k × Dx}) and {@code V_i}
 * ({@code o·k × Dy}), each an {@code nn.Linear} (weight and optional bias), and an activation σ:
 * <pre>
 *   h_i = σ(x·U_iᵀ + bu_i) ⊙ σ(y·V_iᵀ + bv_i)               (o·k units)
 *   e_i = h_i ⊙ e_{i−1},  e_0 = 1                            (MFH: block i's product times block i−1's)
 *   z_i[u] = Σ_{t < k} e_i[u·k + t]                           (sum pooling over k ADJACENT units, u < o)
 *   out_i = normalize(z_i)                                    (per block, as the original MFH code)
 *   out   = concat(out_1, ..., out_n)                         (B × n·o)
 * </pre>
 * {@code normalize} is a {@link Normalization}: by default {@link Normalization#pytorch()} (signed
 * square root, then {@code F.normalize}), applied to each block's {@code z_i} separately. σ is a
 * parameter: {@link Activation#NONE} as in the original MFB, {@link Activation#RELU} as in
 * block.bootstrap.pytorch. There is no dropout (the original applies dropout to {@code e_i} in training;
 * apply it outside, or not at all): the op is deterministic.
 *
 * <p>Shapes, row-major: {@code x} is {@code B × Dx} (question), {@code y} is {@code B × Dy} (image),
 * the output {@code B × n·o}; backward takes {@code ∂L/∂out} ({@code B × n·o}) and returns
 * {@link Gradients}: {@code ∂L/∂x}, {@code ∂L/∂y} and, per block, the gradients of {@code U_i} and
 * {@code V_i} in their {@code nn.Linear} layout. Weights load from a PyTorch state dict as they are
 * ({@code new Linear(o·k, Dx, w.flatten(), b)}).
 *
 * <p>Backends ({@link Backend}): {@code io.bifuse.cpu.MfbCpu} (float32: every block's projections in one
 * GEMM per input, the product, chain, pooling and normalization fused per sample; multithreaded, bitwise
 * the same for every thread count) and {@code io.bifuse.cuda.MfbCuda} (the fused CUDA implementation).
 */
public final class Mfb implements Op<Mfb.Backend> {
    /**
     * What every backend of this op offers on host arrays ({@code MfbCpu} in io.bifuse.cpu, {@code MfbCuda}
     * in io.bifuse.cuda): {@code forward} {@code B × Dx}, {@code B × Dy} → {@code B × blocks·o}; {@code backward}
     * the gradients of the inputs and of every parameter given {@code gradOut = ∂L/∂f} ({@code B × blocks·o}),
     * recomputing the forward from {@code x, y}, written, not accumulated.
     */
    public interface Backend extends OpBackend {
        float[] forward(float[] x, float[] y, int batch);
        Gradients backward(float[] x, float[] y, float[] gradOut, int batch);

        /** The descriptor this backend runs. */
        Mfb op();

        /**
         * The forward over views of the caller's memory ({@link FloatView}: part of a float[], a
         * FloatBuffer, a MemorySegment): x (B × Dx), y (B × Dy) → out (B × outputWidth), {@code out} written, nothing returned. Every length is
         * checked, by name, before anything runs; inputs that are not one whole array are copied once,
         * and the result is copied into {@code out}.
         */
        default void forward(FloatView x, FloatView y, FloatView out, int batch) {
            FloatView.requireLength("out", out, (long) batch * op().outputWidth());
            float[] r = forward(FloatView.input("x", x, (long) batch * op().dx()), FloatView.input("y", y, (long) batch * op().dy()), batch);
            out.copyFrom(r, 0, r.length);
        }

        /**
         * A training step: the forward of {@code x, y}, and its backward for a {@code gradOut} to come
         * ({@link TrainingStep}: bitwise {@link #backward}'s gradients; x and y held by reference until then).
         * The CPU backend keeps the forward's intermediates for it; this default recomputes.
         */
        default TrainingStep<Gradients> trainingStep(float[] x, float[] y, int batch) {
            float[] out = forward(x, y, batch);
            return TrainingStep.recomputing(out, batch, op().outputWidth(), g -> backward(x, y, g, batch));
        }
    }

    @Override public Class<Backend> backendType() { return Backend.class; }

    private final List<Linear> us, vs;
    private final int dx, dy, o, k;
    private final Activation activation;
    private final Normalization normalization;

    private Mfb(List<Linear> us, List<Linear> vs, int k, Activation activation, Normalization normalization) {
        this.us = us;
        this.vs = vs;
        this.dx = us.get(0).in();
        this.dy = vs.get(0).in();
        this.o = us.get(0).out() / k;
        this.k = k;
        this.activation = activation;
        this.normalization = normalization;
    }

    /** One MFB block: {@code u} maps {@code Dx → o·k}, {@code v} maps {@code Dy → o·k}, {@code k} divides {@code o·k}. */
    public static Mfb mfb(Linear u, Linear v, int k, Activation activation, Normalization normalization) {
        return mfh(java.util.Arrays.asList(u), java.util.Arrays.asList(v), k, activation, normalization);
    }

    /**
     * MFH: {@code us.size()} chained blocks (MFB when it is 1). Every {@code us[i]} maps {@code Dx → o·k}
     * and every {@code vs[i]} maps {@code Dy → o·k}, with the same {@code Dx}, {@code Dy} and width in every block.
     */
    public static Mfb mfh(List<Linear> us, List<Linear> vs, int k, Activation activation, Normalization normalization) {
        if (us == null || us.isEmpty()) throw new IllegalArgumentException("us: expected at least one block's U layer, got " + (us == null ? "null" : "none"));
        if (vs == null || vs.size() != us.size()) {
            throw new IllegalArgumentException("vs: expected " + us.size() + " V layers (one per block, as us), got " + (vs == null ? "null" : vs.size()));
        }
        Linear u0 = Linear.require("us[0]", us.get(0));
        Linear v0 = Linear.require("vs[0]", vs.get(0));
        int width = u0.out();
        v0.requireShape("vs[0]", width, v0.in());
        for (int i = 1; i < us.size(); i++) {
            Linear.require("us[" + i + "]", us.get(i)).requireShape("us[" + i + "]", width, u0.in());
            Linear.require("vs[" + i + "]", vs.get(i)).requireShape("vs[" + i + "]", width, v0.in());
        }
        if (k < 1 || width % k != 0) {
            throw new IllegalArgumentException("k: expected a divisor of the projection width " + width + " (o·k units), got " + k);
        }
        Activation.require("activation", activation);
        if (normalization == null) throw new IllegalArgumentException("normalization: expected a Normalization (NONE for none), got null");
        return new Mfb(List.copyOf(us), List.copyOf(vs), k, activation, normalization);
    }

    /**
     * {@code blocks} blocks with every layer initialized as {@code nn.Linear} (with bias) by
     * {@link Linear#random}: block i's U from seed {@code seed + 2i}, its V from {@code seed + 2i + 1}.
     */
    public static Mfb random(int dx, int dy, int o, int k, int blocks, Activation activation, Normalization normalization, long seed) {
        positive("dx", dx);
        positive("dy", dy);
        positive("o", o);
        positive("k", k);
        positive("blocks", blocks);
        int width = Math.multiplyExact(o, k);
        List<Linear> us = new ArrayList<>(), vs = new ArrayList<>();
        for (int i = 0; i < blocks; i++) {
            us.add(Linear.random(width, dx, true, seed + 2L * i));
            vs.add(Linear.random(width, dy, true, seed + 2L * i + 1));
        }
        return mfh(us, vs, k, activation, normalization);
    }

    /** The gradients of a loss: inputs ({@code B × Dx}, {@code B × Dy}) and every block's U and V (nn.Linear layout). */
    public record Gradients(float[] dx, float[] dy, List<LinearGradients> u, List<LinearGradients> v) {}

    public int dx() { return dx; }
    public int dy() { return dy; }
    /** Output units per block. */
    public int o() { return o; }
    /** Units pooled into one output. */
    public int k() { return k; }
    /** Number of blocks: 1 for MFB, more for MFH. */
    public int blocks() { return us.size(); }
    /** Projection width {@code o·k}. */
    public int width() { return o * k; }
    /** Output width {@code blocks·o}. */
    public int outputWidth() { return us.size() * o; }
    public Activation activation() { return activation; }
    public Normalization normalization() { return normalization; }
    public List<Linear> us() { return us; }
    public List<Linear> vs() { return vs; }
    public Linear u(int block) { return us.get(block); }
    public Linear v(int block) { return vs.get(block); }

    /** Checks host inputs; every entry point calls it before any work. */
    public void checkInputs(float[] x, float[] y, int batch) {
        positive("batch", batch);
        CompactBilinear.checkLength("x", x, batch, dx);
        CompactBilinear.checkLength("y", y, batch, dy);
    }

    private static void positive(String name, int v) {
        if (v < 1) throw new IllegalArgumentException(name + ": expected >= 1, got " + v);
    }

    @Override public boolean equals(Object obj) {
        return obj instanceof Mfb m && k == m.k && activation == m.activation && normalization.equals(m.normalization)
                && us.equals(m.us) && vs.equals(m.vs);
    }

    @Override public int hashCode() { return 31 * (31 * us.hashCode() + vs.hashCode()) + k; }

    @Override public String toString() {
        return (blocks() == 1 ? "MFB" : "MFH") + "[Dx=" + dx + ", Dy=" + dy + ", o=" + o + ", k=" + k + ", blocks=" + blocks()
                + ", " + activation + ", " + normalization + "]";
    }
}
