package io.bifuse.cuda;

import static io.bifuse.cuda.DeviceOpContractTest.B;
import static io.bifuse.cuda.DeviceOpContractTest.F;
import static io.bifuse.cuda.DeviceOpContractTest.gaussian;
import static io.bifuse.cuda.DeviceOpContractTest.tensors;
import static org.junit.jupiter.api.Assertions.*;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.bifuse.Activation;
import io.bifuse.Linear;
import io.bifuse.Mlb;
import io.bifuse.Precision;
import io.bifuse.cpu.MlbCpu;
import io.bifuse.cuda.DeviceOpContractTest.Args;
import io.bifuse.cuda.DeviceOpContractTest.DeviceForm;
import io.bifuse.cuda.DeviceOpContractTest.Subject;
import io.bifuse.reference.MlbReference;
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
 * {@code cuda/Mlb.cu} + cuBLAS against the float64 reference at the spec's size and at odd small
 * sizes, on fresh random inputs (the seed is in the failure message), every output and gradient
 * buffer NaN-poisoned before the run so that an unwritten element fails. Tolerance, relative L2 of
 * the output and of each of the eight gradients: 1e-5 in FP32 (float32 GEMMs over <= 2400 terms land
 * near 1e-7; an indexing mistake gives ~1), {@link Precision#bound()} in TF32 / BF16 (MlbTest measures
 * the emulated operand rounding of the output at the spec's size below half of it). Where a tensor
 * exceeds that, its bound becomes {@code max(bound, 2·base)} of {@link Conditioning} (the reference's
 * own change when every operand moves by the precision's error): ReLU decisions that flip under the
 * rounding (TF32 RELU dx measured at 4× the bound at the spec's widths) and the single rounded products
 * of the 1-wide case (BF16 db_u just past the bound) are not covered by the fixed bound. Skipped
 * without a GPU.
 *
 * <p>On the simulated device ({@link SimSizes}) the spec-width cases run at B = 3 (all widths as the
 * spec's) and the repeated-calls loop 10 times instead of 200.
 */
@Tag("gpu")
class MlbCudaTest extends CublasOpTest {

    static double tolerance(Precision p) { return p == Precision.FP32 ? 1e-5 : p.bound(); }

    @ParameterizedTest(name = "B={0} Dx={1} Dy={2} J={3} Out={4} {5}")
    @CsvSource({"512,2400,2048,1200,2000,TANH", "64,2400,2048,1200,2000,RELU", "1,2400,2048,1200,2000,NONE",
                "3,1,1,1,1,TANH", "5,7,3,2,9,RELU", "7,33,17,257,129,TANH", "2,300,201,1001,3,NONE",
                "3,5,7,2,4,NONE", "2,17,9,33,5,RELU", "5,40,31,257,13,NONE", "4,64,48,300,260,RELU"})
    void matchesReference(int specBatch, int dx, int dy, int j, int out, Activation act) {
        assumeTrue(!SANITIZE || specBatch <= 64, "under compute-sanitizer only B <= 64");
        int batch = SimSizes.batch(specBatch);
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        Mlb op = Mlb.random(dx, dy, j, out, act, r.nextLong());
        float[] x = Stats.gaussian(r, batch * dx), y = Stats.gaussian(r, batch * dy), g = Stats.gaussian(r, batch * out);
        double[] fRef = MlbReference.forward(op, x, y, batch);
        MlbReference.Grads gRef = MlbReference.backward(op, x, y, g, batch);
        for (Precision p : Precision.values()) {
            Conditioning cond = conditioning(p, op, x, y, g, batch, fRef, gRef, seed);
            try (MlbCuda cuda = new MlbCuda(op, ctx, p)) {
                Run run = run(cuda, x, y, g, batch);
                assertMatches(run, fRef, gRef, tolerance(p), cond, p + " " + act + " B=" + batch + " seed " + seed);
            }
        }
    }

    /** TF32 and BF16 are never chosen silently: every low-rank op's two-argument CUDA constructor is FP32. */
    @Test void defaultPrecisionIsFp32() {
        try (MlbCuda a = new MlbCuda(Mlb.random(5, 4, 3, 2, Activation.TANH, 1), ctx);
             MfbCuda b = new MfbCuda(io.bifuse.Mfb.random(5, 4, 3, 2, 2, Activation.NONE, io.bifuse.Normalization.pytorch(), 2), ctx);
             MlbAttentionCuda c = new MlbAttentionCuda(io.bifuse.MlbAttention.random(5, 4, 3, 2, 2, Activation.TANH, 3), ctx);
             FullBilinearCuda d = new FullBilinearCuda(io.bifuse.FullBilinear.homologous(4, false, io.bifuse.Normalization.pytorch()), ctx)) {
            assertEquals(List.of(Precision.FP32, Precision.FP32, Precision.FP32, Precision.FP32),
                    List.of(a.precision(), b.precision(), c.precision(), d.precision()));
        }
    }

    /** block.bootstrap's options (normalize, activ_output) on the device, FP32, against the reference with the conditioning rule. */
    @ParameterizedTest(name = "B={0} Dx={1} Dy={2} J={3} Out={4} {5} out {6} normalized={7}")
    @CsvSource({"1,1,1,1,1,RELU,RELU,false", "3,7,5,4,2,TANH,SIGMOID,true", "5,37,29,17,11,RELU,RELU,true", "4,64,48,300,260,SIGMOID,TANH,true",
        "2,30,20,12,9,NONE,RELU,false"})
    void optionsMatchReference(int batch, int dx, int dy, int j, int out, Activation act, Activation outAct, boolean normalized) {
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        Mlb op = Mlb.random(dx, dy, j, out, act, r.nextLong()).withOptions(normalized ? io.bifuse.Normalization.pytorch() : io.bifuse.Normalization.NONE, outAct);
        float[] x = Stats.gaussian(r, batch * dx), y = Stats.gaussian(r, batch * dy), g = Stats.gaussian(r, batch * out);
        double[] fRef = MlbReference.forward(op, x, y, batch);
        MlbReference.Grads gRef = MlbReference.backward(op, x, y, g, batch);
        try (MlbCuda cuda = new MlbCuda(op, ctx, Precision.FP32)) {
            assertMatches(run(cuda, x, y, g, batch), fRef, gRef, 1e-5, conditioning(Precision.FP32, op, x, y, g, batch, fRef, gRef, seed), op + " seed " + seed);
        }
    }

    /** block.bootstrap's MLB module through the safetensors fixtures, on the device. */
    @ParameterizedTest(name = "{0}")
    @CsvSource({"mlb-default,RELU,RELU", "mlb-tanh-normalized,TANH,SIGMOID"})
    void matchesBlockBootstrapsModule(String stem, Activation in, Activation outAct, @org.junit.jupiter.api.io.TempDir java.nio.file.Path dir) throws java.io.IOException {
        try (io.bifuse.StateDict sd = io.bifuse.testing.Fixtures.open(dir, stem)) {
            Mlb op = Mlb.fromStateDict(sd, "", in, outAct, io.bifuse.testing.Fixtures.flag(sd, "normalize"));
            int batch = io.bifuse.testing.FusionChecks.batch(sd);
            try (MlbCuda cuda = new MlbCuda(op, ctx, Precision.FP32)) {
                Run run = run(cuda, sd.floats("input.0"), sd.floats("input.1"), sd.floats("grad_out"), batch);
                io.bifuse.testing.FusionChecks.assertMatchesFixture(sd, stem + " (device)", run.out(), run.grads().tensors(), op.gradientNames(), 1e-5);
            }
        }
    }

    @Test void layersWithoutBias() {
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        int batch = 9, dx = 50, dy = 40, j = 30, out = 20;
        Mlb op = Mlb.of(Linear.random(j, dx, false, 1), Linear.random(j, dy, true, 2), Linear.random(out, j, false, 3), Activation.TANH);
        float[] x = Stats.gaussian(r, batch * dx), y = Stats.gaussian(r, batch * dy), g = Stats.gaussian(r, batch * out);
        try (MlbCuda cuda = new MlbCuda(op, ctx, Precision.FP32)) {
            Run run = run(cuda, x, y, g, batch);
            assertNull(run.grads.u().bias());
            assertNull(run.grads.p().bias());
            assertMatches(run, MlbReference.forward(op, x, y, batch), MlbReference.backward(op, x, y, g, batch), 1e-5, "no bias, seed " + seed);
        }
    }

    /**
     * No bias in any layer, v's included (layersWithoutBias keeps v's): then no bias buffer is uploaded
     * for the kernel to read, and backward writes no bias gradient for any of the three layers. Tanh, and
     * ReLU whose decisions may flip at float32's error, so both at {@link Conditioning}'s FP32 bound
     * where 1e-5 does not hold (see the class comment).
     */
    @ParameterizedTest(name = "B={0} Dx={1} Dy={2} J={3} Out={4} {5}")
    @CsvSource({"3,19,11,29,7,TANH", "6,33,20,300,270,RELU"})
    void noLayerHasABias(int batch, int dx, int dy, int j, int out, Activation act) {
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        Mlb op = Mlb.of(Linear.random(j, dx, false, r.nextLong()), Linear.random(j, dy, false, r.nextLong()), Linear.random(out, j, false, r.nextLong()), act);
        float[] x = Stats.gaussian(r, batch * dx), y = Stats.gaussian(r, batch * dy), g = Stats.gaussian(r, batch * out);
        double[] fRef = MlbReference.forward(op, x, y, batch);
        MlbReference.Grads gRef = MlbReference.backward(op, x, y, g, batch);
        try (MlbCuda cuda = new MlbCuda(op, ctx, Precision.FP32)) {
            Run run = run(cuda, x, y, g, batch);
            assertNull(run.grads.u().bias());
            assertNull(run.grads.v().bias());
            assertNull(run.grads.p().bias());
            assertMatches(run, fRef, gRef, 1e-5, conditioning(Precision.FP32, op, x, y, g, batch, fRef, gRef, seed), act + " no bias, seed " + seed);
        }
    }

    @Test void hostConveniencesMatchTheDevicePath() {
        SplittableRandom r = new SplittableRandom(3);
        int batch = 6, dx = 70, dy = 50, j = 40, out = 30;
        Mlb op = Mlb.random(dx, dy, j, out, Activation.TANH, 5);
        float[] x = Stats.gaussian(r, batch * dx), y = Stats.gaussian(r, batch * dy), g = Stats.gaussian(r, batch * out);
        try (MlbCuda cuda = new MlbCuda(op, ctx, Precision.FP32)) {
            Run dev = run(cuda, x, y, g, batch);
            assertArrayEquals(dev.out, cuda.forward(x, y, batch));
            Mlb.Gradients host = cuda.backward(x, y, g, batch);
            assertArrayEquals(dev.grads.dx(), host.dx());
            assertArrayEquals(dev.grads.u().weight(), host.u().weight());
            assertArrayEquals(dev.grads.p().bias(), host.p().bias());
        }
    }

    @Test void bitIdenticalAcrossRuns() {
        SplittableRandom r = new SplittableRandom(1);
        Mlb op = Mlb.random(2400, 2048, 1200, 2000, Activation.TANH, 3);
        int batch = SimSizes.batch(64);
        float[] x = Stats.gaussian(r, batch * 2400), y = Stats.gaussian(r, batch * 2048), g = Stats.gaussian(r, batch * 2000);
        try (MlbCuda cuda = new MlbCuda(op, ctx, Precision.FP32)) {
            Run a = run(cuda, x, y, g, batch), b = run(cuda, x, y, g, batch);
            assertArrayEquals(a.out, b.out);
            assertArrayEquals(a.grads.dx(), b.grads.dx());
            assertArrayEquals(a.grads.u().weight(), b.grads.u().weight());
            assertArrayEquals(a.grads.v().bias(), b.grads.v().bias());
        }
    }

    @Test void runsOnMemoryFromOutsideAtOddOffsets() {
        // Inputs and outputs carved out of one foreign allocation, 4 bytes off any 256-byte boundary.
        int batch = 5, dx = 31, dy = 23, j = 17, out = 13;
        SplittableRandom r = new SplittableRandom(2);
        Mlb op = Mlb.random(dx, dy, j, out, Activation.TANH, 4);
        float[] x = Stats.gaussian(r, batch * dx), y = Stats.gaussian(r, batch * dy);
        try (DeviceBuffer arena = DeviceBuffer.allocate(ctx, 4L * (batch * (dx + dy + out) + 64)); CudaStream s = CudaStream.create(ctx);
             MlbCuda cuda = new MlbCuda(op, ctx, Precision.FP32)) {
            arena.fill(Float.NaN);
            long base = arena.address() + 4;
            DeviceMemory dX = DeviceMemory.wrap(base, 4L * batch * dx), dY = DeviceMemory.wrap(base + 4L * batch * dx, 4L * batch * dy);
            DeviceMemory dF = DeviceMemory.wrap(base + 4L * batch * (dx + dy), 4L * batch * out);
            try (DeviceBuffer hx = DeviceBuffer.of(ctx, x); DeviceBuffer hy = DeviceBuffer.of(ctx, y)) {
                copy(hx, dX, s);
                copy(hy, dY, s);
                cuda.forward(dX, dY, dF, batch, s);
                float[] f = new float[batch * out];
                try (DeviceBuffer tmp = DeviceBuffer.allocateFloats(ctx, (long) batch * out)) {
                    copy(dF, tmp, s);
                    tmp.read(f, s);
                }
                assertTrue(Stats.relativeL2(f, MlbReference.forward(op, x, y, batch)) <= 1e-5);
            } finally {
                cuda.release(s);
            }
        }
    }

    @Test void repeatedCallsLeaveDeviceMemoryUnchanged() {
        int batch = SimSizes.batch(64);
        SplittableRandom r = new SplittableRandom(5);
        Mlb op = Mlb.random(2400, 2048, 1200, 2000, Activation.TANH, 6);
        List<DeviceBuffer> bufs = new ArrayList<>();
        List<MlbCuda.OwnedGradients> closers = new ArrayList<>();
        try (CudaStream s = CudaStream.create(ctx); MlbCuda cuda = new MlbCuda(op, ctx, Precision.TF32)) {
            try {
                DeviceBuffer x = keep(bufs, DeviceBuffer.of(ctx, Stats.gaussian(r, batch * 2400)));
                DeviceBuffer y = keep(bufs, DeviceBuffer.of(ctx, Stats.gaussian(r, batch * 2048)));
                DeviceBuffer g = keep(bufs, DeviceBuffer.of(ctx, Stats.gaussian(r, batch * 2000)));
                DeviceBuffer f = keep(bufs, DeviceBuffer.allocateFloats(ctx, batch * 2000L));
                MlbCuda.OwnedGradients owned = cuda.allocateGradients(batch);
                closers.add(owned);
                MlbCuda.DeviceGradients gr = owned.buffers();
                cuda.forward(x, y, f, batch, s);
                cuda.backward(x, y, g, gr, batch, s);
                s.synchronize();
                long free0 = ctx.memoryInfo()[0], held0 = cuda.deviceBytes();
                for (int i = 0, n = SANITIZE ? 10 : SimSizes.repeats(200); i < n; i++) {
                    cuda.forward(x, y, f, batch, s);
                    cuda.backward(x, y, g, gr, batch, s);
                }
                s.synchronize();
                assertEquals(free0, ctx.memoryInfo()[0], "free device memory changed over repeated calls");
                assertEquals(held0, cuda.deviceBytes());
            } finally {
                cuda.release(s);
                closers.forEach(MlbCuda.OwnedGradients::close);
                bufs.forEach(DeviceBuffer::close);
            }
        }
    }

    @Test void manyThreadsShareOneOp() throws Exception {
        int batch = 16, threads = 6;
        Mlb op = Mlb.random(300, 200, 128, 50, Activation.TANH, 7);
        SplittableRandom r = new SplittableRandom(8);
        List<float[]> xs = new ArrayList<>(), ys = new ArrayList<>();
        for (int t = 0; t < threads; t++) { xs.add(Stats.gaussian(r, batch * 300)); ys.add(Stats.gaussian(r, batch * 200)); }
        ExecutorService pool = Executors.newFixedThreadPool(threads);
        try (MlbCuda cuda = new MlbCuda(op, ctx, Precision.FP32)) {
            List<Future<float[]>> fs = new ArrayList<>();
            for (int t = 0; t < threads; t++) {
                int i = t;
                fs.add(pool.submit(() -> {
                    float[] f = null;
                    for (int k = 0; k < 20; k++) f = cuda.forward(xs.get(i), ys.get(i), batch);
                    return f;
                }));
            }
            for (int t = 0; t < threads; t++) {
                double e = Stats.relativeL2(fs.get(t).get(), MlbReference.forward(op, xs.get(t), ys.get(t), batch));
                assertTrue(e <= 1e-5, "thread " + t + ": " + e);
            }
        } finally {
            pool.shutdownNow();
        }
    }

    /**
     * Weights that live on the device (as another library's state dict would) replace the uploaded
     * ones: after {@code loadWeights} the op computes the other model, to the FP32 tolerance.
     */
    @Test void loadsWeightsFromDeviceTensors() {
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        int batch = 6, dx = 41, dy = 23, j = 19, out = 7;
        Mlb initial = Mlb.of(Linear.random(j, dx, true, 1), Linear.random(j, dy, false, 2), Linear.random(out, j, true, 3), Activation.RELU);
        Mlb trained = Mlb.of(Linear.random(j, dx, true, 4), Linear.random(j, dy, false, 5), Linear.random(out, j, true, 6), Activation.RELU);
        float[] x = Stats.gaussian(r, batch * dx), y = Stats.gaussian(r, batch * dy);
        List<DeviceBuffer> tensors = new ArrayList<>();
        try (CudaStream s = CudaStream.create(ctx); MlbCuda cuda = new MlbCuda(initial, ctx, Precision.FP32)) {
            try {
                for (Linear l : List.of(trained.u(), trained.v(), trained.p())) {
                    tensors.add(DeviceBuffer.of(ctx, l.weight()));
                    if (l.hasBias()) tensors.add(DeviceBuffer.of(ctx, l.bias()));
                }
                assertEquals(List.of("u.weight", "u.bias", "v.weight", "p.weight", "p.bias"), cuda.weightNames());
                expect("tensors: expected 5 device tensors", () -> cuda.loadWeights(tensors.subList(0, 4), s));
                expect("v.weight: expected exactly 437 floats (1748 bytes), got 3116 bytes",
                        () -> cuda.loadWeights(List.of(tensors.get(0), tensors.get(1), tensors.get(0), tensors.get(3), tensors.get(4)), s));
                cuda.loadWeights(tensors, s);
                s.synchronize();
                assertBelow(Stats.relativeL2(cuda.forward(x, y, batch), MlbReference.forward(trained, x, y, batch)), 1e-5,
                        "forward with device-loaded weights, seed " + seed);
            } finally {
                cuda.release(s);
                tensors.forEach(DeviceBuffer::close);
            }
        }
    }

    @Test void badDeviceArgumentsAreRejectedBeforeAnyLaunch() {
        Mlb op = Mlb.of(Linear.random(4, 8, true, 1), Linear.random(4, 6, false, 2), Linear.random(3, 4, true, 3), Activation.TANH);
        List<DeviceBuffer> bufs = new ArrayList<>();
        List<MlbCuda.OwnedGradients> closers = new ArrayList<>();
        try (CudaStream s = CudaStream.create(ctx); MlbCuda cuda = new MlbCuda(op, ctx, Precision.FP32)) {
            try {
                DeviceBuffer x = keep(bufs, DeviceBuffer.allocateFloats(ctx, 16)), y = keep(bufs, DeviceBuffer.allocateFloats(ctx, 12));
                DeviceBuffer f = keep(bufs, DeviceBuffer.allocateFloats(ctx, 6));
                MlbCuda.OwnedGradients owned = cuda.allocateGradients(2);
                closers.add(owned);
                MlbCuda.DeviceGradients gr = owned.buffers();
                assertNull(gr.bv());
                DeviceBuffer closed = DeviceBuffer.allocateFloats(ctx, 16);
                closed.close();
                expect("x: the device buffer is closed", () -> cuda.forward(closed, y, f, 2, s));
                expect("y: expected at least 3 × 6 floats (72 bytes), got 48 bytes", () -> cuda.forward(DeviceMemory.wrap(x.address(), 96), y, f, 3, s));
                expect("out: expected device memory", () -> cuda.forward(x, y, null, 2, s));
                expect("batch: expected >= 1, got 0", () -> cuda.forward(x, y, f, 0, s));
                expect("stream: expected a CudaStream", () -> cuda.forward(x, y, f, 2, null));
                expect("out: expected a 4-byte aligned address", () -> cuda.forward(x, y, DeviceMemory.wrap(f.address() + 2, 24), 2, s));
                expect("gradOut: expected at least 2 × 3 floats", () -> cuda.backward(x, y, DeviceMemory.wrap(f.address(), 20), gr, 2, s));
                expect("grads: expected DeviceGradients", () -> cuda.backward(x, y, f, null, 2, s));
                expect("grads.u: expected at least 4 × 8 floats", () -> cuda.backward(x, y, f,
                        new MlbCuda.DeviceGradients(gr.dx(), gr.dy(), gr.dx(), gr.bu(), gr.v(), null, gr.p(), gr.bp()), 2, s));
                expect("grads.bv: expected null (the layer has no bias)", () -> cuda.backward(x, y, f,
                        new MlbCuda.DeviceGradients(gr.dx(), gr.dy(), gr.u(), gr.bu(), gr.v(), gr.bu(), gr.p(), gr.bp()), 2, s));
                expect("grads.bp: expected device memory for 1 × 3 floats, got null", () -> cuda.backward(x, y, f,
                        new MlbCuda.DeviceGradients(gr.dx(), gr.dy(), gr.u(), gr.bu(), gr.v(), null, gr.p(), null), 2, s));
                expect("grads.dy: expected at least 2 × 6 floats", () -> cuda.backward(x, y, f,
                        new MlbCuda.DeviceGradients(gr.dx(), gr.bu(), gr.u(), gr.bu(), gr.v(), null, gr.p(), gr.bp()), 2, s));
            } finally {
                cuda.release(s);
                closers.forEach(MlbCuda.OwnedGradients::close);
                bufs.forEach(DeviceBuffer::close);
            }
        }
        expect("precision: expected FP32, TF32 or BF16, got null", () -> new MlbCuda(op, ctx, null));
    }

    record Run(float[] out, Mlb.Gradients grads) {}

    /** Forward and backward on device buffers, every output NaN-poisoned first. */
    static Run run(MlbCuda cuda, float[] x, float[] y, float[] g, int batch) {
        DeviceRuns.MlbRun r = DeviceRuns.mlb(ctx, cuda, x, y, g, batch);
        return new Run(r.out(), r.grads());
    }

    /** The output's, then each gradient's (the order of {@link MlbReference.Grads#all()}): 1e-5 in FP32, the {@link Conditioning} bound in TF32 / BF16. */
    /**
     * The {@link Conditioning} of this case (tensor 0 the output, then the gradients in the order of
     * {@link MlbReference.Grads#all()}); the longest GEMM sum is over Dx, Dy, J, Out (g·P) or B (weight gradients).
     */
    static Conditioning conditioning(Precision p, Mlb op, float[] x, float[] y, float[] g, int batch, double[] fRef, MlbReference.Grads gRef,
                                     long seed) {
        List<double[]> ref = new ArrayList<>(List.of(fRef));
        ref.addAll(List.of(gRef.all()));
        int longest = Math.max(Math.max(Math.max(op.dx(), op.dy()), Math.max(op.joint(), op.out())), batch);
        return new Conditioning(Conditioning.step(p, longest), seed, (r, e) -> {
            Mlb q = Mlb.of(Conditioning.perturb(op.u(), e, r), Conditioning.perturb(op.v(), e, r), Conditioning.perturb(op.p(), e, r), op.activation())
                    .withOptions(op.normalization(), op.outputActivation());
            float[] px = Conditioning.perturb(x, e, r), py = Conditioning.perturb(y, e, r);
            List<double[]> got = new ArrayList<>(List.of(MlbReference.forward(q, px, py, batch)));
            got.addAll(List.of(MlbReference.backward(q, px, py, Conditioning.perturb(g, e, r), batch).all()));
            return Conditioning.errors(got, ref);
        });
    }

    static void assertMatches(Run run, double[] fRef, MlbReference.Grads gRef, double tol, String what) {
        assertMatches(run, fRef, gRef, tol, null, what);
    }

    /** {@code cond} null: {@code tol} for every tensor; else {@code tol} raised where the case's conditioning needs it. */
    static void assertMatches(Run run, double[] fRef, MlbReference.Grads gRef, double tol, Conditioning cond, String what) {
        double e = Stats.relativeL2(run.out, fRef);
        assertBelow(e, cond == null ? tol : cond.bound(0, tol, e), what + " forward");
        Mlb.Gradients g = run.grads;
        float[][] got = {g.dx(), g.dy(), g.u().weight(), g.u().bias(), g.v().weight(), g.v().bias(), g.p().weight(), g.p().bias()};
        String[] names = {"dx", "dy", "dU", "db_u", "dV", "db_v", "dP", "db_p"};
        double[][] ref = gRef.all();
        for (int t = 0; t < got.length; t++) {
            if (got[t] == null) continue; // a layer without bias: checked by the caller
            e = Stats.relativeL2(got[t], ref[t]);
            assertBelow(e, cond == null ? tol : cond.bound(1 + t, tol, e), what + " " + names[t]);
        }
    }

    private static DeviceBuffer keep(List<DeviceBuffer> l, DeviceBuffer b) {
        l.add(b);
        return b;
    }

    private static void copy(DeviceMemory from, DeviceMemory to, CudaStream s) {
        s.synchronize();
        assertEquals(0, jcuda.driver.JCudaDriver.cuMemcpyDtoD(DeviceBuffer.devicePointer(to), DeviceBuffer.devicePointer(from), from.byteSize()));
    }

    /**
     * This op's instance of the {@link DeviceOpContractTest} testbed: MLB with TANH at small odd widths. V has no
     * bias because the device form's "memory for a bias the layer does not have" case needs one such layer.
     */
    static Subject contractSubject(SplittableRandom r) {
        // V without a bias: the device form's "bias the layer does not have" case needs one such layer
        Mlb op = Mlb.of(Linear.random(12, 9, true, r.nextLong()), Linear.random(12, 7, false, r.nextLong()), Linear.random(5, 12, true, r.nextLong()),
                Activation.TANH);
        int b = 4;
        float[] x = gaussian(r, b * 9), y = gaussian(r, b * 7), g = gaussian(r, b * 5);
        DeviceForm dev = new DeviceForm()
                .call(F, (o, a) -> ((MlbCuda) o).forward(a.m("x"), a.m("y"), a.m("out"), a.n("batch"), a.stream()))
                .call(B, (o, a) -> ((MlbCuda) o).backward(a.m("x"), a.m("y"), a.m("gradOut"), mlbGrads(a), a.n("batch"), a.stream()))
                .size("batch", b).in("x", x, F, B).in("y", y, F, B).in("gradOut", g, B).out("out", b * 5, F)
                .out("grads.dx", b * 9, B).out("grads.dy", b * 7, B)
                .linear("grads.u", "grads.bu", op.u(), B).linear("grads.v", "grads.bv", op.v(), B).linear("grads.p", "grads.bp", op.p(), B)
                .extra("grads", B, (o, a) -> ((MlbCuda) o).backward(a.m("x"), a.m("y"), a.m("gradOut"), null, a.n("batch"), a.stream()));
        return new Subject("Mlb", false, true, (c, p) -> new MlbCuda(op, c, p), new MlbCpu(op), be -> {
            Mlb.Backend m = (Mlb.Backend) be;
            Mlb.Gradients gr = m.backward(x, y, g, b);
            return tensors(m.forward(x, y, b), gr.dx(), gr.dy(), gr.u(), gr.v(), gr.p());
        }, dev);
    }

    private static MlbCuda.DeviceGradients mlbGrads(Args a) {
        return new MlbCuda.DeviceGradients(a.m("grads.dx"), a.m("grads.dy"), a.m("grads.u"), a.m("grads.bu"), a.m("grads.v"), a.m("grads.bv"),
                a.m("grads.p"), a.m("grads.bp"));
    }
}
