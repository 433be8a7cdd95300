package io.bifuse;


/**
 * Multimodal low-rank bilinear pooling (MLB, Kim et al. 2017, "Hadamard product for low-rank
 * bilinear pooling"): an immutable op descriptor.
 *
 * <p>Math, in {@code nn.Linear} terms (weights {@code out × in}, rows are samples):
 * <pre>
 *   pu = x·Uᵀ + b_u,   pv = y·Vᵀ + b_v                (B × J each)
 *   h  = σ(pu) ⊙ σ(pv)                               (B × J, the joint representation)
 *   f  = h·Pᵀ + b_p                                   (B × Out)
 * </pre>
 * which is the paper's {@code f = Pᵀ(σ(Uᵀx + b_u) ⊙ σ(Vᵀy + b_v)) + b_p} with its column-vector
 * convention transposed. {@code σ} is an {@link Activation}: {@link Activation#TANH} is the paper's
 * default; RELU and NONE (the plain low-rank bilinear form) are options.
 *
 * <p>Shapes, row-major: {@code x} is {@code B × Dx} (the question), {@code y} is {@code B × Dy}
 * (the image), the output is {@code B × Out}. {@code U} maps Dx → J, {@code V} maps Dy → J,
 * {@code P} maps J → Out; each may lack its bias ({@code nn.Linear(bias=False)}). The spec's size:
 * B = 512, Dx = 2400, Dy = 2048, J = 1200, Out = 2000.
 *
 * <p>Backward, given {@code g = ∂L/∂f} ({@code B × Out}), with {@code au = σ(pu), av = σ(pv)}:
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
    private final Activation activation;

    private Mlb(Linear u, Linear v, Linear p, Activation activation) {
        this.u = u;
        this.v = v;
        this.p = p;
        this.activation = activation;
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
        return new Mlb(u, v, p, activation);
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
                Linear.random(out, joint, true, seed + 2), activation);
    }

    public Linear u() { return u; }
    public Linear v() { return v; }
    public Linear p() { return p; }
    public Activation activation() { return activation; }
    @Override public int dx() { return u.in(); }
    @Override public int dy() { return v.in(); }
    public int joint() { return u.out(); }
    @Override public int out() { return p.out(); }

    /** The same layers with another activation. */
    public Mlb withActivation(Activation activation) {
        return new Mlb(u, v, p, Activation.require("activation", activation));
    }

    /**
     * Gradients of MLB: {@code dx} ({@code B × Dx}), {@code dy} ({@code B × Dy}), and each layer's
     * weight and bias gradients in its own layout (bias null where the layer has none).
     */
    public record Gradients(float[] dx, float[] dy, LinearGradients u, LinearGradients v, LinearGradients p) {}

    private static void positive(String name, int v) {
        if (v < 1) throw new IllegalArgumentException(name + ": expected >= 1, got " + v);
    }

    @Override public boolean equals(Object o) {
        return o instanceof Mlb m && activation == m.activation && u.equals(m.u) && v.equals(m.v) && p.equals(m.p);
    }

    @Override public int hashCode() { return 31 * (31 * (31 * u.hashCode() + v.hashCode()) + p.hashCode()) + activation.hashCode(); }

    @Override public String toString() {
        return "Mlb[Dx=" + dx() + ", Dy=" + dy() + ", J=" + joint() + ", Out=" + out() + ", " + activation + "]";
    }
}
