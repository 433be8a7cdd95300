package io.bifuse.cpu;

/**
 * The one float32 GEMM of the CPU backends, row-major:
 * {@code C[m×n] = alpha · op(A) · op(B) + beta · C}, {@code op(A)} being {@code A} ({@code m × k},
 * row stride {@code lda}) or, with {@code transA}, {@code Aᵀ} of a {@code k × m} array; likewise
 * {@code op(B)} ({@code k × n}). {@code beta = 0} overwrites {@code C} without reading it (NaNs there
 * do not leak), as BLAS does.
 *
 * <p>Two engines behind it, chosen once per process ({@link #describe()} names the one in use):
 * <ul>
 *   <li>a system CBLAS ({@code cblas_sgemm}) through {@link Cblas}: OpenBLAS, BLIS, MKL or FlexiBLAS, or
 *       the file {@code BIFUSE_BLAS} names. The netlib reference BLAS is not used (it is slower than
 *       the Java engine). Heap arrays are passed in place (a critical downcall: no copies).</li>
 *   <li>{@link JavaSgemm}, a blocked GEMM in plain Java that HotSpot vectorizes: the fallback, and
 *       {@code BIFUSE_BLAS=java} forces it.</li>
 * </ul>
 *
 * <p>Parallelism is bifuse's own: {@code C} is cut into tiles, each computed whole (all of {@code k})
 * by one thread, the BLAS single-threaded inside a tile. With a BLAS the tiles depend on {@code m, n, k}
 * only; the Java engine's sums do not depend on the tiling, so its tiles also follow the thread count.
 * Either way each element's sum has one order whatever the thread count: results are bitwise the same
 * for every {@link CpuRuntime#threads()}.
 */
final class Sgemm {
    /**
     * Tiles of C: at most TILE_M rows by TILE_N columns for the Java engine, BLAS_TILE_M by BLAS_TILE_N
     * for a BLAS (measured on the 2-core developer machine with OpenBLAS 0.3.21: 256 × 512 tiles ran
     * 512 × 1200 × 2400 at 142 GFLOP/s and 64 × 1200 × 2400 at 107, where 128 × 256 ran 132 and 89 and
     * OpenBLAS's own threads 139); below MIN_WORK flops, one tile.
     */
    static final int TILE_M = 128, TILE_N = 256, BLAS_TILE_M = 256, BLAS_TILE_N = 512;
    private static final long MIN_WORK = 1L << 21;

    private Sgemm() {}

    /** The engine in use, e.g. {@code openblas 0.3.21 (libopenblas.so.0)} or {@code java (no system BLAS: ...)}. */
    static String describe() {
        Cblas blas = Cblas.instance();
        return blas != null ? blas.description() : "java (" + Cblas.whyNot() + ")";
    }

    /** True when a system BLAS does the GEMMs. */
    static boolean usesBlas() { return Cblas.instance() != null; }

    static void gemm(CpuRuntime rt, boolean transA, boolean transB, int m, int n, int k, float alpha, float[] a, int aOff, int lda,
            float[] b, int bOff, int ldb, float beta, float[] c, int cOff, int ldc) {
        checkOperands(transA, transB, m, n, k, a, aOff, lda, b, bOff, ldb, c, cOff, ldc);
        if (m == 0 || n == 0) return;
        Cblas blas = Cblas.instance();
        if ((long) m * n * k < MIN_WORK) { // one tile: too little work to share out
            tile(blas, transA, transB, 0, m, 0, n, k, alpha, a, aOff, lda, b, bOff, ldb, beta, c, cOff, ldc);
            return;
        }
        int th = blas != null ? BLAS_TILE_M : TILE_M, tileN = blas != null ? BLAS_TILE_N : TILE_N;
        // The Java engine's sums do not depend on the tiling at all (see JavaSgemm), so its tiles may
        // follow the thread count: as wide as its panel where that still leaves two tiles per thread.
        if (blas == null && (long) ((m + TILE_M - 1) / TILE_M) * ((n + JavaSgemm.NC - 1) / JavaSgemm.NC) >= 2L * rt.threads()) tileN = JavaSgemm.NC;
        int tw = tileN, tm = (m + th - 1) / th, tn = (n + tw - 1) / tw;
        rt.parallelFor(tm * tn, t -> {
            int i0 = (t / tn) * th, j0 = (t % tn) * tw;
            tile(blas, transA, transB, i0, Math.min(m, i0 + th), j0, Math.min(n, j0 + tw), k, alpha, a, aOff, lda, b, bOff, ldb,
                    beta, c, cOff, ldc);
        });
    }

    /** {@code C[i0:i1, j0:j1]} over all of k, on the calling thread. */
    private static void tile(Cblas blas, boolean transA, boolean transB, int i0, int i1, int j0, int j1, int k, float alpha, float[] a,
            int aOff, int lda, float[] b, int bOff, int ldb, float beta, float[] c, int cOff, int ldc) {
        int aStart = aOff + (transA ? i0 : i0 * lda), bStart = bOff + (transB ? j0 * ldb : j0), cStart = cOff + i0 * ldc + j0;
        if (blas != null) {
            blas.sgemm(transA, transB, i1 - i0, j1 - j0, k, alpha, a, aStart, lda, b, bStart, ldb, beta, c, cStart, ldc);
        } else {
            JavaSgemm.gemm(transA, transB, i1 - i0, j1 - j0, k, alpha, a, aStart, lda, b, bStart, ldb, beta, c, cStart, ldc);
        }
    }

    /** The library's own arguments, so a wrong one is a bug report here, not a crash in native code. */
    private static void checkOperands(boolean transA, boolean transB, int m, int n, int k, float[] a, int aOff, int lda, float[] b, int bOff,
            int ldb, float[] c, int cOff, int ldc) {
        if (m < 0 || n < 0 || k < 0) throw new IllegalArgumentException("sgemm: negative size m=" + m + " n=" + n + " k=" + k);
        span("A", a, aOff, transA ? k : m, transA ? m : k, lda);
        span("B", b, bOff, transB ? n : k, transB ? k : n, ldb);
        span("C", c, cOff, m, n, ldc);
    }

    private static void span(String what, float[] x, int off, int rows, int cols, int ld) {
        if (rows == 0 || cols == 0) return;
        if (ld < cols || off < 0 || off + (long) (rows - 1) * ld + cols > x.length) {
            throw new IllegalArgumentException("sgemm: " + what + " (" + rows + " × " + cols + ", row stride " + ld + ", offset " + off
                    + ") does not fit its " + x.length + " floats");
        }
    }
}
