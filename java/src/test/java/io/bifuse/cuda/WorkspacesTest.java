package io.bifuse.cuda;

import static org.junit.jupiter.api.Assertions.*;

import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * The workspace cache's policy needs no device: wrapped stream handles key it and workspaces that own
 * nothing are never synchronized on (closing one with no resources touches no driver call).
 */
class WorkspacesTest {
    static final class Ws extends Workspaces.Workspace {
        final int shape;
        Ws(CudaStream s, int shape) { this(null, s, shape); }
        Ws(CudaContext c, CudaStream s, int shape) {
            super(c, s);
            this.shape = shape;
        }
        boolean closed() { synchronized (this) { return !begin(); } }
    }

    final List<Ws> made = new ArrayList<>();

    Ws make(Workspaces<Integer, Ws> cache, CudaStream s, int shape) {
        return cache.get(s, shape, st -> { Ws w = new Ws(st, shape); made.add(w); return w; });
    }

    @Test void oneWorkspacePerStreamAndShapeLeastRecentlyUsedEvictedAndClosed() {
        Workspaces<Integer, Ws> cache = new Workspaces<>("TestOp", 2);
        CudaStream a = CudaStream.wrap(0x10), b = CudaStream.wrap(0x20);
        Ws a1 = make(cache, a, 1);
        assertSame(a1, make(cache, a, 1));
        Ws b1 = make(cache, b, 1);
        assertNotSame(a1, b1);
        make(cache, a, 1);          // a1 is now the most recent
        Ws a2 = make(cache, a, 2);  // evicts b1, the least recently used
        assertTrue(b1.closed());
        assertFalse(a1.closed());
        assertFalse(a2.closed());
        assertEquals(3, made.size());
        assertNotSame(b1, make(cache, b, 1)); // made again after eviction
    }

    @Test void thePerThreadDefaultStreamGetsOneWorkspacePerThread() throws Exception {
        Workspaces<Integer, Ws> cache = new Workspaces<>("TestOp", 8);
        CudaStream perThread = CudaStream.wrap(Workspaces.PER_THREAD_STREAM), other = CudaStream.wrap(0x10);
        Ws here = make(cache, perThread, 1), hereOther = make(cache, other, 1);
        Ws[] there = new Ws[2];
        Thread t = new Thread(() -> { there[0] = make(cache, perThread, 1); there[1] = make(cache, other, 1); });
        t.start();
        t.join();
        assertNotSame(here, there[0], "two threads on CU_STREAM_PER_THREAD run on two streams");
        assertSame(hereOther, there[1], "one created stream is one stream whichever thread queues on it");
        assertSame(here, make(cache, perThread, 1));
    }

    @Test void releaseFreesOnlyThatStreamsWorkspaces() {
        Workspaces<Integer, Ws> cache = new Workspaces<>("TestOp", 4);
        CudaStream a = CudaStream.wrap(0x10), b = CudaStream.wrap(0x20);
        Ws a1 = make(cache, a, 1), a2 = make(cache, a, 2), b1 = make(cache, b, 1);
        cache.release(a);
        assertTrue(a1.closed());
        assertTrue(a2.closed());
        assertFalse(b1.closed());
        assertSame(b1, make(cache, b, 1));
    }

    @org.junit.jupiter.api.Tag("gpu") @Test void poisonedWorkspacesStartEveryCallAsNaN() {
        // What makes the GPU tests on the simulated device catch a call that reads scratch it did not write.
        RequireGpu.device();
        org.junit.jupiter.api.Assumptions.assumeTrue(Workspaces.POISON, "workspace poisoning is off (bifuse.cuda.poisonWorkspaces)");
        try (CudaContext ctx = CudaContext.open(0); CudaStream st = CudaStream.create(ctx)) {
            Workspaces<Integer, Ws> cache = new Workspaces<>("TestOp", 2);
            Ws w = cache.get(st, 1, s -> new Ws(ctx, s, 1));
            DeviceBuffer b = w.own(DeviceBuffer.of(ctx, new float[] {1, 2, 3}));
            float[] back = new float[3];
            synchronized (w) { assertTrue(w.begin()); }
            b.read(back, st);
            for (float v : back) assertTrue(Float.isNaN(v), java.util.Arrays.toString(back));
            cache.close();
        }
    }

    @Test void closedCacheClosesEverythingAndRefusesNewWork() {
        Workspaces<Integer, Ws> cache = new Workspaces<>("TestOp", 4);
        Ws a1 = make(cache, CudaStream.wrap(0x10), 1);
        assertTrue(cache.close());
        assertFalse(cache.close());
        assertTrue(a1.closed());
        IllegalStateException e = assertThrows(IllegalStateException.class, () -> make(cache, CudaStream.wrap(0x10), 1));
        assertEquals("TestOp is closed", e.getMessage());
        assertEquals(0, cache.bytes());
    }
}
