package io.bifuse.cuda;

import static io.bifuse.cuda.DeviceOpContractTest.B;
import static io.bifuse.cuda.DeviceOpContractTest.F;
import static io.bifuse.cuda.DeviceOpContractTest.gaussian;
import static io.bifuse.cuda.DeviceOpContractTest.tensors;
import static org.junit.jupiter.api.Assertions.*;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.bifuse.Linear;
import io.bifuse.Precision;
import io.bifuse.StackedAttention;
import io.bifuse.StackedAttention.Placement;
import io.bifuse.cpu.StackedAttentionCpu;
import io.bifuse.cuda.DeviceOpContractTest.Args;
import io.bifuse.cuda.DeviceOpContractTest.DeviceForm;
import io.bifuse.cuda.DeviceOpContractTest.Subject;
import io.bifuse.reference.StackedAttentionReference;
import io.bifuse.testing.Conditioning;
import io.bifuse.testing.DeviceRuns;
import io.bifuse.testing.Stats;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * {@code cuda/StackedAttention.cu} + cuBLAS against the float64 reference at the spec's size (B = 64,
 * L = 196, d = 1024, k = 512, K = 2, both tanh placements) and at odd sizes (L = 1, B = 1, K = 1 and 4,
 * widths one past the kernels' block of 256 and their 32 lanes, more cells than a block has threads), on
 * fresh random inputs (the seed is in the failure message), the output, the attention maps and every
 * gradient buffer NaN-poisoned before the run so that an unwritten element fails.
 *
 * <p>Tolerance, relative L2 of the output, the attention maps and each gradient tensor: 1e-5 in FP32
 * (float32 GEMMs over at most d or B·L terms and float32 sums over the cells: a few 1e-7; an indexing
 * mistake gives ~1). TF32 / BF16: {@link Precision#bound()}. Where a tensor exceeds its fixed bound (a
 * sharp softmax turns the logits' absolute error into the maps' relative error, and the softmax
 * Jacobian {@code α ⊙ (dα − ⟨α, dα⟩)} cancels where α is nearly one-hot), the bound becomes
 * {@code max(bound, 2·base)} of {@link Conditioning}: the float64 reference's own movement under
 * perturbations of the inputs and weights at the precision's rounding. The paper's {@code logits.bias}
 * gradient is zero in exact arithmetic and must be exact zeros, as the reference returns it. Skipped
 * without a GPU.
 *
 * <p>On the simulated device ({@link SimSizes}) the spec-size cases run at L = {@value #CELLS} instead of
 * 196 and B = 3 instead of 64 (the repeated-calls test at B = 2, 3 calls instead of 50).
 */
@Tag("gpu")
class StackedAttentionCudaTest extends CublasOpTest {
    static final double TOL = 1e-5;

    static double tolerance(Precision p) { return p == Precision.FP32 ? TOL : p.bound(); }

    /** The spec's L = 196 on the simulated device: odd, one full and one partial group of the kernels' 8 cells. */
    static final int CELLS = 13;

    @ParameterizedTest(name = "B={0} L={1} d={2} k={3} K={4} {5}")
    @CsvSource({"64,196,1024,512,2,PAPER", "64,196,1024,512,2,PUBLIC_CODE",
                "1,1,1,1,1,PAPER", "1,1,1,1,1,PUBLIC_CODE", "3,1,5,7,2,PUBLIC_CODE", "3,1,5,7,2,PAPER",
                "2,9,33,257,3,PAPER", "2,40,257,33,2,PUBLIC_CODE", "1,17,9,11,1,PAPER", "3,197,12,20,2,PUBLIC_CODE",
                "2,300,10,8,2,PAPER", "5,33,64,256,4,PUBLIC_CODE", "2,3,4,5,2,PAPER"})
    void matchesReference(int specBatch, int specCells, int d, int k, int layers, Placement placement) {
        assumeTrue(!SANITIZE || (long) specBatch * specCells <= 8 * 196, "under compute-sanitizer only B·L <= 8·196");
        int batch = SimSizes.batch(specBatch), cells = specCells == 196 ? SimSizes.extent(196, CELLS) : specCells;
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        StackedAttention op = StackedAttention.random(d, k, layers, placement, r.nextLong());
        float[] u = Stats.gaussian(r, batch * d), v = Stats.gaussian(r, batch * cells * d), go = Stats.gaussian(r, batch * d);
        StackedAttentionReference.Result fRef = StackedAttentionReference.forward(op, u, v, batch, cells);
        StackedAttentionReference.Grads gRef = StackedAttentionReference.backward(op, u, v, go, batch, cells);
        for (Precision p : Precision.values()) {
            Conditioning cond = conditioning(p, op, u, v, go, batch, cells, fRef, gRef, seed);
            try (StackedAttentionCuda cuda = new StackedAttentionCuda(op, ctx, p)) {
                assertMatches(op, run(cuda, u, v, go, batch, cells), fRef, gRef, tolerance(p), cond,
                        p + " " + op + " B=" + batch + " L=" + cells + " seed " + seed);
            }
        }
    }

    /**
     * Layers {@link StackedAttention#random} never gives: some without bias, and the logits weights
     * scaled by {@code sharp} so that the softmax over the cells is far from uniform (the paper's linear
     * logits become nearly one-hot; the public code's tanh bounds them to (−1, 1), so sharpness there
     * only steepens the tanh). FP32 and BF16, with {@link Conditioning} as in {@link #matchesReference}.
     */
    @ParameterizedTest(name = "B={0} L={1} d={2} k={3} {4} sharp={5}")
    @CsvSource({"2,33,40,70,PAPER,32", "3,21,24,40,PUBLIC_CODE,8", "2,65,16,30,PAPER,1", "2,40,20,24,PUBLIC_CODE,1"})
    void biaslessAndSharpLayers(int batch, int cells, int d, int k, Placement placement, float sharp) {
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        List<StackedAttention.Layer> ls = new ArrayList<>();
        for (int l = 0; l < 2; l++) {
            Linear logits = Linear.random(1, k, l == 0, r.nextLong());
            float[] w = logits.weight();
            for (int i = 0; i < w.length; i++) w[i] *= sharp;
            ls.add(new StackedAttention.Layer(Linear.random(k, d, l == 1, r.nextLong()), Linear.random(k, d, l == 0, r.nextLong()),
                    new Linear(1, k, w, logits.bias())));
        }
        StackedAttention op = StackedAttention.of(new StackedAttention.Weights(ls), placement);
        float[] u = Stats.gaussian(r, batch * d), v = Stats.gaussian(r, batch * cells * d), go = Stats.gaussian(r, batch * d);
        StackedAttentionReference.Result fRef = StackedAttentionReference.forward(op, u, v, batch, cells);
        StackedAttentionReference.Grads gRef = StackedAttentionReference.backward(op, u, v, go, batch, cells);
        for (Precision p : List.of(Precision.FP32, Precision.BF16)) {
            try (StackedAttentionCuda cuda = new StackedAttentionCuda(op, ctx, p)) {
                Run run = run(cuda, u, v, go, batch, cells);
                assertNull(run.grads.layers().get(0).image().bias());
                assertNull(run.grads.layers().get(1).logits().bias());
                assertNotNull(run.grads.layers().get(0).logits().bias());
                assertMatches(op, run, fRef, gRef, tolerance(p), conditioning(p, op, u, v, go, batch, cells, fRef, gRef, seed),
                        p + " " + placement + " sharp=" + sharp + " B=" + batch + " L=" + cells + " seed " + seed);
            }
        }
    }

    /** Weights that live on the device replace the uploaded ones, each copied into its slice of the stacked layout. */
    @Test void loadsWeightsFromDeviceTensors() {
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        int batch = 3, cells = 11, d = 23, k = 13;
        StackedAttention initial = StackedAttention.random(d, k, 2, Placement.PUBLIC_CODE, 1);
        StackedAttention trained = StackedAttention.random(d, k, 2, Placement.PUBLIC_CODE, 2);
        float[] u = Stats.gaussian(r, batch * d), v = Stats.gaussian(r, batch * cells * d);
        List<DeviceBuffer> tensors = new ArrayList<>();
        try (CudaStream s = CudaStream.create(ctx); StackedAttentionCuda cuda = new StackedAttentionCuda(initial, ctx, Precision.FP32)) {
            try {
                for (StackedAttention.Layer x : trained.weights().layers()) {
                    for (Linear l : List.of(x.image(), x.question(), x.logits())) {
                        tensors.add(DeviceBuffer.of(ctx, l.weight()));
                        tensors.add(DeviceBuffer.of(ctx, l.bias()));
                    }
                }
                List<String> names = initial.gradientNames();
                assertEquals(names.subList(2, names.size()), cuda.weightNames());
                expect("tensors: expected " + tensors.size() + " device tensors", () -> cuda.loadWeights(tensors.subList(1, tensors.size()), s));
                expect("layers[0].image.weight: expected exactly 299 floats", () -> cuda.loadWeights(swapFirstTwo(tensors), s));
                cuda.loadWeights(tensors, s);
                s.synchronize();
                StackedAttention.Result got = cuda.forwardWithAttention(u, v, batch, cells);
                StackedAttentionReference.Result ref = StackedAttentionReference.forward(trained, u, v, batch, cells);
                assertBelow(Stats.relativeL2(got.out(), ref.out()), TOL, "forward with device-loaded weights, seed " + seed);
                assertBelow(Stats.relativeL2(got.attention(), ref.attention()), TOL, "attention with device-loaded weights, seed " + seed);
            } finally {
                cuda.release(s);
                tensors.forEach(DeviceBuffer::close);
            }
        }
    }

    private static List<DeviceBuffer> swapFirstTwo(List<DeviceBuffer> t) {
        List<DeviceBuffer> s = new ArrayList<>(t);
        s.set(0, t.get(1));
        s.set(1, t.get(0));
        return s;
    }

    @Test void hostConveniencesMatchTheDevicePath() {
        SplittableRandom r = new SplittableRandom(3);
        int batch = 3, cells = 50, d = 70, k = 40;
        StackedAttention op = StackedAttention.random(d, k, 2, Placement.PAPER, 5);
        float[] u = Stats.gaussian(r, batch * d), v = Stats.gaussian(r, batch * cells * d), go = Stats.gaussian(r, batch * d);
        try (StackedAttentionCuda cuda = new StackedAttentionCuda(op, ctx, Precision.FP32)) {
            Run dev = run(cuda, u, v, go, batch, cells);
            StackedAttention.Result host = cuda.forwardWithAttention(u, v, batch, cells);
            assertArrayEquals(dev.out, host.out());
            assertArrayEquals(dev.attention, host.attention());
            assertArrayEquals(dev.out, cuda.forward(u, v, batch, cells));
            List<float[]> a = dev.grads.tensors(), b = cuda.backward(u, v, go, batch, cells).tensors();
            assertEquals(a.size(), b.size());
            for (int i = 0; i < a.size(); i++) assertArrayEquals(a.get(i), b.get(i), op.gradientNames().get(i));
        }
    }

    @Test void bitIdenticalAcrossRuns() {
        // No atomics anywhere: two runs of the spec's widths give the same bits, both placements.
        SplittableRandom r = new SplittableRandom(1);
        int batch = SANITIZE ? 2 : SimSizes.batch(16), cells = SimSizes.extent(196, CELLS);
        for (Placement placement : Placement.values()) {
            StackedAttention op = StackedAttention.random(1024, 512, 2, placement, 3);
            float[] u = Stats.gaussian(r, batch * 1024), v = Stats.gaussian(r, batch * cells * 1024), go = Stats.gaussian(r, batch * 1024);
            try (StackedAttentionCuda cuda = new StackedAttentionCuda(op, ctx, Precision.FP32)) {
                Run a = run(cuda, u, v, go, batch, cells), b = run(cuda, u, v, go, batch, cells);
                assertArrayEquals(a.out, b.out);
                assertArrayEquals(a.attention, b.attention);
                for (int i = 0; i < a.grads.tensors().size(); i++) assertArrayEquals(a.grads.tensors().get(i), b.grads.tensors().get(i));
            }
        }
    }

    @Test void forwardWithoutAttentionBufferGivesTheSameOutput() {
        SplittableRandom r = new SplittableRandom(4);
        int batch = 5, cells = 20, d = 30, k = 16;
        StackedAttention op = StackedAttention.random(d, k, 3, Placement.PUBLIC_CODE, 6);
        float[] u = Stats.gaussian(r, batch * d), v = Stats.gaussian(r, batch * cells * d);
        try (StackedAttentionCuda cuda = new StackedAttentionCuda(op, ctx, Precision.FP32); CudaStream s = CudaStream.create(ctx);
             DeviceBuffer du = DeviceBuffer.of(ctx, u); DeviceBuffer dv = DeviceBuffer.of(ctx, v);
             DeviceBuffer o = DeviceBuffer.allocateFloats(ctx, (long) batch * d)) {
            try {
                o.fill(Float.NaN);
                cuda.forward(du, dv, o, null, batch, cells, s);
                float[] got = new float[batch * d];
                o.read(got, s);
                assertArrayEquals(cuda.forward(u, v, batch, cells), got);
                assertTrue(Stats.relativeL2(got, StackedAttentionReference.forward(op, u, v, batch, cells).out()) <= TOL);
            } finally {
                cuda.release(s);
            }
        }
    }

    @Test void repeatedCallsLeaveDeviceMemoryUnchanged() {
        int batch = SimSizes.pick(8, 2), cells = SimSizes.extent(196, CELLS);
        SplittableRandom r = new SplittableRandom(5);
        StackedAttention op = StackedAttention.random(1024, 512, 2, Placement.PAPER, 6);
        try (CudaStream s = CudaStream.create(ctx); StackedAttentionCuda cuda = new StackedAttentionCuda(op, ctx, Precision.TF32);
             DeviceBuffer u = DeviceBuffer.of(ctx, Stats.gaussian(r, batch * 1024));
             DeviceBuffer v = DeviceBuffer.of(ctx, Stats.gaussian(r, batch * cells * 1024));
             DeviceBuffer g = DeviceBuffer.of(ctx, Stats.gaussian(r, batch * 1024));
             DeviceBuffer f = DeviceBuffer.allocateFloats(ctx, batch * 1024L);
             StackedAttentionCuda.OwnedGradients gr = cuda.allocateGradients(batch, cells)) {
            long weightsOnly = cuda.deviceBytes();
            try {
                cuda.forward(u, v, f, null, batch, cells, s);
                cuda.backward(u, v, g, gr.buffers(), batch, cells, s);
                s.synchronize();
                assertTrue(cuda.deviceBytes() > weightsOnly, "a workspace is held for (stream, B, L)");
                long free0 = ctx.memoryInfo()[0], held0 = cuda.deviceBytes();
                for (int i = 0, n = SANITIZE ? 3 : SimSizes.repeats(50); i < n; i++) {
                    cuda.forward(u, v, f, null, batch, cells, s);
                    cuda.backward(u, v, g, gr.buffers(), batch, cells, s);
                }
                s.synchronize();
                assertEquals(free0, ctx.memoryInfo()[0], "free device memory changed over repeated calls");
                assertEquals(held0, cuda.deviceBytes());
            } finally {
                cuda.release(s);
            }
            assertEquals(weightsOnly, cuda.deviceBytes(), "release(stream) frees that stream's workspace");
        }
    }

    @Test void manyThreadsShareOneOp() throws Exception {
        int batch = 4, cells = 30, threads = 6, d = 200;
        StackedAttention op = StackedAttention.random(d, 64, 2, Placement.PUBLIC_CODE, 7);
        SplittableRandom r = new SplittableRandom(8);
        List<float[]> us = new ArrayList<>(), vs = new ArrayList<>();
        for (int t = 0; t < threads; t++) {
            us.add(Stats.gaussian(r, batch * d));
            vs.add(Stats.gaussian(r, batch * cells * d));
        }
        ExecutorService pool = Executors.newFixedThreadPool(threads);
        try (StackedAttentionCuda cuda = new StackedAttentionCuda(op, ctx, Precision.FP32)) {
            List<Future<float[]>> fs = new ArrayList<>();
            for (int t = 0; t < threads; t++) {
                int i = t;
                fs.add(pool.submit(() -> {
                    float[] f = null;
                    for (int n = 0; n < 5; n++) f = cuda.forward(us.get(i), vs.get(i), batch, cells);
                    return f;
                }));
            }
            for (int t = 0; t < threads; t++) {
                double e = Stats.relativeL2(fs.get(t).get(), StackedAttentionReference.forward(op, us.get(t), vs.get(t), batch, cells).out());
                assertTrue(e <= TOL, "thread " + t + ": " + e);
            }
        } finally {
            pool.shutdownNow();
        }
    }

    @Test void badDeviceArgumentsAreRejectedBeforeAnyLaunch() {
        int d = 6, k = 4, batch = 2, cells = 5;
        StackedAttention op = StackedAttention.of(new StackedAttention.Weights(List.of(
                new StackedAttention.Layer(Linear.random(k, d, true, 1), Linear.random(k, d, false, 2), Linear.random(1, k, true, 3)),
                new StackedAttention.Layer(Linear.random(k, d, true, 4), Linear.random(k, d, true, 5), Linear.random(1, k, true, 6)))), Placement.PAPER);
        List<DeviceBuffer> bufs = new ArrayList<>();
        try (CudaStream s = CudaStream.create(ctx); StackedAttentionCuda cuda = new StackedAttentionCuda(op, ctx, Precision.FP32);
             StackedAttentionCuda.OwnedGradients owned = cuda.allocateGradients(batch, cells)) {
            try {
                DeviceBuffer u = keep(bufs, DeviceBuffer.allocateFloats(ctx, batch * d));
                DeviceBuffer v = keep(bufs, DeviceBuffer.allocateFloats(ctx, batch * cells * d));
                DeviceBuffer f = keep(bufs, DeviceBuffer.allocateFloats(ctx, batch * d));
                DeviceBuffer att = keep(bufs, DeviceBuffer.allocateFloats(ctx, batch * 2 * cells));
                DeviceBuffer closed = DeviceBuffer.allocateFloats(ctx, batch * d);
                closed.close();
                StackedAttentionCuda.GradientBuffers gr = owned.buffers();
                StackedAttentionCuda.LayerBuffers l0 = gr.layers().get(0), l1 = gr.layers().get(1);
                assertNull(l0.question().bias());
                f.fill(7f);
                att.fill(7f);
                expect("u: the device buffer is closed", () -> cuda.forward(closed, v, f, att, batch, cells, s));
                expect("v: expected at least 10 × 6 floats (240 bytes), got 236 bytes",
                        () -> cuda.forward(u, DeviceMemory.wrap(v.address(), 236), f, att, batch, cells, s));
                expect("v: expected at least 12 × 6 floats", () -> cuda.forward(u, v, f, null, batch, 6, s)); // L = 6 needs more v
                expect("out: expected device memory", () -> cuda.forward(u, v, null, att, batch, cells, s));
                expect("out: expected a 4-byte aligned address", () -> cuda.forward(u, v, DeviceMemory.wrap(f.address() + 2, 48), att, batch, cells, s));
                expect("attention: expected at least 4 × 5 floats", () -> cuda.forward(u, v, f, DeviceMemory.wrap(att.address(), 76), batch, cells, s));
                expect("batch: expected >= 1, got 0", () -> cuda.forward(u, v, f, att, 0, cells, s));
                expect("cells: expected >= 1, got 0", () -> cuda.forward(u, v, f, att, batch, 0, s));
                expect("stream: expected a CudaStream", () -> cuda.forward(u, v, f, att, batch, cells, null));
                expect("gradOut: expected at least 2 × 6 floats", () -> cuda.backward(u, v, DeviceMemory.wrap(f.address(), 44), gr, batch, cells, s));
                expect("grads: expected GradientBuffers, got null", () -> cuda.backward(u, v, f, null, batch, cells, s));
                expect("grads.dv: expected at least 10 × 6 floats", () -> cuda.backward(u, v, f,
                        new StackedAttentionCuda.GradientBuffers(gr.du(), gr.du(), gr.layers()), batch, cells, s));
                expect("grads.du: the device buffer is closed", () -> cuda.backward(u, v, f,
                        new StackedAttentionCuda.GradientBuffers(closed, gr.dv(), gr.layers()), batch, cells, s));
                expect("grads.layers: expected 2 layers' buffers, got 1", () -> cuda.backward(u, v, f,
                        new StackedAttentionCuda.GradientBuffers(gr.du(), gr.dv(), List.of(l0)), batch, cells, s));
                expect("grads.layers: expected 2 layers' buffers, got null", () -> cuda.backward(u, v, f,
                        new StackedAttentionCuda.GradientBuffers(gr.du(), gr.dv(), null), batch, cells, s));
                expect("grads.layers[1].question.bias: expected device memory for 1 × 4 floats, got null", () -> cuda.backward(u, v, f,
                        new StackedAttentionCuda.GradientBuffers(gr.du(), gr.dv(), List.of(l0, l0)), batch, cells, s));
                expect("grads.layers[0].question.bias: expected null (the layer has no bias)", () -> cuda.backward(u, v, f,
                        new StackedAttentionCuda.GradientBuffers(gr.du(), gr.dv(), List.of(l1, l1)), batch, cells, s));
                expect("grads.layers[1].logits.weight: expected at least 1 × 4 floats", () -> cuda.backward(u, v, f,
                        new StackedAttentionCuda.GradientBuffers(gr.du(), gr.dv(), List.of(l0, new StackedAttentionCuda.LayerBuffers(l1.image(), l1.question(),
                                new MlbAttentionCuda.LayerBuffers(DeviceMemory.wrap(f.address(), 12), l1.logits().bias())))), batch, cells, s));
                expect("grads.layers[0].image: expected LayerBuffers, got null", () -> cuda.backward(u, v, f,
                        new StackedAttentionCuda.GradientBuffers(gr.du(), gr.dv(), List.of(new StackedAttentionCuda.LayerBuffers(null, l0.question(), l0.logits()),
                                l1)), batch, cells, s));
                expect("stream: expected a CudaStream", () -> cuda.backward(u, v, f, gr, batch, cells, null));
                // Nothing was queued by any of the rejected calls: the outputs still hold the fill.
                float[] fo = new float[batch * d], ao = new float[batch * 2 * cells];
                f.read(fo, s);
                att.read(ao, s);
                for (float x : fo) assertEquals(7f, x);
                for (float x : ao) assertEquals(7f, x);
            } finally {
                cuda.release(s);
                bufs.forEach(DeviceBuffer::close);
            }
        }
        expect("precision: expected FP32, TF32 or BF16, got null", () -> new StackedAttentionCuda(op, ctx, null));
        expect("op: expected a StackedAttention, got null", () -> new StackedAttentionCuda(null, ctx));
        expect("cells: expected >= 1, got 0", () -> {
            try (StackedAttentionCuda c = new StackedAttentionCuda(op, ctx, Precision.FP32)) { c.allocateGradients(1, 0); }
        });
    }

    record Run(float[] out, float[] attention, StackedAttention.Gradients grads) {}

    /** Forward (with the attention maps) and backward on device buffers, every output NaN-poisoned first. */
    static Run run(StackedAttentionCuda cuda, float[] u, float[] v, float[] go, int batch, int cells) {
        DeviceRuns.StackedAttentionRun r = DeviceRuns.stackedAttention(ctx, cuda, u, v, go, batch, cells);
        return new Run(r.out(), r.attention(), r.grads());
    }

    /** The {@link Conditioning} of this case: {@link StackedAttentionTolerance}'s rule, which the CPU backend's test shares. */
    static Conditioning conditioning(Precision p, StackedAttention op, float[] u, float[] v, float[] go, int batch, int cells,
                                     StackedAttentionReference.Result fRef, StackedAttentionReference.Grads gRef, long seed) {
        return io.bifuse.testing.StackedAttentionTolerance.conditioning(p, op, u, v, go, batch, cells, fRef, gRef, seed);
    }

    /** {@code cond} null: {@code tol} for every tensor; else {@code tol} raised where the case's conditioning needs it. */
    static void assertMatches(StackedAttention op, Run run, StackedAttentionReference.Result fRef, StackedAttentionReference.Grads gRef, double tol,
                              Conditioning cond, String what) {
        double e = Stats.relativeL2(run.out, fRef.out());
        assertBelow(e, cond == null ? tol : cond.bound(0, tol, e), what + " forward");
        e = Stats.relativeL2(run.attention, fRef.attention());
        assertBelow(e, cond == null ? tol : cond.bound(1, tol, e), what + " attention");
        List<float[]> got = run.grads.tensors();
        List<double[]> ref = gRef.tensors();
        List<String> names = op.gradientNames();
        assertEquals(ref.size(), got.size(), what);
        for (int t = 0; t < got.size(); t++) {
            if (isZero(ref.get(t))) {
                // exactly zero (the paper's logits bias; every parameter at L = 1): zeros, not rounding noise
                assertArrayEquals(new float[got.get(t).length], got.get(t), what + " " + names.get(t) + " must be exact zeros");
            } else {
                e = Stats.relativeL2(got.get(t), ref.get(t));
                assertBelow(e, cond == null ? tol : cond.bound(2 + t, tol, e), what + " " + names.get(t));
            }
        }
    }

    private static boolean isZero(double[] a) {
        for (double x : a) if (x != 0) return false;
        return true;
    }

    private static DeviceBuffer keep(List<DeviceBuffer> l, DeviceBuffer b) {
        l.add(b);
        return b;
    }

    /**
     * This op's instance of the {@link DeviceOpContractTest} testbed: two layers over five cells in the public
     * code's placement (every bias gradient real), the attention maps an optional output; its malformed
     * gradient records (a layer list short or missing, a layer's buffers missing) are refusals the generic
     * cases cannot build.
     */
    static Subject contractSubject(SplittableRandom r) {
        StackedAttention op = StackedAttention.random(7, 6, 2, Placement.PUBLIC_CODE, r.nextLong());
        int b = 3, l = 5, kk = op.layers();
        float[] u = gaussian(r, b * 7), v = gaussian(r, b * l * 7), g = gaussian(r, b * 7);
        DeviceForm dev = new DeviceForm()
                .call(F, (o, a) -> ((StackedAttentionCuda) o).forward(a.m("u"), a.m("v"), a.m("out"), a.m("attention"), a.n("batch"), a.n("cells"),
                        a.stream()))
                .call(B, (o, a) -> ((StackedAttentionCuda) o).backward(a.m("u"), a.m("v"), a.m("gradOut"), sanGrads(a, kk), a.n("batch"), a.n("cells"),
                        a.stream()))
                .size("batch", b).size("cells", l).in("u", u, F, B).in("v", v, F, B).in("gradOut", g, B)
                .out("out", b * 7, F).optionalOut("attention", b * kk * l, F) // null: the maps are not written
                .out("grads.du", b * 7, B).out("grads.dv", b * l * 7, B);
        for (int i = 0; i < kk; i++) {
            StackedAttention.Layer x = op.weights().layers().get(i);
            String n = "grads.layers[" + i + "]";
            dev.linear(n + ".image", x.image(), B).linear(n + ".question", x.question(), B).linear(n + ".logits", x.logits(), B);
        }
        dev.extra("grads", B, (o, a) -> ((StackedAttentionCuda) o).backward(a.m("u"), a.m("v"), a.m("gradOut"), null, a.n("batch"), a.n("cells"),
                        a.stream()))
                .extra("grads.layers", B, (o, a) -> ((StackedAttentionCuda) o).backward(a.m("u"), a.m("v"), a.m("gradOut"),
                        new StackedAttentionCuda.GradientBuffers(a.m("grads.du"), a.m("grads.dv"), sanGrads(a, kk).layers().subList(0, kk - 1)),
                        a.n("batch"), a.n("cells"), a.stream()))
                .extra("grads.layers", B, (o, a) -> ((StackedAttentionCuda) o).backward(a.m("u"), a.m("v"), a.m("gradOut"),
                        new StackedAttentionCuda.GradientBuffers(a.m("grads.du"), a.m("grads.dv"), null), a.n("batch"), a.n("cells"), a.stream()))
                .extra("grads.layers[1]", B, (o, a) -> {
                    List<StackedAttentionCuda.LayerBuffers> ls = new ArrayList<>(sanGrads(a, kk).layers());
                    ls.set(1, null);
                    ((StackedAttentionCuda) o).backward(a.m("u"), a.m("v"), a.m("gradOut"), new StackedAttentionCuda.GradientBuffers(a.m("grads.du"),
                            a.m("grads.dv"), ls), a.n("batch"), a.n("cells"), a.stream());
                });
        return new Subject("StackedAttention", false, true, (c, p) -> new StackedAttentionCuda(op, c, p), new StackedAttentionCpu(op), be -> {
            StackedAttention.Backend m = (StackedAttention.Backend) be;
            StackedAttention.Result res = m.forwardWithAttention(u, v, b, l);
            List<float[]> t = tensors(res.out(), res.attention(), m.forward(u, v, b, l));
            t.addAll(m.backward(u, v, g, b, l).tensors());
            return t;
        }, dev);
    }

    private static MlbAttentionCuda.LayerBuffers sanLayer(Args a, String key) {
        return new MlbAttentionCuda.LayerBuffers(a.m(key + ".weight"), a.m(key + ".bias"));
    }

    private static StackedAttentionCuda.GradientBuffers sanGrads(Args a, int layers) {
        List<StackedAttentionCuda.LayerBuffers> ls = new ArrayList<>();
        for (int i = 0; i < layers; i++) {
            String n = "grads.layers[" + i + "]";
            ls.add(new StackedAttentionCuda.LayerBuffers(sanLayer(a, n + ".image"), sanLayer(a, n + ".question"), sanLayer(a, n + ".logits")));
        }
        return new StackedAttentionCuda.GradientBuffers(a.m("grads.du"), a.m("grads.dv"), ls);
    }
}
