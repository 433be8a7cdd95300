package io.bifuse.cpu;

/** The name the CPU backends give themselves ({@code backend()} of every op's {@code Backend}). */
final class Backends {
    /** bifuse's float32 CPU path: multithreaded ({@link CpuRuntime}), GEMMs through {@link Sgemm}. */
    static final String FP32 = "cpu-fp32";

    private Backends() {}
}
