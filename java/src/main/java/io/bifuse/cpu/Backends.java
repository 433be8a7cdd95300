package io.bifuse.cpu;

/** The names the CPU backends give themselves ({@code backend()} of every op's {@code Backend}). */
final class Backends {
    /** The float64 reference rounded to float: what most CPU backends run today (exact, not fast). */
    static final String REFERENCE = "cpu-reference";
    /** A CPU algorithm of its own, in double precision (the FFT route of MCB, the outer products of bilinear pooling). */
    static final String DOUBLE = "cpu-double";

    private Backends() {}
}
