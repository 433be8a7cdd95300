package io.bifuse.backends;

import io.bifuse.BanAttention;
import io.bifuse.BanBlock;
import io.bifuse.BanPooling;
import io.bifuse.CompactBilinear;
import io.bifuse.FullBilinear;
import io.bifuse.Mfb;
import io.bifuse.Mlb;
import io.bifuse.MlbAttention;
import io.bifuse.OpBackend;
import io.bifuse.Precision;
import io.bifuse.cpu.BanAttentionCpu;
import io.bifuse.cpu.BanBlockCpu;
import io.bifuse.cpu.BanPoolingCpu;
import io.bifuse.cpu.CompactBilinearCpu;
import io.bifuse.cpu.FullBilinearCpu;
import io.bifuse.cpu.MfbCpu;
import io.bifuse.cpu.MlbAttentionCpu;
import io.bifuse.cpu.MlbCpu;
import io.bifuse.cuda.BanAttentionCuda;
import io.bifuse.cuda.BanBlockCuda;
import io.bifuse.cuda.BanPoolingCuda;
import io.bifuse.cuda.CompactBilinearCuda;
import io.bifuse.cuda.CublasHandle;
import io.bifuse.cuda.Cuda;
import io.bifuse.cuda.CudaContext;
import io.bifuse.cuda.CufftPlan;
import io.bifuse.cuda.FullBilinearCuda;
import io.bifuse.cuda.MfbCuda;
import io.bifuse.cuda.MlbAttentionCuda;
import io.bifuse.cuda.MlbCuda;
import java.util.function.Supplier;

/**
 * The one place that chooses a backend: the CUDA one in {@code gpu} (FP32 GEMMs) when a context is
 * given and the device, the kernels and the library the op needs are usable; else the CPU one. The
 * {@link Choice} says which and why, so a caller can log it or refuse a CPU fallback:
 * <pre>{@code
 * try (CudaContext gpu = Cuda.isAvailable() ? CudaContext.open(0) : null;
 *      Backends.Choice<Mlb.Backend> c = Backends.of(mlb, gpu)) {
 *     System.out.println(c.reason());              // "cuda-fp32: ..." or "cpu-reference: no GPU: ..."
 *     float[] out = c.backend().forward(x, y, batch);
 * }
 * }</pre>
 * The caller keeps the context (close it after the choice). TF32 and BF16 are never chosen here:
 * make those with the op's CUDA class.
 */
public final class Backends {
    private Backends() {}

    /** A chosen backend and why it was chosen; closing it closes the backend. */
    public record Choice<B extends OpBackend>(B backend, String reason) implements AutoCloseable {
        @Override public void close() { backend.close(); }
    }

    public static Choice<Mlb.Backend> of(Mlb op, CudaContext gpu) {
        return choose(gpu, true, false, () -> new MlbCuda(op, gpu), () -> new MlbCpu(op));
    }

    public static Choice<Mfb.Backend> of(Mfb op, CudaContext gpu) {
        return choose(gpu, true, false, () -> new MfbCuda(op, gpu), () -> new MfbCpu(op));
    }

    public static Choice<MlbAttention.Backend> of(MlbAttention op, CudaContext gpu) {
        return choose(gpu, true, false, () -> new MlbAttentionCuda(op, gpu), () -> new MlbAttentionCpu(op));
    }

    public static Choice<CompactBilinear.Backend> of(CompactBilinear op, CudaContext gpu) {
        return choose(gpu, false, true, () -> new CompactBilinearCuda(op, gpu), () -> new CompactBilinearCpu(op));
    }

    public static Choice<FullBilinear.Backend> of(FullBilinear op, CudaContext gpu) {
        return choose(gpu, true, false, () -> new FullBilinearCuda(op, gpu), () -> new FullBilinearCpu(op));
    }

    public static Choice<BanPooling.Backend> of(BanPooling op, CudaContext gpu) {
        return choose(gpu, false, false, () -> new BanPoolingCuda(op, gpu), () -> new BanPoolingCpu(op));
    }

    public static Choice<BanAttention.Backend> of(BanAttention op, CudaContext gpu) {
        return choose(gpu, false, false, () -> new BanAttentionCuda(op, gpu), () -> new BanAttentionCpu(op));
    }

    public static Choice<BanBlock.Backend> of(BanBlock op, CudaContext gpu) {
        return choose(gpu, true, false, () -> new BanBlockCuda(op, gpu), () -> new BanBlockCpu(op));
    }

    private static <B extends OpBackend> Choice<B> choose(CudaContext gpu, boolean cublas, boolean cufft, Supplier<? extends B> cuda,
                                                          Supplier<? extends B> cpu) {
        String why;
        if (gpu == null) why = "no CUDA context given";
        else if (!Cuda.isAvailable()) why = "no GPU: " + Cuda.status().reason();
        else if (cublas && !CublasHandle.libraryAvailable()) why = "no cuBLAS: " + CublasHandle.describeLibrary();
        else if (cufft && !CufftPlan.libraryAvailable()) why = "no cuFFT: " + CufftPlan.describeLibrary();
        else {
            B b = cuda.get();
            return new Choice<>(b, b.backend() + ": " + (Cuda.isSimulated() ? "the simulated device (not a GPU)" : "CUDA device, driver "
                    + Cuda.status().driver()) + ", " + Precision.FP32 + " GEMMs");
        }
        B b = cpu.get();
        return new Choice<>(b, b.backend() + ": " + why);
    }
}
