package io.bifuse.cpu;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_FLOAT;
import static java.lang.foreign.ValueLayout.JAVA_INT;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SymbolLookup;
import java.lang.invoke.MethodHandle;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;

/**
 * Our {@code java.lang.foreign} binding of {@code cblas_sgemm} from a system BLAS, found once per
 * process. Why our own binding and not a JVM wrapper (netlib-java, dev.ludovic.netlib): one function is
 * all bifuse needs, the FFM linker passes Java arrays to it in place ({@link Linker.Option#critical
 * critical} with heap access: no copy in or out), and the library gains no dependency.
 *
 * <p>Search order: the file or soname in {@code BIFUSE_BLAS} ({@code java}: no BLAS), then OpenBLAS
 * ({@code libopenblas.so.0}, Debian's {@code libopenblas0-pthread}), BLIS, MKL, FlexiBLAS, and the
 * system's {@code libblas.so.3} when it is one of those. The netlib reference BLAS (Debian's
 * {@code libblas3}, what {@code libblas.so.3} often is) is refused: it does not block for caches and runs
 * slower than {@link JavaSgemm}.
 *
 * <p>bifuse shares work between its own threads ({@link Sgemm}), so the BLAS is set to one thread when
 * it is loaded ({@code openblas_set_num_threads(1)}, {@code bli_thread_set_num_threads(1)},
 * {@code MKL_Set_Num_Threads(1)}): that setting is process-wide, which matters to other users of the
 * same BLAS in the process. {@code BIFUSE_BLAS=java} leaves the BLAS alone.
 */
final class Cblas {
    private static final int ROW_MAJOR = 101, NO_TRANS = 111, TRANS = 112;
    private static final Object[] FOUND = find();

    private final MethodHandle sgemm;
    private final String description;

    private Cblas(MethodHandle sgemm, String description) {
        this.sgemm = sgemm;
        this.description = description;
    }

    /** The BLAS in use, or null (then {@link #whyNot()}). */
    static Cblas instance() { return (Cblas) FOUND[0]; }

    /** Why no BLAS is used (null when one is). */
    static String whyNot() { return (String) FOUND[1]; }

    String description() { return description; }

    void sgemm(boolean transA, boolean transB, int m, int n, int k, float alpha, float[] a, int aOff, int lda, float[] b, int bOff, int ldb,
            float beta, float[] c, int cOff, int ldc) {
        try {
            sgemm.invokeExact(ROW_MAJOR, transA ? TRANS : NO_TRANS, transB ? TRANS : NO_TRANS, m, n, k, alpha,
                    MemorySegment.ofArray(a).asSlice(4L * aOff), lda, MemorySegment.ofArray(b).asSlice(4L * bOff), ldb, beta,
                    MemorySegment.ofArray(c).asSlice(4L * cOff), ldc);
        } catch (RuntimeException | Error e) {
            throw e;
        } catch (Throwable t) {
            throw new IllegalStateException("cblas_sgemm failed", t);
        }
    }

    /** {Cblas or null, why not or null}. */
    private static Object[] find() {
        String env = System.getenv("BIFUSE_BLAS");
        List<String> candidates = new ArrayList<>();
        if (env != null && !env.isBlank()) {
            if (env.equalsIgnoreCase("java") || env.equalsIgnoreCase("none")) return new Object[] {null, "BIFUSE_BLAS=" + env};
            candidates.add(env);
        } else {
            candidates.addAll(List.of("libopenblas.so.0", "libopenblasp.so.0", "libblis.so.4", "libblis.so.3", "libmkl_rt.so.2", "libmkl_rt.so",
                    "libflexiblas.so.3", "libblas.so.3"));
        }
        List<String> refused = new ArrayList<>();
        for (String file : candidates) {
            SymbolLookup lib;
            try {
                lib = file.contains("/") ? SymbolLookup.libraryLookup(java.nio.file.Path.of(file), Arena.global())
                        : SymbolLookup.libraryLookup(file, Arena.global());
            } catch (IllegalArgumentException | IllegalCallerException e) {
                if (env != null && !env.isBlank()) return new Object[] {null, "BIFUSE_BLAS=" + env + " does not load: " + e.getMessage()};
                continue;
            }
            Optional<MemorySegment> fn = lib.find("cblas_sgemm");
            if (fn.isEmpty()) {
                refused.add(file + " has no cblas_sgemm");
                continue;
            }
            String kind = identify(lib);
            if (kind == null && (env == null || env.isBlank())) {
                refused.add(file + " is the netlib reference BLAS (slower than bifuse's Java GEMM)");
                continue;
            }
            Linker linker = Linker.nativeLinker();
            MethodHandle h = linker.downcallHandle(fn.get(), FunctionDescriptor.ofVoid(JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT,
                    JAVA_FLOAT, ADDRESS, JAVA_INT, ADDRESS, JAVA_INT, JAVA_FLOAT, ADDRESS, JAVA_INT), Linker.Option.critical(true));
            return new Object[] {new Cblas(h, (kind == null ? "blas" : kind) + " (" + file + ")"), null};
        }
        return new Object[] {null, refused.isEmpty() ? "no system BLAS found (install OpenBLAS, e.g. Debian's libopenblas0-pthread)"
                : String.join("; ", refused)};
    }

    /** {@code openblas 0.3.21 ...}, {@code blis ...}, {@code mkl}, {@code flexiblas}: set to one thread; null for anything else. */
    private static String identify(SymbolLookup lib) {
        Linker linker = Linker.nativeLinker();
        try {
            Optional<MemorySegment> config = lib.find("openblas_get_config");
            if (config.isPresent()) {
                lib.find("openblas_set_num_threads").ifPresent(f -> call(linker, f, 1));
                MemorySegment s = (MemorySegment) linker.downcallHandle(config.get(), FunctionDescriptor.of(ADDRESS)).invokeExact();
                String text = s.reinterpret(256).getString(0);
                return "openblas " + text.replaceFirst("^OpenBLAS ", "").trim() + ", 1 thread per bifuse thread";
            }
            Optional<MemorySegment> blis = lib.find("bli_info_get_version_str");
            if (blis.isPresent()) {
                lib.find("bli_thread_set_num_threads").ifPresent(f -> callLong(linker, f, 1));
                MemorySegment s = (MemorySegment) linker.downcallHandle(blis.get(), FunctionDescriptor.of(ADDRESS)).invokeExact();
                return "blis " + s.reinterpret(64).getString(0) + ", 1 thread per bifuse thread";
            }
            Optional<MemorySegment> mkl = lib.find("MKL_Set_Num_Threads");
            if (mkl.isPresent()) {
                call(linker, mkl.get(), 1);
                return "mkl, 1 thread per bifuse thread";
            }
            if (lib.find("flexiblas_get_num_threads").isPresent()) {
                lib.find("flexiblas_set_num_threads").ifPresent(f -> call(linker, f, 1));
                return "flexiblas, 1 thread per bifuse thread";
            }
        } catch (Throwable t) {
            return null;
        }
        return null;
    }

    private static void call(Linker linker, MemorySegment f, int arg) {
        try {
            linker.downcallHandle(f, FunctionDescriptor.ofVoid(JAVA_INT)).invokeExact(arg);
        } catch (Throwable t) {
            throw new IllegalStateException(t);
        }
    }

    private static void callLong(Linker linker, MemorySegment f, long arg) {
        try {
            linker.downcallHandle(f, FunctionDescriptor.ofVoid(java.lang.foreign.ValueLayout.JAVA_LONG)).invokeExact(arg);
        } catch (Throwable t) {
            throw new IllegalStateException(t);
        }
    }
}
