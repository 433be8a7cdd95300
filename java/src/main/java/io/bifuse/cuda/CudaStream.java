package io.bifuse.cuda;

import static jcuda.driver.JCudaDriver.*;

import java.lang.invoke.MethodHandle;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.MethodType;
import jcuda.driver.CUstream;
import jcuda.driver.CUstream_flags;

/**
 * A CUDA stream: one that bifuse created ({@link #create}, destroyed on {@link #close()}), or a raw
 * {@code CUstream}/{@code cudaStream_t} handle from another library ({@link #wrap}), which bifuse
 * only enqueues work on and never destroys.
 */
public final class CudaStream implements AutoCloseable {
    /** The legacy default stream (handle 0). */
    public static final CudaStream LEGACY_DEFAULT = new CudaStream(null, 0L, false);

    private final CudaContext context;
    private final long handle;
    private final boolean owned;
    private volatile CUstream cuStream;
    private volatile boolean closed;

    private CudaStream(CudaContext context, long handle, boolean owned) {
        this.context = context;
        this.handle = handle;
        this.owned = owned;
    }

    /** A new blocking stream (ordered with respect to the legacy default stream). */
    public static CudaStream create(CudaContext context) {
        context.makeCurrent();
        HandleStream s = new HandleStream();
        Driver.check("cuStreamCreate", cuStreamCreate(s, CUstream_flags.CU_STREAM_DEFAULT));
        ResourceCounts.STREAMS.increment();
        CudaStream stream = new CudaStream(context, s.handle(), true);
        stream.cuStream = s;
        return stream;
    }

    /** A stream that another library created in the same process; {@link #close()} leaves it alone. */
    public static CudaStream wrap(long rawHandle) {
        return rawHandle == 0 ? LEGACY_DEFAULT : new CudaStream(null, rawHandle, false);
    }

    /** The raw handle, as cuFFT's and cuBLAS's {@code SetStream} take it. */
    public long handle() {
        if (closed) throw new IllegalStateException("stream is closed");
        return handle;
    }

    /**
     * Waits until everything queued on this stream has finished. Throws IllegalStateException once the
     * stream is closed: held against {@link #close()} by this object's monitor, so that a thread
     * freeing an evicted workspace never synchronizes a handle another thread has just destroyed (the
     * driver answers CUDA_ERROR_INVALID_HANDLE, or waits on whatever new stream reused the handle).
     */
    public void synchronize() {
        if (!owned) {
            Driver.check("cuStreamSynchronize", cuStreamSynchronize(jcuda()));
            return;
        }
        synchronized (this) {
            if (closed) throw new IllegalStateException("stream is closed");
            context.makeCurrent();
            Driver.check("cuStreamSynchronize", cuStreamSynchronize(jcuda()));
        }
    }

    CUstream jcuda() {
        if (closed) throw new IllegalStateException("stream is closed");
        CUstream s = cuStream;
        if (s == null) cuStream = s = RawHandles.stream(handle);
        return s;
    }

    @Override public void close() {
        if (!owned) return;
        synchronized (this) {
            if (closed) return;
            closed = true;
        }
        context.makeCurrent();
        Driver.check("cuStreamDestroy", cuStreamDestroy(cuStream));
    }

    @Override public String toString() { return "CudaStream[0x" + Long.toHexString(handle) + (owned ? "" : ", wrapped") + "]"; }

    /** Exposes the handle that cuStreamCreate writes into a JCuda stream object. */
    private static final class HandleStream extends CUstream {
        long handle() { return getNativePointer(); }
    }

    /**
     * JCuda has no public way to make a CUstream from a raw handle; its package-private constructor
     * does exactly that. The JCuda jar sits on the class path (an open, unnamed module), so the
     * reflective access is allowed, and it happens once per wrapped stream, not per launch.
     */
    private static final class RawHandles {
        private static final MethodHandle NEW_STREAM;
        static {
            try {
                var c = CUstream.class.getDeclaredConstructor(long.class);
                c.setAccessible(true);
                NEW_STREAM = MethodHandles.lookup().unreflectConstructor(c).asType(MethodType.methodType(CUstream.class, long.class));
            } catch (ReflectiveOperationException | RuntimeException e) {
                throw new ExceptionInInitializerError("cannot wrap raw CUstream handles with this JCuda version: " + e);
            }
        }

        static CUstream stream(long handle) {
            try {
                return (CUstream) NEW_STREAM.invokeExact(handle);
            } catch (Throwable t) {
                throw new IllegalStateException("cannot wrap CUstream 0x" + Long.toHexString(handle), t);
            }
        }
    }
}
