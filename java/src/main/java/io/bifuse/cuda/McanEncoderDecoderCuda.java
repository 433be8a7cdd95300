package io.bifuse.cuda;

import io.bifuse.McanEncoderDecoder;
import io.bifuse.ObjectMask;
import io.bifuse.Precision;
import io.bifuse.cuda.MlbAttentionCuda.LayerBuffers;
import java.util.ArrayList;
import java.util.List;

/**
 * {@link McanEncoderDecoder} on one GPU: n {@link SelfAttentionUnitCuda} and n {@link GuidedAttentionUnitCuda} layers,
 * the two reductions (their MLP and merge as cuBLAS GEMMs in the op's {@link Precision}, the masked softmax over the
 * rows and the glimpse sums in {@code cuda/McanEncoderDecoder.cu}), and the final LayerNorm of their sum (one
 * row kernel, SelfAttentionUnit.cu's).
 *
 * <p>Backward recomputes the forward, keeping every layer's output, then: the final norm's backward, each
 * reduction's (the logits' bias gradient written as exact zeros: softmax invariance), the decoder layers from the
 * last (each adding its guiding gradient onto the question's), the encoder layers from the last. Each layer's own
 * backward recomputes that layer's forward once more: three forwards per backward call, a cost not yet measured.
 *
 * <p>Gradients ({@link GradientBuffers}) are one device buffer per parameter tensor, in
 * {@link McanEncoderDecoder#stateDictNames()}'s order (mcan-vqa's names), beside {@code dq} and {@code dv}.
 */
public final class McanEncoderDecoderCuda extends CudaOp<McanEncoderDecoder> implements McanEncoderDecoder.Backend {
    public static final KernelSpec FLAT_POOL = new KernelSpec("mcan_flat_pool", "ppppppiiiii", "z a counts indices alpha p batch rows hidden glimpses masked");
    public static final KernelSpec FLAT_POOL_BACKWARD = new KernelSpec("mcan_flat_pool_backward", "pppppppiiiii",
            "z alpha dp counts indices dz da batch rows hidden glimpses masked");
    static final List<KernelSpec> KERNELS = List.of(FLAT_POOL, FLAT_POOL_BACKWARD);

    /** The reductions' limits (MCF_MAX_G, MCF_MAX_L: their per-sample weights live in shared memory). */
    public static final int MAX_GLIMPSES = 8, MAX_ROWS = 1024;

    static final int MAX_WORKSPACES = 4;
    private static final int FLAT_BLOCK = 128, NORM_BLOCK = 128, BLOCK = 256;

    /** Where {@link #backward} writes: {@code dq} ({@code B × Lq × H}), {@code dv} ({@code B × Lv × H}) and one buffer per parameter tensor. */
    public record GradientBuffers(DeviceMemory dq, DeviceMemory dv, List<DeviceMemory> parameters) {
        public GradientBuffers { parameters = parameters == null ? null : java.util.Collections.unmodifiableList(new ArrayList<>(parameters)); }
    }

    private final int n, hidden, out, variant;
    private final float eps;
    private final List<String> names;
    private final long[] sizes;
    private final List<SelfAttentionUnitCuda> encoder = new ArrayList<>();
    private final List<GuidedAttentionUnitCuda> decoder = new ArrayList<>();
    private final Flat flatQ, flatV;
    private final DeviceBuffer gain, bias;
    private final Workspaces<Shape, Workspace> workspaces = new Workspaces<>("McanEncoderDecoderCuda", MAX_WORKSPACES);

    @Override Workspaces<?, ?> workspaces() { return workspaces; }

    public McanEncoderDecoderCuda(McanEncoderDecoder op, CudaContext context) {
        this(op, context, Precision.FP32);
    }

    public McanEncoderDecoderCuda(McanEncoderDecoder op, CudaContext context, Precision precision) {
        super("a McanEncoderDecoder", op, context, precision, Needs.CUBLAS, MAX_WORKSPACES);
        McanEncoderDecoder.Weights w = op.weights();
        n = op.layers();
        hidden = op.hidden();
        out = op.out();
        variant = op.norm().variant().code();
        eps = (float) op.norm().eps();
        names = op.stateDictNames();
        for (McanEncoderDecoder.Flatten f : List.of(w.questionFlatten(), w.imageFlatten())) {
            if (f.glimpses() > MAX_GLIMPSES) throw new IllegalArgumentException("op: the CUDA reductions take at most " + MAX_GLIMPSES + " glimpses, got " + f.glimpses());
        }
        List<Long> s = new ArrayList<>();
        for (int i = 0; i < n; i++) for (io.bifuse.Linear l : saLayers(w.encoder().get(i))) sizes(s, l);
        for (int i = 0; i < n; i++) for (io.bifuse.Linear l : gaLayers(w.decoder().get(i))) sizes(s, l);
        for (McanEncoderDecoder.Flatten f : List.of(w.questionFlatten(), w.imageFlatten())) for (io.bifuse.Linear l : f.layers()) sizes(s, l);
        s.add((long) out);
        s.add((long) out);
        sizes = s.stream().mapToLong(Long::longValue).toArray();
        try {
            for (int i = 0; i < n; i++) {
                encoder.add(own(new SelfAttentionUnitCuda(op.encoder().get(i), context, precision)));
                decoder.add(own(new GuidedAttentionUnitCuda(op.decoder().get(i), context, precision)));
            }
            flatQ = new Flat(w.questionFlatten());
            flatV = new Flat(w.imageFlatten());
            gain = own(DeviceBuffer.of(context, w.norm().gain()));
            bias = own(DeviceBuffer.of(context, w.norm().bias()));
        } catch (RuntimeException e) {
            throw failed(e);
        }
    }

    /** An SA layer's layers in its gradients' order, the norms as layers of their (gain, bias). */
    private static List<io.bifuse.Linear> saLayers(io.bifuse.SelfAttentionUnit.Weights w) {
        List<io.bifuse.Linear> l = new ArrayList<>(w.attention().layers());
        l.addAll(List.of(w.ffnHidden(), w.ffnOut(), normShape(w.norm1().width()), normShape(w.norm2().width())));
        return l;
    }

    private static List<io.bifuse.Linear> gaLayers(io.bifuse.GuidedAttentionUnit.Weights w) {
        List<io.bifuse.Linear> l = new ArrayList<>(w.selfAttention().layers());
        l.addAll(w.guidedAttention().layers());
        l.addAll(List.of(w.ffnHidden(), w.ffnOut(), normShape(w.norm1().width()), normShape(w.norm2().width()), normShape(w.norm3().width())));
        return l;
    }

    /** A norm's (gain, bias) as the shapes of a 1 × h layer's (weight, bias): h each. */
    private static io.bifuse.Linear normShape(int h) { return new io.bifuse.Linear(h, 1, new float[h], new float[h]); }

    private static void sizes(List<Long> s, io.bifuse.Linear l) {
        s.add((long) l.out() * l.in());
        s.add((long) l.out());
    }

    /** One reduction's layers on the device. */
    private final class Flat {
        final LinearCuda mlpHidden, mlpOut, merge;
        final int mid, glimpses;

        Flat(McanEncoderDecoder.Flatten f) {
            mlpHidden = own(new LinearCuda(context, f.mlpHidden()));
            mlpOut = own(new LinearCuda(context, f.mlpOut()));
            merge = own(new LinearCuda(context, f.merge()));
            mid = f.mlpHidden().out();
            glimpses = f.glimpses();
        }

        /** {@code f = merge(pool(z))}, its intermediates in {@code s}. */
        void forward(CublasHandle blas, DeviceMemory z, Mask m, FlatState s, int batch, int rows, DeviceMemory f, CudaStream stream) {
            int r = batch * rows;
            mlpHidden.project(blas, precision, DeviceMatrix.of("z", z, r, hidden), DeviceMatrix.of("r", s.r, r, mid));
            context.launch(SelfAttentionUnitCuda.BIAS_RELU, DeviceArgs.grid(context, (long) r * mid, BLOCK), 1, BLOCK, 0, stream, s.r, mlpHidden.bias(), r, mid);
            mlpOut.forward(blas, precision, DeviceMatrix.of("r", s.r, r, mid), DeviceMatrix.of("a", s.a, r, glimpses), stream);
            context.launch(FLAT_POOL, DeviceArgs.rowGrid(batch), 1, FLAT_BLOCK, 0, stream, z, s.a, m.counts, m.indices, s.alpha, s.p, batch, rows, hidden,
                    glimpses, m.masked);
            merge.forward(blas, precision, DeviceMatrix.of("p", s.p, batch, glimpses * hidden), DeviceMatrix.of("f", f, batch, out), stream);
        }

        /** {@code dz} from {@code g} (B × O); the layers' gradients into {@code grads} from slot {@code at}. */
        void backward(CublasHandle blas, DeviceMemory z, Mask m, FlatState s, int batch, int rows, DeviceMemory g, DeviceMemory dz, Workspace w,
                      List<DeviceMemory> grads, int at, CudaStream stream) {
            int r = batch * rows;
            DeviceMatrix gm = DeviceMatrix.of("g", g, batch, out);
            merge.backwardParameters(blas, precision, gm, DeviceMatrix.of("p", s.p, batch, glimpses * hidden), grads.get(at + 4), grads.get(at + 5), stream);
            merge.backwardInput(blas, precision, gm, 0f, DeviceMatrix.of("dp", w.dp, batch, glimpses * hidden));
            context.launch(FLAT_POOL_BACKWARD, DeviceArgs.rowGrid(batch), 1, FLAT_BLOCK, 0, stream, z, s.alpha, w.dp, m.counts, m.indices, dz, s.da, batch,
                    rows, hidden, glimpses, m.masked);
            DeviceMatrix dam = DeviceMatrix.of("da", s.da, r, glimpses), drm = DeviceMatrix.of("dr", s.dr, r, mid);
            mlpOut.backwardParameters(blas, precision, dam, DeviceMatrix.of("r", s.r, r, mid), grads.get(at + 2), null, stream);
            DeviceBuffer.fillAsync(grads.get(at + 3), 0f, glimpses, stream); // the logits' bias: softmax invariance, exact zeros
            mlpOut.backwardInput(blas, precision, dam, 0f, drm);
            context.launch(SelfAttentionUnitCuda.RELU_BACKWARD, DeviceArgs.grid(context, (long) r * mid, BLOCK), 1, BLOCK, 0, stream, s.dr, s.r, (long) r * mid);
            mlpHidden.backwardParameters(blas, precision, drm, DeviceMatrix.of("z", z, r, hidden), grads.get(at), grads.get(at + 1), stream);
            mlpHidden.backwardInput(blas, precision, drm, 1f, DeviceMatrix.of("dz", dz, r, hidden));
        }
    }

    /** {@code out (B × O)} from {@code q (B × Lq × H)}, {@code v (B × Lv × H)} and their masks (null: none), queued on {@code stream}. */
    public void forward(DeviceMemory q, DeviceObjectMask qMask, DeviceMemory v, DeviceObjectMask vMask, DeviceMemory out, int batch, int qTokens, int vTokens,
                        CudaStream stream) {
        checkInputs(q, qMask, v, vMask, batch, qTokens, vTokens);
        DeviceArgs.memory("out", out, batch, this.out);
        DeviceArgs.stream(stream);
        inWorkspace(stream, batch, qTokens, vTokens, w -> run(w, q, qMask, v, vMask, out, stream));
    }

    private void run(Workspace w, DeviceMemory q, DeviceObjectMask qMask, DeviceMemory v, DeviceObjectMask vMask, DeviceMemory result, CudaStream stream) {
        for (int i = 0; i < n; i++) encoder.get(i).forward(i == 0 ? q : w.x[i], qMask, w.x[i + 1], w.batch, w.lq, stream);
        for (int i = 0; i < n; i++) decoder.get(i).forward(i == 0 ? v : w.y[i], vMask, w.x[n], qMask, w.y[i + 1], w.batch, w.lv, w.lq, stream);
        flatQ.forward(w.blas, w.x[n], new Mask(qMask, w.s), w.fq, w.batch, w.lq, w.fqOut, stream);
        flatV.forward(w.blas, w.y[n], new Mask(vMask, w.s), w.fv, w.batch, w.lv, w.fvOut, stream);
        context.launch(SelfAttentionUnitCuda.RESIDUAL_NORM, DeviceArgs.rowGrid(w.batch), 1, NORM_BLOCK, 0, stream, w.fqOut, w.fvOut, gain, bias, w.s, result,
                w.batch, out, variant, eps);
    }

    /** Every gradient from {@code gradOut (B × O)}, queued on {@code stream}; written, not accumulated. */
    public void backward(DeviceMemory q, DeviceObjectMask qMask, DeviceMemory v, DeviceObjectMask vMask, DeviceMemory gradOut, GradientBuffers grads,
                         int batch, int qTokens, int vTokens, CudaStream stream) {
        checkInputs(q, qMask, v, vMask, batch, qTokens, vTokens);
        DeviceArgs.memory("gradOut", gradOut, batch, out);
        checkGradients(grads, batch, qTokens, vTokens);
        DeviceArgs.stream(stream);
        inWorkspace(stream, batch, qTokens, vTokens, w -> {
            w.ensureBackward();
            run(w, q, qMask, v, vMask, w.outCopy, stream);
            List<DeviceMemory> g = grads.parameters();
            int np = g.size();
            context.launch(SelfAttentionUnitCuda.NORM_BACKWARD, DeviceArgs.rowGrid(w.batch), 1, NORM_BLOCK, 0, stream, w.s, gradOut, gain, w.ds, w.gxhat,
                    w.batch, out, variant, eps);
            LinearCuda.biasGradient(context, DeviceMatrix.of("gxhat", w.gxhat, w.batch, out), g.get(np - 2), stream);
            LinearCuda.biasGradient(context, DeviceMatrix.of("gradOut", gradOut, w.batch, out), g.get(np - 1), stream);
            int flatAt = n * (16 + 26);
            flatQ.backward(w.blas, w.x[n], new Mask(qMask, w.s), w.fq, w.batch, w.lq, w.ds, w.dxn, w, g, flatAt, stream);
            flatV.backward(w.blas, w.y[n], new Mask(vMask, w.s), w.fv, w.batch, w.lv, w.ds, w.dyA, w, g, flatAt + 6, stream);
            DeviceMemory dy = w.dyA, other = w.dyB, acc = w.dxn, accNext = w.dxB; // ping-pong: the sum kernel's operands are __restrict__
            for (int i = n - 1; i >= 0; i--) {
                DeviceMemory target = i == 0 ? grads.dv() : other;
                decoder.get(i).backward(i == 0 ? v : w.y[i], vMask, w.x[n], qMask, dy, gaGrads(target, w.dGuide, g, n * 16 + i * 26), w.batch, w.lv, w.lq, stream);
                context.launch(GuidedAttentionUnitCuda.ADD2, DeviceArgs.grid(context, w.nq, BLOCK), 1, BLOCK, 0, stream, accNext, acc, w.dGuide, w.nq);
                DeviceMemory t = acc;
                acc = accNext;
                accNext = t;
                other = dy;
                dy = target;
            }
            DeviceMemory dx = acc, spare = accNext;
            for (int i = n - 1; i >= 0; i--) {
                DeviceMemory target = i == 0 ? grads.dq() : spare;
                encoder.get(i).backward(i == 0 ? q : w.x[i], qMask, dx, saGrads(target, g, i * 16), w.batch, w.lq, stream);
                spare = dx;
                dx = target;
            }
        });
    }

    private static LayerBuffers lb(List<DeviceMemory> g, int at) { return new LayerBuffers(g.get(at), g.get(at + 1)); }

    private static SelfAttentionUnitCuda.GradientBuffers saGrads(DeviceMemory dx, List<DeviceMemory> g, int at) {
        return new SelfAttentionUnitCuda.GradientBuffers(dx, lb(g, at), lb(g, at + 2), lb(g, at + 4), lb(g, at + 6), lb(g, at + 8), lb(g, at + 10), lb(g, at + 12),
                lb(g, at + 14));
    }

    private static GuidedAttentionUnitCuda.GradientBuffers gaGrads(DeviceMemory dx, DeviceMemory dy, List<DeviceMemory> g, int at) {
        MultiHeadAttentionCuda.GradientBuffers a1 = new MultiHeadAttentionCuda.GradientBuffers(null, null, null, lb(g, at), lb(g, at + 2), lb(g, at + 4),
                lb(g, at + 6));
        MultiHeadAttentionCuda.GradientBuffers a2 = new MultiHeadAttentionCuda.GradientBuffers(null, null, null, lb(g, at + 8), lb(g, at + 10), lb(g, at + 12),
                lb(g, at + 14));
        return new GuidedAttentionUnitCuda.GradientBuffers(dx, dy, a1, a2, lb(g, at + 16), lb(g, at + 18), lb(g, at + 20), lb(g, at + 22), lb(g, at + 24));
    }

    /** Host convenience: copies in, runs on a private stream of this op's, copies out. */
    @Override public float[] forward(float[] q, ObjectMask qMask, float[] v, ObjectMask vMask, int batch, int qTokens, int vTokens) {
        op.checkInputs(q, qMask, v, vMask, batch, qTokens, vTokens);
        return host.run(lane -> {
            DeviceMemory dq = lane.in(q), dv = lane.in(v), o = lane.floats((long) batch * out);
            forward(dq, lane.in(qMask), dv, lane.in(vMask), o, batch, qTokens, vTokens, lane.stream());
            return lane.read(o);
        });
    }

    /** Host convenience: every gradient, as {@link #forward(float[], ObjectMask, float[], ObjectMask, int, int, int)}. */
    @Override public McanEncoderDecoder.Gradients backward(float[] q, ObjectMask qMask, float[] v, ObjectMask vMask, float[] gradOut, int batch, int qTokens,
                                                           int vTokens) {
        op.checkInputs(q, qMask, v, vMask, batch, qTokens, vTokens);
        io.bifuse.CompactBilinear.checkLength("gradOut", gradOut, batch, out);
        return host.run(lane -> {
            DeviceMemory dq = lane.in(q), dv = lane.in(v), g = lane.in(gradOut);
            DeviceObjectMask qm = lane.in(qMask), vm = lane.in(vMask);
            OwnedGradients grads = new OwnedGradients(batch, qTokens, vTokens, lane::floats);
            backward(dq, qm, dv, vm, g, grads.buffers(), batch, qTokens, vTokens, lane.stream());
            return grads.read(lane.stream());
        });
    }

    /** Device buffers for every gradient of a {@code (B, Lq, Lv)} call, owned by the result (close it to free them). */
    public OwnedGradients allocateGradients(int batch, int qTokens, int vTokens) {
        checkSizes(batch, qTokens, vTokens);
        return new OwnedGradients(batch, qTokens, vTokens, null);
    }

    /** Gradient buffers allocated by {@link #allocateGradients}: poison them, pass {@link #buffers()}, read them back. */
    public final class OwnedGradients extends GradientSet<GradientBuffers, McanEncoderDecoder.Gradients> {
        private OwnedGradients(int batch, int qTokens, int vTokens, java.util.function.LongFunction<DeviceMemory> alloc) {
            super(context, alloc);
            layOut(() -> {
                DeviceMemory dq = floats((long) batch * qTokens * hidden), dv = floats((long) batch * vTokens * hidden);
                List<DeviceMemory> p = new ArrayList<>();
                for (long s : sizes) p.add(floats(s));
                return new GradientBuffers(dq, dv, p);
            });
        }

        @Override public McanEncoderDecoder.Gradients read(CudaStream stream) {
            GradientBuffers b = buffers();
            List<float[]> p = new ArrayList<>();
            for (DeviceMemory m : b.parameters()) p.add(read(m, stream));
            return new McanEncoderDecoder.Gradients(read(b.dq(), stream), read(b.dv(), stream), p);
        }
    }

    private void checkSizes(int batch, int qTokens, int vTokens) {
        if (batch < 1) throw new IllegalArgumentException("batch: expected >= 1, got " + batch);
        if (qTokens < 1) throw new IllegalArgumentException("qTokens: expected >= 1, got " + qTokens);
        if (vTokens < 1) throw new IllegalArgumentException("vTokens: expected >= 1, got " + vTokens);
        if ((long) batch * Math.max(qTokens, vTokens) > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("batch, qTokens, vTokens: expected batch·tokens <= " + Integer.MAX_VALUE);
        }
        if (Math.max(qTokens, vTokens) > MAX_ROWS) {
            throw new IllegalArgumentException((qTokens > MAX_ROWS ? "qTokens" : "vTokens") + ": expected at most " + MAX_ROWS
                    + " rows (the CUDA reductions keep a sample's weights in shared memory), got " + Math.max(qTokens, vTokens));
        }
    }

    private void checkInputs(DeviceMemory q, DeviceObjectMask qMask, DeviceMemory v, DeviceObjectMask vMask, int batch, int qTokens, int vTokens) {
        checkSizes(batch, qTokens, vTokens);
        DeviceArgs.memory("q", q, (long) batch * qTokens, hidden);
        DeviceObjectMask.check("qMask", qMask, batch, qTokens, true);
        DeviceArgs.memory("v", v, (long) batch * vTokens, hidden);
        DeviceObjectMask.check("vMask", vMask, batch, vTokens, true);
    }

    private void checkGradients(GradientBuffers grads, int batch, int qTokens, int vTokens) {
        if (grads == null) throw new IllegalArgumentException("grads: expected GradientBuffers, got null");
        DeviceArgs.memory("grads.dq", grads.dq(), (long) batch * qTokens, hidden);
        DeviceArgs.memory("grads.dv", grads.dv(), (long) batch * vTokens, hidden);
        if (grads.parameters() == null || grads.parameters().size() != sizes.length) {
            throw new IllegalArgumentException("grads.parameters: expected " + sizes.length + " buffers (one per parameter tensor, stateDictNames()), got "
                    + (grads.parameters() == null ? "null" : grads.parameters().size()));
        }
        for (int i = 0; i < sizes.length; i++) DeviceArgs.memory("grads." + names.get(i), grads.parameters().get(i), 1, sizes[i]);
    }

    /** A launch's mask arguments (as MultiHeadAttentionCuda's). */
    private record Mask(DeviceMemory counts, DeviceMemory indices, int masked) {
        Mask(DeviceObjectMask m, DeviceMemory unused) {
            this(m == null ? unused : m.counts(), m == null ? unused : m.indices(), m == null ? 0 : 1);
        }
    }

    private void inWorkspace(CudaStream stream, int batch, int lq, int lv, java.util.function.Consumer<Workspace> body) {
        workspaces.run(stream, new Shape(batch, lq, lv), s -> new Workspace(s, batch, lq, lv), body);
    }

    private record Shape(int batch, int lq, int lv) {}

    /** One reduction's buffers. */
    private static final class FlatState {
        DeviceBuffer r, a, alpha, p, da, dr;
    }

    private final class Workspace extends Workspaces.Workspace {
        final int batch, lq, lv;
        final long nq, nv;
        final CublasHandle blas;
        final DeviceBuffer[] x, y;
        final FlatState fq = new FlatState(), fv = new FlatState();
        final DeviceBuffer fqOut, fvOut, s;
        DeviceBuffer outCopy, ds, gxhat, dp, dxn, dxB, dyA, dyB, dGuide; // made on first backward

        Workspace(CudaStream stream, int batch, int lq, int lv) {
            super(McanEncoderDecoderCuda.this.context, stream);
            this.batch = batch;
            this.lq = lq;
            this.lv = lv;
            nq = (long) batch * lq * hidden;
            nv = (long) batch * lv * hidden;
            try {
                blas = own(new CublasHandle(context, stream));
                x = new DeviceBuffer[n + 1];
                y = new DeviceBuffer[n + 1];
                for (int i = 1; i <= n; i++) {
                    x[i] = alloc(nq);
                    y[i] = alloc(nv);
                }
                flat(fq, flatQ, lq);
                flat(fv, flatV, lv);
                fqOut = alloc((long) batch * out);
                fvOut = alloc((long) batch * out);
                s = alloc((long) batch * out);
            } catch (RuntimeException e) {
                close();
                throw e;
            }
        }

        private void flat(FlatState st, Flat f, int rows) {
            long r = (long) batch * rows;
            st.r = alloc(r * f.mid);
            st.a = alloc(r * f.glimpses);
            st.alpha = alloc(r * f.glimpses);
            st.p = alloc((long) batch * f.glimpses * hidden);
        }

        void ensureBackward() {
            if (outCopy != null) return;
            outCopy = alloc((long) batch * out);
            ds = alloc((long) batch * out);
            gxhat = alloc((long) batch * out);
            dp = alloc((long) batch * Math.max(flatQ.glimpses, flatV.glimpses) * hidden);
            for (FlatState st : List.of(fq, fv)) {
                long rows = st == fq ? (long) batch * lq : (long) batch * lv;
                Flat f = st == fq ? flatQ : flatV;
                st.da = alloc(rows * f.glimpses);
                st.dr = alloc(rows * f.mid);
            }
            dxn = alloc(nq);
            dxB = alloc(nq);
            dyA = alloc(nv);
            dyB = alloc(nv);
            dGuide = alloc(nq);
        }

        private DeviceBuffer alloc(long floats) { return own(DeviceBuffer.allocateFloats(context, floats)); }
    }
}
