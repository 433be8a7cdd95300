package io.bifuse.cuda;

import io.bifuse.GuidedAttentionUnit;
import io.bifuse.LinearGradients;
import io.bifuse.MultiHeadAttention;
import io.bifuse.ObjectMask;
import io.bifuse.Precision;
import io.bifuse.SelfAttentionUnit;
import io.bifuse.cuda.MlbAttentionCuda.LayerBuffers;
import java.util.List;

/**
 * {@link GuidedAttentionUnit} on one GPU: an SA unit ({@link SelfAttentionUnitCuda}: the self-attention, its
 * residual + LayerNorm, the feed-forward step and the last residual + LayerNorm) with a guided step between: the
 * second {@link MultiHeadAttentionCuda} (queries from the unit's sequence, keys and values from {@code y}) and its
 * residual + LayerNorm, all through {@code cuda/SelfAttentionUnit.cu}'s kernels. Backward recomputes the forward,
 * then walks the three steps back; {@code dy = dKey + dValue} of the guided attention, and {@code dx} sums the
 * self-attention's three input gradients with the residual's.
 *
 * <p>Workspaces per (stream, B, Lx, Ly), {@value #MAX_WORKSPACES} kept: about {@code 4 Rx (6H + F)} bytes for
 * {@code Rx = B·Lx} rows, twice that once backward has run, plus the attentions' own.
 */
public final class GuidedAttentionUnitCuda extends CudaOp<GuidedAttentionUnit> implements GuidedAttentionUnit.Backend {
    public static final KernelSpec ADD2 = new KernelSpec("gau_add2", "pppl", "dx a b total");
    /** Its own kernel; the rest are the SA unit's ({@link SelfAttentionUnitCuda#KERNELS}), launched through the nested unit. */
    static final List<KernelSpec> KERNELS = List.of(ADD2);
    private static final int BLOCK = 256;

    static final int MAX_WORKSPACES = 4;

    /** Where {@link #backward} writes: {@code dx} ({@code B × Lx × H}), {@code dy} ({@code B × Ly × H}) and each layer's buffers (a norm's gain as weight). */
    public record GradientBuffers(DeviceMemory dx, DeviceMemory dy, MultiHeadAttentionCuda.GradientBuffers selfAttention,
                                  MultiHeadAttentionCuda.GradientBuffers guidedAttention, LayerBuffers ffnHidden, LayerBuffers ffnOut, LayerBuffers norm1,
                                  LayerBuffers norm2, LayerBuffers norm3) {}

    private final int hidden;
    private final SelfAttentionUnitCuda unit;
    private final MultiHeadAttentionCuda guided;
    private final DeviceBuffer gain2, bias2;
    private final Workspaces<Shape, Workspace> workspaces = new Workspaces<>("GuidedAttentionUnitCuda", MAX_WORKSPACES);

    @Override Workspaces<?, ?> workspaces() { return workspaces; }

    public GuidedAttentionUnitCuda(GuidedAttentionUnit op, CudaContext context) {
        this(op, context, Precision.FP32);
    }

    /** This unit with its GEMMs in {@code precision}; the attention cores as {@link MultiHeadAttentionCuda.Path#AUTO} chooses. */
    public GuidedAttentionUnitCuda(GuidedAttentionUnit op, CudaContext context, Precision precision) {
        super("a GuidedAttentionUnit", op, context, precision, Needs.CUBLAS, MAX_WORKSPACES);
        hidden = op.hidden();
        GuidedAttentionUnit.Weights w = op.weights();
        try {
            unit = own(new SelfAttentionUnitCuda(SelfAttentionUnit.of(new SelfAttentionUnit.Weights(w.selfAttention(), w.ffnHidden(), w.ffnOut(), w.norm1(),
                    w.norm3()), op.heads(), op.norm()), context, precision));
            guided = own(new MultiHeadAttentionCuda(op.guidedAttention(), context, precision));
            gain2 = own(DeviceBuffer.of(context, w.norm2().gain()));
            bias2 = own(DeviceBuffer.of(context, w.norm2().bias()));
        } catch (RuntimeException e) {
            throw failed(e);
        }
    }

    /** {@code out (B × Lx × H)} from {@code x}, guided by {@code y}, with their masks (null: none), queued on {@code stream}. */
    public void forward(DeviceMemory x, DeviceObjectMask xMask, DeviceMemory y, DeviceObjectMask yMask, DeviceMemory out, int batch, int xTokens,
                        int yTokens, CudaStream stream) {
        checkInputs(x, xMask, y, yMask, batch, xTokens, yTokens);
        DeviceArgs.memory("out", out, (long) batch * xTokens, hidden);
        DeviceArgs.stream(stream);
        inWorkspace(stream, batch, xTokens, yTokens, w -> run(w, x, xMask, y, yMask, out, stream));
    }

    private void run(Workspace w, DeviceMemory x, DeviceObjectMask xMask, DeviceMemory y, DeviceObjectMask yMask, DeviceMemory out, CudaStream stream) {
        int rows = w.rows;
        unit.attention.forward(x, x, x, xMask, w.a, null, w.batch, w.lx, w.lx, stream);
        unit.residualNorm(x, w.a, unit.gain1, unit.bias1, w.s1, w.x1, rows, stream);
        guided.forward(w.x1, y, y, yMask, w.a, null, w.batch, w.lx, w.ly, stream);
        unit.residualNorm(w.x1, w.a, gain2, bias2, w.s2, w.x2, rows, stream);
        unit.feedForward(w.blas, w.x2, w.r, w.a, w.s3, out, rows, stream);
    }

    /** Every gradient ({@code grads}) from {@code gradOut (B × Lx × H)} and the forward's inputs, queued on {@code stream}; written, not accumulated. */
    public void backward(DeviceMemory x, DeviceObjectMask xMask, DeviceMemory y, DeviceObjectMask yMask, DeviceMemory gradOut, GradientBuffers grads,
                         int batch, int xTokens, int yTokens, CudaStream stream) {
        checkInputs(x, xMask, y, yMask, batch, xTokens, yTokens);
        DeviceArgs.memory("gradOut", gradOut, (long) batch * xTokens, hidden);
        checkGradients(grads, batch, xTokens, yTokens);
        DeviceArgs.stream(stream);
        inWorkspace(stream, batch, xTokens, yTokens, w -> {
            w.ensureBackward();
            int rows = w.rows;
            long n = (long) rows * hidden;
            run(w, x, xMask, y, yMask, w.out, stream);
            unit.feedForwardBackward(w.blas, w.s3, gradOut, w.x2, w.r, w.ds, w.dr, w.gxhat, grads.ffnHidden(), grads.ffnOut(), grads.norm3(), rows, stream);
            unit.normBackward(w.s2, w.ds, gain2, w.ds2, w.gxhat, grads.norm2(), rows, stream);
            MultiHeadAttentionCuda.GradientBuffers g2 = grads.guidedAttention();
            guided.backward(w.x1, y, y, yMask, w.ds2, new MultiHeadAttentionCuda.GradientBuffers(w.dq, w.dk2, w.dv2, g2.query(), g2.key(), g2.value(),
                    g2.merge()), w.batch, w.lx, w.ly, stream);
            add2(grads.dy(), w.dk2, w.dv2, (long) w.batch * w.ly * hidden, stream);
            add2(w.ds, w.ds2, w.dq, n, stream); // dx1 = ds2 + dQuery, over the feed-forward step's spent gradient
            unit.normBackward(w.s1, w.ds, unit.gain1, w.ds1, w.gxhat, grads.norm1(), rows, stream);
            MultiHeadAttentionCuda.GradientBuffers g1 = grads.selfAttention();
            unit.attention.backward(x, x, x, xMask, w.ds1, new MultiHeadAttentionCuda.GradientBuffers(w.dq, w.dk, w.dv, g1.query(), g1.key(), g1.value(),
                    g1.merge()), w.batch, w.lx, w.lx, stream);
            unit.add4(grads.dx(), w.ds1, w.dq, w.dk, w.dv, n, stream);
        });
    }

    /** {@code dx = a + b} over {@code n} floats. */
    private void add2(DeviceMemory dx, DeviceMemory a, DeviceMemory b, long n, CudaStream stream) {
        context.launch(ADD2, DeviceArgs.grid(context, n, BLOCK), 1, BLOCK, 0, stream, dx, a, b, n);
    }

    /** Host convenience: copies in, runs on a private stream of this op's, copies out. */
    @Override public float[] forward(float[] x, ObjectMask xMask, float[] y, ObjectMask yMask, int batch, int xTokens, int yTokens) {
        op.checkInputs(x, xMask, y, yMask, batch, xTokens, yTokens);
        return host.run(lane -> {
            DeviceMemory dx = lane.in(x), dy = lane.in(y), out = lane.floats((long) batch * xTokens * hidden);
            forward(dx, lane.in(xMask), dy, lane.in(yMask), out, batch, xTokens, yTokens, lane.stream());
            return lane.read(out);
        });
    }

    /** Host convenience: every gradient, as {@link #forward(float[], ObjectMask, float[], ObjectMask, int, int, int)}. */
    @Override public GuidedAttentionUnit.Gradients backward(float[] x, ObjectMask xMask, float[] y, ObjectMask yMask, float[] gradOut, int batch,
                                                            int xTokens, int yTokens) {
        op.checkInputs(x, xMask, y, yMask, batch, xTokens, yTokens);
        op.checkGradOut(gradOut, batch, xTokens);
        return host.run(lane -> {
            DeviceMemory dx = lane.in(x), dy = lane.in(y), g = lane.in(gradOut);
            DeviceObjectMask xm = lane.in(xMask), ym = lane.in(yMask);
            OwnedGradients grads = new OwnedGradients(batch, xTokens, yTokens, lane::floats);
            backward(dx, xm, dy, ym, g, grads.buffers(), batch, xTokens, yTokens, lane.stream());
            return grads.read(lane.stream());
        });
    }

    /** Device buffers for every gradient of a {@code (B, Lx, Ly)} call, owned by the result (close it to free them). */
    public OwnedGradients allocateGradients(int batch, int xTokens, int yTokens) {
        GuidedAttentionUnit.checkSizes(batch, xTokens, yTokens);
        return new OwnedGradients(batch, xTokens, yTokens, null);
    }

    /** Gradient buffers allocated by {@link #allocateGradients}: poison them, pass {@link #buffers()}, read them back. */
    public final class OwnedGradients extends GradientSet<GradientBuffers, GuidedAttentionUnit.Gradients> {
        private OwnedGradients(int batch, int xTokens, int yTokens, java.util.function.LongFunction<DeviceMemory> alloc) {
            super(context, alloc);
            GuidedAttentionUnit.Weights w = op.weights();
            layOut(() -> new GradientBuffers(floats((long) batch * xTokens * hidden), floats((long) batch * yTokens * hidden), attention(w.selfAttention()),
                    attention(w.guidedAttention()), layer(w.ffnHidden()), layer(w.ffnOut()), norm(), norm(), norm()));
        }

        /** The layers' buffers of one attention (its input gradients are the unit's workspace's: null here). */
        private MultiHeadAttentionCuda.GradientBuffers attention(MultiHeadAttention.Weights a) {
            return new MultiHeadAttentionCuda.GradientBuffers(null, null, null, layer(a.query()), layer(a.key()), layer(a.value()), layer(a.merge()));
        }

        private LayerBuffers norm() { return new LayerBuffers(floats(hidden), floats(hidden)); }

        @Override public GuidedAttentionUnit.Gradients read(CudaStream stream) {
            GradientBuffers b = buffers();
            return new GuidedAttentionUnit.Gradients(read(b.dx(), stream), read(b.dy(), stream), read(b.selfAttention(), stream),
                    read(b.guidedAttention(), stream), read(b.ffnHidden(), stream), read(b.ffnOut(), stream), read(b.norm1().weight(), b.norm1().bias(), stream),
                    read(b.norm2().weight(), b.norm2().bias(), stream), read(b.norm3().weight(), b.norm3().bias(), stream));
        }

        private MultiHeadAttention.Gradients read(MultiHeadAttentionCuda.GradientBuffers a, CudaStream stream) {
            return new MultiHeadAttention.Gradients(null, null, null, read(a.query(), stream), read(a.key(), stream), read(a.value(), stream),
                    read(a.merge(), stream));
        }

        private LinearGradients read(DeviceMemory gain, DeviceMemory bias, CudaStream stream) {
            return new LinearGradients(read(gain, stream), read(bias, stream));
        }
    }

    private void checkInputs(DeviceMemory x, DeviceObjectMask xMask, DeviceMemory y, DeviceObjectMask yMask, int batch, int xTokens, int yTokens) {
        GuidedAttentionUnit.checkSizes(batch, xTokens, yTokens);
        DeviceArgs.memory("x", x, (long) batch * xTokens, hidden);
        DeviceObjectMask.check("xMask", xMask, batch, xTokens, true);
        DeviceArgs.memory("y", y, (long) batch * yTokens, hidden);
        DeviceObjectMask.check("yMask", yMask, batch, yTokens, true);
    }

    private void checkGradients(GradientBuffers grads, int batch, int xTokens, int yTokens) {
        if (grads == null) throw new IllegalArgumentException("grads: expected GradientBuffers, got null");
        DeviceArgs.memory("grads.dx", grads.dx(), (long) batch * xTokens, hidden);
        DeviceArgs.memory("grads.dy", grads.dy(), (long) batch * yTokens, hidden);
        GuidedAttentionUnit.Weights w = op.weights();
        checkAttention("grads.selfAttention", grads.selfAttention(), w.selfAttention());
        checkAttention("grads.guidedAttention", grads.guidedAttention(), w.guidedAttention());
        MlbAttentionCuda.checkLayer("grads.ffnHidden", grads.ffnHidden(), w.ffnHidden());
        MlbAttentionCuda.checkLayer("grads.ffnOut", grads.ffnOut(), w.ffnOut());
        checkNorm("grads.norm1", grads.norm1());
        checkNorm("grads.norm2", grads.norm2());
        checkNorm("grads.norm3", grads.norm3());
    }

    private static void checkAttention(String name, MultiHeadAttentionCuda.GradientBuffers b, MultiHeadAttention.Weights a) {
        if (b == null) throw new IllegalArgumentException(name + ": expected MultiHeadAttentionCuda.GradientBuffers (its layers' buffers), got null");
        MlbAttentionCuda.checkLayer(name + ".query", b.query(), a.query());
        MlbAttentionCuda.checkLayer(name + ".key", b.key(), a.key());
        MlbAttentionCuda.checkLayer(name + ".value", b.value(), a.value());
        MlbAttentionCuda.checkLayer(name + ".merge", b.merge(), a.merge());
    }

    private void checkNorm(String name, LayerBuffers b) {
        if (b == null) throw new IllegalArgumentException(name + ": expected LayerBuffers (gain, bias), got null");
        DeviceArgs.memory(name + ".weight", b.weight(), 1, hidden);
        DeviceArgs.memory(name + ".bias", b.bias(), 1, hidden);
    }

    private void inWorkspace(CudaStream stream, int batch, int lx, int ly, java.util.function.Consumer<Workspace> body) {
        workspaces.run(stream, new Shape(batch, lx, ly), s -> new Workspace(s, batch, lx, ly), body);
    }

    private record Shape(int batch, int lx, int ly) {}

    private final class Workspace extends Workspaces.Workspace {
        final int batch, lx, ly, rows;
        final CublasHandle blas;
        final DeviceBuffer a, s1, x1, s2, x2, r, s3;
        DeviceBuffer out, ds, gxhat, dr, ds2, ds1, dq, dk, dv, dk2, dv2; // made on first backward

        Workspace(CudaStream stream, int batch, int lx, int ly) {
            super(GuidedAttentionUnitCuda.this.context, stream);
            this.batch = batch;
            this.lx = lx;
            this.ly = ly;
            rows = batch * lx;
            try {
                blas = own(new CublasHandle(context, stream));
                a = alloc((long) rows * hidden);
                s1 = alloc((long) rows * hidden);
                x1 = alloc((long) rows * hidden);
                s2 = alloc((long) rows * hidden);
                x2 = alloc((long) rows * hidden);
                r = alloc((long) rows * op.ffn());
                s3 = alloc((long) rows * hidden);
            } catch (RuntimeException e) {
                close();
                throw e;
            }
        }

        void ensureBackward() {
            if (out != null) return;
            long n = (long) rows * hidden, ny = (long) batch * ly * hidden;
            out = alloc(n);
            ds = alloc(n);
            gxhat = alloc(n);
            dr = alloc((long) rows * op.ffn());
            ds2 = alloc(n);
            ds1 = alloc(n);
            dq = alloc(n);
            dk = alloc(n);
            dv = alloc(n);
            dk2 = alloc(ny);
            dv2 = alloc(ny);
        }

        private DeviceBuffer alloc(long floats) { return own(DeviceBuffer.allocateFloats(context, floats)); }
    }
}
