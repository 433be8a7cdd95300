package io.bifuse.cuda;

import io.bifuse.Precision;

import io.bifuse.BanPooling;
import io.bifuse.CompactBilinear;
import io.bifuse.ObjectMask;
import java.util.List;

/**
 * {@link BanPooling} on one GPU: the three FP32 kernels of {@code cuda/BanPooling.cu}, no cuBLAS (the op
 * is a bilinear form per column, {@code X''[:,c]ᵀ A Y''[:,c]}, which no GEMM covers without writing an
 * {@code N × K'} or {@code M × K'} intermediate; the fused kernels write nothing but the results).
 *
 * <p>Forward: {@code ban_pool_forward}, one block per (sample, column tile), one thread per column,
 * {@code A} staged in shared memory over the real objects only, the group sum in shared memory, one
 * write of {@code f}. Backward: {@code ban_pool_backward_xy} ({@code dX''} and {@code dY''} in one pass
 * over {@code X''}, {@code Y''} and {@code A}) and {@code ban_pool_grad_attention} ({@code dA}, the
 * {@code K'} reduction tiled through shared memory). The op is stateless: backward saves nothing and
 * needs nothing from the forward (the gradients are bilinear in the inputs, nothing is recomputed
 * beyond reading them again), and there are no workspaces, so calls on any streams run concurrently
 * and allocate nothing.
 *
 * <p>Layouts, each a {@link DeviceMatrix} (its shape and row stride travel with it): {@code attention}
 * is {@code B × N·M}, sample {@code b}'s {@code N × M} map in row {@code b} (a row stride of {@code N·M}
 * for a dense {@code B × N × M} map; {@code G·N·M} for glimpse {@code g} of a {@code B × G × N × M}
 * tensor, a column block of it); {@code x} is {@code B·N × K'} and {@code y} {@code B·M × K'}, any row
 * stride, so that column blocks of a wider projection are read in place; the gradients have their own
 * strides and only their {@code K'} columns are written ({@code gradAttention}, of the same row stride as
 * {@code attention}: only the {@code N·M} entries of each sample's map). {@code mask} null means
 * every object is real; padded objects cost no work, contribute nothing, and get zero rows of
 * {@code gradX} and {@code gradAttention}. {@code throughRelu}: {@code x} and {@code y} are ReLU outputs
 * and the gradients written are those of the pre-activations, {@code g·[x > 0]}. Gradients are written,
 * not accumulated.
 *
 * <p>Every argument is checked by name (sizes, shapes, openness, 4-byte alignment, the mask's shape)
 * before anything is queued. Calls are asynchronous with respect to the host, except the
 * {@code float[]} conveniences.
 */
public final class BanPoolingCuda extends CudaOp<BanPooling> implements BanPooling.Backend {
    // The op has no scratch: an empty cache keeps CudaOp's one close protocol.
    private final Workspaces<Integer, Workspaces.Workspace> workspaces = new Workspaces<>("BanPoolingCuda", 1);

    @Override Workspaces<?, ?> workspaces() { return workspaces; }
    // One by-value struct parameter each (BanPooling.cu's BanPool*Params); the launches pass its fields flat, in order.
    public static final KernelSpec FORWARD = new KernelSpec("ban_pool_forward", "{plpipippiiiiiip}",
            "att att_stride x ldx y ldy counts indices masked batch objects tokens width group out");
    public static final KernelSpec BACKWARD_XY = new KernelSpec("ban_pool_backward_xy", "{plpipippiiiiiippipii}",
            "att att_stride x ldx y ldy counts indices masked batch objects tokens width group grad_out grad_x ldgx grad_y ldgy through_relu");
    public static final KernelSpec GRAD_ATTENTION = new KernelSpec("ban_pool_grad_attention", "{pipippiiiiiippl}",
            "x ldx y ldy counts indices masked batch objects tokens width group grad_out grad_att att_stride");
    static final List<KernelSpec> KERNELS = List.of(FORWARD, BACKWARD_XY, GRAD_ATTENTION);

    /** The kernels' BP_BLOCK, BP_GA_BLOCK and the tile sizes that set the units of work. */
    static final int BLOCK = 128, GA_BLOCK = 256, GA_TI = 16, GA_TJ = 16;


    public BanPoolingCuda(BanPooling op, CudaContext context) {
        super("a BanPooling", op, context, Precision.FP32, Needs.NOTHING, 4);
    }

    /** {@code out (B × K'/k) = op(attention, x, y)} over the real objects of {@code mask}, queued on {@code stream}. */
    public void forward(DeviceMatrix attention, DeviceMatrix x, DeviceMatrix y, DeviceObjectMask mask, int batch, int objects, int tokens,
                        DeviceMemory out, CudaStream s) {
        checkInputs(attention, x, y, mask, batch, objects, tokens);
        DeviceArgs.memory("out", out, batch, op.outWidth());
        DeviceArgs.stream(s);
        context.makeCurrent();
        DeviceMemory counts = mask == null ? attention.memory() : mask.counts(), indices = mask == null ? attention.memory() : mask.indices();
        context.launch(FORWARD, units((long) batch * forwardTiles()), 1, BLOCK, 0, s, attention.memory(), (long) attention.ld(), x.memory(), x.ld(),
                y.memory(), y.ld(), counts, indices, mask == null ? 0 : 1, batch, objects, tokens, op.width(), op.group(), out);
    }

    /**
     * The gradients of {@code attention}, {@code x} and {@code y} from {@code gradOut = ∂L/∂f}
     * ({@code B × K'/k}), queued on {@code stream}. {@code gradAttention} has the shape and the row
     * stride of {@code attention}; {@code gradX} and {@code gradY} the shapes of {@code x} and {@code y}.
     */
    public void backward(DeviceMatrix attention, DeviceMatrix x, DeviceMatrix y, DeviceObjectMask mask, int batch, int objects, int tokens,
                         DeviceMemory gradOut, DeviceMatrix gradAttention, DeviceMatrix gradX, DeviceMatrix gradY, boolean throughRelu, CudaStream s) {
        checkInputs(attention, x, y, mask, batch, objects, tokens);
        DeviceArgs.memory("gradOut", gradOut, batch, op.outWidth());
        DeviceArgs.matrix("gradAttention", gradAttention, batch, (long) objects * tokens);
        if (gradAttention.ld() != attention.ld()) {
            throw new IllegalArgumentException("gradAttention: expected the row stride of attention (" + attention.ld() + " floats), got "
                    + gradAttention.ld());
        }
        DeviceArgs.matrix("gradX", gradX, (long) batch * objects, op.width());
        DeviceArgs.matrix("gradY", gradY, (long) batch * tokens, op.width());
        DeviceArgs.stream(s);
        context.makeCurrent();
        DeviceMemory counts = mask == null ? attention.memory() : mask.counts(), indices = mask == null ? attention.memory() : mask.indices();
        int masked = mask == null ? 0 : 1, w = op.width(), k = op.group();
        long tiles = (w + BLOCK - 1) / BLOCK, attStride = attention.ld();
        context.launch(BACKWARD_XY, units(batch * tiles), 1, BLOCK, 0, s, attention.memory(), attStride, x.memory(), x.ld(), y.memory(), y.ld(),
                counts, indices, masked, batch, objects, tokens, w, k, gradOut, gradX.memory(), gradX.ld(), gradY.memory(), gradY.ld(),
                throughRelu ? 1 : 0);
        long maps = (long) batch * ((objects + GA_TI - 1) / GA_TI) * ((tokens + GA_TJ - 1) / GA_TJ);
        context.launch(GRAD_ATTENTION, units(maps), 1, GA_BLOCK, 0, s, x.memory(), x.ld(), y.memory(), y.ld(), counts, indices, masked, batch,
                objects, tokens, w, k, gradOut, gradAttention.memory(), attStride);
    }

    /**
     * Host convenience: dense inputs copied in, run on a private stream of this op's (kept, with its
     * buffers, for the next call), the output copied out.
     */
    public float[] forward(float[] attention, float[] x, float[] y, ObjectMask mask, int batch, int objects, int tokens) {
        op.checkInputs(attention, x, y, mask, batch, objects, tokens);
        int w = op.width();
        return host.run(lane -> {
            DeviceMemory da = lane.in(attention), dx = lane.in(x), dy = lane.in(y);
            DeviceObjectMask dm = lane.in(mask);
            DeviceMemory out = lane.floats((long) batch * op.outWidth());
            forward(DeviceMatrix.of("attention", da, batch, objects * tokens), DeviceMatrix.of("x", dx, batch * objects, w),
                    DeviceMatrix.of("y", dy, batch * tokens, w), dm, batch, objects, tokens, out, lane.stream());
            return lane.read(out);
        });
    }

    /** Host convenience: dense inputs, gradients of the inputs themselves ({@code throughRelu} false). */
    public BanPooling.Gradients backward(float[] attention, float[] x, float[] y, ObjectMask mask, float[] gradOut, int batch, int objects,
                                         int tokens) {
        op.checkInputs(attention, x, y, mask, batch, objects, tokens);
        CompactBilinear.checkLength("gradOut", gradOut, batch, op.outWidth());
        int w = op.width();
        return host.run(lane -> {
            DeviceMemory da = lane.in(attention), dx = lane.in(x), dy = lane.in(y);
            DeviceObjectMask dm = lane.in(mask);
            DeviceMemory g = lane.in(gradOut);
            DeviceMemory ga = lane.floats(attention.length), gx = lane.floats(x.length), gy = lane.floats(y.length);
            backward(DeviceMatrix.of("attention", da, batch, objects * tokens), DeviceMatrix.of("x", dx, batch * objects, w),
                    DeviceMatrix.of("y", dy, batch * tokens, w), dm, batch, objects, tokens, g,
                    DeviceMatrix.of("gradAttention", ga, batch, objects * tokens), DeviceMatrix.of("gradX", gx, batch * objects, w),
                    DeviceMatrix.of("gradY", gy, batch * tokens, w), false, lane.stream());
            return new BanPooling.Gradients(lane.read(ga), lane.read(gx), lane.read(gy));
        });
    }

    private void checkInputs(DeviceMatrix attention, DeviceMatrix x, DeviceMatrix y, DeviceObjectMask mask, int batch, int objects, int tokens) {
        op.checkSizes(batch, objects, tokens);
        DeviceArgs.matrix("attention", attention, batch, (long) objects * tokens);
        DeviceArgs.matrix("x", x, (long) batch * objects, op.width());
        DeviceArgs.matrix("y", y, (long) batch * tokens, op.width());
        DeviceObjectMask.check("mask", mask, batch, objects, true);
    }

    /** Column tiles of the forward: whole groups per tile (one group when k > BLOCK). */
    long forwardTiles() {
        int per = op.group() >= BLOCK ? 1 : BLOCK / op.group();
        return (op.outWidth() + per - 1) / per;
    }

    /** Kernels that loop over work units (one block each): one block per unit up to a cap. */
    private int units(long n) {
        return (int) Math.max(1, Math.min(n, 64L * context.multiprocessorCount()));
    }

    @Override public String toString() { return "BanPoolingCuda[" + op + "]"; }
}
