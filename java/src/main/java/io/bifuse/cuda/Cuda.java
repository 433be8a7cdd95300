package io.bifuse.cuda;

import jcuda.driver.CUresult;
import jcuda.driver.JCudaDriver;

/**
 * Whether the CUDA backend can run here, and if not, why, in one readable line. Nothing here throws:
 * no driver, no device or no kernels in the jar all end as {@code available() == false} with a reason,
 * and callers fall back to the CPU backend.
 *
 * <p>With {@code BIFUSE_DEVICE=sim} (or {@code -Dbifuse.device=sim}) the device is the simulated one
 * ({@link SimulatedDevice}): {@link Status#simulated()} is true, {@link #backend()} is {@code cuda-sim},
 * and nothing it computes may be reported as a GPU result.
 */
public final class Cuda {
    private Cuda() {}

    /** The outcome of probing the driver, the devices and the embedded kernels. */
    public record Status(boolean available, int deviceCount, String reason, boolean simulated) {
        Status(boolean available, int deviceCount, String reason) { this(available, deviceCount, reason, SimulatedDevice.requested()); }
    }

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

    /** Whether the device is the simulated one (decided by BIFUSE_DEVICE / bifuse.device, before loading). */
    public static boolean isSimulated() { return SimulatedDevice.requested(); }

    /** The label of the CUDA backend in every output: {@code cuda}, or {@code cuda-sim} on the simulated device. */
    public static String backend() { return isSimulated() ? SimulatedDevice.BACKEND : "cuda"; }

    /**
     * {@code label} with its {@code cuda} part said as {@link #backend()}: {@code cuda-fp32} becomes
     * {@code cuda-sim-fp32} and {@code bifuse-cuda-tf32} {@code bifuse-cuda-sim-tf32} on the simulated
     * device, so no simulated row can pass for a GPU row.
     */
    public static String label(String label) {
        if (!isSimulated() || label.contains(SimulatedDevice.BACKEND)) return label;
        return label.replaceFirst("cuda", SimulatedDevice.BACKEND);
    }

    /** Throws {@link IllegalStateException} with the reason when CUDA cannot be used. */
    public static void requireAvailable() {
        Status s = status();
        if (!s.available()) throw new IllegalStateException("CUDA backend unavailable: " + s.reason());
    }

    private static Status probe() {
        if (SimulatedDevice.requested()) {
            String why = SimulatedDevice.load(); // before JCuda, so that its libcuda.so.1 dependency is the stand-in
            if (why != null) return new Status(false, 0, why);
        }
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
        if (Kernels.fatbin() == null) {
            return new Status(false, count[0], "the CUDA kernels were not built into this jar (nvcc was missing at build time; "
                    + "install the CUDA toolkit and rebuild)");
        }
        return new Status(true, count[0], SimulatedDevice.requested() ? "ok: the simulated device (cuda-sim, not a GPU)" : "ok");
    }

    private static String firstLine(String s) {
        int nl = s.indexOf('\n');
        return nl < 0 ? s : s.substring(0, nl);
    }
}
