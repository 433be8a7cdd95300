package io.bifuse.bench;

import io.bifuse.cuda.CublasHandle;
import io.bifuse.cuda.Cuda;
import io.bifuse.cuda.Kernels;

/** What every GPU benchmark's trial setup requires before it opens a context. */
final class GpuTrial {
    private GpuTrial() {}

    /**
     * Throws (JMH then reports the trial as failed, with the reason) unless a real GPU can run it. The
     * simulated device is refused: it runs kernels on one CPU core, so its timings would be reported as
     * a GPU's without being anything of the kind.
     */
    static void require(boolean cublas) {
        if (!Cuda.isAvailable()) throw new IllegalStateException("GPU benchmark skipped: " + Cuda.status().reason());
        if (Cuda.isSimulated()) {
            throw new IllegalStateException("GPU benchmark skipped: the device is the simulated one (BIFUSE_DEVICE=sim), not a GPU: "
                    + "its timings measure the simulator");
        }
        if (Kernels.fatbin() == null) throw new IllegalStateException("GPU benchmark skipped: no CUDA kernels in this build");
        if (cublas && !CublasHandle.libraryAvailable()) throw new IllegalStateException("GPU benchmark skipped: " + CublasHandle.describeLibrary());
    }
}
