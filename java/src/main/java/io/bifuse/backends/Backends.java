package io.bifuse.backends;

import io.bifuse.Op;
import io.bifuse.OpBackend;
import io.bifuse.Precision;
import io.bifuse.cuda.Cuda;
import io.bifuse.cuda.CudaContext;
import io.bifuse.cuda.LibraryUnavailableException;
import java.lang.reflect.Constructor;
import java.lang.reflect.InvocationTargetException;

/**
 * The one place that chooses a backend: the CUDA one in {@code gpu} (FP32 GEMMs) when a context is
 * given and the device, the kernels and the library the op needs are usable; else the CPU one. The
 * {@link Choice} says which and why, so a caller can log it or refuse a CPU fallback:
 * <pre>{@code
 * try (CudaContext gpu = Cuda.isAvailable() ? CudaContext.open(0) : null;
 *      Backends.Choice<Mlb.Backend> c = Backends.of(mlb, gpu)) {
 *     System.out.println(c.reason());              // "cuda-fp32: ..." or "cpu-fp32: no GPU: ..."
 *     float[] out = c.backend().forward(x, y, batch);
 * }
 * }</pre>
 * The caller keeps the context (close it after the choice). TF32 and BF16 are never chosen here:
 * make those with the op's CUDA class.
 *
 * <p>Any operator works here without an edit: its backends are found by the operator's name
 * ({@code io.bifuse.cpu.XCpu(X)}, {@code io.bifuse.cuda.XCuda(X, CudaContext)}, see {@link Op}), and
 * the CUDA one's constructor says when the library it needs is missing
 * ({@link LibraryUnavailableException}, before it allocates anything).
 */
public final class Backends {
    private Backends() {}

    /** A chosen backend and why it was chosen; closing it closes the backend. */
    public record Choice<B extends OpBackend>(B backend, String reason) implements AutoCloseable {
        @Override public void close() { backend.close(); }
    }

    /** The op's CUDA backend in {@code gpu} where it can run, else its CPU backend; each with why. */
    public static <B extends OpBackend> Choice<B> of(Op<B> op, CudaContext gpu) {
        if (op == null) throw new IllegalArgumentException("op: expected an operator descriptor, got null");
        String why;
        if (gpu == null) why = "no CUDA context given";
        else if (!Cuda.isAvailable()) why = "no GPU: " + Cuda.status().reason();
        else {
            try {
                B b = construct(op, "io.bifuse.cuda.", "Cuda", gpu);
                return new Choice<>(b, b.backend() + ": " + (Cuda.isSimulated() ? "the simulated device (not a GPU)" : "CUDA device, driver "
                        + Cuda.status().driver()) + ", " + Precision.FP32 + " GEMMs");
            } catch (LibraryUnavailableException e) {
                why = e.reason();
            }
        }
        B b = construct(op, "io.bifuse.cpu.", "Cpu", null);
        return new Choice<>(b, b.backend() + ": " + why);
    }

    /** {@code new <pkg><Op><suffix>(op)} or {@code (op, gpu)}, checked to implement the op's backend interface. */
    static <B extends OpBackend> B construct(Op<B> op, String pkg, String suffix, CudaContext gpu) {
        Class<?> opType = op.getClass();
        String name = pkg + opType.getSimpleName() + suffix;
        Constructor<?> c;
        try {
            Class<?> type = Class.forName(name, true, opType.getClassLoader());
            if (!op.backendType().isAssignableFrom(type)) {
                throw new IllegalStateException(name + " does not implement " + op.backendType().getName());
            }
            c = gpu == null ? type.getConstructor(opType) : type.getConstructor(opType, CudaContext.class);
        } catch (ClassNotFoundException | NoSuchMethodException e) {
            throw new IllegalStateException(opType.getSimpleName() + " has no backend " + name + " with a public constructor ("
                    + opType.getSimpleName() + (gpu == null ? "" : ", CudaContext") + "): " + e, e);
        }
        try {
            return op.backendType().cast(gpu == null ? c.newInstance(op) : c.newInstance(op, gpu));
        } catch (InvocationTargetException e) {
            if (e.getCause() instanceof RuntimeException r) throw r;
            if (e.getCause() instanceof Error r) throw r;
            throw new IllegalStateException(name + ": " + e.getCause(), e.getCause());
        } catch (ReflectiveOperationException e) {
            throw new IllegalStateException(name + ": " + e, e);
        }
    }
}
