package io.bifuse.cuda;

import io.bifuse.FullBilinear;
import io.bifuse.Gradients;
import io.bifuse.Normalization;
import io.bifuse.Precision;
import java.util.List;

/**
 * {@link FullBilinear} on one GPU: cuBLAS strided-batched GEMMs in the op's {@link Precision} plus the
 * normalization kernels of {@code cuda/FullBilinear.cu}.
 *
 * <p>Forward: ONE {@code gemmStridedBatched} computes every sample's {@code α·X_bᵀY_b} straight into
 * {@code out} ({@code α = 1/L} when averaging, in the GEMM's alpha); then, unless the normalization is
 * the identity, a per-chunk partial sum of {@code u²} and the fused combine + signed sqrt + scale pass,
 * in place in {@code out}. The normalization's reduction runs over a (chunks × samples) grid, not one
 * block per sample: at the spec's size a sample has 262144 entries and there are only 32 samples.
 *
 * <p>Backward saves nothing from the forward (stateless, like the MCB op): it recomputes {@code Z}
 * from the inputs with the forward's GEMM into a {@code B × C1·C2} workspace, turns it in place into
 * {@code G = ∂L/∂Z} (partials of {@code Σu²} and {@code <u, g>}, then the fused chain rule), and ends
 * with {@code ∂L/∂X_b = α·Y_b·G_bᵀ} and {@code ∂L/∂Y_b = α·X_b·G_b}, one strided-batched GEMM each
 * (homologous: {@code α·X_b·G_b} then {@code + α·X_b·G_bᵀ} with beta 1). Without normalization
 * {@code G} is {@code gradOut} itself and neither the recompute nor the workspace happens. The
 * recompute costs one forward GEMM (a third of the backward's FLOPs); a caller that keeps the forward's
 * pre-normalization {@code Z} could skip it, but {@code out} is post-normalization and inverting the
 * l2 scale needs the norm, so no saved-activation variant is offered yet.
 *
 * <p>Not done: the homologous {@code XᵀX} is symmetric and a SYRK would halve its FLOPs (forward and
 * the recompute), but {@link CublasHandle} binds no {@code cublasSsyrk}; the GEMM computes both halves.
 *
 * <p>Workspaces (partials, the backward's {@code Z}/{@code G} buffer, made on the first backward) and
 * a cuBLAS handle bound to the stream are made once per (stream, B) and kept (the
 * {@value #MAX_WORKSPACES} most recently used), so repeated calls allocate nothing. Calls on one stream
 * are serialized on its workspace; calls on different streams run concurrently. Device inputs may come
 * from another library ({@link DeviceMemory#wrap}, {@link CudaStream#wrap}); every argument is checked
 * before anything is queued. Calls are asynchronous with respect to the host, except the {@code float[]}
 * conveniences.
 */
public final class FullBilinearCuda extends CudaOp<FullBilinear> implements FullBilinear.Backend {
    public static final KernelSpec PARTIAL_FORWARD = new KernelSpec("fbp_partial_forward", "ppiiiii");
    public static final KernelSpec NORMALIZE_FORWARD = new KernelSpec("fbp_normalize_forward", "pppiiiiiif");
    public static final KernelSpec PARTIAL_BACKWARD = new KernelSpec("fbp_partial_backward", "pppiiiii");
    public static final KernelSpec NORMALIZE_BACKWARD = new KernelSpec("fbp_normalize_backward", "ppppiiiiifif");
    static final List<KernelSpec> KERNELS = List.of(PARTIAL_FORWARD, NORMALIZE_FORWARD, PARTIAL_BACKWARD, NORMALIZE_BACKWARD);

    static final int MAX_WORKSPACES = 4;
    private static final int BLOCK = 256;           // the kernels' FBP_BLOCK
    /** Entries per chunk the chunking aims at: 16 per thread, enough blocks for B = 32 at d = 262144. */
    static final int CHUNK_TARGET = 4096;
    static final int MAX_CHUNKS = 1024;

    private final int chunks, chunk;
    private final Workspaces<Integer, Workspace> workspaces = new Workspaces<>("FullBilinearCuda", MAX_WORKSPACES);

    @Override Workspaces<?, ?> workspaces() { return workspaces; }

    /** This op on a GPU with FP32 GEMMs (the default; TF32 and BF16 only when passed explicitly). */
    public FullBilinearCuda(FullBilinear op, CudaContext context) {
        this(op, context, Precision.FP32);
    }

    /**
     * This op on a GPU with its GEMMs in {@code precision} ({@link Precision#FP32} unless you accept
     * the documented error of the reduced modes). Uploads the weights once; close it to free them and
     * its workspaces.
     */
    public FullBilinearCuda(FullBilinear op, CudaContext context, Precision precision) {
        super("a FullBilinear", op, context, precision, Needs.CUBLAS, MAX_WORKSPACES);
        this.chunks = chunks(op.outputSize());
        this.chunk = (int) ((op.outputSize() + (long) chunks - 1) / chunks);
    }

    /** How many chunks a sample of {@code d} entries is split into: from {@code d} alone (determinism). */
    static int chunks(int d) {
        long c = (d + (long) CHUNK_TARGET - 1) / CHUNK_TARGET;
        return (int) Math.max(1, Math.min(c, MAX_CHUNKS));
    }


    /** {@code out (B × C1·C2) = op(x (B × L × C1), y (B × L × C2))}, queued on {@code stream}. Two-input ops. */
    public void forward(DeviceMemory x, DeviceMemory y, DeviceMemory out, int batch, int positions, CudaStream stream) {
        requireTwoInputs();
        FullBilinear.checkShape(batch, positions);
        checkMemory("x", x, batch, positions, op.c1());
        checkMemory("y", y, batch, positions, op.c2());
        checkMemory("out", out, batch, 1, op.outputSize());
        requireStream(stream);
        forwardChecked(x, y, out, batch, positions, stream);
    }

    /** {@code out (B × C·C) = op(x (B × L × C))} for a homologous op, queued on {@code stream}. */
    public void forward(DeviceMemory x, DeviceMemory out, int batch, int positions, CudaStream stream) {
        requireOneInput();
        FullBilinear.checkShape(batch, positions);
        checkMemory("x", x, batch, positions, op.c1());
        checkMemory("out", out, batch, 1, op.outputSize());
        requireStream(stream);
        forwardChecked(x, x, out, batch, positions, stream);
    }

    /**
     * {@code gradX (B × L × C1), gradY (B × L × C2)} from {@code gradOut = ∂L/∂out (B × C1·C2)} and the
     * forward's inputs, queued on {@code stream}. {@code gradOut} is only read. Two-input ops.
     */
    public void backward(DeviceMemory x, DeviceMemory y, DeviceMemory gradOut, DeviceMemory gradX, DeviceMemory gradY,
                         int batch, int positions, CudaStream stream) {
        requireTwoInputs();
        FullBilinear.checkShape(batch, positions);
        checkMemory("x", x, batch, positions, op.c1());
        checkMemory("y", y, batch, positions, op.c2());
        checkMemory("gradOut", gradOut, batch, 1, op.outputSize());
        checkMemory("gradX", gradX, batch, positions, op.c1());
        checkMemory("gradY", gradY, batch, positions, op.c2());
        requireStream(stream);
        backwardChecked(x, y, gradOut, gradX, gradY, batch, positions, stream);
    }

    /** {@code gradX (B × L × C)}, both paths of {@code x} summed, for a homologous op, queued on {@code stream}. */
    public void backward(DeviceMemory x, DeviceMemory gradOut, DeviceMemory gradX, int batch, int positions, CudaStream stream) {
        requireOneInput();
        FullBilinear.checkShape(batch, positions);
        checkMemory("x", x, batch, positions, op.c1());
        checkMemory("gradOut", gradOut, batch, 1, op.outputSize());
        checkMemory("gradX", gradX, batch, positions, op.c1());
        requireStream(stream);
        backwardChecked(x, x, gradOut, gradX, null, batch, positions, stream);
    }

    private void forwardChecked(DeviceMemory x, DeviceMemory y, DeviceMemory out, int batch, int positions, CudaStream stream) {
        inWorkspace(stream, batch, w -> {
            pooled(w, x, y, out, batch, positions);
            Normalization n = op.normalization();
            if (n.isIdentity()) return;
            int rows = rowGrid(batch);
            if (n.l2() != Normalization.L2.NONE) {
                context.launch(PARTIAL_FORWARD, chunks, rows, BLOCK, 0, stream, out, w.partial, batch, op.outputSize(), chunk, chunks,
                        n.signedSqrt() ? 1 : 0);
            }
            context.launch(NORMALIZE_FORWARD, chunks, rows, BLOCK, 0, stream, out, w.partial, out, batch, op.outputSize(), chunk, chunks,
                    n.signedSqrt() ? 1 : 0, n.l2().code(), n.l2Eps());
        });
    }

    private void backwardChecked(DeviceMemory x, DeviceMemory y, DeviceMemory gradOut, DeviceMemory gradX, DeviceMemory gradY,
                                 int batch, int positions, CudaStream stream) {
        inWorkspace(stream, batch, w -> {
            Normalization n = op.normalization();
            DeviceMemory g = gradOut;
            if (!n.isIdentity()) {
                DeviceMemory z = w.gradPooled();
                pooled(w, x, y, z, batch, positions);
                int rows = rowGrid(batch);
                if (n.l2() != Normalization.L2.NONE) {
                    context.launch(PARTIAL_BACKWARD, chunks, rows, BLOCK, 0, stream, z, gradOut, w.partial, batch, op.outputSize(), chunk,
                            chunks, n.signedSqrt() ? 1 : 0);
                }
                context.launch(NORMALIZE_BACKWARD, chunks, rows, BLOCK, 0, stream, z, gradOut, w.partial, z, batch, op.outputSize(), chunk,
                        chunks, n.signedSqrt() ? 1 : 0, n.signedSqrtGradEps(), n.l2().code(), n.l2Eps());
                g = z;
            }
            int c1 = op.c1(), c2 = op.c2(), len = positions;
            long d = op.outputSize();
            float alpha = (float) op.scale(positions);
            if (op.isHomologous()) {
                // ∂L/∂X_b = α X_b G_b + α X_b G_bᵀ: the left-factor path, then the right-factor path added (beta 1).
                w.blas.gemmStridedBatched(precision, false, false, len, c1, c1, alpha, x, c1, (long) len * c1, g, c1, d,
                        0f, gradX, c1, (long) len * c1, batch);
                w.blas.gemmStridedBatched(precision, false, true, len, c1, c1, alpha, x, c1, (long) len * c1, g, c1, d,
                        1f, gradX, c1, (long) len * c1, batch);
            } else {
                // ∂L/∂X_b (L × C1) = α Y_b (L × C2) · G_bᵀ;  ∂L/∂Y_b (L × C2) = α X_b (L × C1) · G_b.
                w.blas.gemmStridedBatched(precision, false, true, len, c1, c2, alpha, y, c2, (long) len * c2, g, c2, d,
                        0f, gradX, c1, (long) len * c1, batch);
                w.blas.gemmStridedBatched(precision, false, false, len, c2, c1, alpha, x, c1, (long) len * c1, g, c2, d,
                        0f, gradY, c2, (long) len * c2, batch);
            }
        });
    }

    /** {@code z_b = α·X_bᵀY_b} for every sample: one strided-batched GEMM (m = C1, n = C2, k = L). */
    private void pooled(Workspace w, DeviceMemory x, DeviceMemory y, DeviceMemory z, int batch, int positions) {
        int c1 = op.c1(), c2 = op.c2(), len = positions;
        w.blas.gemmStridedBatched(precision, true, false, c1, c2, len, (float) op.scale(positions), x, c1, (long) len * c1,
                y, c2, (long) len * c2, 0f, z, c2, (long) c1 * c2, batch);
    }

    /**
     * Host convenience for a two-input op: copies in, runs on a private stream of this op's (kept, with
     * its buffers, for the next call), copies out.
     */
    public float[] forward(float[] x, float[] y, int batch, int positions) {
        op.checkInputs(x, y, batch, positions);
        return host.run(lane -> {
            DeviceMemory out = lane.floats((long) batch * op.outputSize());
            forward(lane.in(x), lane.in(y), out, batch, positions, lane.stream());
            return lane.read(out);
        });
    }

    /** Host convenience for a homologous op. */
    public float[] forward(float[] x, int batch, int positions) {
        op.checkInput(x, batch, positions);
        return host.run(lane -> {
            DeviceMemory out = lane.floats((long) batch * op.outputSize());
            forward(lane.in(x), out, batch, positions, lane.stream());
            return lane.read(out);
        });
    }

    /** Host convenience for a two-input op. */
    public Gradients backward(float[] x, float[] y, float[] gradOut, int batch, int positions) {
        op.checkInputs(x, y, batch, positions);
        FullBilinear.checkLength("gradOut", gradOut, batch, op.outputSize());
        return host.run(lane -> {
            DeviceMemory dx = lane.in(x), dy = lane.in(y), g = lane.in(gradOut), gx = lane.floats(x.length), gy = lane.floats(y.length);
            backward(dx, dy, g, gx, gy, batch, positions, lane.stream());
            return new Gradients(lane.read(gx), lane.read(gy));
        });
    }

    /** Host convenience for a homologous op: {@code ∂L/∂x}. */
    public float[] backward(float[] x, float[] gradOut, int batch, int positions) {
        op.checkInput(x, batch, positions);
        FullBilinear.checkLength("gradOut", gradOut, batch, op.outputSize());
        return host.run(lane -> {
            DeviceMemory dx = lane.in(x), g = lane.in(gradOut), gx = lane.floats(x.length);
            backward(dx, g, gx, batch, positions, lane.stream());
            return lane.read(gx);
        });
    }

    private void requireTwoInputs() {
        if (op.isHomologous()) throw new IllegalArgumentException("y: this op is homologous (Y = X) and takes one input; call the form without y");
    }

    private void requireOneInput() {
        if (!op.isHomologous()) {
            throw new IllegalArgumentException("y: this op takes two inputs (C1 = " + op.c1() + ", C2 = " + op.c2() + "), got only x");
        }
    }

    private static void requireStream(CudaStream stream) {
        if (stream == null) throw new IllegalArgumentException("stream: expected a CudaStream (CudaStream.LEGACY_DEFAULT for the default), got null");
    }

    private int rowGrid(int rows) { return Math.min(rows, 65535); }

    private static void checkMemory(String name, DeviceMemory m, int batch, int rows, int cols) {
        String shape = rows == 1 ? batch + " × " + cols : batch + " × " + rows + " × " + cols;
        if (m == null) throw new IllegalArgumentException(name + ": expected device memory for " + shape + " floats, got null");
        if (!m.isOpen()) throw new IllegalArgumentException(name + ": the device buffer is closed");
        long need = 4L * batch * rows * cols;
        if (m.byteSize() < need) {
            throw new IllegalArgumentException(name + ": expected at least " + shape + " floats (" + need + " bytes), got " + m.byteSize() + " bytes");
        }
        if (m.address() % 4 != 0) throw new IllegalArgumentException(name + ": expected a 4-byte aligned address, got 0x" + Long.toHexString(m.address()));
    }

    /** Runs {@code body} in this op's workspace for (stream, shape): {@link Workspaces#run}. */
    private void inWorkspace(CudaStream stream, int batch, java.util.function.Consumer<Workspace> body) {
        workspaces.run(stream, batch, s -> new Workspace(s, batch), body);
    }

    /** The buffers and the cuBLAS handle of one (stream, B). */
    private final class Workspace extends Workspaces.Workspace {
        final int batch;
        final CublasHandle blas;
        final DeviceBuffer partial;   // B × chunks × 2 doubles
        private DeviceBuffer pooled;  // B × C1·C2 floats: the backward's Z, then G in place; made on first backward

        Workspace(CudaStream stream, int batch) {
            super(FullBilinearCuda.this.context, stream);
            this.batch = batch;
            try {
                this.blas = own(new CublasHandle(context, stream));
                this.partial = own(DeviceBuffer.allocate(context, 16L * batch * chunks));
            } catch (RuntimeException e) {
                close();
                throw e;
            }
        }

        DeviceMemory gradPooled() {
            if (pooled == null) pooled = own(DeviceBuffer.allocateFloats(context, (long) batch * op.outputSize()));
            return pooled;
        }
    }
}
