package io.bifuse.cpu;

import io.bifuse.Activation;
import io.bifuse.CompactBilinear;
import io.bifuse.Linear;
import io.bifuse.LinearGradients;
import io.bifuse.Mfb;
import io.bifuse.Normalization;
import io.bifuse.TrainingStep;
import java.util.ArrayList;
import java.util.List;

/**
 * {@link Mfb} (MFB, and MFH with several blocks) on the CPU in float32.
 *
 * <p>How: every block's U is stacked into one {@code n·o·k × Dx} weight and every V into one
 * {@code n·o·k × Dy} weight once, in the constructor, so the forward's projections are two GEMMs
 * ({@link Sgemm} through {@link CpuLinear}) that give all blocks' pre-activations side by side
 * ({@code B × n·o·k}, block i at columns {@code [i·o·k, (i+1)·o·k)}). One fused pass per sample then
 * does everything else: bias, activation, the product {@code h_i}, the MFH chain {@code e_i = h_i ⊙ e_{i−1}}
 * (written over the pre-activations), the sum pooling over k adjacent units and the per-block
 * normalization (signed sqrt and l2, sums of squares in double).
 *
 * <p>The backward recomputes the forward's GEMMs (a {@link #trainingStep} keeps the activations instead), then one fused pass per sample: the chain's prefix
 * products and pooled {@code z_i}, the normalization's backward, and from the last block down
 * {@code ∂e_i}, {@code ∂h_i = ∂e_i ⊙ e_{i−1}} and both projections' gradients
 * {@code dp_i = ∂h_i ⊙ c_i ⊙ σ'(a_i)}, {@code dq_i = ∂h_i ⊙ a_i ⊙ σ'(c_i)}, written over the activations.
 * Then GEMMs: {@code ∂x = dp·U_stacked} (one GEMM summing over every block), {@code ∂U_i = dp_iᵀ·x} over the
 * batch (one per block, straight into its result), bias gradients as GEMMs with a ones vector; the same
 * for y and V. Intermediates come from a {@link Scratch}: a call allocates only what it returns.
 *
 * <p>With an output layer ({@link Mfb#withOutput}) the pooled, normalized vectors {@code n} are kept and
 * the layer is one more GEMM each way ({@code σ_out(n·Wᵀ + b)}; {@code ∂W = gpreᵀ·n}, {@code ∂n = gpre·W}
 * with {@code gpre = ∂L/∂out ⊙ σ_out'}); its backward runs the forward as far as {@code n} first, so the
 * fused backward pass starts from activations, as a training step's does.
 *
 * <p>Threading: the GEMMs share out tiles of their outputs, the fused passes blocks of samples, both
 * split by shape only and never inside one sum, so results are bitwise the same for every thread
 * count ({@link CpuRuntime}). Immutable and thread-safe; {@link #close()} frees nothing.
 */
public final class MfbCpu extends CpuBackend<Mfb> implements Mfb.Backend {
    private final CpuLinear u, v; // stacked blocks, weights only
    private final OutputLayer linearOut; // null without an output layer
    private final float[] bu, bv; // stacked biases (zeros for a block without), or null when no block has one
    private final Scratch scratch = new Scratch();

    public MfbCpu(Mfb op) {
        this(op, CpuRuntime.defaults());
    }

    public MfbCpu(Mfb op, CpuRuntime runtime) {
        super(op, "an Mfb", Backends.FP32, runtime);
        u = stacked(op.us(), op.dx());
        v = stacked(op.vs(), op.dy());
        bu = stackedBias(op.us());
        bv = stackedBias(op.vs());
        linearOut = op.hasOutput() ? new OutputLayer(op.linearOut(), op.outputActivation()) : null;
    }

    private static CpuLinear stacked(List<Linear> layers, int in) {
        int w = layers.get(0).out(), n = layers.size();
        float[] weight = new float[Math.multiplyExact(Math.multiplyExact(n, w), in)];
        for (int i = 0; i < n; i++) layers.get(i).copyWeightTo(weight, i * w * in);
        return new CpuLinear(new Linear(n * w, in, weight, null));
    }

    private static float[] stackedBias(List<Linear> layers) {
        if (layers.stream().noneMatch(Linear::hasBias)) return null;
        int w = layers.get(0).out();
        float[] b = new float[layers.size() * w];
        for (int i = 0; i < layers.size(); i++) if (layers.get(i).hasBias()) layers.get(i).copyBiasTo(b, i * w);
        return b;
    }

    /** {@code B × Dx}, {@code B × Dy} → {@code B × outputWidth}. */
    @Override public float[] forward(float[] x, float[] y, int batch) {
        op.checkInputs(x, y, batch);
        if (linearOut != null) {
            float[] out = new float[elements("batch: the output B × Out", batch, op.outputWidth())];
            try (Scratch.Lease l = scratch.lease()) {
                linearOut.forward(runtime, batch, activatedForward(l, x, y, batch), out);
            }
            return out;
        }
        int n = op.blocks(), w = op.width(), nw = n * w, o = op.o(), k = op.k(), ow = op.pooledWidth();
        int proj = elements("batch: the projections B × blocks·o·k", batch, nw);
        float[] out = new float[elements("batch: the output B × blocks·o", batch, ow)];
        Activation act = op.activation();
        Normalization norm = op.normalization();
        try (Scratch.Lease l = scratch.lease()) {
            float[] pa = l.floats(0, proj), pc = l.floats(1, proj);
            u.forward(runtime, batch, x, 0, op.dx(), pa, 0, nw, false);
            v.forward(runtime, batch, y, 0, op.dy(), pc, 0, nw, false);
            runtime.parallelRanges(batch, MlbKernels.grain(nw), (r0, r1) -> {
                for (int r = r0; r < r1; r++) {
                    int at = r * nw;
                    MlbKernels.biasActivate(act, pa, at, bu, nw);
                    MlbKernels.biasActivate(act, pc, at, bv, nw);
                    for (int i = 0; i < nw; i++) pa[at + i] *= pc[at + i];
                    for (int i = 1; i < n; i++) for (int c = at + i * w, e = c + w; c < e; c++) pa[c] *= pa[c - w]; // e_i = h_i ⊙ e_{i−1}
                    pool(pa, at, n * o, k, out, r * ow);
                    if (!norm.isIdentity()) for (int i = 0; i < n; i++) MlbKernels.normalize(norm, out, r * ow + i * o, o, out, r * ow + i * o);
                }
            });
        }
        return out;
    }

    /** {@code z[zAt + m] = Σ_{t<k} e[eAt + m·k + t]} for {@code m < units}, in t order. */
    private static void pool(float[] e, int eAt, int units, int k, float[] z, int zAt) {
        if (k == 1) {
            System.arraycopy(e, eAt, z, zAt, units);
            return;
        }
        for (int m = 0; m < units; m++) {
            int at = eAt + m * k;
            float s = e[at];
            for (int t = 1; t < k; t++) s += e[at + t];
            z[zAt + m] = s;
        }
    }

    /**
     * A training step whose backward starts from this forward's activations ({@code σ(x·U_iᵀ + b)} and
     * {@code σ(y·V_iᵀ + b)} of every block: {@code 2·B·n·o·k} floats held until then) instead of
     * recomputing them: the forward's two GEMMs fewer per step. Bitwise {@link #forward} and {@link #backward}.
     */
    @Override public TrainingStep<Mfb.Gradients> trainingStep(float[] x, float[] y, int batch) {
        op.checkInputs(x, y, batch);
        int ow = op.outputWidth();
        float[] out = new float[elements("batch: the output B × outputWidth", batch, ow)];
        Scratch.Lease l = scratch.lease();
        try {
            if (linearOut == null) activatedForward(l, x, y, batch, out);
            else linearOut.forward(runtime, batch, activatedForward(l, x, y, batch), out);
        } catch (RuntimeException | Error e) {
            l.close();
            throw e;
        }
        return new TrainingStep<>(out, batch, ow) {
            @Override protected Mfb.Gradients gradients(float[] gradOut) { return backwardFrom(l, x, y, gradOut, batch, true); }
            @Override protected void release() { l.close(); }
        };
    }

    /**
     * The forward up to the pooled, normalized vectors {@code n} ({@code B × blocks·o}, into {@code nOut}),
     * leaving the activations {@code σ(x·U_iᵀ + b)}, {@code σ(y·V_iᵀ + b)} in slots 0 and 1 of {@code l}
     * for {@link #backwardFrom} ({@code activated}).
     */
    private void activatedForward(Scratch.Lease l, float[] x, float[] y, int batch, float[] nOut) {
        int n = op.blocks(), w = op.width(), nw = n * w, o = op.o(), k = op.k(), pw = op.pooledWidth();
        Activation act = op.activation();
        Normalization norm = op.normalization();
        projections(l, x, y, batch);
        float[] a = l.floats(0, batch * nw), c = l.floats(1, batch * nw), temp = taskBuffers(l, batch);
        int grain = MlbKernels.grain(nw), perTask = perTask();
        runtime.parallelRanges(batch, grain, (r0, r1) -> {
            int t0 = (r0 / grain) * perTask;
            for (int r = r0; r < r1; r++) {
                int at = r * nw;
                MlbKernels.biasActivate(act, a, at, bu, nw);
                MlbKernels.biasActivate(act, c, at, bv, nw);
                for (int i = 0; i < nw; i++) temp[t0 + i] = a[at + i] * c[at + i];
                for (int i = w; i < nw; i++) temp[t0 + i] *= temp[t0 + i - w];
                pool(temp, t0, n * o, k, nOut, r * pw);
                if (!norm.isIdentity()) for (int i = 0; i < n; i++) MlbKernels.normalize(norm, nOut, r * pw + i * o, o, nOut, r * pw + i * o);
            }
        });
    }

    /** {@link #activatedForward} into slot 4 of {@code l} (the output layer's input, kept there for the backward), returned. */
    private float[] activatedForward(Scratch.Lease l, float[] x, float[] y, int batch) {
        float[] n = l.floats(4, elements("batch: the pooled vectors B × blocks·o", batch, op.pooledWidth()));
        activatedForward(l, x, y, batch, n);
        return n;
    }

    /** Every gradient given {@code gradOut = ∂L/∂out} ({@code B × outputWidth}); written, not accumulated. */
    @Override public Mfb.Gradients backward(float[] x, float[] y, float[] gradOut, int batch) {
        op.checkInputs(x, y, batch);
        CompactBilinear.checkLength("gradOut", gradOut, batch, op.outputWidth());
        try (Scratch.Lease l = scratch.lease()) {
            if (linearOut != null) { // the output layer's backward needs n: the forward as far as n first
                activatedForward(l, x, y, batch);
                return backwardFrom(l, x, y, gradOut, batch, true);
            }
            projections(l, x, y, batch);
            return backwardFrom(l, x, y, gradOut, batch, false);
        }
    }

    /** Both stacked projections' GEMMs, without bias, into slots 0 and 1 of {@code l}. */
    private void projections(Scratch.Lease l, float[] x, float[] y, int batch) {
        int nw = op.blocks() * op.width();
        int proj = elements("batch: the projections B × blocks·o·k", batch, nw);
        u.forward(runtime, batch, x, 0, op.dx(), l.floats(0, proj), 0, nw, false);
        v.forward(runtime, batch, y, 0, op.dy(), l.floats(1, proj), 0, nw, false);
    }

    /** Per task of the fused passes: the chain's products e_0..e_{n-1} (n·w), ∂e (w), the pooled z and its gradient (2·n·o). */
    private int perTask() {
        return op.blocks() * op.width() + op.width() + 2 * op.blocks() * op.o();
    }

    private float[] taskBuffers(Scratch.Lease l, int batch) {
        int grain = MlbKernels.grain(op.blocks() * op.width()), tasks = (batch + grain - 1) / grain;
        return l.floats(3, elements("batch: the per-task buffers", tasks, perTask()));
    }

    /**
     * The backward from {@link #projections}' slots ({@code activated}: already biased and through σ, as
     * a training step's forward leaves them); they hold dp and dq after.
     */
    private Mfb.Gradients backwardFrom(Scratch.Lease l, float[] x, float[] y, float[] gradOutput, int batch, boolean activated) {
        int n = op.blocks(), w = op.width(), nw = n * w, o = op.o(), k = op.k(), ow = op.pooledWidth(), dx = op.dx(), dy = op.dy();
        float[] gx = new float[elements("batch: dx B × Dx", batch, dx)], gy = new float[elements("batch: dy B × Dy", batch, dy)];
        Activation act = op.activation();
        Normalization norm = op.normalization();
        int grain = MlbKernels.grain(nw), perTask = perTask();
        List<LinearGradients> gu = new ArrayList<>(), gv = new ArrayList<>();
        float[] a = l.floats(0, batch * nw), c = l.floats(1, batch * nw), ones = CpuLinear.ones(l, 2, batch);
        float[] temp = taskBuffers(l, batch);
        LinearGradients gout = null;
        float[] gradOut = gradOutput; // ∂L/∂n: gradOutput, or through the output layer
        if (linearOut != null) { // n in slot 4 (activatedForward's), σ_out's output in slot 5, ∂n in slot 6
            gradOut = l.floats(6, batch * ow);
            gout = linearOut.backward(runtime, l, 5, ones, batch, l.floats(4, batch * ow), gradOutput, gradOut);
        }
        float[] gz0 = gradOut;
        runtime.parallelRanges(batch, grain, (r0, r1) -> {
            int t0 = (r0 / grain) * perTask, ge = t0 + nw, z = ge + w, gz = z + n * o;
            for (int r = r0; r < r1; r++) {
                int at = r * nw;
                if (!activated) {
                    MlbKernels.biasActivate(act, a, at, bu, nw);
                    MlbKernels.biasActivate(act, c, at, bv, nw);
                }
                for (int i = 0; i < nw; i++) temp[t0 + i] = a[at + i] * c[at + i];
                for (int i = w; i < nw; i++) temp[t0 + i] *= temp[t0 + i - w];
                pool(temp, t0, n * o, k, temp, z);
                if (norm.isIdentity()) System.arraycopy(gz0, r * ow, temp, gz, ow);
                else for (int i = 0; i < n; i++) MlbKernels.normalizeBackward(norm, temp, z + i * o, gz0, r * ow + i * o, o, temp, gz + i * o);
                // From the last block down: temp[ge..] holds ∂L/∂e_i.
                for (int m = 0; m < o; m++) java.util.Arrays.fill(temp, ge + m * k, ge + m * k + k, temp[gz + (n - 1) * o + m]);
                for (int i = n - 1; i >= 0; i--) {
                    int bi = at + i * w, prev = t0 + (i - 1) * w;
                    for (int jj = 0; jj < w; jj++) {
                        float ai = a[bi + jj], ci = c[bi + jj], gh = i > 0 ? temp[ge + jj] * temp[prev + jj] : temp[ge + jj];
                        a[bi + jj] = gh * ci * MlbKernels.derivative(act, ai);
                        c[bi + jj] = gh * ai * MlbKernels.derivative(act, ci);
                        if (i > 0) temp[ge + jj] = temp[gz + (i - 1) * o + jj / k] + temp[ge + jj] * (ai * ci);
                    }
                }
            }
        });
        float[] dp = a, dq = c;
        u.backwardInput(runtime, batch, dp, 0, nw, gx, 0, dx, false);
        v.backwardInput(runtime, batch, dq, 0, nw, gy, 0, dy, false);
        for (int i = 0; i < n; i++) {
            gu.add(blockGradients(op.u(i), i * w, batch, w, dp, nw, x, dx, ones));
            gv.add(blockGradients(op.v(i), i * w, batch, w, dq, nw, y, dy, ones));
        }
        return new Mfb.Gradients(gx, gy, List.copyOf(gu), List.copyOf(gv), gout);
    }

    /** One block's {@code ∂W = dpᵀ·in} over the batch (columns {@code [off, off + w)} of dp) and its bias gradient. */
    private LinearGradients blockGradients(Linear layer, int off, int batch, int w, float[] dp, int ld, float[] in, int dim, float[] ones) {
        float[] dw = new float[w * dim];
        Sgemm.gemm(runtime, true, false, w, dim, batch, 1f, dp, off, ld, in, 0, dim, 0f, dw, 0, dim);
        return new LinearGradients(dw, layer.hasBias() ? MlbKernels.columnSums(runtime, batch, w, dp, off, ld, ones) : null);
    }
}
