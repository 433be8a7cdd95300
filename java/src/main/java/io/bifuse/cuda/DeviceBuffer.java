package io.bifuse.cuda;

import static jcuda.driver.JCudaDriver.*;

import jcuda.Pointer;
import jcuda.driver.CUdeviceptr;

/**
 * Device memory that bifuse allocated ({@code cuMemAlloc}) in a {@link CudaContext}; freed by
 * {@link #close()}. Host copies and fills here are complete when they return (the driver's "synchronous"
 * copy from pageable memory and its memset may otherwise still be in flight when a kernel on a
 * non-blocking stream starts); reads go through {@code stream}, after whatever was queued on it.
 */
public final class DeviceBuffer implements DeviceMemory, AutoCloseable {
    private static final java.util.concurrent.atomic.AtomicLong LIVE = new java.util.concurrent.atomic.AtomicLong(),
            PEAK = new java.util.concurrent.atomic.AtomicLong();

    private final CudaContext context;
    private final long byteSize;
    private volatile long address;

    private DeviceBuffer(CudaContext context, long address, long byteSize) {
        this.context = context;
        this.address = address;
        this.byteSize = byteSize;
    }

    /** Allocates {@code byteSize} bytes (at least one, so that every buffer has a real address). */
    public static DeviceBuffer allocate(CudaContext context, long byteSize) {
        if (context == null) throw new IllegalArgumentException("context: expected an open CudaContext, got null");
        if (byteSize < 0) throw new IllegalArgumentException("byteSize: expected >= 0, got " + byteSize);
        context.makeCurrent();
        Addressed p = new Addressed();
        Driver.check("cuMemAlloc(" + byteSize + " bytes)", cuMemAlloc(p, Math.max(byteSize, 1)));
        ResourceCounts.ALLOCATIONS.increment();
        long live = LIVE.addAndGet(byteSize);
        PEAK.accumulateAndGet(live, Math::max);
        return new DeviceBuffer(context, p.address(), byteSize);
    }

    /**
     * Bytes of device memory bifuse holds now, over every context: the buffers it allocated and has not
     * freed (the libraries' own internal workspaces, cuBLAS's and cuFFT's, are not counted).
     */
    public static long liveBytes() { return LIVE.get(); }

    /** The most {@link #liveBytes()} has been since the last {@link #resetPeak()}: bench's peak device memory of a call. */
    public static long peakBytes() { return PEAK.get(); }

    /** Starts a new peak from what is live now. */
    public static void resetPeak() { PEAK.set(LIVE.get()); }

    /** Allocates room for {@code count} floats. */
    public static DeviceBuffer allocateFloats(CudaContext context, long count) {
        if (count < 0) throw new IllegalArgumentException("count: expected >= 0 floats, got " + count);
        if (count > Long.MAX_VALUE / 4) throw new IllegalArgumentException("count: " + count + " floats do not fit in 2^63 bytes");
        return allocate(context, 4L * count);
    }

    /** A new buffer holding a copy of {@code data}. */
    public static DeviceBuffer of(CudaContext context, float[] data) {
        if (data == null) throw new IllegalArgumentException("data: expected a float[] to copy, got null");
        DeviceBuffer b = allocateFloats(context, data.length);
        b.write(data);
        return b;
    }

    /** A new buffer holding a copy of {@code data}. */
    public static DeviceBuffer of(CudaContext context, int[] data) {
        if (data == null) throw new IllegalArgumentException("data: expected an int[] to copy, got null");
        DeviceBuffer b = allocate(context, 4L * data.length);
        b.write(data);
        return b;
    }

    public CudaContext context() { return context; }

    @Override public long address() {
        long a = address;
        if (a == 0) throw new IllegalStateException("device buffer is closed");
        return a;
    }

    @Override public long byteSize() { return byteSize; }

    @Override public boolean isOpen() { return address != 0; }

    /**
     * Copies {@code src} in; done when this returns. Ordered like the legacy default stream (after the
     * work of the blocking streams queued before it), and waits for that copy only, not for every
     * stream of the context: {@link #write(float[], CudaStream)} orders it on one stream instead.
     */
    public void write(float[] src) { copyIn(Pointer.to(src), 4L * src.length, CudaStream.LEGACY_DEFAULT); }

    /** As {@link #write(float[])}. */
    public void write(int[] src) { copyIn(Pointer.to(src), 4L * src.length, CudaStream.LEGACY_DEFAULT); }

    /** Copies {@code src} in after the work queued on {@code stream} so far; done when this returns. */
    public void write(float[] src, CudaStream stream) { copyIn(Pointer.to(src), 4L * src.length, stream); }

    /** As {@link #write(float[], CudaStream)}. */
    public void write(int[] src, CudaStream stream) { copyIn(Pointer.to(src), 4L * src.length, stream); }

    public void read(float[] dst) { copyOut(Pointer.to(dst), 4L * dst.length, CudaStream.LEGACY_DEFAULT); }

    /** Copies into {@code dst} after all work queued on {@code stream} so far. */
    public void read(float[] dst, CudaStream stream) { copyOut(Pointer.to(dst), 4L * dst.length, stream); }

    /** Copies into {@code dst} after all work queued on {@code stream} so far. */
    public void read(int[] dst, CudaStream stream) { copyOut(Pointer.to(dst), 4L * dst.length, stream); }

    /**
     * Fills every 32-bit word with {@code value} ({@code Float.NaN} poisons a buffer before a test);
     * done when this returns, ordered like the legacy default stream (see {@link #write(float[])}).
     */
    public void fill(float value) {
        fill(value, CudaStream.LEGACY_DEFAULT);
        CudaStream.LEGACY_DEFAULT.synchronize();
    }

    /** Queues the fill on {@code stream} and returns: the work queued after it on that stream sees it. */
    public void fill(float value, CudaStream stream) {
        DeviceArgs.stream(stream);
        context.makeCurrent();
        fillAsync(this, value, byteSize / 4, stream);
    }

    private void copyIn(Pointer src, long bytes, CudaStream stream) { copyIn(context, this, src, bytes, stream); }

    private void copyOut(Pointer dst, long bytes, CudaStream stream) { copyOut(context, this, dst, bytes, stream); }

    /**
     * Copies {@code bytes} from host memory into {@code dst} (a buffer or a slice of one in
     * {@code context}) after the work queued on {@code stream}; done when this returns, since the host
     * array may change as soon as it does.
     */
    static void copyIn(CudaContext context, DeviceMemory dst, Pointer src, long bytes, CudaStream stream) {
        requireFits(bytes, dst);
        DeviceArgs.stream(stream);
        context.makeCurrent();
        Driver.check("cuMemcpyHtoDAsync", cuMemcpyHtoDAsync(devicePointer(dst), src, bytes, stream.jcuda()));
        stream.synchronize();
    }

    /** Copies {@code bytes} of {@code src} into host memory after the work queued on {@code stream}; done when this returns. */
    static void copyOut(CudaContext context, DeviceMemory src, Pointer dst, long bytes, CudaStream stream) {
        requireFits(bytes, src);
        DeviceArgs.stream(stream);
        context.makeCurrent();
        Driver.check("cuMemcpyDtoHAsync", cuMemcpyDtoHAsync(dst, devicePointer(src), bytes, stream.jcuda()));
        stream.synchronize();
    }

    /** All of {@code m} as a new host array, after the work queued on {@code stream}; done when this returns. */
    static float[] toHost(CudaContext context, DeviceMemory m, CudaStream stream) {
        long n = m.byteSize() / 4;
        if (n > Integer.MAX_VALUE - 8) throw new IllegalArgumentException("a result of " + n + " floats does not fit a Java array");
        float[] r = new float[(int) n];
        copyOut(context, m, Pointer.to(r), 4L * n, stream);
        return r;
    }

    /**
     * Queues a fill of the first {@code words} 32-bit words of {@code m} with the bits of {@code value}
     * on {@code stream} (the context of the op that calls it is current): the one place ops fill device
     * memory, so none calls the driver itself.
     */
    static void fillAsync(DeviceMemory m, float value, long words, CudaStream stream) {
        if (words < 0 || 4 * words > m.byteSize()) {
            throw new IllegalArgumentException("fill: " + words + " words outside the " + m.byteSize() + " bytes of " + m);
        }
        Driver.check("cuMemsetD32Async", cuMemsetD32Async(devicePointer(m), Float.floatToRawIntBits(value), words, stream.jcuda()));
    }

    /** Queues a device-to-device copy of {@code bytes} from {@code src} to {@code dst} on {@code stream} (the op's context current). */
    static void copyAsync(DeviceMemory dst, DeviceMemory src, long bytes, CudaStream stream) {
        if (bytes < 0 || bytes > dst.byteSize() || bytes > src.byteSize()) {
            throw new IllegalArgumentException("copy: " + bytes + " bytes from " + src.byteSize() + " into " + dst.byteSize());
        }
        Driver.check("cuMemcpyDtoDAsync", cuMemcpyDtoDAsync(devicePointer(dst), devicePointer(src), bytes, stream.jcuda()));
    }

    private static void requireFits(long bytes, DeviceMemory m) {
        if (bytes > m.byteSize()) {
            throw new IllegalArgumentException("host array of " + bytes + " bytes does not fit the device memory of "
                    + m.byteSize() + " bytes");
        }
    }

    /** Frees the memory; idempotent. Work still queued that uses it must have finished. */
    @Override public synchronized void close() {
        long a = address;
        if (a == 0) return;
        address = 0;
        LIVE.addAndGet(-byteSize);
        context.makeCurrent();
        Driver.check("cuMemFree", cuMemFree(devicePointer(a)));
    }

    /** A JCuda pointer for a raw device address (JCuda adds the byte offset to a null base). */
    static CUdeviceptr devicePointer(long address) { return new CUdeviceptr().withByteOffset(address); }

    static CUdeviceptr devicePointer(DeviceMemory m) { return devicePointer(m.address()); }

    /** Lets us read back the raw address that cuMemAlloc wrote into a JCuda pointer. */
    private static final class Addressed extends CUdeviceptr {
        long address() { return getNativePointer() + getByteOffset(); }
    }

    @Override public String toString() {
        return "DeviceBuffer[" + byteSize + " bytes @0x" + Long.toHexString(address) + "]";
    }
}
