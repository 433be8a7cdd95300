package io.bifuse.cuda;

import io.bifuse.Precision;
import io.bifuse.StackedAttention;
import java.util.ArrayList;
import java.util.List;

/**
 * {@link StackedAttention} on one GPU: cuBLAS GEMMs in the op's {@link Precision} and the fused kernels of
 * {@code cuda/StackedAttention.cu} between them.
 *
 * <p>Forward, B samples of L cells, K layers of width k:
 * <ol>
 *   <li>ONE GEMM over the {@code B·L} cell rows {@code v·[W_I⁰; …; W_I^{K−1}]ᵀ} → {@code B·L × K·k}: the image
 *       side does not depend on {@code u}, so every layer's projection comes from one pass over v (the
 *       image layers are stacked on the device);</li>
 *   <li>per layer: the GEMM {@code u_l·W_Qᵀ} → {@code B × k}, then {@code san_layer}, one block per sample:
 *       the question side (bias, and tanh in the public code's placement) in place, the per-cell hidden
 *       units and logits (never stored: only the {@code B × L} logits are written), the softmax over the
 *       cells, the attention map and {@code u_{l+1} = u_l + Σ_s α_s v_s}.</li>
 * </ol>
 * Backward recomputes all of that from {@code u, v} (nothing is saved between calls: the op is
 * stateless, as {@link MlbAttentionCuda}), then per layer from the last: {@code san_layer_backward}
 * (dα, the softmax Jacobian, dp written over the layer's image projection in place, and per sample the
 * question side's gradient and the rows of {@code dw_P}); {@code g_l = g_{l+1} + dq·W_Q} (one GEMM,
 * beta 1 on the copied residual); the layer's weight gradients {@code dW_Q = dqᵀ u_l},
 * {@code dW_I = dpᵀ v} (one GEMM each) and its bias gradients (fixed-order column sums). Last,
 * {@code san_cells_backward} writes {@code dv = Σ_l α_l g_{l+1}} and one GEMM adds every layer's
 * {@code dp·W_I} (stacked, beta 1). In the paper's placement {@code db_P} is exactly zero (softmax
 * invariance) and written as exact zeros (a memset), as {@link io.bifuse.reference.StackedAttentionReference}
 * returns it. No atomics: reruns give the same bits.
 *
 * <p>Workspaces (and a cuBLAS handle bound to the stream) are made once per (stream, B, L) and kept
 * (the {@value #MAX_WORKSPACES} most recently used): about {@code 4(B·L·K·k + 2B·K·L + B·K·k + B·K·d)} bytes,
 * plus {@code 4(B·L·K + 2B·K·k + B·K·d)} on first backward. Calls on one stream are serialized on its
 * workspace; calls on different streams run concurrently. Every argument is checked before anything is
 * queued. Calls are asynchronous with respect to the host, except the {@code float[]} conveniences.
 */
public final class StackedAttentionCuda extends CudaOp<StackedAttention> implements StackedAttention.Backend {
    // One by-value struct parameter each (StackedAttention.cu's SanLayerParams, SanLayerBackwardParams); the launches pass its fields flat, in order.
    public static final KernelSpec LAYER = new KernelSpec("san_layer", "{pppppppppppiiiiiiii}",
            "pi image_bias qp question_bias wp bp v u_in u_out logits alpha ldpi batch cells d k layers layer placement");
    public static final KernelSpec LAYER_BACKWARD = new KernelSpec("san_layer_backward", "{ppppppppppppiiiiiiii}",
            "pi image_bias q wp v logits alpha g g_prev dz dq tw ldpi batch cells d k layers layer placement");
    public static final KernelSpec CELLS_BACKWARD = new KernelSpec("san_cells_backward", "pppiiii");
    static final List<KernelSpec> KERNELS = List.of(LAYER, LAYER_BACKWARD, CELLS_BACKWARD);

    static final int MAX_WORKSPACES = 4;
    private static final int BLOCK = 256; // SAN_BLOCK

    /**
     * Where {@link #backward} writes: {@code du} ({@code B × d}), {@code dv} ({@code B × L × d}) and per
     * layer the image, question and logits layers' {@link MlbAttentionCuda.LayerBuffers}, as
     * {@link StackedAttention.Gradients}.
     */
    public record GradientBuffers(DeviceMemory du, DeviceMemory dv, List<LayerBuffers> layers) {
        public GradientBuffers { layers = layers == null ? null : java.util.Collections.unmodifiableList(new ArrayList<>(layers)); }
    }

    /** One attention layer's gradient buffers. */
    public record LayerBuffers(MlbAttentionCuda.LayerBuffers image, MlbAttentionCuda.LayerBuffers question, MlbAttentionCuda.LayerBuffers logits) {}

    private final int d, k, kk, kcols, placement;
    private final DeviceBuffer imageWeight, imageBias, questionWeight, questionBias, logitsWeight, logitsBias;
    private final Workspaces<Shape, Workspace> workspaces = new Workspaces<>("StackedAttentionCuda", MAX_WORKSPACES);

    @Override Workspaces<?, ?> workspaces() { return workspaces; }

    /** This op on a GPU with FP32 GEMMs (the default; TF32 and BF16 only when passed explicitly). */
    public StackedAttentionCuda(StackedAttention op, CudaContext context) {
        this(op, context, Precision.FP32);
    }

    /**
     * This op on a GPU with its GEMMs in {@code precision} ({@link Precision#FP32} unless you accept the
     * documented error of the reduced modes). Uploads the weights once, each kind stacked over the
     * layers; close it to free them and its workspaces.
     */
    public StackedAttentionCuda(StackedAttention op, CudaContext context, Precision precision) {
        super("a StackedAttention", op, context, precision, Needs.CUBLAS, MAX_WORKSPACES);
        d = op.dim();
        k = op.width();
        kk = op.layers();
        kcols = Math.multiplyExact(kk, k);
        placement = op.placement().code();
        List<StackedAttention.Layer> ls = op.weights().layers();
        try {
            imageWeight = own(DeviceBuffer.of(context, stack(ls, l -> l.image().weight())));
            imageBias = own(DeviceBuffer.of(context, stack(ls, l -> l.image().biasOrZeros())));
            questionWeight = own(DeviceBuffer.of(context, stack(ls, l -> l.question().weight())));
            questionBias = own(DeviceBuffer.of(context, stack(ls, l -> l.question().biasOrZeros())));
            logitsWeight = own(DeviceBuffer.of(context, stack(ls, l -> l.logits().weight())));
            logitsBias = own(DeviceBuffer.of(context, stack(ls, l -> l.logits().biasOrZeros())));
        } catch (RuntimeException e) {
            throw failed(e);
        }
    }

    /**
     * The tensors {@link #loadWeights} takes, in the order of the op's gradient names without
     * {@code du, dv}: per layer {@code layers[l].image, .question, .logits}, each {@code .weight} then
     * {@code .bias} (a bias only where that layer has one).
     */
    public List<String> weightNames() { return DeviceWeights.names(weightEntries()); }

    /**
     * Replaces this op's device weights with tensors already on the device, each in its layer's
     * {@code nn.Linear} layout (see {@link DeviceWeights}): one device-to-device copy each into its slice
     * of the stacked layout, queued on {@code stream}; every tensor is checked by name first. Work queued
     * on other streams that uses this op must have finished.
     */
    public void loadWeights(List<? extends DeviceMemory> tensors, CudaStream stream) {
        DeviceWeights.load(context, weightEntries(), tensors, stream);
    }

    private List<DeviceWeights.Entry> weightEntries() {
        List<DeviceWeights.Entry> e = new ArrayList<>();
        for (int l = 0; l < kk; l++) {
            StackedAttention.Layer x = op.weights().layers().get(l);
            String n = "layers[" + l + "]";
            DeviceWeights.add(e, n + ".image", x.image(), imageWeight.slice(4L * l * k * d, 4L * k * d), imageBias.slice(4L * l * k, 4L * k));
            DeviceWeights.add(e, n + ".question", x.question(), questionWeight.slice(4L * l * k * d, 4L * k * d), questionBias.slice(4L * l * k, 4L * k));
            DeviceWeights.add(e, n + ".logits", x.logits(), logitsWeight.slice(4L * l * k, 4L * k), logitsBias.slice(4L * l, 4));
        }
        return e;
    }

    /**
     * {@code out (B × d) = op(u (B × d), v (B × L × d))}, and the attention maps into {@code attention}
     * ({@code B × K × L}) unless it is null; queued on {@code stream}.
     */
    public void forward(DeviceMemory u, DeviceMemory v, DeviceMemory out, DeviceMemory attention, int batch, int cells, CudaStream stream) {
        checkSizes(batch, cells);
        DeviceArgs.memory("u", u, batch, d);
        DeviceArgs.memory("v", v, (long) batch * cells, d);
        DeviceArgs.memory("out", out, batch, d);
        if (attention != null) DeviceArgs.memory("attention", attention, (long) batch * kk, cells);
        DeviceArgs.stream(stream);
        inWorkspace(stream, batch, cells, w -> attend(w, u, v, out, attention == null ? w.alpha : attention, batch, cells, stream));
    }

    /**
     * Every layer: the stacked image GEMM, then per layer the question GEMM and {@code san_layer}. Layer
     * {@code l}'s output goes to slot {@code l} of {@code w.us} ({@code l < K − 1}) and the last to {@code out}.
     */
    private void attend(Workspace w, DeviceMemory u, DeviceMemory v, DeviceMemory out, DeviceMemory alpha, int batch, int cells, CudaStream stream) {
        CublasHandle blas = w.blas;
        int rows = batch * cells;
        blas.gemm(precision, false, true, rows, kcols, d, 1f, v, d, imageWeight, d, 0f, w.pi, kcols);
        for (int l = 0; l < kk; l++) {
            DeviceMemory uin = l == 0 ? u : w.u(l - 1), uout = l == kk - 1 ? out : w.u(l), qp = w.q(l);
            blas.gemm(precision, false, true, batch, k, d, 1f, uin, d, floats(questionWeight, (long) l * k * d), d, 0f, qp, k);
            context.launch(LAYER, DeviceArgs.rowGrid(batch), 1, BLOCK, 0, stream, floats(w.pi, (long) l * k), floats(imageBias, (long) l * k), qp,
                    floats(questionBias, (long) l * k), floats(logitsWeight, (long) l * k), floats(logitsBias, l), v, uin, uout, w.logits, alpha,
                    kcols, batch, cells, d, k, kk, l, placement);
        }
    }

    /**
     * Every gradient ({@code grads}) from {@code gradOut = ∂L/∂u_K (B × d)} and the forward's inputs, queued
     * on {@code stream}. Gradients are written, not accumulated; {@code gradOut} is only read.
     */
    public void backward(DeviceMemory u, DeviceMemory v, DeviceMemory gradOut, GradientBuffers grads, int batch, int cells, CudaStream stream) {
        checkSizes(batch, cells);
        DeviceArgs.memory("u", u, batch, d);
        DeviceArgs.memory("v", v, (long) batch * cells, d);
        DeviceArgs.memory("gradOut", gradOut, batch, d);
        checkGradients(grads, batch, cells);
        DeviceArgs.stream(stream);
        inWorkspace(stream, batch, cells, w -> {
            w.ensureBackward();
            CublasHandle blas = w.blas;
            Precision p = precision;
            int rows = batch * cells;
            // The recomputed forward's output goes to the last slot of w.us, which nothing else uses.
            attend(w, u, v, w.u(kk - 1), w.alpha, batch, cells, stream);
            // w.gs slot l holds dL/du_{l+1}: the last is gradOut, copied so that san_cells_backward reads one layout.
            DeviceBuffer.copyAsync(w.g(kk - 1), gradOut, 4L * batch * d, stream);
            for (int l = kk - 1; l >= 0; l--) {
                DeviceMemory gPrev = l == 0 ? grads.du() : w.g(l - 1), dz = w.dz(l), dq = w.dq(l), tw = w.tw(l);
                context.launch(LAYER_BACKWARD, DeviceArgs.rowGrid(batch), 1, BLOCK, 0, stream, floats(w.pi, (long) l * k), floats(imageBias, (long) l * k),
                        w.q(l), floats(logitsWeight, (long) l * k), v, w.logits, w.alpha, w.g(l), gPrev, dz, dq, tw, kcols, batch, cells, d, k, kk, l,
                        placement);
                // w.pi's column block l now holds dp, the image side's pre-activation gradient
                blas.gemm(p, false, false, batch, d, k, 1f, dq, k, floats(questionWeight, (long) l * k * d), d, 1f, gPrev, d);
                LayerBuffers lb = grads.layers().get(l);
                DeviceMemory uin = l == 0 ? u : w.u(l - 1);
                blas.gemm(p, true, false, k, d, batch, 1f, dq, k, uin, d, 0f, lb.question().weight(), d);
                if (lb.question().bias() != null) LinearCuda.biasGradient(context, DeviceMatrix.of("dq", dq, batch, k), lb.question().bias(), stream);
                DeviceMemory dp = floats(w.pi, (long) l * k);
                blas.gemm(p, true, false, k, d, rows, 1f, dp, kcols, v, d, 0f, lb.image().weight(), d);
                if (lb.image().bias() != null) {
                    LinearCuda.biasGradient(context, DeviceMatrix.of("dp", w.pi, rows, kcols).columns(l * k, k), lb.image().bias(), stream);
                }
                LinearCuda.biasGradient(context, DeviceMatrix.of("tw", tw, batch, k), lb.logits().weight(), stream);
                if (lb.logits().bias() != null) {
                    // The paper's b_P shifts every logit alike: its gradient cancels exactly (see StackedAttention), written as exact zeros.
                    if (placement == StackedAttention.Placement.PAPER.code()) DeviceBuffer.fillAsync(lb.logits().bias(), 0f, 1, stream);
                    else LinearCuda.biasGradient(context, DeviceMatrix.of("dz", dz, rows, 1), lb.logits().bias(), stream);
                }
            }
            context.launch(CELLS_BACKWARD, DeviceArgs.grid(context, (long) rows * d, BLOCK), 1, BLOCK, 0, stream, w.alpha, w.gs, grads.dv(),
                    batch, cells, d, kk);
            blas.gemm(p, false, false, rows, d, kcols, 1f, w.pi, kcols, imageWeight, d, 1f, grads.dv(), d);
        });
    }

    /** Host convenience: copies in, runs on a private stream, copies out. */
    @Override public float[] forward(float[] u, float[] v, int batch, int cells) {
        return forwardWithAttention(u, v, batch, cells).out();
    }

    /**
     * Host convenience: the output and the attention maps ({@code B × K × L}), on a private stream of
     * this op's (kept, with its buffers, for the next call).
     */
    @Override public StackedAttention.Result forwardWithAttention(float[] u, float[] v, int batch, int cells) {
        op.checkInputs(u, v, batch, cells);
        return host.run(lane -> {
            DeviceMemory du = lane.in(u), dv = lane.in(v);
            DeviceMemory out = lane.floats((long) batch * d), att = lane.floats((long) batch * kk * cells);
            forward(du, dv, out, att, batch, cells, lane.stream());
            return new StackedAttention.Result(lane.read(out), lane.read(att));
        });
    }

    /** Host convenience: as {@link #forwardWithAttention}. */
    @Override public StackedAttention.Gradients backward(float[] u, float[] v, float[] gradOut, int batch, int cells) {
        op.checkInputs(u, v, batch, cells);
        io.bifuse.CompactBilinear.checkLength("gradOut", gradOut, batch, d);
        return host.run(lane -> {
            DeviceMemory du = lane.in(u), dv = lane.in(v), dg = lane.in(gradOut);
            OwnedGradients grads = new OwnedGradients(batch, cells, lane::floats); // the lane's buffers: nothing to close
            backward(du, dv, dg, grads.buffers(), batch, cells, lane.stream());
            return grads.read(lane.stream());
        });
    }

    /** Device buffers for every gradient of a {@code (B, L)} call, owned by the result (close it to free them). */
    public OwnedGradients allocateGradients(int batch, int cells) {
        checkSizes(batch, cells);
        return new OwnedGradients(batch, cells, null);
    }

    /** Gradient buffers allocated by {@link #allocateGradients}: poison them, pass {@link #buffers()}, read them back. */
    public final class OwnedGradients extends GradientSet<GradientBuffers, StackedAttention.Gradients> {
        private OwnedGradients(int batch, int cells, java.util.function.LongFunction<DeviceMemory> alloc) {
            super(context, alloc);
            layOut(() -> {
                DeviceMemory gu = floats((long) batch * d), gv = floats((long) batch * cells * d);
                List<LayerBuffers> ls = new ArrayList<>();
                for (StackedAttention.Layer l : op.weights().layers()) ls.add(new LayerBuffers(layer(l.image()), layer(l.question()), layer(l.logits())));
                return new GradientBuffers(gu, gv, ls);
            });
        }

        @Override public StackedAttention.Gradients read(CudaStream stream) {
            GradientBuffers b = buffers();
            List<StackedAttention.LayerGradients> ls = new ArrayList<>();
            for (LayerBuffers l : b.layers()) ls.add(new StackedAttention.LayerGradients(read(l.image(), stream), read(l.question(), stream),
                    read(l.logits(), stream)));
            return new StackedAttention.Gradients(read(b.du(), stream), read(b.dv(), stream), ls);
        }
    }

    private static DeviceMemory floats(DeviceMemory m, long offsetFloats) { return DeviceArgs.from(m, offsetFloats); }

    private static void checkSizes(int batch, int cells) { DeviceArgs.batchCells(batch, cells); }

    private void checkGradients(GradientBuffers grads, int batch, int cells) {
        if (grads == null) throw new IllegalArgumentException("grads: expected GradientBuffers, got null");
        DeviceArgs.memory("grads.du", grads.du(), batch, d);
        DeviceArgs.memory("grads.dv", grads.dv(), (long) batch * cells, d);
        if (grads.layers() == null || grads.layers().size() != kk) {
            throw new IllegalArgumentException("grads.layers: expected " + kk + " layers' buffers, got " + (grads.layers() == null ? "null" : grads.layers().size()));
        }
        for (int l = 0; l < kk; l++) {
            String n = "grads.layers[" + l + "]";
            LayerBuffers b = grads.layers().get(l);
            if (b == null) throw new IllegalArgumentException(n + ": expected LayerBuffers, got null");
            StackedAttention.Layer x = op.weights().layers().get(l);
            MlbAttentionCuda.checkLayer(n + ".image", b.image(), x.image());
            MlbAttentionCuda.checkLayer(n + ".question", b.question(), x.question());
            MlbAttentionCuda.checkLayer(n + ".logits", b.logits(), x.logits());
        }
    }

    /** Runs {@code body} in this op's workspace for (stream, shape): {@link Workspaces#run}. */
    private void inWorkspace(CudaStream stream, int batch, int cells, java.util.function.Consumer<Workspace> body) {
        workspaces.run(stream, new Shape(batch, cells), s -> new Workspace(s, batch, cells), body);
    }

    /** One kind of tensor of every layer, concatenated in layer order (the stacked device layout). */
    private static float[] stack(List<StackedAttention.Layer> layers, java.util.function.Function<StackedAttention.Layer, float[]> part) {
        List<float[]> parts = new ArrayList<>();
        int n = 0;
        for (StackedAttention.Layer l : layers) {
            float[] p = part.apply(l);
            parts.add(p);
            n = Math.addExact(n, p.length);
        }
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
        /** pi: B·L × K·k; qs: K slots of B × k; us: K slots of B × d (u_1 … u_{K−1}, then the recomputed output); logits, alpha: B × K × L. */
        final DeviceBuffer pi, qs, us, logits, alpha;
        DeviceBuffer gs, dzs, dqs, tws; // made on first backward: K slots each of B × d, B × L, B × k, B × k

        Workspace(CudaStream stream, int batch, int cells) {
            super(StackedAttentionCuda.this.context, stream);
            this.batch = batch;
            this.cells = cells;
            try {
                blas = own(new CublasHandle(context, stream));
                pi = alloc((long) batch * cells * kcols);
                qs = alloc((long) kk * batch * k);
                us = alloc((long) kk * batch * d);
                logits = alloc((long) batch * kk * cells);
                alpha = alloc((long) batch * kk * cells);
            } catch (RuntimeException e) {
                close();
                throw e;
            }
        }

        void ensureBackward() {
            if (gs != null) return;
            gs = alloc((long) kk * batch * d);
            dzs = alloc((long) kk * batch * cells);
            dqs = alloc((long) kk * batch * k);
            tws = alloc((long) kk * batch * k);
        }

        DeviceMemory q(int l) { return slot(qs, l, (long) batch * k); }
        DeviceMemory u(int l) { return slot(us, l, (long) batch * d); }
        DeviceMemory g(int l) { return slot(gs, l, (long) batch * d); }
        DeviceMemory dz(int l) { return slot(dzs, l, (long) batch * cells); }
        DeviceMemory dq(int l) { return slot(dqs, l, (long) batch * k); }
        DeviceMemory tw(int l) { return slot(tws, l, (long) batch * k); }

        private DeviceMemory slot(DeviceBuffer b, int l, long floats) { return b.slice(4L * l * floats, 4L * floats); }

        private DeviceBuffer alloc(long floats) { return own(DeviceBuffer.allocateFloats(context, floats)); }
    }
}
