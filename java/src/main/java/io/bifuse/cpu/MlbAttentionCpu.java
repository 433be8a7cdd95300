package io.bifuse.cpu;


import io.bifuse.Activation;
import io.bifuse.CompactBilinear;
import io.bifuse.Linear;
import io.bifuse.LinearGradients;
import io.bifuse.MlbAttention;
import io.bifuse.TrainingStep;
import java.util.ArrayList;
import java.util.List;

/**
 * {@link MlbAttention} on the CPU in float32.
 *
 * <p>How, forward: the question and the cells are projected by two GEMMs ({@link Sgemm} through
 * {@link CpuLinear}s prepared once in the constructor; the cells' one, {@code B·L × Dv → J}, is nearly
 * all the work), followed by one fused pass that adds the biases, applies σ and multiplies each cell by
 * its sample's {@code q'} ({@code h_s = q' ⊙ v'_s}, in place). The logits are a GEMM
 * {@code h·W_aᵀ} ({@code B·L × G}); the softmax over the cells runs per sample and glimpse (sums in
 * double); the attended vectors {@code v̂ = α·V} are one small GEMM per sample; each glimpse's
 * projection and the question fusion are GEMMs over the batch, fused with σ and the product
 * {@code u ⊙ f}; the answer layer is a last GEMM.
 *
 * <p>Backward: the forward again (keeping {@code q', v', h, α, v̂, u, f}; a {@link #trainingStep} keeps its own), then the chain rule of the
 * reference as GEMMs over the batch for every weight gradient ({@code ∂W = dpᵀ·in}, biases as GEMMs with
 * a ones vector), per-sample GEMMs for the attention ({@code dα = dv̂·V_bᵀ}, {@code ∂V_b = α_bᵀ·dv̂}), and
 * fused passes for the activations' derivatives, the softmax Jacobian and, per sample, the cells'
 * gradient {@code dp_v = dh ⊙ q' ⊙ σ'(v')} together with {@code q'}'s sum over the cells
 * {@code Σ_s dh_s ⊙ v'_s}. The logits' bias gradient is exactly zero (a softmax ignores a per-glimpse
 * constant) and is returned as zeros, as is the cells' bias gradient under σ = identity, as the
 * descriptor documents. Intermediates come from a {@link Scratch}: a call allocates only what it returns.
 *
 * <p>Threading: the GEMMs share out tiles of their outputs; the per-sample steps run one sample per
 * task; the elementwise passes blocks of rows. The splits depend on the shapes only and no sum is split
 * between threads (a sample's sum over its cells is one task's, in cell order), so results are bitwise
 * the same for every thread count ({@link CpuRuntime}). Immutable and thread-safe; {@link #close()}
 * frees nothing.
 */
public final class MlbAttentionCpu extends CpuBackend<MlbAttention> implements MlbAttention.Backend {
    private final CpuLinear question, cellLayer, fusion; // weights only: their biases go into fused passes
    private final CpuLinear logits, answer;
    private final CpuLinear[] glimpses;
    private final float[] bq, bv, bf;
    private final Scratch scratch = new Scratch();

    // Scratch slots.
    private static final int QA = 0, VA = 1, LOGITS = 2, ALPHA = 3, VHAT = 4, U = 5, F = 6, Z = 7, DVHAT = 8, DALPHA = 9, H = 10, DPQ = 11,
            ONES = 12;

    public MlbAttentionCpu(MlbAttention op) {
        this(op, CpuRuntime.defaults());
    }

    public MlbAttentionCpu(MlbAttention op, CpuRuntime runtime) {
        super(op, "an MlbAttention", Backends.FP32, runtime);
        MlbAttention.Weights w = op.weights();
        question = MlbKernels.weightOnly(w.question());
        cellLayer = MlbKernels.weightOnly(w.cells());
        fusion = MlbKernels.weightOnly(w.questionFusion());
        logits = new CpuLinear(w.logits());
        answer = new CpuLinear(w.answer());
        glimpses = new CpuLinear[op.glimpses()];
        for (int g = 0; g < glimpses.length; g++) glimpses[g] = new CpuLinear(w.glimpses().get(g));
        bq = w.question().bias();
        bv = w.cells().bias();
        bf = w.questionFusion().bias();
    }

    /** {@code q (B × Dq)}, {@code v (B × L × Dv)} → {@code B × Out}. */
    @Override public float[] forward(float[] q, float[] v, int batch, int cells) {
        op.checkInputs(q, v, batch, cells);
        try (Scratch.Lease l = scratch.lease()) {
            Forward f = new Forward(l, batch, cells, false, true);
            f.run(q, v, null);
            return f.out;
        }
    }

    /** The forward, also returning the attention maps α ({@code B × G × L}). */
    @Override public MlbAttention.Result forwardWithAttention(float[] q, float[] v, int batch, int cells) {
        op.checkInputs(q, v, batch, cells);
        try (Scratch.Lease l = scratch.lease()) {
            Forward f = new Forward(l, batch, cells, false, true);
            float[] att = new float[elements("batch, cells: the attention maps B × G × L", batch, op.glimpses(), cells)];
            f.run(q, v, att);
            return new MlbAttention.Result(f.out, att);
        }
    }

    /** One call's forward: sizes, and the intermediates the backward reuses. */
    private final class Forward {
        final int batch, l, rows, dq, dv, j, gs, gj, od;
        final boolean keep; // for the backward: keep v' apart from h, and u, f apart from z
        final float[] qa, va, h, logit, alphaScratch, vhat, u, f, z;
        final float[] out;
        float[] alpha;

        Forward(Scratch.Lease lease, int batch, int cells, boolean keep, boolean output) {
            this.batch = batch;
            this.l = cells;
            this.rows = batch * cells; // checkInputs: an int
            this.keep = keep;
            dq = op.dq();
            dv = op.dv();
            j = op.joint();
            gs = op.glimpses();
            gj = gs * j;
            od = op.out();
            qa = lease.floats(QA, elements("batch: the question projections B × J", batch, j));
            int cellsJ = elements("batch, cells: the cell projections B·L × J", rows, j);
            va = lease.floats(VA, cellsJ);
            h = keep ? lease.floats(H, cellsJ) : va;
            logit = lease.floats(LOGITS, elements("batch, cells: the logits B·L × G", rows, gs));
            alphaScratch = lease.floats(ALPHA, elements("batch, cells: the attention maps B × G × L", batch, gs, cells));
            vhat = lease.floats(VHAT, elements("batch: the attended vectors B × G × Dv", batch, gs, dv));
            int fused = elements("batch: the fused glimpses B × G·J", batch, gj);
            u = lease.floats(U, fused);
            f = lease.floats(F, fused);
            z = keep ? lease.floats(Z, fused) : u;
            out = output ? new float[elements("batch: the output B × Out", batch, od)] : null; // a backward needs z, not the output
        }

        void run(float[] q, float[] v, float[] attention) {
            Activation act = op.activation();
            alpha = attention != null ? attention : alphaScratch;
            question.forward(runtime, batch, q, 0, dq, qa, 0, j, false);
            runtime.parallelRanges(batch, MlbKernels.grain(j), (r0, r1) -> {
                for (int b = r0; b < r1; b++) MlbKernels.biasActivate(act, qa, b * j, bq, j);
            });
            cellLayer.forward(runtime, rows, v, 0, dv, va, 0, j, false);
            runtime.parallelRanges(rows, MlbKernels.grain(j), (r0, r1) -> {
                for (int r = r0; r < r1; r++) {
                    int at = r * j, qAt = (r / l) * j;
                    MlbKernels.biasActivate(act, va, at, bv, j);
                    for (int i = 0; i < j; i++) h[at + i] = va[at + i] * qa[qAt + i];
                }
            });
            logits.forward(runtime, rows, h, 0, j, logit, 0, gs, false);
            // Softmax over the cells per sample and glimpse, then v̂_b = α_b·V_b (G × L by L × Dv).
            runtime.parallelFor(batch, b -> {
                for (int g = 0; g < gs; g++) {
                    int at = (b * gs + g) * l;
                    float m = Float.NEGATIVE_INFINITY;
                    for (int s = 0; s < l; s++) m = Math.max(m, logit[(b * l + s) * gs + g]);
                    double sum = 0;
                    for (int s = 0; s < l; s++) {
                        float e = (float) Math.exp(logit[(b * l + s) * gs + g] - m);
                        alpha[at + s] = e;
                        sum += e;
                    }
                    float inv = (float) (1 / sum);
                    for (int s = 0; s < l; s++) alpha[at + s] *= inv;
                }
                Sgemm.gemm(runtime, false, false, gs, dv, l, 1f, alpha, b * gs * l, l, v, b * l * dv, dv, 0f, vhat, b * gs * dv, dv);
            });
            for (int g = 0; g < gs; g++) glimpses[g].forward(runtime, batch, vhat, g * dv, gs * dv, u, g * j, gj, false);
            fusion.forward(runtime, batch, q, 0, dq, f, 0, gj, false);
            runtime.parallelRanges(batch, MlbKernels.grain(gj), (r0, r1) -> {
                for (int b = r0; b < r1; b++) {
                    int at = b * gj;
                    MlbKernels.biasActivate(act, u, at, null, gj);
                    MlbKernels.biasActivate(act, f, at, bf, gj);
                    for (int i = at; i < at + gj; i++) z[i] = u[i] * f[i];
                }
            });
            if (out != null) answer.forward(runtime, batch, z, 0, gj, out, 0, od, false);
        }
    }

    /**
     * A training step whose backward starts from this forward's intermediates ({@code q', v', h, α, v̂, u,
     * f, z}: about {@code B·L·2J} floats held until then) instead of recomputing them: the step's forward
     * GEMMs run once. Bitwise {@link #forward} and {@link #backward}.
     */
    @Override public TrainingStep<MlbAttention.Gradients> trainingStep(float[] q, float[] v, int batch, int cells) {
        op.checkInputs(q, v, batch, cells);
        Scratch.Lease lease = scratch.lease();
        Forward fw;
        try {
            fw = new Forward(lease, batch, cells, true, true);
            fw.run(q, v, null);
        } catch (RuntimeException | Error e) {
            lease.close();
            throw e;
        }
        return new TrainingStep<>(fw.out, batch, op.out()) {
            @Override protected MlbAttention.Gradients gradients(float[] gradOut) { return backwardFrom(lease, fw, q, v, gradOut); }
            @Override protected void release() { lease.close(); }
        };
    }

    /** Every gradient given {@code gradOut = ∂L/∂out} ({@code B × Out}). */
    @Override public MlbAttention.Gradients backward(float[] q, float[] v, float[] gradOut, int batch, int cells) {
        op.checkInputs(q, v, batch, cells);
        CompactBilinear.checkLength("gradOut", gradOut, batch, op.out());
        try (Scratch.Lease lease = scratch.lease()) {
            Forward fw = new Forward(lease, batch, cells, true, false);
            fw.run(q, v, null);
            return backwardFrom(lease, fw, q, v, gradOut);
        }
    }

    /** The backward from a kept forward {@code fw} (its arrays are spent: they hold gradients after). */
    private MlbAttention.Gradients backwardFrom(Scratch.Lease lease, Forward fw, float[] q, float[] v, float[] gradOut) {
        Activation act = op.activation();
        MlbAttention.Weights w = op.weights();
        int batch = fw.batch, l = fw.l, rows = fw.rows, dq = fw.dq, dv = fw.dv, j = fw.j, gs = fw.gs, gj = fw.gj, od = fw.od;
        float[] dqOut = new float[elements("batch: dq B × Dq", batch, dq)], dvOut = new float[elements("batch, cells: dv B × L × Dv", rows, dv)];
        float[] dvhat = lease.floats(DVHAT, fw.vhat.length), dalpha = lease.floats(DALPHA, fw.alphaScratch.length);
        float[] dpq = lease.floats(DPQ, fw.qa.length), ones = CpuLinear.ones(lease, ONES, rows);
        float[] qa = fw.qa, va = fw.va, h = fw.h, alpha = fw.alpha, u = fw.u, f = fw.f, z = fw.z;

        // Answer layer, then the product u ⊙ f and both activations: dp_u over u, dp_f over f.
        LinearGradients gAnswer = parameters(w.answer(), answer, batch, gradOut, 0, od, z, 0, gj, ones);
        float[] dz = z;
        answer.backwardInput(runtime, batch, gradOut, 0, od, dz, 0, gj, false);
        runtime.parallelRanges(batch, MlbKernels.grain(gj), (r0, r1) -> {
            for (int i = r0 * gj; i < r1 * gj; i++) {
                float a = u[i], c = f[i], d = dz[i];
                u[i] = d * c * MlbKernels.derivative(act, a);
                f[i] = d * a * MlbKernels.derivative(act, c);
            }
        });
        float[] dpu = u, dpf = f;
        LinearGradients gFusion = weightOnlyParameters(w.questionFusion(), fusion, batch, dpf, 0, gj, q, 0, dq, ones);
        fusion.backwardInput(runtime, batch, dpf, 0, gj, dqOut, 0, dq, false);
        List<LinearGradients> gGlimpses = new ArrayList<>();
        for (int g = 0; g < gs; g++) {
            gGlimpses.add(parameters(w.glimpses().get(g), glimpses[g], batch, dpu, g * j, gj, fw.vhat, g * dv, gs * dv, ones));
            glimpses[g].backwardInput(runtime, batch, dpu, g * j, gj, dvhat, g * dv, gs * dv, false);
        }

        // The attention, per sample: dα = dv̂·V_bᵀ, ∂V_b = α_bᵀ·dv̂, and the softmax Jacobian into the logits' gradient.
        float[] da = fw.logit;
        runtime.parallelFor(batch, b -> {
            Sgemm.gemm(runtime, false, true, gs, l, dv, 1f, dvhat, b * gs * dv, dv, v, b * l * dv, dv, 0f, dalpha, b * gs * l, l);
            Sgemm.gemm(runtime, true, false, l, dv, gs, 1f, alpha, b * gs * l, l, dvhat, b * gs * dv, dv, 0f, dvOut, b * l * dv, dv);
            for (int g = 0; g < gs; g++) {
                int at = (b * gs + g) * l;
                double c = 0;
                for (int s = 0; s < l; s++) c += (double) alpha[at + s] * dalpha[at + s];
                float cf = (float) c;
                for (int s = 0; s < l; s++) da[(b * l + s) * gs + g] = alpha[at + s] * (dalpha[at + s] - cf);
            }
        });
        float[] gLogitsW = new float[gs * j];
        Sgemm.gemm(runtime, true, false, gs, j, rows, 1f, da, 0, gs, h, 0, j, 0f, gLogitsW, 0, j);
        LinearGradients gLogits = new LinearGradients(gLogitsW, w.logits().hasBias() ? new float[gs] : null);
        float[] dh = h; // h is spent
        logits.backwardInput(runtime, rows, da, 0, gs, dh, 0, j, false);

        // Per sample: dp_v = dh ⊙ q' ⊙ σ'(v') over v', and q''s gradient Σ_s dh_s ⊙ v'_s, in cell order.
        runtime.parallelFor(batch, b -> {
            int qAt = b * j;
            java.util.Arrays.fill(dpq, qAt, qAt + j, 0f);
            for (int s = 0; s < l; s++) {
                int at = (b * l + s) * j;
                for (int i = 0; i < j; i++) {
                    float d = dh[at + i], a = va[at + i];
                    dpq[qAt + i] += d * a;
                    va[at + i] = d * qa[qAt + i] * MlbKernels.derivative(act, a);
                }
            }
            MlbKernels.timesDerivative(act, dpq, qa, qAt, j);
        });
        float[] dpv = va;
        LinearGradients gCells;
        if (act == Activation.NONE && w.cells().hasBias()) {
            float[] gw = new float[j * dv];
            cellLayer.backwardParameters(runtime, rows, dpv, 0, j, v, 0, dv, gw, null, ones, false);
            gCells = new LinearGradients(gw, new float[j]); // exactly zero: see the class comment
        } else {
            gCells = weightOnlyParameters(w.cells(), cellLayer, rows, dpv, 0, j, v, 0, dv, ones);
        }
        cellLayer.backwardInput(runtime, rows, dpv, 0, j, dvOut, 0, dv, true);
        LinearGradients gQuestion = weightOnlyParameters(w.question(), question, batch, dpq, 0, j, q, 0, dq, ones);
        question.backwardInput(runtime, batch, dpq, 0, j, dqOut, 0, dq, true);
        return new MlbAttention.Gradients(dqOut, dvOut, gQuestion, gCells, gLogits, gGlimpses, gFusion, gAnswer);
    }

    /** A full layer's {@code ∂W = dpᵀ·x} and {@code ∂b} over {@code rows} rows, into fresh arrays. */
    private LinearGradients parameters(Linear layer, CpuLinear c, int rows, float[] dp, int dpOff, int ldp, float[] x, int xOff, int ldx,
            float[] ones) {
        float[] gw = new float[c.out * c.in], gb = layer.hasBias() ? new float[c.out] : null;
        c.backwardParameters(runtime, rows, dp, dpOff, ldp, x, xOff, ldx, gw, gb, ones, false);
        return new LinearGradients(gw, gb);
    }

    /** As {@link #parameters} for a layer prepared without its bias: the bias gradient is a column sum of dp. */
    private LinearGradients weightOnlyParameters(Linear layer, CpuLinear c, int rows, float[] dp, int dpOff, int ldp, float[] x, int xOff,
            int ldx, float[] ones) {
        float[] gw = new float[c.out * c.in];
        c.backwardParameters(runtime, rows, dp, dpOff, ldp, x, xOff, ldx, gw, null, ones, false);
        return new LinearGradients(gw, layer.hasBias() ? MlbKernels.columnSums(runtime, rows, c.out, dp, dpOff, ldp, ones) : null);
    }
}
