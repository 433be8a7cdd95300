package io.bifuse.cuda;

import static io.bifuse.cuda.DeviceOpContractTest.B;
import static io.bifuse.cuda.DeviceOpContractTest.F;
import static io.bifuse.cuda.DeviceOpContractTest.gaussian;
import static io.bifuse.cuda.DeviceOpContractTest.tensors;
import static org.junit.jupiter.api.Assertions.*;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.bifuse.Linear;
import io.bifuse.McbAttention;
import io.bifuse.Normalization;
import io.bifuse.Precision;
import io.bifuse.cpu.McbAttentionCpu;
import io.bifuse.cuda.DeviceOpContractTest.Args;
import io.bifuse.cuda.DeviceOpContractTest.DeviceForm;
import io.bifuse.cuda.DeviceOpContractTest.Subject;
import io.bifuse.reference.McbAttentionReference;
import io.bifuse.testing.Conditioning;
import io.bifuse.testing.DeviceRuns;
import io.bifuse.testing.McbAttentionTolerance;
import io.bifuse.testing.Stats;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * {@code cuda/McbAttention.cu} + the fused pooling + cuBLAS against the float64 reference, on fresh
 * random inputs (the seed is in the failure message), the output, the attention maps and every gradient
 * buffer NaN-poisoned before the run so that an unwritten element fails.
 *
 * <p>Tolerance, relative L2 of the output, the maps and each gradient tensor: 1e-5 in FP32 (float32
 * sketches and in-block FFTs of length d1 and d2, float32 GEMMs over at most d1 terms: ~1e-6 on the
 * simulated device; an indexing or scaling mistake gives ~1). Inputs are drawn with Dq·Dv and G·Dv·Dq
 * at least 20 times d1 and d2 so that (almost surely: e^-20 per bin) no count-sketch bin is empty: an empty bin's float32
 * FFT noise through the signed square root is a relative error of order 1 (see {@code CompactBilinearTolerance}).
 * TF32 and BF16: {@link Precision#bound()}. In every precision the bound is raised to {@link Conditioning}'s
 * {@code max(bound, 2·base)} where a tensor exceeds it: a rounded GEMM operand flips a ReLU of the hidden
 * layer, and the exact signed-sqrt derivative {@code 0.5/sqrt|z|} (PyTorch's, eps = 0) amplifies the
 * float32 error of the smallest |z| without limit (measured at the spec's widths, L = 3: 4e-3 on dq against
 * 1e-5), which the float64 reference fed float32-sized perturbations of q and the cells reproduces. {@code logits.bias}'s gradient must be exact zeros.
 * Skipped without a GPU.
 */
@Tag("gpu")
class McbAttentionCudaTest extends CublasOpTest {
    static final double TOL = 1e-5;

    static double tolerance(Precision p) { return p == Precision.FP32 ? TOL : p.bound(); }

    @ParameterizedTest(name = "B={0} L={1} Dq={2} Dv={3} d1={4} H={5} G={6} d2={7} A={8} {9} {10}")
    @CsvSource({"2,3,40,30,60,8,2,90,5,CELL,PYTORCH", "2,3,40,30,60,8,2,90,5,MAP,CAFFE", "1,1,40,25,48,4,1,50,3,MAP,PYTORCH",
                "3,5,50,40,100,16,3,64,7,CELL,CAFFE", "2,4,9,8,35,6,2,45,4,MAP,NONE", "2,7,160,128,1000,32,2,1008,9,CELL,PYTORCH"})
    void matchesReference(int batch, int cells, int dq, int dv, int d1, int h, int g, int d2, int answers, McbAttention.L2Scope scope,
                          String normalization) {
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        McbAttention op = op(dq, dv, d1, h, g, d2, answers, scope, normalization(normalization), r.nextLong());
        float[] q = Stats.gaussian(r, batch * dq), image = Stats.gaussian(r, batch * cells * dv), go = Stats.gaussian(r, batch * answers);
        McbAttentionReference.Result fRef = McbAttentionReference.forward(op, q, image, batch, cells);
        McbAttentionReference.Grads gRef = McbAttentionReference.backward(op, q, image, go, batch, cells);
        for (Precision p : Precision.values()) {
            Conditioning cond = McbAttentionTolerance.conditioning(p, op, q, image, go, batch, cells, fRef, gRef, seed);
            try (McbAttentionCuda cuda = new McbAttentionCuda(op, ctx, p)) {
                assertMatches(op, run(cuda, q, image, go, batch, cells), fRef, gRef, tolerance(p), cond,
                        p + " " + op + " B=" + batch + " L=" + cells + " seed " + seed);
            }
        }
    }

    /**
     * The chunked cell pass at several chunk sizes: one cell per chunk, two (which splits a sample's 3
     * cells across chunks, so the MAP scale and the question's gradient gather over chunks), five, and
     * everything in one chunk; each against the reference at FP32's 1e-5.
     */
    @Test void everyChunkSizeMatchesTheReference() {
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        int batch = 3, cells = 3, dq = 40, dv = 30, d1 = 60, d2 = 90, answers = 5;
        for (McbAttention.L2Scope scope : McbAttention.L2Scope.values()) {
            McbAttention op = op(dq, dv, d1, 8, 2, d2, answers, scope, Normalization.pytorch(), r.nextLong());
            float[] q = Stats.gaussian(r, batch * dq), image = Stats.gaussian(r, batch * cells * dv), go = Stats.gaussian(r, batch * answers);
            McbAttentionReference.Result fRef = McbAttentionReference.forward(op, q, image, batch, cells);
            McbAttentionReference.Grads gRef = McbAttentionReference.backward(op, q, image, go, batch, cells);
            Conditioning cond = McbAttentionTolerance.conditioning(Precision.FP32, op, q, image, go, batch, cells, fRef, gRef, seed);
            long row = 4L * (2 * d1 + dq);
            for (int chunk : new int[] {1, 2, 5, batch * cells}) {
                try (McbAttentionCuda cuda = new McbAttentionCuda(op, ctx, Precision.FP32, chunk * row + row - 1)) {
                    assertEquals(chunk, cuda.chunkCells(batch, cells));
                    assertMatches(op, run(cuda, q, image, go, batch, cells), fRef, gRef, TOL, cond,
                            scope + " chunk " + chunk + " cells, seed " + seed);
                }
            }
        }
    }

    /**
     * The spec's widths (Dq = Dv = 2048, d1 = d2 = 16000, H = 512, G = 2, A = 3000) at a small B and L,
     * each with {@link Conditioning}'s allowance (the class comment). With the signed sqrt dq needs it:
     * PyTorch's exact derivative, and Caffe's too, whose eps (0.03) is small next to sqrt|z| ~ 4 at these
     * widths (z sums ~260 products), so the smallest |z| still weigh ~100 times the typical (measured: dq
     * 4e-3 PyTorch, 7e-4 Caffe). Without a normalization a float32 ReLU flip among the 3072 hidden
     * pre-activations does it (seen: dq 1.5e-5, seed 46066826299066).
     */
    @ParameterizedTest(name = "{0}")
    @CsvSource({"PYTORCH", "CAFFE", "NONE"})
    void specWidths(String normalization) {
        assumeTrue(!SANITIZE, "under compute-sanitizer the small cases only");
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        int batch = 2, cells = SimSizes.extent(196, 3);
        Normalization n = normalization(normalization);
        McbAttention op = op(2048, 2048, 16000, 512, 2, 16000, 3000, McbAttention.L2Scope.MAP, n, r.nextLong());
        float[] q = Stats.gaussian(r, batch * 2048), image = Stats.gaussian(r, batch * cells * 2048), go = Stats.gaussian(r, batch * 3000);
        McbAttentionReference.Result fRef = McbAttentionReference.forward(op, q, image, batch, cells);
        McbAttentionReference.Grads gRef = McbAttentionReference.backward(op, q, image, go, batch, cells);
        try (McbAttentionCuda cuda = new McbAttentionCuda(op, ctx)) {
            assertMatches(op, run(cuda, q, image, go, batch, cells), fRef, gRef, TOL,
                    McbAttentionTolerance.conditioning(Precision.FP32, op, q, image, go, batch, cells, fRef, gRef, seed), normalization + " spec widths L=" + cells + " seed " + seed);
        }
    }

    @Test void layersWithoutBias() {
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        int batch = 2, cells = 4, dq = 40, dv = 30, d1 = 60, h = 8, g = 2, d2 = 90, answers = 5;
        McbAttention base = op(dq, dv, d1, h, g, d2, answers, McbAttention.L2Scope.CELL, Normalization.pytorch(), r.nextLong());
        McbAttention op = McbAttention.of(base.attention(), base.scope(), base.fusion(),
                new McbAttention.Weights(Linear.random(h, d1, false, 1), Linear.random(g, h, false, 2), Linear.random(answers, d2, false, 3)));
        float[] q = Stats.gaussian(r, batch * dq), image = Stats.gaussian(r, batch * cells * dv), go = Stats.gaussian(r, batch * answers);
        try (McbAttentionCuda cuda = new McbAttentionCuda(op, ctx)) {
            Run run = run(cuda, q, image, go, batch, cells);
            assertNull(run.grads.hidden().bias());
            assertNull(run.grads.logits().bias());
            McbAttentionReference.Result fRef = McbAttentionReference.forward(op, q, image, batch, cells);
            McbAttentionReference.Grads gRef = McbAttentionReference.backward(op, q, image, go, batch, cells);
            assertMatches(op, run, fRef, gRef, TOL, McbAttentionTolerance.conditioning(Precision.FP32, op, q, image, go, batch, cells, fRef, gRef, seed), "no bias, seed " + seed);
        }
    }

    @Test void badArgumentsAreRejectedByNameBeforeAnyLaunch() {
        McbAttention op = op(6, 5, 60, 4, 2, 90, 3, McbAttention.L2Scope.CELL, Normalization.pytorch(), 1);
        long launches = ResourceCounts.LAUNCHES.sum();
        expect("attention: expected d1 = attention.d() with no prime factor above 7", () -> new McbAttentionCuda(
                op(6, 5, 61, 4, 2, 90, 3, McbAttention.L2Scope.CELL, Normalization.pytorch(), 1), ctx));
        expect("logits: expected at most 16 glimpses", () -> new McbAttentionCuda(op(6, 5, 60, 4, 17, 90, 3, McbAttention.L2Scope.CELL,
                Normalization.pytorch(), 1), ctx));
        expect("chunkBytes: expected at least one cell row's buffers", () -> new McbAttentionCuda(op, ctx, Precision.FP32, 100));
        try (CudaStream s = CudaStream.create(ctx); McbAttentionCuda cuda = new McbAttentionCuda(op, ctx);
             DeviceBuffer q = DeviceBuffer.allocateFloats(ctx, 2 * 6); DeviceBuffer im = DeviceBuffer.allocateFloats(ctx, 2 * 3 * 5);
             DeviceBuffer out = DeviceBuffer.allocateFloats(ctx, 2 * 3); DeviceBuffer g = DeviceBuffer.allocateFloats(ctx, 2 * 3);
             McbAttentionCuda.OwnedGradients gr = cuda.allocateGradients(2, 3)) {
            launches = ResourceCounts.LAUNCHES.sum();
            expect("cells: expected >= 1, got 0", () -> cuda.forward(q, im, out, null, 2, 0, s));
            expect("batch: expected >= 1, got 0", () -> cuda.forward(q, im, out, null, 0, 3, s));
            expect("image: expected at least 8 × 5 floats", () -> cuda.forward(q, im, out, null, 2, 4, s));
            expect("attention: expected at least 4 × 3 floats", () -> cuda.forward(q, im, out, DeviceMemory.wrap(out.address(), 8), 2, 3, s));
            expect("grads: expected GradientBuffers, got null", () -> cuda.backward(q, im, g, null, 2, 3, s));
            McbAttentionCuda.GradientBuffers b = gr.buffers();
            expect("grads.hidden.weight: expected at least 4 × 60 floats", () -> cuda.backward(q, im, g, new McbAttentionCuda.GradientBuffers(b.dq(),
                    b.dI(), new MlbAttentionCuda.LayerBuffers(b.logits().weight(), b.hidden().bias()), b.logits(), b.answer()), 2, 3, s));
            expect("stream: expected a CudaStream", () -> cuda.forward(q, im, out, null, 2, 3, null));
            expect("q: expected 2 × 6 = 12 floats, got 11", () -> cuda.forward(new float[11], new float[30], 2, 3));
            assertEquals(launches, ResourceCounts.LAUNCHES.sum(), "a rejected call launched a kernel");
        }
    }

    record Run(float[] out, float[] attention, McbAttention.Gradients grads) {}

    static Run run(McbAttentionCuda cuda, float[] q, float[] image, float[] go, int batch, int cells) {
        DeviceRuns.McbAttentionRun r = DeviceRuns.mcbAttention(ctx, cuda, q, image, go, batch, cells);
        return new Run(r.out(), r.attention(), r.grads());
    }

    static Normalization normalization(String name) {
        return switch (name) {
            case "PYTORCH" -> Normalization.pytorch();
            case "CAFFE" -> Normalization.caffe();
            default -> Normalization.NONE;
        };
    }

    /** A random op with {@code n} on both poolings (random() fixes the PyTorch one). */
    static McbAttention op(int dq, int dv, int d1, int h, int g, int d2, int answers, McbAttention.L2Scope scope, Normalization n, long seed) {
        McbAttention r = McbAttention.random(dq, dv, d1, h, g, d2, answers, seed);
        return McbAttention.of(r.attention().withNormalization(n), scope, r.fusion().withNormalization(n), r.weights());
    }

    /** {@code cond} null: {@code tol} for every tensor; else {@code tol} raised where the case's conditioning needs it. */
    static void assertMatches(McbAttention op, Run run, McbAttentionReference.Result fRef, McbAttentionReference.Grads gRef, double tol,
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
            if (names.get(t).equals("logits.bias")) {
                assertArrayEquals(new float[got.get(t).length], got.get(t), what + " logits.bias must be exact zeros (softmax invariance)");
                continue;
            }
            if (Stats.cancelled(ref.get(t))) {
                // zero in exact arithmetic, e.g. hidden.bias when a unit is active in every cell of each
                // sample (its gradient is then a softmax gradient's sum): held to float32's residue of it
                double n = Stats.norm(got.get(t));
                assertTrue(n <= Stats.CANCELLED_DEVICE, what + " " + names.get(t) + ": the reference cancels to " + Stats.norm(ref.get(t))
                        + ", the device left " + n);
                continue;
            }
            e = Stats.relativeL2(got.get(t), ref.get(t));
            assertBelow(e, cond == null ? tol : cond.bound(2 + t, tol, e), what + " " + names.get(t));
        }
    }

    /**
     * This op's instance of the {@link DeviceOpContractTest} testbed: cuBLAS GEMMs in every precision, the
     * fused poolings on both sides (d1 = 60, d2 = 90), MAP scope, two chunks of cells, signed sqrt and l2.
     */
    static Subject contractSubject(SplittableRandom r) {
        // Dq·Dv = 1200 products over d1 = 60 bins (and 2400 over d2 = 90): no empty bin, whose float32 noise
        // through the signed sqrt would be O(1) against the CPU's float64 (see the class comment)
        // The signed sqrt's gradient with eps = 1 (bounded by 1/2): both normalization kernels run, but the
        // exact derivative's ill-conditioning at small |z| (see the class comment) stays out of the
        // testbed's fixed 1e-4 against the CPU (measured with eps = 0: 2.5e-4 on dq)
        Normalization n = new Normalization(true, 1f, Normalization.L2.MAX_NORM, 1e-12f);
        McbAttention op = op(40, 30, 60, 5, 2, 90, 4, McbAttention.L2Scope.MAP, n, r.nextLong());
        int b = 3, l = 3;
        float[] q = gaussian(r, b * 40), im = gaussian(r, b * l * 30), g = gaussian(r, b * 4);
        McbAttention.Weights w = op.weights();
        long chunkBytes = 5L * 4 * (2 * 60 + 40); // 5 of the 9 cells per chunk
        DeviceForm dev = new DeviceForm()
                .call(F, (o, a) -> ((McbAttentionCuda) o).forward(a.m("q"), a.m("image"), a.m("out"), a.m("attention"), a.n("batch"), a.n("cells"),
                        a.stream()))
                .call(B, (o, a) -> ((McbAttentionCuda) o).backward(a.m("q"), a.m("image"), a.m("gradOut"), grads(a), a.n("batch"), a.n("cells"),
                        a.stream()))
                .size("batch", b).size("cells", l).in("q", q, F, B).in("image", im, F, B).in("gradOut", g, B)
                .out("out", b * 4, F).optionalOut("attention", b * 2 * l, F)
                .out("grads.dq", b * 40, B).out("grads.dI", b * l * 30, B)
                .linear("grads.hidden", w.hidden(), B).linear("grads.logits", w.logits(), B).linear("grads.answer", w.answer(), B)
                .extra("grads", B, (o, a) -> ((McbAttentionCuda) o).backward(a.m("q"), a.m("image"), a.m("gradOut"), null, a.n("batch"), a.n("cells"),
                        a.stream()));
        return new Subject("McbAttention", false, true, (c, p) -> new McbAttentionCuda(op, c, p, chunkBytes), new McbAttentionCpu(op), be -> {
            McbAttention.Backend m = (McbAttention.Backend) be;
            McbAttention.Result res = m.forwardWithAttention(q, im, b, l);
            List<float[]> t = tensors(res.out(), res.attention(), m.forward(q, im, b, l));
            t.addAll(m.backward(q, im, g, b, l).tensors());
            return t;
        }, dev);
    }

    private static MlbAttentionCuda.LayerBuffers layer(Args a, String key) {
        return new MlbAttentionCuda.LayerBuffers(a.m(key + ".weight"), a.m(key + ".bias"));
    }

    private static McbAttentionCuda.GradientBuffers grads(Args a) {
        return new McbAttentionCuda.GradientBuffers(a.m("grads.dq"), a.m("grads.dI"), layer(a, "grads.hidden"), layer(a, "grads.logits"),
                layer(a, "grads.answer"));
    }
}
