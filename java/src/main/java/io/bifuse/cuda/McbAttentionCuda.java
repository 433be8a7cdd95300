package io.bifuse.cuda;

import io.bifuse.CompactBilinear;
import io.bifuse.McbAttention;
import io.bifuse.Normalization;
import io.bifuse.Precision;
import io.bifuse.cuda.MlbAttentionCuda.LayerBuffers;
import java.util.List;

/**
 * {@link McbAttention} on one GPU: the one-pass cell pooling kernels of {@code cuda/McbAttention.cu}, the
 * cuBLAS GEMMs of the two 1×1 convolutions and the answer layer in the op's {@link Precision}, MLB
 * attention's softmax-and-pool kernel, and {@link CompactBilinearCuda} for the second pooling.
 *
 * <p>Forward, B samples of L cells ({@code N = B·L} cell rows):
 * <ol>
 *   <li>{@code mcb_att_question_spectrum}: each sample's question sketched and transformed once
 *       ({@code B × d1} complex), never per cell;</li>
 *   <li>in chunks of {@link #chunkCells} rows: {@code mcb_att_cells_forward} pools two cells per block
 *       and per FFT in shared memory (both cells' sketches as one complex sequence, one FFT, each spectrum
 *       times its sample's question spectrum, one inverse giving both) and writes the signed square
 *       roots {@code u} (R × d1) and their sums of squares; one
 *       GEMM {@code P = u·W1ᵀ} (R × H) per chunk. The {@code N × d1} map is never written whole: the l2
 *       norm is a per-cell or per-sample scalar, applied after the GEMM to the H-wide rows;</li>
 *   <li>{@code mcb_att_inv} (the l2 scales), {@code mcb_att_hidden} ({@code h = relu(inv·P + b1)}), the
 *       logits GEMM and {@code mcb_att_logits} (bias, glimpse-major layout), then {@code mlb_att_pool}:
 *       softmax over the cells and {@code v̂ = Σ α I}, writing the attention maps;</li>
 *   <li>the fusion pooling {@code MCB(v̂, q)} with its normalization, and the answer layer.</li>
 * </ol>
 * Backward recomputes that from {@code q, I} (nothing is kept between calls), then: the answer and
 * fusion backwards ({@code dq} written), {@code dα = dv̂·Iᵀ} and {@code dI = αᵀ·dv̂} (GEMMs batched over
 * samples), the softmax backward, {@code dh = da·W2}, {@code mcb_att_hidden_backward} and
 * {@code mcb_att_coef} (the l2 step's coefficient from {@code <P, dp>}, so the {@code d1}-wide
 * products are never needed), and per chunk: {@code u} again, {@code dW1 += dpsᵀ·u},
 * {@code dt = dp·W1}, {@code mcb_att_cells_backward} (the pooling's backward for each cell, adding into
 * {@code dI}) and {@code mcb_att_dq_accumulate} ({@code dq} += the cells' question gradients, in cell
 * order: deterministic). {@code logits.bias}'s gradient is exactly zero (softmax invariance) and is
 * written as zeros.
 *
 * <p>Memory: the chunk buffers take at most the budget given at construction ({@link #DEFAULT_CHUNK_BYTES}
 * unless set): {@code 4·d1} bytes per cell row in the forward, {@code 4·(2·d1 + Dq)} in the backward.
 * The rest of a (stream, B, L) workspace is {@code O(N·H)}: about {@code 4·N·(2H + 2G + 4)} bytes, plus
 * {@code 4·N·3H} more on first backward, and the question spectra, {@code 8·B·d1}. Limits: {@code d1} must have no prime factor above 7 and fit the
 * device's shared memory ({@code 12·d1 + 8} bytes: d1 ≤ 18,000 or so on an H200), and G ≤ 16 (the pooling
 * kernel's registers); other configurations are refused by name at construction.
 *
 * <p>Calls on one stream are serialized on its workspace; calls on different streams run concurrently.
 * Every argument is checked by name before anything is queued. Calls are asynchronous with respect to
 * the host, except the {@code float[]} conveniences.
 */
public final class McbAttentionCuda extends CudaOp<McbAttention> implements McbAttention.Backend {
    public static final KernelSpec QUESTION_SPECTRUM = new KernelSpec("mcb_att_question_spectrum", "ppppppppiiii",
            "q qhat bin_start_q bin_index_q bin_sign_q perm tw radix batch dq d stages");
    public static final KernelSpec CELLS_FORWARD = new KernelSpec("mcb_att_cells_forward", "{ppppppppppiiiiiii}",
            "image qhat u ss bin_start_i bin_index_i bin_sign_i perm tw radix r0 rows cells dv d stages signed_sqrt");
    public static final KernelSpec INV = new KernelSpec("mcb_att_inv", "pppiiiif", "ss inv active batch cells scope l2_mode l2_eps");
    public static final KernelSpec HIDDEN = new KernelSpec("mcb_att_hidden", "ppppii", "P inv b1 h rows hdim");
    public static final KernelSpec LOGITS = new KernelSpec("mcb_att_logits", "pppiii", "A b2 logits batch cells G");
    public static final KernelSpec SOFTMAX_BACKWARD = new KernelSpec("mcb_att_softmax_backward", "pppiii", "alpha dalpha da batch cells G");
    public static final KernelSpec HIDDEN_BACKWARD = new KernelSpec("mcb_att_hidden_backward", "pppppppii", "dh h P inv dp dps pd rows hdim");
    public static final KernelSpec COEF = new KernelSpec("mcb_att_coef", "ppppiii", "pd inv active coef batch cells scope");
    public static final KernelSpec CELLS_BACKWARD = new KernelSpec("mcb_att_cells_backward", "{ppppppppppppppppppppiiiiiiiif}",
            "q image dt inv coef dimage dq_part bin_start_q bin_index_q bin_sign_q bin_start_i bin_index_i bin_sign_i ph_q s_q ph_i s_i perm tw radix "
                    + "r0 rows cells dq dv d stages signed_sqrt ssqrt_eps");
    public static final KernelSpec DQ_ACCUMULATE = new KernelSpec("mcb_att_dq_accumulate", "ppiiii", "dq_part dq r0 rows cells dq");
    static final List<KernelSpec> KERNELS = List.of(QUESTION_SPECTRUM, CELLS_FORWARD, INV, HIDDEN, LOGITS, SOFTMAX_BACKWARD, HIDDEN_BACKWARD, COEF,
            CELLS_BACKWARD, DQ_ACCUMULATE);

    /** The chunk buffers' default budget: 256 MiB (about 4,000 cell rows forward, 2,000 backward, at d1 = 16000). */
    public static final long DEFAULT_CHUNK_BYTES = 256L << 20;
    /** The most glimpses: mlb_att_pool keeps one accumulator per glimpse in registers (MLBA_MAX_G). */
    public static final int MAX_GLIMPSES = io.bifuse.MlbAttention.MAX_GLIMPSES;

    static final int MAX_WORKSPACES = 4;
    private static final int CELL_BLOCK = 512, SMALL_BLOCK = 256, BLOCK = 256; // MCBA_BLOCK, MCBA_SMALL, MLBA_BLOCK

    /**
     * Where {@link #backward} writes: {@code dq} ({@code B × Dq}), {@code dI} ({@code B × L × Dv}) and each
     * layer's {@link LayerBuffers}, as {@link McbAttention.Gradients}.
     */
    public record GradientBuffers(DeviceMemory dq, DeviceMemory dI, LayerBuffers hidden, LayerBuffers logits, LayerBuffers answer) {}

    private final int dq, dv, d1, hdim, g, answers, scope;
    private final long chunkBytes;
    private final Normalization norm;
    private final CompactBilinearCuda.HashTable hq, hi;
    private final SharedMemoryFft.Tables fft;
    private final DeviceBuffer phq, phi;
    private final LinearCuda hidden, logits, answer;
    private final CompactBilinearCuda fusion;
    private final Workspaces<Shape, Workspace> workspaces = new Workspaces<>("McbAttentionCuda", MAX_WORKSPACES);

    @Override Workspaces<?, ?> workspaces() { return workspaces; }

    /** This op on a GPU with FP32 GEMMs and the default chunk budget. */
    public McbAttentionCuda(McbAttention op, CudaContext context) {
        this(op, context, Precision.FP32);
    }

    /** This op with its GEMMs in {@code precision} and the default chunk budget. */
    public McbAttentionCuda(McbAttention op, CudaContext context, Precision precision) {
        this(op, context, precision, DEFAULT_CHUNK_BYTES);
    }

    /**
     * This op with its GEMMs in {@code precision} ({@link Precision#FP32} unless you accept the documented
     * error of the reduced modes) and at most {@code chunkBytes} of device memory for the chunked cell
     * pass (at least one cell row's worth: {@code 4·(2·d1 + Dq)} bytes). Uploads the weights and hash
     * tables once; close it to free them and its workspaces.
     */
    public McbAttentionCuda(McbAttention op, CudaContext context, Precision precision, long chunkBytes) {
        super("an McbAttention", op, context, precision, Needs.CUBLAS, MAX_WORKSPACES);
        dq = op.dq();
        dv = op.dv();
        d1 = op.d1();
        hdim = op.hidden();
        g = op.glimpses();
        answers = op.answers();
        scope = op.scope() == McbAttention.L2Scope.CELL ? 0 : 1;
        norm = op.attention().normalization();
        long row = rowBytes(true);
        if (chunkBytes < row) {
            throw new IllegalArgumentException("chunkBytes: expected at least one cell row's buffers, 4·(2·d1 + Dq) = " + row + " bytes, got " + chunkBytes);
        }
        this.chunkBytes = chunkBytes;
        if (g > MAX_GLIMPSES) {
            throw new IllegalArgumentException("logits: expected at most " + MAX_GLIMPSES + " glimpses (outputs) for the CUDA kernels, got " + g);
        }
        if (!SharedMemoryFft.supports(d1)) {
            throw new IllegalArgumentException("attention: expected d1 = attention.d() with no prime factor above 7 for the on-chip cell pooling, got "
                    + d1 + " = " + SharedMemoryFft.factorization(d1));
        }
        long need = CompactBilinearCuda.fusedBackwardBytes(d1), have = Math.min(context.maxDynamicSharedBytes(CELLS_BACKWARD),
                Math.min(context.maxDynamicSharedBytes(CELLS_FORWARD), context.maxDynamicSharedBytes(QUESTION_SPECTRUM)));
        if (need > have) {
            throw new IllegalArgumentException("attention: d1 = " + d1 + " needs " + need + " bytes of shared memory per block for the cell pooling's backward; "
                    + "this device allows " + have);
        }
        CompactBilinear att = op.attention();
        McbAttention.Weights w = op.weights();
        try {
            hq = own(new CompactBilinearCuda.HashTable(context, att.h1(), att.s1(), d1));
            hi = own(new CompactBilinearCuda.HashTable(context, att.h2(), att.s2(), d1));
            fft = own(SharedMemoryFft.of(d1).upload(context));
            phq = own(DeviceBuffer.of(context, fft.permuted(att.h1())));
            phi = own(DeviceBuffer.of(context, fft.permuted(att.h2())));
            hidden = own(new LinearCuda(context, w.hidden()));
            logits = own(new LinearCuda(context, w.logits()));
            answer = own(new LinearCuda(context, w.answer()));
            fusion = own(new CompactBilinearCuda(op.fusion(), context));
        } catch (RuntimeException e) {
            throw failed(e);
        }
    }

    /** Bytes of chunk buffers per cell row: u, and in the backward dt and the question-gradient partials. */
    private long rowBytes(boolean backward) { return 4L * (backward ? 2L * d1 + dq : d1); }

    /** The chunk buffers' budget this op was made with. */
    public long chunkBytes() { return chunkBytes; }

    /** Cells per chunk for a {@code (B, L)} call: as many as the budget holds with the backward's buffers, at most {@code B·L}. */
    public int chunkCells(int batch, int cells) {
        checkSizes(batch, cells);
        return (int) Math.min((long) batch * cells, chunkBytes / rowBytes(true));
    }

    /**
     * {@code out (B × A) = op(q (B × Dq), image (B × L × Dv))}, and the attention maps into
     * {@code attention} ({@code B × G × L}) unless it is null; queued on {@code stream}.
     */
    public void forward(DeviceMemory q, DeviceMemory image, DeviceMemory out, DeviceMemory attention, int batch, int cells, CudaStream stream) {
        checkSizes(batch, cells);
        DeviceArgs.memory("q", q, batch, dq);
        DeviceArgs.memory("image", image, (long) batch * cells, dv);
        DeviceArgs.memory("out", out, batch, answers);
        if (attention != null) DeviceArgs.memory("attention", attention, (long) batch * g, cells);
        DeviceArgs.stream(stream);
        inWorkspace(stream, batch, cells, w -> {
            attend(w, q, image, attention == null ? w.alpha : attention, batch, cells, stream);
            fusion.forward(w.vhat, q, w.u2, batch, stream);
            answer.forward(w.blas, precision, DeviceMatrix.of("u2", w.u2, batch, op.d2()), DeviceMatrix.of("out", out, batch, answers), stream);
        });
    }

    /** Everything up to the glimpses v̂: P (chunked), ss, inv, h, the logits, α and v̂. */
    private void attend(Workspace w, DeviceMemory q, DeviceMemory image, DeviceMemory alpha, int batch, int cells, CudaStream stream) {
        int rows = batch * cells, chunk = chunkCells(batch, cells);
        context.launch(QUESTION_SPECTRUM, DeviceArgs.rowGrid(batch), 1, CELL_BLOCK, (int) CompactBilinearCuda.fusedForwardBytes(d1), stream,
                q, w.qhat, hq.binStart, hq.binIndex, hq.binSign, fft.permutation, fft.twiddles, fft.radix, batch, dq, d1, fft.stages);
        for (int r0 = 0; r0 < rows; r0 += chunk) {
            int n = Math.min(chunk, rows - r0);
            cellsForward(w, image, r0, n, cells, stream);
            hidden.project(w.blas, precision, DeviceMatrix.of("u", w.u, n, d1), DeviceMatrix.of("P", floats(w.p, (long) r0 * hdim), n, hdim));
        }
        context.launch(INV, grid(rows), 1, SMALL_BLOCK, 0, stream, w.ss, w.inv, w.active, batch, cells, scope, norm.l2().code(), norm.l2Eps());
        context.launch(HIDDEN, grid((long) rows * hdim), 1, BLOCK, 0, stream, w.p, w.inv, hidden.bias(), w.h, rows, hdim);
        logits.project(w.blas, precision, DeviceMatrix.of("h", w.h, rows, hdim), DeviceMatrix.of("A", w.a, rows, g));
        context.launch(LOGITS, grid((long) rows * g), 1, BLOCK, 0, stream, w.a, logits.bias(), w.logits, batch, cells, g);
        long units = (long) batch * ((dv + BLOCK - 1) / BLOCK);
        context.launch(MlbAttentionCuda.POOL, units(units), 1, BLOCK, 0, stream, w.logits, image, alpha, w.vhat, batch, cells, dv, g);
    }

    /** Cells r0 .. r0 + n (two per block), after this call's question spectra: u into the chunk buffer, ss. */
    private void cellsForward(Workspace w, DeviceMemory image, int r0, int n, int cells, CudaStream stream) {
        context.launch(CELLS_FORWARD, DeviceArgs.rowGrid((n + 1) / 2), 1, CELL_BLOCK, (int) CompactBilinearCuda.fusedForwardBytes(d1), stream,
                image, w.qhat, w.u, w.ss, hi.binStart, hi.binIndex, hi.binSign, fft.permutation, fft.twiddles, fft.radix, r0, n, cells, dv, d1,
                fft.stages, norm.signedSqrt() ? 1 : 0);
    }

    /**
     * Every gradient ({@code grads}) from {@code gradOut = ∂L/∂out (B × A)} and the forward's inputs,
     * queued on {@code stream}. Gradients are written, not accumulated; {@code gradOut} is only read.
     */
    public void backward(DeviceMemory q, DeviceMemory image, DeviceMemory gradOut, GradientBuffers grads, int batch, int cells, CudaStream stream) {
        checkSizes(batch, cells);
        DeviceArgs.memory("q", q, batch, dq);
        DeviceArgs.memory("image", image, (long) batch * cells, dv);
        DeviceArgs.memory("gradOut", gradOut, batch, answers);
        checkGradients(grads, batch, cells);
        DeviceArgs.stream(stream);
        inWorkspace(stream, batch, cells, w -> {
            w.ensureBackward();
            CublasHandle blas = w.blas;
            Precision p = precision;
            int rows = batch * cells, d2 = op.d2();
            attend(w, q, image, w.alpha, batch, cells, stream);
            fusion.forward(w.vhat, q, w.u2, batch, stream);
            DeviceMatrix go = DeviceMatrix.of("gradOut", gradOut, batch, answers);
            answer.backwardInput(blas, p, go, 0f, DeviceMatrix.of("du2", w.du2, batch, d2));
            answer.backwardParameters(blas, p, go, DeviceMatrix.of("u2", w.u2, batch, d2), grads.answer().weight(), grads.answer().bias(), stream);
            fusion.backward(w.vhat, q, w.du2, w.dvhat, grads.dq(), batch, stream);
            // dα[b] (G × L) = dv̂[b] · I[b]ᵀ and dI[b] (L × Dv) = α[b]ᵀ · dv̂[b], batched over samples
            blas.gemmStridedBatched(p, false, true, g, cells, dv, 1f, w.dvhat, dv, (long) g * dv, image, dv, (long) cells * dv,
                    0f, w.dalpha, cells, (long) g * cells, batch);
            blas.gemmStridedBatched(p, true, false, cells, dv, g, 1f, w.alpha, cells, (long) g * cells, w.dvhat, dv, (long) g * dv,
                    0f, grads.dI(), dv, (long) cells * dv, batch);
            context.launch(SOFTMAX_BACKWARD, grid((long) batch * g), 1, SMALL_BLOCK, 0, stream, w.alpha, w.dalpha, w.a, batch, cells, g);
            DeviceMatrix da = DeviceMatrix.of("da", w.a, rows, g), hm = DeviceMatrix.of("h", w.h, rows, hdim);
            logits.backwardParameters(blas, p, da, hm, grads.logits().weight(), null, stream);
            if (grads.logits().bias() != null) DeviceBuffer.fillAsync(grads.logits().bias(), 0f, g, stream);
            logits.backwardInput(blas, p, da, 0f, DeviceMatrix.of("dh", w.dh, rows, hdim));
            context.launch(HIDDEN_BACKWARD, DeviceArgs.rowGrid(rows), 1, SMALL_BLOCK, 0, stream, w.dh, w.h, w.p, w.inv, w.dp, w.dps, w.pd, rows, hdim);
            context.launch(COEF, grid(rows), 1, SMALL_BLOCK, 0, stream, w.pd, w.inv, w.active, w.coef, batch, cells, scope);
            DeviceMatrix dp = DeviceMatrix.of("dp", w.dp, rows, hdim);
            if (grads.hidden().bias() != null) LinearCuda.biasGradient(context, dp, grads.hidden().bias(), stream);
            int chunk = chunkCells(batch, cells);
            for (int r0 = 0; r0 < rows; r0 += chunk) {
                int n = Math.min(chunk, rows - r0);
                cellsForward(w, image, r0, n, cells, stream);
                // dW1 (H × d1) += dps[r0 .. r0+n)ᵀ · u, the first chunk writing it
                blas.gemm(p, true, false, hdim, d1, n, 1f, floats(w.dps, (long) r0 * hdim), hdim, w.u, d1, r0 == 0 ? 0f : 1f,
                        grads.hidden().weight(), d1);
                hidden.backwardInput(blas, p, DeviceMatrix.of("dp", floats(w.dp, (long) r0 * hdim), n, hdim), 0f, DeviceMatrix.of("dt", w.dt, n, d1));
                context.launch(CELLS_BACKWARD, DeviceArgs.rowGrid(n), 1, CELL_BLOCK, (int) CompactBilinearCuda.fusedBackwardBytes(d1), stream,
                        q, image, w.dt, w.inv, w.coef, grads.dI(), w.dqPart, hq.binStart, hq.binIndex, hq.binSign, hi.binStart, hi.binIndex,
                        hi.binSign, phq, hq.s, phi, hi.s, fft.permutation, fft.twiddles, fft.radix, r0, n, cells, dq, dv, d1, fft.stages,
                        norm.signedSqrt() ? 1 : 0, norm.signedSqrtGradEps());
                long touched = ((long) (r0 + n - 1) / cells - r0 / cells + 1) * dq;
                context.launch(DQ_ACCUMULATE, grid(touched), 1, BLOCK, 0, stream, w.dqPart, grads.dq(), r0, n, cells, dq);
            }
        });
    }

    /** Host convenience: copies in, runs on a private stream, copies out. */
    public float[] forward(float[] q, float[] image, int batch, int cells) {
        return forwardWithAttention(q, image, batch, cells).out();
    }

    /** Host convenience: the output and the attention maps ({@code B × G × L}). */
    public McbAttention.Result forwardWithAttention(float[] q, float[] image, int batch, int cells) {
        op.checkInputs(q, image, batch, cells);
        return host.run(lane -> {
            DeviceMemory dqb = lane.in(q), dib = lane.in(image);
            DeviceMemory out = lane.floats((long) batch * answers), att = lane.floats((long) batch * g * cells);
            forward(dqb, dib, out, att, batch, cells, lane.stream());
            return new McbAttention.Result(lane.read(out), lane.read(att));
        });
    }

    /** Host convenience: every gradient, as {@link #forwardWithAttention}. */
    public McbAttention.Gradients backward(float[] q, float[] image, float[] gradOut, int batch, int cells) {
        op.checkInputs(q, image, batch, cells);
        CompactBilinear.checkLength("gradOut", gradOut, batch, answers);
        return host.run(lane -> {
            DeviceMemory dqb = lane.in(q), dib = lane.in(image), dg = lane.in(gradOut);
            OwnedGradients grads = new OwnedGradients(batch, cells, lane::floats);
            backward(dqb, dib, dg, grads.buffers(), batch, cells, lane.stream());
            return grads.read(lane.stream());
        });
    }

    /** Device buffers for every gradient of a {@code (B, L)} call, owned by the result (close it to free them). */
    public OwnedGradients allocateGradients(int batch, int cells) {
        checkSizes(batch, cells);
        return new OwnedGradients(batch, cells, null);
    }

    /** Gradient buffers allocated by {@link #allocateGradients}: poison them, pass {@link #buffers()}, read them back. */
    public final class OwnedGradients extends GradientSet<GradientBuffers, McbAttention.Gradients> {
        private OwnedGradients(int batch, int cells, java.util.function.LongFunction<DeviceMemory> alloc) {
            super(context, alloc);
            McbAttention.Weights w = op.weights();
            layOut(() -> new GradientBuffers(floats((long) batch * dq), floats((long) batch * cells * dv), layer(w.hidden()), layer(w.logits()),
                    layer(w.answer())));
        }

        @Override public McbAttention.Gradients read(CudaStream stream) {
            GradientBuffers b = buffers();
            return new McbAttention.Gradients(read(b.dq(), stream), read(b.dI(), stream), read(b.hidden(), stream), read(b.logits(), stream),
                    read(b.answer(), stream));
        }
    }

    private int grid(long threads) { return DeviceArgs.grid(context, threads, BLOCK); }

    private int units(long n) { return DeviceArgs.units(context, n); }

    private static DeviceMemory floats(DeviceMemory m, long offsetFloats) { return DeviceArgs.from(m, offsetFloats); }

    private static void checkSizes(int batch, int cells) { DeviceArgs.batchCells(batch, cells); }

    private void checkGradients(GradientBuffers grads, int batch, int cells) {
        if (grads == null) throw new IllegalArgumentException("grads: expected GradientBuffers, got null");
        DeviceArgs.memory("grads.dq", grads.dq(), batch, dq);
        DeviceArgs.memory("grads.dI", grads.dI(), (long) batch * cells, dv);
        McbAttention.Weights w = op.weights();
        MlbAttentionCuda.checkLayer("grads.hidden", grads.hidden(), w.hidden());
        MlbAttentionCuda.checkLayer("grads.logits", grads.logits(), w.logits());
        MlbAttentionCuda.checkLayer("grads.answer", grads.answer(), w.answer());
    }

    /** Runs {@code body} in this op's workspace for (stream, shape): {@link Workspaces#run}. */
    private void inWorkspace(CudaStream stream, int batch, int cells, java.util.function.Consumer<Workspace> body) {
        workspaces.run(stream, new Shape(batch, cells), s -> new Workspace(s, batch, cells), body);
    }

    private record Shape(int batch, int cells) {}

    /** Buffers and the cuBLAS handle for one (stream, B, L). */
    private final class Workspace extends Workspaces.Workspace {
        final int batch, cells, chunk;
        final CublasHandle blas;
        final DeviceBuffer qhat, u, ss, inv, active, p, h, a, logits, alpha, vhat, u2;
        DeviceBuffer du2, dvhat, dalpha, dh, dp, dps, pd, coef, dt, dqPart; // made on first backward

        Workspace(CudaStream stream, int batch, int cells) {
            super(McbAttentionCuda.this.context, stream);
            this.batch = batch;
            this.cells = cells;
            this.chunk = chunkCells(batch, cells);
            long rows = (long) batch * cells;
            try {
                blas = own(new CublasHandle(context, stream));
                qhat = alloc(2L * batch * d1); // complex
                u = alloc((long) chunk * d1);
                ss = alloc(2 * rows); // doubles
                inv = alloc(rows);
                active = alloc(rows);
                p = alloc(rows * hdim);
                h = alloc(rows * hdim);
                a = alloc(rows * g);
                logits = alloc(rows * g);
                alpha = alloc(rows * g);
                vhat = alloc((long) batch * g * dv);
                u2 = alloc((long) batch * op.d2());
            } catch (RuntimeException e) {
                close();
                throw e;
            }
        }

        void ensureBackward() {
            if (du2 != null) return;
            long rows = (long) batch * cells;
            du2 = alloc((long) batch * op.d2());
            dvhat = alloc((long) batch * g * dv);
            dalpha = alloc(rows * g);
            dh = alloc(rows * hdim);
            dp = alloc(rows * hdim);
            dps = alloc(rows * hdim);
            pd = alloc(rows);
            coef = alloc(rows);
            dt = alloc((long) chunk * d1);
            dqPart = alloc((long) chunk * dq);
        }

        private DeviceBuffer alloc(long floats) { return own(DeviceBuffer.allocateFloats(context, floats)); }
    }
}
