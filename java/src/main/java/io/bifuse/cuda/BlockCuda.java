package io.bifuse.cuda;

import io.bifuse.Block;
import io.bifuse.Linear;
import io.bifuse.LinearGradients;
import io.bifuse.Precision;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Map;

/**
 * {@link Block} (BLOCK; and MUTAN through {@link MutanCuda}) on one GPU: cuBLAS for the layers,
 * {@code cuda/Block.cu} for the rank-R cores, {@code cuda/Normalization.cu} for the normalization.
 *
 * <p>Forward: {@code x̃ = x·W₀ᵀ + b₀} and {@code ỹ} into one {@code 2B × M} workspace (x̃ its first B rows);
 * each chunk's merge layers read their chunk's columns and write their {@code R·s_c} columns of one
 * {@code 2B × R·M} workspace (p above q); {@code block_core_forward} sums the rank slices into
 * {@code z}; the normalization per chunk or per row; {@code f = ẑ·W_outᵀ + b_out}.
 *
 * <p>Backward recomputes the forward, then {@code ∂W_out}, {@code gẑ = g·W_out}, the normalization's
 * backward, {@code block_core_backward} (∂p and ∂q in place over p and q), every merge layer's weight,
 * bias and input gradient (into its chunk's columns of a {@code 2B × M} {@code ∂x̃ | ∂ỹ}), then
 * linear0's and linear1's. A shared op runs both sides through one set of layers: its merge layers'
 * GEMMs take both sides' {@code 2B} rows at once (the parameter gradient is then the sum over both
 * sides in one GEMM and one column sum), linear0's weight gradient is two GEMMs (the second with
 * beta 1), and the summed gradients are copied to the second side's names.
 */
public final class BlockCuda extends FusionCuda<Block, Block.Gradients> implements Block.Backend {
    public static final KernelSpec CORE_FORWARD = new KernelSpec("block_core_forward", "pppppiii");
    public static final KernelSpec CORE_BACKWARD = new KernelSpec("block_core_backward", "pppppiii");
    static final List<KernelSpec> KERNELS = List.of(CORE_FORWARD, CORE_BACKWARD);

    private static final int XY = 0, PQ = 1, Z = 2, ZH = 3, GZ = 4, GXY = 5;

    private final LinearCuda linear0, linear1, linearOut;
    private final LinearCuda[] merge0, merge1;
    private final DeviceBuffer unitChunk, segments;
    private final NormalizationCuda norm;

    public BlockCuda(Block op, CudaContext context) {
        this(op, context, Precision.FP32);
    }

    /** This op with its GEMMs in {@code precision}; uploads the weights once (close it to free them). */
    public BlockCuda(Block op, CudaContext context, Precision precision) {
        super("a Block", op, context, precision);
        try {
            linear0 = own(new LinearCuda(context, op.linear0()));
            linear1 = op.isShared() ? linear0 : own(new LinearCuda(context, op.linear1()));
            linearOut = own(new LinearCuda(context, op.linearOut()));
            int chunks = op.chunks();
            merge0 = new LinearCuda[chunks];
            merge1 = new LinearCuda[chunks];
            int[] sizes = new int[chunks], unit = new int[op.mmDim()];
            for (int c = 0; c < chunks; c++) {
                merge0[c] = own(new LinearCuda(context, op.merge0().get(c)));
                merge1[c] = op.isShared() ? merge0[c] : own(new LinearCuda(context, op.merge1().get(c)));
                sizes[c] = op.chunkSize(c);
                java.util.Arrays.fill(unit, op.chunkOffset(c), op.chunkOffset(c) + sizes[c], c);
            }
            int[] offsets = NormalizationCuda.ofSizes(sizes);
            unitChunk = own(DeviceBuffer.of(context, unit));
            segments = own(DeviceBuffer.of(context, offsets));
            norm = op.normalization().isIdentity() ? null
                    : own(new NormalizationCuda(context, op.normalization(), op.position() == Block.NormPosition.AFTER_CAT ? NormalizationCuda.wholeRow(op.mmDim()) : offsets));
        } catch (RuntimeException e) {
            throw failed(e);
        }
    }

    @Override public List<String> gradientNames() { return op.gradientNames(); }

    @Override List<Long> parameterSizes() {
        List<Long> s = new ArrayList<>();
        addSizes(s, op.linear0());
        addSizes(s, op.linear1());
        for (Linear l : op.merge0()) addSizes(s, l);
        for (Linear l : op.merge1()) addSizes(s, l);
        addSizes(s, op.linearOut());
        return s;
    }

    @Override Block.Gradients gradients(List<float[]> tensors) {
        Iterator<float[]> t = tensors.iterator();
        float[] dx = t.next(), dy = t.next();
        LinearGradients l0 = next(t, op.linear0()), l1 = next(t, op.linear1());
        List<LinearGradients> m0 = new ArrayList<>(), m1 = new ArrayList<>();
        for (Linear l : op.merge0()) m0.add(next(t, l));
        for (Linear l : op.merge1()) m1.add(next(t, l));
        return new Block.Gradients(dx, dy, l0, l1, m0, m1, next(t, op.linearOut()));
    }

    /** Up to ẑ: x̃ | ỹ, p | q, z (and ẑ); returns ẑ. */
    private DeviceMatrix core(Workspace w, DeviceMemory x, DeviceMemory y, int batch, CudaStream stream) {
        int m = op.mmDim(), rank = op.rank(), rm = rank * m;
        DeviceMatrix xy = w.matrix(XY, "x̃ | ỹ", 2 * batch, m), pq = w.matrix(PQ, "p | q", 2 * batch, rm);
        linear0.forward(w.blas, precision, DeviceMatrix.of("x", x, batch, op.dx()), xy.rows(0, batch), stream);
        linear1.forward(w.blas, precision, DeviceMatrix.of("y", y, batch, op.dy()), xy.rows(batch, batch), stream);
        for (int c = 0; c < op.chunks(); c++) {
            int o = op.chunkOffset(c), s = op.chunkSize(c);
            if (op.isShared()) {
                merge0[c].forward(w.blas, precision, xy.columns(o, s), pq.columns(rank * o, rank * s), stream);
            } else {
                merge0[c].forward(w.blas, precision, xy.rows(0, batch).columns(o, s), pq.rows(0, batch).columns(rank * o, rank * s), stream);
                merge1[c].forward(w.blas, precision, xy.rows(batch, batch).columns(o, s), pq.rows(batch, batch).columns(rank * o, rank * s), stream);
            }
        }
        DeviceMemory z = w.floats(Z, (long) batch * m);
        context.launch(CORE_FORWARD, grid((long) batch * m), 1, BLOCK, 0, stream, pq.rows(0, batch).memory(), pq.rows(batch, batch).memory(), z,
                unitChunk, segments, batch, m, rank);
        if (norm == null) return DeviceMatrix.of("z", z, batch, m);
        DeviceMemory zh = w.floats(ZH, (long) batch * m);
        norm.forward(z, zh, batch, stream);
        return DeviceMatrix.of("ẑ", zh, batch, m);
    }

    @Override void forward(Workspace w, DeviceMemory x, DeviceMemory y, DeviceMemory out, int batch, CudaStream stream) {
        linearOut.forward(w.blas, precision, core(w, x, y, batch, stream), DeviceMatrix.of("out", out, batch, op.out()), stream);
    }

    @Override void backward(Workspace w, DeviceMemory x, DeviceMemory y, DeviceMemory gradOut, Map<String, DeviceMemory> grads, int batch,
                            CudaStream stream) {
        int m = op.mmDim(), rank = op.rank(), rm = rank * m;
        DeviceMatrix zh = core(w, x, y, batch, stream), g = DeviceMatrix.of("gradOut", gradOut, batch, op.out());
        DeviceMatrix xy = w.matrix(XY, "x̃ | ỹ", 2 * batch, m), pq = w.matrix(PQ, "p | q", 2 * batch, rm);
        linearOut.backwardParameters(w.blas, precision, g, zh, weight(grads, "linear_out"), bias(grads, "linear_out"), stream);
        DeviceMatrix gz = w.matrix(GZ, "∂z", batch, m);
        linearOut.backwardInput(w.blas, precision, g, 0f, gz);
        if (norm != null) norm.backward(w.floats(Z, (long) batch * m), gz.memory(), gz.memory(), batch, stream);
        context.launch(CORE_BACKWARD, grid((long) batch * m), 1, BLOCK, 0, stream, pq.rows(0, batch).memory(), pq.rows(batch, batch).memory(),
                gz.memory(), unitChunk, segments, batch, m, rank); // p | q now hold ∂p | ∂q
        DeviceMatrix gxy = w.matrix(GXY, "∂x̃ | ∂ỹ", 2 * batch, m);
        for (int c = 0; c < op.chunks(); c++) {
            int o = op.chunkOffset(c), s = op.chunkSize(c);
            String n0 = "merge_linears0." + c, n1 = "merge_linears1." + c;
            if (op.isShared()) {
                DeviceMatrix gp = pq.columns(rank * o, rank * s);
                merge0[c].backwardParameters(w.blas, precision, gp, xy.columns(o, s), weight(grads, n0), bias(grads, n0), stream);
                merge0[c].backwardInput(w.blas, precision, gp, 0f, gxy.columns(o, s));
                copyLayer(grads, n0, n1, op.merge0().get(c), stream);
            } else {
                DeviceMatrix gp = pq.rows(0, batch).columns(rank * o, rank * s), gq = pq.rows(batch, batch).columns(rank * o, rank * s);
                merge0[c].backwardParameters(w.blas, precision, gp, xy.rows(0, batch).columns(o, s), weight(grads, n0), bias(grads, n0), stream);
                merge1[c].backwardParameters(w.blas, precision, gq, xy.rows(batch, batch).columns(o, s), weight(grads, n1), bias(grads, n1), stream);
                merge0[c].backwardInput(w.blas, precision, gp, 0f, gxy.rows(0, batch).columns(o, s));
                merge1[c].backwardInput(w.blas, precision, gq, 0f, gxy.rows(batch, batch).columns(o, s));
            }
        }
        inputLayersBackward(w, linear0, linear1, op.isShared(), gxy, x, y, grads, stream);
    }
}
