package io.bifuse.cpu;

import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ForkJoinPool;
import java.util.concurrent.ForkJoinTask;
import java.util.concurrent.ForkJoinWorkerThread;
import java.util.concurrent.RecursiveAction;
import java.util.function.IntConsumer;

/**
 * How the float32 CPU backends run: how many threads, and which GEMM ({@link #gemm()}: a system BLAS
 * through our {@code java.lang.foreign} binding of CBLAS, or bifuse's own blocked Java GEMM).
 * Immutable; a backend built with it keeps it.
 *
 * <p>The work of one call is cut into pieces whose boundaries depend on the shapes only, never on the
 * thread count, and no sum is ever split between threads: a result is bitwise the same for every
 * thread count (with either GEMM: the BLAS runs single-threaded inside each of bifuse's pieces, see
 * {@link #gemm()}).
 *
 * <p>Threads come from one shared {@link ForkJoinPool} per thread count (daemon threads, made on first
 * use and kept for the process), so many backends with the same count share their workers.
 */
public final class CpuRuntime {
    private static final ConcurrentHashMap<Integer, ForkJoinPool> POOLS = new ConcurrentHashMap<>();
    private static final CpuRuntime DEFAULT = new CpuRuntime(defaultThreads(System.getenv("BIFUSE_CPU_THREADS")));

    private final int threads;

    private CpuRuntime(int threads) {
        this.threads = threads;
    }

    /**
     * Every available processor ({@code Runtime.availableProcessors()}), or the count in the
     * environment variable {@code BIFUSE_CPU_THREADS} (for tools and benchmarks that set every backend
     * at once); the GEMM {@link #gemm()} chose.
     */
    public static CpuRuntime defaults() { return DEFAULT; }

    /** {@code threads} worker threads (1: everything on the calling thread). */
    public static CpuRuntime withThreads(int threads) {
        if (threads < 1) throw new IllegalArgumentException("threads: expected >= 1, got " + threads);
        if (threads > 4096) throw new IllegalArgumentException("threads: expected <= 4096, got " + threads);
        return threads == DEFAULT.threads ? DEFAULT : new CpuRuntime(threads);
    }

    static int defaultThreads(String env) {
        if (env == null || env.isBlank()) return Runtime.getRuntime().availableProcessors();
        try {
            int n = Integer.parseInt(env.trim());
            if (n >= 1 && n <= 4096) return n;
        } catch (NumberFormatException e) {
            // said below
        }
        throw new IllegalStateException("BIFUSE_CPU_THREADS: expected a thread count from 1 to 4096, got '" + env + "'");
    }

    /** The number of threads a call may use. */
    public int threads() { return threads; }

    /**
     * The GEMM every float32 CPU backend runs, chosen once per process: {@code openblas ...},
     * {@code blis ...}, {@code mkl ...} (a system CBLAS, found as {@link Sgemm} says; set
     * {@code BIFUSE_BLAS} to a library file to choose one, or to {@code java} for none), else
     * {@code java} (bifuse's blocked GEMM), with the reason a BLAS was not used.
     */
    public static String gemm() { return Sgemm.describe(); }

    /** {@code cpu-fp32, N threads, gemm: ...}: what a backend built with this runtime runs. */
    public String describe() { return "cpu-fp32, " + threads + (threads == 1 ? " thread" : " threads") + ", gemm: " + gemm(); }

    @Override public String toString() { return "CpuRuntime[threads=" + threads + "]"; }

    @Override public boolean equals(Object o) { return o instanceof CpuRuntime r && r.threads == threads; }

    @Override public int hashCode() { return threads; }

    /**
     * Runs {@code body(t)} for every {@code t} in {@code [0, tasks)}, on up to {@link #threads()}
     * threads, and returns when all are done; an exception in any task is rethrown here. Called from
     * inside a task of the same runtime, it runs the tasks on the calling thread (no nested fan-out).
     */
    void parallelFor(int tasks, IntConsumer body) {
        if (tasks <= 0) return;
        if (threads == 1 || tasks == 1 || insideOwnPool()) {
            for (int t = 0; t < tasks; t++) body.accept(t);
            return;
        }
        pool().invoke(new Range(body, 0, tasks));
    }

    /** Splits {@code [0, n)} into at most {@code pieces} contiguous ranges of whole {@code grain}s: {@code body(from, to)}. */
    void parallelRanges(int n, int grain, IntRangeBody body) {
        if (n <= 0) return;
        int units = (n + grain - 1) / grain;
        parallelFor(units, u -> body.run(u * grain, Math.min(n, (u + 1) * grain)));
    }

    /** A task over {@code [from, to)}. */
    @FunctionalInterface
    interface IntRangeBody {
        void run(int from, int to);
    }

    private boolean insideOwnPool() {
        return Thread.currentThread() instanceof ForkJoinWorkerThread w && w.getPool() == POOLS.get(threads);
    }

    private ForkJoinPool pool() {
        return POOLS.computeIfAbsent(threads, n -> new ForkJoinPool(n, p -> {
            ForkJoinWorkerThread t = ForkJoinPool.defaultForkJoinWorkerThreadFactory.newThread(p);
            t.setName("bifuse-cpu-" + n + "-" + t.getPoolIndex());
            t.setDaemon(true);
            return t;
        }, null, false));
    }

    /** Halves its range until one task is left: each task runs exactly once, order unspecified. */
    private static final class Range extends RecursiveAction {
        private final IntConsumer body;
        private final int from, to;

        Range(IntConsumer body, int from, int to) {
            this.body = body;
            this.from = from;
            this.to = to;
        }

        @Override protected void compute() {
            if (to - from == 1) {
                body.accept(from);
                return;
            }
            int mid = (from + to) >>> 1;
            ForkJoinTask.invokeAll(new Range(body, from, mid), new Range(body, mid, to));
        }
    }
}
