package io.bifuse.cpu;

import io.bifuse.CompactBilinear;
import io.bifuse.Gradients;

/**
 * The float32 CPU backend of {@link CompactBilinear}: the FFT route, never the outer product.
 *
 * <p>Per sample ({@link CompactBilinearKernels}): both count sketches packed into one complex signal
 * {@code 2^e·Ψx + i·Ψy} ({@code 2^e} balances their norms, exactly) and transformed by one complex float32
 * FFT of length d ({@link Fft}: four-step, vectorized butterflies; Bluestein for a prime factor above 13);
 * the spectral product {@code X·Y} unpacked from it in one pass; the real convolution back through one
 * complex FFT of length d/2 (even d; length d for odd d); bins that no pair of hashes reaches written as
 * exact zeros; then the {@link io.bifuse.Normalization} in float (its sums, and the l2 backward's
 * combination, in double). The backward recomputes the sketches' spectrum (and, with a normalization, z),
 * takes the real spectrum of the gradient (length d/2 again), forms both cross-correlation spectra
 * {@code G·conj(Y)} and {@code G·conj(X)} packed into one complex signal, and one FFT of length d returns
 * both input-sketch gradients, gathered through the hashes. Forward: FFTs of d and d/2; backward: d, d/2,
 * d/2, d (the d/2 ones only with a normalization for z).
 *
 * <p>Threads: samples in parallel ({@link CpuRuntime#parallelFor}, one task per sample); every sample's
 * arithmetic is one fixed sequence, so results are bitwise the same for every thread count. Memory: each
 * concurrent task works in a pooled {@link Scratch} lease and {@link Fft.Work}; a call allocates only
 * what it returns (measured: 4.10 MB for the 4.096 MB output at B = 64, d = 16000). Immutable and
 * thread-safe.
 *
 * <p>With an output layer ({@link CompactBilinear#withOutput}, block.bootstrap's MCB) z goes into a
 * scratch buffer and the layer is one GEMM each way ({@link OutputLayer}); the backward runs the forward
 * as far as z first (the layer's weight gradient needs it), then the pooling's backward from {@code ∂z}.
 */
public final class CompactBilinearCpu extends CpuBackend<CompactBilinear> implements CompactBilinear.Backend {
    private final CompactBilinearKernels kernels;
    private final OutputLayer linearOut; // null without an output layer
    private final Scratch scratch = new Scratch(), layerScratch = new Scratch();

    public CompactBilinearCpu(CompactBilinear op) {
        this(op, CpuRuntime.defaults());
    }

    public CompactBilinearCpu(CompactBilinear op, CpuRuntime runtime) {
        super(op, "a CompactBilinear", Backends.FP32, runtime);
        this.kernels = new CompactBilinearKernels(op);
        this.linearOut = op.hasOutput() ? new OutputLayer(op.linearOut(), op.outputActivation()) : null;
    }

    /** {@code B × Dx}, {@code B × Dy} → {@code B × outputWidth}. */
    @Override public float[] forward(float[] x, float[] y, int batch) {
        op.checkInputs(x, y, batch);
        if (linearOut == null) {
            float[] out = new float[elements("CompactBilinear output", batch, op.d())];
            pool(x, y, batch, out);
            return out;
        }
        float[] out = new float[elements("CompactBilinear output", batch, op.outputWidth())];
        try (Scratch.Lease l = layerScratch.lease()) {
            float[] z = l.floats(0, elements("CompactBilinear z", batch, op.d()));
            pool(x, y, batch, z);
            linearOut.forward(runtime, batch, z, out);
        }
        return out;
    }

    /** The pooling's forward (z, normalized) into {@code out} ({@code B × d}). */
    private void pool(float[] x, float[] y, int batch, float[] out) {
        int d = op.d(), dx = op.dx(), dy = op.dy();
        runtime.parallelFor(batch, b -> {
            Fft.Work w = kernels.fft.work();
            try (Scratch.Lease l = scratch.lease()) {
                kernels.forward(x, b * dx, y, b * dy, out, b * d, l, w);
            } finally {
                kernels.fft.release(w);
            }
        });
    }

    /** Gradients for {@code x} and {@code y} (and the output layer) given {@code gradOut = ∂L/∂out} ({@code B × outputWidth}). */
    @Override public Gradients backward(float[] x, float[] y, float[] gradOut, int batch) {
        op.checkInputs(x, y, batch);
        CompactBilinear.checkLength("gradOut", gradOut, batch, op.outputWidth());
        if (linearOut == null) return poolBackward(x, y, gradOut, batch);
        try (Scratch.Lease l = layerScratch.lease()) {
            int n = elements("CompactBilinear z", batch, op.d());
            float[] z = l.floats(0, n), gz = l.floats(1, n);
            pool(x, y, batch, z);
            io.bifuse.LinearGradients gl = linearOut.backward(runtime, l, 2, CpuLinear.ones(l, 3, batch), batch, z, gradOut, gz);
            Gradients g = poolBackward(x, y, gz, batch);
            return new Gradients(g.dx(), g.dy(), gl);
        }
    }

    /** The pooling's backward from {@code gz = ∂L/∂(normalized z)} ({@code B × d}). */
    private Gradients poolBackward(float[] x, float[] y, float[] gradOut, int batch) {
        int d = op.d(), dx = op.dx(), dy = op.dy();
        float[] gx = new float[elements("CompactBilinear dx", batch, dx)], gy = new float[elements("CompactBilinear dy", batch, dy)];
        runtime.parallelFor(batch, b -> {
            Fft.Work w = kernels.fft.work();
            try (Scratch.Lease l = scratch.lease()) {
                kernels.backward(x, b * dx, y, b * dy, gradOut, b * d, gx, b * dx, gy, b * dy, l, w);
            } finally {
                kernels.fft.release(w);
            }
        });
        return new Gradients(gx, gy);
    }
}
