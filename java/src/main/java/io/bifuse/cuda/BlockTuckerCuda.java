package io.bifuse.cuda;

import io.bifuse.BilinearLayer;
import io.bifuse.Block;
import io.bifuse.BlockTucker;
import io.bifuse.Linear;
import io.bifuse.LinearGradients;
import io.bifuse.Precision;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Map;

/**
 * {@link BlockTucker} (and {@link io.bifuse.Tucker} through {@link TuckerCuda}) on one GPU: cuBLAS for the
 * layers and each chunk's core, {@code cuda/BlockTucker.cu} for the outer products and contractions,
 * {@code cuda/Normalization.cu} for the normalization.
 *
 * <p>Each chunk's core {@code z_c[k] = Σ_ij x̃_i A_c[k, i, j] ỹ_j + a_c[k]} is a GEMM of the rows' outer
 * products {@code U = x̃_c ⊗ ỹ_c} ({@code n × s²}, made by {@code btucker_outer} for at most
 * {@value #MAX_OUTER} floats of rows at a time) with {@code A_c} as an {@code s × s²} layer, written into
 * the chunk's columns of {@code z}. Backward recomputes the forward; per chunk and row block it remakes
 * U, accumulates {@code ∂A_c += gz_cᵀ·U} (beta 0 for the first block, then 1: a fixed order), forms
 * {@code gU = gz_c·A_c} and contracts it with ỹ and x̃ ({@code btucker_contract}) into the chunk's
 * columns of {@code ∂x̃ | ∂ỹ}; the core's bias gradient is one column sum over all rows. Then linear0's
 * and linear1's gradients, as {@link BlockCuda}'s (a shared op sums both sides).
 */
public final class BlockTuckerCuda extends FusionCuda<BlockTucker, BlockTucker.Gradients> implements BlockTucker.Backend {
    public static final KernelSpec OUTER = new KernelSpec("btucker_outer", "pppiiiii");
    public static final KernelSpec CONTRACT = new KernelSpec("btucker_contract", "pppppiiiii");
    static final List<KernelSpec> KERNELS = List.of(OUTER, CONTRACT);

    /** At most this many floats of outer products (and as many of their gradients) per GEMM block: 64 MB each. */
    public static final int MAX_OUTER = 1 << 24;
    /** {@link #MAX_OUTER} unless a test lowers it to make several row blocks at sizes the simulated device can afford. */
    static volatile int maxOuter = MAX_OUTER;
    private static final int XY = 0, Z = 1, ZH = 2, GZ = 3, GXY = 4, U = 5, GU = 6;

    private final LinearCuda linear0, linear1, linearOut;
    private final LinearCuda[] cores;
    private final NormalizationCuda norm;

    public BlockTuckerCuda(BlockTucker op, CudaContext context) {
        this(op, context, Precision.FP32);
    }

    /** This op with its GEMMs in {@code precision}; uploads the weights once (close it to free them). */
    public BlockTuckerCuda(BlockTucker op, CudaContext context, Precision precision) {
        super("a BlockTucker", op, context, precision);
        try {
            linear0 = own(new LinearCuda(context, op.linear0()));
            linear1 = op.isShared() ? linear0 : own(new LinearCuda(context, op.linear1()));
            linearOut = own(new LinearCuda(context, op.linearOut()));
            cores = new LinearCuda[op.chunks()];
            int[] sizes = new int[op.chunks()];
            for (int c = 0; c < cores.length; c++) {
                BilinearLayer b = op.bilinears().get(c);
                cores[c] = own(new LinearCuda(context, new Linear(b.out(), b.in1() * b.in2(), b.weight(), b.bias())));
                sizes[c] = op.chunkSize(c);
            }
            norm = op.normalization().isIdentity() ? null : own(new NormalizationCuda(context, op.normalization(),
                    op.position() == Block.NormPosition.AFTER_CAT ? NormalizationCuda.wholeRow(op.mmDim()) : NormalizationCuda.ofSizes(sizes)));
        } catch (RuntimeException e) {
            throw failed(e);
        }
    }

    @Override public List<String> gradientNames() { return op.gradientNames(); }

    @Override List<Long> parameterSizes() {
        List<Long> s = new ArrayList<>();
        addSizes(s, op.linear0());
        addSizes(s, op.linear1());
        for (LinearCuda c : cores) addSizes(s, c.layer());
        addSizes(s, op.linearOut());
        return s;
    }

    @Override BlockTucker.Gradients gradients(List<float[]> tensors) {
        Iterator<float[]> t = tensors.iterator();
        float[] dx = t.next(), dy = t.next();
        LinearGradients l0 = next(t, op.linear0()), l1 = next(t, op.linear1());
        List<BlockTucker.BilinearGradients> b = new ArrayList<>();
        for (LinearCuda c : cores) {
            LinearGradients g = next(t, c.layer());
            b.add(new BlockTucker.BilinearGradients(g.weight(), g.bias()));
        }
        return new BlockTucker.Gradients(dx, dy, l0, l1, b, next(t, op.linearOut()));
    }

    /** Rows per outer-product block of chunk c. */
    private int rowsPerBlock(int c, int batch) {
        long s2 = (long) op.chunkSize(c) * op.chunkSize(c);
        return (int) Math.max(1, Math.min(batch, maxOuter / s2));
    }

    /** Floats of the outer-product workspace: the largest chunk's block. */
    private long outerFloats(int batch) {
        long most = 0;
        for (int c = 0; c < cores.length; c++) most = Math.max(most, (long) rowsPerBlock(c, batch) * op.chunkSize(c) * op.chunkSize(c));
        return most;
    }

    private void outer(Workspace w, DeviceMatrix xy, DeviceMemory u, int c, int r0, int n, CudaStream stream) {
        int batch = w.batch, s = op.chunkSize(c);
        context.launch(OUTER, grid((long) n * s * s), 1, BLOCK, 0, stream, xy.rows(0, batch).memory(), xy.rows(batch, batch).memory(), u, r0, n,
                op.mmDim(), op.chunkOffset(c), s);
    }

    /** Up to ẑ: x̃ | ỹ, z (and ẑ); returns ẑ. */
    private DeviceMatrix core(Workspace w, DeviceMemory x, DeviceMemory y, int batch, CudaStream stream) {
        int m = op.mmDim();
        DeviceMatrix xy = w.matrix(XY, "x̃ | ỹ", 2 * batch, m), z = w.matrix(Z, "z", batch, m);
        linear0.forward(w.blas, precision, DeviceMatrix.of("x", x, batch, op.dx()), xy.rows(0, batch), stream);
        linear1.forward(w.blas, precision, DeviceMatrix.of("y", y, batch, op.dy()), xy.rows(batch, batch), stream);
        DeviceMemory u = w.floats(U, outerFloats(batch));
        for (int c = 0; c < cores.length; c++) {
            int s = op.chunkSize(c), per = rowsPerBlock(c, batch);
            for (int r0 = 0; r0 < batch; r0 += per) {
                int n = Math.min(per, batch - r0);
                outer(w, xy, u, c, r0, n, stream);
                cores[c].forward(w.blas, precision, DeviceMatrix.of("U", u, n, s * s), z.rows(r0, n).columns(op.chunkOffset(c), s), stream);
            }
        }
        if (norm == null) return z;
        DeviceMatrix zh = w.matrix(ZH, "ẑ", batch, m);
        norm.forward(z.memory(), zh.memory(), batch, stream);
        return zh;
    }

    @Override void forward(Workspace w, DeviceMemory x, DeviceMemory y, DeviceMemory out, int batch, CudaStream stream) {
        linearOut.forward(w.blas, precision, core(w, x, y, batch, stream), DeviceMatrix.of("out", out, batch, op.out()), stream);
    }

    @Override void backward(Workspace w, DeviceMemory x, DeviceMemory y, DeviceMemory gradOut, Map<String, DeviceMemory> grads, int batch,
                            CudaStream stream) {
        int m = op.mmDim();
        DeviceMatrix zh = core(w, x, y, batch, stream), g = DeviceMatrix.of("gradOut", gradOut, batch, op.out());
        DeviceMatrix xy = w.matrix(XY, "x̃ | ỹ", 2 * batch, m);
        linearOut.backwardParameters(w.blas, precision, g, zh, weight(grads, "linear_out"), bias(grads, "linear_out"), stream);
        DeviceMatrix gz = w.matrix(GZ, "∂z", batch, m);
        linearOut.backwardInput(w.blas, precision, g, 0f, gz);
        if (norm != null) norm.backward(w.floats(Z, (long) batch * m), gz.memory(), gz.memory(), batch, stream);
        DeviceMatrix gxy = w.matrix(GXY, "∂x̃ | ∂ỹ", 2 * batch, m);
        DeviceMemory u = w.floats(U, outerFloats(batch)), gu = w.floats(GU, outerFloats(batch));
        for (int c = 0; c < cores.length; c++) {
            int s = op.chunkSize(c), o = op.chunkOffset(c), per = rowsPerBlock(c, batch);
            String name = "bilinears." + c;
            if (cores[c].layer().hasBias()) LinearCuda.biasGradient(context, gz.columns(o, s), bias(grads, name), stream);
            for (int r0 = 0; r0 < batch; r0 += per) {
                int n = Math.min(per, batch - r0);
                DeviceMatrix gzc = gz.rows(r0, n).columns(o, s), mu = DeviceMatrix.of("U", u, n, s * s), mgu = DeviceMatrix.of("∂U", gu, n, s * s);
                outer(w, xy, u, c, r0, n, stream);
                cores[c].backwardWeight(w.blas, precision, gzc, mu, weight(grads, name), r0 == 0 ? 0f : 1f);
                cores[c].backwardInput(w.blas, precision, gzc, 0f, mgu);
                context.launch(CONTRACT, grid((long) n * s), 1, BLOCK, 0, stream, gu, xy.rows(0, batch).memory(), xy.rows(batch, batch).memory(),
                        gxy.rows(0, batch).memory(), gxy.rows(batch, batch).memory(), r0, n, m, o, s);
            }
        }
        inputLayersBackward(w, linear0, linear1, op.isShared(), gxy, x, y, grads, stream);
    }
}
