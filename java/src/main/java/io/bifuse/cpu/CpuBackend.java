package io.bifuse.cpu;

/**
 * What every CPU backend shares: the op it runs (immutable, so the backend is thread-safe), its name,
 * and a {@code close()} that frees nothing.
 *
 * @param <O> the op's descriptor
 */
abstract class CpuBackend<O> implements AutoCloseable {
    final O op;
    private final String backend;

    /** {@code what}: the descriptor's article and name for the null-argument message ("an Mlb"). */
    CpuBackend(O op, String what, String backend) {
        if (op == null) throw new IllegalArgumentException("op: expected " + what + ", got null");
        this.op = op;
        this.backend = backend;
    }

    /** The op this backend runs. */
    public final O op() { return op; }

    /** {@code cpu-reference} (the float64 reference rounded to float) or {@code cpu-double} (an algorithm of its own in double). */
    public final String backend() { return backend; }

    /** Nothing to free on the CPU. */
    @Override public final void close() {}

    @Override public String toString() { return getClass().getSimpleName() + "[" + op + "]"; }
}
