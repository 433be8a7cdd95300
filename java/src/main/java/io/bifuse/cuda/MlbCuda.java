package io.bifuse.cuda;

import io.bifuse.Linear;
import io.bifuse.LinearGradients;
import io.bifuse.Mlb;
import io.bifuse.Precision;
import java.util.ArrayList;
import java.util.List;

/**
 * {@link Mlb} on one GPU: the GEMMs in cuBLAS ({@link LinearCuda}) with the arithmetic of a chosen
 * {@link Precision}, everything between them fused into one kernel per direction ({@code cuda/Mlb.cu}).
 *
 * <p>Forward (4 launches): {@code proj[:, 0:J) = x·Uᵀ} and {@code proj[:, J:2J) = y·Vᵀ} (two GEMMs,
 * no bias, into one {@code B × 2J} workspace), {@code mlb_forward} (both biases, both activations and
 * the Hadamard product in one pass) → {@code h}, then {@code out = h·Pᵀ + b_p} (bias rows + GEMM).
 *
 * <p>Backward saves nothing from the forward (the op is stateless, as MCB is): it recomputes the two
 * projections from {@code x, y} (two GEMMs, 2·B·J·(Dx+Dy) FLOPs, about half a forward), computes
 * {@code gh = g·P}, then {@code mlb_backward} recomputes the activations from the pre-activations and
 * writes {@code h} and, in place over the projections, {@code dpu | dpv}; then {@code ∂P = gᵀ·h},
 * {@code ∂U = dpuᵀ·x}, {@code ∂V = dpvᵀ·y}, {@code ∂x = dpu·U}, {@code ∂y = dpv·V} (cuBLAS) and the
 * bias gradients as deterministic column sums. Gradients are written, not accumulated.
 *
 * <p>Workspaces ({@code proj} {@code B × 2J}, {@code h}, {@code gh} {@code B × J}, and a cuBLAS handle
 * bound to the stream) are made once per (stream, B) and kept (the {@value #MAX_WORKSPACES} most
 * recently used), so repeated calls allocate nothing: 16·B·J bytes each (9.8 MB at the spec's size).
 * Calls on one stream are serialized on its workspace; calls on different streams run concurrently.
 * Every argument (size, 4-byte alignment, openness, each by name) is checked before anything is
 * queued. Calls are asynchronous with respect to the host, except the {@code float[]} conveniences.
 */
public final class MlbCuda extends CudaOp<Mlb> implements Mlb.Backend {
    public static final KernelSpec FORWARD = new KernelSpec("mlb_forward", "ppppiii");
    public static final KernelSpec BACKWARD = new KernelSpec("mlb_backward", "pppppiii");
    static final List<KernelSpec> KERNELS = List.of(FORWARD, BACKWARD);

    static final int MAX_WORKSPACES = 4;
    private static final int BLOCK = 256;

    private final LinearCuda u, v, p;
    private final NormalizationCuda norm; // null without block.bootstrap's normalize
    private final Workspaces<Integer, Workspace> workspaces = new Workspaces<>("MlbCuda", MAX_WORKSPACES);

    @Override Workspaces<?, ?> workspaces() { return workspaces; }

    /** This op on a GPU with FP32 GEMMs (the default; TF32 and BF16 only when passed explicitly). */
    public MlbCuda(Mlb op, CudaContext context) {
        this(op, context, Precision.FP32);
    }

    /**
     * This op on a GPU with its GEMMs in {@code precision} ({@link Precision#FP32} unless you accept
     * the documented error of the reduced modes). Uploads the weights once; close it to free them and
     * its workspaces.
     */
    public MlbCuda(Mlb op, CudaContext context, Precision precision) {
        super("an Mlb", op, context, precision, Needs.CUBLAS, MAX_WORKSPACES);
        try {
            u = own(new LinearCuda(context, op.u()));
            v = own(new LinearCuda(context, op.v()));
            p = own(new LinearCuda(context, op.p()));
            norm = op.normalization().isIdentity() ? null : own(new NormalizationCuda(context, op.normalization(), NormalizationCuda.wholeRow(op.joint())));
        } catch (RuntimeException e) {
            throw failed(e);
        }
    }


    /**
     * The tensors {@link #loadWeights} takes, in state-dict order: {@code u.weight, u.bias, v.weight,
     * v.bias, p.weight, p.bias} (a bias only where its layer has one).
     */
    public List<String> weightNames() { return DeviceWeights.names(weightEntries()); }

    /**
     * Replaces this op's device weights with tensors already on the device (see {@link DeviceWeights}):
     * one device-to-device copy each, queued on {@code stream}; every tensor is checked by name first.
     * Work queued on other streams that uses this op must have finished.
     */
    public void loadWeights(List<? extends DeviceMemory> tensors, CudaStream stream) {
        DeviceWeights.load(context, weightEntries(), tensors, stream);
    }

    private List<DeviceWeights.Entry> weightEntries() {
        List<DeviceWeights.Entry> e = new ArrayList<>();
        DeviceWeights.add(e, "u", op.u(), u.weight(), u.bias());
        DeviceWeights.add(e, "v", op.v(), v.weight(), v.bias());
        DeviceWeights.add(e, "p", op.p(), p.weight(), p.bias());
        return e;
    }

    /**
     * Device buffers for every gradient of {@link #backward}: {@code dx} {@code B × Dx}, {@code dy}
     * {@code B × Dy}, each layer's weight gradient in its {@code out × in} layout, and its bias gradient
     * ({@code out} floats), which must be null exactly when that layer has no bias.
     */
    public record DeviceGradients(DeviceMemory dx, DeviceMemory dy, DeviceMemory u, DeviceMemory bu,
                                  DeviceMemory v, DeviceMemory bv, DeviceMemory p, DeviceMemory bp) {}

    /** {@code out (B × Out) = op(x (B × Dx), y (B × Dy))}, queued on {@code stream}. */
    public void forward(DeviceMemory x, DeviceMemory y, DeviceMemory out, int batch, CudaStream stream) {
        DeviceArgs.batch(batch);
        DeviceArgs.memory("x", x, batch, op.dx());
        DeviceArgs.memory("y", y, batch, op.dy());
        DeviceArgs.memory("out", out, batch, op.out());
        DeviceArgs.stream(stream);
        inWorkspace(stream, batch, w -> {
            project(w, x, y, batch);
            int j = op.joint();
            context.launch(FORWARD, DeviceArgs.grid(context, (long) batch * j, BLOCK), 1, BLOCK, 0, stream, w.proj, u.bias(), v.bias(), w.h, batch, j, op.activation().code());
            if (norm != null) norm.forward(w.h, w.h, batch, stream);
            output(w, DeviceMatrix.of("h", w.h, batch, j), DeviceMatrix.of("out", out, batch, op.out()), stream);
        });
    }

    /**
     * Every gradient from {@code gradOut = ∂L/∂out (B × Out)} and the forward's inputs, written into
     * {@code grads}, queued on {@code stream}. {@code x, y, gradOut} are only read.
     */
    public void backward(DeviceMemory x, DeviceMemory y, DeviceMemory gradOut, DeviceGradients grads, int batch, CudaStream stream) {
        DeviceArgs.batch(batch);
        DeviceArgs.memory("x", x, batch, op.dx());
        DeviceArgs.memory("y", y, batch, op.dy());
        DeviceArgs.memory("gradOut", gradOut, batch, op.out());
        if (grads == null) throw new IllegalArgumentException("grads: expected DeviceGradients for dx, dy, U, V, P, got null");
        DeviceArgs.memory("grads.dx", grads.dx(), batch, op.dx());
        DeviceArgs.memory("grads.dy", grads.dy(), batch, op.dy());
        DeviceArgs.layer("grads.u", "grads.bu", grads.u(), grads.bu(), op.u());
        DeviceArgs.layer("grads.v", "grads.bv", grads.v(), grads.bv(), op.v());
        DeviceArgs.layer("grads.p", "grads.bp", grads.p(), grads.bp(), op.p());
        DeviceArgs.stream(stream);
        inWorkspace(stream, batch, w -> {
            int j = op.joint();
            project(w, x, y, batch);
            DeviceMatrix g = DeviceMatrix.of("gradOut", gradOut, batch, op.out()), proj = DeviceMatrix.of("proj", w.proj, batch, 2 * j);
            DeviceMatrix dpu = proj.columns(0, j), dpv = proj.columns(j, j); // the fused kernel overwrites proj with ∂L/∂(projections)
            DeviceMatrix hin = DeviceMatrix.of("h", w.h, batch, j); // P's input: h, or ĥ with a normalization
            if (op.hasOptions()) { // block.bootstrap's: the forward to P's input and f first, for ĥ and σ_out'(f)
                context.launch(FORWARD, DeviceArgs.grid(context, (long) batch * j, BLOCK), 1, BLOCK, 0, stream, w.proj, u.bias(), v.bias(), w.h, batch, j,
                        op.activation().code());
                if (norm != null) {
                    hin = DeviceMatrix.of("ĥ", w.hn, batch, j);
                    norm.forward(w.h, w.hn, batch, stream);
                }
                if (op.outputActivation() != io.bifuse.Activation.NONE) {
                    DeviceMatrix f = DeviceMatrix.of("σ_out'(f) ⊙ g", w.f, batch, op.out());
                    output(w, hin, f, stream);
                    LinearCuda.activationGrad(context, gradOut, w.f, w.f, batch, op.out(), op.outputActivation(), stream);
                    g = f;
                }
            }
            p.backwardInput(w.blas, precision, g, 0f, DeviceMatrix.of("gh", w.gh, batch, j));
            if (norm != null) norm.backward(w.h, w.gh, w.gh, batch, stream);
            context.launch(BACKWARD, DeviceArgs.grid(context, (long) batch * j, BLOCK), 1, BLOCK, 0, stream,
                    w.proj, u.bias(), v.bias(), w.gh, w.h, batch, j, op.activation().code());
            p.backwardParameters(w.blas, precision, g, hin, grads.p(), grads.bp(), stream);
            DeviceMatrix mx = DeviceMatrix.of("x", x, batch, op.dx()), my = DeviceMatrix.of("y", y, batch, op.dy());
            u.backwardParameters(w.blas, precision, dpu, mx, grads.u(), grads.bu(), stream);
            v.backwardParameters(w.blas, precision, dpv, my, grads.v(), grads.bv(), stream);
            u.backwardInput(w.blas, precision, dpu, 0f, DeviceMatrix.of("grads.dx", grads.dx(), batch, op.dx()));
            v.backwardInput(w.blas, precision, dpv, 0f, DeviceMatrix.of("grads.dy", grads.dy(), batch, op.dy()));
        });
    }

    /** Host convenience: copies in, runs on a private stream of this op's (kept, with its buffers, for the next call), copies out. */
    public float[] forward(float[] x, float[] y, int batch) {
        op.checkInputs(x, y, batch);
        return host.run(lane -> {
            DeviceMemory out = lane.floats((long) batch * op.out());
            forward(lane.in(x), lane.in(y), out, batch, lane.stream());
            return lane.read(out);
        });
    }

    /** Host convenience: as {@link #forward(float[], float[], int)}. */
    public Mlb.Gradients backward(float[] x, float[] y, float[] gradOut, int batch) {
        op.checkInputs(x, y, batch);
        io.bifuse.CompactBilinear.checkLength("gradOut", gradOut, batch, op.out());
        return host.run(lane -> {
            DeviceMemory dx = lane.in(x), dy = lane.in(y), g = lane.in(gradOut);
            OwnedGradients gr = new OwnedGradients(batch, lane::floats); // the lane's memory: nothing to close
            backward(dx, dy, g, gr.buffers(), batch, lane.stream());
            return gr.read(lane.stream());
        });
    }

    /** Device buffers for every gradient of a batch-{@code batch} call, owned by the result (close it to free them). */
    public OwnedGradients allocateGradients(int batch) {
        DeviceArgs.batch(batch);
        return new OwnedGradients(batch, null);
    }

    /** Gradient buffers for {@link #backward}: poison them, pass {@link #buffers()}, read them back ({@link GradientSet}). */
    public final class OwnedGradients extends GradientSet<DeviceGradients, Mlb.Gradients> {
        private OwnedGradients(int batch, java.util.function.LongFunction<DeviceMemory> alloc) {
            super(context, alloc);
            layOut(() -> new DeviceGradients(floats((long) batch * op.dx()), floats((long) batch * op.dy()), floats((long) op.u().out() * op.u().in()),
                    op.u().hasBias() ? floats(op.u().out()) : null, floats((long) op.v().out() * op.v().in()), op.v().hasBias() ? floats(op.v().out()) : null,
                    floats((long) op.p().out() * op.p().in()), op.p().hasBias() ? floats(op.p().out()) : null));
        }

        @Override public Mlb.Gradients read(CudaStream stream) {
            DeviceGradients b = buffers();
            return new Mlb.Gradients(read(b.dx(), stream), read(b.dy(), stream), new LinearGradients(read(b.u(), stream), read(b.bu(), stream)),
                    new LinearGradients(read(b.v(), stream), read(b.bv(), stream)), new LinearGradients(read(b.p(), stream), read(b.bp(), stream)));
        }
    }

    /** {@code out = σ_out(in·Pᵀ + b_p)}: bias rows and the GEMM without σ_out (the paper's MLB), GEMM then bias and σ_out in one pass with it. */
    private void output(Workspace w, DeviceMatrix in, DeviceMatrix out, CudaStream stream) {
        if (op.outputActivation() == io.bifuse.Activation.NONE) p.forward(w.blas, precision, in, out, stream);
        else p.forward(w.blas, precision, in, out, op.outputActivation(), stream);
    }

    /** {@code proj = [x·Uᵀ | y·Vᵀ]}: both projections, biases left to the fused kernel. */
    private void project(Workspace w, DeviceMemory x, DeviceMemory y, int batch) {
        int j = op.joint();
        DeviceMatrix proj = DeviceMatrix.of("proj", w.proj, batch, 2 * j);
        u.project(w.blas, precision, DeviceMatrix.of("x", x, batch, op.dx()), proj.columns(0, j));
        v.project(w.blas, precision, DeviceMatrix.of("y", y, batch, op.dy()), proj.columns(j, j));
    }

    /** Runs {@code body} in this op's workspace for (stream, shape): {@link Workspaces#run}. */
    private void inWorkspace(CudaStream stream, int batch, java.util.function.Consumer<Workspace> body) {
        workspaces.run(stream, batch, s -> new Workspace(s, batch), body);
    }

    /** Buffers and the cuBLAS handle for one (stream, B). */
    private final class Workspace extends Workspaces.Workspace {
        final DeviceBuffer proj, h, gh;
        final DeviceBuffer hn, f; // ĥ and f for block.bootstrap's options (null without them)
        final CublasHandle blas;

        Workspace(CudaStream stream, int batch) {
            super(MlbCuda.this.context, stream);
            long j = op.joint();
            try {
                proj = own(DeviceBuffer.allocateFloats(context, 2L * batch * j));
                h = own(DeviceBuffer.allocateFloats(context, batch * j));
                gh = own(DeviceBuffer.allocateFloats(context, batch * j));
                hn = norm == null ? null : own(DeviceBuffer.allocateFloats(context, batch * j));
                f = op.outputActivation() == io.bifuse.Activation.NONE ? null : own(DeviceBuffer.allocateFloats(context, (long) batch * op.out()));
                blas = own(new CublasHandle(context, stream));
            } catch (RuntimeException e) {
                close();
                throw e;
            }
        }
    }
}
