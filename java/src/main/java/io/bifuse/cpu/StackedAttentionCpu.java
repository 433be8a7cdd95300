package io.bifuse.cpu;

import io.bifuse.Linear;
import io.bifuse.LinearGradients;
import io.bifuse.StackedAttention;
import io.bifuse.StackedAttention.Placement;
import io.bifuse.TrainingStep;
import java.util.ArrayList;
import java.util.List;

/**
 * {@link StackedAttention} on the CPU in float32.
 *
 * <p>The tanh of a projection (millions per call) is {@link SanHanKernels#tanh}, vectorized and within
 * 3.7·10⁻⁷ of the exact one; the public code's logit tanh (one per cell) is {@code Math.tanh}.
 *
 * <p>Forward. The image side does not depend on {@code u}: every layer's {@code W_I v_s + b_I} is one
 * GEMM over all {@code B·L} cells, the {@code K} layers' image weights stacked into one
 * {@code K·k × d} matrix, so {@code v} is read once ({@link CpuLinear}). Then per layer: one GEMM for the
 * question side of every sample ({@code U_l W_Qᵀ + b_Q}, {@code B × k}), and one fused pass per sample
 * over its cells: the tanh's of the placement, the logit {@code w_P·h_s + b_P}, the softmax over the
 * cells (exponentials and their sum in double) and {@code u_{l+1} = Σ α_s v_s + u_l}.
 *
 * <p>Backward, per layer from the last: one fused pass per sample ({@code dα_s = g·v_s} and
 * {@code dv_s += α_s g}; the softmax Jacobian, the logit's and the tanh's derivatives; {@code dp_s} written
 * over the image projections; {@code dq} summed over the cells), then {@code g += dq·W_Q} (a GEMM over the
 * samples: the residual plus the question side) and the question and logits layers' parameter gradients
 * ({@code dW_Q = dqᵀU_l}, {@code dw_P = dzᵀH}, {@code db_Q} as a GEMM with a ones vector). Last, the image
 * side of all layers at once, with the stacked weights over the {@code B·L} cells: {@code dv += dP·W_I},
 * {@code dW_I = dPᵀV}, {@code db_I}. The softmax Jacobian sums to zero over the cells, so what sums its
 * terms cancels: {@code dα}, the Jacobian's inner sum, {@code dq}, the logits bias's {@code Σ dz} and the
 * logits themselves are in double (one or a few per cell, next to the GEMMs' {@code d·k} per cell). In the
 * paper's placement the logits bias gradient is exact zeros, as the reference writes it.
 *
 * <p>{@link #backward} recomputes the forward; a {@link #trainingStep} keeps its intermediates (image
 * projections, hidden vectors {@code h}, question sides, logits, maps, the {@code u_l}: about
 * {@code B·L·2K·k} floats) for its backward instead (the same calls, so the same bits either way).
 *
 * <p>Threads: the GEMMs share out their tiles ({@link Sgemm}); the fused passes run one task per sample.
 * No sum is split between threads and each has one order fixed by the shapes, so results are bitwise the
 * same for every thread count and rerun. Weights are prepared once; intermediates ({@code B·L·K·k} floats
 * twice, checked by name with {@link CpuBackend#elements} before anything is allocated) come from a
 * {@link Scratch}; a call allocates only its results. Thread-safe; {@link #close()} frees nothing.
 */
public final class StackedAttentionCpu extends CpuBackend<StackedAttention> implements StackedAttention.Backend {
    private static final int SLOT_PROJ = 0, SLOT_H = 1, SLOT_Q = 2, SLOT_LOGIT = 3, SLOT_G = 4, SLOT_DQ = 5, SLOT_DZ = 6, SLOT_ONES = 7,
            SLOT_DW = 8, SLOT_DB = 9, SLOT_ATT = 10, SLOT_U = 11; // SLOT_U + l: u_l for l < K

    private final int d, k, layers, kk; // kk = K·k, the stacked image projections' width
    private final boolean paper;
    private final CpuLinear image;      // the K layers' W_I stacked, K·k × d (bias zeros where a layer has none)
    private final boolean[] imageBias;
    private final CpuLinear[] question;
    private final float[][] logitsWeight;
    private final float[] logitsBias;
    private final boolean[] hasLogitsBias;
    private final Scratch scratch = new Scratch();
    public StackedAttentionCpu(StackedAttention op) {
        this(op, CpuRuntime.defaults());
    }

    public StackedAttentionCpu(StackedAttention op, CpuRuntime runtime) {
        super(op, "a StackedAttention", Backends.FP32, runtime);
        d = op.dim();
        k = op.width();
        layers = op.layers();
        kk = Math.multiplyExact(layers, k);
        paper = op.placement() == Placement.PAPER;
        List<StackedAttention.Layer> ls = op.weights().layers();
        float[] w = new float[Math.multiplyExact(kk, d)], b = new float[kk];
        imageBias = new boolean[layers];
        question = new CpuLinear[layers];
        logitsWeight = new float[layers][];
        logitsBias = new float[layers];
        hasLogitsBias = new boolean[layers];
        boolean anyImageBias = false;
        for (int l = 0; l < layers; l++) {
            StackedAttention.Layer layer = ls.get(l);
            layer.image().copyWeightTo(w, l * k * d);
            layer.image().copyBiasTo(b, l * k);
            imageBias[l] = layer.image().hasBias();
            anyImageBias |= imageBias[l];
            question[l] = new CpuLinear(layer.question());
            logitsWeight[l] = layer.logits().weight();
            hasLogitsBias[l] = layer.logits().hasBias();
            logitsBias[l] = hasLogitsBias[l] ? layer.logits().bias()[0] : 0f;
        }
        image = new CpuLinear(new Linear(kk, d, w, anyImageBias ? b : null));
    }

    /** {@code u (B × d)}, {@code v (B × L × d)} → {@code B × d}. */
    @Override public float[] forward(float[] u, float[] v, int batch, int cells) {
        op.checkInputs(u, v, batch, cells);
        return run(u, v, batch, cells, false).out();
    }

    /** The forward, also returning the attention maps ({@code B × K × L}). */
    @Override public StackedAttention.Result forwardWithAttention(float[] u, float[] v, int batch, int cells) {
        op.checkInputs(u, v, batch, cells);
        return run(u, v, batch, cells, true);
    }

    private StackedAttention.Result run(float[] u, float[] v, int batch, int cells, boolean attention) {
        try (Scratch.Lease lease = scratch.lease()) {
            Pass p = new Pass(lease, u, v, batch, cells);
            return new StackedAttention.Result(p.out, attention ? java.util.Arrays.copyOf(p.attention, batch * layers * cells) : null);
        }
    }

    /**
     * A training step whose backward walks back from this forward's pass (held, with its lease, until
     * then) instead of recomputing it. Bitwise {@link #forward} and {@link #backward}.
     */
    @Override public TrainingStep<StackedAttention.Gradients> trainingStep(float[] u, float[] v, int batch, int cells) {
        op.checkInputs(u, v, batch, cells);
        Scratch.Lease lease = scratch.lease();
        Pass p;
        try {
            p = new Pass(lease, u, v, batch, cells);
        } catch (RuntimeException | Error e) {
            lease.close();
            throw e;
        }
        return new TrainingStep<>(p.out, batch, d) {
            @Override protected StackedAttention.Gradients gradients(float[] gradOut) { return backwardFrom(lease, p, v, gradOut); }
            @Override protected void release() { lease.close(); }
        };
    }

    /** Every gradient given {@code gradOut = ∂L/∂u_K} ({@code B × d}), recomputing the forward. */
    @Override public StackedAttention.Gradients backward(float[] u, float[] v, float[] gradOut, int batch, int cells) {
        op.checkInputs(u, v, batch, cells);
        io.bifuse.CompactBilinear.checkLength("gradOut", gradOut, batch, d);
        try (Scratch.Lease lease = scratch.lease()) {
            return backwardFrom(lease, new Pass(lease, u, v, batch, cells), v, gradOut);
        }
    }

    /** The backward from a forward's pass {@code p} (spent after: dP is written over its projections). */
    private StackedAttention.Gradients backwardFrom(Scratch.Lease lease, Pass p, float[] v, float[] gradOut) {
        int batch = p.batch;
        int rows = p.rows;
        float[] dv = new float[elements("v gradient", rows, d)];
        float[] g = lease.floats(SLOT_G, batch * d);
        System.arraycopy(gradOut, 0, g, 0, batch * d);
        float[] dq = lease.floats(SLOT_DQ, batch * k), dz = lease.floats(SLOT_DZ, rows);
        float[] ones = CpuLinear.ones(lease, SLOT_ONES, Math.max(rows, batch));
        double[] acc = lease.doubles(0, batch * k), dzSums = lease.doubles(1, batch);
        LinearGradients[] qGrads = new LinearGradients[layers], pGrads = new LinearGradients[layers];
        for (int l = layers - 1; l >= 0; l--) {
            int lv = l;
            runtime.parallelFor(batch, b -> sampleBackward(p, lv, b, v, g, dv, dq, dz, acc, dzSums));
            float[] uin = p.u[l];
            // ∂L/∂u_l = g + W_Qᵀ dq; the parameter gradients read u_l, which the residual does not change.
            question[l].backwardInput(runtime, batch, dq, 0, k, g, 0, d, true);
            float[] dWq = new float[k * d], dbq = question[l].bias != null ? new float[k] : null;
            question[l].backwardParameters(runtime, batch, dq, 0, k, uin, 0, d, dWq, dbq, ones, false);
            qGrads[l] = new LinearGradients(dWq, dbq);
            float[] dwp = new float[k];
            Sgemm.gemm(runtime, true, false, 1, k, rows, 1f, dz, 0, 1, p.h, l * k, kk, 0f, dwp, 0, k);
            float[] dbp = null;
            if (hasLogitsBias[l]) {
                dbp = new float[1];
                if (!paper) {
                    double sum = 0;
                    for (int b = 0; b < batch; b++) sum += dzSums[b];
                    dbp[0] = (float) sum;
                }
            }
            pGrads[l] = new LinearGradients(dwp, dbp);
        }
        float[] du = new float[batch * d];
        System.arraycopy(g, 0, du, 0, batch * d);
        // The image side of every layer at once: p.proj now holds dP (rows × K·k).
        image.backwardInput(runtime, rows, p.proj, 0, kk, dv, 0, d, true);
        float[] dW = lease.floats(SLOT_DW, kk * d), db = image.bias != null ? lease.floats(SLOT_DB, kk) : null;
        image.backwardParameters(runtime, rows, p.proj, 0, kk, v, 0, d, dW, db, ones, false);
        List<StackedAttention.LayerGradients> out = new ArrayList<>();
        for (int l = 0; l < layers; l++) {
            float[] w = new float[k * d];
            System.arraycopy(dW, l * k * d, w, 0, k * d);
            float[] bi = null;
            if (imageBias[l]) {
                bi = new float[k];
                System.arraycopy(db, l * k, bi, 0, k);
            }
            out.add(new StackedAttention.LayerGradients(new LinearGradients(w, bi), qGrads[l], pGrads[l]));
        }
        return new StackedAttention.Gradients(du, dv, out);
    }

    /** Every layer's forward over the batch, keeping what the backward reads. */
    private final class Pass {
        final int batch, cells, rows;
        /** Image projections, rows × K·k: W_I v + b_I (paper) or its tanh (public code); dP after the backward's passes. */
        final float[] proj;
        /** Hidden vectors h, rows × K·k. */
        final float[] h;
        /** Question side per layer, B × k at l·B·k: W_Q u_l + b_Q (paper) or its tanh (public code). */
        final float[] q;
        /** Logits a_s per layer (after the public code's tanh), rows at l·rows. */
        final float[] logit;
        /** The attention maps, B × K × L. */
        final float[] attention;
        /** The backward's dα per cell (rows). */
        final double[] dalpha;
        /** u_l, l <= K (u[0] the input, u[K] the output). */
        final float[][] u;
        final float[] out;

        Pass(Scratch.Lease lease, float[] u0, float[] v, int batch, int cells) {
            this.batch = batch;
            this.cells = cells;
            rows = batch * cells; // the descriptor checked it against 2^31
            // Every batch-dependent size first, so a batch too large fails by name before any allocation.
            int projSize = elements("image projections", rows, kk);
            int attSize = elements("attention maps", batch, layers, cells);
            int logitSize = elements("logits", layers, rows);
            int qSize = elements("question projections", layers, batch, k);
            proj = lease.floats(SLOT_PROJ, projSize);
            h = lease.floats(SLOT_H, projSize);
            dalpha = lease.doubles(2, rows);
            q = lease.floats(SLOT_Q, qSize);
            logit = lease.floats(SLOT_LOGIT, logitSize);
            attention = lease.floats(SLOT_ATT, attSize);
            u = new float[layers + 1][];
            u[0] = u0;
            image.forward(runtime, rows, v, 0, d, proj, 0, kk, false);
            for (int l = 0; l < layers; l++) {
                int lv = l;
                float[] next = u[l + 1] = l == layers - 1 ? new float[batch * d] : lease.floats(SLOT_U + l, batch * d);
                float[] cur = u[l];
                question[l].forward(runtime, batch, cur, 0, d, q, l * batch * k, k, false);
                runtime.parallelFor(batch, b -> sampleForward(this, lv, b, v, cur, next));
            }
            out = u[layers];
        }
    }

    /** Layer {@code l} of sample {@code b}: hidden vectors, logits, softmax, {@code u_{l+1} = Σ α_s v_s + u_l}. */
    private void sampleForward(Pass p, int l, int b, float[] v, float[] cur, float[] next) {
        int cells = p.cells, qo = (l * p.batch + b) * k, ao = (b * layers + l) * cells, lo = l * p.rows + b * cells;
        float[] q = p.q, proj = p.proj, h = p.h, w = logitsWeight[l], logit = p.logit;
        float bias = logitsBias[l];
        if (!paper) SanHanKernels.tanhInPlace(q, qo, k);
        float max = Float.NEGATIVE_INFINITY;
        for (int s = 0; s < cells; s++) {
            int r = b * cells + s, po = r * kk + l * k;
            if (paper) {
                SanHanKernels.tanhOfSum(proj, po, q, qo, h, po, k);
            } else {
                SanHanKernels.tanhInPlace(proj, po, k);
                for (int j = 0; j < k; j++) h[po + j] = proj[po + j] + q[qo + j];
            }
            // The logit in double and its tanh exact: one per cell, and the softmax Jacobian downstream cancels
            // (Σ_s da_s = 0), so their rounding shows in the question and logits-bias gradients.
            double z = SanHanKernels.dotDouble(w, h, po, k) + bias;
            float a = (float) (paper ? z : Math.tanh(z));
            logit[lo + s] = a;
            max = Math.max(max, a);
        }
        double sum = 0;
        for (int s = 0; s < cells; s++) sum += Math.exp(logit[lo + s] - max);
        int uo = b * d;
        for (int s = 0; s < cells; s++) p.attention[ao + s] = (float) (Math.exp(logit[lo + s] - max) / sum);
        // u_{l+1} = u_l + α·V_b as a 1 × d GEMM over the cells (a loop over two arrays at different offsets
        // would not vectorize).
        System.arraycopy(cur, uo, next, uo, d);
        Sgemm.gemm(runtime, false, false, 1, d, cells, 1f, p.attention, ao, cells, v, b * cells * d, d, 1f, next, uo, d);
    }

    /**
     * Layer {@code l}'s backward for sample {@code b} given {@code g = ∂L/∂u_{l+1}}: {@code dv += α g},
     * {@code dz} per cell, {@code dp} over the image projections, {@code dq}.
     */
    private void sampleBackward(Pass p, int l, int b, float[] v, float[] g, float[] dv, float[] dq, float[] dz, double[] acc, double[] dzSums) {
        int cells = p.cells, go = b * d, ao = (b * layers + l) * cells, lo = l * p.rows + b * cells, qo = (l * p.batch + b) * k;
        float[] att = p.attention, proj = p.proj, h = p.h, w = logitsWeight[l], logit = p.logit;
        // dα_s and the softmax Jacobian in double: da_s = α_s (dα_s − Σ α dα) sums to zero over the cells, and
        // everything downstream of the logits (dq, the logits bias) sums da's, so their rounding would not average out.
        double[] dalpha = p.dalpha;
        double mean = 0;
        for (int s = 0; s < cells; s++) {
            int vo = (b * cells + s) * d, r = b * cells + s;
            float alpha = att[ao + s];
            double dot = 0;
            for (int i = 0; i < d; i++) {
                float gi = g[go + i];
                dot += (double) gi * v[vo + i];
                dv[vo + i] += alpha * gi;
            }
            dalpha[r] = dot;
            mean += alpha * dot;
        }
        int dqo = b * k;
        // dq sums over the cells terms that cancel (Σ_s da_s = 0): in double, as the logits bias's Σ dz.
        java.util.Arrays.fill(acc, dqo, dqo + k, 0.0);
        double dzSum = 0;
        for (int s = 0; s < cells; s++) {
            int r = b * cells + s, po = r * kk + l * k;
            double da = att[ao + s] * (dalpha[r] - mean), a = logit[lo + s];
            float z = (float) (paper ? da : da * (1 - a * a));
            dz[r] = z;
            dzSum += z;
            for (int j = 0; j < k; j++) {
                float dh = z * w[j];
                if (paper) {
                    float hj = h[po + j], x = dh * (1f - hj * hj);
                    proj[po + j] = x;
                    acc[dqo + j] += x;
                } else {
                    float i = proj[po + j];
                    proj[po + j] = dh * (1f - i * i);
                }
            }
        }
        dzSums[b] = dzSum;
        if (paper) {
            for (int j = 0; j < k; j++) dq[dqo + j] = (float) acc[dqo + j];
        } else {
            // Σ_s dh_s = w_P·Σ_s dz_s: the public code's question side sees the cells' sum only.
            float[] q = p.q;
            for (int j = 0; j < k; j++) dq[dqo + j] = (float) (w[j] * dzSum) * (1f - q[qo + j] * q[qo + j]);
        }
    }
}
