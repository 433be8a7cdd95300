package io.bifuse.cuda;

import io.bifuse.LayerNorm;
import io.bifuse.LinearGradients;
import io.bifuse.MultiHeadAttention;
import io.bifuse.ObjectMask;
import io.bifuse.Precision;
import io.bifuse.SelfAttentionUnit;
import io.bifuse.cuda.MlbAttentionCuda.LayerBuffers;
import java.util.List;

/**
 * {@link SelfAttentionUnit} on one GPU: the attention step by {@link MultiHeadAttentionCuda} (its fused core
 * where the heads allow), then {@code cuda/SelfAttentionUnit.cu}'s fused residual + LayerNorm, the
 * feed-forward GEMMs in the op's {@link Precision} with the bias and ReLU applied in one pass after the first,
 * and the second residual + LayerNorm.
 *
 * <p>Backward recomputes the forward from {@code x} (the op is stateless), then: LN2's backward (its input
 * gradient and the rows whose column sums give its gain gradient, summed deterministically), the
 * feed-forward layers' gradients and {@code dy = ds2 + W1ᵀ(W2ᵀ ds2 ⊙ [r > 0])} (the second GEMM accumulating
 * onto the residual), LN1's backward, the attention's backward given {@code ds1} (which recomputes the
 * attention once more), and {@code dx = ds1 + dQuery + dKey + dValue} in one pass.
 *
 * <p>Workspaces (and a cuBLAS handle bound to the stream) are made once per (stream, B, L) and kept
 * ({@value #MAX_WORKSPACES} at most): about {@code 4 R (4H + F)} bytes for R = B·L rows, about twice that
 * once backward has run, plus the attention's own. Every argument is checked before anything is queued.
 */
public final class SelfAttentionUnitCuda extends CudaOp<SelfAttentionUnit> implements SelfAttentionUnit.Backend {
    public static final KernelSpec RESIDUAL_NORM = new KernelSpec("sau_residual_norm", "ppppppiiif", "x a gain bias s y rows n variant eps");
    public static final KernelSpec NORM_BACKWARD = new KernelSpec("sau_norm_backward", "pppppiiif", "s gy gain gs gxhat rows n variant eps");
    public static final KernelSpec BIAS_RELU = new KernelSpec("sau_bias_relu", "ppii", "r bias rows f");
    public static final KernelSpec RELU_BACKWARD = new KernelSpec("sau_relu_backward", "ppl", "dr r total");
    public static final KernelSpec ADD4 = new KernelSpec("sau_add4", "pppppl", "dx a b c d total");
    static final List<KernelSpec> KERNELS = List.of(RESIDUAL_NORM, NORM_BACKWARD, BIAS_RELU, RELU_BACKWARD, ADD4);

    static final int MAX_WORKSPACES = 4;
    private static final int NORM_BLOCK = 128, BLOCK = 256; // SAU_BLOCK; the elementwise kernels' block

    /**
     * Where {@link #backward} writes: {@code dx} ({@code B × L × H}) and one {@link LayerBuffers} per layer: the
     * attention's four, the feed-forward two, and each normalization's (its gain's gradient as the weight).
     */
    public record GradientBuffers(DeviceMemory dx, LayerBuffers query, LayerBuffers key, LayerBuffers value, LayerBuffers merge, LayerBuffers ffnHidden,
                                  LayerBuffers ffnOut, LayerBuffers norm1, LayerBuffers norm2) {}

    private final int hidden, ffn, variant;
    private final float eps;
    // package-private for GuidedAttentionUnitCuda, which is this unit with a guided attention step between its two
    final MultiHeadAttentionCuda attention;
    private final LinearCuda ffnHidden, ffnOut;
    final DeviceBuffer gain1, bias1;
    private final DeviceBuffer gain2, bias2;
    private final Workspaces<Shape, Workspace> workspaces = new Workspaces<>("SelfAttentionUnitCuda", MAX_WORKSPACES);

    @Override Workspaces<?, ?> workspaces() { return workspaces; }

    /** This unit on a GPU with FP32 GEMMs. */
    public SelfAttentionUnitCuda(SelfAttentionUnit op, CudaContext context) {
        this(op, context, Precision.FP32);
    }

    /** This unit with its GEMMs (projections and feed-forward) in {@code precision}; the attention core is chosen as {@link MultiHeadAttentionCuda.Path#AUTO} does. */
    public SelfAttentionUnitCuda(SelfAttentionUnit op, CudaContext context, Precision precision) {
        super("a SelfAttentionUnit", op, context, precision, Needs.CUBLAS, MAX_WORKSPACES);
        hidden = op.hidden();
        ffn = op.ffn();
        variant = op.norm().variant().code();
        eps = (float) op.norm().eps();
        SelfAttentionUnit.Weights w = op.weights();
        try {
            attention = own(new MultiHeadAttentionCuda(op.attention(), context, precision));
            ffnHidden = own(new LinearCuda(context, w.ffnHidden()));
            ffnOut = own(new LinearCuda(context, w.ffnOut()));
            gain1 = own(DeviceBuffer.of(context, w.norm1().gain()));
            bias1 = own(DeviceBuffer.of(context, w.norm1().bias()));
            gain2 = own(DeviceBuffer.of(context, w.norm2().gain()));
            bias2 = own(DeviceBuffer.of(context, w.norm2().bias()));
        } catch (RuntimeException e) {
            throw failed(e);
        }
    }

    /** {@code out (B × L × H)} from {@code x (B × L × H)} and the tokens' {@code mask} (null: none), queued on {@code stream}. */
    public void forward(DeviceMemory x, DeviceObjectMask mask, DeviceMemory out, int batch, int tokens, CudaStream stream) {
        checkInputs(x, mask, batch, tokens);
        DeviceArgs.memory("out", out, (long) batch * tokens, hidden);
        DeviceArgs.stream(stream);
        inWorkspace(stream, batch, tokens, w -> run(w, x, mask, out, stream));
    }

    /** The forward into {@code out}, its intermediates (s1, y, r, s2) left in the workspace. */
    private void run(Workspace w, DeviceMemory x, DeviceObjectMask mask, DeviceMemory out, CudaStream stream) {
        int rows = w.rows;
        attention.forward(x, x, x, mask, w.a, null, w.batch, w.tokens, w.tokens, stream);
        residualNorm(x, w.a, gain1, bias1, w.s1, w.y, rows, stream);
        feedForward(w.blas, w.y, w.r, w.a, w.s2, out, rows, stream); // the attention's output (w.a) is dead once s1 is written
    }

    /** {@code s = x + a} and {@code y = LN(s)} with this unit's variant, row by row. */
    void residualNorm(DeviceMemory x, DeviceMemory a, DeviceMemory gain, DeviceMemory bias, DeviceMemory s, DeviceMemory y, int rows, CudaStream stream) {
        context.launch(RESIDUAL_NORM, DeviceArgs.rowGrid(rows), 1, NORM_BLOCK, 0, stream, x, a, gain, bias, s, y, rows, hidden, variant, eps);
    }

    /** The feed-forward step of {@code y}: {@code r = relu(W1 y + b1)}, {@code f = W2 r + b2}, {@code s = y + f}, {@code out = LN2(s)}. */
    void feedForward(CublasHandle blas, DeviceMemory y, DeviceMemory r, DeviceMemory f, DeviceMemory s, DeviceMemory out, int rows, CudaStream stream) {
        ffnHidden.project(blas, precision, DeviceMatrix.of("y", y, rows, hidden), DeviceMatrix.of("r", r, rows, ffn));
        context.launch(BIAS_RELU, DeviceArgs.grid(context, (long) rows * ffn, BLOCK), 1, BLOCK, 0, stream, r, ffnHidden.bias(), rows, ffn);
        ffnOut.forward(blas, precision, DeviceMatrix.of("r", r, rows, ffn), DeviceMatrix.of("f", f, rows, hidden), stream);
        residualNorm(y, f, gain2, bias2, s, out, rows, stream);
    }

    /**
     * LN's backward from its input {@code s} and output gradient {@code gy}: {@code gs} and the gain's and bias's
     * gradients into {@code grads} (column sums of {@code gxhat}, scratch of {@code rows × H}, and of gy).
     */
    void normBackward(DeviceMemory s, DeviceMemory gy, DeviceMemory gain, DeviceMemory gs, DeviceMemory gxhat, LayerBuffers grads, int rows,
                      CudaStream stream) {
        context.launch(NORM_BACKWARD, DeviceArgs.rowGrid(rows), 1, NORM_BLOCK, 0, stream, s, gy, gain, gs, gxhat, rows, hidden, variant, eps);
        LinearCuda.biasGradient(context, DeviceMatrix.of("gxhat", gxhat, rows, hidden), grads.weight(), stream);
        LinearCuda.biasGradient(context, DeviceMatrix.of("gy", gy, rows, hidden), grads.bias(), stream);
    }

    /**
     * The feed-forward step's backward: given {@code gradOut}, {@code ds} = the gradient of its input {@code y}
     * (LN2's backward plus the layers', the second GEMM accumulating onto the residual's), the layers' and LN2's
     * parameter gradients; {@code dr} and {@code gxhat} are scratch.
     */
    void feedForwardBackward(CublasHandle blas, DeviceMemory s, DeviceMemory gradOut, DeviceMemory y, DeviceMemory r, DeviceMemory ds, DeviceMemory dr,
                             DeviceMemory gxhat, LayerBuffers gHidden, LayerBuffers gOut, LayerBuffers gNorm, int rows, CudaStream stream) {
        normBackward(s, gradOut, gain2, ds, gxhat, gNorm, rows, stream);
        DeviceMatrix dsm = DeviceMatrix.of("ds", ds, rows, hidden), drm = DeviceMatrix.of("dr", dr, rows, ffn);
        ffnOut.backwardParameters(blas, precision, dsm, DeviceMatrix.of("r", r, rows, ffn), gOut.weight(), gOut.bias(), stream);
        ffnOut.backwardInput(blas, precision, dsm, 0f, drm);
        context.launch(RELU_BACKWARD, DeviceArgs.grid(context, (long) rows * ffn, BLOCK), 1, BLOCK, 0, stream, dr, r, (long) rows * ffn);
        ffnHidden.backwardParameters(blas, precision, drm, DeviceMatrix.of("y", y, rows, hidden), gHidden.weight(), gHidden.bias(), stream);
        ffnHidden.backwardInput(blas, precision, drm, 1f, dsm); // dy = ds2 + W1ᵀ dr, over ds2 (its last reader was queued above)
    }

    /** {@code dx = a + b + c + d} over {@code n} floats. */
    void add4(DeviceMemory dx, DeviceMemory a, DeviceMemory b, DeviceMemory c, DeviceMemory d, long n, CudaStream stream) {
        context.launch(ADD4, DeviceArgs.grid(context, n, BLOCK), 1, BLOCK, 0, stream, dx, a, b, c, d, n);
    }

    /** Every gradient ({@code grads}) from {@code gradOut (B × L × H)} and the forward's input, queued on {@code stream}; written, not accumulated. */
    public void backward(DeviceMemory x, DeviceObjectMask mask, DeviceMemory gradOut, GradientBuffers grads, int batch, int tokens, CudaStream stream) {
        checkInputs(x, mask, batch, tokens);
        DeviceArgs.memory("gradOut", gradOut, (long) batch * tokens, hidden);
        checkGradients(grads, batch, tokens);
        DeviceArgs.stream(stream);
        inWorkspace(stream, batch, tokens, w -> {
            w.ensureBackward();
            int rows = w.rows;
            run(w, x, mask, w.out, stream);
            feedForwardBackward(w.blas, w.s2, gradOut, w.y, w.r, w.ds, w.dr, w.gxhat, grads.ffnHidden(), grads.ffnOut(), grads.norm2(), rows, stream);
            normBackward(w.s1, w.ds, gain1, w.ds1, w.gxhat, grads.norm1(), rows, stream);
            attention.backward(x, x, x, mask, w.ds1, new MultiHeadAttentionCuda.GradientBuffers(w.dq, w.dk, w.dv, grads.query(), grads.key(), grads.value(),
                    grads.merge()), w.batch, w.tokens, w.tokens, stream);
            add4(grads.dx(), w.ds1, w.dq, w.dk, w.dv, (long) rows * hidden, stream);
        });
    }

    /** Host convenience: copies in, runs on a private stream of this op's, copies out. */
    @Override public float[] forward(float[] x, ObjectMask mask, int batch, int tokens) {
        op.checkInputs(x, mask, batch, tokens);
        return host.run(lane -> {
            DeviceMemory dx = lane.in(x), out = lane.floats((long) batch * tokens * hidden);
            forward(dx, lane.in(mask), out, batch, tokens, lane.stream());
            return lane.read(out);
        });
    }

    /** Host convenience: every gradient, as {@link #forward(float[], ObjectMask, int, int)}. */
    @Override public SelfAttentionUnit.Gradients backward(float[] x, ObjectMask mask, float[] gradOut, int batch, int tokens) {
        op.checkInputs(x, mask, batch, tokens);
        op.checkGradOut(gradOut, batch, tokens);
        return host.run(lane -> {
            DeviceMemory dx = lane.in(x), g = lane.in(gradOut);
            DeviceObjectMask m = lane.in(mask);
            OwnedGradients grads = new OwnedGradients(batch, tokens, lane::floats);
            backward(dx, m, g, grads.buffers(), batch, tokens, lane.stream());
            return grads.read(lane.stream());
        });
    }

    /** Device buffers for every gradient of a {@code (B, L)} call, owned by the result (close it to free them). */
    public OwnedGradients allocateGradients(int batch, int tokens) {
        SelfAttentionUnit.checkSizes(batch, tokens);
        return new OwnedGradients(batch, tokens, null);
    }

    /** Gradient buffers allocated by {@link #allocateGradients}: poison them, pass {@link #buffers()}, read them back. */
    public final class OwnedGradients extends GradientSet<GradientBuffers, SelfAttentionUnit.Gradients> {
        private OwnedGradients(int batch, int tokens, java.util.function.LongFunction<DeviceMemory> alloc) {
            super(context, alloc);
            SelfAttentionUnit.Weights w = op.weights();
            MultiHeadAttention.Weights a = w.attention();
            layOut(() -> new GradientBuffers(floats((long) batch * tokens * hidden), layer(a.query()), layer(a.key()), layer(a.value()), layer(a.merge()),
                    layer(w.ffnHidden()), layer(w.ffnOut()), norm(), norm()));
        }

        private LayerBuffers norm() { return new LayerBuffers(floats(hidden), floats(hidden)); }

        @Override public SelfAttentionUnit.Gradients read(CudaStream stream) {
            GradientBuffers b = buffers();
            MultiHeadAttention.Gradients att = new MultiHeadAttention.Gradients(null, null, null, read(b.query(), stream), read(b.key(), stream),
                    read(b.value(), stream), read(b.merge(), stream));
            return new SelfAttentionUnit.Gradients(read(b.dx(), stream), att, read(b.ffnHidden(), stream), read(b.ffnOut(), stream),
                    new LinearGradients(read(b.norm1().weight(), stream), read(b.norm1().bias(), stream)),
                    new LinearGradients(read(b.norm2().weight(), stream), read(b.norm2().bias(), stream)));
        }
    }

    private void checkInputs(DeviceMemory x, DeviceObjectMask mask, int batch, int tokens) {
        SelfAttentionUnit.checkSizes(batch, tokens);
        DeviceArgs.memory("x", x, (long) batch * tokens, hidden);
        DeviceObjectMask.check("mask", mask, batch, tokens, true);
    }

    private void checkGradients(GradientBuffers grads, int batch, int tokens) {
        if (grads == null) throw new IllegalArgumentException("grads: expected GradientBuffers, got null");
        DeviceArgs.memory("grads.dx", grads.dx(), (long) batch * tokens, hidden);
        SelfAttentionUnit.Weights w = op.weights();
        MultiHeadAttention.Weights a = w.attention();
        MlbAttentionCuda.checkLayer("grads.query", grads.query(), a.query());
        MlbAttentionCuda.checkLayer("grads.key", grads.key(), a.key());
        MlbAttentionCuda.checkLayer("grads.value", grads.value(), a.value());
        MlbAttentionCuda.checkLayer("grads.merge", grads.merge(), a.merge());
        MlbAttentionCuda.checkLayer("grads.ffnHidden", grads.ffnHidden(), w.ffnHidden());
        MlbAttentionCuda.checkLayer("grads.ffnOut", grads.ffnOut(), w.ffnOut());
        checkNorm("grads.norm1", grads.norm1());
        checkNorm("grads.norm2", grads.norm2());
    }

    private void checkNorm(String name, LayerBuffers b) {
        if (b == null) throw new IllegalArgumentException(name + ": expected LayerBuffers (gain, bias), got null");
        DeviceArgs.memory(name + ".weight", b.weight(), 1, hidden);
        DeviceArgs.memory(name + ".bias", b.bias(), 1, hidden);
    }

    private void inWorkspace(CudaStream stream, int batch, int tokens, java.util.function.Consumer<Workspace> body) {
        workspaces.run(stream, new Shape(batch, tokens), s -> new Workspace(s, batch, tokens), body);
    }

    private record Shape(int batch, int tokens) {}

    /** Buffers and the cuBLAS handle for one (stream, B, L). */
    private final class Workspace extends Workspaces.Workspace {
        final int batch, tokens, rows;
        final CublasHandle blas;
        final DeviceBuffer a, s1, y, r, s2;
        DeviceBuffer out, ds, gxhat, dr, ds1, dq, dk, dv; // made on first backward

        Workspace(CudaStream stream, int batch, int tokens) {
            super(SelfAttentionUnitCuda.this.context, stream);
            this.batch = batch;
            this.tokens = tokens;
            rows = batch * tokens;
            try {
                blas = own(new CublasHandle(context, stream));
                a = alloc((long) rows * hidden);
                s1 = alloc((long) rows * hidden);
                y = alloc((long) rows * hidden);
                r = alloc((long) rows * ffn);
                s2 = alloc((long) rows * hidden);
            } catch (RuntimeException e) {
                close();
                throw e;
            }
        }

        void ensureBackward() {
            if (out != null) return;
            out = alloc((long) rows * hidden);
            ds = alloc((long) rows * hidden);
            gxhat = alloc((long) rows * hidden);
            dr = alloc((long) rows * ffn);
            ds1 = alloc((long) rows * hidden);
            dq = alloc((long) rows * hidden);
            dk = alloc((long) rows * hidden);
            dv = alloc((long) rows * hidden);
        }

        private DeviceBuffer alloc(long floats) { return own(DeviceBuffer.allocateFloats(context, floats)); }
    }

    /** The normalization this unit applies (both of its LayerNorms). */
    public LayerNorm norm() { return op.norm(); }
}
