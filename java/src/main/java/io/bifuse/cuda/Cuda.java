package io.bifuse.cuda;

import jcuda.driver.CUresult;
import jcuda.driver.JCudaDriver;

/**
 * Whether the CUDA backend can run here, and if not, why, in one readable line. Nothing here throws:
 * no driver, no device or no kernels in the jar all end as {@code available() == false} with a reason,
 * and callers fall back to the CPU backend.
 */
public final class Cuda {
    private Cuda() {}

    /** The outcome of probing the driver, the devices and the embedded kernels. */
    public record Status(boolean available, int deviceCount, String reason) {}

    private static volatile Status status;

    public static Status status() {
        Status s = status;
        if (s == null) {
            synchronized (Cuda.class) {
                if ((s = status) == null) status = s = probe();
            }
        }
        return s;
    }

    public static boolean isAvailable() { return status().available(); }

    /** Throws {@link IllegalStateException} with the reason when CUDA cannot be used. */
    public static void requireAvailable() {
        Status s = status();
        if (!s.available()) throw new IllegalStateException("CUDA backend unavailable: " + s.reason());
    }

    private static Status probe() {
        int rc;
        try {
            rc = JCudaDriver.cuInit(0);
        } catch (Throwable t) { // UnsatisfiedLinkError, or the class failing to initialize because of it
            String m = String.valueOf(t.getMessage());
            String why = m.contains("libcuda") || t instanceof UnsatisfiedLinkError || t.getCause() instanceof UnsatisfiedLinkError
                    ? "no NVIDIA driver: libcuda.so.1 could not be loaded"
                    : "the JCuda driver binding could not load (" + t.getClass().getSimpleName() + ": " + firstLine(m) + ")";
            return new Status(false, 0, why);
        }
        if (rc != CUresult.CUDA_SUCCESS) {
            return new Status(false, 0, "cuInit failed: " + CUresult.stringFor(rc) + " (" + rc + ")"
                    + (rc == CUresult.CUDA_ERROR_NO_DEVICE ? ": no CUDA-capable device" : ""));
        }
        int[] count = new int[1];
        rc = JCudaDriver.cuDeviceGetCount(count);
        if (rc != CUresult.CUDA_SUCCESS) return new Status(false, 0, "cuDeviceGetCount failed: " + CUresult.stringFor(rc));
        if (count[0] == 0) return new Status(false, 0, "no CUDA device found");
        if (Kernels.class.getResource(Kernels.FATBIN) == null) {
            return new Status(false, count[0], "the CUDA kernels were not built into this jar (nvcc was missing at build time; "
                    + "install the CUDA toolkit and rebuild)");
        }
        return new Status(true, count[0], "ok");
    }

    private static String firstLine(String s) {
        int nl = s.indexOf('\n');
        return nl < 0 ? s : s.substring(0, nl);
    }
}
