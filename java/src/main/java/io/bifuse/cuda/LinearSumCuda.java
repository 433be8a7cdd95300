package io.bifuse.cuda;

import io.bifuse.Activation;
import io.bifuse.LinearGradients;
import io.bifuse.LinearSum;
import io.bifuse.Precision;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Map;

/**
 * {@link LinearSum} on one GPU: two bias-free cuBLAS projections into one {@code 2B × M} workspace, one
 * {@code lsum_forward} pass (both biases, σ_in, the sum), the normalization ({@code cuda/Normalization.cu}),
 * and the output layer as a GEMM with bias and σ_out fused into one pass ({@code lin_bias_act}).
 * Backward recomputes the forward (the output too, for σ_out's derivative), then {@code go = g ⊙ σ_out'}
 * ({@code lin_act_grad}), the output layer's gradients, the normalization's backward,
 * {@code lsum_backward} (both sides' {@code gz ⊙ σ_in'} in place) and each side's layer.
 */
public final class LinearSumCuda extends FusionCuda<LinearSum, LinearSum.Gradients> implements LinearSum.Backend {
    public static final KernelSpec FORWARD = new KernelSpec("lsum_forward", "pppppiii");
    public static final KernelSpec BACKWARD = new KernelSpec("lsum_backward", "pppiii");
    static final List<KernelSpec> KERNELS = List.of(FORWARD, BACKWARD);

    private static final int AC = 0, Z = 1, ZH = 2, F = 3, GZ = 4;

    private final LinearCuda linear0, linear1, linearOut;
    private final NormalizationCuda norm;

    public LinearSumCuda(LinearSum op, CudaContext context) {
        this(op, context, Precision.FP32);
    }

    /** This op with its GEMMs in {@code precision}; uploads the weights once (close it to free them). */
    public LinearSumCuda(LinearSum op, CudaContext context, Precision precision) {
        super("a LinearSum", op, context, precision);
        try {
            linear0 = own(new LinearCuda(context, op.linear0()));
            linear1 = own(new LinearCuda(context, op.linear1()));
            linearOut = own(new LinearCuda(context, op.linearOut()));
            norm = op.normalization().isIdentity() ? null : own(new NormalizationCuda(context, op.normalization(), NormalizationCuda.wholeRow(op.mmDim())));
        } catch (RuntimeException e) {
            throw failed(e);
        }
    }

    @Override public List<String> gradientNames() { return op.gradientNames(); }

    @Override List<Long> parameterSizes() {
        List<Long> s = new ArrayList<>();
        addSizes(s, op.linear0());
        addSizes(s, op.linear1());
        addSizes(s, op.linearOut());
        return s;
    }

    @Override LinearSum.Gradients gradients(List<float[]> tensors) {
        Iterator<float[]> t = tensors.iterator();
        float[] dx = t.next(), dy = t.next();
        LinearGradients l0 = next(t, op.linear0()), l1 = next(t, op.linear1());
        return new LinearSum.Gradients(dx, dy, l0, l1, next(t, op.linearOut()));
    }

    /** σ_in of both sides (a | c), z and ẑ; returns ẑ. */
    private DeviceMatrix hidden(Workspace w, DeviceMemory x, DeviceMemory y, int batch, CudaStream stream) {
        int m = op.mmDim();
        DeviceMatrix ac = w.matrix(AC, "a | c", 2 * batch, m), z = w.matrix(Z, "z", batch, m);
        linear0.project(w.blas, precision, DeviceMatrix.of("x", x, batch, op.dx()), ac.rows(0, batch));
        linear1.project(w.blas, precision, DeviceMatrix.of("y", y, batch, op.dy()), ac.rows(batch, batch));
        context.launch(FORWARD, grid((long) batch * m), 1, BLOCK, 0, stream, ac.rows(0, batch).memory(), ac.rows(batch, batch).memory(),
                linear0.bias(), linear1.bias(), z.memory(), batch, m, op.inputActivation().code());
        if (norm == null) return z;
        DeviceMatrix zh = w.matrix(ZH, "ẑ", batch, m);
        norm.forward(z.memory(), zh.memory(), batch, stream);
        return zh;
    }

    @Override void forward(Workspace w, DeviceMemory x, DeviceMemory y, DeviceMemory out, int batch, CudaStream stream) {
        linearOut.forward(w.blas, precision, hidden(w, x, y, batch, stream), DeviceMatrix.of("out", out, batch, op.out()), op.outputActivation(), stream);
    }

    @Override void backward(Workspace w, DeviceMemory x, DeviceMemory y, DeviceMemory gradOut, Map<String, DeviceMemory> grads, int batch,
                            CudaStream stream) {
        int m = op.mmDim(), out = op.out();
        DeviceMatrix zh = hidden(w, x, y, batch, stream), ac = w.matrix(AC, "a | c", 2 * batch, m);
        DeviceMatrix go = DeviceMatrix.of("gradOut", gradOut, batch, out);
        if (op.outputActivation() != Activation.NONE) {
            DeviceMatrix f = w.matrix(F, "σ_out'(f) ⊙ g", batch, out); // f, then the output layer's gradient over it
            linearOut.forward(w.blas, precision, zh, f, op.outputActivation(), stream);
            LinearCuda.activationGrad(context, gradOut, f.memory(), f.memory(), batch, out, op.outputActivation(), stream);
            go = f;
        }
        linearOut.backwardParameters(w.blas, precision, go, zh, weight(grads, "linear_out"), bias(grads, "linear_out"), stream);
        DeviceMatrix gz = w.matrix(GZ, "∂z", batch, m);
        linearOut.backwardInput(w.blas, precision, go, 0f, gz);
        if (norm != null) norm.backward(w.floats(Z, (long) batch * m), gz.memory(), gz.memory(), batch, stream);
        DeviceMatrix ga = ac.rows(0, batch), gc = ac.rows(batch, batch);
        context.launch(BACKWARD, grid((long) batch * m), 1, BLOCK, 0, stream, ga.memory(), gc.memory(), gz.memory(), batch, m, op.inputActivation().code());
        DeviceMatrix mx = DeviceMatrix.of("x", x, batch, op.dx()), my = DeviceMatrix.of("y", y, batch, op.dy());
        linear0.backwardParameters(w.blas, precision, ga, mx, weight(grads, "linear0"), bias(grads, "linear0"), stream);
        linear1.backwardParameters(w.blas, precision, gc, my, weight(grads, "linear1"), bias(grads, "linear1"), stream);
        linear0.backwardInput(w.blas, precision, ga, 0f, DeviceMatrix.of("input.0", grads.get("input.0"), batch, op.dx()));
        linear1.backwardInput(w.blas, precision, gc, 0f, DeviceMatrix.of("input.1", grads.get("input.1"), batch, op.dy()));
    }
}
