package io.bifuse.cuda;

import io.bifuse.BanAttention;
import io.bifuse.BanBlock;
import io.bifuse.BanPooling;
import io.bifuse.Linear;
import io.bifuse.ObjectMask;
import io.bifuse.Precision;
import io.bifuse.WeightNormGradients;
import io.bifuse.WeightNormLinear;
import java.util.ArrayList;
import java.util.List;

/**
 * {@link BanBlock} on one GPU: the projections through cuBLAS in the op's {@link Precision}, the
 * attention maps through {@link BanAttentionCuda}, the pooling through {@link BanPoolingCuda}, and the
 * small kernels of {@code cuda/BanBlock.cu} between them.
 *
 * <p>Forward, B samples of N objects and M tokens ({@code K} attention width, {@code K'} glimpse width,
 * {@code G} glimpses):
 * <ol>
 *   <li>the object mask: the caller's, or built on the device from the zero rows of {@code x};</li>
 *   <li>ONE GEMM for every projection of the objects, which none of the glimpses changes:
 *       {@code Zx = x·[U; U_0; …; U_{G−1}]ᵀ} ({@code B·N × (K + G·K')}), then bias + ReLU in place;</li>
 *   <li>one GEMM for the two projections of the original question, {@code Zy = y·[V; V_0]ᵀ}
 *       ({@code B·M × (K + K')}), bias + ReLU;</li>
 *   <li>the G attention maps from the column slices {@code Zx[:, :K]}, {@code Zy[:, :K]} (fused logits,
 *       mask and softmax: no {@code B×G×N×K} intermediate);</li>
 *   <li>per glimpse: {@code Y''_g} (glimpse 0 from step 3; later glimpses from the updated question, one
 *       GEMM each), the pooling {@code f_g} from {@code A_g} and the slice {@code Zx[:, K + g·K' ...]},
 *       the residual layer {@code W_g f_g + b_g} and its broadcast to every token;</li>
 *   <li>{@code out = Σ_j Y_G[b, j]}.</li>
 * </ol>
 * Weight norm: the effective weights {@code g·V/‖V‖_F} are computed once on the host (in double) and
 * uploaded; backward turns each effective-weight gradient into {@code (dV, dg)} on the device.
 *
 * <p>Backward recomputes the forward (the op is stateless, like every bifuse op) keeping {@code Zx},
 * {@code Zy}, the maps, every {@code Y_g}, {@code Y''_g} and {@code f_g}; then walks the glimpses
 * backwards (residual layer, pooling backward writing {@code dA_g} and the gradient of {@code Zx}'s
 * glimpse slice with the ReLU derivative fused, the question's path), the attention backward, and
 * finishes with ONE GEMM for {@code dx} through the stacked object weights and one for the question.
 *
 * <p>Workspaces (and a cuBLAS handle bound to the stream) are made once per (stream, B, N, M) and kept
 * (the {@value #MAX_WORKSPACES} most recently used). The largest piece is {@code Zx},
 * {@code 4·B·N·(K + G·K')} bytes (1.4 GB at B = 256, N = 100, the sizes of ban-vqa), twice that once
 * backward has run (its gradient). Every argument is checked before anything is queued.
 */
public final class BanBlockCuda extends CudaOp<BanBlock> implements BanBlock.Backend {
    public static final KernelSpec BIAS_RELU = new KernelSpec("bnb_bias_relu", "ppiii");
    public static final KernelSpec RESIDUAL = new KernelSpec("bnb_residual", "pppiii");
    public static final KernelSpec TOKEN_SUM = new KernelSpec("bnb_token_sum", "ppiii");
    public static final KernelSpec BROADCAST = new KernelSpec("bnb_broadcast", "ppiii");
    public static final KernelSpec WN_PARTIAL = new KernelSpec("bnb_wn_partial", "pplp");
    public static final KernelSpec WN_FINISH = new KernelSpec("bnb_wn_finish", "pfp");
    public static final KernelSpec WN_GRAD = new KernelSpec("bnb_wn_grad", "pplpffp");
    static final List<KernelSpec> KERNELS = List.of(BIAS_RELU, RESIDUAL, TOKEN_SUM, BROADCAST, WN_PARTIAL, WN_FINISH, WN_GRAD);

    static final int MAX_WORKSPACES = 2;
    private static final int BLOCK = 256, WN_BLOCKS = 256; // BNB_THREADS, BNB_WN_BLOCKS

    /** One weight-normed layer's gradient buffers: {@code weightV} out × in, {@code weightG} one float, {@code bias} out (null iff no bias). */
    public record LayerBuffers(DeviceMemory weightV, DeviceMemory weightG, DeviceMemory bias) {}

    /** Where {@link #backward} writes: {@code dx} (B × N × Dx), {@code dy} (B × M × Dy) and each layer's buffers, as {@link BanBlock.Gradients}. */
    public record GradientBuffers(DeviceMemory dx, DeviceMemory dy, LayerBuffers objects, LayerBuffers tokens, LayerBuffers logits,
                                  List<LayerBuffers> glimpseObjects, List<LayerBuffers> glimpseTokens, List<LayerBuffers> residuals) {
        public GradientBuffers {
            glimpseObjects = glimpseObjects == null ? null : java.util.Collections.unmodifiableList(new ArrayList<>(glimpseObjects));
            glimpseTokens = glimpseTokens == null ? null : java.util.Collections.unmodifiableList(new ArrayList<>(glimpseTokens));
            residuals = residuals == null ? null : java.util.Collections.unmodifiableList(new ArrayList<>(residuals));
        }
    }

    private final int dx, dy, k, kg, g, kp, sx, sy;
    private final LinearCuda objects, tokens;              // stacked: [U; U_0..U_{G-1}] and [V; V_0]
    private final List<LinearCuda> glimpseTokens = new ArrayList<>(), residuals = new ArrayList<>(); // V_g (index 0 unused), W_g
    private final BanAttentionCuda attention;
    private final BanPoolingCuda pooling;
    private final Workspaces<Shape, Workspace> workspaces = new Workspaces<>("BanBlockCuda", MAX_WORKSPACES);

    @Override Workspaces<?, ?> workspaces() { return workspaces; }

    /** This op on a GPU with FP32 GEMMs (the default; TF32 and BF16 only when passed explicitly). */
    public BanBlockCuda(BanBlock op, CudaContext context) {
        this(op, context, Precision.FP32);
    }

    /**
     * This op on a GPU with its GEMMs in {@code precision} ({@link Precision#FP32} unless you accept
     * the documented error of the reduced modes). Uploads the weights once; close it to free them and
     * its workspaces.
     */
    public BanBlockCuda(BanBlock op, CudaContext context, Precision precision) {
        super("a BanBlock", op, context, precision, Needs.CUBLAS, MAX_WORKSPACES);
        BanBlock.Weights w = op.weights();
        dx = op.dx();
        dy = op.dy();
        k = op.width();
        kg = op.glimpseWidth();
        g = op.glimpses();
        kp = kg / op.group();
        sx = k + g * kg;
        sy = k + kg;
        try {
            List<WeightNormLinear> xs = new ArrayList<>(List.of(w.objects()));
            xs.addAll(w.glimpseObjects());
            objects = own(new LinearCuda(context, stack(xs)));
            tokens = own(new LinearCuda(context, stack(List.of(w.tokens(), w.glimpseTokens().get(0)))));
            for (int i = 0; i < g; i++) {
                glimpseTokens.add(i == 0 ? null : own(new LinearCuda(context, w.glimpseTokens().get(i).effective())));
                residuals.add(own(new LinearCuda(context, w.residuals().get(i).effective())));
            }
            attention = own(new BanAttentionCuda(BanAttention.of(w.logits().effective()), context));
            pooling = own(new BanPoolingCuda(BanPooling.of(kg, op.group()), context));
        } catch (RuntimeException e) {
            throw failed(e);
        }
    }


    /**
     * {@code out (B × Dy) = op(x (B × N × Dx), y (B × M × Dy))}, queued on {@code stream}; the attention
     * maps ({@code B × G × N × M}) into {@code attentionOut} unless it is null. {@code mask} null: an
     * object is padding exactly when its row of {@code x} is all zeros (ban-vqa's rule), found on the device.
     */
    public void forward(DeviceMemory x, DeviceMemory y, DeviceObjectMask mask, int batch, int objectsN, int tokensM,
                        DeviceMemory out, DeviceMemory attentionOut, CudaStream stream) {
        checkSizes(batch, objectsN, tokensM);
        DeviceArgs.memory("x", x, (long) batch * objectsN, dx);
        DeviceArgs.memory("y", y, (long) batch * tokensM, dy);
        DeviceObjectMask.check("mask", mask, batch, objectsN, true);
        DeviceArgs.memory("out", out, batch, dy);
        if (attentionOut != null) DeviceArgs.memory("attentionOut", attentionOut, (long) batch * g * objectsN, tokensM);
        DeviceArgs.stream(stream);
        inWorkspace(stream, batch, objectsN, tokensM, w -> {
            DeviceObjectMask m = run(w, x, y, mask, stream);
            context.launch(TOKEN_SUM, DeviceArgs.grid(context, (long) batch * dy, BLOCK), 1, BLOCK, 0, stream, w.ys.get(g - 1), out, batch, tokensM, dy);
            if (attentionOut != null) {
                DeviceBuffer.copyAsync(attentionOut, w.att, 4L * batch * g * objectsN * tokensM, stream);
            }
        });
    }

    /** Steps 1 to 5 of the class comment: fills w.zx, w.zy, w.att, w.ypp, w.f and w.ys; returns the mask used. */
    private DeviceObjectMask run(Workspace w, DeviceMemory x, DeviceMemory y, DeviceObjectMask mask, CudaStream stream) {
        int b = w.batch, n = w.objects, mt = w.tokens;
        DeviceObjectMask m = mask;
        if (m == null) {
            DeviceObjectMask.fillFromZeroRows(context, w.mask, DeviceMatrix.of("x", x, b * n, dx), stream);
            m = w.mask;
        }
        CublasHandle blas = w.blas;
        objects.project(blas, precision, DeviceMatrix.of("x", x, b * n, dx), zx(w));
        context.launch(BIAS_RELU, DeviceArgs.grid(context, (long) b * n * sx, BLOCK), 1, BLOCK, 0, stream, w.zx, objects.bias(), b * n, sx, sx);
        tokens.project(blas, precision, DeviceMatrix.of("y", y, b * mt, dy), zy(w));
        context.launch(BIAS_RELU, DeviceArgs.grid(context, (long) b * mt * sy, BLOCK), 1, BLOCK, 0, stream, w.zy, tokens.bias(), b * mt, sy, sy);
        attention.forward(zx(w).columns(0, k), zy(w).columns(0, k), m, b, n, mt, w.att, null, stream);
        DeviceMemory ycur = y;
        for (int i = 0; i < g; i++) {
            DeviceMatrix ypp = ypp(w, i);
            if (i > 0) {
                LinearCuda v = glimpseTokens.get(i);
                v.project(blas, precision, DeviceMatrix.of("y", ycur, b * mt, dy), ypp);
                context.launch(BIAS_RELU, DeviceArgs.grid(context, (long) b * mt * kg, BLOCK), 1, BLOCK, 0, stream, ypp.memory(), v.bias(), b * mt, kg, kg);
            }
            pooling.forward(map(w, w.att, "attention", i), zx(w).columns(k + i * kg, kg), ypp, m, b, n, mt, w.f.get(i), stream);
            residuals.get(i).forward(blas, precision, DeviceMatrix.of("f", w.f.get(i), b, kp), DeviceMatrix.of("r", w.r, b, dy), stream);
            context.launch(RESIDUAL, DeviceArgs.grid(context, (long) b * mt * dy, BLOCK), 1, BLOCK, 0, stream, ycur, w.r, w.ys.get(i), b, mt, dy);
            ycur = w.ys.get(i);
        }
        return m;
    }

    /** Y''_g: glimpse 0's is a column block of Zy, later ones have their own buffer. */
    private DeviceMatrix ypp(Workspace w, int i) {
        return i == 0 ? zy(w).columns(k, kg) : DeviceMatrix.of("ypp[" + i + "]", w.ypp.get(i - 1), w.batch * w.tokens, kg);
    }

    /** Zx: every object projection side by side ({@code B·N × (K + G·K')}: the attention's K columns, then each glimpse's K'). */
    private DeviceMatrix zx(Workspace w) { return DeviceMatrix.of("zx", w.zx, w.batch * w.objects, sx); }

    private DeviceMatrix zy(Workspace w) { return DeviceMatrix.of("zy", w.zy, w.batch * w.tokens, sy); }

    /** Glimpse {@code i}'s maps in {@code maps} ({@code B × G·N·M}): its {@code N·M} columns of every sample's row. */
    private DeviceMatrix map(Workspace w, DeviceMemory maps, String name, int i) {
        int nm = w.objects * w.tokens;
        return DeviceMatrix.of(name, maps, w.batch, g * nm).columns(i * nm, nm);
    }

    /**
     * Every gradient ({@code grads}) from {@code gradOut = ∂L/∂out (B × Dy)} and the forward's inputs,
     * queued on {@code stream}. Gradients are written, not accumulated.
     */
    public void backward(DeviceMemory x, DeviceMemory y, DeviceObjectMask mask, int batch, int objectsN, int tokensM,
                         DeviceMemory gradOut, GradientBuffers grads, CudaStream stream) {
        checkSizes(batch, objectsN, tokensM);
        DeviceArgs.memory("x", x, (long) batch * objectsN, dx);
        DeviceArgs.memory("y", y, (long) batch * tokensM, dy);
        DeviceObjectMask.check("mask", mask, batch, objectsN, true);
        DeviceArgs.memory("gradOut", gradOut, batch, dy);
        checkGradients(grads, batch, objectsN, tokensM);
        DeviceArgs.stream(stream);
        inWorkspace(stream, batch, objectsN, tokensM, w -> {
            w.ensureBackward();
            DeviceObjectMask m = run(w, x, y, mask, stream);
            int b = batch, n = objectsN, mt = tokensM;
            CublasHandle blas = w.blas;
            Precision p = precision;
            BanBlock.Weights wt = op.weights();
            DeviceMemory dY = grads.dy();
            DeviceMatrix dzx = DeviceMatrix.of("dzx", w.dzx, b * n, sx), dzy = DeviceMatrix.of("dzy", w.dzy, b * mt, sy);
            context.launch(BROADCAST, DeviceArgs.grid(context, (long) b * mt * dy, BLOCK), 1, BLOCK, 0, stream, gradOut, dY, b, mt, dy);
            for (int i = g - 1; i >= 0; i--) {
                // the residual term W_i f_i + b_i reaches every token: its gradient is the token sum
                context.launch(TOKEN_SUM, DeviceArgs.grid(context, (long) b * dy, BLOCK), 1, BLOCK, 0, stream, dY, w.dr, b, mt, dy);
                LinearCuda res = residuals.get(i);
                LayerBuffers rb = grads.residuals().get(i);
                DeviceMatrix dr = DeviceMatrix.of("dr", w.dr, b, dy);
                res.backwardParameters(blas, p, dr, DeviceMatrix.of("f", w.f.get(i), b, kp), w.dw, rb.bias(), stream);
                weightNorm(w, w.dw, res.weight(), wt.residuals().get(i), rb, stream);
                res.backwardInput(blas, p, dr, 0f, DeviceMatrix.of("df", w.df, b, kp));
                DeviceMatrix dypp = i == 0 ? dzy.columns(k, kg) : DeviceMatrix.of("dypp", w.dypp, b * mt, kg);
                pooling.backward(map(w, w.att, "attention", i), zx(w).columns(k + i * kg, kg), ypp(w, i), m, b, n, mt, w.df,
                        map(w, w.datt, "gradAttention", i), dzx.columns(k + i * kg, kg), dypp, true, stream);
                if (i > 0) {
                    LinearCuda v = glimpseTokens.get(i);
                    LayerBuffers vb = grads.glimpseTokens().get(i);
                    DeviceMemory yin = w.ys.get(i - 1); // Y_i, the residual output of glimpse i − 1
                    DeviceMatrix dyv = DeviceMatrix.of("dypp", w.dypp, b * mt, kg);
                    v.backwardParameters(blas, p, dyv, DeviceMatrix.of("y", yin, b * mt, dy), w.dw, vb.bias(), stream);
                    weightNorm(w, w.dw, v.weight(), wt.glimpseTokens().get(i), vb, stream);
                    v.backwardInput(blas, p, dyv, 1f, DeviceMatrix.of("grads.dy", dY, b * mt, dy));
                }
            }
            attention.backward(zx(w).columns(0, k), zy(w).columns(0, k), m, b, n, mt, w.att, w.datt, dzx.columns(0, k), dzy.columns(0, k), w.dw,
                    grads.logits().bias(), true, stream);
            weightNorm(w, w.dw, attention.weight(), wt.logits(), grads.logits(), stream);
            // x: one GEMM through every stacked object projection
            objects.backwardInput(blas, p, dzx, 0f, DeviceMatrix.of("grads.dx", grads.dx(), b * n, dx));
            objects.backwardParameters(blas, p, dzx, DeviceMatrix.of("x", x, b * n, dx), w.dwx, null, stream);
            layerGrads(w, dzx, w.dwx, objects.weight(), 0, wt.objects(), grads.objects(), stream);
            for (int i = 0; i < g; i++) {
                layerGrads(w, dzx, w.dwx, objects.weight(), k + i * kg, wt.glimpseObjects().get(i), grads.glimpseObjects().get(i), stream);
            }
            // y: the original question's two projections, added to the residual path's gradient
            tokens.backwardInput(blas, p, dzy, 1f, DeviceMatrix.of("grads.dy", dY, b * mt, dy));
            tokens.backwardParameters(blas, p, dzy, DeviceMatrix.of("y", y, b * mt, dy), w.dwy, null, stream);
            layerGrads(w, dzy, w.dwy, tokens.weight(), 0, wt.tokens(), grads.tokens(), stream);
            layerGrads(w, dzy, w.dwy, tokens.weight(), k, wt.glimpseTokens().get(0), grads.glimpseTokens().get(0), stream);
        });
    }

    /** A layer stacked at rows {@code [row, row + out)} of a stacked projection: its bias gradient (a column block of dz) and its weight norm. */
    private void layerGrads(Workspace w, DeviceMatrix dz, DeviceMemory dwStacked, DeviceMemory wStacked, int row,
                            WeightNormLinear layer, LayerBuffers out, CudaStream stream) {
        if (out.bias() != null) LinearCuda.biasGradient(context, dz.columns(row, layer.out()), out.bias(), stream);
        long off = (long) row * layer.in(), n = (long) layer.out() * layer.in();
        weightNorm(w, dwStacked.slice(4 * off, 4 * n), wStacked.slice(4 * off, 4 * n), layer, out, stream);
    }

    /** {@code (dV, dg)} of a weight-normed layer from the gradient of its effective weight (three kernels, deterministic). */
    private void weightNorm(Workspace w, DeviceMemory dW, DeviceMemory W, WeightNormLinear layer, LayerBuffers out, CudaStream stream) {
        long n = (long) layer.out() * layer.in();
        float gain = layer.g();
        context.launch(WN_PARTIAL, WN_BLOCKS, 1, BLOCK, 0, stream, dW, W, n, w.partial);
        context.launch(WN_FINISH, 1, 1, BLOCK, 0, stream, w.partial, gain, out.weightG());
        context.launch(WN_GRAD, DeviceArgs.grid(context, n, BLOCK), 1, BLOCK, 0, stream, dW, W, n, out.weightG(), gain,
                (float) (gain / layer.norm()), out.weightV());
    }

    /** Host convenience: copies in, runs on a private stream, copies out ({@code mask} null: ban-vqa's zero-row rule). */
    public float[] forward(float[] x, float[] y, ObjectMask mask, int batch, int objectsN, int tokensM) {
        return forwardWithAttention(x, y, mask, batch, objectsN, tokensM).out();
    }

    /**
     * Host convenience: the output ({@code B × Dy}) and the attention maps ({@code B × G × N × M}), on a
     * private stream of this op's (kept, with its buffers, for the next call).
     */
    public BanBlock.Result forwardWithAttention(float[] x, float[] y, ObjectMask mask, int batch, int objectsN, int tokensM) {
        op.checkInputs(x, y, mask, batch, objectsN, tokensM);
        return host.run(lane -> {
            DeviceMemory xb = lane.in(x), yb = lane.in(y);
            DeviceObjectMask m = lane.in(mask);
            DeviceMemory out = lane.floats((long) batch * dy), att = lane.floats((long) batch * g * objectsN * tokensM);
            forward(xb, yb, m, batch, objectsN, tokensM, out, att, lane.stream());
            return new BanBlock.Result(lane.read(out), lane.read(att));
        });
    }

    /** Host convenience: every gradient given {@code gradOut = ∂L/∂out} ({@code B × Dy}), as {@link #forwardWithAttention}. */
    public BanBlock.Gradients backward(float[] x, float[] y, ObjectMask mask, float[] gradOut, int batch, int objectsN, int tokensM) {
        op.checkInputs(x, y, mask, batch, objectsN, tokensM);
        io.bifuse.CompactBilinear.checkLength("gradOut", gradOut, batch, dy);
        return host.run(lane -> {
            DeviceMemory xb = lane.in(x), yb = lane.in(y);
            DeviceObjectMask m = lane.in(mask);
            DeviceMemory gb = lane.in(gradOut);
            OwnedGradients grads = new OwnedGradients(batch, objectsN, tokensM, lane::floats); // the lane's buffers: nothing to close
            backward(xb, yb, m, batch, objectsN, tokensM, gb, grads.buffers(), lane.stream());
            return grads.read(lane.stream());
        });
    }

    /** Device buffers for every gradient of a {@code (B, N, M)} call, owned by the result (close it to free them). */
    public OwnedGradients allocateGradients(int batch, int objectsN, int tokensM) {
        checkSizes(batch, objectsN, tokensM);
        return new OwnedGradients(batch, objectsN, tokensM, null);
    }

    /** Gradient buffers allocated by {@link #allocateGradients}: poison them, pass {@link #buffers()}, read them back. */
    public final class OwnedGradients extends GradientSet<GradientBuffers, BanBlock.Gradients> {
        private OwnedGradients(int batch, int objectsN, int tokensM, java.util.function.LongFunction<DeviceMemory> alloc) {
            super(context, alloc);
            BanBlock.Weights w = op.weights();
            layOut(() -> new GradientBuffers(floats((long) batch * objectsN * dx), floats((long) batch * tokensM * dy), layer(w.objects()),
                    layer(w.tokens()), layer(w.logits()), w.glimpseObjects().stream().map(this::layer).toList(),
                    w.glimpseTokens().stream().map(this::layer).toList(), w.residuals().stream().map(this::layer).toList()));
        }

        private LayerBuffers layer(WeightNormLinear l) {
            return new LayerBuffers(floats((long) l.out() * l.in()), floats(1), l.hasBias() ? floats(l.out()) : null);
        }

        @Override public BanBlock.Gradients read(CudaStream stream) {
            BanBlock.Weights w = op.weights();
            GradientBuffers b = buffers();
            List<WeightNormGradients> go = new ArrayList<>(), gt = new ArrayList<>(), gr = new ArrayList<>();
            for (int i = 0; i < g; i++) {
                go.add(read(b.glimpseObjects().get(i), stream));
                gt.add(read(b.glimpseTokens().get(i), stream));
                gr.add(read(b.residuals().get(i), stream));
            }
            return new BanBlock.Gradients(read(b.dx(), stream), read(b.dy(), stream), read(b.objects(), stream), read(b.tokens(), stream),
                    read(b.logits(), stream), go, gt, gr);
        }

        private WeightNormGradients read(LayerBuffers b, CudaStream stream) {
            return new WeightNormGradients(read(b.weightV(), stream), read(b.weightG(), stream)[0], read(b.bias(), stream));
        }
    }

    private void checkSizes(int batch, int objectsN, int tokensM) {
        if (batch < 1) throw new IllegalArgumentException("batch: expected >= 1, got " + batch);
        if (objectsN < 1) throw new IllegalArgumentException("objects: expected N >= 1 objects per sample, got " + objectsN);
        if (tokensM < 1) throw new IllegalArgumentException("tokens: expected M >= 1 tokens per sample, got " + tokensM);
        if ((long) batch * objectsN * Math.max(sx, dx) > Integer.MAX_VALUE || (long) batch * tokensM * Math.max(sy, dy) > Integer.MAX_VALUE) {
            // cuBLAS takes 32-bit dimensions and our row counts are ints; the kernels index in 64 bits
            throw new IllegalArgumentException("batch, objects, tokens: expected B·N·max(Dx, K + G·K') and B·M·max(Dy, K + K') <= "
                    + Integer.MAX_VALUE + ", got B = " + batch + ", N = " + objectsN + ", M = " + tokensM);
        }
    }

    private void checkGradients(GradientBuffers grads, int batch, int objectsN, int tokensM) {
        if (grads == null) throw new IllegalArgumentException("grads: expected GradientBuffers, got null");
        DeviceArgs.memory("grads.dx", grads.dx(), (long) batch * objectsN, dx);
        DeviceArgs.memory("grads.dy", grads.dy(), (long) batch * tokensM, dy);
        BanBlock.Weights w = op.weights();
        checkLayer("grads.objects", grads.objects(), w.objects());
        checkLayer("grads.tokens", grads.tokens(), w.tokens());
        checkLayer("grads.logits", grads.logits(), w.logits());
        checkLayers("grads.glimpseObjects", grads.glimpseObjects(), w.glimpseObjects());
        checkLayers("grads.glimpseTokens", grads.glimpseTokens(), w.glimpseTokens());
        checkLayers("grads.residuals", grads.residuals(), w.residuals());
    }

    private void checkLayers(String name, List<LayerBuffers> b, List<WeightNormLinear> l) {
        if (b == null || b.size() != g) {
            throw new IllegalArgumentException(name + ": expected " + g + " layers' buffers (one per glimpse), got " + (b == null ? "null" : b.size()));
        }
        for (int i = 0; i < g; i++) checkLayer(name + "[" + i + "]", b.get(i), l.get(i));
    }

    private static void checkLayer(String name, LayerBuffers b, WeightNormLinear l) {
        if (b == null) throw new IllegalArgumentException(name + ": expected LayerBuffers, got null");
        DeviceArgs.memory(name + ".weightV", b.weightV(), l.out(), l.in());
        DeviceArgs.memory(name + ".weightG", b.weightG(), 1, 1);
        if (l.hasBias()) DeviceArgs.memory(name + ".bias", b.bias(), 1, l.out());
        else if (b.bias() != null) throw new IllegalArgumentException(name + ".bias: expected null (the layer has no bias), got device memory");
    }

    /** Runs {@code body} in this op's workspace for (stream, shape): {@link Workspaces#run}. */
    private void inWorkspace(CudaStream stream, int batch, int objectsN, int tokensM, java.util.function.Consumer<Workspace> body) {
        workspaces.run(stream, new Shape(batch, objectsN, tokensM), s -> new Workspace(s, batch, objectsN, tokensM), body);
    }

    private record Shape(int batch, int objects, int tokens) {}

    /** Buffers, the zero-row mask and the cuBLAS handle for one (stream, B, N, M). */
    private final class Workspace extends Workspaces.Workspace {
        final int batch, objects, tokens;
        final CublasHandle blas;
        final DeviceObjectMask mask;
        final DeviceBuffer zx, zy, att, r;
        final List<DeviceBuffer> ypp = new ArrayList<>(), f = new ArrayList<>(), ys = new ArrayList<>();
        DeviceBuffer dzx, dzy, datt, dr, df, dypp, dw, dwx, dwy, partial; // made on first backward

        Workspace(CudaStream stream, int batch, int objectsN, int tokensM) {
            super(BanBlockCuda.this.context, stream);
            this.batch = batch;
            this.objects = objectsN;
            this.tokens = tokensM;
            try {
                blas = own(new CublasHandle(context, stream));
                mask = own(DeviceObjectMask.allocate(context, batch, objectsN));
                zx = alloc((long) batch * objectsN * sx);
                zy = alloc((long) batch * tokensM * sy);
                att = alloc((long) batch * g * objectsN * tokensM);
                r = alloc((long) batch * dy);
                for (int i = 0; i < g; i++) {
                    if (i > 0) ypp.add(alloc((long) batch * tokensM * kg));
                    f.add(alloc((long) batch * kp));
                    ys.add(alloc((long) batch * tokensM * dy));
                }
            } catch (RuntimeException e) {
                close();
                throw e;
            }
        }

        void ensureBackward() {
            if (dzx != null) return;
            dzx = alloc((long) batch * objects * sx);
            dzy = alloc((long) batch * tokens * sy);
            datt = alloc((long) batch * g * objects * tokens);
            dr = alloc((long) batch * dy);
            df = alloc((long) batch * kp);
            dypp = alloc((long) batch * tokens * kg);
            dw = alloc(Math.max(Math.max((long) dy * kp, (long) kg * dy), (long) g * k));
            dwx = alloc((long) sx * dx);
            dwy = alloc((long) sy * dy);
            partial = own(DeviceBuffer.allocate(context, 8L * WN_BLOCKS));
        }

        private DeviceBuffer alloc(long floats) { return own(DeviceBuffer.allocateFloats(context, floats)); }
    }

    private static Linear stack(List<WeightNormLinear> layers) {
        int out = 0, in = layers.get(0).in();
        for (WeightNormLinear l : layers) out = Math.addExact(out, l.out());
        float[] wv = new float[Math.multiplyExact(out, in)], bv = new float[out];
        int row = 0;
        for (WeightNormLinear l : layers) {
            Linear e = l.effective();
            e.copyWeightTo(wv, row * in);
            e.copyBiasTo(bv, row);
            row += l.out();
        }
        return new Linear(out, in, wv, bv);
    }
}
