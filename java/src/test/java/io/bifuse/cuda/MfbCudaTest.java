package io.bifuse.cuda;

import static io.bifuse.cuda.DeviceOpContractTest.B;
import static io.bifuse.cuda.DeviceOpContractTest.F;
import static io.bifuse.cuda.DeviceOpContractTest.gaussian;
import static io.bifuse.cuda.DeviceOpContractTest.tensors;
import static org.junit.jupiter.api.Assertions.*;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.bifuse.Activation;
import io.bifuse.Linear;
import io.bifuse.Mfb;
import io.bifuse.Normalization;
import io.bifuse.Precision;
import io.bifuse.cpu.MfbCpu;
import io.bifuse.cuda.DeviceOpContractTest.Args;
import io.bifuse.cuda.DeviceOpContractTest.DeviceForm;
import io.bifuse.cuda.DeviceOpContractTest.Subject;
import io.bifuse.reference.MfbReference;
import io.bifuse.testing.Conditioning;
import io.bifuse.testing.DeviceRuns;
import io.bifuse.testing.Stats;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * {@code cuda/Mfb.cu} + cuBLAS against the float64 reference, at the spec's sizes (B = 512, Dx = 1024,
 * Dy = 2048, o = 1000, k = 5; MFB and MFH with 2 blocks) and at odd small sizes, on fresh random inputs
 * (the seed is in the failure message), every output and gradient buffer NaN-poisoned before the run.
 *
 * <p>Tolerances (forward: relative L2; backward: the largest over dx, dy and every block's weight and
 * bias gradients of {@link MfbReference#maxScaledError}, the relative L2 error except where the l2
 * backward's two terms cancel, e.g. the {@code o = 1} case, whose exact gradient through {@code F.normalize}
 * is 0: there the error is measured against the terms' size). Forward: 1e-5 in FP32 (float32 GEMMs over Dx = 2048 and the fused kernel give ~1e-7),
 * {@link Precision#bound()} in TF32/BF16. Backward: the signed sqrt's derivative {@code 0.5/sqrt|z|}
 * amplifies the float error of z wherever {@code z ≈ 0}, and a sum of k products has a continuous
 * density at 0, so some such entries always exist; as for MCB ({@link io.bifuse.testing.CompactBilinearTolerance}) the bound
 * is {@code max(base, 10 × baseline)}, the baseline being the largest error of the float64 backward fed
 * z with noise {@code σ·rms(z)} over 3 draws: FP32 (base 1e-5) {@code σ = 2⁻²⁴·sqrt(max(Dx, Dy))}, the
 * typical error of a float32 sum of that many products accumulated in sequence, as a GEMM accumulates
 * each output (z's error measures 8e-7 at the spec's widths on the simulated device, whose cuBLAS sums
 * in k order; with the former fixed {@code σ = 1e-7}, one draw, the pytorch case failed at up to 85×
 * its baseline); TF32/BF16 (base = bound) {@code σ = u}, u = bound/4 the mode's unit roundoff. Without
 * normalization that part of the bound is the base itself. Where the forward or the backward still
 * exceeds its bound, the bound becomes {@code max(bound, 2·base)} of {@link Conditioning} (the
 * backward's baseline measured as {@link MfbReference#maxScaledError}): a ReLU that flips under the
 * operand rounding is wrong by its full size (TF32 RELU backward measured at 11× the bound at the
 * spec's widths), and at the smallest widths one rounded {@code x·u + b} that cancels, or the signed
 * sqrt of an entry near 0, takes the forward past the bound (TF32 at 1 × 1: 0.15). Skipped without a GPU.
 *
 * <p>On the simulated device ({@link SimSizes}) the spec-width cases run at B = 3 instead of 512 or 64
 * (the B = 512 rows with pytorch's normalization only, as on a GPU), and the repeated-calls loop 5 times
 * instead of 100.
 */
@Tag("gpu")
class MfbCudaTest extends CublasOpTest {
    /** Above this bound a backward comparison means nothing (the reference's own change exceeds the gradient): finite only. */
    static final double NOT_COMPARABLE = 1.0;

    static final double TOL = 1e-5;

    @ParameterizedTest(name = "B={0} Dx={1} Dy={2} o={3} k={4} blocks={5} {6}")
    @CsvSource({"512,1024,2048,1000,5,1,NONE", "512,1024,2048,1000,5,2,RELU", "64,1024,2048,1000,5,2,TANH",
                "1,1,1,1,1,1,NONE", "3,7,5,3,2,2,RELU", "5,33,17,7,3,3,TANH", "2,300,257,301,1,2,NONE", "7,20,9,3,7,8,RELU"})
    void matchesReference(int specBatch, int dx, int dy, int o, int k, int blocks, Activation act) {
        assumeTrue(!SANITIZE || specBatch <= 64, "under compute-sanitizer only B <= 64");
        int batch = SimSizes.batch(specBatch);
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        for (Normalization n : new Normalization[] {Normalization.NONE, Normalization.pytorch(), Normalization.caffe()}) {
            if (specBatch >= 512 && !n.equals(Normalization.pytorch())) continue; // the reference costs long there; the others run at B = 64
            Mfb op = Mfb.random(dx, dy, o, k, blocks, act, n, r.nextLong());
            float[] x = Stats.gaussian(r, batch * dx), y = Stats.gaussian(r, batch * dy), g = Stats.gaussian(r, batch * op.outputWidth());
            double[] zRef = MfbReference.forward(op, x, y, batch);
            MfbReference.Grads gRef = MfbReference.backward(op, x, y, g, batch), gScale = MfbReference.backwardScale(op, x, y, g, batch);
            for (Precision p : Precision.values()) {
                double base = p == Precision.FP32 ? TOL : p.bound();
                Conditioning cond = conditioning(op, p, x, y, g, batch, zRef, gRef, gScale, seed);
                try (MfbCuda cuda = new MfbCuda(op, ctx, p)) {
                    Object[] out = run(cuda, x, y, g, batch);
                    String what = op + " " + p + " B=" + batch + " seed " + seed;
                    boolean flips = p != Precision.FP32 && act == Activation.RELU && (Math.min(dx, Math.min(dy, o)) < 8 || batch < 8);
                    double e = flips && n.l2() != Normalization.L2.NONE
                            ? errorAwayFromDeadRows((float[]) out[0], zRef, batch * blocks, o, what)
                            : Stats.relativeL2((float[]) out[0], zRef);
                    assertBelow(e, cond.bound(0, base, e), what + " forward");
                    e = MfbReference.maxScaledError(op, (Mfb.Gradients) out[1], gRef, gScale);
                    if (flips) {
                        // MFH with ReLU at a handful of units in TF32 / BF16: one rounded pre-activation
                        // flipping across 0 moves a gradient by more than its own size, and 8 perturbation
                        // draws do not always reproduce the flip (seen: 19.9 against 0.79 on the
                        // simulated device). The same with few samples (the simulated device's B = 3 for
                        // the spec's 512): a weight gradient sums over only B samples, so a flip is not
                        // averaged away (seen: BF16 20.0 against 5.1 at the spec's widths, B = 3). FP32
                        // checks these cases' indexing; TF32 / BF16 gradients are compared at the wider
                        // sizes and, on a GPU, at B = 512. Here: every gradient written and finite.
                        assertTrue(Double.isFinite(e), what + " backward: " + e);
                        continue;
                    }
                    double bwdTol = e <= base ? base : backwardTolerance(op, p, x, y, g, batch, gRef, gScale, seed);
                    double bound = cond.bound(1, bwdTol, e);
                    if (bound > NOT_COMPARABLE) {
                        // The reference itself moves by more than the gradient's size when its operands
                        // carry this precision's rounding (the exact ssqrt derivative at z near 0 in BF16:
                        // bounds of 13 measured, and a device at 15.5 once): no pipeline in this precision
                        // resolves these gradients, so only require them written and finite.
                        assertTrue(Double.isFinite(e), what + " backward: " + e);
                        continue;
                    }
                    assertBelow(e, bound, what + " backward");
                }
            }
        }
    }

    /**
     * block.bootstrap's output layer (linear_out, activ_output) after MFB and MFH, FP32, each normalization,
     * with {@link #matchesReference}'s bounds (the output layer's gradients included in the backward's).
     */
    @ParameterizedTest(name = "B={0} Dx={1} Dy={2} o={3} k={4} blocks={5} {6} out={7} {8}")
    @CsvSource({"3,7,5,3,2,1,RELU,4,RELU", "5,33,17,7,3,2,TANH,9,SIGMOID", "2,30,25,31,2,2,RELU,300,TANH", "4,12,10,37,5,1,NONE,3,NONE"})
    void withBlockBootstrapsOutputLayer(int batch, int dx, int dy, int o, int k, int blocks, Activation act, int outWidth, Activation outAct) {
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        for (Normalization n : new Normalization[] {Normalization.NONE, Normalization.pytorch(), Normalization.caffe()}) {
            Mfb op = Mfb.random(dx, dy, o, k, blocks, act, n, r.nextLong()).withOutput(Linear.random(outWidth, blocks * o, true, r.nextLong()), outAct);
            float[] x = Stats.gaussian(r, batch * dx), y = Stats.gaussian(r, batch * dy), g = Stats.gaussian(r, batch * op.outputWidth());
            double[] zRef = MfbReference.forward(op, x, y, batch);
            MfbReference.Grads gRef = MfbReference.backward(op, x, y, g, batch), gScale = MfbReference.backwardScale(op, x, y, g, batch);
            Conditioning cond = conditioning(op, Precision.FP32, x, y, g, batch, zRef, gRef, gScale, seed);
            try (MfbCuda cuda = new MfbCuda(op, ctx, Precision.FP32)) {
                Object[] out = run(cuda, x, y, g, batch);
                String what = op + " B=" + batch + " seed " + seed;
                double e = Stats.relativeL2((float[]) out[0], zRef);
                double tf = e <= TOL ? TOL : io.bifuse.testing.MfbTolerance.forwardTolerance(op, Precision.FP32, x, y, batch, zRef, seed);
                assertBelow(e, cond.bound(0, tf, e), what + " forward");
                Mfb.Gradients got = (Mfb.Gradients) out[1];
                assertEquals(op.gradientNames().size(), got.tensors().size(), what);
                e = MfbReference.maxScaledError(op, got, gRef, gScale);
                double bwdTol = e <= TOL ? TOL : backwardTolerance(op, Precision.FP32, x, y, g, batch, gRef, gScale, seed);
                double bound = cond.bound(1, bwdTol, e);
                System.out.printf("MfbCuda %s: forward %.2e, backward %.2e (bound %.2e)%n", what, Stats.relativeL2((float[]) out[0], zRef), e, bound);
                assertBelow(e, bound, what + " backward");
                // The host conveniences run the same launches: bitwise the device-memory result.
                assertArrayEquals((float[]) out[0], cuda.forward(x, y, batch), what + " host forward");
                assertArrayEquals(got.linearOut().weight(), cuda.backward(x, y, g, batch).linearOut().weight(), what + " host backward");
            }
        }
    }

    /** block.bootstrap's MFB and MFH modules through the safetensors fixtures, on the device. */
    @ParameterizedTest(name = "{0}")
    @CsvSource({"mfb-default,RELU,RELU", "mfb-factor3-normalized,TANH,TANH", "mfh-default,RELU,RELU", "mfh-normalized,TANH,SIGMOID"})
    void matchesBlockBootstrapsModule(String stem, Activation in, Activation outAct, @org.junit.jupiter.api.io.TempDir java.nio.file.Path dir)
            throws java.io.IOException {
        try (io.bifuse.StateDict sd = io.bifuse.testing.Fixtures.open(dir, stem)) {
            Mfb op = Mfb.fromStateDict(sd, "", in, outAct, io.bifuse.testing.Fixtures.flag(sd, "normalize"));
            int batch = io.bifuse.testing.FusionChecks.batch(sd);
            try (MfbCuda cuda = new MfbCuda(op, ctx, Precision.FP32)) {
                Object[] run = run(cuda, sd.floats("input.0"), sd.floats("input.1"), sd.floats("grad_out"), batch);
                io.bifuse.testing.FusionChecks.assertMatchesFixture(sd, stem + " (device)", (float[]) run[0], ((Mfb.Gradients) run[1]).tensors(),
                        op.gradientNames(), 1e-5);
            }
        }
    }

    @Test void refusesGradientBuffersThatDoNotFitTheOutputLayer() {
        Mfb plain = Mfb.random(6, 5, 3, 2, 1, Activation.RELU, Normalization.NONE, 3);
        Mfb withOut = plain.withOutput(Linear.random(4, 3, true, 4), Activation.RELU);
        try (MfbCuda a = new MfbCuda(withOut, ctx); MfbCuda b = new MfbCuda(plain, ctx); CudaStream st = CudaStream.create(ctx);
             DeviceBuffer x = DeviceBuffer.allocateFloats(ctx, 12); DeviceBuffer y = DeviceBuffer.allocateFloats(ctx, 10);
             DeviceBuffer g = DeviceBuffer.allocateFloats(ctx, 8); DeviceBuffer any = DeviceBuffer.allocateFloats(ctx, 64)) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> a.backward(x, y, g, new MfbCuda.DeviceGradients(any, any, any, null, any, null), 2, st));
            assertTrue(e.getMessage().startsWith("grads.out"), e.getMessage());
            e = assertThrows(IllegalArgumentException.class,
                    () -> b.backward(x, y, g, new MfbCuda.DeviceGradients(any, any, any, null, any, null, any, null), 2, st));
            assertTrue(e.getMessage().startsWith("grads.out: expected null"), e.getMessage());
            assertEquals(List.of("u[0].weight", "u[0].bias", "v[0].weight", "v[0].bias", "linearOut.weight", "linearOut.bias"), a.weightNames());
        }
    }

    /**
     * The normalization branches the presets leave out ({@link NormalizationBranches}), FP32 end to end
     * with {@link #matchesReference}'s bounds, and every non-identity normalization against the float64
     * reference evaluated at the device's own pooled z, as the retired replay harness did. That z is the
     * identity op's output: mfb_forward pools exactly as mfb_backward pools into its workspace, from the
     * same GEMMs' P and Q, so the same bits. There the signed sqrt no longer amplifies z's rounding and
     * the forward and every gradient ({@link MfbReference#maxScaledError}, the scale taken at that z too)
     * are held to 1e-5 (float32 normalization of given z, GEMMs over at most 16 terms, activations from
     * float P and Q: ~1e-7; a wrong branch, eps or projection: O(1)). A ReLU flipping under P's float32
     * rounding would break that bound; at these ~10³ pre-activations of spread ~1 the chance is ~1e-4
     * per run. The clamp's eps lies between the rows' norms where they differ enough. Sizes: B = 1, MFH
     * with 3 blocks, o > 256 in one block (threads own two groups), prime o with k = 5.
     */
    @ParameterizedTest(name = "B={0} Dx={1} Dy={2} o={3} k={4} blocks={5} {6}")
    @CsvSource({"1,9,4,5,3,2,TANH", "3,8,6,7,3,3,NONE", "2,10,8,260,2,1,TANH", "5,12,10,37,5,2,RELU"})
    void everyNormalizationBranchAlsoAtTheDevicesOwnZ(int batch, int dx, int dy, int o, int k, int blocks, Activation act) {
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        Mfb plain = Mfb.random(dx, dy, o, k, blocks, act, Normalization.NONE, r.nextLong());
        float[] x = Stats.gaussian(r, batch * dx), y = Stats.gaussian(r, batch * dy), g = Stats.gaussian(r, batch * plain.outputWidth());
        double[] xd = MfbReference.toDouble(x), yd = MfbReference.toDouble(y), gd = MfbReference.toDouble(g);
        MfbReference.Params pw = MfbReference.Params.of(plain);
        double[] zRef = MfbReference.pooled(plain, pw, xd, yd, batch);
        int rows = batch * blocks;
        double[] zOwn;
        try (MfbCuda cuda = new MfbCuda(plain, ctx, Precision.FP32)) {
            float[] zDev = (float[]) run(cuda, x, y, g, batch)[0];
            assertBelow(Stats.relativeL2(zDev, zRef), TOL, "pooled z, seed " + seed);
            zOwn = NormalizationBranches.toDouble(zDev);
        }
        for (Normalization n : NormalizationBranches.all(zRef, rows, o)) {
            Mfb op = Mfb.mfh(plain.us(), plain.vs(), k, act, n);
            String what = op + " " + NormalizationBranches.describe(n) + " B=" + batch + " seed " + seed;
            double[] outRef = MfbReference.forward(op, xd, yd, batch);
            MfbReference.Grads gRef = MfbReference.backward(op, x, y, g, batch), gScale = MfbReference.backwardScale(op, x, y, g, batch);
            Conditioning cond = conditioning(op, Precision.FP32, x, y, g, batch, outRef, gRef, gScale, seed);
            double[] outOwn = NormalizationBranches.forwardAt(n, zOwn, rows, o);
            MfbReference.Grads gOwn = MfbReference.backwardFromPooled(op, pw, xd, yd, zOwn, gd, batch);
            Mfb noL2 = Mfb.mfh(plain.us(), plain.vs(), k, act, L2Terms.withoutL2(n));
            MfbReference.Grads sOwn = MfbReference.backwardFromPooled(noL2, pw, xd, yd, zOwn,
                    MfbReference.toDouble(L2Terms.scaledGradOut(n, zOwn, g, rows, o)), batch);
            try (MfbCuda cuda = new MfbCuda(op, ctx, Precision.FP32)) {
                Object[] out = run(cuda, x, y, g, batch);
                Mfb.Gradients got = (Mfb.Gradients) out[1];
                // End to end, as matchesReference.
                double e = Stats.relativeL2((float[]) out[0], outRef);
                assertBelow(e, cond.bound(0, TOL, e), what + " forward");
                e = MfbReference.maxScaledError(op, got, gRef, gScale);
                double bwdTol = e <= TOL ? TOL : backwardTolerance(op, Precision.FP32, x, y, g, batch, gRef, gScale, seed);
                assertBelow(e, cond.bound(1, bwdTol, e), what + " backward");
                assertBelow(Stats.relativeL2((float[]) out[0], outOwn), TOL, what + " forward at the device's z");
                assertBelow(MfbReference.maxScaledError(op, got, gOwn, sOwn), TOL, what + " backward at the device's z");
            }
        }
    }

    /**
     * mfb_forward and mfb_backward launched directly, as the replay harness did, on 2 blocks for 5 rows:
     * MfbCuda launches one block per sample up to 65535, so only there would the grid-stride loop over
     * samples run. Striding must not change a bit of the output, the pooled workspace or ∂L/∂P, ∂L/∂Q,
     * all NaN-poisoned first (a skipped sample stays NaN), for every normalization and activation.
     */
    @Test void fusedKernelsStrideOverSamples() {
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        int rows = 5, n = 2, o = 37, k = 3, w = o * k;
        float[] p = Stats.gaussian(r, rows * n * w), q = Stats.gaussian(r, rows * n * w), bu = Stats.gaussian(r, n * w), bv = Stats.gaussian(r, n * w);
        float[] g = Stats.gaussian(r, rows * n * o);
        // The clamp at eps 1e3, far above these rows' norms (~10), as the harness ran it.
        List<Normalization> norms = List.of(Normalization.NONE, Normalization.pytorch(), Normalization.caffe(), NormalizationBranches.L2_MAX,
                NormalizationBranches.L2_SUM_SQUARES, NormalizationBranches.SSQRT_ONLY, NormalizationBranches.SSQRT_EXACT,
                new Normalization(false, 0f, Normalization.L2.MAX_NORM, 1e3f));
        try (CudaStream s = CudaStream.create(ctx); DeviceBuffer dp = DeviceBuffer.of(ctx, p); DeviceBuffer dq = DeviceBuffer.of(ctx, q);
             DeviceBuffer dbu = DeviceBuffer.of(ctx, bu); DeviceBuffer dbv = DeviceBuffer.of(ctx, bv); DeviceBuffer dg = DeviceBuffer.of(ctx, g)) {
            for (Normalization norm : norms) {
                for (Activation act : Activation.values()) {
                    float[][] strided = fusedKernels(s, dp, dq, dbu, dbv, dg, norm, act, rows, n, o, k, 2);
                    float[][] perRow = fusedKernels(s, dp, dq, dbu, dbv, dg, norm, act, rows, n, o, k, rows);
                    String[] names = {"out", "pooled", "gP", "gQ"};
                    for (int i = 0; i < 4; i++) {
                        if (i == 1 && norm.isIdentity()) continue; // the pooled workspace is only written through a normalization
                        assertArrayEquals(perRow[i], strided[i], NormalizationBranches.describe(norm) + " " + act + " " + names[i]
                                + ": grid 2 vs one block per row, seed " + seed);
                        assertTrue(NormalizationBranches.allFinite(strided[i]), names[i] + " not written, seed " + seed);
                    }
                }
            }
        }
    }

    /** {@code {out, pooled, gP, gQ}} of the two fused kernels on {@code grid} blocks, every output NaN-poisoned first. */
    private static float[][] fusedKernels(CudaStream s, DeviceBuffer p, DeviceBuffer q, DeviceBuffer bu, DeviceBuffer bv, DeviceBuffer g,
                                          Normalization norm, Activation act, int rows, int n, int o, int k, int grid) {
        int w = o * k, ss = norm.signedSqrt() ? 1 : 0;
        try (DeviceBuffer out = DeviceBuffer.allocateFloats(ctx, (long) rows * n * o); DeviceBuffer z = DeviceBuffer.allocateFloats(ctx, (long) rows * n * o);
             DeviceBuffer gp = DeviceBuffer.allocateFloats(ctx, (long) rows * n * w); DeviceBuffer gq = DeviceBuffer.allocateFloats(ctx, (long) rows * n * w)) {
            for (DeviceBuffer b : new DeviceBuffer[] {out, z, gp, gq}) b.fill(Float.NaN);
            ctx.launch(MfbCuda.FORWARD, grid, 1, 256, 0, s, p, q, bu, bv, out, rows, n, o, k, act.code(), ss, norm.l2().code(), norm.l2Eps());
            ctx.launch(MfbCuda.BACKWARD, grid, 1, 256, 0, s, p, q, bu, bv, g, z, gp, gq, rows, n, o, k, act.code(), ss,
                    norm.signedSqrtGradEps(), norm.l2().code(), norm.l2Eps());
            float[][] res = {new float[rows * n * o], new float[rows * n * o], new float[rows * n * w], new float[rows * n * w]};
            out.read(res[0], s);
            z.read(res[1], s);
            gp.read(res[2], s);
            gq.read(res[3], s);
            return res;
        }
    }

    @Test void hostConveniencesMatchTheDeviceCalls() {
        SplittableRandom r = new SplittableRandom(1);
        Mfb op = Mfb.random(64, 48, 20, 5, 2, Activation.RELU, Normalization.pytorch(), 3);
        float[] x = Stats.gaussian(r, 4 * 64), y = Stats.gaussian(r, 4 * 48), g = Stats.gaussian(r, 4 * 40);
        try (MfbCuda cuda = new MfbCuda(op, ctx, Precision.FP32)) {
            Object[] dev = run(cuda, x, y, g, 4);
            assertArrayEquals((float[]) dev[0], cuda.forward(x, y, 4));
            Mfb.Gradients a = (Mfb.Gradients) dev[1], b = cuda.backward(x, y, g, 4);
            assertArrayEquals(a.dx(), b.dx());
            assertArrayEquals(a.v().get(1).weight(), b.v().get(1).weight());
        }
    }

    /**
     * Per-block weights that live on the device replace the uploaded ones (each copied into its block's
     * slice of the stacked layers): the op then computes the other model, to the FP32 tolerance.
     */
    @Test void loadsWeightsFromDeviceTensors() {
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        int batch = 5, dx = 37, dy = 29, o = 11, k = 3;
        Mfb initial = Mfb.random(dx, dy, o, k, 3, Activation.NONE, Normalization.pytorch(), 1);
        List<Linear> us = List.of(Linear.random(o * k, dx, true, 2), Linear.random(o * k, dx, false, 3), Linear.random(o * k, dx, true, 4));
        List<Linear> vs = List.of(Linear.random(o * k, dy, true, 5), Linear.random(o * k, dy, true, 6), Linear.random(o * k, dy, false, 7));
        Mfb trained = Mfb.mfh(us, vs, k, Activation.NONE, Normalization.pytorch());
        Mfb sameBiases = Mfb.mfh(List.of(initial.us().get(0), Linear.random(o * k, dx, false, 8), initial.us().get(2)),
                List.of(initial.vs().get(0), initial.vs().get(1), Linear.random(o * k, dy, false, 9)), k, Activation.NONE, Normalization.pytorch());
        float[] x = Stats.gaussian(r, batch * dx), y = Stats.gaussian(r, batch * dy);
        java.util.ArrayList<DeviceBuffer> tensors = new java.util.ArrayList<>();
        // The op's bias layout must match the tensors': load into an op whose blocks have biases exactly where trained's do.
        try (CudaStream s = CudaStream.create(ctx); MfbCuda cuda = new MfbCuda(sameBiases, ctx, Precision.FP32)) {
            try {
                for (int i = 0; i < 3; i++) {
                    for (Linear l : List.of(us.get(i), vs.get(i))) {
                        tensors.add(DeviceBuffer.of(ctx, l.weight()));
                        if (l.hasBias()) tensors.add(DeviceBuffer.of(ctx, l.bias()));
                    }
                }
                assertEquals(List.of("u[0].weight", "u[0].bias", "v[0].weight", "v[0].bias", "u[1].weight", "v[1].weight", "v[1].bias",
                        "u[2].weight", "u[2].bias", "v[2].weight"), cuda.weightNames());
                expect("v[0].weight: expected exactly 957 floats", () -> cuda.loadWeights(List.of(tensors.get(0), tensors.get(1), tensors.get(0),
                        tensors.get(3), tensors.get(4), tensors.get(5), tensors.get(6), tensors.get(7), tensors.get(8), tensors.get(9)), s));
                cuda.loadWeights(tensors, s);
                s.synchronize();
                assertBelow(Stats.relativeL2(cuda.forward(x, y, batch), MfbReference.forward(trained, x, y, batch)), 1e-5,
                        "forward with device-loaded weights, seed " + seed);
            } finally {
                cuda.release(s);
                tensors.forEach(DeviceBuffer::close);
            }
        }
    }

    @Test void bitIdenticalAcrossRuns() {
        // Fixed-order reductions in the fused kernels and in the bias sums; cuBLAS FP32 GEMMs with the
        // default (non-split-K-atomic) algorithms are run-to-run reproducible on one GPU.
        SplittableRandom r = new SplittableRandom(2);
        Mfb op = Mfb.random(1024, 2048, 1000, 5, 2, Activation.RELU, Normalization.pytorch(), 4);
        int batch = SimSizes.batch(64);
        float[] x = Stats.gaussian(r, batch * 1024), y = Stats.gaussian(r, batch * 2048), g = Stats.gaussian(r, batch * 2000);
        try (MfbCuda cuda = new MfbCuda(op, ctx, Precision.FP32)) {
            Object[] a = run(cuda, x, y, g, batch), b = run(cuda, x, y, g, batch);
            assertArrayEquals((float[]) a[0], (float[]) b[0]);
            Mfb.Gradients ga = (Mfb.Gradients) a[1], gb = (Mfb.Gradients) b[1];
            assertArrayEquals(ga.dx(), gb.dx());
            assertArrayEquals(ga.u().get(0).weight(), gb.u().get(0).weight());
            assertArrayEquals(ga.v().get(1).bias(), gb.v().get(1).bias());
        }
    }

    @Test void repeatedCallsLeaveDeviceMemoryUnchanged() {
        int batch = SimSizes.batch(64);
        SplittableRandom r = new SplittableRandom(5);
        Mfb op = Mfb.random(1024, 2048, 1000, 5, 2, Activation.RELU, Normalization.pytorch(), 6);
        int nw = 2 * 5000;
        try (CudaStream s = CudaStream.create(ctx); MfbCuda cuda = new MfbCuda(op, ctx, Precision.FP32);
             DeviceBuffer x = DeviceBuffer.of(ctx, Stats.gaussian(r, batch * 1024)); DeviceBuffer y = DeviceBuffer.of(ctx, Stats.gaussian(r, batch * 2048));
             DeviceBuffer g = DeviceBuffer.of(ctx, Stats.gaussian(r, batch * 2000));
             DeviceBuffer z = DeviceBuffer.allocateFloats(ctx, batch * 2000L);
             DeviceBuffer gx = DeviceBuffer.allocateFloats(ctx, batch * 1024L); DeviceBuffer gy = DeviceBuffer.allocateFloats(ctx, batch * 2048L);
             DeviceBuffer gu = DeviceBuffer.allocateFloats(ctx, nw * 1024L); DeviceBuffer gv = DeviceBuffer.allocateFloats(ctx, nw * 2048L)) {
            cuda.forward(x, y, z, batch, s);
            cuda.backward(x, y, g, new MfbCuda.DeviceGradients(gx, gy, gu, null, gv, null), batch, s);
            s.synchronize();
            long free0 = ctx.memoryInfo()[0], held0 = cuda.deviceBytes();
            for (int i = 0, n = SANITIZE ? 5 : SimSizes.repeats(100); i < n; i++) {
                cuda.forward(x, y, z, batch, s);
                cuda.backward(x, y, g, new MfbCuda.DeviceGradients(gx, gy, gu, null, gv, null), batch, s);
            }
            s.synchronize();
            assertEquals(free0, ctx.memoryInfo()[0], "free device memory changed over repeated calls");
            assertEquals(held0, cuda.deviceBytes());
            cuda.release(s);
        }
    }

    @Test void badArgumentsAreRejectedBeforeAnyLaunch() {
        Mfb op = Mfb.random(8, 4, 3, 2, 2, Activation.NONE, Normalization.pytorch(), 1);
        int nw = 12;
        List<Linear> us = java.util.Collections.nCopies(MfbCuda.MAX_BLOCKS + 1, Linear.random(6, 8, true, 1));
        List<Linear> vs = java.util.Collections.nCopies(MfbCuda.MAX_BLOCKS + 1, Linear.random(6, 4, true, 2));
        Mfb tooMany = Mfb.mfh(us, vs, 2, Activation.NONE, Normalization.NONE);
        expect("op: expected at most 8 MFH blocks on CUDA, got 9", () -> new MfbCuda(tooMany, ctx, Precision.FP32));
        expect("precision: expected FP32, TF32 or BF16, got null", () -> new MfbCuda(op, ctx, null));
        try (CudaStream s = CudaStream.create(ctx); MfbCuda cuda = new MfbCuda(op, ctx, Precision.FP32);
             DeviceBuffer x = DeviceBuffer.allocateFloats(ctx, 16); DeviceBuffer y = DeviceBuffer.allocateFloats(ctx, 8);
             DeviceBuffer z = DeviceBuffer.allocateFloats(ctx, 12);
             DeviceBuffer gu = DeviceBuffer.allocateFloats(ctx, nw * 8); DeviceBuffer gv = DeviceBuffer.allocateFloats(ctx, nw * 4)) {
            DeviceBuffer closed = DeviceBuffer.allocateFloats(ctx, 16);
            closed.close();
            expect("x: the device buffer is closed", () -> cuda.forward(closed, y, z, 2, s));
            expect("y: expected at least 3 × 4 floats (48 bytes), got 32 bytes", () -> cuda.forward(DeviceMemory.wrap(x.address(), 96), y, z, 3, s));
            expect("out: expected device memory", () -> cuda.forward(x, y, null, 2, s));
            expect("out: expected at least 2 × 6 floats", () -> cuda.forward(x, y, DeviceMemory.wrap(z.address(), 40), 2, s));
            expect("batch: expected >= 1, got 0", () -> cuda.forward(x, y, z, 0, s));
            expect("stream: expected a CudaStream", () -> cuda.forward(x, y, z, 2, null));
            expect("grads.u: expected at least 12 × 8 floats", () -> cuda.backward(x, y, z, new MfbCuda.DeviceGradients(x, y, DeviceMemory.wrap(gu.address(), 8), null, gv, null), 2, s));
            expect("grads.bv: expected at least 1 × 12 floats", () -> cuda.backward(x, y, z, new MfbCuda.DeviceGradients(x, y, gu, null, gv, DeviceMemory.wrap(gv.address(), 8)), 2, s));
            expect("gradOut: expected at least 2 × 6 floats", () -> cuda.backward(x, y, DeviceMemory.wrap(z.address(), 4), new MfbCuda.DeviceGradients(x, y, gu, null, gv, null), 2, s));
            expect("out: expected a 4-byte aligned address", () -> cuda.forward(x, y, DeviceMemory.wrap(z.address() + 2, 128), 2, s));
            cuda.release(s);
        }
    }

    /**
     * The forward's relative L2 error over the rows of {@code o} outputs (one block of one sample) that
     * are not dead on either side: a row whose every product chain a ReLU zeroes pools to exactly 0, and
     * the l2 normalization maps 0 to 0 but anything else to a unit vector, so one pre-activation
     * rounding across 0 moves that row by 1 (seen: BF16, MFH with 8 blocks, o = 3, k = 7, 40 of 56 rows
     * dead in the reference and one of them a unit vector on the device, error 0.25 where 8 perturbation
     * draws gave 0.034). Rows dead on one side only must still be what a normalization can give, finite
     * with an l2 norm of at most 1 (both MAX_NORM and SUM_SQUARES divide by at least the row's norm);
     * an unwritten element (NaN) or a row of another's values (norm ~1 or more, both counted) fails.
     * At least half the rows must remain compared.
     */
    static double errorAwayFromDeadRows(float[] got, double[] ref, int rows, int o, String what) {
        java.util.ArrayList<Integer> live = new java.util.ArrayList<>();
        for (int r = 0; r < rows; r++) {
            double refNorm = 0, gotNorm = 0;
            for (int j = r * o; j < (r + 1) * o; j++) {
                refNorm += ref[j] * ref[j];
                gotNorm += (double) got[j] * got[j];
            }
            if ((refNorm == 0) == (gotNorm == 0)) {
                live.add(r);
                continue;
            }
            double norm = Math.sqrt(gotNorm);
            assertTrue(norm <= 1 + 1e-5, what + " forward: row " + r + ", dead on one side only, has norm " + norm);
        }
        assertTrue(2 * live.size() >= rows, what + " forward: only " + live.size() + " of " + rows + " rows alike dead or alive");
        float[] g = new float[live.size() * o];
        double[] d = new double[live.size() * o];
        for (int i = 0; i < live.size(); i++) {
            System.arraycopy(got, live.get(i) * o, g, i * o, o);
            System.arraycopy(ref, live.get(i) * o, d, i * o, o);
        }
        return Stats.relativeL2(g, d);
    }

    /** The signed sqrt's backward bound of the class comment: {@code max(base, 10 × baseline)}, the baseline the largest of 3 noise draws. */
    static double backwardTolerance(Mfb op, Precision p, float[] x, float[] y, float[] g, int batch, MfbReference.Grads ref,
                                    MfbReference.Grads scale, long seed) {
        return io.bifuse.testing.MfbTolerance.backwardTolerance(op, p, x, y, g, batch, ref, scale, seed);
    }

    /**
     * The {@link Conditioning} of this case, the one check's MFB rows use: tensor 0 the forward
     * (relative L2), tensor 1 the backward (measured as {@link MfbReference#maxScaledError}).
     */
    static Conditioning conditioning(Mfb op, Precision p, float[] x, float[] y, float[] g, int batch, double[] zRef, MfbReference.Grads ref,
                                     MfbReference.Grads scale, long seed) {
        return io.bifuse.testing.MfbTolerance.conditioning(op, p, x, y, g, batch, zRef, ref, scale, seed);
    }

    /** Forward then backward on NaN-poisoned device outputs: {@code {out, Mfb.Gradients}}. */
    static Object[] run(MfbCuda cuda, float[] x, float[] y, float[] g, int batch) {
        DeviceRuns.MfbRun r = DeviceRuns.mfb(ctx, cuda, x, y, g, batch);
        return new Object[] {r.out(), r.grads()};
    }

    /**
     * This op's instance of the {@link DeviceOpContractTest} testbed: MFH (two cascaded MFB blocks) with the
     * PyTorch normalization; the bias gradients are optional outputs, since null is how a caller skips them.
     */
    static Subject contractSubject(SplittableRandom r) {
        Mfb op = Mfb.random(10, 8, 6, 3, 2, Activation.NONE, Normalization.pytorch(), r.nextLong());
        int b = 3, nw = op.blocks() * op.o() * op.k(); // the stacked U and V rows
        float[] x = gaussian(r, b * 10), y = gaussian(r, b * 8), g = gaussian(r, b * op.outputWidth());
        DeviceForm dev = new DeviceForm()
                .call(F, (o, a) -> ((MfbCuda) o).forward(a.m("x"), a.m("y"), a.m("out"), a.n("batch"), a.stream()))
                .call(B, (o, a) -> ((MfbCuda) o).backward(a.m("x"), a.m("y"), a.m("gradOut"), mfbGrads(a), a.n("batch"), a.stream()))
                .size("batch", b).in("x", x, F, B).in("y", y, F, B).in("gradOut", g, B).out("out", b * op.outputWidth(), F)
                .out("grads.dx", b * 10, B).out("grads.dy", b * 8, B).out("grads.u", nw * 10, B).out("grads.v", nw * 8, B)
                .optionalOut("grads.bu", nw, B).optionalOut("grads.bv", nw, B) // null skips a bias gradient
                .extra("grads", B, (o, a) -> ((MfbCuda) o).backward(a.m("x"), a.m("y"), a.m("gradOut"), null, a.n("batch"), a.stream()));
        return new Subject("Mfb (MFH, 2 blocks)", false, true, (c, p) -> new MfbCuda(op, c, p), new MfbCpu(op), be -> {
            Mfb.Backend m = (Mfb.Backend) be;
            Mfb.Gradients gr = m.backward(x, y, g, b);
            return tensors(m.forward(x, y, b), gr.dx(), gr.dy(), gr.u(), gr.v());
        }, dev);
    }

    private static MfbCuda.DeviceGradients mfbGrads(Args a) {
        return new MfbCuda.DeviceGradients(a.m("grads.dx"), a.m("grads.dy"), a.m("grads.u"), a.m("grads.bu"), a.m("grads.v"), a.m("grads.bv"));
    }
}
