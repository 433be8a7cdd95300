package io.bifuse.cuda;

import io.bifuse.Linear;
import io.bifuse.LinearGradients;
import io.bifuse.Mfb;
import io.bifuse.Normalization;
import io.bifuse.Precision;
import java.util.ArrayList;
import java.util.List;

/**
 * {@link Mfb} (MFB, and MFH with several blocks) on one GPU: cuBLAS for the GEMMs, {@code cuda/Mfb.cu}
 * for everything between them.
 *
 * <p>Weights: every block's U is stacked into one {@code n·o·k × Dx} device matrix (block i's rows at
 * {@code i·o·k}, i.e. {@code torch.cat} of the weights) and every V into {@code n·o·k × Dy}, with the
 * biases stacked likewise (zeros for a layer without bias), uploaded once. So ONE GEMM per input projects
 * all blocks.
 *
 * <p>Forward: {@code P = x·Uᵀ}, {@code Q = y·Vᵀ} (no bias; {@code B × n·o·k} workspaces), then one
 * {@code mfb_forward} launch (one thread block per sample) that adds the biases, applies σ, multiplies,
 * carries the MFH chain, sum-pools, and applies the signed sqrt and l2 per block, writing only the
 * {@code B × n·o} output.
 *
 * <p>Backward SAVES NOTHING from the forward (stateless, like {@link CompactBilinearCuda}): it recomputes
 * {@code P} and {@code Q} with the same two GEMMs, then one {@code mfb_backward} launch recomputes the
 * pooled vectors and their norms, goes back through l2, the signed sqrt, the pooling, the chain (later
 * blocks' gradients flow into earlier ones) and σ, and writes {@code ∂L/∂P}, {@code ∂L/∂Q} for all blocks;
 * then {@code dx = ∂L/∂P·U}, {@code dy = ∂L/∂Q·V}, {@code dU = ∂L/∂Pᵀ·x}, {@code dV = ∂L/∂Qᵀ·y} (one
 * GEMM each, all blocks at once) and the bias column sums (fixed order: deterministic). Recomputing costs
 * two of the six backward GEMMs; saving {@code P, Q} instead would hold {@code 8·B·n·o·k} bytes between
 * the passes (41 MB at the spec's MFH size).
 *
 * <p>With an output layer ({@link Mfb#withOutput}, block.bootstrap's {@code linear_out} and
 * {@code activ_output}) {@code mfb_forward} writes the pooled, normalized {@code n} ({@code B × n·o}) into
 * a workspace and the layer is one cuBLAS GEMM with {@code lin_bias_act}; its backward recomputes {@code n}
 * (and the layer's output when σ_out needs it), takes {@code gpre = ∂L/∂out ⊙ σ_out'} ({@code lin_act_grad}),
 * {@code ∂W = gpreᵀ·n}, {@code ∂b}, and feeds {@code ∂n = gpre·W} to {@code mfb_backward} in place of
 * {@code gradOut}.
 *
 * <p>GEMM arithmetic: {@link Precision} ({@code FP32} by default in {@link #MfbCuda(Mfb, CudaContext)}, TF32/BF16 only when
 * asked for). The fused kernels always work in float32 with double norm accumulation. The kernels keep a
 * few values per block in registers, so this path takes at most {@value #MAX_BLOCKS} MFH blocks.
 *
 * <p>Workspaces ({@code P, Q}, and for backward {@code ∂L/∂P, ∂L/∂Q} and the pooled vectors) and a cuBLAS
 * handle are made once per (stream, B) and kept (the {@value #MAX_WORKSPACES} most recently used), so
 * repeated calls allocate nothing. Calls on one stream are serialized on its workspace. Device memory may
 * come from another library ({@link DeviceMemory#wrap}); every argument is checked by name before anything
 * is queued. Calls are asynchronous with respect to the host, except the {@code float[]} conveniences.
 */
public final class MfbCuda extends CudaOp<Mfb> implements Mfb.Backend {
    // One by-value struct parameter each (Mfb.cu's MfbForwardParams, MfbBackwardParams); the launches pass its fields flat, in order.
    public static final KernelSpec FORWARD = new KernelSpec("mfb_forward", "{pppppiiiiiiif}",
            "P Q bu bv out rows n o k act signed_sqrt l2_mode l2_eps");
    public static final KernelSpec BACKWARD = new KernelSpec("mfb_backward", "{ppppppppiiiiiifif}",
            "P Q bu bv g zbuf gP gQ rows n o k act signed_sqrt ssqrt_eps l2_mode l2_eps");
    static final List<KernelSpec> KERNELS = List.of(FORWARD, BACKWARD);

    /** The kernels' MFB_MAX_BLOCKS. */
    public static final int MAX_BLOCKS = 8;
    static final int MAX_WORKSPACES = 4;
    private static final int BLOCK = 256; // the kernels' MFB_BLOCK

    private final int n, w, nw;
    private final LinearCuda u, v;
    private final LinearCuda linearOut; // null without an output layer
    private final Workspaces<Integer, Workspace> workspaces = new Workspaces<>("MfbCuda", MAX_WORKSPACES);

    @Override Workspaces<?, ?> workspaces() { return workspaces; }

    /** This op on a GPU with FP32 GEMMs (the default; TF32 and BF16 only when passed explicitly). */
    public MfbCuda(Mfb op, CudaContext context) {
        this(op, context, Precision.FP32);
    }

    /**
     * This op on a GPU with its GEMMs in {@code precision} ({@link Precision#FP32} unless you accept
     * the documented error of the reduced modes). Uploads the weights once; close it to free them and
     * its workspaces.
     */
    public MfbCuda(Mfb op, CudaContext context, Precision precision) {
        super("an Mfb", op, context, precision, Needs.CUBLAS, MAX_WORKSPACES);
        if (op.blocks() > MAX_BLOCKS) {
            throw new IllegalArgumentException("op: expected at most " + MAX_BLOCKS + " MFH blocks on CUDA, got " + op.blocks());
        }
        long stacked = (long) op.blocks() * op.width();
        if (stacked * Math.max(op.dx(), op.dy()) > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("op: expected n·o·k·max(Dx, Dy) < 2^31 (cuBLAS int sizes), got " + stacked + " × " + Math.max(op.dx(), op.dy()));
        }
        this.n = op.blocks();
        this.w = op.width();
        this.nw = n * w;
        try {
            this.u = own(new LinearCuda(context, stack(op.us())));
            this.v = own(new LinearCuda(context, stack(op.vs())));
            this.linearOut = op.hasOutput() ? own(new LinearCuda(context, op.linearOut())) : null;
        } catch (RuntimeException e) {
            throw failed(e);
        }
    }

    /** The blocks' layers as one {@code n·out × in} layer (bias zeros where a block has none; null when none has any). */
    private static Linear stack(List<Linear> layers) {
        int out = layers.get(0).out(), in = layers.get(0).in();
        float[] wt = new float[Math.multiplyExact(layers.size() * out, in)];
        float[] bias = layers.stream().anyMatch(Linear::hasBias) ? new float[layers.size() * out] : null;
        for (int i = 0; i < layers.size(); i++) {
            layers.get(i).copyWeightTo(wt, i * out * in);
            if (bias != null && layers.get(i).hasBias()) layers.get(i).copyBiasTo(bias, i * out);
        }
        return new Linear(layers.size() * out, in, wt, bias);
    }


    /**
     * The tensors {@link #loadWeights} takes, in order: per block {@code i}, {@code u[i].weight,
     * u[i].bias, v[i].weight, v[i].bias}, then {@code linearOut.weight, linearOut.bias} with an output
     * layer (a bias only where that layer has one).
     */
    public List<String> weightNames() { return DeviceWeights.names(weightEntries()); }

    /**
     * Replaces this op's device weights with tensors already on the device, each in its block's
     * {@code nn.Linear} layout (see {@link DeviceWeights}): one device-to-device copy each into the
     * block's slice of the stacked weights, queued on {@code stream}; every tensor is checked by name
     * first. Work queued on other streams that uses this op must have finished.
     */
    public void loadWeights(List<? extends DeviceMemory> tensors, CudaStream stream) {
        DeviceWeights.load(context, weightEntries(), tensors, stream);
    }

    private List<DeviceWeights.Entry> weightEntries() {
        List<DeviceWeights.Entry> e = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            Linear lu = op.us().get(i), lv = op.vs().get(i);
            DeviceWeights.add(e, "u[" + i + "]", lu, u.weight().slice(4L * i * w * op.dx(), 4L * w * op.dx()), u.bias().slice(4L * i * w, 4L * w));
            DeviceWeights.add(e, "v[" + i + "]", lv, v.weight().slice(4L * i * w * op.dy(), 4L * w * op.dy()), v.bias().slice(4L * i * w, 4L * w));
        }
        if (linearOut != null) DeviceWeights.add(e, "linearOut", op.linearOut(), linearOut.weight(), linearOut.bias());
        return e;
    }

    /** {@code out (B × outputWidth) = op(x (B × Dx), y (B × Dy))}, queued on {@code stream}. */
    public void forward(DeviceMemory x, DeviceMemory y, DeviceMemory out, int batch, CudaStream stream) {
        DeviceArgs.batch(batch);
        DeviceArgs.memory("x", x, batch, op.dx());
        DeviceArgs.memory("y", y, batch, op.dy());
        DeviceArgs.memory("out", out, batch, op.outputWidth());
        DeviceArgs.stream(stream);
        inWorkspace(stream, batch, ws -> {
            if (linearOut == null) {
                pooled(ws, x, y, out, batch, stream);
                return;
            }
            ws.ensureOutput();
            pooled(ws, x, y, ws.n, batch, stream);
            output(ws, DeviceMatrix.of("out", out, batch, op.outputWidth()), batch, stream);
        });
    }

    /** The projections and {@code mfb_forward}: the pooled, normalized vectors into {@code dst} ({@code B × n·o}). */
    private void pooled(Workspace ws, DeviceMemory x, DeviceMemory y, DeviceMemory dst, int batch, CudaStream stream) {
        project(ws, x, y, batch);
        Normalization nm = op.normalization();
        context.launch(FORWARD, rowGrid(batch), 1, BLOCK, 0, stream, ws.p, ws.q, u.bias(), v.bias(), dst,
                batch, n, op.o(), op.k(), op.activation().code(), nm.signedSqrt() ? 1 : 0, nm.l2().code(), nm.l2Eps());
    }

    /** {@code dst = σ_out(n·Wᵀ + b)} from the workspace's {@code n}. */
    private void output(Workspace ws, DeviceMatrix dst, int batch, CudaStream stream) {
        linearOut.forwardActivated(ws.blas, precision, DeviceMatrix.of("n", ws.n, batch, op.pooledWidth()), dst, op.outputActivation(), stream);
    }

    /**
     * Device buffers for every gradient of {@link #backward}: {@code dx} ({@code B × Dx}), {@code dy}
     * ({@code B × Dy}), {@code u} ({@code n·o·k × Dx}: block i's weight gradient at rows
     * {@code [i·o·k, (i+1)·o·k)}, the layout of {@code torch.cat} of the U weights), {@code v}
     * ({@code n·o·k × Dy}), the stacked bias gradients {@code bu}, {@code bv} ({@code n·o·k} each;
     * null to skip), and with an output layer its {@code out} ({@code Out × n·o}) and {@code bout}
     * ({@code Out}; null to skip).
     */
    public record DeviceGradients(DeviceMemory dx, DeviceMemory dy, DeviceMemory u, DeviceMemory bu, DeviceMemory v, DeviceMemory bv,
                                  DeviceMemory out, DeviceMemory bout) {
        /** Without an output layer. */
        public DeviceGradients(DeviceMemory dx, DeviceMemory dy, DeviceMemory u, DeviceMemory bu, DeviceMemory v, DeviceMemory bv) {
            this(dx, dy, u, bu, v, bv, null, null);
        }
    }

    /**
     * Gradients from {@code gradOut = ∂L/∂out (B × n·o)} and the forward's inputs, queued on
     * {@code stream} and WRITTEN (not accumulated) into {@code grads}. {@code gradOut} is only read.
     */
    public void backward(DeviceMemory x, DeviceMemory y, DeviceMemory gradOut, DeviceGradients grads, int batch, CudaStream stream) {
        DeviceArgs.batch(batch);
        DeviceArgs.memory("x", x, batch, op.dx());
        DeviceArgs.memory("y", y, batch, op.dy());
        DeviceArgs.memory("gradOut", gradOut, batch, op.outputWidth());
        if (grads == null) throw new IllegalArgumentException("grads: expected DeviceGradients for dx, dy, U, V, got null");
        DeviceArgs.memory("grads.dx", grads.dx(), batch, op.dx());
        DeviceArgs.memory("grads.dy", grads.dy(), batch, op.dy());
        DeviceArgs.memory("grads.u", grads.u(), nw, op.dx());
        DeviceArgs.memory("grads.v", grads.v(), nw, op.dy());
        if (grads.bu() != null) DeviceArgs.memory("grads.bu", grads.bu(), 1, nw);
        if (grads.bv() != null) DeviceArgs.memory("grads.bv", grads.bv(), 1, nw);
        if (linearOut != null) {
            DeviceArgs.memory("grads.out", grads.out(), op.outputWidth(), op.pooledWidth());
            if (grads.bout() != null) DeviceArgs.memory("grads.bout", grads.bout(), 1, op.outputWidth());
        } else if (grads.out() != null || grads.bout() != null) {
            throw new IllegalArgumentException("grads.out: expected null (this op has no output layer), got a buffer");
        }
        DeviceArgs.stream(stream);
        DeviceMemory gradX = grads.dx(), gradY = grads.dy(), gradU = grads.u(), gradBiasU = grads.bu(), gradV = grads.v(), gradBiasV = grads.bv();
        inWorkspace(stream, batch, ws -> {
            ws.ensureBackward();
            DeviceMemory gz = gradOut;
            if (linearOut == null) {
                project(ws, x, y, batch);
            } else { // n again, then the output layer's backward; ∂n takes gradOut's place
                ws.ensureOutput();
                pooled(ws, x, y, ws.n, batch, stream);
                int pw = op.pooledWidth();
                linearOut.backwardActivated(ws.blas, precision, DeviceMatrix.of("n", ws.n, batch, pw), DeviceMatrix.of("gradOut", gradOut, batch, op.outputWidth()),
                        op.outputActivation(), ws.f, grads.out(), grads.bout(), DeviceMatrix.of("gn", ws.gn, batch, pw), stream);
                gz = ws.gn;
            }
            Normalization nm = op.normalization();
            context.launch(BACKWARD, rowGrid(batch), 1, BLOCK, 0, stream, ws.p, ws.q, u.bias(), v.bias(), gz, ws.pooled,
                    ws.gp, ws.gq, batch, n, op.o(), op.k(), op.activation().code(), nm.signedSqrt() ? 1 : 0, nm.signedSqrtGradEps(),
                    nm.l2().code(), nm.l2Eps());
            DeviceMatrix gp = DeviceMatrix.of("gp", ws.gp, batch, nw), gq = DeviceMatrix.of("gq", ws.gq, batch, nw);
            u.backwardInput(ws.blas, precision, gp, 0f, DeviceMatrix.of("grads.dx", gradX, batch, op.dx()));
            v.backwardInput(ws.blas, precision, gq, 0f, DeviceMatrix.of("grads.dy", gradY, batch, op.dy()));
            u.backwardParameters(ws.blas, precision, gp, DeviceMatrix.of("x", x, batch, op.dx()), gradU, gradBiasU, stream);
            v.backwardParameters(ws.blas, precision, gq, DeviceMatrix.of("y", y, batch, op.dy()), gradV, gradBiasV, stream);
        });
    }

    /** Host convenience: copies in, runs on a private stream of this op's (kept, with its buffers, for the next call), copies out. */
    public float[] forward(float[] x, float[] y, int batch) {
        op.checkInputs(x, y, batch);
        return host.run(lane -> {
            DeviceMemory out = lane.floats((long) batch * op.outputWidth());
            forward(lane.in(x), lane.in(y), out, batch, lane.stream());
            return lane.read(out);
        });
    }

    /** Host convenience: as {@link #forward(float[], float[], int)}; splits the stacked parameter gradients per block. */
    public Mfb.Gradients backward(float[] x, float[] y, float[] gradOut, int batch) {
        op.checkInputs(x, y, batch);
        io.bifuse.CompactBilinear.checkLength("gradOut", gradOut, batch, op.outputWidth());
        return host.run(lane -> {
            DeviceMemory bx = lane.in(x), by = lane.in(y), g = lane.in(gradOut);
            OwnedGradients gr = new OwnedGradients(batch, lane::floats); // the lane's memory: nothing to close
            backward(bx, by, g, gr.buffers(), batch, lane.stream());
            return gr.read(lane.stream());
        });
    }

    /** Device buffers for every gradient of a batch-{@code batch} call, owned by the result (close it to free them). */
    public OwnedGradients allocateGradients(int batch) {
        DeviceArgs.batch(batch);
        return new OwnedGradients(batch, null);
    }

    /** Gradient buffers for {@link #backward}: poison them, pass {@link #buffers()}, read them back split per block ({@link GradientSet}). */
    public final class OwnedGradients extends GradientSet<DeviceGradients, Mfb.Gradients> {
        private OwnedGradients(int batch, java.util.function.LongFunction<DeviceMemory> alloc) {
            super(context, alloc);
            layOut(() -> new DeviceGradients(floats((long) batch * op.dx()), floats((long) batch * op.dy()), floats((long) nw * op.dx()),
                    floats(nw), floats((long) nw * op.dy()), floats(nw),
                    linearOut == null ? null : floats((long) op.outputWidth() * op.pooledWidth()),
                    linearOut == null || !op.linearOut().hasBias() ? null : floats(op.outputWidth())));
        }

        @Override public Mfb.Gradients read(CudaStream stream) {
            DeviceGradients b = buffers();
            Mfb.Gradients g = split(read(b.dx(), stream), read(b.dy(), stream), read(b.u(), stream), read(b.bu(), stream), read(b.v(), stream),
                    read(b.bv(), stream));
            if (linearOut == null) return g;
            return new Mfb.Gradients(g.dx(), g.dy(), g.u(), g.v(),
                    new LinearGradients(read(b.out(), stream), b.bout() == null ? null : read(b.bout(), stream)));
        }
    }

    /** Per-block {@link LinearGradients} from the stacked gradients (bias null for a layer without bias). */
    public Mfb.Gradients split(float[] gx, float[] gy, float[] gu, float[] gbu, float[] gv, float[] gbv) {
        int dx = op.dx(), dy = op.dy();
        List<LinearGradients> lu = new ArrayList<>(), lv = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            lu.add(new LinearGradients(java.util.Arrays.copyOfRange(gu, i * w * dx, (i + 1) * w * dx),
                    op.u(i).hasBias() ? java.util.Arrays.copyOfRange(gbu, i * w, (i + 1) * w) : null));
            lv.add(new LinearGradients(java.util.Arrays.copyOfRange(gv, i * w * dy, (i + 1) * w * dy),
                    op.v(i).hasBias() ? java.util.Arrays.copyOfRange(gbv, i * w, (i + 1) * w) : null));
        }
        return new Mfb.Gradients(gx, gy, List.copyOf(lu), List.copyOf(lv));
    }

    private void project(Workspace ws, DeviceMemory x, DeviceMemory y, int batch) {
        u.project(ws.blas, precision, DeviceMatrix.of("x", x, batch, op.dx()), DeviceMatrix.of("p", ws.p, batch, nw));
        v.project(ws.blas, precision, DeviceMatrix.of("y", y, batch, op.dy()), DeviceMatrix.of("q", ws.q, batch, nw));
    }

    private int rowGrid(int rows) { return Math.min(rows, 65535); }

    /** Runs {@code body} in this op's workspace for (stream, shape): {@link Workspaces#run}. */
    private void inWorkspace(CudaStream stream, int batch, java.util.function.Consumer<Workspace> body) {
        workspaces.run(stream, batch, st -> new Workspace(st, batch), body);
    }

    /** Buffers and the cuBLAS handle for one (stream, B). */
    private final class Workspace extends Workspaces.Workspace {
        final int batch;
        final CublasHandle blas;
        final DeviceBuffer p, q;
        DeviceBuffer gp, gq, pooled; // made on first backward
        DeviceBuffer n, f, gn; // the output layer's input, output and ∂n: made on first use

        Workspace(CudaStream stream, int batch) {
            super(MfbCuda.this.context, stream);
            this.batch = batch;
            try {
                blas = own(new CublasHandle(context, stream));
                p = own(DeviceBuffer.allocateFloats(context, (long) batch * nw));
                q = own(DeviceBuffer.allocateFloats(context, (long) batch * nw));
            } catch (RuntimeException e) {
                close();
                throw e;
            }
        }

        void ensureBackward() {
            if (gp == null) gp = own(DeviceBuffer.allocateFloats(context, (long) batch * nw));
            if (gq == null) gq = own(DeviceBuffer.allocateFloats(context, (long) batch * nw));
            if (pooled == null) pooled = own(DeviceBuffer.allocateFloats(context, (long) batch * op.pooledWidth()));
        }

        void ensureOutput() {
            if (n == null) n = own(DeviceBuffer.allocateFloats(context, (long) batch * op.pooledWidth()));
            if (f == null) f = own(DeviceBuffer.allocateFloats(context, (long) batch * op.outputWidth()));
            if (gn == null) gn = own(DeviceBuffer.allocateFloats(context, (long) batch * op.pooledWidth()));
        }
    }
}
