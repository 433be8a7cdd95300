package io.bifuse.cpu;

/**
 * What every CPU backend shares: the op it runs (immutable, so the backend is thread-safe), its name,
 * the {@link CpuRuntime} it runs with, and a {@code close()} that frees nothing.
 *
 * @param <O> the op's descriptor
 */
abstract class CpuBackend<O> implements AutoCloseable {
    /** The largest Java array, in elements (what HotSpot allocates: a little under 2^31 - 1). */
    static final long MAX_ELEMENTS = Integer.MAX_VALUE - 8;

    final O op;
    final CpuRuntime runtime;
    private final String backend;

    /** {@code what}: the descriptor's article and name for the null-argument message ("an Mlb"). */
    CpuBackend(O op, String what, String backend) {
        this(op, what, backend, CpuRuntime.defaults());
    }

    CpuBackend(O op, String what, String backend, CpuRuntime runtime) {
        if (op == null) throw new IllegalArgumentException("op: expected " + what + ", got null");
        if (runtime == null) throw new IllegalArgumentException("runtime: expected a CpuRuntime (CpuRuntime.defaults()), got null");
        this.op = op;
        this.runtime = runtime;
        this.backend = backend;
    }

    /** The threads and GEMM this backend runs with. */
    public final CpuRuntime runtime() { return runtime; }

    /**
     * {@code dims}' product as an array length, or an exception naming {@code what} when it passes what
     * one Java array holds: called before any allocation, so a batch too large for a float[] fails with
     * its name and sizes, not inside a worker thread.
     */
    static int elements(String what, long... dims) {
        long n = 1;
        StringBuilder shape = new StringBuilder();
        for (long d : dims) {
            if (d < 0) throw new IllegalArgumentException(what + ": negative size " + d);
            n = n > 0 && d > 0 && n > MAX_ELEMENTS / d ? MAX_ELEMENTS + 1 : n * d;
            shape.append(shape.isEmpty() ? "" : " × ").append(d);
        }
        if (n > MAX_ELEMENTS) {
            throw new IllegalArgumentException(what + ": " + shape + " floats pass the " + MAX_ELEMENTS
                    + " a Java array holds; split the batch");
        }
        return (int) n;
    }

    /** The op this backend runs. */
    public final O op() { return op; }

    /** {@code cpu-fp32}: bifuse's float32 CPU path (every operator's CPU backend). */
    public final String backend() { return backend; }

    /** Nothing to free on the CPU. */
    @Override public final void close() {}

    @Override public String toString() { return getClass().getSimpleName() + "[" + op + "]"; }
}
