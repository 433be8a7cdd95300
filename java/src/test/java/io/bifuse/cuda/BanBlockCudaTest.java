package io.bifuse.cuda;

import static org.junit.jupiter.api.Assertions.*;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.bifuse.BanBlock;
import io.bifuse.ObjectMask;
import io.bifuse.Precision;
import io.bifuse.reference.BanBlockReference;
import io.bifuse.tools.DeviceRuns;
import io.bifuse.tools.Stats;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * {@link BanBlockCuda} (cuBLAS projections, {@code cuda/BanAttention.cu}, {@code cuda/BanPooling.cu},
 * {@code cuda/BanBlock.cu}) against the float64 {@link BanBlockReference}: the spec's layers (Dx = 2048,
 * Dy = 1280, K = 3840, G = 8, K' = 1280, M = 14, N ∈ {36, 100}) at a small batch, since the float64
 * reference costs ~1.3·10⁹ multiply-adds per sample and pass at N = 36, and odd small sizes (group 3,
 * G = 1, one object, one token). Fresh random inputs (seed in the message); 10..N real objects per sample,
 * plus an empty and a single-object sample where B >= 3; the output, the attention maps and every
 * gradient buffer NaN-poisoned before the run.
 *
 * <p>Tolerance, relative L2 of each tensor: 1e-5 in FP32 — float32 GEMMs over at most 2048 terms, the
 * K = 3840 reductions of the maps in float32, and float32 sums over N·M ≤ 1400 map entries land near
 * 1e-6 (the kernel emulations of the three .cu files measure ≤ 1e-6); an indexing mistake gives ~1.
 * TF32 / BF16 round only the projections' GEMM operands: the output and the attention maps stay within
 * {@link Precision#bound()} (the emulation, {@code native-build/emu/ban_block_emu.cpp}, measures ≤ 0.1 of
 * it), but the gradients do not: a rounded operand moves a pre-activation by ~u, a few ReLU decisions
 * flip, and each flip is wrong by its full size; the weight-norm gains' gradients are cancelling sums.
 * So each gradient tensor gets {@code max(bound, 2·base)}, where {@code base} is the conditioning
 * baseline {@link BanBlockReference#perturbationBaseline}: the float64 reference's own change when every
 * input and parameter moves by ±2u (three draws, the largest). The logits bias gradient is exactly zero on
 * both sides (softmax invariance). Skipped without a GPU.
 */
@Tag("gpu")
class BanBlockCudaTest extends CublasOpTest {
    static final double TOL = 1e-5;

    static double tolerance(Precision p) { return p == Precision.FP32 ? TOL : p.bound(); }

    /** 10..N real objects (all of them when N < 10); sample 0 empty and sample 1 single-object when B >= 3. */
    static ObjectMask mask(SplittableRandom r, int batch, int objects) {
        int[] c = new int[batch];
        for (int b = 0; b < batch; b++) c[b] = r.nextInt(Math.min(10, objects), objects + 1);
        if (batch >= 3) {
            c[0] = 0;
            c[1] = 1;
        }
        return ObjectMask.counts(c, objects);
    }

    @ParameterizedTest(name = "B={0} N={1} M={2} Dx={3} Dy={4} K={5} G={6} K'={7} k={8}")
    @CsvSource({"4,36,14,2048,1280,3840,8,1280,1", "2,100,14,2048,1280,3840,8,1280,1",
                "3,5,4,7,6,9,2,6,1", "4,7,5,13,11,9,3,6,3", "3,1,1,3,2,3,1,2,2", "5,37,13,301,257,387,3,129,3",
                "3,130,17,40,33,50,2,20,1", "6,20,7,128,96,192,4,96,1"})
    void matchesReference(int batch, int n, int m, int dx, int dy, int k, int g, int kg, int group) {
        assumeTrue(!SANITIZE || dx < 2048, "under compute-sanitizer only the small sizes");
        long seed = System.nanoTime();
        SplittableRandom r = new SplittableRandom(seed);
        BanBlock op = BanBlock.random(dx, dy, k, kg, g, group, r.nextLong());
        float[] x = Stats.gaussian(r, batch * n * dx), y = Stats.gaussian(r, batch * m * dy), go = Stats.gaussian(r, batch * dy);
        ObjectMask mask = mask(r, batch, n);
        BanBlockReference.Result fRef = BanBlockReference.forward(op, x, y, mask, batch, n, m);
        List<double[]> gRef = BanBlockReference.backward(op, x, y, mask, go, batch, n, m).tensors();
        for (Precision p : Precision.values()) {
            try (BanBlockCuda cuda = op.onCuda(ctx, p)) {
                DeviceRuns.BanBlockRun run = DeviceRuns.banBlock(ctx, cuda, x, y, mask, go, batch, n, m);
                assertMatches(op, run, fRef, gRef, tolerance(p), gradientTolerances(p, op, x, y, mask, go, batch, n, m, gRef, seed),
                        p + " " + op + " B=" + batch + " N=" + n + " M=" + m + " seed " + seed);
            }
        }
    }

    /** ban-vqa's rule found on the device (mask null, padded rows of x zero) gives what the explicit mask gives. */
    @Test void zeroRowRuleOnTheDevice() {
        long seed = System.nanoTime();
        SplittableRandom r = new SplittableRandom(seed);
        int batch = 4, n = 9, m = 5, dx = 17, dy = 12, k = 15, g = 3, kg = 10;
        BanBlock op = BanBlock.random(dx, dy, k, kg, g, 1, r.nextLong());
        float[] x = Stats.gaussian(r, batch * n * dx), y = Stats.gaussian(r, batch * m * dy), go = Stats.gaussian(r, batch * dy);
        ObjectMask mask = ObjectMask.of(new boolean[] {
                false, false, false, false, false, false, false, false, false,
                true, false, true, true, false, false, true, false, true,
                false, false, false, false, true, false, false, false, false,
                true, true, true, true, true, true, true, true, true}, batch, n);
        for (int b = 0; b < batch; b++) {
            for (int i = 0; i < n; i++) if (!mask.isReal(b, i)) Arrays.fill(x, (b * n + i) * dx, (b * n + i + 1) * dx, 0f);
        }
        BanBlockReference.Result fRef = BanBlockReference.forward(op, x, y, mask, batch, n, m);
        List<double[]> gRef = BanBlockReference.backward(op, x, y, mask, go, batch, n, m).tensors();
        try (BanBlockCuda cuda = op.onCuda(ctx)) {
            DeviceRuns.BanBlockRun run = DeviceRuns.banBlock(ctx, cuda, x, y, null, go, batch, n, m);
            assertMatches(op, run, fRef, gRef, TOL, null, "zero-row mask on the device, seed " + seed);
        }
    }

    @Test void hostConveniencesMatchTheDevicePathAndRepeatBitForBit() {
        SplittableRandom r = new SplittableRandom(3);
        int batch = 3, n = 12, m = 6, dx = 40, dy = 24, k = 30, g = 2, kg = 18;
        BanBlock op = BanBlock.random(dx, dy, k, kg, g, 3, 5);
        float[] x = Stats.gaussian(r, batch * n * dx), y = Stats.gaussian(r, batch * m * dy), go = Stats.gaussian(r, batch * dy);
        ObjectMask mask = mask(r, batch, n);
        try (BanBlockCuda cuda = op.onCuda(ctx)) {
            DeviceRuns.BanBlockRun dev = DeviceRuns.banBlock(ctx, cuda, x, y, mask, go, batch, n, m);
            DeviceRuns.BanBlockRun again = DeviceRuns.banBlock(ctx, cuda, x, y, mask, go, batch, n, m);
            BanBlock.Result host = cuda.forwardWithAttention(x, y, mask, batch, n, m);
            assertArrayEquals(dev.out(), host.out());
            assertArrayEquals(dev.attention(), host.attention());
            assertArrayEquals(dev.out(), again.out());
            List<float[]> a = dev.grads().tensors(), b = cuda.backward(x, y, mask, go, batch, n, m).tensors(), c = again.grads().tensors();
            assertEquals(a.size(), b.size());
            for (int i = 0; i < a.size(); i++) {
                assertArrayEquals(a.get(i), b.get(i), op.gradientNames().get(i));
                assertArrayEquals(a.get(i), c.get(i), "repeat: " + op.gradientNames().get(i));
            }
        }
    }

    @Test void rejectsBadArgumentsBeforeQueueingAnything() {
        int batch = 2, n = 4, m = 3, dx = 5, dy = 4;
        BanBlock op = BanBlock.random(dx, dy, 6, 4, 2, 1, 1);
        try (BanBlockCuda cuda = op.onCuda(ctx); CudaStream s = CudaStream.create(ctx);
             DeviceBuffer x = DeviceBuffer.allocateFloats(ctx, batch * n * dx); DeviceBuffer y = DeviceBuffer.allocateFloats(ctx, batch * m * dy);
             DeviceBuffer out = DeviceBuffer.allocateFloats(ctx, batch * dy); DeviceBuffer small = DeviceBuffer.allocateFloats(ctx, 3);
             DeviceObjectMask wrong = DeviceObjectMask.upload(ctx, ObjectMask.all(batch, n + 1))) {
            try {
                expect("x: expected at least", () -> cuda.forward(small, y, null, batch, n, m, out, null, s));
                expect("y: expected at least", () -> cuda.forward(x, small, null, batch, n, m, out, null, s));
                expect("out: expected at least", () -> cuda.forward(x, y, null, batch, n, m, small, null, s));
                expect("attentionOut: expected at least", () -> cuda.forward(x, y, null, batch, n, m, out, small, s));
                expect("mask: expected a mask for 2 samples × 4 objects", () -> cuda.forward(x, y, wrong, batch, n, m, out, null, s));
                expect("tokens: expected M >= 1", () -> cuda.forward(x, y, null, batch, n, 0, out, null, s));
                expect("grads: expected GradientBuffers", () -> cuda.backward(x, y, null, batch, n, m, out, null, s));
                expect("mask: expected a mask for 2 samples × 4 objects",
                        () -> cuda.forward(new float[batch * n * dx], new float[batch * m * dy], ObjectMask.all(batch, n + 1), batch, n, m));
            } finally {
                cuda.release(s);
            }
        }
    }

    /** Per gradient tensor: 1e-5 in FP32; in TF32 / BF16 {@code max(bound, 2·base)} (see the class comment). */
    static double[] gradientTolerances(Precision p, BanBlock op, float[] x, float[] y, ObjectMask mask, float[] go, int batch, int n, int m,
                                       List<double[]> gRef, long seed) {
        double[] tol = new double[gRef.size()];
        Arrays.fill(tol, tolerance(p));
        if (p == Precision.FP32) return tol;
        double[] base = BanBlockReference.perturbationBaseline(op, x, y, mask, go, batch, n, m, gRef, p.bound() / 2, 3, seed);
        for (int i = 0; i < tol.length; i++) tol[i] = Math.max(p.bound(), 2 * base[i]);
        return tol;
    }

    /** {@code gradTol} null: {@code tol} for every gradient tensor too. */
    static void assertMatches(BanBlock op, DeviceRuns.BanBlockRun run, BanBlockReference.Result fRef, List<double[]> gRef, double tol,
                              double[] gradTol, String what) {
        assertBelow(Stats.relativeL2(run.out(), fRef.out()), tol, "out, " + what);
        assertBelow(Stats.relativeL2(run.attention(), fRef.attention()), tol, "attention, " + what);
        List<float[]> got = run.grads().tensors();
        List<String> names = op.gradientNames();
        assertEquals(gRef.size(), got.size());
        for (int i = 0; i < got.size(); i++) {
            double[] ref = gRef.get(i);
            if (Arrays.stream(ref).allMatch(v -> v == 0)) {
                for (float v : got.get(i)) assertEquals(0f, v, names.get(i) + " must be exact zeros, " + what);
            } else {
                assertBelow(Stats.relativeL2(got.get(i), ref), gradTol == null ? tol : gradTol[i], names.get(i) + ", " + what);
            }
        }
    }
}
