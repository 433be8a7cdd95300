package io.bifuse.cuda;

import static jcuda.driver.JCudaDriver.*;

import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import jcuda.Pointer;
import jcuda.driver.CUcontext;
import jcuda.driver.CUdevice;
import jcuda.driver.CUdevice_attribute;
import jcuda.driver.CUfunction;
import jcuda.driver.CUfunction_attribute;
import jcuda.driver.CUmodule;

/**
 * One GPU as bifuse uses it: the device's PRIMARY context (the one the CUDA runtime, cuFFT, cuBLAS and
 * PyTorch also use, so memory and streams pass between them freely), and bifuse's kernel module,
 * loaded once from the embedded fatbin.
 *
 * <p>Thread-safe: any number of Java threads may use one context; each call makes the context current
 * on the calling thread first. {@link #close()} releases this handle's reference to the primary
 * context; close it after the buffers, streams and ops made with it.
 */
public final class CudaContext implements AutoCloseable {
    private final int ordinal;
    private final CUdevice device = new CUdevice();
    private final CUcontext context = new CUcontext();
    private final String name;
    private final int ccMajor;
    private final int ccMinor;
    private final int multiprocessors;
    private final int sharedOptin;
    /** Per function: the dynamic shared memory its attribute now allows (48 KiB until raised). */
    private final Map<String, Integer> dynamicSharedSet = new ConcurrentHashMap<>();
    private volatile CUmodule module;
    private final Map<String, CUfunction> functions = new ConcurrentHashMap<>();
    private final Set<KernelSpec> catalog = Set.copyOf(Kernels.all());
    private volatile boolean closed;

    private CudaContext(int ordinal) {
        this.ordinal = ordinal;
        Driver.check("cuDeviceGet(" + ordinal + ")", cuDeviceGet(device, ordinal));
        Driver.check("cuDevicePrimaryCtxRetain", cuDevicePrimaryCtxRetain(context, device));
        makeCurrent();
        byte[] buf = new byte[256];
        Driver.check("cuDeviceGetName", cuDeviceGetName(buf, buf.length, device));
        int end = 0;
        while (end < buf.length && buf[end] != 0) end++;
        name = new String(buf, 0, end, java.nio.charset.StandardCharsets.UTF_8);
        ccMajor = attribute(CUdevice_attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR);
        ccMinor = attribute(CUdevice_attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR);
        multiprocessors = attribute(CUdevice_attribute.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT);
        sharedOptin = attribute(CUdevice_attribute.CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN);
    }

    /** The primary context of device {@code ordinal}; throws {@link IllegalStateException} without CUDA. */
    public static CudaContext open(int ordinal) {
        Cuda.requireAvailable();
        int n = Cuda.status().deviceCount();
        if (ordinal < 0 || ordinal >= n) {
            throw new IllegalArgumentException("ordinal: expected a device in [0, " + n + "), got " + ordinal);
        }
        return new CudaContext(ordinal);
    }

    private int attribute(int attr) {
        int[] v = new int[1];
        Driver.check("cuDeviceGetAttribute(" + attr + ")", cuDeviceGetAttribute(v, attr, device));
        return v[0];
    }

    public int ordinal() { return ordinal; }
    public String deviceName() { return name; }
    public int computeCapability() { return ccMajor * 10 + ccMinor; }
    public int multiprocessorCount() { return multiprocessors; }

    /** The most shared memory (static + dynamic) one block may opt in to: 227 KiB on sm_90. */
    public int sharedMemoryPerBlockOptin() { return sharedOptin; }

    /**
     * The most dynamic shared memory a launch of {@code kernel} may ask for: the opt-in maximum less the
     * kernel's own static {@code __shared__} bytes. Launches above 48 KiB raise the kernel's
     * {@code CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES} first (once).
     */
    public int maxDynamicSharedBytes(KernelSpec kernel) {
        int[] stat = new int[1];
        Driver.check("cuFuncGetAttribute(" + kernel.name() + ", SHARED_SIZE_BYTES)",
                cuFuncGetAttribute(stat, CUfunction_attribute.CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES, function(kernel)));
        return sharedOptin - stat[0];
    }

    /** Whether this is the simulated device (cuda-sim): its results are never GPU results, its timings never performance. */
    public boolean isSimulated() { return Cuda.isSimulated(); }

    /** Makes this context current on the calling thread (cheap; done by every bifuse call). */
    public void makeCurrent() {
        if (closed) throw new IllegalStateException("CUDA context is closed");
        Driver.check("cuCtxSetCurrent", cuCtxSetCurrent(context));
    }

    /** Free and total device memory in bytes, as {@code cuMemGetInfo} reports them. */
    public long[] memoryInfo() {
        makeCurrent();
        long[] free = new long[1], total = new long[1];
        Driver.check("cuMemGetInfo", cuMemGetInfo(free, total));
        return new long[] {free[0], total[0]};
    }

    /** Waits for all work in this context. */
    public void synchronize() {
        makeCurrent();
        Driver.check("cuCtxSynchronize", cuCtxSynchronize());
    }

    /**
     * Launches {@code kernel} on a {@code gridX × gridY} grid of {@code blockX}-thread blocks. Arguments
     * are checked against the kernel's signature before anything is queued; a launch error throws.
     */
    public void launch(KernelSpec kernel, int gridX, int gridY, int blockX, int sharedBytes, CudaStream stream, Object... args) {
        ResourceCounts.LAUNCHES.increment(); // counted as asked, before any check: a refused launch was still one too many
        if (gridX < 1 || gridY < 1 || gridY > 65535 || blockX < 1 || blockX > 1024) {
            throw new IllegalArgumentException(kernel.name() + ": bad launch geometry grid=(" + gridX + "," + gridY + ") block=" + blockX);
        }
        if (sharedBytes < 0) throw new IllegalArgumentException(kernel.name() + ": sharedBytes: expected >= 0, got " + sharedBytes);
        Pointer params = Pointer.to(kernel.marshal(args));
        CUfunction f = function(kernel);
        if (sharedBytes > DEFAULT_DYNAMIC_SHARED && dynamicSharedSet.getOrDefault(kernel.name(), DEFAULT_DYNAMIC_SHARED) < sharedBytes) {
            makeCurrent();
            Driver.check("cuFuncSetAttribute(" + kernel.name() + ", MAX_DYNAMIC_SHARED_SIZE_BYTES, " + sharedBytes + ")",
                    cuFuncSetAttribute(f, CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, sharedBytes));
            dynamicSharedSet.merge(kernel.name(), sharedBytes, Math::max);
        }
        Driver.check("cuLaunchKernel(" + kernel.name() + ")",
                cuLaunchKernel(f, gridX, gridY, 1, blockX, 1, 1, sharedBytes, stream.jcuda(), params, null));
    }

    /** What a launch may use without opting in. */
    private static final int DEFAULT_DYNAMIC_SHARED = 48 * 1024;

    private CUfunction function(KernelSpec kernel) {
        CUfunction f = functions.get(kernel.name());
        if (f != null) return f;
        if (!catalog.contains(kernel)) {
            throw new IllegalArgumentException(kernel + " is not in Kernels.all(): list it in its op class's KERNELS so the PTX test covers it");
        }
        makeCurrent();
        f = new CUfunction();
        Driver.check("cuModuleGetFunction(" + kernel.name() + ")", cuModuleGetFunction(f, module(), kernel.name()));
        functions.putIfAbsent(kernel.name(), f);
        return f;
    }

    private CUmodule module() {
        CUmodule m = module;
        if (m == null) {
            synchronized (this) {
                if ((m = module) == null) {
                    byte[] fatbin = Kernels.fatbin();
                    if (fatbin == null) throw new IllegalStateException("no CUDA kernels in this jar (built without nvcc)");
                    m = new CUmodule();
                    // In an aligned native copy: a Java array's payload is only 4-byte aligned with compact
                    // object headers, and the fatbin's 8-byte header fields are read in place.
                    java.nio.ByteBuffer image = java.nio.ByteBuffer.allocateDirect((fatbin.length + 255) / 256 * 256 + 256).alignedSlice(256);
                    image.put(0, fatbin);
                    Driver.check("cuModuleLoadDataEx(bifuse.fatbin)", cuModuleLoadDataEx(m, Pointer.to(image), 0, new int[0], new Pointer()));
                    module = m;
                }
            }
        }
        return m;
    }

    @Override public synchronized void close() {
        if (closed) return;
        makeCurrent();
        if (module != null) Driver.check("cuModuleUnload", cuModuleUnload(module));
        closed = true;
        Driver.check("cuDevicePrimaryCtxRelease", cuDevicePrimaryCtxRelease(device));
    }

    @Override public String toString() {
        return (isSimulated() ? "simulated CUDA device " : "CUDA device ") + ordinal + " (" + name + ", sm_" + computeCapability() + ")";
    }
}
