package io.bifuse.cuda;

import static org.junit.jupiter.api.Assertions.*;

import io.bifuse.Activation;
import io.bifuse.BanBlock;
import io.bifuse.BanPooling;
import io.bifuse.CompactBilinear;
import io.bifuse.Mlb;
import io.bifuse.ObjectMask;
import io.bifuse.testing.Stats;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.function.Supplier;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

/**
 * The {@code float[]} conveniences ({@link HostCalls}): after the first call at a size, a call makes no
 * stream, no cuBLAS handle, no cuFFT plan and no device allocation; results are bitwise those of the
 * first call; a smaller call after a larger one reuses the larger buffers; concurrent callers get lanes
 * of their own and the same bits; closing the op frees everything it made. Counted through
 * {@link ResourceCounts}, so the test fails on any per-call creation, whatever its cost. Skipped
 * without a GPU (failed in strict mode); the other tests check the conveniences' values.
 */
@Tag("gpu")
class HostCallsTest {

    /** Runs {@code call} once (it may make what it needs), then twice more: nothing made, same bits. */
    private static <T> T steady(String what, Supplier<T> call, java.util.function.Function<T, float[]> bits) {
        T first = call.get();
        long[] before = ResourceCounts.snapshot();
        T second = call.get(), third = call.get();
        assertEquals("none", ResourceCounts.delta(before, ResourceCounts.snapshot()), what + ": made on a repeated call");
        assertArrayEquals(bits.apply(first), bits.apply(second), what + ": second call's bits");
        assertArrayEquals(bits.apply(first), bits.apply(third), what + ": third call's bits");
        for (float f : bits.apply(first)) assertTrue(Float.isFinite(f), what + ": a non-finite result " + f);
        return first;
    }

    private static float[] cat(float[]... parts) {
        int n = 0;
        for (float[] p : parts) n += p == null ? 0 : p.length;
        float[] r = new float[n];
        int at = 0;
        for (float[] p : parts) {
            if (p == null) continue;
            System.arraycopy(p, 0, r, at, p.length);
            at += p.length;
        }
        return r;
    }

    @Test void cublasOpMakesNothingAfterItsFirstCallAndShrinksIntoItsBuffers() {
        RequireGpu.cublas();
        SplittableRandom r = new SplittableRandom(11);
        Mlb op = Mlb.random(9, 7, 12, 5, Activation.TANH, 3);
        long live = DeviceBuffer.liveBytes();
        try (CudaContext ctx = CudaContext.open(0)) {
            try (MlbCuda cuda = new MlbCuda(op, ctx)) {
                int big = 6, small = 2;
                float[] xb = Stats.gaussian(r, big * 9), yb = Stats.gaussian(r, big * 7), gb = Stats.gaussian(r, big * 5);
                steady("Mlb forward B=6", () -> cuda.forward(xb, yb, big), f -> f);
                steady("Mlb backward B=6", () -> cuda.backward(xb, yb, gb, big),
                        g -> cat(g.dx(), g.dy(), g.u().weight(), g.u().bias(), g.v().weight(), g.v().bias(), g.p().weight(), g.p().bias()));
                float[] xs = java.util.Arrays.copyOf(xb, small * 9), ys = java.util.Arrays.copyOf(yb, small * 7);
                // A smaller batch: a new workspace (it is keyed by B), but the lane's input and output buffers are reused.
                float[] first = cuda.forward(xs, ys, small);
                long[] before = ResourceCounts.snapshot();
                float[] again = cuda.forward(xs, ys, small);
                assertEquals("none", ResourceCounts.delta(before, ResourceCounts.snapshot()));
                assertArrayEquals(first, again);
                float[] bigRows = cuda.forward(xb, yb, big);
                assertArrayEquals(java.util.Arrays.copyOf(bigRows, small * 5), first, "a sample's output does not depend on the batch it ran in");
                assertTrue(cuda.deviceBytes() > 0);
                // After a one-off large call, what the lanes keep can be given back: the weights stay.
                long weights;
                try (MlbCuda fresh = new MlbCuda(op, ctx)) { weights = fresh.deviceBytes(); }
                cuda.releaseHostLanes();
                assertEquals(weights, cuda.deviceBytes(), "only the weights after releaseHostLanes");
                assertArrayEquals(first, cuda.forward(xs, ys, small), "a fresh lane computes the same");
            }
            assertEquals(live, DeviceBuffer.liveBytes(), "closing the op frees its lanes' buffers");
        }
    }

    @Test void cufftOpKeepsItsPlans() {
        RequireGpu.cufft();
        SplittableRandom r = new SplittableRandom(12);
        CompactBilinear op = CompactBilinear.seeded(20, 16, 64, 5);
        try (CudaContext ctx = CudaContext.open(0); CompactBilinearCuda cuda = new CompactBilinearCuda(op, ctx)) {
            int b = 3;
            float[] x = Stats.gaussian(r, b * 20), y = Stats.gaussian(r, b * 16), g = Stats.gaussian(r, b * 64);
            steady("CompactBilinear forward", () -> cuda.forward(x, y, b), f -> f);
            steady("CompactBilinear backward", () -> cuda.backward(x, y, g, b), gr -> cat(gr.dx(), gr.dy()));
        }
    }

    @Test void maskedOpsUploadTheirMaskIntoKeptBuffers() {
        RequireGpu.cublas();
        SplittableRandom r = new SplittableRandom(13);
        int b = 3, n = 4, m = 3;
        ObjectMask mask = ObjectMask.counts(new int[] {4, 2, 0}, n);
        try (CudaContext ctx = CudaContext.open(0)) {
            BanPooling pool = BanPooling.of(6, 2);
            try (BanPoolingCuda cuda = new BanPoolingCuda(pool, ctx)) {
                float[] att = Stats.gaussian(r, b * n * m), x = Stats.gaussian(r, b * n * 6), y = Stats.gaussian(r, b * m * 6);
                float[] g = Stats.gaussian(r, b * pool.outWidth());
                steady("BanPooling forward", () -> cuda.forward(att, x, y, mask, b, n, m), f -> f);
                steady("BanPooling backward", () -> cuda.backward(att, x, y, mask, g, b, n, m), gr -> cat(gr.da(), gr.dx(), gr.dy()));
            }
            BanBlock block = BanBlock.random(5, 4, 6, 6, 2, 3, 7);
            try (BanBlockCuda cuda = new BanBlockCuda(block, ctx)) {
                float[] x = Stats.gaussian(r, b * n * 5), y = Stats.gaussian(r, b * m * 4), g = Stats.gaussian(r, b * 4);
                steady("BanBlock forward", () -> cuda.forwardWithAttention(x, y, mask, b, n, m), res -> cat(res.out(), res.attention()));
                steady("BanBlock backward", () -> cuda.backward(x, y, mask, g, b, n, m), gr -> cat(gr.dx(), gr.dy()));
            }
        }
    }

    @Test void concurrentCallersGetLanesOfTheirOwnAndTheSameBits() throws Exception {
        RequireGpu.cublas();
        SplittableRandom r = new SplittableRandom(14);
        Mlb op = Mlb.random(9, 7, 12, 5, Activation.RELU, 4);
        int b = 4, threads = 6, calls = 3;
        float[] x = Stats.gaussian(r, b * 9), y = Stats.gaussian(r, b * 7);
        long live = DeviceBuffer.liveBytes();
        ExecutorService pool = Executors.newFixedThreadPool(threads);
        try (CudaContext ctx = CudaContext.open(0)) {
            try (MlbCuda cuda = new MlbCuda(op, ctx)) {
                long weights = cuda.deviceBytes();
                float[] expected = cuda.forward(x, y, b);
                long perCaller = cuda.deviceBytes() - weights; // one lane's buffers and one workspace
                CyclicBarrier start = new CyclicBarrier(threads);
                List<Future<List<float[]>>> results = new ArrayList<>();
                for (int t = 0; t < threads; t++) {
                    results.add(pool.submit(() -> {
                        start.await();
                        List<float[]> mine = new ArrayList<>();
                        for (int c = 0; c < calls; c++) mine.add(cuda.forward(x, y, b));
                        return mine;
                    }));
                }
                for (Future<List<float[]>> f : results) for (float[] got : f.get()) assertArrayEquals(expected, got);
                // More callers than lanes kept: the extra lanes are freed, at most MAX_WORKSPACES stay.
                assertTrue(perCaller > 0);
                assertTrue(cuda.deviceBytes() <= weights + MlbCuda.MAX_WORKSPACES * perCaller,
                        "kept " + cuda.deviceBytes() + " bytes: weights " + weights + " + per caller " + perCaller);
            }
            assertEquals(live, DeviceBuffer.liveBytes(), "every lane freed with the op");
        } finally {
            pool.shutdownNow();
        }
    }

    @Test void aClosedOpRefusesItsConveniences() {
        RequireGpu.cublas();
        try (CudaContext ctx = CudaContext.open(0)) {
            MlbCuda cuda = new MlbCuda(Mlb.random(3, 2, 4, 2, Activation.NONE, 5), ctx);
            float[] x = new float[3], y = new float[2];
            cuda.forward(x, y, 1);
            cuda.close();
            assertThrows(IllegalStateException.class, () -> cuda.forward(x, y, 1));
        }
    }
}
