package io.bifuse.cpu;

/** The names the CPU backends give themselves ({@code backend()} of every op's {@code Backend}). */
final class Backends {
    /** The float64 reference rounded to float: what most CPU backends run today (exact, not fast). */
    static final String REFERENCE = "cpu-reference";
    /** bifuse's float32 CPU path: multithreaded ({@link CpuRuntime}), GEMMs through {@link Sgemm}. */
    static final String FP32 = "cpu-fp32";
    /** A CPU algorithm of its own, in double precision (the FFT route of MCB, the outer products of bilinear pooling). */
    static final String DOUBLE = "cpu-double";

    private Backends() {}
}
