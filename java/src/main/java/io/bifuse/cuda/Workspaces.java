package io.bifuse.cuda;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.function.Function;

/**
 * The scratch memory of one op, cached per (stream, call shape) so that repeated calls allocate
 * nothing; the {@code max} most recently used are kept (least recently used evicted first). Calls on
 * one stream are serialized on its workspace (callers hold the workspace's monitor while queuing);
 * calls on different streams get different workspaces and run concurrently.
 *
 * @param <S> the call shape a workspace is sized for (the batch, or a record of sizes)
 * @param <W> the op's workspace type
 */
final class Workspaces<S, W extends Workspaces.Workspace> {
    /**
     * NaN-fill every workspace at the start of each call ({@link Workspace#begin}): on by default on the
     * simulated device (the tests' device: a memset costs nothing there beside the kernels), off on a
     * GPU; the system property {@code bifuse.cuda.poisonWorkspaces} overrides both.
     */
    static final boolean POISON = Boolean.parseBoolean(System.getProperty("bifuse.cuda.poisonWorkspaces", String.valueOf(Cuda.isSimulated())));

    /** {@code CU_STREAM_PER_THREAD}: one handle that names a different stream in every host thread. */
    static final long PER_THREAD_STREAM = 0x2;

    /** {@code thread}: the caller's thread for the per-thread default stream, else null (one stream, one workspace). */
    private record Key(long stream, Thread thread, Object shape) {}

    private final String owner;
    private final int max;
    private final Map<Key, W> cache = new LinkedHashMap<>(8, 0.75f, true);
    private boolean closed; // guarded by cache

    /** {@code owner} names the op in the "closed" error. */
    Workspaces(String owner, int max) {
        this.owner = owner;
        this.max = max;
    }

    /**
     * The workspace for ({@code stream}, {@code shape}), made by {@code make} if there is none. The
     * caller synchronizes on it and re-asks when {@link Workspace#begin} finds it closed (evicted
     * by another thread in between).
     */
    W get(CudaStream stream, S shape, Function<CudaStream, W> make) {
        long h = stream.handle();
        // Threads on the per-thread default stream run on different streams: sharing a workspace there
        // would be a data race between them, so each thread gets its own.
        Key key = new Key(h, h == PER_THREAD_STREAM ? Thread.currentThread() : null, shape);
        List<W> evicted = new ArrayList<>();
        W w;
        synchronized (cache) {
            if (closed) throw new IllegalStateException(owner + " is closed");
            w = cache.get(key);
            if (w == null) {
                w = make.apply(stream);
                cache.put(key, w);
                var it = cache.values().iterator();
                while (cache.size() > max && it.hasNext()) {
                    W old = it.next();
                    if (old != w) { it.remove(); evicted.add(old); }
                }
            }
        }
        for (W old : evicted) old.close();
        return w;
    }

    /**
     * An op call's protocol, written once: the workspace for ({@code stream}, {@code shape}) (made by
     * {@code make} if there is none), its monitor held so that calls on one stream queue in order,
     * {@link Workspace#begin} (the poisoning), the context made current, then {@code body}. A workspace
     * that another thread evicted between the lookup and the monitor is closed: take a fresh one.
     */
    void run(CudaStream stream, S shape, Function<CudaStream, W> make, java.util.function.Consumer<W> body) {
        while (true) {
            W w = get(stream, shape, make);
            synchronized (w) {
                if (!w.begin()) continue;
                w.context.makeCurrent();
                body.accept(w);
                return;
            }
        }
    }

    /** Frees the workspaces that belong to {@code stream} (e.g. a short-lived stream about to be destroyed). */
    void release(CudaStream stream) {
        List<W> gone = new ArrayList<>();
        synchronized (cache) {
            cache.values().removeIf(w -> { if (w.streamHandle == stream.handle()) { gone.add(w); return true; } return false; });
        }
        for (W w : gone) w.close();
    }

    /** Device bytes held by the cached workspaces now. */
    long bytes() {
        synchronized (cache) {
            long total = 0;
            for (W w : cache.values()) total += w.bytes();
            return total;
        }
    }

    /** Frees every workspace and refuses new ones; false when already closed (the op's own close then does nothing more). */
    boolean close() {
        List<W> all;
        synchronized (cache) {
            if (closed) return false;
            closed = true;
            all = new ArrayList<>(cache.values());
            cache.clear();
        }
        for (W w : all) w.close();
        return true;
    }

    /**
     * Resources made for one stream: device buffers, cuBLAS handles, cuFFT plans, freed in reverse
     * order once the work queued on the stream has finished. A subclass constructor that fails part
     * way calls {@link #close} before rethrowing.
     */
    abstract static class Workspace implements AutoCloseable {
        final CudaContext context;
        final CudaStream stream;
        final long streamHandle;
        // Grown under the workspace's monitor (lazily made backward buffers), read by bytes() without it.
        private final List<AutoCloseable> owned = new CopyOnWriteArrayList<>();
        private boolean closed; // guarded by this

        Workspace(CudaContext context, CudaStream stream) {
            this.context = context;
            this.stream = stream;
            this.streamHandle = stream.handle();
        }

        final <T extends AutoCloseable> T own(T r) {
            owned.add(r);
            return r;
        }

        /** Device bytes of the owned buffers and of cuFFT plans' work areas. */
        final long bytes() {
            long total = 0;
            for (AutoCloseable r : owned) {
                if (r instanceof DeviceBuffer b) total += b.byteSize();
                else if (r instanceof CufftPlan p) total += p.workBytes();
            }
            return total;
        }

        /**
         * Call with this workspace's monitor held, first thing in every op call: false when the workspace
         * was closed (evicted by another thread meanwhile: take a fresh one). With {@link #POISON} on, every
         * owned buffer is first NaN-filled on the stream, so that a call reading scratch its own launches
         * did not write this time (a backward relying on a forward's leftovers, a kernel reading past the
         * part it wrote) gives NaN instead of a stale, plausible value.
         */
        final boolean begin() {
            if (closed) return false;
            if (POISON && !owned.isEmpty()) {
                context.makeCurrent();
                for (AutoCloseable r : owned) {
                    if (r instanceof DeviceBuffer b) {
                        DeviceBuffer.fillAsync(b, Float.NaN, b.byteSize() / 4, stream);
                    }
                }
            }
            return true;
        }


        @Override public final synchronized void close() {
            if (closed) return;
            closed = true;
            // Work queued on the stream may still use these buffers.
            try {
                if (!owned.isEmpty()) {
                    try {
                        context.makeCurrent(); // close() may run on any thread, and the legacy default stream needs a current context
                        // On another thread the per-thread handle names that thread's stream, not this workspace's.
                        if (streamHandle == PER_THREAD_STREAM) context.synchronize();
                        else stream.synchronize();
                    } catch (IllegalStateException streamClosed) {
                        context.synchronize();
                    }
                }
            } finally {
                for (int i = owned.size() - 1; i >= 0; i--) {
                    try { owned.get(i).close(); } catch (Exception ignored) { /* keep freeing the rest */ }
                }
                owned.clear();
            }
        }
    }
}
