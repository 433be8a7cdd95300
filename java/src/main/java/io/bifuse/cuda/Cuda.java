package io.bifuse.cuda;

import io.bifuse.Precision;

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

    /**
     * The outcome of probing the driver, the devices and the embedded kernels. {@code driverVersion}:
     * {@code cuDriverGetVersion}'s 1000·major + 10·minor, 0 where no driver answered.
     */
    public record Status(boolean available, int deviceCount, String reason, boolean simulated, int driverVersion) {
        Status(boolean available, int deviceCount, String reason, int driverVersion) {
            this(available, deviceCount, reason, SimulatedDevice.requested(), driverVersion);
        }

        /** "13.0", or "unknown" where no driver answered. */
        public String driver() { return driverVersion <= 0 ? "unknown" : driverVersion / 1000 + "." + driverVersion % 1000 / 10; }
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

    /**
     * The name a CUDA backend gives itself: {@code cuda-} and the GEMM arithmetic in lower case
     * ({@code cuda-fp32}); {@code cuda-sim-fp32} on the simulated device, so that no result of it
     * reads as a GPU's.
     */
    public static String backendName(Precision precision) {
        return backend() + "-" + precision.name().toLowerCase(java.util.Locale.ROOT);
    }

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

    /**
     * Strict GPU mode, {@code BIFUSE_REQUIRE_GPU=1} (or {@code -Dbifuse.requireGpu=true}): whatever cannot
     * run on the device (no driver, device, kernels, cuBLAS or cuFFT) is a failure of the tests and of
     * {@code check}, with its reason, instead of a skip. For runs on a GPU host, which must not look green
     * while most of the GPU path never ran; the bundle's GPU commands set it.
     */
    public static boolean requireGpu() {
        String p = System.getProperty("bifuse.requireGpu");
        if (p != null) return Boolean.parseBoolean(p);
        String e = System.getenv("BIFUSE_REQUIRE_GPU");
        return e != null && (e.equals("1") || e.equalsIgnoreCase("true"));
    }

    /** Throws {@link IllegalStateException} with the reason when CUDA cannot be used. */
    public static void requireAvailable() {
        Status s = status();
        if (!s.available()) throw new IllegalStateException("CUDA backend unavailable: " + s.reason());
    }

    private static Status probe() {
        if (SimulatedDevice.requested()) {
            String why = SimulatedDevice.load(); // before JCuda, so that its libcuda.so.1 dependency is the stand-in
            if (why != null) return new Status(false, 0, why, 0);
        }
        int rc;
        try {
            rc = JCudaDriver.cuInit(0);
        } catch (Throwable t) { // UnsatisfiedLinkError, or the class failing to initialize because of it
            return new Status(false, 0, linkFailure(t), 0);
        }
        int[] version = new int[1];
        if (JCudaDriver.cuDriverGetVersion(version) != CUresult.CUDA_SUCCESS) version[0] = 0;
        int v = version[0];
        if (rc != CUresult.CUDA_SUCCESS) {
            return new Status(false, 0, "cuInit failed: " + CUresult.stringFor(rc) + " (" + rc + ")"
                    + (rc == CUresult.CUDA_ERROR_NO_DEVICE ? ": no CUDA-capable device" : ""), v);
        }
        int[] count = new int[1];
        rc = JCudaDriver.cuDeviceGetCount(count);
        if (rc != CUresult.CUDA_SUCCESS) return new Status(false, 0, "cuDeviceGetCount failed: " + CUresult.stringFor(rc), v);
        if (count[0] == 0) return new Status(false, 0, "no CUDA device found", v);
        if (Kernels.fatbin() == null) {
            return new Status(false, count[0], "the CUDA kernels were not built into this jar (nvcc was missing at build time; "
                    + "install the CUDA toolkit and rebuild)", v);
        }
        return new Status(true, count[0], SimulatedDevice.requested() ? "ok: the simulated device (cuda-sim, not a GPU)" : "ok", v);
    }

    /**
     * Why JCuda's driver binding did not load, in one line: the NVIDIA driver's libcuda.so.1 missing
     * (what a machine without a GPU gives) told apart from JCuda's own native library failing (missing
     * from the class path, built for another platform, or an unresolved symbol of an older driver).
     */
    static String linkFailure(Throwable t) {
        StringBuilder all = new StringBuilder();
        for (Throwable c = t; c != null; c = c.getCause()) all.append(c.getMessage()).append(' ');
        String m = all.toString();
        if (m.contains("libcuda.so")) return "no NVIDIA driver: libcuda.so.1 could not be loaded";
        return "JCuda's native driver library could not load (" + t.getClass().getSimpleName() + ": " + firstLine(String.valueOf(t.getMessage())) + ")";
    }

    private static String firstLine(String s) {
        int nl = s.indexOf('\n');
        return nl < 0 ? s : s.substring(0, nl);
    }
}
