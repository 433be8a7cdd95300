package io.bifuse.cuda;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_FLOAT;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

import io.bifuse.Precision;
import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandle;

/**
 * A cuBLAS handle bound to one stream, through our own {@code java.lang.foreign} binding of whichever
 * libcublas is installed ({@code .so.13} from CUDA 13, {@code .so.12} from CUDA 12). It exposes the
 * GEMMs that the low-rank bilinear operators need (float32 data; FP32, TF32 or BF16 arithmetic, see
 * {@link Precision}), in ROW-MAJOR terms (bifuse's
 * layout); the column-major call underneath computes {@code Cᵀ = Bᵀ·Aᵀ}. Not thread-safe.
 */
public final class CublasHandle implements AutoCloseable {
    private static final int OP_N = 0, OP_T = 1, R_32F = 0, GEMM_DEFAULT = -1;

    /** The {@code cublasComputeType_t} of a {@link Precision}: CUBLAS_COMPUTE_32F, _32F_FAST_TF32, _32F_FAST_16BF. */
    static int computeType(Precision p) {
        return switch (p) {
            case FP32 -> 68;
            case TF32 -> 77;
            case BF16 -> 75;
        };
    }

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
            ResourceCounts.CUBLAS_HANDLES.increment();
            check("cublasSetStream_v2", (int) lib.setStream.invokeExact(handle, MemorySegment.ofAddress(stream.handle())));
        } catch (Throwable t) {
            throw NativeLibrary.rethrow(t);
        }
    }

    /**
     * Row-major {@code C[m×n] = alpha·op(A)·op(B) + beta·C} in FP32 with packed rows ({@code op(A)} is
     * {@code m×k}, {@code A} stored {@code k×m} when {@code transA}; {@code op(B)} is {@code k×n}).
     */
    public void sgemm(boolean transA, boolean transB, int m, int n, int k, float alpha,
                      DeviceMemory a, DeviceMemory b, float beta, DeviceMemory c) {
        gemm(Precision.FP32, transA, transB, m, n, k, alpha, a, transA ? m : k, b, transB ? k : n, beta, c, n);
    }

    /**
     * Row-major {@code C[m×n] = alpha·op(A)·op(B) + beta·C} with explicit row strides (leading
     * dimensions, in floats) and the GEMM arithmetic of {@code precision}. {@code A} is stored
     * {@code m×k} ({@code k×m} when {@code transA}) with row stride {@code lda}; {@code B} is stored
     * {@code k×n} ({@code n×k} when {@code transB}) with row stride {@code ldb}; {@code C} is
     * {@code m×n} with row stride {@code ldc}. Strides let a GEMM read or write a column block of a
     * wider matrix (e.g. one glimpse of a concatenation) in place.
     */
    public void gemm(Precision precision, boolean transA, boolean transB, int m, int n, int k, float alpha,
                     DeviceMemory a, int lda, DeviceMemory b, int ldb, float beta, DeviceMemory c, int ldc) {
        gemmStridedBatched(precision, transA, transB, m, n, k, alpha, a, lda, 0, b, ldb, 0, beta, c, ldc, 0, 1);
    }

    /**
     * {@code batch} GEMMs as in {@link #gemm}, the {@code i}-th on {@code A + i·strideA},
     * {@code B + i·strideB}, {@code C + i·strideC} (strides in floats). One cuBLAS call.
     */
    public void gemmStridedBatched(Precision precision, boolean transA, boolean transB, int m, int n, int k, float alpha,
                                   DeviceMemory a, int lda, long strideA, DeviceMemory b, int ldb, long strideB,
                                   float beta, DeviceMemory c, int ldc, long strideC, int batch) {
        if (precision == null) throw new IllegalArgumentException("precision: expected FP32, TF32 or BF16, got null");
        if (m < 1 || n < 1 || k < 1) throw new IllegalArgumentException("m, n, k: expected >= 1, got " + m + ", " + n + ", " + k);
        if (batch < 1) throw new IllegalArgumentException("batch: expected >= 1, got " + batch);
        if (strideA < 0 || strideB < 0 || strideC < 0) {
            throw new IllegalArgumentException("strides: expected >= 0, got " + strideA + ", " + strideB + ", " + strideC);
        }
        requireMatrix("a", a, transA ? k : m, transA ? m : k, lda, strideA, batch);
        requireMatrix("b", b, transB ? n : k, transB ? k : n, ldb, strideB, batch);
        requireMatrix("c", c, m, n, ldc, strideC, batch);
        if (closed) throw new IllegalStateException("cuBLAS handle is closed");
        context.makeCurrent();
        try (Arena ar = Arena.ofConfined()) {
            MemorySegment al = ar.allocateFrom(JAVA_FLOAT, alpha), be = ar.allocateFrom(JAVA_FLOAT, beta);
            // Column-major view: Cᵀ (n×m) = op(B)ᵀ (n×k) · op(A)ᵀ (k×m).
            MemorySegment pa = MemorySegment.ofAddress(a.address()), pb = MemorySegment.ofAddress(b.address());
            MemorySegment pc = MemorySegment.ofAddress(c.address());
            int opA = transA ? OP_T : OP_N, opB = transB ? OP_T : OP_N, ct = computeType(precision);
            if (batch == 1) {
                check("cublasGemmEx", (int) lib.gemmEx.invokeExact(handle, opB, opA, n, m, k, al, pb, R_32F, ldb, pa, R_32F, lda,
                        be, pc, R_32F, ldc, ct, GEMM_DEFAULT));
            } else {
                check("cublasGemmStridedBatchedEx", (int) lib.gemmBatched.invokeExact(handle, opB, opA, n, m, k, al,
                        pb, R_32F, ldb, strideB, pa, R_32F, lda, strideA, be, pc, R_32F, ldc, strideC, batch, ct, GEMM_DEFAULT));
            }
        } catch (Throwable t) {
            throw NativeLibrary.rethrow(t);
        }
    }

    /** A row-major {@code rows × cols} matrix with row stride {@code ld}, {@code batch} of them {@code stride} apart. */
    private static void requireMatrix(String name, DeviceMemory m, int rows, int cols, int ld, long stride, int batch) {
        if (m == null) throw new IllegalArgumentException(name + ": expected device memory, got null");
        if (ld < cols) throw new IllegalArgumentException("ld" + name + ": expected a row stride >= " + cols + " (the columns of " + name + "), got " + ld);
        long floats = (long) (rows - 1) * ld + cols + (long) (batch - 1) * stride;
        requireFloats(name, m, floats);
        if (m.address() % 4 != 0) throw new IllegalArgumentException(name + ": expected a 4-byte aligned address, got 0x" + Long.toHexString(m.address()));
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
        final MethodHandle create, destroy, setStream, gemmEx, gemmBatched;

        private Lib(NativeLibrary lib) {
            file = lib.file;
            create = lib.function("cublasCreate_v2", FunctionDescriptor.of(JAVA_INT, ADDRESS));
            destroy = lib.function("cublasDestroy_v2", FunctionDescriptor.of(JAVA_INT, ADDRESS));
            setStream = lib.function("cublasSetStream_v2", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS));
            // (handle, transa, transb, m, n, k, alpha, A, Atype, lda, B, Btype, ldb, beta, C, Ctype, ldc, computeType, algo)
            gemmEx = lib.function("cublasGemmEx", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT,
                    JAVA_INT, ADDRESS, ADDRESS, JAVA_INT, JAVA_INT, ADDRESS, JAVA_INT, JAVA_INT, ADDRESS, ADDRESS, JAVA_INT, JAVA_INT,
                    JAVA_INT, JAVA_INT));
            // the same with a long long stride after each matrix's leading dimension, then int batchCount
            gemmBatched = lib.function("cublasGemmStridedBatchedEx", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT, JAVA_INT,
                    JAVA_INT, JAVA_INT, JAVA_INT, ADDRESS, ADDRESS, JAVA_INT, JAVA_INT, JAVA_LONG, ADDRESS, JAVA_INT, JAVA_INT, JAVA_LONG,
                    ADDRESS, ADDRESS, JAVA_INT, JAVA_INT, JAVA_LONG, JAVA_INT, JAVA_INT, JAVA_INT));
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
