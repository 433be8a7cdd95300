package io.bifuse.cuda;

import io.bifuse.Activation;
import io.bifuse.Linear;
import io.bifuse.Precision;
import java.util.List;

/**
 * One {@link Linear} layer's parameters on a GPU ({@code weight} {@code out × in}, {@code bias}
 * {@code out}, as uploaded once), with the GEMMs of its forward and backward on row-major activations.
 * The building block of the low-rank bilinear operators' CUDA paths; {@code cuda/Linear.cu} holds its
 * two kernels. Gradients are WRITTEN (not accumulated) into the caller's buffers.
 */
public final class LinearCuda implements AutoCloseable {
    public static final KernelSpec BIAS_ROWS = new KernelSpec("lin_bias_rows", "ppiii");
    public static final KernelSpec BIAS_GRAD = new KernelSpec("lin_bias_grad_tiled", "ppiii");
    /** The one-thread-per-column version, the tiled one's cross-check (tests only). */
    static final KernelSpec BIAS_GRAD_SIMPLE = new KernelSpec("lin_bias_grad", "ppiii");
    public static final KernelSpec BIAS_ACT = new KernelSpec("lin_bias_act", "ppiiii");
    public static final KernelSpec ACT_GRAD = new KernelSpec("lin_act_grad", "pppiii");
    public static final KernelSpec COPY_COLS = new KernelSpec("lin_copy_cols", "pipiii");
    static final List<KernelSpec> KERNELS = List.of(BIAS_ROWS, BIAS_GRAD, BIAS_GRAD_SIMPLE, BIAS_ACT, ACT_GRAD, COPY_COLS);
    /** lin_bias_grad_tiled's columns per block (LIN_COLS in Linear.cu). */
    static final int BIAS_GRAD_COLS = 8;
    private static final int BLOCK = 256;

    private final CudaContext context;
    private final Linear layer;
    private final DeviceBuffer weight, bias;

    public LinearCuda(CudaContext context, Linear layer) {
        if (context == null) throw new IllegalArgumentException("context: expected an open CudaContext, got null");
        if (layer == null) throw new IllegalArgumentException("layer: expected a Linear, got null");
        this.context = context;
        this.layer = layer;
        DeviceBuffer w = DeviceBuffer.of(context, layer.weight());
        try {
            this.bias = DeviceBuffer.of(context, layer.biasOrZeros());
        } catch (RuntimeException e) {
            w.close();
            throw e;
        }
        this.weight = w;
    }

    public Linear layer() { return layer; }
    public DeviceMemory weight() { return weight; }
    /** The bias on the device (zeros when the layer has none). */
    public DeviceMemory bias() { return bias; }
    public long deviceBytes() { return weight.byteSize() + bias.byteSize(); }

    /** {@code y (rows × out) = x (rows × in) · Wᵀ}, no bias: for projections whose bias is fused downstream. */
    public void project(CublasHandle blas, Precision p, DeviceMatrix x, DeviceMatrix y) {
        int rows = checkPair(x, "in", layer.in(), y, "out", layer.out());
        blas.gemm(p, false, true, rows, layer.out(), layer.in(), 1f, x.memory(), x.ld(), weight, layer.in(), 0f, y.memory(), y.ld());
    }

    /** {@code y = x·Wᵀ + b} (bias rows first, then the GEMM with beta = 1), queued on {@code stream}. */
    public void forward(CublasHandle blas, Precision p, DeviceMatrix x, DeviceMatrix y, CudaStream stream) {
        int rows = checkPair(x, "in", layer.in(), y, "out", layer.out());
        long total = (long) rows * layer.out();
        context.launch(BIAS_ROWS, grid(total), 1, BLOCK, 0, stream, y.memory(), bias, rows, layer.out(), y.ld());
        blas.gemm(p, false, true, rows, layer.out(), layer.in(), 1f, x.memory(), x.ld(), weight, layer.in(), 1f, y.memory(), y.ld());
    }

    /**
     * {@code y = act(x·Wᵀ + b)}: a bias-free GEMM, then bias and activation in one pass
     * ({@code lin_bias_act}), queued on {@code stream}.
     */
    public void forward(CublasHandle blas, Precision p, DeviceMatrix x, DeviceMatrix y, Activation act, CudaStream stream) {
        project(blas, p, x, y);
        context.launch(BIAS_ACT, grid((long) y.rows() * y.cols()), 1, BLOCK, 0, stream, y.memory(), bias, y.rows(), y.cols(), y.ld(), act.code());
    }

    /** {@code y = act(x·Wᵀ + b)}: {@link #forward(CublasHandle, Precision, DeviceMatrix, DeviceMatrix, CudaStream)} for NONE, the fused bias and activation otherwise. */
    public void forwardActivated(CublasHandle blas, Precision p, DeviceMatrix x, DeviceMatrix y, Activation act, CudaStream stream) {
        if (act == Activation.NONE) forward(blas, p, x, y, stream);
        else forward(blas, p, x, y, act, stream);
    }

    /**
     * The backward of {@link #forwardActivated} (a fusion's output layer): {@code gpre = g ⊙ act'(f)}
     * with {@code f} recomputed from {@code x} into the scratch {@code f} ({@code rows × out}; unused, may be
     * null, for NONE, where {@code gpre = g}), then {@code gW = gpreᵀ·x}, {@code gb = Σ_rows gpre} (skipped
     * when null) and {@code gx = gpre·W}, queued on {@code stream}.
     */
    public void backwardActivated(CublasHandle blas, Precision p, DeviceMatrix x, DeviceMatrix g, Activation act, DeviceMemory f, DeviceMemory gw,
                                  DeviceMemory gb, DeviceMatrix gx, CudaStream stream) {
        DeviceMatrix gpre = g;
        if (act != Activation.NONE) {
            DeviceMatrix fm = DeviceMatrix.of("f", f, g.rows(), layer.out());
            forward(blas, p, x, fm, act, stream);
            activationGrad(context, g.memory(), f, f, g.rows(), layer.out(), act, stream);
            gpre = fm;
        }
        backwardParameters(blas, p, gpre, x, gw, gb, stream);
        backwardInput(blas, p, gpre, 0f, gx);
    }

    /** {@code gW (out × in) = gᵀ·x + beta·gW}: the weight gradient only ({@code beta = 1} accumulates onto {@code gw}). */
    public void backwardWeight(CublasHandle blas, Precision p, DeviceMatrix g, DeviceMatrix x, DeviceMemory gw, float beta) {
        int rows = checkPair(g, "out", layer.out(), x, "in", layer.in());
        DeviceArgs.memory("gw", gw, layer.out(), layer.in());
        blas.gemm(p, true, false, layer.out(), layer.in(), rows, 1f, g.memory(), g.ld(), x.memory(), x.ld(), beta, gw, layer.in());
    }

    /** {@code out = g ⊙ act'(a)} elementwise over {@code n} floats, {@code a} the activation's output; {@code out} may be {@code g} or {@code a}. */
    public static void activationGrad(CudaContext context, DeviceMemory g, DeviceMemory a, DeviceMemory out, int rows, int cols, Activation act,
                                      CudaStream stream) {
        context.launch(ACT_GRAD, DeviceArgs.grid(context, (long) rows * cols, BLOCK), 1, BLOCK, 0, stream, g, a, out, rows, cols, act.code());
    }

    /** {@code dst = src}, element by element, each with its own row stride (the shapes must agree). */
    public static void copy(CudaContext context, DeviceMatrix src, DeviceMatrix dst, CudaStream stream) {
        if (src.rows() != dst.rows() || src.cols() != dst.cols()) {
            throw new IllegalArgumentException(dst.name() + ": expected " + src.rows() + " × " + src.cols() + " (as " + src.name() + "), got " + dst.rows() + " × " + dst.cols());
        }
        if (src.rows() == 0) return;
        context.launch(COPY_COLS, DeviceArgs.grid(context, (long) src.rows() * src.cols(), BLOCK), 1, BLOCK, 0, stream, src.memory(), src.ld(),
                dst.memory(), dst.ld(), src.rows(), src.cols());
    }

    /** {@code gx (rows × in) = g (rows × out) · W} (plus {@code beta·gx}: 1 to accumulate into it). */
    public void backwardInput(CublasHandle blas, Precision p, DeviceMatrix g, float beta, DeviceMatrix gx) {
        int rows = checkPair(g, "out", layer.out(), gx, "in", layer.in());
        blas.gemm(p, false, false, rows, layer.in(), layer.out(), 1f, g.memory(), g.ld(), weight, layer.in(), beta, gx.memory(), gx.ld());
    }

    /**
     * {@code gW (out × in) = gᵀ·x} and, if {@code gb} is not null, {@code gb (out) = Σ_rows g}, queued on
     * {@code stream} (the bias gradient is a fixed-order column sum: deterministic).
     */
    public void backwardParameters(CublasHandle blas, Precision p, DeviceMatrix g, DeviceMatrix x, DeviceMemory gw, DeviceMemory gb,
                                   CudaStream stream) {
        int rows = checkPair(g, "out", layer.out(), x, "in", layer.in());
        DeviceArgs.memory("gw", gw, layer.out(), layer.in());
        blas.gemm(p, true, false, layer.out(), layer.in(), rows, 1f, g.memory(), g.ld(), x.memory(), x.ld(), 0f, gw, layer.in());
        if (gb != null) biasGradient(context, g, gb, stream);
    }

    /** {@code gb[c] = Σ_r g[r, c]} over the rows of {@code g}. */
    public static void biasGradient(CudaContext context, DeviceMatrix g, DeviceMemory gb, CudaStream stream) {
        if (g == null) throw new IllegalArgumentException("g: expected a DeviceMatrix, got null");
        DeviceArgs.memory("gb", gb, 1, g.cols());
        context.launch(BIAS_GRAD, DeviceArgs.grid(context, (long) (g.cols() + BIAS_GRAD_COLS - 1) / BIAS_GRAD_COLS * BLOCK, BLOCK), 1, BLOCK, 0,
                stream, g.memory(), gb, g.rows(), g.cols(), g.ld());
    }

    /**
     * The rows both matrices share, after checking each has this layer's width on its side
     * ({@code a} {@code aCols} columns, {@code b} {@code bCols}), each by its own name.
     */
    private static int checkPair(DeviceMatrix a, String aSide, int aCols, DeviceMatrix b, String bSide, int bCols) {
        if (a == null || b == null) throw new IllegalArgumentException((a == null ? "the " + aSide : "the " + bSide) + " matrix: expected a DeviceMatrix, got null");
        if (a.cols() != aCols) throw new IllegalArgumentException(a.name() + ": expected " + aCols + " columns (the layer's " + aSide + "), got " + a.cols());
        if (b.cols() != bCols) throw new IllegalArgumentException(b.name() + ": expected " + bCols + " columns (the layer's " + bSide + "), got " + b.cols());
        if (a.rows() != b.rows()) throw new IllegalArgumentException(b.name() + ": expected the " + a.rows() + " rows of " + a.name() + ", got " + b.rows());
        return a.rows();
    }

    private int grid(long threads) { return DeviceArgs.grid(context, threads, BLOCK); }

    @Override public void close() {
        weight.close();
        bias.close();
    }
}
