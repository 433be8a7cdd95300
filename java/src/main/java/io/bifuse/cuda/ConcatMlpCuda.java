package io.bifuse.cuda;

import io.bifuse.Activation;
import io.bifuse.ConcatMlp;
import io.bifuse.Linear;
import io.bifuse.LinearGradients;
import io.bifuse.Precision;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Map;

/**
 * {@link ConcatMlp} on one GPU: {@code [x, y]} assembled in a workspace ({@code lin_copy_cols}), then
 * each layer as a bias-free cuBLAS GEMM with bias and σ fused into one pass ({@code lin_bias_act}; the
 * last layer without σ). Backward recomputes the forward's activations, then from the last layer down:
 * its weight and bias gradients, {@code g_in = g·W}, {@code g_in ⊙ σ'} of the layer below
 * ({@code lin_act_grad}, from that layer's output), and finally splits {@code ∂[x, y]} into
 * {@code ∂x}, {@code ∂y}.
 */
public final class ConcatMlpCuda extends FusionCuda<ConcatMlp, ConcatMlp.Gradients> implements ConcatMlp.Backend {
    static final List<KernelSpec> KERNELS = List.of(); // LinearCuda's

    private final LinearCuda[] layers;
    private final int widest;

    public ConcatMlpCuda(ConcatMlp op, CudaContext context) {
        this(op, context, Precision.FP32);
    }

    /** This op with its GEMMs in {@code precision}; uploads the weights once (close it to free them). */
    public ConcatMlpCuda(ConcatMlp op, CudaContext context, Precision precision) {
        super("a ConcatMlp", op, context, precision);
        try {
            layers = new LinearCuda[op.layers().size()];
            int most = 0;
            for (int i = 0; i < layers.length; i++) {
                layers[i] = own(new LinearCuda(context, op.layers().get(i)));
                most = Math.max(most, op.layers().get(i).in());
            }
            widest = most;
        } catch (RuntimeException e) {
            throw failed(e);
        }
    }

    @Override public List<String> gradientNames() { return op.gradientNames(); }

    @Override List<Long> parameterSizes() {
        List<Long> s = new ArrayList<>();
        for (Linear l : op.layers()) addSizes(s, l);
        return s;
    }

    @Override ConcatMlp.Gradients gradients(List<float[]> tensors) {
        Iterator<float[]> t = tensors.iterator();
        float[] dx = t.next(), dy = t.next();
        List<LinearGradients> g = new ArrayList<>();
        for (Linear l : op.layers()) g.add(next(t, l));
        return new ConcatMlp.Gradients(dx, dy, g);
    }

    /** Layer i's input: {@code [x, y]} for i = 0 (slot 0), else layer i − 1's activated output (slot i). */
    private DeviceMatrix input(Workspace w, int i, int batch) {
        return w.matrix(i, i == 0 ? "[x, y]" : "h" + i, batch, layers[i].layer().in());
    }

    /** Every layer's input (slots 0 .. n − 1), the last layer's output into {@code out}. */
    private void run(Workspace w, DeviceMemory x, DeviceMemory y, DeviceMatrix out, int batch, CudaStream stream) {
        DeviceMatrix h = input(w, 0, batch);
        LinearCuda.copy(context, DeviceMatrix.of("x", x, batch, op.dx()), h.columns(0, op.dx()), stream);
        LinearCuda.copy(context, DeviceMatrix.of("y", y, batch, op.dy()), h.columns(op.dx(), op.dy()), stream);
        for (int i = 0; i < layers.length; i++) {
            boolean last = i == layers.length - 1;
            DeviceMatrix next = last ? out : input(w, i + 1, batch);
            layers[i].forward(w.blas, precision, h, next, last ? Activation.NONE : op.activation(), stream);
            h = next;
        }
    }

    @Override void forward(Workspace w, DeviceMemory x, DeviceMemory y, DeviceMemory out, int batch, CudaStream stream) {
        run(w, x, y, DeviceMatrix.of("out", out, batch, op.out()), batch, stream);
    }

    @Override void backward(Workspace w, DeviceMemory x, DeviceMemory y, DeviceMemory gradOut, Map<String, DeviceMemory> grads, int batch,
                            CudaStream stream) {
        int n = layers.length;
        run(w, x, y, w.matrix(n, "out", batch, op.out()), batch, stream); // the output itself is not needed, only the inputs of every layer
        DeviceMatrix g = DeviceMatrix.of("gradOut", gradOut, batch, op.out());
        for (int i = n - 1; i >= 0; i--) {
            String name = "mlp.linears." + i;
            DeviceMatrix h = input(w, i, batch);
            layers[i].backwardParameters(w.blas, precision, g, h, weight(grads, name), bias(grads, name), stream);
            DeviceMatrix gin = DeviceMatrix.of("∂h" + i, w.floats(n + 1 + (i & 1), (long) batch * widest), batch, layers[i].layer().in());
            layers[i].backwardInput(w.blas, precision, g, 0f, gin);
            if (i > 0 && op.activation() != Activation.NONE) {
                LinearCuda.activationGrad(context, gin.memory(), h.memory(), gin.memory(), batch, gin.cols(), op.activation(), stream);
            }
            g = gin;
        }
        LinearCuda.copy(context, g.columns(0, op.dx()), DeviceMatrix.of("input.0", grads.get("input.0"), batch, op.dx()), stream);
        LinearCuda.copy(context, g.columns(op.dx(), op.dy()), DeviceMatrix.of("input.1", grads.get("input.1"), batch, op.dy()), stream);
    }
}
