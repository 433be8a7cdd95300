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
 *   pooled = concat(out_1, ..., out_n)                        (B × n·o)
 *   out   = pooled,  or with an output layer (block.bootstrap's linear_out, activ_output):
 *   out   = σ_out(pooled·Wᵀ + b)                             (B × Out)
 * </pre>
 * {@code normalize} is a {@link Normalization}: by default {@link Normalization#pytorch()} (signed
 * square root, then {@code F.normalize}), applied to each block's {@code z_i} separately. σ is a
 * parameter: {@link Activation#NONE} as in the original MFB, {@link Activation#RELU} as in
 * block.bootstrap.pytorch. There is no dropout (the original applies dropout to {@code e_i} in training;
 * apply it outside, or not at all): the op is deterministic.
 *
 * <p>The output layer is optional ({@link #withOutput}): the papers' MFB and MFH end at the pooled vector
 * and their users put a classifier after it; block.bootstrap's modules include {@code linear_out}
 * ({@code n·o → Out}) and {@code activ_output} (relu by default), and {@link #fromStateDict} loads them.
 *
 * <p>Shapes, row-major: {@code x} is {@code B × Dx} (question), {@code y} is {@code B × Dy} (image),
 * the output {@code B × }{@link #outputWidth()} ({@code n·o}, or the output layer's Out); backward takes
 * {@code ∂L/∂out} of that shape and returns {@link Gradients}: {@code ∂L/∂x}, {@code ∂L/∂y}, per block
 * the gradients of {@code U_i} and {@code V_i}, and the output layer's, each in its {@code nn.Linear}
 * layout. Weights load from a PyTorch state dict as they are ({@code new Linear(o·k, Dx, w.flatten(), b)},
 * or {@link #fromStateDict} for block.bootstrap's names).
 *
 * <p>Backends ({@link Backend}): {@code io.bifuse.cpu.MfbCpu} (float32: every block's projections in one
 * GEMM per input, the product, chain, pooling and normalization fused per sample; multithreaded, bitwise
 * the same for every thread count) and {@code io.bifuse.cuda.MfbCuda} (the fused CUDA implementation).
 */
public final class Mfb implements Op<Mfb.Backend>, Fusion {
    /**
     * What every backend of this op offers on host arrays ({@code MfbCpu} in io.bifuse.cpu, {@code MfbCuda}
     * in io.bifuse.cuda): {@code forward} {@code B × Dx}, {@code B × Dy} → {@code B × outputWidth}; {@code backward}
     * the gradients of the inputs and of every parameter given {@code gradOut = ∂L/∂out} ({@code B × outputWidth}),
     * recomputing the forward from {@code x, y}, written, not accumulated.
     */
    public interface Backend extends FusionBackend<Mfb, Gradients> {}

    @Override public Class<Backend> backendType() { return Backend.class; }

    private final List<Linear> us, vs;
    private final int dx, dy, o, k;
    private final Activation activation;
    private final Normalization normalization;
    private final Linear linearOut; // null: the output is the pooled vector
    private final Activation outputActivation;

    private Mfb(List<Linear> us, List<Linear> vs, int k, Activation activation, Normalization normalization) {
        this(us, vs, k, activation, normalization, null, Activation.NONE);
    }

    private Mfb(List<Linear> us, List<Linear> vs, int k, Activation activation, Normalization normalization, Linear linearOut,
                Activation outputActivation) {
        this.us = us;
        this.vs = vs;
        this.dx = us.get(0).in();
        this.dy = vs.get(0).in();
        this.o = us.get(0).out() / k;
        this.k = k;
        this.activation = activation;
        this.normalization = normalization;
        this.linearOut = linearOut;
        this.outputActivation = outputActivation;
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

    /**
     * The same blocks followed by an output layer {@code linearOut} ({@code n·o → Out}, block.bootstrap's
     * {@code linear_out}) and {@code outputActivation} ({@code activ_output}; {@link Activation#NONE} for none).
     * {@code linearOut} null removes the output layer (then {@code outputActivation} must be NONE).
     */
    public Mfb withOutput(Linear linearOut, Activation outputActivation) {
        Activation.require("outputActivation", outputActivation);
        if (linearOut == null) {
            if (outputActivation != Activation.NONE) {
                throw new IllegalArgumentException("outputActivation: expected NONE without an output layer (linearOut null), got " + outputActivation);
            }
            return new Mfb(us, vs, k, activation, normalization);
        }
        Linear.require("linearOut", linearOut);
        if (linearOut.in() != pooledWidth()) {
            throw new IllegalArgumentException("linearOut: expected a layer " + pooledWidth() + " → Out (in = blocks·o = " + blocks() + "·" + o
                    + "), got " + linearOut.in() + " → " + linearOut.out());
        }
        return new Mfb(us, vs, k, activation, normalization, linearOut, outputActivation);
    }

    /**
     * block.bootstrap's {@code MFB} or {@code MFH} from its state dict (names after {@code prefix}): MFB has
     * {@code linear0}, {@code linear1}; MFH has {@code linear0_i}, {@code linear1_i} for {@code i = 0, 1, ...}
     * (which of the two is decided by whether {@code linear0_0.weight} is present); both have
     * {@code linear_out}. {@code mm_dim} (o) is {@code linear_out}'s input width over the number of blocks,
     * {@code factor} (k) is {@code linear0}'s rows over {@code mm_dim}. {@code activInput},
     * {@code activOutput} and {@code normalize} are the module's constructor arguments (its defaults:
     * RELU, RELU, false), which a state dict does not record. Dropout is identity (inference).
     */
    public static Mfb fromStateDict(StateDict sd, String prefix, Activation activInput, Activation activOutput, boolean normalize) {
        java.util.Objects.requireNonNull(sd, "sd");
        java.util.Objects.requireNonNull(prefix, "prefix");
        Activation.require("activInput", activInput);
        Activation.require("activOutput", activOutput);
        boolean mfh = sd.contains(prefix + "linear0_0.weight");
        List<String> uNames = new ArrayList<>(), vNames = new ArrayList<>();
        if (mfh) {
            for (int i = 0; sd.contains(prefix + "linear0_" + i + ".weight"); i++) {
                uNames.add(prefix + "linear0_" + i);
                vNames.add(prefix + "linear1_" + i);
            }
        } else {
            uNames.add(prefix + "linear0");
            vNames.add(prefix + "linear1");
        }
        List<Linear> us = new ArrayList<>(), vs = new ArrayList<>();
        for (int i = 0; i < uNames.size(); i++) {
            Linear u = Linear.fromStateDict(sd, uNames.get(i)), v = Linear.fromStateDict(sd, vNames.get(i));
            Linear u0 = us.isEmpty() ? u : us.get(0), v0 = vs.isEmpty() ? v : vs.get(0);
            if (u.out() != u0.out() || u.in() != u0.in()) {
                throw new IllegalArgumentException(sd.source() + ": '" + uNames.get(i) + ".weight': expected " + u0.out() + " × " + u0.in()
                        + " (as " + uNames.get(0) + "), got " + u.out() + " × " + u.in());
            }
            if (v.out() != u0.out() || (!vs.isEmpty() && v.in() != v0.in())) {
                throw new IllegalArgumentException(sd.source() + ": '" + vNames.get(i) + ".weight': expected " + u0.out() + " rows (mm_dim·factor, "
                        + uNames.get(0) + "'s)" + (vs.isEmpty() ? "" : " and " + v0.in() + " columns (as " + vNames.get(0) + ")") + ", got "
                        + v.out() + " × " + v.in());
            }
            us.add(u);
            vs.add(v);
        }
        Linear out = Linear.fromStateDict(sd, prefix + "linear_out");
        int n = us.size(), width = us.get(0).out();
        if (out.in() % n != 0 || out.in() == 0 || width % (out.in() / n) != 0) {
            throw new IllegalArgumentException(sd.source() + ": '" + prefix + "linear_out.weight': expected " + n + "·mm_dim columns with mm_dim dividing "
                    + uNames.get(0) + "'s " + width + " rows (mm_dim·factor), got " + out.in());
        }
        int k = width / (out.in() / n);
        return mfh(us, vs, k, activInput, normalize ? Normalization.pytorch() : Normalization.NONE).withOutput(out, activOutput);
    }

    /**
     * The gradients of a loss: inputs ({@code B × Dx}, {@code B × Dy}), every block's U and V, and the
     * output layer's ({@code null} without one), each in its nn.Linear layout (bias null where the layer has none).
     */
    public record Gradients(float[] dx, float[] dy, List<LinearGradients> u, List<LinearGradients> v, LinearGradients linearOut) {
        /** Without an output layer. */
        public Gradients(float[] dx, float[] dy, List<LinearGradients> u, List<LinearGradients> v) {
            this(dx, dy, u, v, null);
        }

        /** The tensors in the order of {@link Mfb#gradientNames()}: dx, dy, then per block U, V, then the output layer (weight, then bias where there is one). */
        public List<float[]> tensors() {
            List<float[]> t = new ArrayList<>(List.of(dx, dy));
            List<LinearGradients> layers = new ArrayList<>();
            for (int i = 0; i < u.size(); i++) {
                layers.add(u.get(i));
                layers.add(v.get(i));
            }
            if (linearOut != null) layers.add(linearOut);
            for (LinearGradients l : layers) {
                t.add(l.weight());
                if (l.bias() != null) t.add(l.bias());
            }
            return t;
        }
    }

    /**
     * The names of {@link Gradients#tensors()}: {@code input.0}, {@code input.1}, then block.bootstrap's:
     * {@code linear0}, {@code linear1} for MFB, {@code linear0_i}, {@code linear1_i} per block for MFH, and
     * {@code linear_out} (weight, then bias where the layer has one).
     */
    public List<String> gradientNames() {
        List<String> names = new ArrayList<>(List.of("input.0", "input.1"));
        List<Linear> layers = new ArrayList<>();
        List<String> layerNames = new ArrayList<>();
        for (int i = 0; i < blocks(); i++) {
            String suffix = blocks() == 1 ? "" : "_" + i;
            layers.add(us.get(i));
            layerNames.add("linear0" + suffix);
            layers.add(vs.get(i));
            layerNames.add("linear1" + suffix);
        }
        if (linearOut != null) {
            layers.add(linearOut);
            layerNames.add("linear_out");
        }
        for (int i = 0; i < layers.size(); i++) {
            names.add(layerNames.get(i) + ".weight");
            if (layers.get(i).hasBias()) names.add(layerNames.get(i) + ".bias");
        }
        return names;
    }

    @Override public int dx() { return dx; }
    @Override public int dy() { return dy; }
    /** Output units per block. */
    public int o() { return o; }
    /** Units pooled into one output. */
    public int k() { return k; }
    /** Number of blocks: 1 for MFB, more for MFH. */
    public int blocks() { return us.size(); }
    /** Projection width {@code o·k}. */
    public int width() { return o * k; }
    /** The pooled (and normalized) vector's width {@code blocks·o}: the output without an output layer, its input with one. */
    public int pooledWidth() { return us.size() * o; }
    /** Output width: {@code blocks·o}, or the output layer's Out. */
    public int outputWidth() { return linearOut == null ? pooledWidth() : linearOut.out(); }
    /** {@link #outputWidth()}, as a {@link Fusion}. */
    @Override public int out() { return outputWidth(); }
    public Activation activation() { return activation; }
    public Normalization normalization() { return normalization; }
    /** Whether the op ends in an output layer ({@link #withOutput}). */
    public boolean hasOutput() { return linearOut != null; }
    /** The output layer ({@code blocks·o → Out}), or null without one. */
    public Linear linearOut() { return linearOut; }
    /** σ_out after the output layer ({@link Activation#NONE} without one). */
    public Activation outputActivation() { return outputActivation; }
    public List<Linear> us() { return us; }
    public List<Linear> vs() { return vs; }
    public Linear u(int block) { return us.get(block); }
    public Linear v(int block) { return vs.get(block); }

    /** Checks host inputs; every entry point calls it before any work. */
    @Override public void checkInputs(float[] x, float[] y, int batch) {
        positive("batch", batch);
        CompactBilinear.checkLength("x", x, batch, dx);
        CompactBilinear.checkLength("y", y, batch, dy);
    }

    private static void positive(String name, int v) {
        if (v < 1) throw new IllegalArgumentException(name + ": expected >= 1, got " + v);
    }

    @Override public boolean equals(Object obj) {
        return obj instanceof Mfb m && k == m.k && activation == m.activation && normalization.equals(m.normalization)
                && us.equals(m.us) && vs.equals(m.vs) && java.util.Objects.equals(linearOut, m.linearOut) && outputActivation == m.outputActivation;
    }

    @Override public int hashCode() { return 31 * (31 * (31 * us.hashCode() + vs.hashCode()) + k) + java.util.Objects.hashCode(linearOut); }

    @Override public String toString() {
        return (blocks() == 1 ? "MFB" : "MFH") + "[Dx=" + dx + ", Dy=" + dy + ", o=" + o + ", k=" + k + ", blocks=" + blocks()
                + ", " + activation + ", " + normalization + (linearOut == null ? "" : ", linear_out " + linearOut.in() + " → " + linearOut.out()
                + (outputActivation == Activation.NONE ? "" : " " + outputActivation)) + "]";
    }
}
