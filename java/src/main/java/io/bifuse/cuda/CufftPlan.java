package io.bifuse.cuda;

import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * A batched 1-D real FFT plan of length {@code n} (R2C: {@code batch × n} floats to
 * {@code batch × (n/2+1)} complex; C2R the reverse), bound to one stream. cuFFT allocates its work area
 * when the plan is made, so a plan is made once per shape and reused. C2R, like cuFFT's out-of-place
 * C2R in general, may overwrite its input. Not thread-safe: callers serialize use of one plan.
 */
public final class CufftPlan implements AutoCloseable {
    /** Real-to-complex or complex-to-real. */
    public enum Kind { R2C, C2R }

    private final Cufft cufft;
    private final CudaContext context;
    private final Kind kind;
    private final int n;
    private final long batch;
    private final long workBytes;
    private int handle;
    private boolean closed;

    public CufftPlan(CudaContext context, Kind kind, int n, long batch, CudaStream stream) {
        if (n < 1) throw new IllegalArgumentException("n: expected >= 1, got " + n);
        if (batch < 1) throw new IllegalArgumentException("batch: expected >= 1, got " + batch);
        this.cufft = Cufft.get();
        this.context = context;
        this.kind = kind;
        this.n = n;
        this.batch = batch;
        context.makeCurrent();
        long freq = n / 2 + 1;
        try (Arena a = Arena.ofConfined()) {
            MemorySegment h = a.allocate(JAVA_INT);
            Cufft.check("cufftCreate", (int) cufft.create.invokeExact(h));
            handle = h.get(JAVA_INT, 0);
            MemorySegment dims = a.allocateFrom(JAVA_LONG, n);
            MemorySegment inembed = a.allocateFrom(JAVA_LONG, kind == Kind.R2C ? n : freq);
            MemorySegment onembed = a.allocateFrom(JAVA_LONG, kind == Kind.R2C ? freq : n);
            MemorySegment work = a.allocate(JAVA_LONG);
            long idist = kind == Kind.R2C ? n : freq, odist = kind == Kind.R2C ? freq : n;
            int type = kind == Kind.R2C ? Cufft.R2C : Cufft.C2R;
            try {
                Cufft.check("cufftMakePlanMany64(n=" + n + ", batch=" + batch + ", " + kind + ")",
                        (int) cufft.makePlanMany64.invokeExact(handle, 1, dims, inembed, 1L, idist, onembed, 1L, odist, type, batch, work));
                Cufft.check("cufftSetStream", (int) cufft.setStream.invokeExact(handle, MemorySegment.ofAddress(stream.handle())));
            } catch (RuntimeException e) {
                int rc = (int) cufft.destroy.invokeExact(handle);
                throw e;
            }
            workBytes = work.get(JAVA_LONG, 0);
            ResourceCounts.CUFFT_PLANS.increment();
        } catch (Throwable t) {
            throw NativeLibrary.rethrow(t);
        }
    }

    /** Queues the transform on the plan's stream. Sizes are the caller's to check (done by the ops). */
    public void execute(DeviceMemory in, DeviceMemory out) {
        if (closed) throw new IllegalStateException("cuFFT plan is closed");
        context.makeCurrent();
        MemorySegment i = MemorySegment.ofAddress(in.address()), o = MemorySegment.ofAddress(out.address());
        try {
            if (kind == Kind.R2C) Cufft.check("cufftExecR2C", (int) cufft.execR2C.invokeExact(handle, i, o));
            else Cufft.check("cufftExecC2R", (int) cufft.execC2R.invokeExact(handle, i, o));
        } catch (Throwable t) {
            throw NativeLibrary.rethrow(t);
        }
    }

    public int n() { return n; }
    public long batch() { return batch; }
    /** Bytes of the work area cuFFT allocated for this plan. */
    public long workBytes() { return workBytes; }

    /** cuFFT's version number (e.g. 12000 for cuFFT 12.0), or the reason it did not load. */
    public static String describeLibrary() {
        String why = Cufft.unavailableReason();
        return why != null ? why : Cufft.get().library + " (version " + Cufft.get().version + ")";
    }

    public static boolean libraryAvailable() { return Cufft.unavailableReason() == null; }

    @Override public void close() {
        if (closed) return;
        closed = true;
        context.makeCurrent();
        try {
            Cufft.check("cufftDestroy", (int) cufft.destroy.invokeExact(handle));
        } catch (Throwable t) {
            throw NativeLibrary.rethrow(t);
        }
    }
}
