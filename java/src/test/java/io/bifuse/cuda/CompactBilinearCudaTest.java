package io.bifuse.cuda;

import static io.bifuse.cuda.DeviceOpContractTest.B;
import static io.bifuse.cuda.DeviceOpContractTest.F;
import static io.bifuse.cuda.DeviceOpContractTest.gaussian;
import static io.bifuse.cuda.DeviceOpContractTest.tensors;
import static org.junit.jupiter.api.Assertions.*;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.bifuse.CompactBilinear;
import io.bifuse.Normalization;
import io.bifuse.cpu.CompactBilinearCpu;
import io.bifuse.cuda.DeviceOpContractTest.DeviceForm;
import io.bifuse.cuda.DeviceOpContractTest.Subject;
import io.bifuse.reference.CompactBilinearReference;
import io.bifuse.testing.Stats;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import jcuda.driver.CUstream;
import jcuda.driver.JCudaDriver;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * {@code cuda/CompactBilinear.cu} against the float64 reference at the spec's sizes, on fresh random
 * inputs (the seed is in the failure message), outputs NaN-poisoned before every run so that an
 * unwritten element fails the comparison. Tolerance: relative L2 error <= 1e-5 (float32 sketches and
 * cuFFT at d = 16000 give ~1e-7; an indexing or scaling mistake gives ~1), except through the signed
 * sqrt, held to check's conditioning bounds ({@link io.bifuse.testing.CompactBilinearTolerance}: the forward's too, since at
 * Dx·Dy < d the sqrt of the FFT's noise at empty bins gives ~3e-4), and the backward through an l2
 * normalization, measured against its terms' size ({@link L2Terms}: at d = 1 they cancel). Skipped
 * without a GPU.
 *
 * <p>On the simulated device ({@link SimSizes}) the spec-size cases run at B = 3 instead of 64 or 512
 * (every normalization, where B = 512 leaves out Caffe's on a GPU) and the repeated-calls loop 10 times
 * instead of 200.
 */
@Tag("gpu")
class CompactBilinearCudaTest {
    static final double TOL = 1e-5;
    /** Set by the bundle's {@code run sanitize}: compute-sanitizer slows kernels 10-100×, so skip the largest sizes. */
    static final boolean SANITIZE = Boolean.getBoolean("bifuse.sanitize");
    static CudaContext ctx;

    @BeforeAll static void open() {
        if (Cuda.isAvailable() && CufftPlan.libraryAvailable()) ctx = CudaContext.open(0);
    }

    /** Per test, so that each GPU test is reported as skipped (with the reason) rather than vanishing. */
    @BeforeEach void requireGpu() {
        RequireGpu.cufft();
    }

    @AfterAll static void close() { if (ctx != null) ctx.close(); }

    @ParameterizedTest(name = "B={0} Dx={1} Dy={2} d={3}")
    @CsvSource({"1,2048,2048,16000", "64,2048,2048,16000", "512,2048,2048,16000", "64,2048,2048,15999", "64,2048,2048,15838",
                "3,2048,2048,6300", "3,2048,2048,15625", "2,100,90,3087", "3,1,1,1", "5,7,3,2", "2,33,17,16001"})
    void matchesReference(int specBatch, int dx, int dy, int d) {
        assumeTrue(!SANITIZE || (long) specBatch * d <= 64L * 16000, "under compute-sanitizer only B·d <= 64·16000");
        int batch = SimSizes.batch(specBatch);
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        for (Normalization n : new Normalization[] {Normalization.NONE, Normalization.pytorch(), Normalization.caffe()}) {
            if (batch >= 512 && n.equals(Normalization.caffe())) continue; // the reference costs minutes; Caffe is covered at smaller B
            CompactBilinear op = CompactBilinear.seeded(dx, dy, d, r.nextLong()).withNormalization(n);
            float[] x = Stats.gaussian(r, batch * dx), y = Stats.gaussian(r, batch * dy), g = Stats.gaussian(r, batch * d);
            double[] zRef = CompactBilinearReference.forward(op, x, y, batch);
            double[][] gRef = io.bifuse.testing.CompactBilinearTolerance.backwardComparable(n, dx, dy, d)
                    ? CompactBilinearReference.backward(op, x, y, g, batch) : null;
            double[][] gScale = gRef == null ? null : backwardScale(op, x, y, g, batch);
            // The signed sqrt turns float32 FFT noise at empty bins (Dx·Dy < d) into ~3e-4 on the forward: io.bifuse.testing.CompactBilinearTolerance explains.
            double fwdTol = io.bifuse.testing.CompactBilinearTolerance.forwardTolerance(op, x, y, batch, zRef, seed);
            // The signed sqrt amplifies float32 errors in z: the bound is 10× a float64 baseline fed
            // z with float32-level noise (io.bifuse.testing.CompactBilinearTolerance explains), and never below 1e-5.
            double tol = gRef == null ? Double.NaN : io.bifuse.testing.CompactBilinearTolerance.backwardTolerance(op, x, y, g, batch, gRef, seed);
            for (Variant v : Variant.values()) {
                try (CompactBilinearCuda cuda = v.open(op)) {
                    if (v.duplicates(cuda)) continue;
                    float[][] out = io.bifuse.testing.CompactBilinearTolerance.run(ctx, cuda, x, y, g, batch);
                    String what = v.describe(cuda) + " " + n + " B=" + batch + " seed " + seed;
                    assertBelow(Stats.relativeL2(out[0], zRef), fwdTol, what + " forward");
                    if (gRef == null) continue; // exact ssqrt derivative on a sparse sketch: not comparable
                    assertBelow(L2Terms.error(out[1], gRef[0], gScale[0]), tol, what + " dx");
                    assertBelow(L2Terms.error(out[2], gRef[1], gScale[1]), tol, what + " dy");
                }
            }
        }
    }

    /**
     * The normalization branches the presets leave out ({@link NormalizationBranches}), end to end as
     * {@link #matchesReference} checks them, and every non-identity normalization against the float64
     * reference evaluated at the device's own pooled z, as the retired replay harness did. That z is the
     * identity op's output: the same gather sketches, R2C, spectral product and C2R that the normalized
     * op's backward runs into its workspace, so the same bits. There the signed sqrt's amplification of
     * z's float32 error is gone from the comparison, and the forward and both gradients are held to 1e-5
     * (a float32 normalization of exact-given z and an FFT backward: ~1e-7; a wrong branch, eps or
     * projection: O(1)), the exact-derivative rows included, which end to end are not comparable on a
     * sparse sketch. Sample 0's x is scaled by 1/4 so that the rows' norms straddle the clamp's eps.
     * Small sizes: d = 1 with B = 1, d odd and prime, Dx·Dy below 16·d (sparse) and above.
     */
    @ParameterizedTest(name = "B={0} Dx={1} Dy={2} d={3}")
    @CsvSource({"1,1,1,1", "1,64,48,100", "4,33,20,31", "3,40,30,97", "2,256,200,1000"})
    void everyNormalizationBranchAlsoAtTheDevicesOwnZ(int batch, int dx, int dy, int d) {
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        CompactBilinear plain = CompactBilinear.seeded(dx, dy, d, r.nextLong());
        float[] x = Stats.gaussian(r, batch * dx), y = Stats.gaussian(r, batch * dy), g = Stats.gaussian(r, batch * d);
        if (batch > 1) for (int i = 0; i < dx; i++) x[i] *= 0.25f;
        double[] xd = CompactBilinearReference.toDouble(x), yd = CompactBilinearReference.toDouble(y), gd = CompactBilinearReference.toDouble(g);
        double[] zRef = CompactBilinearReference.pooled(plain, xd, yd, batch);
        float[] zDev;
        try (CompactBilinearCuda cuda = new CompactBilinearCuda(plain, ctx, CompactBilinearCuda.Sketch.DETERMINISTIC)) {
            zDev = io.bifuse.testing.CompactBilinearTolerance.run(ctx, cuda, x, y, g, batch)[0];
        }
        assertBelow(Stats.relativeL2(zDev, zRef), "pooled z, seed " + seed);
        double[] zOwn = NormalizationBranches.toDouble(zDev);
        for (Normalization n : NormalizationBranches.all(zRef, batch, d)) {
            CompactBilinear op = plain.withNormalization(n);
            double[] outRef = CompactBilinearReference.forward(op, xd, yd, batch);
            boolean comparable = io.bifuse.testing.CompactBilinearTolerance.backwardComparable(n, dx, dy, d);
            double[][] gRef = comparable ? CompactBilinearReference.backward(op, xd, yd, gd, batch) : null;
            double[][] gScale = comparable ? backwardScale(op, x, y, g, batch) : null;
            // End to end: the bounds of matchesReference, for the same reasons.
            double fwdTol = io.bifuse.testing.CompactBilinearTolerance.forwardTolerance(op, x, y, batch, outRef, seed);
            double bwdTol = comparable ? io.bifuse.testing.CompactBilinearTolerance.backwardTolerance(op, x, y, g, batch, gRef, seed) : Double.NaN;
            double[] outOwn = NormalizationBranches.forwardAt(n, zOwn, batch, d);
            double[][] gOwn = CompactBilinearReference.backwardFromPooled(op, xd, yd, zOwn, gd, batch);
            double[][] sOwn = CompactBilinearReference.backwardFromPooled(op.withNormalization(L2Terms.withoutL2(n)), xd, yd, zOwn,
                    CompactBilinearReference.toDouble(L2Terms.scaledGradOut(n, zOwn, g, batch, d)), batch);
            for (Variant v : Variant.values()) {
                try (CompactBilinearCuda cuda = v.open(op)) {
                    if (v.duplicates(cuda)) continue;
                    float[][] out = io.bifuse.testing.CompactBilinearTolerance.run(ctx, cuda, x, y, g, batch);
                    String what = v.describe(cuda) + " " + NormalizationBranches.describe(n) + " B=" + batch + " seed " + seed;
                    assertBelow(Stats.relativeL2(out[0], outRef), fwdTol, what + " forward");
                    assertTrue(NormalizationBranches.allFinite(out[1]) && NormalizationBranches.allFinite(out[2]), what + ": a gradient is not finite");
                    if (comparable) {
                        assertBelow(L2Terms.error(out[1], gRef[0], gScale[0]), bwdTol, what + " dx");
                        assertBelow(L2Terms.error(out[2], gRef[1], gScale[1]), bwdTol, what + " dy");
                    }
                    // The atomic sketch sums in no fixed order, and the other path runs other FFTs: only
                    // the path that pooled zDev gives its bits.
                    if (v.sketch != CompactBilinearCuda.Sketch.DETERMINISTIC || v != Variant.DEFAULT) continue;
                    assertBelow(Stats.relativeL2(out[0], outOwn), what + " forward at the device's z");
                    assertBelow(L2Terms.error(out[1], gOwn[0], sOwn[0]), what + " dx at the device's z");
                    assertBelow(L2Terms.error(out[2], gOwn[1], sOwn[1]), what + " dy at the device's z");
                }
            }
        }
    }

    /**
     * Every path each case runs: the default (the fused kernels where they apply), the pipeline with the
     * deterministic sketch (the cross-check, and the path of every other d), and with the atomic one.
     */
    enum Variant {
        DEFAULT(CompactBilinearCuda.Sketch.DETERMINISTIC, CompactBilinearCuda.Path.AUTO),
        PIPELINE(CompactBilinearCuda.Sketch.DETERMINISTIC, CompactBilinearCuda.Path.PIPELINE),
        ATOMIC(CompactBilinearCuda.Sketch.ATOMIC, CompactBilinearCuda.Path.PIPELINE);

        final CompactBilinearCuda.Sketch sketch;
        final CompactBilinearCuda.Path path;

        Variant(CompactBilinearCuda.Sketch sketch, CompactBilinearCuda.Path path) {
            this.sketch = sketch;
            this.path = path;
        }

        CompactBilinearCuda open(CompactBilinear op) { return new CompactBilinearCuda(op, ctx, sketch, path); }

        /** The default where it takes the pipeline for both directions: PIPELINE runs that already. */
        boolean duplicates(CompactBilinearCuda c) {
            return this == DEFAULT && c.forwardPath() == CompactBilinearCuda.Path.PIPELINE && c.backwardPath() == CompactBilinearCuda.Path.PIPELINE;
        }

        String describe(CompactBilinearCuda c) {
            return sketch + " forward " + c.forwardPath() + " backward " + c.backwardPath();
        }
    }

    /**
     * Which d take the fused kernels: 7-smooth ones that fit the shared memory, per direction (d = 20000
     * fits the forward's 160 KB but not the backward's 240 KB); FUSED is refused, by name and before
     * anything is allocated, for the others and with the atomic sketch.
     */
    @Test void fusedPathWhereItApplies() {
        int[][] cases = { // d, forward fused, backward fused
            {16000, 1, 1}, {6300, 1, 1}, {15625, 1, 1}, {2, 1, 1}, {20000, 1, 0}, {15838, 0, 0}, {16001, 0, 0}, {1, 0, 0}, {40000, 0, 0}};
        for (int[] c : cases) {
            CompactBilinear op = CompactBilinear.seeded(3, 2, c[0], 1);
            try (CompactBilinearCuda cuda = new CompactBilinearCuda(op, ctx)) {
                assertEquals(c[1] == 1 ? CompactBilinearCuda.Path.FUSED : CompactBilinearCuda.Path.PIPELINE, cuda.forwardPath(), "d = " + c[0]);
                assertEquals(c[2] == 1 ? CompactBilinearCuda.Path.FUSED : CompactBilinearCuda.Path.PIPELINE, cuda.backwardPath(), "d = " + c[0]);
            }
            if (c[1] == 0 || c[2] == 0) {
                long free = ctx.memoryInfo()[0];
                expect("path: FUSED cannot take d = " + c[0],
                        () -> new CompactBilinearCuda(op, ctx, CompactBilinearCuda.Sketch.DETERMINISTIC, CompactBilinearCuda.Path.FUSED));
                assertEquals(free, ctx.memoryInfo()[0], "a refused op allocated device memory");
            }
        }
        expect("path: FUSED cannot take d = 15838: a prime factor above 7 (d = 2·7919)", () -> new CompactBilinearCuda(
                CompactBilinear.seeded(3, 2, 15838, 1), ctx, CompactBilinearCuda.Sketch.DETERMINISTIC, CompactBilinearCuda.Path.FUSED));
        expect("sketch: the fused path sketches deterministically", () -> new CompactBilinearCuda(CompactBilinear.seeded(3, 2, 16000, 1), ctx,
                CompactBilinearCuda.Sketch.ATOMIC, CompactBilinearCuda.Path.FUSED));
        expect("path: expected AUTO, FUSED or PIPELINE, got null", () -> new CompactBilinearCuda(CompactBilinear.seeded(3, 2, 16000, 1), ctx,
                CompactBilinearCuda.Sketch.DETERMINISTIC, null));
        try (CompactBilinearCuda atomic = new CompactBilinearCuda(CompactBilinear.seeded(3, 2, 16000, 1), ctx, CompactBilinearCuda.Sketch.ATOMIC)) {
            assertEquals(CompactBilinearCuda.Path.PIPELINE, atomic.forwardPath(), "ATOMIC under AUTO takes the pipeline");
        }
    }

    /**
     * The normalization kernels launched directly, as the replay harness did, with what
     * CompactBilinearCuda never does: a grid smaller than the rows (it launches one block per row up to
     * 65535, so the grid-stride loop runs only past B = 65535), and in place (the kernels document that
     * {@code out} may alias {@code z} and {@code gz} may alias {@code g}). Against the float64
     * normalization of the same float z: relative L2 1e-5 (float32 arithmetic on given z, double sums:
     * ~1e-7; a skipped or repeated row: O(1)); striding and aliasing must not change a bit.
     */
    @Test void normalizeKernelsStrideOverRowsAndRunInPlace() {
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        // rows > grid with d > block (both loops iterate), and d < block (idle threads in the reduction).
        int[][] shapes = {{5, 300, 2}, {3, 7, 2}};
        try (CudaStream s = CudaStream.create(ctx)) {
            for (int[] shape : shapes) {
                int rows = shape[0], d = shape[1], grid = shape[2];
                float[] z = Stats.gaussian(r, rows * d), g = Stats.gaussian(r, rows * d);
                double[] zd = NormalizationBranches.toDouble(z), gd = NormalizationBranches.toDouble(g);
                for (Normalization n : NormalizationBranches.all(zd, rows, d)) {
                    String what = NormalizationBranches.describe(n) + " rows=" + rows + " d=" + d + " seed " + seed;
                    float[][] strided = normalizeKernels(s, n, z, g, rows, d, grid, false);
                    float[][] perRow = normalizeKernels(s, n, z, g, rows, d, rows, false);
                    float[][] inPlace = normalizeKernels(s, n, z, g, rows, d, grid, true);
                    double[] gzRef = new double[rows * d];
                    for (int b = 0; b < rows; b++) io.bifuse.reference.NormalizationReference.backward(n, zd, gd, b * d, d, gzRef);
                    assertBelow(Stats.relativeL2(strided[0], NormalizationBranches.forwardAt(n, zd, rows, d)), what + " forward");
                    assertBelow(Stats.relativeL2(strided[1], gzRef), what + " backward");
                    for (int i = 0; i < 2; i++) {
                        assertArrayEquals(perRow[i], strided[i], what + (i == 0 ? " forward" : " backward") + ": grid " + grid + " vs one block per row");
                        assertArrayEquals(strided[i], inPlace[i], what + (i == 0 ? " forward" : " backward") + ": in place vs out of place");
                    }
                }
            }
        }
    }

    /** {@code {out, gz}} of the two normalize kernels on {@code grid} blocks; in place: out over z, gz over g. Outputs NaN-poisoned first. */
    private static float[][] normalizeKernels(CudaStream s, Normalization n, float[] z, float[] g, int rows, int d, int grid, boolean inPlace) {
        int ss = n.signedSqrt() ? 1 : 0;
        try (DeviceBuffer dz = DeviceBuffer.of(ctx, z); DeviceBuffer dg = DeviceBuffer.of(ctx, g);
             DeviceBuffer out = DeviceBuffer.allocateFloats(ctx, (long) rows * d); DeviceBuffer gz = DeviceBuffer.allocateFloats(ctx, (long) rows * d)) {
            out.fill(Float.NaN);
            gz.fill(Float.NaN);
            // The backward first: in place, the forward then overwrites the z it reads.
            ctx.launch(CompactBilinearCuda.NORMALIZE_BACKWARD, grid, 1, 256, 0, s, dz, dg, inPlace ? dg : gz, rows, d, ss,
                    n.signedSqrtGradEps(), n.l2().code(), n.l2Eps());
            ctx.launch(CompactBilinearCuda.NORMALIZE_FORWARD, grid, 1, 256, 0, s, dz, inPlace ? dz : out, rows, d, ss, n.l2().code(), n.l2Eps());
            float[] o = new float[rows * d], b = new float[rows * d];
            (inPlace ? dz : out).read(o, s);
            (inPlace ? dg : gz).read(b, s);
            return new float[][] {o, b};
        }
    }

    /**
     * block.bootstrap's MCB (no normalization, then linear_out and activ_output) on each path, every output
     * and gradient buffer NaN-poisoned first: forward and every gradient at {@link FusionCudaChecks}'s bound
     * ({@code max(1e-5, 4·e_cpu)} per tensor, raised by the conditioning rule); the host conveniences give the same bits.
     */
    @ParameterizedTest(name = "B={0} Dx={1} Dy={2} d={3} out={4} {5}")
    @CsvSource({"1,5,7,16,3,RELU", "3,40,30,31,7,TANH", "2,300,200,1000,20,SIGMOID", "2,64,64,16000,10,NONE"})
    void withBlockBootstrapsOutputLayer(int batch, int dx, int dy, int d, int out, io.bifuse.Activation act) {
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        CompactBilinear op = CompactBilinear.seeded(dx, dy, d, r.nextLong()).withOutput(io.bifuse.Linear.random(out, d, true, r.nextLong()), act);
        float[] x = Stats.gaussian(r, batch * dx), y = Stats.gaussian(r, batch * dy), g = Stats.gaussian(r, batch * out);
        FusionCudaChecks.Reference ref = (px, py, pg) -> FusionCudaChecks.joined(CompactBilinearReference.forward(op, px, py, batch),
                List.of(CompactBilinearReference.backward(op, px, py, pg, batch)));
        List<double[]> want = ref.tensors(x, y, g);
        io.bifuse.cpu.CompactBilinearCpu onCpu = new io.bifuse.cpu.CompactBilinearCpu(op);
        List<float[]> cpu = new java.util.ArrayList<>(List.of(onCpu.forward(x, y, batch)));
        cpu.addAll(onCpu.backward(x, y, g, batch).tensors());
        for (CompactBilinearCuda.Path path : CompactBilinearCuda.Path.values()) {
            if (path == CompactBilinearCuda.Path.FUSED && !SharedMemoryFft.supports(d)) continue;
            try (CompactBilinearCuda cuda = new CompactBilinearCuda(op, ctx, CompactBilinearCuda.Sketch.DETERMINISTIC, path)) {
                String what = op + " " + path + " B=" + batch + " seed " + seed;
                List<float[]> got = runWithOutput(cuda, x, y, g, batch);
                // max(1e-5, 4 × the float32 CPU path's error), raised by the conditioning rule: with few outputs
                // the layer's sums over d can cancel (seen: 8.0e-5 forward at B = 1, d = 16, 3 outputs, relu)
                FusionCudaChecks.assertMatches(what, got, cpu, want, op.gradientNames(), ref, x, y, g, Math.max(d, Math.max(dx, dy)), seed);
                assertArrayEquals(got.get(0), cuda.forward(x, y, batch), what + " host forward");
                List<float[]> host = cuda.backward(x, y, g, batch).tensors();
                for (int t = 0; t < host.size(); t++) assertArrayEquals(got.get(t + 1), host.get(t), what + " host " + op.gradientNames().get(t));
            }
        }
    }

    /** {@code [out, dx, dy, dW, db]} of an op with an output layer, every buffer NaN-poisoned before the run. */
    private static List<float[]> runWithOutput(CompactBilinearCuda cuda, float[] x, float[] y, float[] g, int batch) {
        return List.of(io.bifuse.testing.CompactBilinearTolerance.run(ctx, cuda, x, y, g, batch));
    }

    /** block.bootstrap's MCB module through the safetensors fixtures, on the device. */
    @ParameterizedTest(name = "{0}")
    @CsvSource({"mcb-default,RELU", "mcb-odd-tanh,TANH"})
    void matchesBlockBootstrapsModule(String stem, io.bifuse.Activation act, @org.junit.jupiter.api.io.TempDir java.nio.file.Path dir) throws java.io.IOException {
        try (io.bifuse.StateDict sd = io.bifuse.testing.Fixtures.open(dir, stem)) {
            CompactBilinear op = CompactBilinear.fromStateDict(sd, "", act);
            int batch = io.bifuse.testing.FusionChecks.batch(sd);
            try (CompactBilinearCuda cuda = new CompactBilinearCuda(op, ctx)) {
                List<float[]> got = runWithOutput(cuda, sd.floats("input.0"), sd.floats("input.1"), sd.floats("grad_out"), batch);
                io.bifuse.testing.FusionChecks.assertMatchesFixture(sd, stem + " (device)", got.get(0), got.subList(1, got.size()), op.gradientNames(), TOL);
            }
        }
    }

    @Test void theBackwardFormMustMatchTheOutputLayer() {
        CompactBilinear plain = CompactBilinear.seeded(4, 3, 8, 1), withOut = plain.withOutput(io.bifuse.Linear.random(2, 8, false, 2), io.bifuse.Activation.RELU);
        try (CompactBilinearCuda a = new CompactBilinearCuda(plain, ctx); CompactBilinearCuda b = new CompactBilinearCuda(withOut, ctx);
             CudaStream st = CudaStream.create(ctx); DeviceBuffer any = DeviceBuffer.allocateFloats(ctx, 64)) {
            expect("gradW: this op has no output layer", () -> a.backward(any, any, any, any, any, any, null, 1, st));
            expect("gradW: this op has an output layer", () -> b.backward(any, any, any, any, any, 1, st));
            expect("gradB: expected null (the output layer has no bias)", () -> b.backward(any, any, any, any, any, any, any, 1, st));
        }
    }

    @Test void deterministicSketchIsBitIdenticalAcrossRuns() {
        SplittableRandom r = new SplittableRandom(1);
        CompactBilinear op = CompactBilinear.seeded(2048, 2048, 16000, 3).withNormalization(Normalization.pytorch());
        int batch = SimSizes.batch(64);
        float[] x = Stats.gaussian(r, batch * 2048), y = Stats.gaussian(r, batch * 2048), g = Stats.gaussian(r, batch * 16000);
        try (CompactBilinearCuda cuda = new CompactBilinearCuda(op, ctx)) {
            float[][] a = io.bifuse.testing.CompactBilinearTolerance.run(ctx, cuda, x, y, g, batch);
            float[][] b = io.bifuse.testing.CompactBilinearTolerance.run(ctx, cuda, x, y, g, batch);
            for (int i = 0; i < 3; i++) assertArrayEquals(a[i], b[i]);
        }
    }

    @Test void runsOnAStreamAndMemoryFromOutside() {
        // Another library's allocation and stream, reached only through raw addresses and handles; the
        // output deliberately starts 4 bytes into its allocation (not 256-byte aligned).
        int batch = 8, dx = 300, dy = 200, d = 1000;
        SplittableRandom r = new SplittableRandom(2);
        CompactBilinear op = CompactBilinear.seeded(dx, dy, d, 4);
        float[] x = Stats.gaussian(r, batch * dx), y = Stats.gaussian(r, batch * dy), g = Stats.gaussian(r, batch * d);
        ctx.makeCurrent();
        ForeignStream foreign = new ForeignStream();
        assertEquals(0, JCudaDriver.cuStreamCreate(foreign, 1 /* CU_STREAM_NON_BLOCKING */));
        long rawStream = foreign.handle();
        try (DeviceBuffer arena = DeviceBuffer.allocate(ctx, 4L * (batch * (dx + dy + d + dx + dy) + 64));
             CompactBilinearCuda cuda = new CompactBilinearCuda(op, ctx)) {
            arena.fill(Float.NaN);
            long base = arena.address();
            DeviceMemory dX = DeviceMemory.wrap(base + 4, 4L * batch * dx);
            DeviceMemory dY = DeviceMemory.wrap(base + 4 + 4L * batch * dx, 4L * batch * dy);
            DeviceMemory dZ = DeviceMemory.wrap(base + 4 + 4L * batch * (dx + dy), 4L * batch * d);
            DeviceMemory dGx = DeviceMemory.wrap(base + 4 + 4L * batch * (dx + dy + d), 4L * batch * dx);
            DeviceMemory dGy = DeviceMemory.wrap(base + 4 + 4L * batch * (2 * dx + dy + d), 4L * batch * dy);
            upload(dX, x);
            upload(dY, y);
            CudaStream s = CudaStream.wrap(rawStream);
            cuda.forward(dX, dY, dZ, batch, s);
            float[] z = download(dZ, batch * d, s);
            assertBelow(Stats.relativeL2(z, CompactBilinearReference.forward(op, x, y, batch)), "foreign forward");
            upload(dZ, g); // reuse the output range as gradOut
            cuda.backward(dX, dY, dZ, dGx, dGy, batch, s);
            double[][] ref = CompactBilinearReference.backward(op, x, y, g, batch);
            assertBelow(Stats.relativeL2(download(dGx, batch * dx, s), ref[0]), "foreign dx");
            assertBelow(Stats.relativeL2(download(dGy, batch * dy, s), ref[1]), "foreign dy");
            cuda.release(s);
        } finally {
            JCudaDriver.cuStreamDestroy(foreign);
        }
    }

    @Test void repeatedCallsLeaveDeviceMemoryUnchanged() {
        int batch = SimSizes.batch(64), calls = SANITIZE ? 10 : SimSizes.repeats(200);
        SplittableRandom r = new SplittableRandom(5);
        CompactBilinear op = CompactBilinear.seeded(2048, 2048, 16000, 6).withNormalization(Normalization.pytorch());
        try (CudaStream s = CudaStream.create(ctx); CompactBilinearCuda cuda = new CompactBilinearCuda(op, ctx);
             DeviceBuffer x = DeviceBuffer.of(ctx, Stats.gaussian(r, batch * 2048)); DeviceBuffer y = DeviceBuffer.of(ctx, Stats.gaussian(r, batch * 2048));
             DeviceBuffer g = DeviceBuffer.of(ctx, Stats.gaussian(r, batch * 16000));
             DeviceBuffer z = DeviceBuffer.allocateFloats(ctx, batch * 16000L);
             DeviceBuffer gx = DeviceBuffer.allocateFloats(ctx, batch * 2048L); DeviceBuffer gy = DeviceBuffer.allocateFloats(ctx, batch * 2048L)) {
            cuda.forward(x, y, z, batch, s);
            cuda.backward(x, y, g, gx, gy, batch, s);
            s.synchronize();
            long free0 = ctx.memoryInfo()[0], held0 = cuda.deviceBytes();
            for (int i = 0; i < calls; i++) {
                cuda.forward(x, y, z, batch, s);
                cuda.backward(x, y, g, gx, gy, batch, s);
            }
            s.synchronize();
            assertEquals(free0, ctx.memoryInfo()[0], "free device memory changed over " + calls + " calls");
            assertEquals(held0, cuda.deviceBytes());
        }
    }

    @Test void manyThreadsShareOneOp() throws Exception {
        int batch = 16, threads = 6;
        CompactBilinear op = CompactBilinear.seeded(512, 256, 4000, 7).withNormalization(Normalization.pytorch());
        SplittableRandom r = new SplittableRandom(8);
        List<float[]> xs = new ArrayList<>(), ys = new ArrayList<>();
        for (int t = 0; t < threads; t++) { xs.add(Stats.gaussian(r, batch * 512)); ys.add(Stats.gaussian(r, batch * 256)); }
        ExecutorService pool = Executors.newFixedThreadPool(threads);
        try (CompactBilinearCuda cuda = new CompactBilinearCuda(op, ctx)) {
            List<Future<float[]>> fs = new ArrayList<>();
            for (int t = 0; t < threads; t++) {
                int i = t;
                fs.add(pool.submit(() -> {
                    float[] z = null;
                    for (int k = 0; k < 20; k++) z = cuda.forward(xs.get(i), ys.get(i), batch);
                    return z;
                }));
            }
            for (int t = 0; t < threads; t++) {
                assertBelow(Stats.relativeL2(fs.get(t).get(), CompactBilinearReference.forward(op, xs.get(t), ys.get(t), batch)), "thread " + t);
            }
        } finally {
            pool.shutdownNow();
        }
    }

    @Test void badDeviceArgumentsAreRejectedBeforeAnyLaunch() {
        CompactBilinear op = CompactBilinear.seeded(8, 4, 16, 1);
        try (CudaStream s = CudaStream.create(ctx); CompactBilinearCuda cuda = new CompactBilinearCuda(op, ctx);
             DeviceBuffer x = DeviceBuffer.allocateFloats(ctx, 16); DeviceBuffer y = DeviceBuffer.allocateFloats(ctx, 8);
             DeviceBuffer z = DeviceBuffer.allocateFloats(ctx, 32)) {
            DeviceBuffer closed = DeviceBuffer.allocateFloats(ctx, 16);
            closed.close();
            expect("x: the device buffer is closed", () -> cuda.forward(closed, y, z, 2, s));
            expect("y: expected at least 3 × 4 floats (48 bytes), got 32 bytes", () -> cuda.forward(DeviceMemory.wrap(x.address(), 96), y, z, 3, s));
            expect("out: expected device memory", () -> cuda.forward(x, y, null, 2, s));
            expect("batch: expected >= 1, got 0", () -> cuda.forward(x, y, z, 0, s));
            expect("gradY: expected at least 2 × 4 floats", () -> cuda.backward(x, y, z, x, DeviceMemory.wrap(y.address(), 8), 2, s));
            expect("out: expected a 4-byte aligned address", () -> cuda.forward(x, y, DeviceMemory.wrap(z.address() + 2, 128), 2, s));
        }
    }

    /** The backward's error scale of {@link L2Terms}: the reference backward without the l2 projection term. */
    static double[][] backwardScale(CompactBilinear op, float[] x, float[] y, float[] g, int batch) {
        Normalization n = op.normalization();
        if (n.l2() == Normalization.L2.NONE) return CompactBilinearReference.backward(op, x, y, g, batch);
        double[] z = CompactBilinearReference.pooled(op, CompactBilinearReference.toDouble(x), CompactBilinearReference.toDouble(y), batch);
        return CompactBilinearReference.backward(op.withNormalization(L2Terms.withoutL2(n)), x, y, L2Terms.scaledGradOut(n, z, g, batch, op.d()), batch);
    }

    /** Stands in for another library's stream: all we take from it is the raw handle. */
    private static final class ForeignStream extends CUstream {
        long handle() { return getNativePointer(); }
    }

    private static void expect(String message, Runnable call) {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, call::run);
        assertTrue(e.getMessage().contains(message), "'" + e.getMessage() + "' lacks '" + message + "'");
    }

    private static void assertBelow(double err, String what) { assertBelow(err, TOL, what); }

    private static void assertBelow(double err, double tol, String what) {
        assertTrue(err <= tol, what + ": relative L2 error " + err + " > " + tol);
    }

    private static void upload(DeviceMemory m, float[] data) {
        assertEquals(0, JCudaDriver.cuMemcpyHtoD(DeviceBuffer.devicePointer(m), jcuda.Pointer.to(data), 4L * data.length));
        assertEquals(0, JCudaDriver.cuCtxSynchronize()); // the foreign stream is non-blocking
    }

    private static float[] download(DeviceMemory m, int n, CudaStream s) {
        s.synchronize();
        float[] out = new float[n];
        assertEquals(0, JCudaDriver.cuMemcpyDtoH(jcuda.Pointer.to(out), DeviceBuffer.devicePointer(m), 4L * n));
        return out;
    }

    /**
     * This op's instance of the {@link DeviceOpContractTest} testbed: the one op that needs cuFFT (so its
     * subject is skipped where cuFFT, not cuBLAS, is missing) and has no GEMM, so it runs in FP32 only; the
     * PyTorch normalization puts the signed square root and the L2 step under the contract too.
     */
    static Subject contractSubject(SplittableRandom r) {
        CompactBilinear op = CompactBilinear.seeded(24, 20, 64, r.nextLong()).withNormalization(Normalization.pytorch());
        int b = 3;
        float[] x = gaussian(r, b * 24), y = gaussian(r, b * 20), g = gaussian(r, b * 64);
        DeviceForm dev = new DeviceForm()
                .call(F, (o, a) -> ((CompactBilinearCuda) o).forward(a.m("x"), a.m("y"), a.m("out"), a.n("batch"), a.stream()))
                .call(B, (o, a) -> ((CompactBilinearCuda) o).backward(a.m("x"), a.m("y"), a.m("gradOut"), a.m("gradX"), a.m("gradY"), a.n("batch"),
                        a.stream()))
                .size("batch", b).in("x", x, F, B).in("y", y, F, B).in("gradOut", g, B)
                .out("out", b * 64, F).out("gradX", b * 24, B).out("gradY", b * 20, B);
        return new Subject("CompactBilinear", true, false, (c, p) -> new CompactBilinearCuda(op, c), new CompactBilinearCpu(op), be -> {
            CompactBilinear.Backend m = (CompactBilinear.Backend) be;
            io.bifuse.Gradients gr = m.backward(x, y, g, b);
            return tensors(m.forward(x, y, b), gr.dx(), gr.dy());
        }, dev);
    }
}
