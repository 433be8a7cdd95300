package io.bifuse.cuda;

import static io.bifuse.cuda.DeviceOpContractTest.B;
import static io.bifuse.cuda.DeviceOpContractTest.F;
import static io.bifuse.cuda.DeviceOpContractTest.gaussian;
import static io.bifuse.cuda.DeviceOpContractTest.tensors;
import static org.junit.jupiter.api.Assertions.*;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.bifuse.Linear;
import io.bifuse.MultiHeadAttention;
import io.bifuse.ObjectMask;
import io.bifuse.Precision;
import io.bifuse.cpu.MultiHeadAttentionCpu;
import io.bifuse.cuda.DeviceOpContractTest.Args;
import io.bifuse.cuda.DeviceOpContractTest.DeviceForm;
import io.bifuse.cuda.DeviceOpContractTest.Subject;
import io.bifuse.reference.MultiHeadAttentionReference;
import io.bifuse.testing.DeviceRuns;
import io.bifuse.testing.DeviceRuns.MultiHeadAttentionRun;
import io.bifuse.testing.Stats;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * {@code cuda/MultiHeadAttention.cu} + cuBLAS against the float64 reference, on both attention cores (the
 * fused kernels and the unfused GEMM path), at MCAN's sizes (hidden 512, 8 heads of 64; 14 question
 * tokens, 100 image objects, B = 64) and at odd ones, with key masks (padded keys, a sample with no real
 * key), on fresh random inputs (the seed is in the failure message), the output, the attention maps and
 * every gradient buffer NaN-poisoned before the run so that an unwritten element fails.
 *
 * <p>Tolerance, relative L2 of the output, the maps and each gradient: 1e-5 in FP32. The projections are
 * float32 GEMMs over at most 512 terms and the attention sums run over at most 129 keys or 100 queries
 * in float32, so a correct kernel lands near 1e-7 (MCAN's initial scores are small, |S| ~ 0.3, the softmax
 * well conditioned); a wrong index, tile edge or scale gives ~1. TF32 / BF16 ({@link Precision#bound()}):
 * the projections' operand rounding, which the softmax's conditioning at these score sizes does not amplify; at
 * widths under 32 a projection is a few rounded products with nothing to average and exceeds it by chance (seen:
 * BF16 {@code query.bias} 1.8e-2 against 1.6e-2 at D = 6), so those sizes run in FP32 only, as {@code check} does.
 * Padded keys must get exactly 0 attention and exactly 0 gradient rows, on both cores. Skipped without a GPU.
 *
 * <p>On the simulated device ({@link SimSizes}) B = 64 runs at B = 3.
 */
@Tag("gpu")
class MultiHeadAttentionCudaTest extends CublasOpTest {
    static final double TOL = 1e-5;

    static double tolerance(Precision p) { return p == Precision.FP32 ? TOL : p.bound(); }

    /** What the keys' mask is: none; the tail of each sample padded (counts); scattered padding with one sample of no real key. */
    enum Masking { NONE, COUNTS, SCATTERED_WITH_EMPTY }

    // The first rows are MCAN's: the question's self-attention (14 × 14), the image's (100 × 100), and the
    // image guided by the question (100 queries, 14 keys); then odd sizes on both sides of the 32-row tiles.
    @ParameterizedTest(name = "B={0} Lq={1} Lk={2} D={3} H={4} heads={5} {6} {7}")
    @CsvSource({"64,14,14,512,512,8,COUNTS,AUTO", "64,100,100,512,512,8,COUNTS,AUTO", "64,100,14,512,512,8,SCATTERED_WITH_EMPTY,AUTO",
                "3,14,100,512,512,8,COUNTS,UNFUSED", "1,1,1,1,1,1,NONE,AUTO", "2,33,31,7,12,3,SCATTERED_WITH_EMPTY,FUSED",
                "2,33,31,7,12,3,SCATTERED_WITH_EMPTY,UNFUSED", "3,65,64,20,128,2,NONE,FUSED", "2,5,129,9,48,4,COUNTS,FUSED",
                "2,5,129,9,48,4,COUNTS,UNFUSED", "1,40,3,6,160,2,NONE,UNFUSED", "2,17,19,5,30,10,SCATTERED_WITH_EMPTY,FUSED"})
    void matchesReference(int specBatch, int lq, int lk, int dim, int hidden, int heads, Masking masking, MultiHeadAttentionCuda.Path path) {
        int batch = SimSizes.batch(specBatch);
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        MultiHeadAttention op = MultiHeadAttention.random(dim, hidden, heads, r.nextLong());
        float[] x = Stats.gaussian(r, batch * lq * dim), y = Stats.gaussian(r, batch * lk * dim), g = Stats.gaussian(r, batch * lq * dim);
        ObjectMask mask = mask(r, masking, batch, lk);
        // self-attention passes one array three times; otherwise the image attends to the question (k = v)
        float[] k = lq == lk ? x : y;
        MultiHeadAttentionReference.Result fRef = MultiHeadAttentionReference.forward(op, x, k, k, mask, batch, lq, lk);
        MultiHeadAttentionReference.Grads gRef = MultiHeadAttentionReference.backward(op, x, k, k, mask, g, batch, lq, lk);
        for (Precision p : Precision.values()) {
            if (p != Precision.FP32 && Math.min(dim, hidden) < 32) continue; // see the class comment
            try (MultiHeadAttentionCuda cuda = new MultiHeadAttentionCuda(op, ctx, p, path)) {
                assertEquals(path == MultiHeadAttentionCuda.Path.UNFUSED ? MultiHeadAttentionCuda.Path.UNFUSED : MultiHeadAttentionCuda.Path.FUSED, cuda.path());
                MultiHeadAttentionRun run = DeviceRuns.multiHeadAttention(ctx, cuda, x, k, k, mask, g, batch, lq, lk);
                String what = p + " " + path + " " + op + " B=" + batch + " Lq=" + lq + " Lk=" + lk + " " + masking + " seed " + seed;
                assertMatches(op, run, fRef, gRef, tolerance(p), what);
                assertPaddingExact(run, mask, batch, lq, lk, op, what);
            }
        }
    }

    /**
     * The fused kernels tile the keys by 32: 1 and 14 are one partial tile, 100 three full and a partial one,
     * 128 four full, 129 four full and one of a single key. Each against the unfused core on the same inputs
     * (1e-5: two float32 evaluations of one sum in different orders differ by ~1e-7) and both against the
     * reference, with queries on both sides of the 32-row query tiles.
     */
    @ParameterizedTest(name = "Lk={0} Lq={1}")
    @CsvSource({"1,1", "1,33", "14,14", "14,100", "100,100", "100,14", "128,32", "128,7", "129,129", "129,1"})
    void fusedAgreesWithUnfusedWhereTheKeysSplitIntoTiles(int lk, int lq) {
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        int batch = 2, dim = 24, hidden = 128, heads = 2; // heads of 64: the fused kernels' widest
        MultiHeadAttention op = MultiHeadAttention.random(dim, hidden, heads, r.nextLong());
        float[] x = Stats.gaussian(r, batch * lq * dim), y = Stats.gaussian(r, batch * lk * dim), g = Stats.gaussian(r, batch * lq * dim);
        ObjectMask mask = lk == 1 ? null : ObjectMask.counts(new int[] {lk, Math.max(1, lk - 3)}, lk);
        MultiHeadAttentionReference.Result fRef = MultiHeadAttentionReference.forward(op, x, y, y, mask, batch, lq, lk);
        MultiHeadAttentionReference.Grads gRef = MultiHeadAttentionReference.backward(op, x, y, y, mask, g, batch, lq, lk);
        List<List<float[]>> both = new ArrayList<>();
        for (MultiHeadAttentionCuda.Path path : List.of(MultiHeadAttentionCuda.Path.FUSED, MultiHeadAttentionCuda.Path.UNFUSED)) {
            try (MultiHeadAttentionCuda cuda = new MultiHeadAttentionCuda(op, ctx, Precision.FP32, path)) {
                MultiHeadAttentionRun run = DeviceRuns.multiHeadAttention(ctx, cuda, x, y, y, mask, g, batch, lq, lk);
                String what = path + " Lk=" + lk + " Lq=" + lq + " seed " + seed;
                assertMatches(op, run, fRef, gRef, TOL, what);
                assertPaddingExact(run, mask, batch, lq, lk, op, what);
                both.add(all(run));
            }
        }
        List<String> names = new ArrayList<>(List.of("out", "attention"));
        names.addAll(op.gradientNames());
        for (int i = 0; i < names.size(); i++) {
            double e = Stats.relativeL2(both.get(0).get(i), widen(both.get(1).get(i)));
            assertTrue(e <= TOL, names.get(i) + ": fused vs unfused " + e + " at Lk=" + lk + " Lq=" + lq + " seed " + seed);
        }
    }

    @Test void anAllPaddedSampleIsUniformAndNeverNaN() {
        // mcan-vqa's masked_fill(-1e9) on every key: uniform attention, the mean of the values; dQuery and the
        // sample's dKey rows exactly 0 (its scores are constants). Beside it a sample with one real key.
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        int batch = 2, lq = 5, lk = 40, dim = 16;
        MultiHeadAttention op = MultiHeadAttention.random(dim, 64, 4, r.nextLong());
        ObjectMask mask = ObjectMask.counts(new int[] {0, 1}, lk);
        float[] x = Stats.gaussian(r, batch * lq * dim), y = Stats.gaussian(r, batch * lk * dim), g = Stats.gaussian(r, batch * lq * dim);
        MultiHeadAttentionReference.Result fRef = MultiHeadAttentionReference.forward(op, x, y, y, mask, batch, lq, lk);
        MultiHeadAttentionReference.Grads gRef = MultiHeadAttentionReference.backward(op, x, y, y, mask, g, batch, lq, lk);
        for (MultiHeadAttentionCuda.Path path : List.of(MultiHeadAttentionCuda.Path.FUSED, MultiHeadAttentionCuda.Path.UNFUSED)) {
            try (MultiHeadAttentionCuda cuda = new MultiHeadAttentionCuda(op, ctx, Precision.FP32, path)) {
                MultiHeadAttentionRun run = DeviceRuns.multiHeadAttention(ctx, cuda, x, y, y, mask, g, batch, lq, lk);
                String what = path + " seed " + seed;
                for (List<float[]> t : List.of(all(run))) for (float[] a : t) for (float v : a) assertFalse(Float.isNaN(v), what + ": a NaN");
                int perSample = op.heads() * lq * lk;
                for (int i = 0; i < perSample; i++) assertEquals(1f / lk, run.attention()[i], 1e-7f, what + ": sample 0's attention");
                for (int i = 0; i < lq * dim; i++) assertEquals(0f, run.grads().dQuery()[i], 0f, what + ": sample 0's dQuery");
                for (int i = 0; i < lk * dim; i++) assertEquals(0f, run.grads().dKey()[i], 0f, what + ": sample 0's dKey");
                assertMatches(op, run, fRef, gRef, TOL, what);
                assertPaddingExact(run, mask, batch, lq, lk, op, what);
            }
        }
    }

    @Test void wideHeadsRunUnfusedAndFusedIsRefusedForThem() {
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        MultiHeadAttention op = MultiHeadAttention.random(12, 160, 2, r.nextLong()); // heads of 80
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> new MultiHeadAttentionCuda(op, ctx, Precision.FP32, MultiHeadAttentionCuda.Path.FUSED).close());
        assertTrue(e.getMessage().startsWith("path: FUSED takes heads of at most 64"), e.getMessage());
        int batch = 2, lq = 9, lk = 35;
        float[] x = Stats.gaussian(r, batch * lq * 12), y = Stats.gaussian(r, batch * lk * 12), g = Stats.gaussian(r, batch * lq * 12);
        ObjectMask mask = ObjectMask.counts(new int[] {35, 20}, lk);
        try (MultiHeadAttentionCuda cuda = new MultiHeadAttentionCuda(op, ctx)) {
            assertEquals(MultiHeadAttentionCuda.Path.UNFUSED, cuda.path());
            MultiHeadAttentionRun run = DeviceRuns.multiHeadAttention(ctx, cuda, x, y, y, mask, g, batch, lq, lk);
            assertMatches(op, run, MultiHeadAttentionReference.forward(op, x, y, y, mask, batch, lq, lk),
                    MultiHeadAttentionReference.backward(op, x, y, y, mask, g, batch, lq, lk), TOL, "wide heads, seed " + seed);
        }
    }

    @Test void distinctKeyAndValueInputsAndLayersWithoutBias() {
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        int batch = 3, lq = 12, lk = 45, dq = 10, dk = 7, dv = 13, hidden = 40, out = 6;
        MultiHeadAttention op = MultiHeadAttention.of(new MultiHeadAttention.Weights(Linear.random(hidden, dq, false, r.nextLong()),
                Linear.random(hidden, dk, true, r.nextLong()), Linear.random(hidden, dv, false, r.nextLong()), Linear.random(out, hidden, false, r.nextLong())),
                5);
        float[] x = Stats.gaussian(r, batch * lq * dq), k = Stats.gaussian(r, batch * lk * dk), v = Stats.gaussian(r, batch * lk * dv);
        float[] g = Stats.gaussian(r, batch * lq * out);
        ObjectMask mask = ObjectMask.counts(new int[] {45, 33, 2}, lk);
        for (MultiHeadAttentionCuda.Path path : List.of(MultiHeadAttentionCuda.Path.FUSED, MultiHeadAttentionCuda.Path.UNFUSED)) {
            try (MultiHeadAttentionCuda cuda = new MultiHeadAttentionCuda(op, ctx, Precision.FP32, path)) {
                MultiHeadAttentionRun run = DeviceRuns.multiHeadAttention(ctx, cuda, x, k, v, mask, g, batch, lq, lk);
                assertNull(run.grads().query().bias());
                assertNotNull(run.grads().key().bias());
                assertMatches(op, run, MultiHeadAttentionReference.forward(op, x, k, v, mask, batch, lq, lk),
                        MultiHeadAttentionReference.backward(op, x, k, v, mask, g, batch, lq, lk), TOL, path + " no bias, seed " + seed);
            }
        }
    }

    /** Output, maps, then every gradient tensor: the order of {@link #assertMatches}'s names. */
    private static List<float[]> all(MultiHeadAttentionRun run) {
        List<float[]> t = new ArrayList<>(List.of(run.out(), run.attention()));
        t.addAll(run.grads().tensors());
        return t;
    }

    static void assertMatches(MultiHeadAttention op, MultiHeadAttentionRun run, MultiHeadAttentionReference.Result fRef,
                              MultiHeadAttentionReference.Grads gRef, double tol, String what) {
        List<String> names = new ArrayList<>(List.of("out", "attention"));
        names.addAll(op.gradientNames());
        List<double[]> ref = new ArrayList<>(List.of(fRef.out(), fRef.attention()));
        ref.addAll(gRef.tensors());
        List<float[]> got = all(run);
        assertEquals(names.size(), got.size(), what + ": tensor count");
        for (int i = 0; i < names.size(); i++) {
            double e = Stats.relativeL2(got.get(i), ref.get(i));
            assertTrue(e <= tol, what + ": " + names.get(i) + " relative L2 " + e + " > " + tol);
        }
    }

    /** Padded keys: attention exactly 0 and their dKey and dValue rows exactly 0 (in samples with a real key). */
    static void assertPaddingExact(MultiHeadAttentionRun run, ObjectMask mask, int batch, int lq, int lk, MultiHeadAttention op, String what) {
        if (mask == null) return;
        for (int b = 0; b < batch; b++) {
            if (mask.count(b) == 0) continue;
            for (int j = 0; j < lk; j++) {
                if (mask.isReal(b, j)) continue;
                for (int hi = 0; hi < op.heads() * lq; hi++) {
                    assertEquals(0f, run.attention()[(b * op.heads() * lq + hi) * lk + j], 0f, what + ": attention on padded key " + j + " of sample " + b);
                }
                for (int c = 0; c < op.keyDim(); c++) assertEquals(0f, run.grads().dKey()[(b * lk + j) * op.keyDim() + c], 0f, what + ": dKey of a padded key");
                for (int c = 0; c < op.valueDim(); c++) {
                    assertEquals(0f, run.grads().dValue()[(b * lk + j) * op.valueDim() + c], 0f, what + ": dValue of a padded key");
                }
            }
        }
    }

    static ObjectMask mask(SplittableRandom r, Masking m, int batch, int keys) {
        return switch (m) {
            case NONE -> null;
            case COUNTS -> {
                int[] c = new int[batch];
                for (int b = 0; b < batch; b++) c[b] = b == 0 ? keys : 1 + r.nextInt(keys);
                yield ObjectMask.counts(c, keys);
            }
            case SCATTERED_WITH_EMPTY -> {
                boolean[] real = new boolean[batch * keys];
                for (int b = 0; b < batch; b++) for (int j = 0; j < keys; j++) real[b * keys + j] = b != 1 && (j == 0 || r.nextInt(3) > 0);
                yield ObjectMask.of(real, batch, keys);
            }
        };
    }

    private static double[] widen(float[] a) {
        double[] d = new double[a.length];
        for (int i = 0; i < a.length; i++) d[i] = a[i];
        return d;
    }

    static Subject contractSubject(SplittableRandom r) {
        MultiHeadAttention op = MultiHeadAttention.random(6, 8, 2, r.nextLong());
        int b = 3, lq = 4, lk = 5, h = op.heads();
        ObjectMask mask = ObjectMask.counts(new int[] {5, 2, 0}, lk);
        float[] x = gaussian(r, b * lq * 6), k = gaussian(r, b * lk * 6), v = gaussian(r, b * lk * 6), g = gaussian(r, b * lq * 6);
        MultiHeadAttention.Weights w = op.weights();
        DeviceForm dev = new DeviceForm()
                .call(F, (o, a) -> ((MultiHeadAttentionCuda) o).forward(a.m("query"), a.m("key"), a.m("value"), a.mask(), a.m("out"), a.m("attention"),
                        a.n("batch"), a.n("queries"), a.n("keys"), a.stream()))
                .call(B, (o, a) -> ((MultiHeadAttentionCuda) o).backward(a.m("query"), a.m("key"), a.m("value"), a.mask(), a.m("gradOut"), grads(a),
                        a.n("batch"), a.n("queries"), a.n("keys"), a.stream()))
                .size("batch", b).size("queries", lq).size("keys", lk).mask(mask)
                .in("query", x, F, B).in("key", k, F, B).in("value", v, F, B).in("gradOut", g, B)
                .out("out", b * lq * 6, F).optionalOut("attention", b * h * lq * lk, F) // null: the maps are not written
                .out("grads.dQuery", b * lq * 6, B).out("grads.dKey", b * lk * 6, B).out("grads.dValue", b * lk * 6, B)
                .linear("grads.query", w.query(), B).linear("grads.key", w.key(), B).linear("grads.value", w.value(), B)
                .linear("grads.merge", w.merge(), B)
                .extra("grads", B, (o, a) -> ((MultiHeadAttentionCuda) o).backward(a.m("query"), a.m("key"), a.m("value"), a.mask(), a.m("gradOut"), null,
                        a.n("batch"), a.n("queries"), a.n("keys"), a.stream()))
                .extra("grads.merge", B, (o, a) -> {
                    MultiHeadAttentionCuda.GradientBuffers gr = grads(a);
                    ((MultiHeadAttentionCuda) o).backward(a.m("query"), a.m("key"), a.m("value"), a.mask(), a.m("gradOut"),
                            new MultiHeadAttentionCuda.GradientBuffers(gr.dQuery(), gr.dKey(), gr.dValue(), gr.query(), gr.key(), gr.value(), null),
                            a.n("batch"), a.n("queries"), a.n("keys"), a.stream());
                });
        return new Subject("MultiHeadAttention", false, true, (c, p) -> new MultiHeadAttentionCuda(op, c, p), new MultiHeadAttentionCpu(op), be -> {
            MultiHeadAttention.Backend m = (MultiHeadAttention.Backend) be;
            MultiHeadAttention.Result res = m.forwardWithAttention(x, k, v, mask, b, lq, lk);
            List<float[]> t = tensors(res.out(), res.attention(), m.forward(x, k, v, mask, b, lq, lk));
            t.addAll(m.backward(x, k, v, mask, g, b, lq, lk).tensors());
            return t;
        }, dev);
    }

    private static MlbAttentionCuda.LayerBuffers layer(Args a, String key) {
        return new MlbAttentionCuda.LayerBuffers(a.m(key + ".weight"), a.m(key + ".bias"));
    }

    private static MultiHeadAttentionCuda.GradientBuffers grads(Args a) {
        return new MultiHeadAttentionCuda.GradientBuffers(a.m("grads.dQuery"), a.m("grads.dKey"), a.m("grads.dValue"), layer(a, "grads.query"),
                layer(a, "grads.key"), layer(a, "grads.value"), layer(a, "grads.merge"));
    }
}
