package io.bifuse.cuda;

import io.bifuse.Precision;

import io.bifuse.CompactBilinear;
import io.bifuse.Gradients;
import io.bifuse.Normalization;
import java.util.ArrayList;
import java.util.List;

/**
 * {@link CompactBilinear} on one GPU ({@code cuda/CompactBilinear.cu} plus batched cuFFT).
 *
 * <p>Forward: both count sketches into one {@code 2B × d} buffer, one R2C plan of batch {@code 2B},
 * the spectral product (with the 1/d of irfft), one C2R of batch {@code B}, then the normalization
 * kernel (or, with no normalization and a 256-byte aligned output, the C2R writes the output itself).
 * Backward recomputes the sketches and spectra from {@code x, y} as the PyTorch port does, then
 * {@code rfft(g)}, the two conjugate products, one C2R of batch {@code 2B} and the two gathers.
 *
 * <p>{@link Path#FUSED}: one kernel per direction, one block per sample holding the sample's spectrum in
 * shared memory ({@code cbp_fused_forward}, {@code cbp_fused_backward}: both sketches, one complex FFT,
 * the spectral product, the inverse FFT and the normalization in one pass; no workspace, no cuFFT). It
 * serves every {@code d} whose prime factors are at most 7 and whose sequence fits the device's opt-in
 * shared memory (8 d bytes forward, 12 d + 8 backward: d = 16000 takes 128 KB and 192 KB of an H200's
 * 227 KB). {@link Path#AUTO} (the default) takes it per direction where it applies and the cuFFT
 * pipeline elsewhere; {@link #forwardPath()} and {@link #backwardPath()} say which. Which one is faster
 * on a GPU has not been measured yet.
 *
 * <p>With an output layer ({@link CompactBilinear#withOutput}, block.bootstrap's MCB) this op runs its
 * pooling as a nested {@code CompactBilinearCuda} (same sketch and path) into a workspace {@code z}, then
 * the layer as one cuBLAS GEMM with {@code lin_bias_act}; the backward recomputes {@code z}, goes back
 * through the layer ({@link LinearCuda#backwardActivated}) and gives {@code ∂z} to the pooling's backward.
 *
 * <p>Workspaces and cuFFT plans are made once per (stream, B) and kept (the {@value #MAX_WORKSPACES}
 * most recently used), so repeated calls allocate nothing. Calls on one stream are serialized on its
 * workspace; calls on different streams run concurrently. Device inputs may come from another library
 * ({@link DeviceMemory#wrap}, {@link CudaStream#wrap}); every argument is checked before anything is
 * queued. Calls are asynchronous with respect to the host, except the {@code float[]} conveniences.
 */
public final class CompactBilinearCuda extends CudaOp<CompactBilinear> implements CompactBilinear.Backend {

    /** How the count sketch is computed. */
    public enum Sketch {
        /** One thread per output bin sums its inputs in a fixed order: bit-identical run to run (default). */
        DETERMINISTIC,
        /** One thread per input, float atomicAdd into the bins: summation order varies run to run. */
        ATOMIC
    }

    /** Which implementation runs a direction (forward or backward). */
    public enum Path {
        /** The one-pass kernels where they apply (see the class comment), the cuFFT pipeline elsewhere (default). */
        AUTO,
        /** The one-pass shared-memory kernels for both directions; refused for a {@code d} they cannot take. */
        FUSED,
        /** Sketch kernels, batched cuFFT and the spectral and normalization kernels: any {@code d}. */
        PIPELINE
    }

    public static final KernelSpec FUSED_FORWARD = new KernelSpec("cbp_fused_forward", "{ppppppppppppiiiiiiif}",
            "x y out bin_start_x bin_index_x bin_sign_x bin_start_y bin_index_y bin_sign_y perm tw radix rows dx dy d stages signed_sqrt l2_mode l2_eps");
    public static final KernelSpec FUSED_BACKWARD = new KernelSpec("cbp_fused_backward", "{ppppppppppppppppppffiiiiiii}",
            "x y g gx gy bin_start_x bin_index_x bin_sign_x bin_start_y bin_index_y bin_sign_y ph1 s1 ph2 s2 perm tw radix "
                    + "ssqrt_eps l2_eps rows dx dy d stages signed_sqrt l2_mode");
    /** The fused kernels' CBP_FUSED_BLOCK. */
    private static final int FUSED_BLOCK = 512;

    public static final KernelSpec SKETCH_GATHER = new KernelSpec("cbp_sketch_gather", "pppppiii");
    public static final KernelSpec SKETCH_ATOMIC = new KernelSpec("cbp_sketch_atomic", "ppppiii");
    public static final KernelSpec SPECTRAL_PRODUCT = new KernelSpec("cbp_spectral_product", "ppiif");
    public static final KernelSpec SPECTRAL_GRAD = new KernelSpec("cbp_spectral_grad", "pppiif");
    public static final KernelSpec NORMALIZE_FORWARD = new KernelSpec("cbp_normalize_forward", "ppiiiif");
    public static final KernelSpec NORMALIZE_BACKWARD = new KernelSpec("cbp_normalize_backward", "pppiiifif");
    public static final KernelSpec SKETCH_GRAD = new KernelSpec("cbp_sketch_grad", "ppppiii");
    static final List<KernelSpec> KERNELS = List.of(SKETCH_GATHER, SKETCH_ATOMIC, SPECTRAL_PRODUCT, SPECTRAL_GRAD,
            NORMALIZE_FORWARD, NORMALIZE_BACKWARD, SKETCH_GRAD, FUSED_FORWARD, FUSED_BACKWARD);

    static final int MAX_WORKSPACES = 4;
    private static final int BLOCK = 256; // the kernels' CBP_BLOCK

    private final Sketch sketch;
    private final Path path, forwardPath, backwardPath;
    private final HashTable hx, hy;
    private final SharedMemoryFft.Tables fft;   // null unless a direction is fused
    private final DeviceBuffer ph1, ph2;        // perm[h1], perm[h2], with fft
    private final Workspaces<Integer, Workspace> workspaces = new Workspaces<>("CompactBilinearCuda", MAX_WORKSPACES);
    private final CompactBilinearCuda pooling;  // with an output layer: the pooling alone (then the fields above are unused)
    private final LinearCuda linearOut;         // with an output layer
    private final Workspaces<Integer, LayerWorkspace> layerWorkspaces = new Workspaces<>("CompactBilinearCuda", MAX_WORKSPACES);

    @Override Workspaces<?, ?> workspaces() { return pooling == null ? workspaces : layerWorkspaces; }

    /** This op on a GPU with the deterministic count sketch ({@link Sketch}): uploads the hash tables once; close it to free them. */
    public CompactBilinearCuda(CompactBilinear op, CudaContext context) {
        this(op, context, Sketch.DETERMINISTIC);
    }

    /** This op with {@code sketch} for the pipeline, and {@link Path#AUTO}. */
    public CompactBilinearCuda(CompactBilinear op, CudaContext context, Sketch sketch) {
        this(op, context, sketch, Path.AUTO);
    }

    /**
     * This op on {@code path}. The fused kernels always sketch deterministically, so
     * {@link Sketch#ATOMIC} (a pipeline option) takes the pipeline under {@link Path#AUTO} and is refused
     * with {@link Path#FUSED}; so is a {@code d} the fused kernels cannot take (a prime factor above 7, or a
     * sequence larger than the device's shared memory).
     */
    public CompactBilinearCuda(CompactBilinear op, CudaContext context, Sketch sketch, Path path) {
        this(op, context, sketch, path, choose(op, context, sketch, path));
    }

    private CompactBilinearCuda(CompactBilinear op, CudaContext context, Sketch sketch, Path path, Path[] chosen) {
        super("a CompactBilinear", op, context, Precision.FP32, op != null && op.hasOutput() ? Needs.CUBLAS
                : chosen[0] == Path.FUSED && chosen[1] == Path.FUSED ? Needs.NOTHING : Needs.CUFFT, MAX_WORKSPACES);
        this.sketch = sketch;
        this.path = path;
        this.forwardPath = chosen[0];
        this.backwardPath = chosen[1];
        if (op.hasOutput()) {
            try {
                this.pooling = own(new CompactBilinearCuda(op.pooling(), context, sketch, path, chosen));
                this.linearOut = own(new LinearCuda(context, op.linearOut()));
            } catch (RuntimeException e) {
                throw failed(e);
            }
            this.hx = this.hy = null;
            this.fft = null;
            this.ph1 = this.ph2 = null;
            return;
        }
        this.pooling = null;
        this.linearOut = null;
        try {
            this.hx = own(new HashTable(context, op.h1(), op.s1(), op.d()));
            this.hy = own(new HashTable(context, op.h2(), op.s2(), op.d()));
            if (forwardPath == Path.FUSED || backwardPath == Path.FUSED) {
                this.fft = own(SharedMemoryFft.of(op.d()).upload(context));
                this.ph1 = own(DeviceBuffer.of(context, fft.permuted(op.h1())));
                this.ph2 = own(DeviceBuffer.of(context, fft.permuted(op.h2())));
            } else {
                this.fft = null;
                this.ph1 = this.ph2 = null;
            }
        } catch (RuntimeException e) {
            throw failed(e);
        }
    }

    /** The forward's and the backward's path for these arguments (checked here, before anything is made). */
    private static Path[] choose(CompactBilinear op, CudaContext context, Sketch sketch, Path path) {
        if (sketch == null) throw new IllegalArgumentException("sketch: expected DETERMINISTIC or ATOMIC, got null");
        if (path == null) throw new IllegalArgumentException("path: expected AUTO, FUSED or PIPELINE, got null");
        if (op == null || context == null || path == Path.PIPELINE || (path == Path.AUTO && sketch == Sketch.ATOMIC)) {
            return new Path[] {Path.PIPELINE, Path.PIPELINE}; // the superclass names a null op or context
        }
        int d = op.d();
        if (path == Path.FUSED && sketch == Sketch.ATOMIC) {
            throw new IllegalArgumentException("sketch: the fused path sketches deterministically; expected DETERMINISTIC with Path.FUSED, got ATOMIC");
        }
        boolean smooth = SharedMemoryFft.supports(d);
        long fwdBytes = fusedForwardBytes(d), bwdBytes = fusedBackwardBytes(d);
        boolean fwd = smooth && fwdBytes <= context.maxDynamicSharedBytes(FUSED_FORWARD);
        boolean bwd = smooth && bwdBytes <= context.maxDynamicSharedBytes(FUSED_BACKWARD);
        if (path == Path.FUSED && !(fwd && bwd)) {
            String why = !smooth ? "a prime factor above 7 (d = " + SharedMemoryFft.factorization(d) + ")"
                    : "a sequence of " + fwdBytes + " (forward) and " + bwdBytes + " (backward) bytes; this device's blocks take at most "
                            + context.maxDynamicSharedBytes(FUSED_FORWARD) + " and " + context.maxDynamicSharedBytes(FUSED_BACKWARD);
            throw new IllegalArgumentException("path: FUSED cannot take d = " + d + ": " + why + "; use AUTO or PIPELINE");
        }
        return new Path[] {fwd ? Path.FUSED : Path.PIPELINE, bwd ? Path.FUSED : Path.PIPELINE};
    }

    /** Dynamic shared memory of {@code cbp_fused_forward}: the sample's complex sequence. */
    static long fusedForwardBytes(int d) { return 8L * d; }

    /** Dynamic shared memory of {@code cbp_fused_backward}: the sequence and the half spectrum of g. */
    static long fusedBackwardBytes(int d) { return 8L * d + 8L * (d / 2 + 1); }

    public Sketch sketch() { return sketch; }

    /** The path asked for. */
    public Path path() { return path; }

    /** What the forward runs: {@link Path#FUSED} or {@link Path#PIPELINE}. */
    public Path forwardPath() { return forwardPath; }

    /** What the backward runs: {@link Path#FUSED} or {@link Path#PIPELINE}. */
    public Path backwardPath() { return backwardPath; }

    /** {@code out (B × outputWidth) = op(x (B × Dx), y (B × Dy))}, queued on {@code stream}. */
    public void forward(DeviceMemory x, DeviceMemory y, DeviceMemory out, int batch, CudaStream stream) {
        DeviceArgs.batch(batch);
        DeviceArgs.memory("x", x, batch, op.dx());
        DeviceArgs.memory("y", y, batch, op.dy());
        DeviceArgs.memory("out", out, batch, op.outputWidth());
        if (stream == null) throw new IllegalArgumentException("stream: expected a CudaStream (CudaStream.LEGACY_DEFAULT for the default), got null");
        if (pooling != null) {
            layerWorkspaces.run(stream, batch, st -> new LayerWorkspace(st, batch), w -> {
                pooling.forward(x, y, w.z, batch, stream);
                linearOut.forwardActivated(w.blas, precision, DeviceMatrix.of("z", w.z, batch, op.d()), DeviceMatrix.of("out", out, batch, op.outputWidth()),
                        op.outputActivation(), stream);
            });
            return;
        }
        if (forwardPath == Path.FUSED) {
            Normalization n = op.normalization();
            context.launch(FUSED_FORWARD, DeviceArgs.rowGrid(batch), 1, FUSED_BLOCK, (int) fusedForwardBytes(op.d()), stream,
                    x, y, out, hx.binStart, hx.binIndex, hx.binSign, hy.binStart, hy.binIndex, hy.binSign,
                    fft.permutation, fft.twiddles, fft.radix, batch, op.dx(), op.dy(), op.d(), fft.stages,
                    n.signedSqrt() ? 1 : 0, n.l2().code(), n.l2Eps());
            return;
        }
        inWorkspace(stream, batch, w -> {
            sketchBoth(w, x, y, batch, stream);
            w.r2c2B.execute(w.sketches, w.spectra);
            long freq = op.d() / 2 + 1;
            context.launch(SPECTRAL_PRODUCT, DeviceArgs.grid(context, (long) batch * freq, BLOCK), 1, BLOCK, 0, stream,
                    w.spectra, w.product, batch, (int) freq, 1f / op.d());
            Normalization n = op.normalization();
            if (n.isIdentity() && out.address() % 256 == 0) {
                w.c2rB.execute(w.product, out);
            } else {
                w.c2rB.execute(w.product, w.pooled);
                normalizeForward(w.pooled, out, batch, stream);
            }
        });
    }

    /**
     * {@code gradX (B × Dx), gradY (B × Dy)} from {@code gradOut = ∂L/∂out (B × d)} and the forward's
     * inputs, queued on {@code stream}. {@code gradOut} is only read. For an op without an output layer;
     * with one, {@link #backward(DeviceMemory, DeviceMemory, DeviceMemory, DeviceMemory, DeviceMemory, DeviceMemory, DeviceMemory, int, CudaStream)}.
     */
    public void backward(DeviceMemory x, DeviceMemory y, DeviceMemory gradOut, DeviceMemory gradX, DeviceMemory gradY,
                         int batch, CudaStream stream) {
        if (pooling != null) {
            throw new IllegalArgumentException("gradW: this op has an output layer; expected its gradient buffers (the backward with gradW, gradB), got none");
        }
        checkBackward(x, y, gradOut, gradX, gradY, batch);
        if (stream == null) throw new IllegalArgumentException("stream: expected a CudaStream, got null");
        if (backwardPath == Path.FUSED) {
            Normalization n = op.normalization();
            context.launch(FUSED_BACKWARD, DeviceArgs.rowGrid(batch), 1, FUSED_BLOCK, (int) fusedBackwardBytes(op.d()), stream,
                    x, y, gradOut, gradX, gradY, hx.binStart, hx.binIndex, hx.binSign, hy.binStart, hy.binIndex, hy.binSign,
                    ph1, hx.s, ph2, hy.s, fft.permutation, fft.twiddles, fft.radix, n.signedSqrtGradEps(), n.l2Eps(),
                    batch, op.dx(), op.dy(), op.d(), fft.stages, n.signedSqrt() ? 1 : 0, n.l2().code());
            return;
        }
        inWorkspace(stream, batch, w -> {
            w.ensureBackwardPlans();
            int d = op.d();
            long freq = d / 2 + 1;
            sketchBoth(w, x, y, batch, stream);
            w.r2c2B.execute(w.sketches, w.spectra);
            Normalization n = op.normalization();
            if (!n.isIdentity()) {
                context.launch(SPECTRAL_PRODUCT, DeviceArgs.grid(context, (long) batch * freq, BLOCK), 1, BLOCK, 0, stream,
                        w.spectra, w.product, batch, (int) freq, 1f / d);
                w.c2rB.execute(w.product, w.pooled);
            }
            // g (or ∂L/∂z through the normalization) into our own aligned buffer, then its spectrum.
            context.launch(NORMALIZE_BACKWARD, rowGrid(batch), 1, BLOCK, 0, stream,
                    w.pooled, gradOut, w.gradPooled, batch, d, n.signedSqrt() ? 1 : 0, n.signedSqrtGradEps(), n.l2().code(), n.l2Eps());
            w.r2cB.execute(w.gradPooled, w.gradSpectrum);
            context.launch(SPECTRAL_GRAD, DeviceArgs.grid(context, (long) batch * freq, BLOCK), 1, BLOCK, 0, stream,
                    w.gradSpectrum, w.spectra, w.product, batch, (int) freq, 1f / d);
            w.c2r2B.execute(w.product, w.sketches); // dΨx rows [0, B), dΨy rows [B, 2B)
            DeviceMemory gradPsiY = w.sketches.slice(4L * batch * d, 4L * batch * d);
            context.launch(SKETCH_GRAD, DeviceArgs.grid(context, (long) batch * op.dx(), BLOCK), 1, BLOCK, 0, stream,
                    w.sketches, hx.h, hx.s, gradX, batch, op.dx(), d);
            context.launch(SKETCH_GRAD, DeviceArgs.grid(context, (long) batch * op.dy(), BLOCK), 1, BLOCK, 0, stream,
                    gradPsiY, hy.h, hy.s, gradY, batch, op.dy(), d);
        });
    }

    /**
     * The backward of an op with an output layer: as the one above, plus the layer's gradients
     * {@code gradW} ({@code Out × d}) and {@code gradB} ({@code Out}; null to skip, or for a layer without
     * bias), from {@code gradOut = ∂L/∂out (B × Out)}; all written, not accumulated.
     */
    public void backward(DeviceMemory x, DeviceMemory y, DeviceMemory gradOut, DeviceMemory gradX, DeviceMemory gradY, DeviceMemory gradW,
                         DeviceMemory gradB, int batch, CudaStream stream) {
        if (pooling == null) {
            throw new IllegalArgumentException("gradW: this op has no output layer; expected the backward without gradW, gradB");
        }
        checkBackward(x, y, gradOut, gradX, gradY, batch);
        DeviceArgs.memory("gradW", gradW, op.outputWidth(), op.d());
        if (gradB != null) {
            if (!op.linearOut().hasBias()) throw new IllegalArgumentException("gradB: expected null (the output layer has no bias), got a buffer");
            DeviceArgs.memory("gradB", gradB, 1, op.outputWidth());
        }
        if (stream == null) throw new IllegalArgumentException("stream: expected a CudaStream, got null");
        layerWorkspaces.run(stream, batch, st -> new LayerWorkspace(st, batch), w -> {
            w.ensureBackward();
            pooling.forward(x, y, w.z, batch, stream);
            linearOut.backwardActivated(w.blas, precision, DeviceMatrix.of("z", w.z, batch, op.d()), DeviceMatrix.of("gradOut", gradOut, batch, op.outputWidth()),
                    op.outputActivation(), w.f, gradW, gradB, DeviceMatrix.of("gz", w.gz, batch, op.d()), stream);
            pooling.backward(x, y, w.gz, gradX, gradY, batch, stream);
        });
    }

    /** Both backward forms' common arguments, by name ({@code gradOut} is {@code B × outputWidth}). */
    private void checkBackward(DeviceMemory x, DeviceMemory y, DeviceMemory gradOut, DeviceMemory gradX, DeviceMemory gradY, int batch) {
        DeviceArgs.batch(batch);
        DeviceArgs.memory("x", x, batch, op.dx());
        DeviceArgs.memory("y", y, batch, op.dy());
        DeviceArgs.memory("gradOut", gradOut, batch, op.outputWidth());
        DeviceArgs.memory("gradX", gradX, batch, op.dx());
        DeviceArgs.memory("gradY", gradY, batch, op.dy());
    }

    /** Host convenience: copies in, runs on a private stream of this op's (kept, with its buffers and plans, for the next call), copies out. */
    public float[] forward(float[] x, float[] y, int batch) {
        op.checkInputs(x, y, batch);
        return host.run(lane -> {
            DeviceMemory out = lane.floats((long) batch * op.outputWidth());
            forward(lane.in(x), lane.in(y), out, batch, lane.stream());
            return lane.read(out);
        });
    }

    /** Host convenience: as {@link #forward(float[], float[], int)}. */
    public Gradients backward(float[] x, float[] y, float[] gradOut, int batch) {
        op.checkInputs(x, y, batch);
        CompactBilinear.checkLength("gradOut", gradOut, batch, op.outputWidth());
        return host.run(lane -> {
            DeviceMemory dx = lane.in(x), dy = lane.in(y), g = lane.in(gradOut);
            DeviceMemory gx = lane.floats((long) batch * op.dx()), gy = lane.floats((long) batch * op.dy());
            if (pooling == null) {
                backward(dx, dy, g, gx, gy, batch, lane.stream());
                return new Gradients(lane.read(gx), lane.read(gy));
            }
            DeviceMemory gw = lane.floats((long) op.outputWidth() * op.d()), gb = op.linearOut().hasBias() ? lane.floats(op.outputWidth()) : null;
            backward(dx, dy, g, gx, gy, gw, gb, batch, lane.stream());
            return new Gradients(lane.read(gx), lane.read(gy), new io.bifuse.LinearGradients(lane.read(gw), gb == null ? null : lane.read(gb)));
        });
    }

    private void sketchBoth(Workspace w, DeviceMemory x, DeviceMemory y, int batch, CudaStream stream) {
        int d = op.d();
        DeviceMemory psiY = w.sketches.slice(4L * batch * d, 4L * batch * d);
        if (sketch == Sketch.DETERMINISTIC) {
            context.launch(SKETCH_GATHER, DeviceArgs.grid(context, (long) batch * d, BLOCK), 1, BLOCK, 0, stream,
                    x, hx.binStart, hx.binIndex, hx.binSign, w.sketches, batch, op.dx(), d);
            context.launch(SKETCH_GATHER, DeviceArgs.grid(context, (long) batch * d, BLOCK), 1, BLOCK, 0, stream,
                    y, hy.binStart, hy.binIndex, hy.binSign, psiY, batch, op.dy(), d);
        } else {
            DeviceBuffer.fillAsync(w.sketches, 0f, 2L * batch * d, stream);
            context.launch(SKETCH_ATOMIC, DeviceArgs.grid(context, (long) batch * op.dx(), BLOCK), 1, BLOCK, 0, stream,
                    x, hx.h, hx.s, w.sketches, batch, op.dx(), d);
            context.launch(SKETCH_ATOMIC, DeviceArgs.grid(context, (long) batch * op.dy(), BLOCK), 1, BLOCK, 0, stream,
                    y, hy.h, hy.s, psiY, batch, op.dy(), d);
        }
    }

    private void normalizeForward(DeviceMemory z, DeviceMemory out, int batch, CudaStream stream) {
        Normalization n = op.normalization();
        context.launch(NORMALIZE_FORWARD, rowGrid(batch), 1, BLOCK, 0, stream,
                z, out, batch, op.d(), n.signedSqrt() ? 1 : 0, n.l2().code(), n.l2Eps());
    }

    private int rowGrid(int rows) { return Math.min(rows, 65535); }

    /** Runs {@code body} in this op's workspace for (stream, shape): {@link Workspaces#run}. */
    private void inWorkspace(CudaStream stream, int batch, java.util.function.Consumer<Workspace> body) {
        workspaces.run(stream, batch, s -> new Workspace(s, batch), body);
    }

    /** One input's hash on the device, plus its CSR inverse (inputs grouped by bin) for the gather sketch. */
    static final class HashTable implements AutoCloseable {
        final DeviceBuffer h, s, binStart, binIndex, binSign;

        HashTable(CudaContext ctx, int[] hash, float[] sign, int d) {
            int c = hash.length;
            int[] start = new int[d + 1];
            for (int v : hash) start[v + 1]++;
            for (int j = 0; j < d; j++) start[j + 1] += start[j];
            int[] next = java.util.Arrays.copyOf(start, d);
            int[] index = new int[c];
            float[] bsign = new float[c];
            for (int i = 0; i < c; i++) { // ascending i within each bin: a fixed summation order
                int k = next[hash[i]]++;
                index[k] = i;
                bsign[k] = sign[i];
            }
            List<DeviceBuffer> made = new ArrayList<>();
            try {
                made.add(DeviceBuffer.of(ctx, hash));
                made.add(DeviceBuffer.of(ctx, sign));
                made.add(DeviceBuffer.of(ctx, start));
                made.add(DeviceBuffer.of(ctx, index));
                made.add(DeviceBuffer.of(ctx, bsign));
            } catch (RuntimeException e) {
                made.forEach(DeviceBuffer::close);
                throw e;
            }
            h = made.get(0); s = made.get(1); binStart = made.get(2); binIndex = made.get(3); binSign = made.get(4);
        }

        long bytes() { return h.byteSize() + s.byteSize() + binStart.byteSize() + binIndex.byteSize() + binSign.byteSize(); }

        @Override public void close() {
            h.close(); s.close(); binStart.close(); binIndex.close(); binSign.close();
        }
    }

    /** With an output layer: the cuBLAS handle, z, and for the backward σ_out's output and ∂z, for one (stream, B). */
    private final class LayerWorkspace extends Workspaces.Workspace {
        final CublasHandle blas;
        final DeviceBuffer z;
        final int batch;
        DeviceBuffer f, gz; // made on first backward

        LayerWorkspace(CudaStream stream, int batch) {
            super(CompactBilinearCuda.this.context, stream);
            this.batch = batch;
            try {
                blas = own(new CublasHandle(context, stream));
                z = own(DeviceBuffer.allocateFloats(context, (long) batch * op.d()));
            } catch (RuntimeException e) {
                close();
                throw e;
            }
        }

        void ensureBackward() {
            if (f == null) f = own(DeviceBuffer.allocateFloats(context, (long) batch * op.outputWidth()));
            if (gz == null) gz = own(DeviceBuffer.allocateFloats(context, (long) batch * op.d()));
        }
    }

    /** Buffers and plans for one (stream, B). */
    private final class Workspace extends Workspaces.Workspace {
        final int batch;
        final DeviceBuffer sketches, spectra, product, pooled, gradPooled, gradSpectrum;
        final CufftPlan r2c2B, c2rB;
        CufftPlan r2cB, c2r2B; // made on first backward

        Workspace(CudaStream stream, int batch) {
            super(CompactBilinearCuda.this.context, stream);
            this.batch = batch;
            long d = op.d(), freq = d / 2 + 1;
            try {
                sketches = own(DeviceBuffer.allocateFloats(context, 2L * batch * d));
                spectra = own(DeviceBuffer.allocateFloats(context, 2L * 2 * batch * freq));
                product = own(DeviceBuffer.allocateFloats(context, 2L * 2 * batch * freq));
                pooled = own(DeviceBuffer.allocateFloats(context, batch * d));
                gradPooled = own(DeviceBuffer.allocateFloats(context, batch * d));
                gradSpectrum = own(DeviceBuffer.allocateFloats(context, 2L * batch * freq));
                r2c2B = own(new CufftPlan(context, CufftPlan.Kind.R2C, op.d(), 2L * batch, stream));
                c2rB = own(new CufftPlan(context, CufftPlan.Kind.C2R, op.d(), batch, stream));
            } catch (RuntimeException e) {
                close();
                throw e;
            }
        }

        void ensureBackwardPlans() {
            if (r2cB == null) r2cB = own(new CufftPlan(context, CufftPlan.Kind.R2C, op.d(), batch, stream));
            if (c2r2B == null) c2r2B = own(new CufftPlan(context, CufftPlan.Kind.C2R, op.d(), 2L * batch, stream));
        }
    }
}
