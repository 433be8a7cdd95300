package io.bifuse.cuda;

import static jcuda.driver.JCudaDriver.*;

import jcuda.driver.CUevent;
import jcuda.driver.CUevent_flags;

/** A CUDA event with timing, for benchmarks: record on a stream, synchronize, read elapsed time. */
public final class CudaEvent implements AutoCloseable {
    private final CudaContext context;
    private final CUevent event = new CUevent();
    private boolean closed;

    public CudaEvent(CudaContext context) {
        this.context = context;
        context.makeCurrent();
        Driver.check("cuEventCreate", cuEventCreate(event, CUevent_flags.CU_EVENT_DEFAULT));
    }

    public void record(CudaStream stream) {
        context.makeCurrent();
        Driver.check("cuEventRecord", cuEventRecord(event, stream.jcuda()));
    }

    public void synchronize() { Driver.check("cuEventSynchronize", cuEventSynchronize(event)); }

    /** Milliseconds between {@code start} and {@code end} (both recorded, {@code end} completed). */
    public static float elapsedMillis(CudaEvent start, CudaEvent end) {
        float[] ms = new float[1];
        Driver.check("cuEventElapsedTime", cuEventElapsedTime(ms, start.event, end.event));
        return ms[0];
    }

    @Override public void close() {
        if (closed) return;
        closed = true;
        context.makeCurrent();
        Driver.check("cuEventDestroy", cuEventDestroy(event));
    }
}
