package io.bifuse.cuda;

import io.bifuse.MultiHeadAttention;
import io.bifuse.ObjectMask;
import io.bifuse.Precision;
import io.bifuse.cuda.MlbAttentionCuda.LayerBuffers;
import java.util.ArrayList;
import java.util.List;

/**
 * {@link MultiHeadAttention} on one GPU: the four projections as cuBLAS GEMMs in the op's {@link Precision}
 * and the attention core of {@code cuda/MultiHeadAttention.cu} between them.
 *
 * <p>Forward: {@code Q, K, V} = the inputs through their layers (bias rows, then a GEMM each); the
 * attention core ({@link Path}); {@code out = O W_mᵀ + b_m}. The fused core is one kernel per
 * (sample, head, 32 queries) with an online softmax over tiles of 32 real keys: it writes {@code O} and one
 * log-sum-exp per query row, never the {@code B × n × Lq × Lk} scores. The unfused core writes the scores
 * with one strided-batched GEMM per head, a softmax kernel, and a second GEMM per head.
 *
 * <p>Backward recomputes the forward from the inputs (the op is stateless, as {@link MlbAttentionCuda}),
 * then {@code dO = g W_m} and the merge layer's gradients; the fused core recomputes each score from the
 * saved row statistic (no probabilities stored): {@code D = rowsum(dO ⊙ O)}, one pass over key tiles for
 * {@code dK, dV} and one over query tiles for {@code dQ} (no atomics: reruns are bitwise identical); the
 * unfused core runs {@code dP = dO Vᵀ}, the softmax backward and three GEMMs per head. Then each input's
 * gradient {@code dx = dQ W_q} and its layer's gradients. Padded keys' rows of {@code dKey, dValue}
 * are exact zeros, and so is the key layer's bias gradient (softmax invariance, see
 * {@link MultiHeadAttention.Gradients}).
 *
 * <p>Workspaces (and a cuBLAS handle bound to the stream) are made once per (stream, B, Lq, Lk) and kept
 * (the {@value #MAX_WORKSPACES} most recently used): {@code 4(2 B Lq H + 2 B Lk H + B n Lq)} bytes, plus the
 * {@code B n Lq Lk} scores on the unfused path, and about as much again on first backward. Calls on one
 * stream are serialized on its workspace; calls on different streams run concurrently. Every argument is
 * checked before anything is queued. Calls are asynchronous with respect to the host, except the
 * {@code float[]} conveniences.
 */
public final class MultiHeadAttentionCuda extends CudaOp<MultiHeadAttention> implements MultiHeadAttention.Backend {
    // The fused kernels' last parameter is MultiHeadAttention.cu's MhaDims by value; the launches pass its fields flat, in order.
    private static final String DIMS = "{iiiiiif}", DIM_NAMES = " batch lq lk heads dh masked scale";
    public static final KernelSpec FUSED_FORWARD = new KernelSpec("mha_fused_forward", "ppppppp" + DIMS, "q k v counts indices o lse" + DIM_NAMES);
    public static final KernelSpec FUSED_PROBS = new KernelSpec("mha_fused_probs", "pppppp" + DIMS, "q k counts indices lse probs" + DIM_NAMES);
    public static final KernelSpec FUSED_DELTA = new KernelSpec("mha_fused_delta", "pppiiii", "o dout delta batch lq heads dh");
    public static final KernelSpec FUSED_BACKWARD_KV = new KernelSpec("mha_fused_backward_kv", "pppppppppp" + DIMS,
            "q k v counts indices lse dout delta dk dv" + DIM_NAMES);
    public static final KernelSpec FUSED_BACKWARD_Q = new KernelSpec("mha_fused_backward_q", "ppppppppp" + DIMS,
            "q k v counts indices lse dout delta dq" + DIM_NAMES);
    public static final KernelSpec SOFTMAX = new KernelSpec("mha_softmax", "pppiiiii", "counts indices probs batch lq lk heads masked");
    public static final KernelSpec SOFTMAX_BACKWARD = new KernelSpec("mha_softmax_backward", "ppppiiiii", "counts indices probs ds batch lq lk heads masked");
    static final List<KernelSpec> KERNELS = List.of(FUSED_FORWARD, FUSED_PROBS, FUSED_DELTA, FUSED_BACKWARD_KV, FUSED_BACKWARD_Q, SOFTMAX,
            SOFTMAX_BACKWARD);

    /** The widest head the fused kernels take (MHA_MAX_D: each thread keeps 16 of a row's columns in registers). */
    public static final int MAX_FUSED_HEAD_DIM = 64;

    static final int MAX_WORKSPACES = 4;
    private static final int TILE = 32, THREADS = 128, BLOCK = 256; // MHA_TILE, MHA_THREADS; the row kernels' block

    /** Which attention core runs. */
    public enum Path {
        /** The fused kernels when the head width allows ({@code d <= 64}), the unfused core otherwise (default). */
        AUTO,
        /** The fused kernels; refused for heads wider than {@value MultiHeadAttentionCuda#MAX_FUSED_HEAD_DIM}. */
        FUSED,
        /** cuBLAS GEMMs per head with the scores in memory and the softmax kernels: any head width; the fused path's cross-check. */
        UNFUSED
    }

    /**
     * Where {@link #backward} writes: the inputs' gradients ({@code dQuery} {@code B × Lq × Dq}, {@code dKey}
     * {@code B × Lk × Dk}, {@code dValue} {@code B × Lk × Dv}) and one {@link LayerBuffers} per layer.
     */
    public record GradientBuffers(DeviceMemory dQuery, DeviceMemory dKey, DeviceMemory dValue, LayerBuffers query, LayerBuffers key, LayerBuffers value,
                                  LayerBuffers merge) {}

    private final int hidden, heads, dh, dq, dk, dv, outDim;
    private final float scale;
    private final boolean fused;
    private final LinearCuda query, key, value, merge;
    private final Workspaces<Shape, Workspace> workspaces = new Workspaces<>("MultiHeadAttentionCuda", MAX_WORKSPACES);

    @Override Workspaces<?, ?> workspaces() { return workspaces; }

    /** This op on a GPU with FP32 GEMMs and the {@link Path#AUTO} core. */
    public MultiHeadAttentionCuda(MultiHeadAttention op, CudaContext context) {
        this(op, context, Precision.FP32);
    }

    /** This op with its projections in {@code precision} ({@link Precision#FP32} unless you accept the documented error of the reduced modes). */
    public MultiHeadAttentionCuda(MultiHeadAttention op, CudaContext context, Precision precision) {
        this(op, context, precision, Path.AUTO);
    }

    /**
     * This op with its projections in {@code precision} and the attention core {@code path} (the fused core
     * is FP32 whatever the precision; the unfused core's GEMMs use {@code precision}). Uploads the weights
     * once; close it to free them and its workspaces.
     */
    public MultiHeadAttentionCuda(MultiHeadAttention op, CudaContext context, Precision precision, Path path) {
        super("a MultiHeadAttention", op, context, precision, Needs.CUBLAS, MAX_WORKSPACES);
        if (path == null) throw new IllegalArgumentException("path: expected AUTO, FUSED or UNFUSED, got null");
        hidden = op.hidden();
        heads = op.heads();
        dh = op.headDim();
        if (path == Path.FUSED && dh > MAX_FUSED_HEAD_DIM) {
            throw new IllegalArgumentException("path: FUSED takes heads of at most " + MAX_FUSED_HEAD_DIM + " columns, this op's are " + dh
                    + " (H = " + hidden + " over " + heads + " heads); use AUTO or UNFUSED");
        }
        fused = path == Path.FUSED || (path == Path.AUTO && dh <= MAX_FUSED_HEAD_DIM);
        dq = op.queryDim();
        dk = op.keyDim();
        dv = op.valueDim();
        outDim = op.out();
        scale = (float) op.scale();
        MultiHeadAttention.Weights w = op.weights();
        try {
            query = own(new LinearCuda(context, w.query()));
            key = own(new LinearCuda(context, w.key()));
            value = own(new LinearCuda(context, w.value()));
            merge = own(new LinearCuda(context, w.merge()));
        } catch (RuntimeException e) {
            throw failed(e);
        }
    }

    /** The attention core this op runs: {@link Path#FUSED} or {@link Path#UNFUSED} (what {@link Path#AUTO} chose). */
    public Path path() { return fused ? Path.FUSED : Path.UNFUSED; }

    /** The tensors {@link #loadWeights} takes: {@code query, key, value, merge}, each {@code .weight} then {@code .bias} (where the layer has one). */
    public List<String> weightNames() { return DeviceWeights.names(weightEntries()); }

    /**
     * Replaces this op's device weights with tensors already on the device, each in its layer's
     * {@code nn.Linear} layout (see {@link DeviceWeights}), queued on {@code stream}; every tensor is checked
     * by name first. Work queued on other streams that uses this op must have finished.
     */
    public void loadWeights(List<? extends DeviceMemory> tensors, CudaStream stream) {
        DeviceWeights.load(context, weightEntries(), tensors, stream);
    }

    private List<DeviceWeights.Entry> weightEntries() {
        List<DeviceWeights.Entry> e = new ArrayList<>();
        String[] names = {"query", "key", "value", "merge"};
        LinearCuda[] layers = {query, key, value, merge};
        for (int i = 0; i < 4; i++) DeviceWeights.add(e, names[i], layers[i].layer(), layers[i].weight(), layers[i].bias());
        return e;
    }

    /**
     * {@code out (B × Lq × Out)} from {@code query (B × Lq × Dq)}, {@code key (B × Lk × Dk)},
     * {@code value (B × Lk × Dv)} and the keys' {@code mask} (null: every key real), and the attention maps
     * into {@code attention} ({@code B × n × Lq × Lk}) unless it is null; queued on {@code stream}.
     */
    public void forward(DeviceMemory query, DeviceMemory key, DeviceMemory value, DeviceObjectMask mask, DeviceMemory out, DeviceMemory attention,
                        int batch, int queries, int keys, CudaStream stream) {
        checkInputs(query, key, value, mask, batch, queries, keys);
        DeviceArgs.memory("out", out, (long) batch * queries, outDim);
        if (attention != null) DeviceArgs.memory("attention", attention, (long) batch * heads * queries, keys);
        DeviceArgs.stream(stream);
        inWorkspace(stream, batch, queries, keys, w -> {
            attend(w, query, key, value, mask, attention, stream);
            merge.forward(w.blas, precision, DeviceMatrix.of("o", w.o, w.rowsQ, hidden), DeviceMatrix.of("out", out, w.rowsQ, outDim), stream);
        });
    }

    /** The projections and the attention core: w.qp, w.kp, w.vp, w.o, and w.lse (fused) or the probabilities (unfused: {@code attention} or w.scores). */
    private void attend(Workspace w, DeviceMemory qIn, DeviceMemory kIn, DeviceMemory vIn, DeviceObjectMask mask, DeviceMemory attention, CudaStream stream) {
        query.forward(w.blas, precision, DeviceMatrix.of("query", qIn, w.rowsQ, dq), DeviceMatrix.of("qp", w.qp, w.rowsQ, hidden), stream);
        key.forward(w.blas, precision, DeviceMatrix.of("key", kIn, w.rowsK, dk), DeviceMatrix.of("kp", w.kp, w.rowsK, hidden), stream);
        value.forward(w.blas, precision, DeviceMatrix.of("value", vIn, w.rowsK, dv), DeviceMatrix.of("vp", w.vp, w.rowsK, hidden), stream);
        Mask m = new Mask(mask, w.lse);
        if (fused) {
            context.launch(FUSED_FORWARD, units(queryUnits(w)), 1, THREADS, 0, stream, w.qp, w.kp, w.vp, m.counts, m.indices, w.o, w.lse,
                    w.batch, w.queries, w.keys, heads, dh, m.masked, scale);
            if (attention != null) {
                context.launch(FUSED_PROBS, grid(rows(w)), 1, BLOCK, 0, stream, w.qp, w.kp, m.counts, m.indices, w.lse, attention,
                        w.batch, w.queries, w.keys, heads, dh, m.masked, scale);
            }
            return;
        }
        DeviceMemory p = attention == null ? w.scores() : attention;
        long ss = (long) w.queries * w.keys, headStride = (long) heads * ss; // one head's map; one sample's maps
        for (int h = 0; h < heads; h++) {
            // S_h[b] = s · Q_h[b] K_h[b]ᵀ, then P_h = softmax, O_h[b] = P_h[b] V_h[b]
            w.blas.gemmStridedBatched(precision, false, true, w.queries, w.keys, dh, scale, col(w.qp, h), hidden, (long) w.queries * hidden,
                    col(w.kp, h), hidden, (long) w.keys * hidden, 0f, DeviceArgs.from(p, h * ss), w.keys, headStride, w.batch);
        }
        context.launch(SOFTMAX, grid(rows(w)), 1, BLOCK, 0, stream, m.counts, m.indices, p, w.batch, w.queries, w.keys, heads, m.masked);
        for (int h = 0; h < heads; h++) {
            w.blas.gemmStridedBatched(precision, false, false, w.queries, dh, w.keys, 1f, DeviceArgs.from(p, h * ss), w.keys, headStride,
                    col(w.vp, h), hidden, (long) w.keys * hidden, 0f, col(w.o, h), hidden, (long) w.queries * hidden, w.batch);
        }
    }

    /**
     * Every gradient ({@code grads}) from {@code gradOut = ∂L/∂out (B × Lq × Out)} and the forward's inputs,
     * queued on {@code stream}. Gradients are written, not accumulated; {@code gradOut} is only read.
     */
    public void backward(DeviceMemory query, DeviceMemory key, DeviceMemory value, DeviceObjectMask mask, DeviceMemory gradOut, GradientBuffers grads,
                         int batch, int queries, int keys, CudaStream stream) {
        checkInputs(query, key, value, mask, batch, queries, keys);
        DeviceArgs.memory("gradOut", gradOut, (long) batch * queries, outDim);
        checkGradients(grads, batch, queries, keys);
        DeviceArgs.stream(stream);
        inWorkspace(stream, batch, queries, keys, w -> {
            w.ensureBackward();
            CublasHandle blas = w.blas;
            Precision p = precision;
            attend(w, query, key, value, mask, null, stream);
            DeviceMatrix go = DeviceMatrix.of("gradOut", gradOut, w.rowsQ, outDim);
            merge.backwardInput(blas, p, go, 0f, DeviceMatrix.of("dO", w.dout, w.rowsQ, hidden));
            merge.backwardParameters(blas, p, go, DeviceMatrix.of("o", w.o, w.rowsQ, hidden), grads.merge().weight(), grads.merge().bias(), stream);
            Mask m = new Mask(mask, w.lse);
            if (fused) {
                context.launch(FUSED_DELTA, grid(rows(w)), 1, BLOCK, 0, stream, w.o, w.dout, w.delta, w.batch, w.queries, heads, dh);
                if (mask != null) { // padded keys' rows: the kernels write real keys only
                    DeviceBuffer.fillAsync(w.dkp, 0f, (long) w.rowsK * hidden, stream);
                    DeviceBuffer.fillAsync(w.dvp, 0f, (long) w.rowsK * hidden, stream);
                }
                context.launch(FUSED_BACKWARD_KV, units((long) w.batch * heads * ((w.keys + TILE - 1) / TILE)), 1, THREADS, 0, stream, w.qp, w.kp, w.vp,
                        m.counts, m.indices, w.lse, w.dout, w.delta, w.dkp, w.dvp, w.batch, w.queries, w.keys, heads, dh, m.masked, scale);
                context.launch(FUSED_BACKWARD_Q, units(queryUnits(w)), 1, THREADS, 0, stream, w.qp, w.kp, w.vp, m.counts, m.indices, w.lse, w.dout,
                        w.delta, w.dqp, w.batch, w.queries, w.keys, heads, dh, m.masked, scale);
            } else {
                DeviceMemory pr = w.scores(), ds = w.dscores();
                long ss = (long) w.queries * w.keys, headStride = (long) heads * ss, sq = (long) w.queries * hidden, sk = (long) w.keys * hidden;
                for (int h = 0; h < heads; h++) { // dP_h = dO_h V_hᵀ
                    blas.gemmStridedBatched(p, false, true, w.queries, w.keys, dh, 1f, col(w.dout, h), hidden, sq, col(w.vp, h), hidden, sk,
                            0f, DeviceArgs.from(ds, h * ss), w.keys, headStride, w.batch);
                }
                context.launch(SOFTMAX_BACKWARD, grid(rows(w)), 1, BLOCK, 0, stream, m.counts, m.indices, pr, ds, w.batch, w.queries, w.keys, heads,
                        m.masked);
                for (int h = 0; h < heads; h++) {
                    DeviceMemory dsh = DeviceArgs.from(ds, h * ss), ph = DeviceArgs.from(pr, h * ss);
                    // dQ_h = s dS_h K_h;  dK_h = s dS_hᵀ Q_h;  dV_h = P_hᵀ dO_h
                    blas.gemmStridedBatched(p, false, false, w.queries, dh, w.keys, scale, dsh, w.keys, headStride, col(w.kp, h), hidden, sk,
                            0f, col(w.dqp, h), hidden, sq, w.batch);
                    blas.gemmStridedBatched(p, true, false, w.keys, dh, w.queries, scale, dsh, w.keys, headStride, col(w.qp, h), hidden, sq,
                            0f, col(w.dkp, h), hidden, sk, w.batch);
                    blas.gemmStridedBatched(p, true, false, w.keys, dh, w.queries, 1f, ph, w.keys, headStride, col(w.dout, h), hidden, sq,
                            0f, col(w.dvp, h), hidden, sk, w.batch);
                }
            }
            inputGradients(w, this.query, w.dqp, w.rowsQ, query, dq, grads.dQuery(), grads.query().weight(), grads.query().bias(), stream);
            // the key bias shifts a query's scores alike (softmax invariance): its gradient is exact zeros, as the reference's
            inputGradients(w, this.key, w.dkp, w.rowsK, key, dk, grads.dKey(), grads.key().weight(), null, stream);
            if (grads.key().bias() != null) DeviceBuffer.fillAsync(grads.key().bias(), 0f, hidden, stream);
            inputGradients(w, this.value, w.dvp, w.rowsK, value, dv, grads.dValue(), grads.value().weight(), grads.value().bias(), stream);
        });
    }

    /** {@code dx = dP·W} and the layer's weight and bias gradients from the projection-space gradient {@code dp}. */
    private void inputGradients(Workspace w, LinearCuda layer, DeviceMemory dp, int rows, DeviceMemory x, int width, DeviceMemory dx, DeviceMemory gw,
                                DeviceMemory gb, CudaStream stream) {
        DeviceMatrix g = DeviceMatrix.of("dp", dp, rows, hidden);
        layer.backwardInput(w.blas, precision, g, 0f, DeviceMatrix.of("dx", dx, rows, width));
        layer.backwardParameters(w.blas, precision, g, DeviceMatrix.of("x", x, rows, width), gw, gb, stream);
    }

    /** Host convenience: copies in, runs on a private stream, copies out. */
    @Override public float[] forward(float[] query, float[] key, float[] value, ObjectMask mask, int batch, int queries, int keys) {
        return forwardWithAttention(query, key, value, mask, batch, queries, keys).out();
    }

    /** Host convenience: the output and the attention maps ({@code B × n × Lq × Lk}), on a private stream of this op's. */
    @Override public MultiHeadAttention.Result forwardWithAttention(float[] query, float[] key, float[] value, ObjectMask mask, int batch, int queries,
                                                                    int keys) {
        op.checkInputs(query, key, value, mask, batch, queries, keys);
        return host.run(lane -> {
            DeviceMemory x = lane.in(query), k = lane.in(key), v = lane.in(value);
            DeviceObjectMask m = lane.in(mask);
            DeviceMemory out = lane.floats((long) batch * queries * outDim), att = lane.floats((long) batch * heads * queries * keys);
            forward(x, k, v, m, out, att, batch, queries, keys, lane.stream());
            return new MultiHeadAttention.Result(lane.read(out), lane.read(att));
        });
    }

    /** Host convenience: every gradient, as {@link #forwardWithAttention}. */
    @Override public MultiHeadAttention.Gradients backward(float[] query, float[] key, float[] value, ObjectMask mask, float[] gradOut, int batch,
                                                           int queries, int keys) {
        op.checkInputs(query, key, value, mask, batch, queries, keys);
        op.checkGradOut(gradOut, batch, queries);
        return host.run(lane -> {
            DeviceMemory x = lane.in(query), k = lane.in(key), v = lane.in(value), g = lane.in(gradOut);
            DeviceObjectMask m = lane.in(mask);
            OwnedGradients grads = new OwnedGradients(batch, queries, keys, lane::floats);
            backward(x, k, v, m, g, grads.buffers(), batch, queries, keys, lane.stream());
            return grads.read(lane.stream());
        });
    }

    /** Device buffers for every gradient of a {@code (B, Lq, Lk)} call, owned by the result (close it to free them). */
    public OwnedGradients allocateGradients(int batch, int queries, int keys) {
        MultiHeadAttention.checkSizes(batch, queries, keys);
        return new OwnedGradients(batch, queries, keys, null);
    }

    /** Gradient buffers allocated by {@link #allocateGradients}: poison them, pass {@link #buffers()}, read them back. */
    public final class OwnedGradients extends GradientSet<GradientBuffers, MultiHeadAttention.Gradients> {
        private OwnedGradients(int batch, int queries, int keys, java.util.function.LongFunction<DeviceMemory> alloc) {
            super(context, alloc);
            MultiHeadAttention.Weights w = op.weights();
            layOut(() -> new GradientBuffers(floats((long) batch * queries * dq), floats((long) batch * keys * dk), floats((long) batch * keys * dv),
                    layer(w.query()), layer(w.key()), layer(w.value()), layer(w.merge())));
        }

        @Override public MultiHeadAttention.Gradients read(CudaStream stream) {
            GradientBuffers b = buffers();
            return new MultiHeadAttention.Gradients(read(b.dQuery(), stream), read(b.dKey(), stream), read(b.dValue(), stream), read(b.query(), stream),
                    read(b.key(), stream), read(b.value(), stream), read(b.merge(), stream));
        }
    }

    private void checkInputs(DeviceMemory query, DeviceMemory key, DeviceMemory value, DeviceObjectMask mask, int batch, int queries, int keys) {
        MultiHeadAttention.checkSizes(batch, queries, keys);
        DeviceArgs.memory("query", query, (long) batch * queries, dq);
        DeviceArgs.memory("key", key, (long) batch * keys, dk);
        DeviceArgs.memory("value", value, (long) batch * keys, dv);
        DeviceObjectMask.check("mask", mask, batch, keys, true);
    }

    private void checkGradients(GradientBuffers grads, int batch, int queries, int keys) {
        if (grads == null) throw new IllegalArgumentException("grads: expected GradientBuffers, got null");
        DeviceArgs.memory("grads.dQuery", grads.dQuery(), (long) batch * queries, dq);
        DeviceArgs.memory("grads.dKey", grads.dKey(), (long) batch * keys, dk);
        DeviceArgs.memory("grads.dValue", grads.dValue(), (long) batch * keys, dv);
        MultiHeadAttention.Weights w = op.weights();
        MlbAttentionCuda.checkLayer("grads.query", grads.query(), w.query());
        MlbAttentionCuda.checkLayer("grads.key", grads.key(), w.key());
        MlbAttentionCuda.checkLayer("grads.value", grads.value(), w.value());
        MlbAttentionCuda.checkLayer("grads.merge", grads.merge(), w.merge());
    }

    /** Head {@code h}'s first column of a {@code rows × H} projection. */
    private DeviceMemory col(DeviceMemory m, int h) { return DeviceArgs.from(m, (long) h * dh); }

    private long queryUnits(Workspace w) { return (long) w.batch * heads * ((w.queries + TILE - 1) / TILE); }

    private long rows(Workspace w) { return (long) w.batch * heads * w.queries; }

    private int units(long n) { return DeviceArgs.units(context, n); }

    private int grid(long threads) { return DeviceArgs.grid(context, threads, BLOCK); }

    /** A launch's mask arguments: the device mask's arrays and masked = 1, or (no mask) any valid memory and masked = 0. */
    private record Mask(DeviceMemory counts, DeviceMemory indices, int masked) {
        Mask(DeviceObjectMask m, DeviceMemory unused) {
            this(m == null ? unused : m.counts(), m == null ? unused : m.indices(), m == null ? 0 : 1);
        }
    }

    /** Runs {@code body} in this op's workspace for (stream, shape): {@link Workspaces#run}. */
    private void inWorkspace(CudaStream stream, int batch, int queries, int keys, java.util.function.Consumer<Workspace> body) {
        workspaces.run(stream, new Shape(batch, queries, keys), s -> new Workspace(s, batch, queries, keys), body);
    }

    private record Shape(int batch, int queries, int keys) {}

    /** Buffers and the cuBLAS handle for one (stream, B, Lq, Lk). */
    private final class Workspace extends Workspaces.Workspace {
        final int batch, queries, keys, rowsQ, rowsK;
        final CublasHandle blas;
        final DeviceBuffer qp, kp, vp, o, lse;
        private DeviceBuffer scores, dscores; // the unfused path's, made on first use
        DeviceBuffer dout, delta, dqp, dkp, dvp; // made on first backward

        Workspace(CudaStream stream, int batch, int queries, int keys) {
            super(MultiHeadAttentionCuda.this.context, stream);
            this.batch = batch;
            this.queries = queries;
            this.keys = keys;
            rowsQ = batch * queries;
            rowsK = batch * keys;
            try {
                blas = own(new CublasHandle(context, stream));
                qp = alloc((long) rowsQ * hidden);
                kp = alloc((long) rowsK * hidden);
                vp = alloc((long) rowsK * hidden);
                o = alloc((long) rowsQ * hidden);
                lse = alloc((long) batch * heads * queries);
            } catch (RuntimeException e) {
                close();
                throw e;
            }
        }

        DeviceBuffer scores() {
            if (scores == null) scores = alloc((long) batch * heads * queries * keys);
            return scores;
        }

        DeviceBuffer dscores() {
            if (dscores == null) dscores = alloc((long) batch * heads * queries * keys);
            return dscores;
        }

        void ensureBackward() {
            if (dout != null) return;
            dout = alloc((long) rowsQ * hidden);
            delta = alloc((long) batch * heads * queries);
            dqp = alloc((long) rowsQ * hidden);
            dkp = alloc((long) rowsK * hidden);
            dvp = alloc((long) rowsK * hidden);
        }

        private DeviceBuffer alloc(long floats) { return own(DeviceBuffer.allocateFloats(context, floats)); }
    }

}
