package io.bifuse.cuda;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandle;

/**
 * Our {@code java.lang.foreign} binding of the few cuFFT calls bifuse needs, against whichever
 * libcufft is installed ({@code .so.12} from CUDA 13, {@code .so.11} from CUDA 12). The C signatures
 * used here have not changed between those versions. Loaded on first use; {@link #status()} says
 * whether it loaded and, if not, why.
 */
final class Cufft {
    static final int R2C = 0x2a;
    static final int C2R = 0x2c;

    // cufftResult names by value. cuFFT 12 (CUDA 13) renumbered some: PARSE_ERROR 12 -> 10, LICENSE_ERROR
    // 15 -> 12, INCOMPLETE_PARAMETER_LIST 10 -> -42, and added 17-20; cuFFT 11 keeps the old values.
    private static final String[] COMMON = {
        "CUFFT_SUCCESS", "CUFFT_INVALID_PLAN", "CUFFT_ALLOC_FAILED", "CUFFT_INVALID_TYPE", "CUFFT_INVALID_VALUE",
        "CUFFT_INTERNAL_ERROR", "CUFFT_EXEC_FAILED", "CUFFT_SETUP_FAILED", "CUFFT_INVALID_SIZE", "CUFFT_UNALIGNED_DATA"};

    /** The name of {@code result} as cuFFT {@code major} numbers it. */
    static String resultName(int result, int major) {
        if (result >= 0 && result < COMMON.length) return COMMON[result];
        String name = switch (result) {
            case 11 -> "CUFFT_INVALID_DEVICE";
            case 13 -> "CUFFT_NO_WORKSPACE";
            case 14 -> "CUFFT_NOT_IMPLEMENTED";
            case 16 -> "CUFFT_NOT_SUPPORTED";
            default -> major >= 12 ? switch (result) {
                case 10 -> "CUFFT_PARSE_ERROR";
                case 12 -> "CUFFT_LICENSE_ERROR";
                case 17 -> "CUFFT_MISSING_DEPENDENCY";
                case 18 -> "CUFFT_NVRTC_FAILURE";
                case 19 -> "CUFFT_NVJITLINK_FAILURE";
                case 20 -> "CUFFT_NVSHMEM_FAILURE";
                case -42 -> "CUFFT_INCOMPLETE_PARAMETER_LIST";
                default -> null;
            } : switch (result) {
                case 10 -> "CUFFT_INCOMPLETE_PARAMETER_LIST";
                case 12 -> "CUFFT_PARSE_ERROR";
                case 15 -> "CUFFT_LICENSE_ERROR";
                default -> null;
            };
        };
        return name != null ? name : "cufftResult " + result;
    }

    final String library;
    final int version;
    final MethodHandle create;        // cufftResult cufftCreate(cufftHandle*)
    final MethodHandle makePlanMany64; // (plan, rank, long long* n, inembed, istride, idist, onembed, ostride, odist, type, batch, size_t* work)
    final MethodHandle setStream;     // (plan, cudaStream_t)
    final MethodHandle execR2C;       // (plan, float*, cufftComplex*)
    final MethodHandle execC2R;       // (plan, cufftComplex*, float*)
    final MethodHandle destroy;       // (plan)

    private Cufft(NativeLibrary lib) {
        library = lib.file;
        create = lib.function("cufftCreate", FunctionDescriptor.of(JAVA_INT, ADDRESS));
        makePlanMany64 = lib.function("cufftMakePlanMany64", FunctionDescriptor.of(JAVA_INT,
                JAVA_INT, JAVA_INT, ADDRESS, ADDRESS, JAVA_LONG, JAVA_LONG, ADDRESS, JAVA_LONG, JAVA_LONG, JAVA_INT, JAVA_LONG, ADDRESS));
        setStream = lib.function("cufftSetStream", FunctionDescriptor.of(JAVA_INT, JAVA_INT, ADDRESS));
        execR2C = lib.function("cufftExecR2C", FunctionDescriptor.of(JAVA_INT, JAVA_INT, ADDRESS, ADDRESS));
        execC2R = lib.function("cufftExecC2R", FunctionDescriptor.of(JAVA_INT, JAVA_INT, ADDRESS, ADDRESS));
        destroy = lib.function("cufftDestroy", FunctionDescriptor.of(JAVA_INT, JAVA_INT));
        MethodHandle getVersion = lib.function("cufftGetVersion", FunctionDescriptor.of(JAVA_INT, ADDRESS));
        try (Arena a = Arena.ofConfined()) {
            MemorySegment v = a.allocate(JAVA_INT);
            check("cufftGetVersion", (int) getVersion.invokeExact(v));
            version = v.get(JAVA_INT, 0);
        } catch (Throwable t) {
            throw NativeLibrary.rethrow(t);
        }
    }

    private static volatile Object loaded; // a Cufft, or the String reason it did not load

    static Cufft get() {
        Object o = load();
        if (o instanceof Cufft c) return c;
        throw new IllegalStateException("cuFFT unavailable: " + o);
    }

    /** Null when cuFFT loaded, else the reason in one line. */
    static String unavailableReason() {
        Object o = load();
        return o instanceof Cufft ? null : (String) o;
    }

    private static Object load() {
        Object o = loaded;
        if (o == null) {
            synchronized (Cufft.class) {
                if ((o = loaded) == null) {
                    try {
                        o = new Cufft(NativeLibrary.open("cufft", "BIFUSE_CUFFT_LIBRARY", 12, 11));
                    } catch (RuntimeException | LinkageError e) {
                        o = e.getMessage();
                    }
                    loaded = o;
                }
            }
        }
        return o;
    }

    static void check(String call, int result) {
        if (result != 0) {
            // The numbering of the loaded library; cuFFT 12's before one is loaded (cufftGetVersion itself failing).
            int major = loaded instanceof Cufft c ? c.version / 1000 : 12;
            throw new CudaException(call, result, resultName(result, major));
        }
    }
}
