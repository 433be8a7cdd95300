package io.bifuse.cuda;

import io.bifuse.Linear;
import io.bifuse.LinearGradients;
import io.bifuse.MlbAttention;
import io.bifuse.Precision;
import java.util.ArrayList;
import java.util.List;

/**
 * {@link MlbAttention} on one GPU: cuBLAS GEMMs in the op's {@link Precision} and the fused kernels of
 * {@code cuda/MlbAttention.cu} between them.
 *
 * <p>Forward, B samples of L cells ({@code J} joint, {@code G} glimpses):
 * <ol>
 *   <li>one GEMM {@code q·[W_q; W_f]ᵀ} → {@code B × (J + G·J)} (the question and question-fusion layers
 *       are stacked on the device: the question is read once), then {@code mlb_att_question}: bias + σ
 *       in place, so {@code q'} is computed once per sample;</li>
 *   <li>one GEMM over the {@code B·L} cell rows {@code v·W_vᵀ} → {@code B·L × J}: the only write of the
 *       joint tensor (bias and σ are applied by its readers, the question side is never tiled);</li>
 *   <li>{@code mlb_att_logits}: per cell, σ(pv + b_v) ⊙ q'[b] reduced against W_a to the G logits;</li>
 *   <li>{@code mlb_att_pool}: softmax over the cells and the glimpse-weighted sums v̂ ({@code B × G × Dv}),
 *       reading v once; it writes the attention maps too;</li>
 *   <li>the G glimpse projections as ONE strided-batched GEMM writing the {@code B × G·J} concatenation
 *       in place, {@code mlb_att_fuse} (bias + σ + ⊙ f), and the answer layer.</li>
 * </ol>
 * Backward recomputes all of that from {@code q, v} (nothing is saved between calls: the op is
 * stateless, as {@link CompactBilinearCuda}), then: {@code dz = g·W_o}; {@code mlb_att_fuse_backward}
 * (z for {@code dW_o}, {@code dp_u}, {@code dp_f}); the glimpse weight gradients (one GEMM each) and
 * {@code dv̂} (one strided-batched GEMM); {@code dα = dv̂·vᵀ} (a GEMM batched over samples);
 * {@code mlb_att_cells_backward} (softmax Jacobian, {@code dp_v} written over the cell projection in
 * place, and the per-sample sums over cells that give {@code dp_q}, {@code dW_a} and {@code db_v});
 * {@code dW_v = dp_vᵀ v}; {@code dv = αᵀ·dv̂} (batched) then {@code += dp_v·W_v} (beta 1);
 * {@code dq = [dp_q | dp_f]·[W_q; W_f]} (one GEMM, both paths); the question and fusion weight gradients.
 * The joint {@code B×L×J} tensor is written once in the forward and twice in the backward (its
 * recomputation, then its gradient in place); {@code db_a} is exactly zero (softmax invariance), and so is {@code db_v} when σ is the
 * identity: both are written as exact zeros (a memset), as {@link io.bifuse.reference.MlbAttentionReference} returns them.
 *
 * <p>Workspaces (and a cuBLAS handle bound to the stream) are made once per (stream, B, L) and kept
 * (the {@value #MAX_WORKSPACES} most recently used): about {@code 4(B·L·J + 2B·G·L + B·G·Dv + B(J + 2G·J))}
 * bytes, plus as much again on first backward. Calls on one stream are serialized on its workspace;
 * calls on different streams run concurrently. Every argument is checked before anything is queued.
 * Calls are asynchronous with respect to the host, except the {@code float[]} conveniences.
 */
public final class MlbAttentionCuda extends CudaOp<MlbAttention> implements MlbAttention.Backend {
    public static final KernelSpec QUESTION = new KernelSpec("mlb_att_question", "ppiii");
    public static final KernelSpec LOGITS = new KernelSpec("mlb_att_logits", "pppipppiiiii");
    public static final KernelSpec POOL = new KernelSpec("mlb_att_pool", "ppppiiii");
    public static final KernelSpec FUSE = new KernelSpec("mlb_att_fuse", "pppiiiii");
    public static final KernelSpec FUSE_BACKWARD = new KernelSpec("mlb_att_fuse_backward", "pppiipppiii");
    // One by-value struct parameter each (MlbAttention.cu's MlbAttCellsBackwardParams); the launches pass its fields flat, in order.
    public static final KernelSpec CELLS_BACKWARD = new KernelSpec("mlb_att_cells_backward", "{pppippppppiiiii}",
            "pv cell_bias qa ldq wa alpha dalpha dp tq dbv batch cells J G act");
    static final List<KernelSpec> KERNELS = List.of(QUESTION, LOGITS, POOL, FUSE, FUSE_BACKWARD, CELLS_BACKWARD);

    static final int MAX_WORKSPACES = 4;
    private static final int BLOCK = 256, CELLS_PER_BLOCK = 8, BWD_BLOCK = 128; // MLBA_BLOCK, MLBA_CELLS, MLBA_BWD_BLOCK

    /** One layer's gradient buffers on the device: {@code weight} {@code out × in}; {@code bias} {@code out}, null exactly when the layer has none. */
    public record LayerBuffers(DeviceMemory weight, DeviceMemory bias) {}

    /**
     * Where {@link #backward} writes: {@code dq} ({@code B × Dq}), {@code dv} ({@code B × L × Dv}) and one
     * {@link LayerBuffers} per layer, as {@link MlbAttention.Gradients}.
     */
    public record GradientBuffers(DeviceMemory dq, DeviceMemory dv, LayerBuffers question, LayerBuffers cells, LayerBuffers logits,
                                  List<LayerBuffers> glimpses, LayerBuffers questionFusion, LayerBuffers answer) {
        public GradientBuffers { glimpses = glimpses == null ? null : java.util.Collections.unmodifiableList(new ArrayList<>(glimpses)); }
    }

    private final int dq, dv, j, g, gj, qcols, outDim, act;
    private final DeviceBuffer questionWeight, questionBias, glimpseWeight, glimpseBias;
    private final LinearCuda cells, logits, answer;
    private final Workspaces<Shape, Workspace> workspaces = new Workspaces<>("MlbAttentionCuda", MAX_WORKSPACES);

    @Override Workspaces<?, ?> workspaces() { return workspaces; }

    /** This op on a GPU with FP32 GEMMs (the default; TF32 and BF16 only when passed explicitly). */
    public MlbAttentionCuda(MlbAttention op, CudaContext context) {
        this(op, context, Precision.FP32);
    }

    /**
     * This op on a GPU with its GEMMs in {@code precision} ({@link Precision#FP32} unless you accept
     * the documented error of the reduced modes). Uploads the weights once; close it to free them and
     * its workspaces.
     */
    public MlbAttentionCuda(MlbAttention op, CudaContext context, Precision precision) {
        super("an MlbAttention", op, context, precision, Needs.CUBLAS, MAX_WORKSPACES);
        MlbAttention.Weights w = op.weights();
        dq = op.dq();
        dv = op.dv();
        j = op.joint();
        g = op.glimpses();
        gj = g * j;
        qcols = j + gj;
        outDim = op.out();
        act = op.activation().code();
        try {
            questionWeight = own(DeviceBuffer.of(context, concat(w.question().weight(), w.questionFusion().weight())));
            questionBias = own(DeviceBuffer.of(context, concat(w.question().biasOrZeros(), w.questionFusion().biasOrZeros())));
            float[][] gw = new float[g][], gb = new float[g][];
            for (int i = 0; i < g; i++) {
                gw[i] = w.glimpses().get(i).weight();
                gb[i] = w.glimpses().get(i).biasOrZeros();
            }
            glimpseWeight = own(DeviceBuffer.of(context, concat(gw)));
            glimpseBias = own(DeviceBuffer.of(context, concat(gb)));
            cells = own(new LinearCuda(context, w.cells()));
            logits = own(new LinearCuda(context, w.logits()));
            answer = own(new LinearCuda(context, w.answer()));
        } catch (RuntimeException e) {
            throw failed(e);
        }
    }


    /**
     * The tensors {@link #loadWeights} takes, in the order of the op's gradient names without
     * {@code dq, dv}: {@code question, cells, logits, glimpses[0..G), questionFusion, answer}, each
     * {@code .weight} then {@code .bias} (a bias only where that layer has one).
     */
    public List<String> weightNames() { return DeviceWeights.names(weightEntries()); }

    /**
     * Replaces this op's device weights with tensors already on the device, each in its layer's
     * {@code nn.Linear} layout (see {@link DeviceWeights}): one device-to-device copy each (into its
     * slice where layers are stacked), queued on {@code stream}; every tensor is checked by name first.
     * Work queued on other streams that uses this op must have finished.
     */
    public void loadWeights(List<? extends DeviceMemory> tensors, CudaStream stream) {
        DeviceWeights.load(context, weightEntries(), tensors, stream);
    }

    private List<DeviceWeights.Entry> weightEntries() {
        MlbAttention.Weights w = op.weights();
        List<DeviceWeights.Entry> e = new ArrayList<>();
        DeviceWeights.add(e, "question", w.question(), questionWeight, questionBias);
        DeviceWeights.add(e, "cells", w.cells(), cells.weight(), cells.bias());
        DeviceWeights.add(e, "logits", w.logits(), logits.weight(), logits.bias());
        for (int i = 0; i < g; i++) {
            DeviceWeights.add(e, "glimpses[" + i + "]", w.glimpses().get(i), glimpseWeight.slice(4L * i * j * dv, 4L * j * dv),
                    glimpseBias.slice(4L * i * j, 4L * j));
        }
        DeviceWeights.add(e, "questionFusion", w.questionFusion(), questionWeight.slice(4L * j * dq, 4L * gj * dq), questionBias.slice(4L * j, 4L * gj));
        DeviceWeights.add(e, "answer", w.answer(), answer.weight(), answer.bias());
        return e;
    }

    /**
     * {@code out (B × Out) = op(q (B × Dq), v (B × L × Dv))}, and the attention maps into
     * {@code attention} ({@code B × G × L}) unless it is null; queued on {@code stream}.
     */
    public void forward(DeviceMemory q, DeviceMemory v, DeviceMemory out, DeviceMemory attention, int batch, int cells, CudaStream stream) {
        checkSizes(batch, cells);
        DeviceArgs.memory("q", q, batch, dq);
        DeviceArgs.memory("v", v, (long) batch * cells, dv);
        DeviceArgs.memory("out", out, batch, outDim);
        if (attention != null) DeviceArgs.memory("attention", attention, (long) batch * g, cells);
        DeviceArgs.stream(stream);
        inWorkspace(stream, batch, cells, w -> {
            attend(w, q, v, attention == null ? w.alpha : attention, batch, cells, stream);
            context.launch(FUSE, DeviceArgs.grid(context, (long) batch * gj, BLOCK), 1, BLOCK, 0, stream, w.up, glimpseBias, w.qp, qcols, j, batch, gj, act);
            answer.forward(w.blas, precision, DeviceMatrix.of("up", w.up, batch, gj), DeviceMatrix.of("out", out, batch, outDim), stream);
        });
    }

    /** Everything up to the glimpse projections: qp = [q' | f], pv, logits, alpha, v̂, up (pre-activation). */
    private void attend(Workspace w, DeviceMemory q, DeviceMemory v, DeviceMemory alpha, int batch, int cells, CudaStream stream) {
        CublasHandle blas = w.blas;
        blas.gemm(precision, false, true, batch, qcols, dq, 1f, q, dq, questionWeight, dq, 0f, w.qp, qcols);
        context.launch(QUESTION, DeviceArgs.grid(context, (long) batch * qcols, BLOCK), 1, BLOCK, 0, stream, w.qp, questionBias, batch, qcols, act);
        this.cells.project(blas, precision, DeviceMatrix.of("v", v, batch * cells, dv), DeviceMatrix.of("pv", w.pv, batch * cells, j));
        long groups = (long) batch * ((cells + CELLS_PER_BLOCK - 1) / CELLS_PER_BLOCK);
        context.launch(LOGITS, units(groups), 1, BLOCK, 0, stream, w.pv, this.cells.bias(), w.qp, qcols, logits.weight(), logits.bias(),
                w.logits, batch, cells, j, g, act);
        long chunks = (long) batch * ((dv + BLOCK - 1) / BLOCK);
        context.launch(POOL, units(chunks), 1, BLOCK, 0, stream, w.logits, v, alpha, w.vhat, batch, cells, dv, g);
        // up[:, g·J + j] = v̂_g · W_gᵀ for every glimpse at once: A_g = v̂[:, g, :], B_g = W_g, C_g = up's column block g.
        blas.gemmStridedBatched(precision, false, true, batch, j, dv, 1f, w.vhat, g * dv, dv, glimpseWeight, dv, (long) j * dv,
                0f, w.up, gj, j, g);
    }

    /**
     * Every gradient ({@code grads}) from {@code gradOut = ∂L/∂out (B × Out)} and the forward's inputs,
     * queued on {@code stream}. Gradients are written, not accumulated; {@code gradOut} is only read.
     */
    public void backward(DeviceMemory q, DeviceMemory v, DeviceMemory gradOut, GradientBuffers grads, int batch, int cells, CudaStream stream) {
        checkSizes(batch, cells);
        DeviceArgs.memory("q", q, batch, dq);
        DeviceArgs.memory("v", v, (long) batch * cells, dv);
        DeviceArgs.memory("gradOut", gradOut, batch, outDim);
        checkGradients(grads, batch, cells);
        DeviceArgs.stream(stream);
        inWorkspace(stream, batch, cells, w -> {
            w.ensureBackward();
            CublasHandle blas = w.blas;
            Precision p = precision;
            attend(w, q, v, w.alpha, batch, cells, stream);
            DeviceMatrix go = DeviceMatrix.of("gradOut", gradOut, batch, outDim);
            answer.backwardInput(blas, p, go, 0f, DeviceMatrix.of("dz", w.dz, batch, gj));
            context.launch(FUSE_BACKWARD, DeviceArgs.grid(context, (long) batch * gj, BLOCK), 1, BLOCK, 0, stream, w.up, glimpseBias, w.qp, qcols, j, w.dz, w.z, w.dp,
                    batch, gj, act);
            answer.backwardParameters(blas, p, go, DeviceMatrix.of("z", w.z, batch, gj), grads.answer.weight(), grads.answer.bias(), stream);
            DeviceMatrix up = DeviceMatrix.of("up", w.up, batch, gj);
            // glimpses: w.up now holds dp_u (B × G·J)
            for (int i = 0; i < g; i++) {
                DeviceMemory dpu = floats(w.up, (long) i * j), vh = floats(w.vhat, (long) i * dv);
                LayerBuffers lb = grads.glimpses.get(i);
                blas.gemm(p, true, false, j, dv, batch, 1f, dpu, gj, vh, g * dv, 0f, lb.weight(), dv);
                if (lb.bias() != null) LinearCuda.biasGradient(context, up.columns(i * j, j), lb.bias(), stream);
            }
            blas.gemmStridedBatched(p, false, false, batch, dv, j, 1f, w.up, gj, j, glimpseWeight, dv, (long) j * dv, 0f, w.vhat2, g * dv, dv, g);
            // dα[b] (G × L) = dv̂[b] · v[b]ᵀ, batched over samples
            blas.gemmStridedBatched(p, false, true, g, cells, dv, 1f, w.vhat2, dv, (long) g * dv, v, dv, (long) cells * dv,
                    0f, w.dalpha, cells, (long) g * cells, batch);
            long chunks = (long) batch * ((j + BWD_BLOCK - 1) / BWD_BLOCK);
            context.launch(CELLS_BACKWARD, units(chunks), 1, BWD_BLOCK, 0, stream, w.pv, this.cells.bias(), w.qp, qcols, logits.weight(),
                    w.alpha, w.dalpha, w.dp, w.tq, w.dbv, batch, cells, j, g, act);
            // w.pv now holds dp_v
            int rows = batch * cells;
            DeviceMatrix dpv = DeviceMatrix.of("pv", w.pv, rows, j);
            this.cells.backwardParameters(blas, p, dpv, DeviceMatrix.of("v", v, rows, dv), grads.cells.weight(), null, stream);
            if (grads.cells.bias() != null) {
                // With σ = identity the sum over cells cancels exactly (softmax invariance, see MlbAttention): write the exact zeros.
                if (act == io.bifuse.Activation.NONE.code()) zero(grads.cells.bias(), j, stream);
                else LinearCuda.biasGradient(context, DeviceMatrix.of("dbv", w.dbv, batch, j), grads.cells.bias(), stream);
            }
            // dv = αᵀ·dv̂ per sample, then += dp_v·W_v
            blas.gemmStridedBatched(p, true, false, cells, dv, g, 1f, w.alpha, cells, (long) g * cells, w.vhat2, dv, (long) g * dv,
                    0f, grads.dv, dv, (long) cells * dv, batch);
            this.cells.backwardInput(blas, p, dpv, 1f, DeviceMatrix.of("grads.dv", grads.dv, rows, dv));
            LinearCuda.biasGradient(context, DeviceMatrix.of("tq", w.tq, batch, gj), grads.logits.weight(), stream);
            if (grads.logits.bias() != null) zero(grads.logits.bias(), g, stream);
            // dq = [dp_q | dp_f] · [W_q; W_f]: both paths in one GEMM
            blas.gemm(p, false, false, batch, dq, qcols, 1f, w.dp, qcols, questionWeight, dq, 0f, grads.dq, dq);
            blas.gemm(p, true, false, j, dq, batch, 1f, w.dp, qcols, q, dq, 0f, grads.question.weight(), dq);
            DeviceMatrix dp = DeviceMatrix.of("dp", w.dp, batch, qcols);
            if (grads.question.bias() != null) LinearCuda.biasGradient(context, dp.columns(0, j), grads.question.bias(), stream);
            DeviceMemory dpf = floats(w.dp, j);
            blas.gemm(p, true, false, gj, dq, batch, 1f, dpf, qcols, q, dq, 0f, grads.questionFusion.weight(), dq);
            if (grads.questionFusion.bias() != null) LinearCuda.biasGradient(context, dp.columns(j, gj), grads.questionFusion.bias(), stream);
        });
    }

    /** Host convenience: copies in, runs on a private stream, copies out. */
    public float[] forward(float[] q, float[] v, int batch, int cells) {
        return forwardWithAttention(q, v, batch, cells).out();
    }

    /**
     * Host convenience: the output and the attention maps ({@code B × G × L}), on a private stream of
     * this op's (kept, with its buffers, for the next call).
     */
    public MlbAttention.Result forwardWithAttention(float[] q, float[] v, int batch, int cells) {
        op.checkInputs(q, v, batch, cells);
        return host.run(lane -> {
            DeviceMemory dqb = lane.in(q), dvb = lane.in(v);
            DeviceMemory out = lane.floats((long) batch * outDim), att = lane.floats((long) batch * g * cells);
            forward(dqb, dvb, out, att, batch, cells, lane.stream());
            return new MlbAttention.Result(lane.read(out), lane.read(att));
        });
    }

    /** Host convenience: as {@link #forwardWithAttention}. */
    public MlbAttention.Gradients backward(float[] q, float[] v, float[] gradOut, int batch, int cells) {
        op.checkInputs(q, v, batch, cells);
        io.bifuse.CompactBilinear.checkLength("gradOut", gradOut, batch, outDim);
        return host.run(lane -> {
            DeviceMemory dqb = lane.in(q), dvb = lane.in(v), dg = lane.in(gradOut);
            OwnedGradients grads = new OwnedGradients(batch, cells, lane::floats); // the lane's buffers: nothing to close
            backward(dqb, dvb, dg, grads.buffers(), batch, cells, lane.stream());
            return grads.read(lane.stream());
        });
    }

    /** Device buffers for every gradient of a {@code (B, L)} call, owned by the result (close it to free them). */
    public OwnedGradients allocateGradients(int batch, int cells) {
        checkSizes(batch, cells);
        return new OwnedGradients(batch, cells, null);
    }

    /** Gradient buffers allocated by {@link #allocateGradients}: poison them, pass {@link #buffers()}, read them back. */
    public final class OwnedGradients extends GradientSet<GradientBuffers, MlbAttention.Gradients> {
        private OwnedGradients(int batch, int cells, java.util.function.LongFunction<DeviceMemory> alloc) {
            super(context, alloc);
            MlbAttention.Weights w = op.weights();
            layOut(() -> {
                DeviceMemory gq = floats((long) batch * dq), gv = floats((long) batch * cells * dv);
                LayerBuffers question = layer(w.question()), cellsL = layer(w.cells()), logitsL = layer(w.logits());
                List<LayerBuffers> gl = new ArrayList<>();
                for (Linear l : w.glimpses()) gl.add(layer(l));
                return new GradientBuffers(gq, gv, question, cellsL, logitsL, gl, layer(w.questionFusion()), layer(w.answer()));
            });
        }

        @Override public MlbAttention.Gradients read(CudaStream stream) {
            GradientBuffers b = buffers();
            List<LinearGradients> gl = new ArrayList<>();
            for (int i = 0; i < g; i++) gl.add(read(b.glimpses().get(i), stream));
            return new MlbAttention.Gradients(read(b.dq(), stream), read(b.dv(), stream), read(b.question(), stream), read(b.cells(), stream),
                    read(b.logits(), stream), gl, read(b.questionFusion(), stream), read(b.answer(), stream));
        }
    }

    /** Exact zeros into the first {@code floats} floats of {@code m}, queued on {@code stream}. */
    private static void zero(DeviceMemory m, int floats, CudaStream stream) {
        DeviceBuffer.fillAsync(m, 0f, floats, stream);
    }

    private int units(long n) { return DeviceArgs.units(context, n); }

    private static DeviceMemory floats(DeviceMemory m, long offsetFloats) { return DeviceArgs.from(m, offsetFloats); }

    private static void checkSizes(int batch, int cells) { DeviceArgs.batchCells(batch, cells); }

    private void checkGradients(GradientBuffers grads, int batch, int cells) {
        if (grads == null) throw new IllegalArgumentException("grads: expected GradientBuffers, got null");
        DeviceArgs.memory("grads.dq", grads.dq(), batch, dq);
        DeviceArgs.memory("grads.dv", grads.dv(), (long) batch * cells, dv);
        MlbAttention.Weights w = op.weights();
        checkLayer("grads.question", grads.question(), w.question());
        checkLayer("grads.cells", grads.cells(), w.cells());
        checkLayer("grads.logits", grads.logits(), w.logits());
        if (grads.glimpses() == null || grads.glimpses().size() != g) {
            throw new IllegalArgumentException("grads.glimpses: expected " + g + " layers' buffers, got "
                    + (grads.glimpses() == null ? "null" : grads.glimpses().size()));
        }
        for (int i = 0; i < g; i++) checkLayer("grads.glimpses[" + i + "]", grads.glimpses().get(i), w.glimpses().get(i));
        checkLayer("grads.questionFusion", grads.questionFusion(), w.questionFusion());
        checkLayer("grads.answer", grads.answer(), w.answer());
    }

    /** Checks one layer's gradient buffers against the layer, by name (shared with McbAttentionCuda). */
    static void checkLayer(String name, LayerBuffers b, Linear l) {
        if (b == null) throw new IllegalArgumentException(name + ": expected LayerBuffers, got null");
        DeviceArgs.memory(name + ".weight", b.weight(), l.out(), l.in());
        if (l.hasBias()) DeviceArgs.memory(name + ".bias", b.bias(), 1, l.out());
        else if (b.bias() != null) throw new IllegalArgumentException(name + ".bias: expected null (the layer has no bias), got device memory");
    }

    /** Runs {@code body} in this op's workspace for (stream, shape): {@link Workspaces#run}. */
    private void inWorkspace(CudaStream stream, int batch, int cells, java.util.function.Consumer<Workspace> body) {
        workspaces.run(stream, new Shape(batch, cells), s -> new Workspace(s, batch, cells), body);
    }

    private static float[] concat(float[]... parts) {
        int n = 0;
        for (float[] p : parts) n = Math.addExact(n, p.length);
        float[] r = new float[n];
        int at = 0;
        for (float[] p : parts) {
            System.arraycopy(p, 0, r, at, p.length);
            at += p.length;
        }
        return r;
    }

    private record Shape(int batch, int cells) {}

    /** Buffers and the cuBLAS handle for one (stream, B, L). */
    private final class Workspace extends Workspaces.Workspace {
        final int batch, cells;
        final CublasHandle blas;
        final DeviceBuffer qp, pv, logits, alpha, vhat, up;
        DeviceBuffer dz, z, dp, vhat2, dalpha, tq, dbv; // made on first backward

        Workspace(CudaStream stream, int batch, int cells) {
            super(MlbAttentionCuda.this.context, stream);
            this.batch = batch;
            this.cells = cells;
            try {
                blas = own(new CublasHandle(context, stream));
                qp = alloc((long) batch * qcols);
                pv = alloc((long) batch * cells * j);
                logits = alloc((long) batch * g * cells);
                alpha = alloc((long) batch * g * cells);
                vhat = alloc((long) batch * g * dv);
                up = alloc((long) batch * gj);
            } catch (RuntimeException e) {
                close();
                throw e;
            }
        }

        void ensureBackward() {
            if (dz != null) return;
            dz = alloc((long) batch * gj);
            z = alloc((long) batch * gj);
            dp = alloc((long) batch * qcols);
            vhat2 = alloc((long) batch * g * dv);
            dalpha = alloc((long) batch * g * cells);
            tq = alloc((long) batch * gj);
            dbv = alloc((long) batch * j);
        }

        private DeviceBuffer alloc(long floats) { return own(DeviceBuffer.allocateFloats(context, floats)); }
    }
}
