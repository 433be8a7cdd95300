package io.bifuse.cuda;

import io.bifuse.ObjectMask;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Consumer;
import java.util.function.Function;
import jcuda.Pointer;

/**
 * What the {@code float[]} conveniences of one op run on: private streams ("lanes"), one per caller
 * running at the same time, kept after the call together with everything made for them, so that
 * repeated calls make nothing. Per lane that is its stream, the op's workspace for the stream (cuBLAS
 * handle, cuFFT plans, scratch), and device buffers for the call's inputs, outputs and gradients,
 * which grow to the largest call seen and are kept (a {@code cuMemAlloc} costs microseconds, a
 * {@code cuMemFree} waits for the whole device). At most {@code maxIdle} lanes are kept between calls;
 * a lane beyond that (a burst of concurrent callers) is freed when its call ends. Copies are ordered on
 * the lane's stream only, never on the legacy default stream or the whole context.
 */
final class HostCalls implements AutoCloseable {
    private final CudaContext context;
    private final int maxIdle;
    private final Consumer<CudaStream> releaseWorkspaces;
    private final ArrayDeque<Lane> idle = new ArrayDeque<>();
    private final List<Lane> all = new ArrayList<>(); // guarded by idle
    private boolean closed; // guarded by idle

    /** {@code releaseWorkspaces}: the op's own {@code release(stream)}, called before a lane's stream is destroyed. */
    HostCalls(CudaContext context, int maxIdle, Consumer<CudaStream> releaseWorkspaces) {
        this.context = context;
        this.maxIdle = maxIdle;
        this.releaseWorkspaces = releaseWorkspaces;
    }

    /**
     * Runs {@code call} on a lane of its own (an idle one, or a new one when every lane is busy) and
     * returns its result; the lane's buffers are handed out afresh to every call, in the order the call
     * asks for them. The work the call queued has finished when this returns, also when it throws.
     */
    <T> T run(Function<Lane, T> call) {
        Lane lane;
        synchronized (idle) {
            if (closed) throw new IllegalStateException("the op is closed");
            lane = idle.pollFirst();
        }
        if (lane == null) lane = newLane();
        T result;
        try {
            lane.next = 0;
            result = call.apply(lane);
        } catch (RuntimeException | Error e) {
            // The call's own error is the one to report; freeing after it (a sticky fault fails that too) is secondary.
            try {
                lane.stream.synchronize();
            } catch (RuntimeException ignored) {
                // the free below reports the state of the stream if it matters
            }
            try { giveBack(lane, false); } catch (RuntimeException f) { e.addSuppressed(f); }
            throw e;
        }
        giveBack(lane, true);
        return result;
    }

    private Lane newLane() {
        CudaStream s = CudaStream.create(context);
        Lane lane = new Lane(s);
        synchronized (idle) {
            if (closed) {
                s.close();
                throw new IllegalStateException("the op is closed");
            }
            all.add(lane);
        }
        return lane;
    }

    // A lane whose call failed is not reused: its workspace may hold a half-made state (a failed cuFFT
    // plan, a sticky fault), and a fresh one costs only the call after an error.
    private void giveBack(Lane lane, boolean healthy) {
        synchronized (idle) {
            if (!closed && healthy && idle.size() < maxIdle) {
                idle.addFirst(lane); // most recently used first: its workspace is the likeliest still cached
                return;
            }
            all.remove(lane);
        }
        free(lane);
    }

    private void free(Lane lane) {
        try {
            releaseWorkspaces.accept(lane.stream);
        } finally {
            try { lane.freeBuffers(); } finally { lane.stream.close(); }
        }
    }

    /** Device bytes the lanes' buffers hold now (their workspaces count with the op's). */
    long bytes() {
        synchronized (idle) {
            long total = 0;
            for (Lane l : all) total += l.heldBytes();
            return total;
        }
    }

    /** Frees every idle lane and refuses new calls; a lane still busy is freed when its call ends. Never throws. */
    @Override public void close() {
        freeIdle(true);
    }

    /** Frees the idle lanes (their streams, workspaces and kept buffers); later calls make fresh ones. Never throws. */
    void trim() {
        freeIdle(false);
    }

    private void freeIdle(boolean close) {
        List<Lane> gone;
        synchronized (idle) {
            if (closed) return;
            if (close) closed = true;
            gone = new ArrayList<>(idle);
            idle.clear();
            all.removeAll(gone);
        }
        for (Lane l : gone) {
            try { free(l); } catch (RuntimeException e) { /* keep freeing the rest, as a workspace's close does, and let the op free its own */ }
        }
    }

    /** One caller's stream and its kept buffers; used by one thread at a time. */
    final class Lane {
        private final CudaStream stream;
        // Replaced by the call that owns the lane, read by bytes() from any thread.
        private final List<DeviceBuffer> buffers = new java.util.concurrent.CopyOnWriteArrayList<>();
        private int next;

        private Lane(CudaStream stream) { this.stream = stream; }

        CudaStream stream() { return stream; }

        /** The next kept buffer, exactly {@code count} floats long (unwritten: it holds what the last call left). */
        DeviceMemory floats(long count) { return take(4L * count); }

        /** A copy of {@code src} on the device. */
        DeviceMemory in(float[] src) {
            DeviceMemory m = floats(src.length);
            DeviceBuffer.copyIn(context, m, Pointer.to(src), 4L * src.length, stream);
            return m;
        }

        /** A copy of {@code src} (int32: indices, offsets) on the device. */
        DeviceMemory in(int[] src) {
            DeviceMemory m = take(4L * src.length);
            DeviceBuffer.copyIn(context, m, Pointer.to(src), 4L * src.length, stream);
            return m;
        }

        /** A copy of {@code mask} on the device, or null for a null mask. */
        DeviceObjectMask in(ObjectMask mask) {
            if (mask == null) return null;
            DeviceMemory counts = take(4L * mask.batch()), indices = take(4L * mask.batch() * mask.objects());
            return DeviceObjectMask.uploadInto(context, mask, counts, indices, stream);
        }

        /** {@code m} copied to the host after the work queued on the lane so far. */
        float[] read(DeviceMemory m) { return DeviceBuffer.toHost(context, m, stream); }

        /**
         * The next kept buffer, grown to {@code size} bytes if smaller. With workspace poisoning on (the
         * simulated device), NaN-filled first, so an output element the call never writes cannot show
         * the last call's value.
         */
        private DeviceMemory take(long size) {
            int i = next++;
            if (i < buffers.size() && buffers.get(i).byteSize() < size) {
                // Too small for this call: nothing of this lane's is in flight between calls, so free it now.
                buffers.get(i).close();
                buffers.set(i, DeviceBuffer.allocate(context, size));
            } else if (i == buffers.size()) {
                buffers.add(DeviceBuffer.allocate(context, size));
            }
            DeviceBuffer b = buffers.get(i);
            if (Workspaces.POISON) b.fill(Float.NaN, stream);
            return b.byteSize() == size ? b : b.slice(0, size);
        }

        private long heldBytes() {
            long total = 0;
            for (DeviceBuffer b : buffers) total += b.byteSize();
            return total;
        }

        private void freeBuffers() {
            for (int i = buffers.size() - 1; i >= 0; i--) buffers.get(i).close();
            buffers.clear();
        }
    }
}
