package io.bifuse.cuda;

import io.bifuse.Precision;

import io.bifuse.BanAttention;
import io.bifuse.LinearGradients;
import io.bifuse.ObjectMask;
import java.util.List;

/**
 * {@link BanAttention} on one GPU: the FP32 kernels of {@code cuda/BanAttention.cu} (no GEMM, hence no
 * cuBLAS and no {@link io.bifuse.Precision}).
 *
 * <p>Forward, B samples of N objects and M tokens, width K, G glimpses:
 * <ul>
 *   <li>N <= {@value #FUSED_MAX_OBJECTS} and M <= {@value #FUSED_MAX_TOKENS} (ban-vqa's maps: N = 36 or
 *       100, M = 14): {@code ban_att_fused}, one block per (b, g) map: the logits of the real objects
 *       (K reduced over shared-memory tiles of {@code X'} rows and {@code p[g]·Y'}), the mask, the softmax over
 *       the flattened map, one write of A (and of the logits if asked). No {@code B×G×N×K} or
 *       {@code B×G×M×K} intermediate is ever written, nor any logits the caller did not ask for.</li>
 *   <li>larger maps: {@code ban_att_logits} (the same reduction per tile of 64 objects × 16 tokens, writing
 *       the logits, {@code −inf} at padded objects) then {@code ban_att_softmax} over maps of any length.</li>
 * </ul>
 * Backward takes the forward's attention maps (saved by the caller: they are the forward's output) and
 * recomputes nothing of the logits: {@code ban_att_backward}, one block per (b, 128 columns of K), applies the
 * softmax Jacobian on the fly and writes {@code dX'}, {@code dY'} and per-sample partials of {@code dp};
 * {@code ban_att_dp_reduce} sums the partials over b in a fixed order (deterministic); the bias gradient
 * is exactly zero (see {@link BanAttention}) and written as zeros (a memset).
 *
 * <p>{@code X'} and {@code Y'} may be column blocks of wider matrices: row {@code r} at {@code r·ld}, any
 * {@code ld >= K}. Masks are {@link DeviceObjectMask}s (null = every object real); the kernels only
 * read the real objects' rows. Gradients are written, never accumulated, and must not alias the inputs.
 *
 * <p>Workspaces, made once per (stream, B, N, M) and kept (the {@value #MAX_WORKSPACES} most recently
 * used): the tiled path's logits when the caller passes none ({@code 4·B·G·N·M} bytes), and the backward's
 * {@code dp} partials ({@code 4·B·G·K} bytes). The fused forward needs none. Every argument is checked by
 * name before anything is queued; calls are asynchronous, except the {@code float[]} conveniences.
 */
public final class BanAttentionCuda extends CudaOp<BanAttention> implements BanAttention.Backend {
    /** The largest N (objects) that the fused forward kernel takes; more objects take the tiled path. */
    public static final int FUSED_MAX_OBJECTS = 128;
    /** The largest M (tokens) that the fused forward kernel takes; more tokens take the tiled path. */
    public static final int FUSED_MAX_TOKENS = 16;

    // One by-value struct parameter each (BanAttention.cu's BanAttFusedParams, BanAttLogitsParams, BanAttBackwardParams); the launches pass its fields flat, in order.
    public static final KernelSpec FUSED = new KernelSpec("ban_att_fused", "{pipippppippiiiiii}",
            "xp ldx yp ldy p bias counts indices masked att logits write_logits batch N M K G");
    public static final KernelSpec LOGITS = new KernelSpec("ban_att_logits", "{pipippppipiiiii}",
            "xp ldx yp ldy p bias counts indices masked logits batch N M K G");
    public static final KernelSpec SOFTMAX = new KernelSpec("ban_att_softmax", "ppii");
    public static final KernelSpec BACKWARD = new KernelSpec("ban_att_backward", "{pipipppipppipipiiiiii}",
            "xp ldx yp ldy p counts indices masked att gatt gx ldgx gy ldgy dpart relu batch N M K G");
    public static final KernelSpec DP_REDUCE = new KernelSpec("ban_att_dp_reduce", "ppii");
    /** The kernel of {@link DeviceObjectMask#fromZeroRows}. */
    public static final KernelSpec ZERO_ROWS = new KernelSpec("ban_att_zero_rows", "piiiipp");
    static final List<KernelSpec> KERNELS = List.of(FUSED, LOGITS, SOFTMAX, BACKWARD, DP_REDUCE, ZERO_ROWS);

    static final int MAX_WORKSPACES = 4;
    // BAN_BLOCK, BAN_TILE_R, BAN_TILE_J, BAN_BWD_BLOCK, BAN_MASK_BLOCK in BanAttention.cu
    static final int BLOCK = 256, TILE_R = 64, TILE_J = 16, BWD_BLOCK = 128, MASK_BLOCK = 256;

    private final int g, k;
    private final DeviceBuffer weight, bias;
    private final Workspaces<Shape, Workspace> workspaces = new Workspaces<>("BanAttentionCuda", MAX_WORKSPACES);

    @Override Workspaces<?, ?> workspaces() { return workspaces; }
    private volatile boolean forceTiled;

    public BanAttentionCuda(BanAttention op, CudaContext context) {
        super("a BanAttention", op, context, Precision.FP32, Needs.NOTHING, MAX_WORKSPACES);
        this.g = op.glimpses();
        this.k = op.width();
        try {
            weight = own(DeviceBuffer.of(context, op.logits().weight()));
            bias = own(DeviceBuffer.of(context, op.logits().biasOrZeros()));
        } catch (RuntimeException e) {
            throw failed(e);
        }
    }

    /** p ({@code G × K}) on the device: the block's weight-norm backward reads it. */
    DeviceMemory weight() { return weight; }

    /** Whether a forward of N objects and M tokens runs the fused kernel (else the tiled path). */
    public boolean isFused(int objects, int tokens) {
        return !forceTiled && objects <= FUSED_MAX_OBJECTS && tokens <= FUSED_MAX_TOKENS;
    }

    /** Tests: run the tiled path at every size, so that both paths can be checked at small sizes. */
    void forceTiled(boolean on) { forceTiled = on; }

    /**
     * The attention maps into {@code attention} ({@code B×G×N×M} dense) and, unless {@code logits} is
     * null, the logits ({@code B×G×N×M}, {@code −inf} at padded objects), queued on {@code stream}.
     *
     * @param xp   {@code X'}: {@code B·N × K} (any row stride: a column block of a wider projection is read in place)
     * @param yp   {@code Y'}: {@code B·M × K}
     * @param mask the real objects, or null (all real)
     */
    public void forward(DeviceMatrix xp, DeviceMatrix yp, DeviceObjectMask mask, int batch, int objects, int tokens,
                        DeviceMemory attention, DeviceMemory logits, CudaStream stream) {
        op.checkSizes(batch, objects, tokens);
        DeviceArgs.matrix("xp", xp, (long) batch * objects, k);
        DeviceArgs.matrix("yp", yp, (long) batch * tokens, k);
        DeviceObjectMask.check("mask", mask, batch, objects, true);
        DeviceArgs.memory("attention", attention, (long) batch * g, (long) objects * tokens);
        if (logits != null) DeviceArgs.memory("logits", logits, (long) batch * g, (long) objects * tokens);
        DeviceArgs.stream(stream);
        context.makeCurrent();
        DeviceMemory counts = mask == null ? xp.memory() : mask.counts(), indices = mask == null ? xp.memory() : mask.indices();
        int masked = mask == null ? 0 : 1;
        if (isFused(objects, tokens)) {
            context.launch(FUSED, units((long) batch * g), 1, BLOCK, 0, stream, xp.memory(), xp.ld(), yp.memory(), yp.ld(), weight, bias, counts,
                    indices, masked,
                    attention, logits == null ? attention : logits, logits == null ? 0 : 1, batch, objects, tokens, k, g);
            return;
        }
        if (logits != null) {
            tiled(xp, yp, counts, indices, masked, batch, objects, tokens, attention, logits, stream);
            return;
        }
        inWorkspace(stream, batch, objects, tokens, w -> {
            tiled(xp, yp, counts, indices, masked, batch, objects, tokens, attention, w.logits(), stream);
        });
    }

    private void tiled(DeviceMatrix xp, DeviceMatrix yp, DeviceMemory counts, DeviceMemory indices, int masked, int batch,
                       int objects, int tokens, DeviceMemory attention, DeviceMemory logits, CudaStream stream) {
        // N + 1 object slots: the last one owns the padded objects after the last real one
        long rtiles = (objects + TILE_R) / TILE_R, jtiles = (tokens + TILE_J - 1) / TILE_J;
        context.launch(LOGITS, units((long) batch * g * rtiles * jtiles), 1, BLOCK, 0, stream, xp.memory(), xp.ld(), yp.memory(), yp.ld(), weight,
                bias, counts, indices, masked, logits, batch, objects, tokens, k, g);
        context.launch(SOFTMAX, units((long) batch * g), 1, BLOCK, 0, stream, logits, attention, batch * g, objects * tokens);
    }

    /**
     * Every gradient from {@code gradAttention = ∂L/∂A} ({@code B×G×N×M}) and the forward's inputs and
     * attention maps, queued on {@code stream}: {@code gradXp} ({@code B·N × K}, any row stride;
     * padded objects' rows written 0), {@code gradYp} ({@code B·M × K}),
     * {@code gradWeight} ({@code G×K}) and {@code gradBias} ({@code G} zeros; null exactly when the layer
     * has no bias). {@code throughRelu}: {@code xp}, {@code yp} are ReLU outputs and the gradients written
     * are those of the pre-activations ({@code g·[x > 0]}).
     */
    public void backward(DeviceMatrix xp, DeviceMatrix yp, DeviceObjectMask mask, int batch, int objects, int tokens,
                         DeviceMemory attention, DeviceMemory gradAttention, DeviceMatrix gradXp, DeviceMatrix gradYp,
                         DeviceMemory gradWeight, DeviceMemory gradBias, boolean throughRelu, CudaStream stream) {
        op.checkSizes(batch, objects, tokens);
        DeviceArgs.matrix("xp", xp, (long) batch * objects, k);
        DeviceArgs.matrix("yp", yp, (long) batch * tokens, k);
        DeviceObjectMask.check("mask", mask, batch, objects, true);
        DeviceArgs.memory("attention", attention, (long) batch * g, (long) objects * tokens);
        DeviceArgs.memory("gradAttention", gradAttention, (long) batch * g, (long) objects * tokens);
        DeviceArgs.matrix("gradXp", gradXp, (long) batch * objects, k);
        DeviceArgs.matrix("gradYp", gradYp, (long) batch * tokens, k);
        DeviceArgs.layer("gradWeight", "gradBias", gradWeight, gradBias, op.logits());
        DeviceArgs.stream(stream);
        inWorkspace(stream, batch, objects, tokens, w -> {
            DeviceMemory counts = mask == null ? xp.memory() : mask.counts(), indices = mask == null ? xp.memory() : mask.indices();
            DeviceMemory dpart = w.partials();
            long ctiles = (k + BWD_BLOCK - 1) / BWD_BLOCK;
            context.launch(BACKWARD, units(batch * ctiles), 1, BWD_BLOCK, 0, stream, xp.memory(), xp.ld(), yp.memory(), yp.ld(), weight, counts,
                    indices, mask == null ? 0 : 1, attention, gradAttention, gradXp.memory(), gradXp.ld(), gradYp.memory(), gradYp.ld(), dpart, throughRelu ? 1 : 0, batch, objects, tokens, k, g);
            context.launch(DP_REDUCE, DeviceArgs.grid(context, (long) g * k, BLOCK), 1, BLOCK, 0, stream, dpart, gradWeight, batch, g * k);
            if (gradBias != null) {
                DeviceBuffer.fillAsync(gradBias, 0f, g, stream);
            }
        });
    }

    /**
     * Host convenience: copies in (and the mask, if any), runs on a private stream of this op's (kept,
     * with its buffers, for the next call), copies the maps and logits out.
     */
    public BanAttention.Result forward(float[] xp, float[] yp, ObjectMask mask, int batch, int objects, int tokens) {
        op.checkInputs(xp, yp, mask, batch, objects, tokens);
        long maps = (long) batch * g * objects * tokens;
        return host.run(lane -> {
            DeviceMemory dx = lane.in(xp), dy = lane.in(yp);
            DeviceObjectMask dm = lane.in(mask);
            DeviceMemory att = lane.floats(maps), lg = lane.floats(maps);
            forward(DeviceMatrix.of("xp", dx, batch * objects, k), DeviceMatrix.of("yp", dy, batch * tokens, k), dm, batch, objects, tokens, att, lg,
                    lane.stream());
            return new BanAttention.Result(lane.read(att), lane.read(lg));
        });
    }

    /** Host convenience: the forward (for the maps backward needs), then the backward, as {@link #forward(float[], float[], ObjectMask, int, int, int)}. */
    public BanAttention.Gradients backward(float[] xp, float[] yp, ObjectMask mask, float[] gradAttention, int batch, int objects, int tokens) {
        op.checkInputs(xp, yp, mask, batch, objects, tokens);
        op.checkMaps("gradAttention", gradAttention, batch, objects, tokens);
        long maps = (long) batch * g * objects * tokens;
        boolean hasBias = op.logits().hasBias();
        return host.run(lane -> {
            DeviceMemory dx = lane.in(xp), dy = lane.in(yp);
            DeviceObjectMask dm = lane.in(mask);
            DeviceMemory att = lane.floats(maps), ga = lane.in(gradAttention);
            DeviceMemory gx = lane.floats(xp.length), gy = lane.floats(yp.length), gw = lane.floats((long) g * k), gb = hasBias ? lane.floats(g) : null;
            DeviceMatrix mx = DeviceMatrix.of("xp", dx, batch * objects, k), my = DeviceMatrix.of("yp", dy, batch * tokens, k);
            forward(mx, my, dm, batch, objects, tokens, att, null, lane.stream());
            backward(mx, my, dm, batch, objects, tokens, att, ga, DeviceMatrix.of("gradXp", gx, batch * objects, k),
                    DeviceMatrix.of("gradYp", gy, batch * tokens, k), gw, gb, false, lane.stream());
            return new BanAttention.Gradients(lane.read(gx), lane.read(gy), new LinearGradients(lane.read(gw), hasBias ? lane.read(gb) : null));
        });
    }

    /** Kernels that loop over work units (one block each): one block per unit, up to a cap. */
    int units(long n) {
        return (int) Math.max(1, Math.min(n, 64L * context.multiprocessorCount()));
    }

    /** Runs {@code body} in this op's workspace for (stream, shape): {@link Workspaces#run}. */
    private void inWorkspace(CudaStream stream, int batch, int objects, int tokens, java.util.function.Consumer<Workspace> body) {
        workspaces.run(stream, new Shape(batch, objects, tokens), s -> new Workspace(s, batch, objects, tokens), body);
    }

    private record Shape(int batch, int objects, int tokens) {}

    /** The tiled path's logits and the backward's dp partials for one (stream, B, N, M), each made on first use. */
    private final class Workspace extends Workspaces.Workspace {
        final int batch, objects, tokens;
        private DeviceBuffer logits, partials;

        Workspace(CudaStream stream, int batch, int objects, int tokens) {
            super(BanAttentionCuda.this.context, stream);
            this.batch = batch;
            this.objects = objects;
            this.tokens = tokens;
        }

        DeviceBuffer logits() {
            if (logits == null) logits = own(DeviceBuffer.allocateFloats(context, (long) batch * g * objects * tokens));
            return logits;
        }

        DeviceBuffer partials() {
            if (partials == null) partials = own(DeviceBuffer.allocateFloats(context, (long) batch * g * k));
            return partials;
        }
    }
}
