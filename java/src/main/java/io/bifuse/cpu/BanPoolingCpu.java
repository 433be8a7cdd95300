package io.bifuse.cpu;

import io.bifuse.BanPooling;
import io.bifuse.CompactBilinear;
import io.bifuse.ObjectMask;

/**
 * {@link BanPooling} on the CPU in float32: ban-vqa's bilinear attention pooling
 * {@code F[b,c] = Σ_i Σ_j A[b,i,j]·X[b,i,c]·Y[b,j,c]} and its gradients.
 *
 * <p>Forward, per sample: {@code S = A[real]ᵀ · X[real]} ({@code M × K'}, one GEMM per run of real
 * objects, {@code M × K' × N_b}: the objects weighted for every token), then one pass
 * {@code F[c] = Σ_j Y[j,c]·S[j,c]} and the sums over groups of {@code k} units. Backward, per sample, with
 * {@code Yd = Y ⊙ dF}: {@code dA[real] = X[real] · Ydᵀ}, {@code dX[real] = A[real] · Yd} and
 * {@code dY = dF ⊙ (A[real]ᵀ · X[real])}, three GEMMs per run ({@link BanKernels#poolBackward}). Padded
 * objects are never read, so their rows of {@code da} and {@code dx} stay zero whatever {@code A} holds
 * there.
 *
 * <p>Threading and determinism: {@link BanKernels#chunks} of consecutive samples (cut by the batch size
 * only) run with {@link CpuRuntime#parallelFor}; every output element belongs to one sample and has one
 * summation order, so results are bitwise the same for every thread count. Per-sample intermediates come
 * from the backend's {@link Scratch}; a call allocates only what it returns. Thread-safe;
 * {@link #close()} frees nothing.
 */
public final class BanPoolingCpu extends CpuBackend<BanPooling> implements BanPooling.Backend {
    private final Scratch tasks = new Scratch();

    public BanPoolingCpu(BanPooling op) {
        this(op, CpuRuntime.defaults());
    }

    public BanPoolingCpu(BanPooling op, CpuRuntime runtime) {
        super(op, "a BanPooling", Backends.FP32, runtime);
    }

    /**
     * {@code attention (B × N × M)}, {@code x (B × N × K')}, {@code y (B × M × K')} → {@code B × K'/k}.
     * {@code mask} null means every object is real.
     */
    @Override public float[] forward(float[] attention, float[] x, float[] y, ObjectMask mask, int batch, int objects, int tokens) {
        op.checkInputs(attention, x, y, mask, batch, objects, tokens);
        int width = op.width(), group = op.group(), units = op.outWidth();
        float[] out = new float[elements("pooled", batch, units)];
        BanKernels.Runs runs = BanKernels.Runs.objects(mask, batch, objects);
        int chunks = BanKernels.chunks(batch);
        runtime.parallelFor(chunks, ch -> {
            try (Scratch.Lease w = tasks.lease()) {
                float[] s = w.floats(0, tokens * width), f = w.floats(1, width);
                for (int b = BanKernels.chunkStart(ch, batch, chunks); b < BanKernels.chunkStart(ch + 1, batch, chunks); b++) {
                    if (!BanKernels.attendedObjects(runtime, tokens, width, attention, 0, tokens, x, width, runs, b, s)) continue;
                    BanKernels.pool(tokens, width, group, s, y, b * tokens * width, width, f, out, b * units);
                }
            }
        });
        return out;
    }

    /** The gradients of the three inputs given {@code gradOut = ∂L/∂f} ({@code B × K'/k}). */
    @Override public BanPooling.Gradients backward(float[] attention, float[] x, float[] y, ObjectMask mask, float[] gradOut, int batch,
                                                   int objects, int tokens) {
        op.checkInputs(attention, x, y, mask, batch, objects, tokens);
        CompactBilinear.checkLength("gradOut", gradOut, batch, op.outWidth());
        int width = op.width(), group = op.group(), units = op.outWidth();
        float[] da = new float[elements("da", batch, objects, tokens)], dx = new float[elements("dx", batch, objects, width)];
        float[] dy = new float[elements("dy", batch, tokens, width)];
        BanKernels.Runs runs = BanKernels.Runs.objects(mask, batch, objects);
        int chunks = BanKernels.chunks(batch);
        runtime.parallelFor(chunks, ch -> {
            try (Scratch.Lease w = tasks.lease()) {
                float[] yd = w.floats(0, tokens * width), s = w.floats(1, tokens * width), df = w.floats(2, width);
                for (int b = BanKernels.chunkStart(ch, batch, chunks); b < BanKernels.chunkStart(ch + 1, batch, chunks); b++) {
                    for (int c = 0; c < width; c++) df[c] = gradOut[b * units + c / group];
                    BanKernels.poolBackward(runtime, tokens, width, df, 0, attention, 0, tokens, x, width, runs, b, y, b * tokens * width, width,
                            yd, s, da, 0, tokens, dx, width, dy, b * tokens * width, width);
                }
            }
        });
        return new BanPooling.Gradients(da, dx, dy);
    }
}
