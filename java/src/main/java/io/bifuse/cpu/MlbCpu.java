package io.bifuse.cpu;

import io.bifuse.Activation;
import io.bifuse.CompactBilinear;
import io.bifuse.LinearGradients;
import io.bifuse.Mlb;
import io.bifuse.Normalization;
import io.bifuse.TrainingStep;

/**
 * {@link Mlb} on the CPU in float32: {@code f = (σ(x·Uᵀ + b_u) ⊙ σ(y·Vᵀ + b_v))·Pᵀ + b_p}.
 *
 * <p>How: the three projections are GEMMs ({@link Sgemm}, through {@link CpuLinear}s prepared once in
 * the constructor); everything between them is one fused pass over the GEMM outputs, row by row:
 * bias, activation and product in the forward ({@code pu} becomes {@code h} in place), and in the
 * backward the product rule and both activation derivatives at once
 * ({@code dpu = gh ⊙ av ⊙ σ'(au)}, {@code dpv = gh ⊙ au ⊙ σ'(av)}, written over {@code au, av}). The
 * backward recomputes the forward, then: {@code gh = g·P}; {@code ∂P = gᵀ·h}; {@code ∂U = dpuᵀ·x},
 * {@code ∂x = dpu·U} (and the same for V, y): every weight gradient one GEMM over the batch, every bias
 * gradient a GEMM with a ones vector. Intermediates come from a {@link Scratch}: a call allocates only
 * what it returns. A {@link #trainingStep} keeps the forward's activations for its backward instead of
 * recomputing them.
 *
 * <p>Threading: the GEMMs share out tiles of their outputs, the fused passes blocks of rows, both
 * split by shape only and never inside one sum, so results are bitwise the same for every thread count
 * ({@link CpuRuntime}). Immutable and thread-safe; {@link #close()} frees nothing.
 */
public final class MlbCpu extends CpuBackend<Mlb> implements Mlb.Backend {
    private final CpuLinear u, v, p;
    private final float[] bu, bv;
    private final Scratch scratch = new Scratch();

    public MlbCpu(Mlb op) {
        this(op, CpuRuntime.defaults());
    }

    public MlbCpu(Mlb op, CpuRuntime runtime) {
        super(op, "an Mlb", Backends.FP32, runtime);
        u = MlbKernels.weightOnly(op.u());
        v = MlbKernels.weightOnly(op.v());
        p = new CpuLinear(op.p());
        bu = op.u().bias();
        bv = op.v().bias();
    }

    /** {@code B × Dx}, {@code B × Dy} → {@code B × Out}. */
    @Override public float[] forward(float[] x, float[] y, int batch) {
        op.checkInputs(x, y, batch);
        int j = op.joint();
        int hidden = elements("batch: the joint activations B × J", batch, j);
        float[] out = new float[elements("batch: the output B × Out", batch, op.out())];
        Activation act = op.activation();
        Normalization norm = op.normalization();
        try (Scratch.Lease l = scratch.lease()) {
            float[] pu = l.floats(0, hidden), pv = l.floats(1, hidden);
            u.forward(runtime, batch, x, 0, op.dx(), pu, 0, j, false);
            v.forward(runtime, batch, y, 0, op.dy(), pv, 0, j, false);
            runtime.parallelRanges(batch, MlbKernels.grain(j), (r0, r1) -> {
                for (int r = r0; r < r1; r++) {
                    int at = r * j;
                    MlbKernels.biasActivate(act, pu, at, bu, j);
                    MlbKernels.biasActivate(act, pv, at, bv, j);
                    for (int i = 0; i < j; i++) pu[at + i] *= pv[at + i];
                    if (!norm.isIdentity()) MlbKernels.normalize(norm, pu, at, j, pu, at);
                }
            });
            p.forward(runtime, batch, pu, 0, j, out, 0, op.out(), false);
        }
        activate(op.outputActivation(), out, batch, op.out());
        return out;
    }

    /** σ_out over {@code rows × cols} of {@code a}, in place (nothing for NONE). */
    private void activate(Activation act, float[] a, int rows, int cols) {
        if (act == Activation.NONE) return;
        runtime.parallelRanges(rows, MlbKernels.grain(cols), (r0, r1) -> {
            for (int r = r0; r < r1; r++) MlbKernels.biasActivate(act, a, r * cols, null, cols);
        });
    }

    /**
     * A training step whose backward starts from this forward's activations ({@code σ(pu)}, {@code σ(pv)},
     * {@code h}: {@code 3·B·J} floats held until then) instead of recomputing them: the two input
     * projections' GEMMs fewer per step. Bitwise {@link #forward} and {@link #backward}.
     */
    @Override public TrainingStep<Mlb.Gradients> trainingStep(float[] x, float[] y, int batch) {
        op.checkInputs(x, y, batch);
        float[] out = new float[elements("batch: the output B × Out", batch, op.out())];
        Scratch.Lease l = scratch.lease();
        try {
            p.forward(runtime, batch, activations(l, x, y, batch), 0, op.joint(), out, 0, op.out(), false);
            activate(op.outputActivation(), out, batch, op.out());
        } catch (RuntimeException | Error e) {
            l.close();
            throw e;
        }
        return new TrainingStep<>(out, batch, op.out()) {
            @Override protected Mlb.Gradients gradients(float[] gradOut) { return backwardFrom(l, x, y, gradOut, batch); }
            @Override protected void release() { l.close(); }
        };
    }

    /**
     * The gradients of the inputs and of every parameter given {@code gradOut = ∂L/∂f}
     * ({@code B × Out}), recomputing the forward from {@code x, y}.
     */
    @Override public Mlb.Gradients backward(float[] x, float[] y, float[] gradOut, int batch) {
        op.checkInputs(x, y, batch);
        CompactBilinear.checkLength("gradOut", gradOut, batch, op.out());
        try (Scratch.Lease l = scratch.lease()) {
            activations(l, x, y, batch);
            return backwardFrom(l, x, y, gradOut, batch);
        }
    }

    /**
     * The forward up to P's input: {@code σ(pu)}, {@code σ(pv)} and {@code h} in slots 0, 1, 2 of {@code l},
     * and with a normalization {@code ĥ} in slot 4; returns P's input ({@code h} or {@code ĥ}).
     */
    private float[] activations(Scratch.Lease l, float[] x, float[] y, int batch) {
        int j = op.joint();
        int hidden = elements("batch: the joint activations B × J", batch, j);
        Activation act = op.activation();
        float[] au = l.floats(0, hidden), av = l.floats(1, hidden), h = l.floats(2, hidden);
        Normalization norm = op.normalization();
        float[] hn = norm.isIdentity() ? h : l.floats(4, hidden);
        u.forward(runtime, batch, x, 0, op.dx(), au, 0, j, false);
        v.forward(runtime, batch, y, 0, op.dy(), av, 0, j, false);
        runtime.parallelRanges(batch, MlbKernels.grain(j), (r0, r1) -> {
            for (int r = r0; r < r1; r++) {
                int at = r * j;
                MlbKernels.biasActivate(act, au, at, bu, j);
                MlbKernels.biasActivate(act, av, at, bv, j);
                for (int i = 0; i < j; i++) h[at + i] = au[at + i] * av[at + i];
                if (hn != h) MlbKernels.normalize(norm, h, at, j, hn, at);
            }
        });
        return hn;
    }

    /** The backward from {@link #activations}' slots (spent: they hold gradients after). */
    private Mlb.Gradients backwardFrom(Scratch.Lease l, float[] x, float[] y, float[] gradOut, int batch) {
        int j = op.joint(), dx = op.dx(), dy = op.dy(), out = op.out(), hidden = batch * j;
        float[] gx = new float[elements("batch: dx B × Dx", batch, dx)], gy = new float[elements("batch: dy B × Dy", batch, dy)];
        Activation act = op.activation();
        float[] gu = new float[j * dx], gv = new float[j * dy], gp = new float[out * j];
        float[] gbu, gbv, gbp = op.p().hasBias() ? new float[out] : null;
        float[] au = l.floats(0, hidden), av = l.floats(1, hidden), h = l.floats(2, hidden);
        float[] ones = CpuLinear.ones(l, 3, batch);
        Normalization norm = op.normalization();
        Activation outAct = op.outputActivation();
        float[] hin = norm.isIdentity() ? h : l.floats(4, hidden); // P's input
        float[] go = gradOut;
        if (outAct != Activation.NONE) { // go = g ⊙ σ_out'(f), f recomputed into slot 5
            float[] f = l.floats(5, elements("batch: the output B × Out", batch, out));
            p.forward(runtime, batch, hin, 0, j, f, 0, out, false);
            activate(outAct, f, batch, out);
            runtime.parallelRanges(batch, MlbKernels.grain(out), (r0, r1) -> {
                for (int i = r0 * out; i < r1 * out; i++) f[i] = gradOut[i] * MlbKernels.derivative(outAct, f[i]);
            });
            go = f;
        }
        p.backwardParameters(runtime, batch, go, 0, out, hin, 0, j, gp, gbp, ones, false);
        float[] gh = hin; // P's input is spent: gh = g·P takes its place (then, normalized, goes back through the normalization)
        p.backwardInput(runtime, batch, go, 0, out, gh, 0, j, false);
        if (!norm.isIdentity()) {
            runtime.parallelRanges(batch, MlbKernels.grain(j), (r0, r1) -> {
                for (int r = r0; r < r1; r++) MlbKernels.normalizeBackward(norm, h, r * j, gh, r * j, j, gh, r * j);
            });
        }
        runtime.parallelRanges(batch, MlbKernels.grain(j), (r0, r1) -> {
            for (int r = r0; r < r1; r++) {
                for (int i = r * j, e = i + j; i < e; i++) {
                    float a = au[i], c = av[i], g = gh[i];
                    au[i] = g * c * MlbKernels.derivative(act, a);
                    av[i] = g * a * MlbKernels.derivative(act, c);
                }
            }
        });
        float[] dpu = au, dpv = av;
        u.backwardParameters(runtime, batch, dpu, 0, j, x, 0, dx, gu, null, ones, false);
        v.backwardParameters(runtime, batch, dpv, 0, j, y, 0, dy, gv, null, ones, false);
        gbu = bu == null ? null : MlbKernels.columnSums(runtime, batch, j, dpu, 0, j, ones);
        gbv = bv == null ? null : MlbKernels.columnSums(runtime, batch, j, dpv, 0, j, ones);
        u.backwardInput(runtime, batch, dpu, 0, j, gx, 0, dx, false);
        v.backwardInput(runtime, batch, dpv, 0, j, gy, 0, dy, false);
        return new Mlb.Gradients(gx, gy, new LinearGradients(gu, gbu), new LinearGradients(gv, gbv), new LinearGradients(gp, gbp));
    }
}
