package io.bifuse.cuda;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_FLOAT;
import static java.lang.foreign.ValueLayout.JAVA_INT;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandle;

/**
 * A cuBLAS handle bound to one stream, through our own {@code java.lang.foreign} binding of whichever
 * libcublas is installed ({@code .so.13} from CUDA 13, {@code .so.12} from CUDA 12). It exposes the
 * single-precision GEMMs that the low-rank bilinear operators need, in ROW-MAJOR terms (bifuse's
 * layout); the column-major call underneath computes {@code Cᵀ = Bᵀ·Aᵀ}. Not thread-safe.
 */
public final class CublasHandle implements AutoCloseable {
    private static final int OP_N = 0, OP_T = 1;

    private final Lib lib;
    private final CudaContext context;
    private final MemorySegment handle;
    private boolean closed;

    public CublasHandle(CudaContext context, CudaStream stream) {
        this.lib = Lib.get();
        this.context = context;
        context.makeCurrent();
        try (Arena a = Arena.ofConfined()) {
            MemorySegment h = a.allocate(ADDRESS);
            check("cublasCreate_v2", (int) lib.create.invokeExact(h));
            handle = h.get(ADDRESS, 0);
            check("cublasSetStream_v2", (int) lib.setStream.invokeExact(handle, MemorySegment.ofAddress(stream.handle())));
        } catch (Throwable t) {
            throw NativeLibrary.rethrow(t);
        }
    }

    /**
     * Row-major {@code C[m×n] = alpha·op(A)·op(B) + beta·C} where {@code op(A)} is {@code m×k}
     * ({@code A} stored {@code k×m} when {@code transA}) and {@code op(B)} is {@code k×n}.
     */
    public void sgemm(boolean transA, boolean transB, int m, int n, int k, float alpha,
                      DeviceMemory a, DeviceMemory b, float beta, DeviceMemory c) {
        if (m < 1 || n < 1 || k < 1) throw new IllegalArgumentException("m, n, k: expected >= 1, got " + m + ", " + n + ", " + k);
        requireFloats("a", a, (long) m * k);
        requireFloats("b", b, (long) k * n);
        requireFloats("c", c, (long) m * n);
        if (closed) throw new IllegalStateException("cuBLAS handle is closed");
        context.makeCurrent();
        int lda = transA ? m : k, ldb = transB ? k : n;
        try (Arena ar = Arena.ofConfined()) {
            MemorySegment al = ar.allocateFrom(JAVA_FLOAT, alpha), be = ar.allocateFrom(JAVA_FLOAT, beta);
            // Column-major view: Cᵀ (n×m) = op(B)ᵀ (n×k) · op(A)ᵀ (k×m).
            check("cublasSgemm_v2", (int) lib.sgemm.invokeExact(handle, transB ? OP_T : OP_N, transA ? OP_T : OP_N, n, m, k,
                    al, MemorySegment.ofAddress(b.address()), ldb, MemorySegment.ofAddress(a.address()), lda,
                    be, MemorySegment.ofAddress(c.address()), n));
        } catch (Throwable t) {
            throw NativeLibrary.rethrow(t);
        }
    }

    private static void requireFloats(String name, DeviceMemory m, long floats) {
        if (m.byteSize() < 4 * floats) {
            throw new IllegalArgumentException(name + ": expected at least " + floats + " floats, got " + m.byteSize() / 4);
        }
    }

    /** The loaded library and its version, or why none loaded. */
    public static String describeLibrary() {
        Object o = Lib.load();
        return o instanceof Lib l ? l.file + " (version " + l.version + ")" : (String) o;
    }

    public static boolean libraryAvailable() { return Lib.load() instanceof Lib; }

    @Override public void close() {
        if (closed) return;
        closed = true;
        context.makeCurrent();
        try {
            check("cublasDestroy_v2", (int) lib.destroy.invokeExact(handle));
        } catch (Throwable t) {
            throw NativeLibrary.rethrow(t);
        }
    }

    static void check(String call, int status) {
        if (status != 0) throw new CudaException(call, status, statusName(status));
    }

    private static String statusName(int s) {
        return switch (s) {
            case 1 -> "CUBLAS_STATUS_NOT_INITIALIZED";
            case 3 -> "CUBLAS_STATUS_ALLOC_FAILED";
            case 7 -> "CUBLAS_STATUS_INVALID_VALUE";
            case 8 -> "CUBLAS_STATUS_ARCH_MISMATCH";
            case 11 -> "CUBLAS_STATUS_MAPPING_ERROR";
            case 13 -> "CUBLAS_STATUS_EXECUTION_FAILED";
            case 14 -> "CUBLAS_STATUS_INTERNAL_ERROR";
            case 15 -> "CUBLAS_STATUS_NOT_SUPPORTED";
            case 16 -> "CUBLAS_STATUS_LICENSE_ERROR";
            default -> "cublasStatus_t " + s;
        };
    }

    private static final class Lib {
        final String file;
        final int version;
        final MethodHandle create, destroy, setStream, sgemm;

        private Lib(NativeLibrary lib) {
            file = lib.file;
            create = lib.function("cublasCreate_v2", FunctionDescriptor.of(JAVA_INT, ADDRESS));
            destroy = lib.function("cublasDestroy_v2", FunctionDescriptor.of(JAVA_INT, ADDRESS));
            setStream = lib.function("cublasSetStream_v2", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS));
            sgemm = lib.function("cublasSgemm_v2", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT,
                    JAVA_INT, ADDRESS, ADDRESS, JAVA_INT, ADDRESS, JAVA_INT, ADDRESS, ADDRESS, JAVA_INT));
            MethodHandle getVersion = lib.function("cublasGetProperty", FunctionDescriptor.of(JAVA_INT, JAVA_INT, ADDRESS));
            try (Arena a = Arena.ofConfined()) {
                MemorySegment v = a.allocate(JAVA_INT);
                int[] parts = new int[3];
                for (int p = 0; p < 3; p++) { // MAJOR_VERSION, MINOR_VERSION, PATCH_LEVEL
                    check("cublasGetProperty", (int) getVersion.invokeExact(p, v));
                    parts[p] = v.get(JAVA_INT, 0);
                }
                version = parts[0] * 10000 + parts[1] * 100 + parts[2];
            } catch (Throwable t) {
                throw NativeLibrary.rethrow(t);
            }
        }

        private static volatile Object loaded;

        static Lib get() {
            Object o = load();
            if (o instanceof Lib l) return l;
            throw new IllegalStateException("cuBLAS unavailable: " + o);
        }

        static Object load() {
            Object o = loaded;
            if (o == null) {
                synchronized (Lib.class) {
                    if ((o = loaded) == null) {
                        try {
                            o = new Lib(NativeLibrary.open("cublas", "BIFUSE_CUBLAS_LIBRARY", 13, 12));
                        } catch (RuntimeException | LinkageError e) {
                            o = e.getMessage();
                        }
                        loaded = o;
                    }
                }
            }
            return o;
        }
    }
}
