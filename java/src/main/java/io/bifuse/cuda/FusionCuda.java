package io.bifuse.cuda;

import io.bifuse.CompactBilinear;
import io.bifuse.Fusion;
import io.bifuse.FusionBackend;
import io.bifuse.Linear;
import io.bifuse.LinearGradients;
import io.bifuse.Precision;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * What the CUDA backends of the block.bootstrap fusions share ({@link BlockCuda}, {@link BlockTuckerCuda},
 * {@link LinearSumCuda}, {@link ConcatMlpCuda}; {@link MutanCuda} and {@link TuckerCuda} run the first
 * two): the device call forms and their checks, the gradients as one list of device buffers in the
 * op's {@code gradientNames()} order (the state dict's names: a gradient is found by the parameter's
 * name, and a shared layer's is written under both of its names, as the module shows it), the
 * workspaces, and the {@code float[]} conveniences. Each op adds its GEMMs (cuBLAS, {@link LinearCuda})
 * and the fused passes between them.
 *
 * <p>Every argument is checked by name before anything is queued. Gradients are written, not
 * accumulated. Backward recomputes the forward (the ops are stateless, as {@link MlbCuda}). Calls are
 * asynchronous with respect to the host except the {@code float[]} conveniences; calls on one stream are
 * serialized on its workspace (made once per (stream, B), the {@value #MAX_WORKSPACES} most recent kept).
 *
 * @param <O> the op's descriptor
 * @param <G> its gradients record
 */
public abstract class FusionCuda<O extends Fusion, G> extends CudaOp<O> implements FusionBackend<O, G>, DeviceFusion {
    static final int MAX_WORKSPACES = 4;
    static final int BLOCK = 256;

    private final Workspaces<Integer, Workspace> workspaces;

    FusionCuda(String what, O op, CudaContext context, Precision precision) {
        super(what, op, context, precision, Needs.CUBLAS, MAX_WORKSPACES);
        workspaces = new Workspaces<>(what.substring(what.indexOf(' ') + 1) + "Cuda", MAX_WORKSPACES);
    }

    @Override final Workspaces<?, ?> workspaces() { return workspaces; }

    /** The names of the gradients {@link #backward(DeviceMemory, DeviceMemory, DeviceMemory, List, int, CudaStream)} writes, in order. */
    @Override public abstract List<String> gradientNames();

    /** Floats of each parameter gradient (every name after {@code input.0, input.1}), in order. */
    abstract List<Long> parameterSizes();

    /** The record from the tensors in {@link #gradientNames()} order. */
    abstract G gradients(List<float[]> tensors);

    /** The forward into {@code out}, in workspace {@code w}. */
    abstract void forward(Workspace w, DeviceMemory x, DeviceMemory y, DeviceMemory out, int batch, CudaStream stream);

    /** Every gradient into {@code grads} (by name), in workspace {@code w}. */
    abstract void backward(Workspace w, DeviceMemory x, DeviceMemory y, DeviceMemory gradOut, Map<String, DeviceMemory> grads, int batch,
                           CudaStream stream);

    /** {@code out (B × Out) = op(x (B × Dx), y (B × Dy))}, queued on {@code stream}. */
    @Override public final void forward(DeviceMemory x, DeviceMemory y, DeviceMemory out, int batch, CudaStream stream) {
        DeviceArgs.batch(batch);
        DeviceArgs.memory("x", x, batch, op.dx());
        DeviceArgs.memory("y", y, batch, op.dy());
        DeviceArgs.memory("out", out, batch, op.out());
        DeviceArgs.stream(stream);
        workspaces.run(stream, batch, s -> new Workspace(s, batch), w -> forward(w, x, y, out, batch, stream));
    }

    /**
     * Every gradient from {@code gradOut = ∂L/∂out (B × Out)} and the forward's inputs, written into
     * {@code grads}: one buffer per name of {@link #gradientNames()}, in that order ({@code input.0}
     * {@code B × Dx}, {@code input.1} {@code B × Dy}, then each parameter in its state-dict layout).
     * Queued on {@code stream}; {@code x, y, gradOut} are only read.
     */
    @Override public final void backward(DeviceMemory x, DeviceMemory y, DeviceMemory gradOut, List<? extends DeviceMemory> grads, int batch, CudaStream stream) {
        DeviceArgs.batch(batch);
        DeviceArgs.memory("x", x, batch, op.dx());
        DeviceArgs.memory("y", y, batch, op.dy());
        DeviceArgs.memory("gradOut", gradOut, batch, op.out());
        Map<String, DeviceMemory> byName = checkGradients(gradientNames(), sizes(batch), grads);
        DeviceArgs.stream(stream);
        workspaces.run(stream, batch, s -> new Workspace(s, batch), w -> backward(w, x, y, gradOut, byName, batch, stream));
    }

    /**
     * Checks a backward's gradient buffers against {@code names} and {@code sizes} (one buffer each, at
     * least that many floats), naming a bad one {@code grads[i] (name)}; returns them by name. Also the
     * check of the ops that delegate to a fusion of another name (MUTAN to BLOCK), so that their refusals
     * speak their own state-dict names.
     */
    static Map<String, DeviceMemory> checkGradients(List<String> names, List<Long> sizes, List<? extends DeviceMemory> grads) {
        if (grads == null || grads.size() != names.size()) {
            throw new IllegalArgumentException("grads: expected " + names.size() + " device buffers (" + String.join(", ", names) + "), got "
                    + (grads == null ? "null" : grads.size()));
        }
        Map<String, DeviceMemory> byName = new LinkedHashMap<>();
        for (int i = 0; i < names.size(); i++) {
            DeviceArgs.memory("grads[" + i + "] (" + names.get(i) + ")", grads.get(i), 1, sizes.get(i));
            byName.put(names.get(i), grads.get(i));
        }
        return byName;
    }

    /** Floats of every gradient of a batch-{@code batch} call, in {@link #gradientNames()} order. */
    @Override public final List<Long> sizes(int batch) {
        List<Long> s = new ArrayList<>(List.of((long) batch * op.dx(), (long) batch * op.dy()));
        s.addAll(parameterSizes());
        return s;
    }

    /** Host convenience: copies in, runs on a private stream of this op's (kept, with its buffers, for the next call), copies out. */
    @Override public final float[] forward(float[] x, float[] y, int batch) {
        op.checkInputs(x, y, batch);
        return host.run(lane -> {
            DeviceMemory out = lane.floats((long) batch * op.out());
            forward(lane.in(x), lane.in(y), out, batch, lane.stream());
            return lane.read(out);
        });
    }

    /** Host convenience: as {@link #forward(float[], float[], int)}. */
    @Override public final G backward(float[] x, float[] y, float[] gradOut, int batch) {
        op.checkInputs(x, y, batch);
        CompactBilinear.checkLength("gradOut", gradOut, batch, op.out());
        return host.run(lane -> {
            DeviceMemory dx = lane.in(x), dy = lane.in(y), g = lane.in(gradOut);
            List<DeviceMemory> grads = new ArrayList<>();
            for (long n : sizes(batch)) grads.add(lane.floats(n));
            backward(dx, dy, g, grads, batch, lane.stream());
            List<float[]> t = new ArrayList<>();
            for (DeviceMemory m : grads) t.add(lane.read(m));
            return gradients(t);
        });
    }

    // ---- helpers for the ops' classes

    /** A layer's gradient sizes: weight, then bias where it has one. */
    static void addSizes(List<Long> sizes, Linear l) {
        sizes.add((long) l.out() * l.in());
        if (l.hasBias()) sizes.add((long) l.out());
    }

    /** The next layer's gradients from {@code t}: weight, then bias where {@code l} has one. */
    static LinearGradients next(Iterator<float[]> t, Linear l) {
        float[] w = t.next();
        return new LinearGradients(w, l.hasBias() ? t.next() : null);
    }

    /** {@code grads[name].weight} and {@code .bias} (null where the layer has none) for layer {@code name}. */
    static DeviceMemory weight(Map<String, DeviceMemory> grads, String name) { return grads.get(name + ".weight"); }

    static DeviceMemory bias(Map<String, DeviceMemory> grads, String name) { return grads.get(name + ".bias"); }

    /** A shared layer's gradients, written under {@code from}, copied to {@code to} (both names, as the module's state dict shows them). */
    final void copyLayer(Map<String, DeviceMemory> grads, String from, String to, Linear l, CudaStream stream) {
        LinearCuda.copy(context, DeviceMatrix.of(from, weight(grads, from), l.out(), l.in()), DeviceMatrix.of(to, weight(grads, to), l.out(), l.in()), stream);
        if (l.hasBias()) LinearCuda.copy(context, DeviceMatrix.of(from, bias(grads, from), 1, l.out()), DeviceMatrix.of(to, bias(grads, to), 1, l.out()), stream);
    }

    /**
     * The gradients of linear0 (x → x̃) and linear1 (y → ỹ) and of the inputs, from {@code gxy} = ∂x̃ | ∂ỹ
     * ({@code 2B × M}, ∂x̃ its first B rows). A shared op ({@code linear1} is {@code linear0}) sums both
     * sides: two weight GEMMs (the second with beta 1), one bias column sum over all 2B rows, then the sum
     * copied to linear1's names.
     */
    final void inputLayersBackward(Workspace w, LinearCuda linear0, LinearCuda linear1, boolean shared, DeviceMatrix gxy, DeviceMemory x,
                                   DeviceMemory y, Map<String, DeviceMemory> grads, CudaStream stream) {
        int batch = w.batch;
        DeviceMatrix gx = gxy.rows(0, batch), gy = gxy.rows(batch, batch);
        DeviceMatrix mx = DeviceMatrix.of("x", x, batch, op.dx()), my = DeviceMatrix.of("y", y, batch, op.dy());
        if (shared) {
            linear0.backwardWeight(w.blas, precision, gx, mx, weight(grads, "linear0"), 0f);
            linear0.backwardWeight(w.blas, precision, gy, my, weight(grads, "linear0"), 1f);
            if (linear0.layer().hasBias()) LinearCuda.biasGradient(context, gxy, bias(grads, "linear0"), stream);
            copyLayer(grads, "linear0", "linear1", linear0.layer(), stream);
        } else {
            linear0.backwardParameters(w.blas, precision, gx, mx, weight(grads, "linear0"), bias(grads, "linear0"), stream);
            linear1.backwardParameters(w.blas, precision, gy, my, weight(grads, "linear1"), bias(grads, "linear1"), stream);
        }
        linear0.backwardInput(w.blas, precision, gx, 0f, DeviceMatrix.of("input.0", grads.get("input.0"), batch, op.dx()));
        linear1.backwardInput(w.blas, precision, gy, 0f, DeviceMatrix.of("input.1", grads.get("input.1"), batch, op.dy()));
    }

    /** Blocks for a grid-stride launch over {@code threads} elements. */
    final int grid(long threads) { return DeviceArgs.grid(context, threads, BLOCK); }

    /** Buffers (one per slot, made on first use, kept) and the cuBLAS handle for one (stream, B). */
    final class Workspace extends Workspaces.Workspace {
        final int batch;
        final CublasHandle blas;
        private final Map<Integer, DeviceBuffer> slots = new java.util.HashMap<>();

        Workspace(CudaStream stream, int batch) {
            super(FusionCuda.this.context, stream);
            this.batch = batch;
            try {
                blas = own(new CublasHandle(context, stream));
            } catch (RuntimeException e) {
                close();
                throw e;
            }
        }

        /** Slot {@code slot}'s buffer of at least {@code count} floats (an op asks each slot for one size per B, or its largest first). */
        DeviceMemory floats(int slot, long count) {
            DeviceBuffer b = slots.get(slot);
            if (b == null || b.byteSize() < 4 * count) {
                b = own(DeviceBuffer.allocateFloats(context, count));
                DeviceBuffer old = slots.put(slot, b);
                if (old != null) throw new IllegalStateException("workspace slot " + slot + " asked for " + count + " floats after " + old.byteSize() / 4);
            }
            return b.byteSize() == 4 * count ? b : b.slice(0, 4 * count);
        }

        /** {@code floats(slot, rows × cols)} as a dense matrix named {@code name}. */
        DeviceMatrix matrix(int slot, String name, int rows, int cols) {
            return DeviceMatrix.of(name, floats(slot, (long) rows * cols), rows, cols);
        }
    }
}
