package io.bifuse.cuda;

import static org.junit.jupiter.api.Assertions.fail;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.util.function.Supplier;

/**
 * The GPU tests' preconditions: a test whose device, kernels or library is missing is SKIPPED with the
 * reason, or, in strict GPU mode ({@link Cuda#requireGpu()}), FAILS with it, so that a run on a GPU host
 * cannot pass while part of the GPU path never ran.
 */
final class RequireGpu {
    private RequireGpu() {}

    /** {@code ok}, else skipped (failed in strict mode) with {@code why}. */
    static void that(boolean ok, Supplier<String> why) {
        if (ok) return;
        if (Cuda.requireGpu()) fail("strict GPU mode (BIFUSE_REQUIRE_GPU): " + why.get());
        assumeTrue(false, why);
    }

    /** A usable CUDA device with this build's kernels. */
    static void device() { that(Cuda.isAvailable(), () -> "no GPU: " + Cuda.status().reason()); }

    /** A device and cuBLAS. */
    static void cublas() {
        device();
        that(CublasHandle.libraryAvailable(), CublasHandle::describeLibrary);
    }

    /** A device and cuFFT. */
    static void cufft() {
        device();
        that(CufftPlan.libraryAvailable(), CufftPlan::describeLibrary);
    }
}
