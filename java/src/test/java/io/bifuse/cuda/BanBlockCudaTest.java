package io.bifuse.cuda;

import static io.bifuse.cuda.DeviceOpContractTest.B;
import static io.bifuse.cuda.DeviceOpContractTest.F;
import static io.bifuse.cuda.DeviceOpContractTest.gaussian;
import static io.bifuse.cuda.DeviceOpContractTest.tensors;
import static org.junit.jupiter.api.Assertions.*;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.bifuse.BanBlock;
import io.bifuse.Linear;
import io.bifuse.ObjectMask;
import io.bifuse.Precision;
import io.bifuse.WeightNormLinear;
import io.bifuse.cpu.BanBlockCpu;
import io.bifuse.cuda.DeviceOpContractTest.Args;
import io.bifuse.cuda.DeviceOpContractTest.DeviceForm;
import io.bifuse.cuda.DeviceOpContractTest.Subject;
import io.bifuse.reference.BanBlockReference;
import io.bifuse.testing.Conditioning;
import io.bifuse.testing.DeviceRuns;
import io.bifuse.testing.Stats;
import java.util.ArrayList;
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
 * So each gradient tensor past the bound gets {@code max(bound, 2·base)} of {@link Conditioning}, where
 * {@code base} is the conditioning baseline {@link BanBlockReference#perturbationBaseline}: the float64
 * reference's own change when every input and parameter moves by ±2u (the largest over as many draws as
 * it takes to explain the error, at most 8; formerly always three, drawn up front). The logits bias
 * gradient is exactly zero on both sides (softmax invariance). FP32 needs two
 * more rules: the weight-norm gains' gradients {@code dg = ⟨dW, V⟩/‖V‖} cancel, so each is measured
 * against the size of its terms ({@link #gainScales}); and among the ~10⁶ pre-activations of a
 * spec-width case one now and then lies within float32 error of 0 and flips (measured: 2.7e-3 on that
 * glimpse's token-layer gradient, 4e-5 on everything upstream), so a tensor past its bound gets the
 * {@link Conditioning} bound at FP32's step. Skipped without a GPU.
 *
 * <p>On the simulated device ({@link SimSizes}) the spec-width rows run at N = 5 and 11 objects instead
 * of 36 and 100, M = 5 tokens instead of 14, and B = 3 instead of 4.
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
    void matchesReference(int specBatch, int specN, int specM, int dx, int dy, int k, int g, int kg, int group) {
        assumeTrue(!SANITIZE || dx < 2048, "under compute-sanitizer only the small sizes");
        boolean spec = specN == 36 || specN == 100; // the spec's layers and N; smaller on the simulated device
        int batch = spec ? SimSizes.extent(specBatch, 3) : specBatch, n = objects(specN), m = spec ? SimSizes.extent(specM, 5) : specM;
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        BanBlock op = BanBlock.random(dx, dy, k, kg, g, group, r.nextLong());
        float[] x = Stats.gaussian(r, batch * n * dx), y = Stats.gaussian(r, batch * m * dy), go = Stats.gaussian(r, batch * dy);
        ObjectMask mask = mask(r, batch, n);
        BanBlockReference.Result fRef = BanBlockReference.forward(op, x, y, mask, batch, n, m);
        List<double[]> gRef = BanBlockReference.backward(op, x, y, mask, go, batch, n, m).tensors();
        for (Precision p : Precision.values()) {
            try (BanBlockCuda cuda = new BanBlockCuda(op, ctx, p)) {
                DeviceRuns.BanBlockRun run = DeviceRuns.banBlock(ctx, cuda, x, y, mask, go, batch, n, m);
                assertMatches(op, run, fRef, gRef, tolerance(p), null, p == Precision.FP32 ? gainScales(op, gRef) : null, conditioning(p, op, x, y, mask, go, batch, n, m, gRef, seed),
                        p + " " + op + " B=" + batch + " N=" + n + " M=" + m + " seed " + seed);
            }
        }
    }

    /**
     * Blocks {@link BanBlock#random} never gives, as a trained model's are: every gain g = ±‖V‖·(0.6..1.4)
     * rather than ‖V‖ (so W ≠ V, and the weight-norm backward's g/‖V‖ factors and its projection of dW
     * off V are tested at values other than 1; a negative gain, legal, in the objects layer of every case
     * and in others at random), the logits, residual 0 and glimpse-token 1 layers without biases, K' > K,
     * and the real objects scattered (not the first count of each sample): an explicit mask whose padded
     * rows of x are nonzero and must be ignored, or the zero-row rule on the device with padded rows ±0
     * and some real rows holding a zero. Every precision, at {@link #matchesReference}'s bounds.
     */
    @ParameterizedTest(name = "B={0} N={1} M={2} Dx={3} Dy={4} K={5} G={6} K'={7} k={8} mask={9} some-no-bias={10}")
    @CsvSource({"3,5,4,7,6,9,2,6,3,explicit,false", "3,6,5,9,7,11,3,12,3,zeroRows,true", "2,20,18,6,5,10,2,4,1,explicit,true"})
    void trainedWeightsAndScatteredObjects(int batch, int n, int m, int dx, int dy, int k, int g, int kg, int group, String maskKind, boolean someNoBias) {
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        List<WeightNormLinear> go = new ArrayList<>(), gt = new ArrayList<>(), res = new ArrayList<>();
        WeightNormLinear objects = trained(k, dx, true, r, true), tokens = trained(k, dy, true, r, false), logits = trained(g, k, !someNoBias, r, false);
        for (int i = 0; i < g; i++) go.add(trained(kg, dx, true, r, false));
        for (int i = 0; i < g; i++) gt.add(trained(kg, dy, !(someNoBias && i == 1), r, false));
        for (int i = 0; i < g; i++) res.add(trained(dy, kg / group, !(someNoBias && i == 0), r, false));
        BanBlock op = BanBlock.of(new BanBlock.Weights(objects, tokens, logits, go, gt, res), group);
        boolean[] real = new boolean[batch * n];
        for (int b = 0; b < batch; b++) {
            // all but one object, a single one, none (all-zero maps), then any count; positions drawn, not the first ones
            int count = b == 0 ? n - 1 : b == 1 ? 1 : b == 2 ? 0 : r.nextInt(0, n + 1);
            int[] order = r.ints(0, Integer.MAX_VALUE).limit(n).toArray();
            Integer[] idx = new Integer[n];
            for (int i = 0; i < n; i++) idx[i] = i;
            Arrays.sort(idx, (a, c) -> Integer.compare(order[a], order[c]));
            for (int q = 0; q < count; q++) real[b * n + idx[q]] = true;
        }
        ObjectMask mask = ObjectMask.of(real, batch, n);
        boolean zeroRows = maskKind.equals("zeroRows");
        float[] x = Stats.gaussian(r, batch * n * dx), y = Stats.gaussian(r, batch * m * dy), gOut = Stats.gaussian(r, batch * dy);
        for (int row = 0; row < batch * n; row++) {
            if (real[row]) {
                if (row % 3 == 1) x[row * dx] = 0f; // a real row may hold zeros: it stays real under the zero-row rule
            } else if (zeroRows) {
                for (int d = 0; d < dx; d++) x[row * dx + d] = d % 2 == 0 ? 0f : -0f;
            }
        }
        if (zeroRows) assertEquals(mask, ObjectMask.zeroRows(x, batch, n, dx));
        BanBlockReference.Result fRef = BanBlockReference.forward(op, x, y, mask, batch, n, m);
        List<double[]> gRef = BanBlockReference.backward(op, x, y, mask, gOut, batch, n, m).tensors();
        for (Precision p : Precision.values()) {
            try (BanBlockCuda cuda = new BanBlockCuda(op, ctx, p)) {
                DeviceRuns.BanBlockRun run = DeviceRuns.banBlock(ctx, cuda, x, y, zeroRows ? null : mask, gOut, batch, n, m);
                assertEquals(op.gradientNames().size(), run.grads().tensors().size());
                assertMatches(op, run, fRef, gRef, tolerance(p), null, p == Precision.FP32 ? gainScales(op, gRef) : null,
                        conditioning(p, op, x, y, mask, gOut, batch, n, m, gRef, seed),
                        p + " trained " + op + " B=" + batch + " N=" + n + " M=" + m + " " + maskKind + " seed " + seed);
            }
        }
    }

    /**
     * A weight-normed layer as training leaves it: V and the bias as nn.Linear draws them, the gain
     * ‖V‖ times a factor in [0.6, 1.4), negated when {@code negative} or else with probability 1/4.
     */
    static WeightNormLinear trained(int out, int in, boolean bias, SplittableRandom r, boolean negative) {
        Linear l = Linear.random(out, in, bias, r.nextLong());
        double norm = 0;
        for (float v : l.weight()) norm += (double) v * v;
        float gain = (float) (Math.sqrt(norm) * r.nextDouble(0.6, 1.4));
        if (negative || r.nextInt(4) == 0) gain = -gain;
        return new WeightNormLinear(out, in, l.weight(), gain, l.bias());
    }

    /** ban-vqa's rule found on the device (mask null, padded rows of x zero) gives what the explicit mask gives. */
    @Test void zeroRowRuleOnTheDevice() {
        long seed = Stats.freshSeed();
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
        try (BanBlockCuda cuda = new BanBlockCuda(op, ctx)) {
            DeviceRuns.BanBlockRun run = DeviceRuns.banBlock(ctx, cuda, x, y, null, go, batch, n, m);
            assertMatches(op, run, fRef, gRef, TOL, null, gainScales(op, gRef), conditioning(Precision.FP32, op, x, y, mask, go, batch, n, m, gRef, seed),
                    "zero-row mask on the device, seed " + seed);
        }
    }

    @Test void hostConveniencesMatchTheDevicePathAndRepeatBitForBit() {
        SplittableRandom r = new SplittableRandom(3);
        int batch = 3, n = 12, m = 6, dx = 40, dy = 24, k = 30, g = 2, kg = 18;
        BanBlock op = BanBlock.random(dx, dy, k, kg, g, 3, 5);
        float[] x = Stats.gaussian(r, batch * n * dx), y = Stats.gaussian(r, batch * m * dy), go = Stats.gaussian(r, batch * dy);
        ObjectMask mask = mask(r, batch, n);
        try (BanBlockCuda cuda = new BanBlockCuda(op, ctx)) {
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
        try (BanBlockCuda cuda = new BanBlockCuda(op, ctx); CudaStream s = CudaStream.create(ctx);
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

    /**
     * The spec's N on the simulated device: 36 → 5 and 100 → 11 objects (the float64 reference costs
     * ~1.3·10⁹ multiply-adds per sample and pass at N = 36, and grows with N and with M; the spec's
     * M = 14 runs as 5 there; the kernels' N and M tiles are the odd rows' job). Any other N, and every N
     * on a GPU, as given.
     */
    static int objects(int spec) {
        return spec == 36 ? SimSizes.extent(36, 5) : spec == 100 ? SimSizes.extent(100, 11) : spec;
    }

    /**
     * FP32's scale for each weight-norm gain gradient ({@code weight_g}; 0 for every other tensor): the
     * norm of its layer's effective-weight gradient, {@code ‖dW‖ = sqrt((‖V‖/g)²‖dV‖² + dg²)} (dV ⟂ V),
     * from the reference. {@code dg = ⟨dW, V⟩/‖V‖} is a sum of terms of that size that may cancel to
     * much less, and float32 controls its error only against the terms: {@code |Δdg| ≲ ε_dW·‖dW‖}. So the
     * gain's error is measured as {@code |Δdg| / max(|dg|, ‖dW‖)}, the relative error wherever there is
     * no cancellation, while a wrong or missing gain gradient still shows as O(1) (as MfbReference's
     * maxScaledError does for the l2 backward's cancelling terms). FP32 measured up to 5e-4 relative
     * on cancelled gains of the small rows, at ≤ 2× the FP32-sized perturbation baseline.
     */
    static double[] gainScales(BanBlock op, List<double[]> gRef) {
        List<String> names = op.gradientNames();
        List<BanBlockReference.Layer> layers = BanBlockReference.params(op).layers();
        double[] scale = new double[names.size()];
        int layer = 0;
        for (int i = 0; i < names.size(); i++) {
            if (!names.get(i).endsWith(".weight_g")) continue;
            BanBlockReference.Layer l = layers.get(layer++);
            double dv = norm(gRef.get(i - 1)), dg = gRef.get(i)[0], w = norm(l.v()) / l.g()[0] * dv;
            scale[i] = Math.sqrt(w * w + dg * dg);
        }
        if (layer != layers.size()) throw new AssertionError("expected one weight_g per layer, got " + layer + " of " + layers.size());
        return scale;
    }

    private static double norm(double[] a) {
        double s = 0;
        for (double v : a) s += v * v;
        return Math.sqrt(s);
    }

    /**
     * The {@link Conditioning} of a case's gradient tensors (the order of {@link BanBlock#gradientNames()}),
     * each draw one of {@link BanBlockReference#perturbationBaseline}; the longest sum is over Dx, Dy, K,
     * K', the N·M map entries, or the B·N / B·M rows of the weight gradients.
     */
    static Conditioning conditioning(Precision p, BanBlock op, float[] x, float[] y, ObjectMask mask, float[] go, int batch, int n, int m,
                                     List<double[]> gRef, long seed) {
        int longest = Math.max(Math.max(Math.max(op.dx(), op.dy()), Math.max(op.width(), op.glimpseWidth())), Math.max(n * m, batch * Math.max(n, m)));
        return new Conditioning(Conditioning.step(p, longest), seed,
                (r, e) -> BanBlockReference.perturbationBaseline(op, x, y, mask, go, batch, n, m, gRef, e, 1, r.nextLong()));
    }

    /**
     * {@code gradTol} null: {@code tol} for every gradient tensor too; {@code gainScales} null: every tensor
     * by relative L2; {@code cond} null: no tensor's bound raised by its conditioning.
     */
    static void assertMatches(BanBlock op, DeviceRuns.BanBlockRun run, BanBlockReference.Result fRef, List<double[]> gRef, double tol,
                              double[] gradTol, double[] gainScales, Conditioning cond, String what) {
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
                double err = gainScales != null && gainScales[i] > 0
                        ? Math.abs(got.get(i)[0] - ref[0]) / Math.max(Math.abs(ref[0]), gainScales[i]) // NaN stays NaN and fails
                        : Stats.relativeL2(got.get(i), ref);
                double bound = gradTol == null ? tol : gradTol[i];
                assertBelow(err, cond == null ? bound : cond.bound(i, bound, err), names.get(i) + ", " + what);
            }
        }
    }

    /**
     * This op's instance of the {@link DeviceOpContractTest} testbed: the whole BAN block (two glimpses,
     * weight-normed layers, a mask), whose gradient record is the largest; its malformed records (glimpse or
     * residual lists of the wrong length, a missing tokens layer) are refusals the generic cases cannot build.
     */
    static Subject contractSubject(SplittableRandom r) {
        BanBlock op = BanBlock.random(5, 4, 6, 6, 2, 3, r.nextLong());
        int b = 3, n = 4, m = 3, gl = op.glimpses();
        ObjectMask mask = ObjectMask.counts(new int[] {4, 2, 1}, n);
        float[] x = gaussian(r, b * n * 5), y = gaussian(r, b * m * 4), g = gaussian(r, b * 4);
        BanBlock.Weights w = op.weights();
        DeviceForm dev = new DeviceForm()
                .call(F, (o, a) -> ((BanBlockCuda) o).forward(a.m("x"), a.m("y"), a.mask(), a.n("batch"), a.n("objects"), a.n("tokens"), a.m("out"),
                        a.m("attentionOut"), a.stream()))
                .call(B, (o, a) -> ((BanBlockCuda) o).backward(a.m("x"), a.m("y"), a.mask(), a.n("batch"), a.n("objects"), a.n("tokens"), a.m("gradOut"),
                        banGrads(a, gl), a.stream()))
                .size("batch", b).size("objects", n).size("tokens", m).mask(mask)
                .in("x", x, F, B).in("y", y, F, B).in("gradOut", g, B).out("out", b * 4, F).optionalOut("attentionOut", b * gl * n * m, F)
                .out("grads.dx", b * n * 5, B).out("grads.dy", b * m * 4, B)
                .weightNorm("grads.objects", w.objects(), B).weightNorm("grads.tokens", w.tokens(), B).weightNorm("grads.logits", w.logits(), B);
        for (int i = 0; i < gl; i++) {
            dev.weightNorm("grads.glimpseObjects[" + i + "]", w.glimpseObjects().get(i), B).weightNorm("grads.glimpseTokens[" + i + "]", w.glimpseTokens().get(i), B)
                    .weightNorm("grads.residuals[" + i + "]", w.residuals().get(i), B);
        }
        dev.extra("grads", B, (o, a) -> ((BanBlockCuda) o).backward(a.m("x"), a.m("y"), a.mask(), a.n("batch"), a.n("objects"), a.n("tokens"),
                        a.m("gradOut"), null, a.stream()))
                .extra("grads.glimpseObjects", B, (o, a) -> {
                    BanBlockCuda.GradientBuffers gr = banGrads(a, gl);
                    ((BanBlockCuda) o).backward(a.m("x"), a.m("y"), a.mask(), a.n("batch"), a.n("objects"), a.n("tokens"), a.m("gradOut"),
                            new BanBlockCuda.GradientBuffers(gr.dx(), gr.dy(), gr.objects(), gr.tokens(), gr.logits(), gr.glimpseObjects().subList(0, gl - 1),
                                    gr.glimpseTokens(), gr.residuals()), a.stream());
                })
                .extra("grads.residuals", B, (o, a) -> {
                    BanBlockCuda.GradientBuffers gr = banGrads(a, gl);
                    List<BanBlockCuda.LayerBuffers> more = new ArrayList<>(gr.residuals());
                    more.add(gr.residuals().get(0));
                    ((BanBlockCuda) o).backward(a.m("x"), a.m("y"), a.mask(), a.n("batch"), a.n("objects"), a.n("tokens"), a.m("gradOut"),
                            new BanBlockCuda.GradientBuffers(gr.dx(), gr.dy(), gr.objects(), gr.tokens(), gr.logits(), gr.glimpseObjects(), gr.glimpseTokens(),
                                    more), a.stream());
                })
                .extra("grads.tokens", B, (o, a) -> {
                    BanBlockCuda.GradientBuffers gr = banGrads(a, gl);
                    ((BanBlockCuda) o).backward(a.m("x"), a.m("y"), a.mask(), a.n("batch"), a.n("objects"), a.n("tokens"), a.m("gradOut"),
                            new BanBlockCuda.GradientBuffers(gr.dx(), gr.dy(), gr.objects(), null, gr.logits(), gr.glimpseObjects(), gr.glimpseTokens(),
                                    gr.residuals()), a.stream());
                });
        return new Subject("BanBlock", false, true, (c, p) -> new BanBlockCuda(op, c, p), new BanBlockCpu(op), be -> {
            BanBlock.Backend k = (BanBlock.Backend) be;
            BanBlock.Result res = k.forwardWithAttention(x, y, mask, b, n, m);
            List<float[]> t = tensors(res.out(), res.attention());
            t.addAll(k.backward(x, y, mask, g, b, n, m).tensors());
            return t;
        }, dev);
    }

    private static BanBlockCuda.LayerBuffers banLayer(Args a, String key) {
        return new BanBlockCuda.LayerBuffers(a.m(key + ".weightV"), a.m(key + ".weightG"), a.m(key + ".bias"));
    }

    private static BanBlockCuda.GradientBuffers banGrads(Args a, int glimpses) {
        List<BanBlockCuda.LayerBuffers> go = new ArrayList<>(), gt = new ArrayList<>(), res = new ArrayList<>();
        for (int i = 0; i < glimpses; i++) {
            go.add(banLayer(a, "grads.glimpseObjects[" + i + "]"));
            gt.add(banLayer(a, "grads.glimpseTokens[" + i + "]"));
            res.add(banLayer(a, "grads.residuals[" + i + "]"));
        }
        return new BanBlockCuda.GradientBuffers(a.m("grads.dx"), a.m("grads.dy"), banLayer(a, "grads.objects"), banLayer(a, "grads.tokens"),
                banLayer(a, "grads.logits"), go, gt, res);
    }
}
