package io.bifuse;

import java.util.ArrayList;
import java.util.List;
import java.util.Objects;

/**
 * Multimodal low-rank bilinear pooling (MLB, Kim et al. 2017, "Hadamard product for low-rank
 * bilinear pooling"): an immutable op descriptor.
 *
 * <p>Math, in {@code nn.Linear} terms (weights {@code out × in}, rows are samples):
 * <pre>
 *   pu = x·Uᵀ + b_u,   pv = y·Vᵀ + b_v                (B × J each)
 *   h  = σ(pu) ⊙ σ(pv)                               (B × J, the joint representation)
 *   ĥ  = normalize(h)                                 (optional: signed sqrt, then l2; NONE by default)
 *   f  = σ_out(ĥ·Pᵀ + b_p)                            (B × Out; σ_out NONE by default)
 * </pre>
 * which is the paper's {@code f = Pᵀ(σ(Uᵀx + b_u) ⊙ σ(Vᵀy + b_v)) + b_p} with its column-vector
 * convention transposed. {@code σ} is an {@link Activation}: {@link Activation#TANH} is the paper's
 * default; RELU, SIGMOID and NONE (the plain low-rank bilinear form) are options. The normalization and
 * the output activation are block.bootstrap's {@code MLB} options ({@code normalize}, {@code activ_output});
 * {@link #fromStateDict} loads such a model, whose defaults are relu in and out and no normalization.
 * Dropout is identity (inference); training-time dropout is not provided.
 *
 * <p>Shapes, row-major: {@code x} is {@code B × Dx} (the question), {@code y} is {@code B × Dy}
 * (the image), the output is {@code B × Out}. {@code U} maps Dx → J, {@code V} maps Dy → J,
 * {@code P} maps J → Out; each may lack its bias ({@code nn.Linear(bias=False)}). The spec's size:
 * B = 512, Dx = 2400, Dy = 2048, J = 1200, Out = 2000.
 *
 * <p>Backward, given {@code g = ∂L/∂f} ({@code B × Out}), with {@code au = σ(pu), av = σ(pv)} (written
 * for the defaults; otherwise {@code g} is first {@code g ⊙ σ_out'}, {@code ∂P = gᵀ·ĥ}, and {@code gh}
 * goes back through the normalization):
 * <pre>
 *   gh  = g·P,           ∂P = gᵀ·h,   ∂b_p = Σ_rows g
 *   dpu = gh ⊙ av ⊙ σ'(pu),   dpv = gh ⊙ au ⊙ σ'(pv)
 *   ∂U = dpuᵀ·x,  ∂b_u = Σ_rows dpu,  ∂x = dpu·U      (and the same for V, y with dpv)
 * </pre>
 *
 * <p>Backends ({@link Backend}): {@code io.bifuse.cpu.MlbCpu} (float32: the projections as GEMMs, the
 * elementwise work fused into one pass each way, multithreaded and bitwise the same for every thread
 * count), and {@code io.bifuse.cuda.MlbCuda} (cuBLAS projections in a chosen {@link Precision}, the elementwise
 * work fused into one kernel each way). The descriptor knows neither.
 */
public final class Mlb implements Op<Mlb.Backend>, Fusion {
    /**
     * What every backend of this op offers on host arrays ({@code MlbCpu} in io.bifuse.cpu, {@code MlbCuda}
     * in io.bifuse.cuda): {@code forward} {@code B × Dx}, {@code B × Dy} → {@code B × Out}; {@code backward}
     * the gradients of the inputs and of every parameter given {@code gradOut = ∂L/∂f} ({@code B × Out}),
     * recomputing the forward from {@code x, y}, written, not accumulated.
     */
    public interface Backend extends FusionBackend<Mlb, Gradients> {}

    @Override public Class<Backend> backendType() { return Backend.class; }

    private final Linear u, v, p;
    private final Activation activation, outputActivation;
    private final Normalization normalization;

    private Mlb(Linear u, Linear v, Linear p, Activation activation, Normalization normalization, Activation outputActivation) {
        this.u = u;
        this.v = v;
        this.p = p;
        this.activation = activation;
        this.normalization = normalization;
        this.outputActivation = outputActivation;
    }

    /**
     * MLB with the given layers (e.g. loaded from a trained PyTorch model's state dict): {@code u}
     * Dx → J, {@code v} Dy → J, {@code p} J → Out. Checks {@code u.out == v.out == p.in}.
     */
    public static Mlb of(Linear u, Linear v, Linear p, Activation activation) {
        Linear.require("u", u);
        Linear.require("v", v);
        Linear.require("p", p);
        Activation.require("activation", activation);
        int j = u.out();
        if (v.out() != j) {
            throw new IllegalArgumentException("v: expected a layer Dy → " + j + " (out = J = u.out), got " + v.in() + " → " + v.out());
        }
        if (p.in() != j) {
            throw new IllegalArgumentException("p: expected a layer " + j + " → Out (in = J = u.out), got " + p.in() + " → " + p.out());
        }
        return new Mlb(u, v, p, activation, Normalization.NONE, Activation.NONE);
    }

    /**
     * block.bootstrap's {@code MLB} from its state dict (names after {@code prefix}): {@code linear0} (U),
     * {@code linear1} (V), {@code linear_out} (P); Dx, Dy, mm_dim (J) and Out from the shapes.
     * {@code activInput}, {@code activOutput} and {@code normalize} are the module's constructor arguments
     * (its defaults: RELU, RELU, false), which a state dict does not record.
     */
    public static Mlb fromStateDict(StateDict sd, String prefix, Activation activInput, Activation activOutput, boolean normalize) {
        Objects.requireNonNull(sd, "sd");
        Objects.requireNonNull(prefix, "prefix");
        Linear u = Linear.fromStateDict(sd, prefix + "linear0"), v = Linear.fromStateDict(sd, prefix + "linear1"), p = Linear.fromStateDict(sd, prefix + "linear_out");
        if (v.out() != u.out()) {
            throw new IllegalArgumentException(sd.source() + ": '" + prefix + "linear1.weight': expected " + u.out() + " rows (mm_dim, linear0's), got " + v.out());
        }
        if (p.in() != u.out()) {
            throw new IllegalArgumentException(sd.source() + ": '" + prefix + "linear_out.weight': expected " + u.out() + " columns (mm_dim, linear0's rows), got " + p.in());
        }
        return of(u, v, p, activInput).withOptions(normalize ? Normalization.pytorch() : Normalization.NONE, activOutput);
    }

    /**
     * MLB with every layer biased and initialized as {@code nn.Linear} does ({@link Linear#random}),
     * U, V, P from the seeds {@code seed}, {@code seed + 1}, {@code seed + 2}: for tests and benchmarks.
     */
    public static Mlb random(int dx, int dy, int joint, int out, Activation activation, long seed) {
        positive("dx", dx);
        positive("dy", dy);
        positive("joint", joint);
        positive("out", out);
        Activation.require("activation", activation);
        return new Mlb(Linear.random(joint, dx, true, seed), Linear.random(joint, dy, true, seed + 1),
                Linear.random(out, joint, true, seed + 2), activation, Normalization.NONE, Activation.NONE);
    }

    public Linear u() { return u; }
    public Linear v() { return v; }
    public Linear p() { return p; }
    public Activation activation() { return activation; }
    /** The normalization of {@code h} before P ({@link Normalization#NONE} by default). */
    public Normalization normalization() { return normalization; }
    /** σ_out, applied to P's output ({@link Activation#NONE} by default). */
    public Activation outputActivation() { return outputActivation; }
    /** Whether the op has block.bootstrap's options beyond the paper's MLB (a normalization or an output activation). */
    public boolean hasOptions() { return !normalization.isIdentity() || outputActivation != Activation.NONE; }
    @Override public int dx() { return u.in(); }
    @Override public int dy() { return v.in(); }
    public int joint() { return u.out(); }
    @Override public int out() { return p.out(); }

    /** The same layers with another activation. */
    public Mlb withActivation(Activation activation) {
        return new Mlb(u, v, p, Activation.require("activation", activation), normalization, outputActivation);
    }

    /** The same layers and σ with block.bootstrap's {@code normalize} and {@code activ_output}. */
    public Mlb withOptions(Normalization normalization, Activation outputActivation) {
        if (normalization == null) throw new IllegalArgumentException("normalization: expected a Normalization (NONE for none), got null");
        return new Mlb(u, v, p, activation, normalization, Activation.require("outputActivation", outputActivation));
    }

    /**
     * Gradients of MLB: {@code dx} ({@code B × Dx}), {@code dy} ({@code B × Dy}), and each layer's
     * weight and bias gradients in its own layout (bias null where the layer has none).
     */
    public record Gradients(float[] dx, float[] dy, LinearGradients u, LinearGradients v, LinearGradients p) {
        /** The tensors in the order of {@link Mlb#gradientNames()}: dx, dy, then U, V, P (weight, then bias where there is one). */
        public List<float[]> tensors() {
            List<float[]> t = new ArrayList<>(List.of(dx, dy));
            for (LinearGradients l : List.of(u, v, p)) {
                t.add(l.weight());
                if (l.bias() != null) t.add(l.bias());
            }
            return t;
        }
    }

    /** The names of {@link Gradients#tensors()}: {@code input.0}, {@code input.1}, then block.bootstrap's ({@code linear0}, {@code linear1}, {@code linear_out}). */
    public List<String> gradientNames() {
        List<String> n = new ArrayList<>(List.of("input.0", "input.1"));
        String[] names = {"linear0", "linear1", "linear_out"};
        Linear[] layers = {u, v, p};
        for (int i = 0; i < 3; i++) {
            n.add(names[i] + ".weight");
            if (layers[i].hasBias()) n.add(names[i] + ".bias");
        }
        return n;
    }

    private static void positive(String name, int v) {
        if (v < 1) throw new IllegalArgumentException(name + ": expected >= 1, got " + v);
    }

    @Override public boolean equals(Object o) {
        return o instanceof Mlb m && activation == m.activation && outputActivation == m.outputActivation && normalization.equals(m.normalization)
                && u.equals(m.u) && v.equals(m.v) && p.equals(m.p);
    }

    @Override public int hashCode() { return Objects.hash(u, v, p, activation, normalization, outputActivation); }

    @Override public String toString() {
        return "Mlb[Dx=" + dx() + ", Dy=" + dy() + ", J=" + joint() + ", Out=" + out() + ", " + activation
                + (normalization.isIdentity() ? "" : ", " + normalization) + (outputActivation == Activation.NONE ? "" : ", out " + outputActivation) + "]";
    }
}
