package io.bifuse.cuda;

import static io.bifuse.cuda.DeviceOpContractTest.B;
import static io.bifuse.cuda.DeviceOpContractTest.F;
import static io.bifuse.cuda.DeviceOpContractTest.gaussian;
import static io.bifuse.cuda.DeviceOpContractTest.tensors;
import static org.junit.jupiter.api.Assertions.*;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.bifuse.HierarchicalAttention;
import io.bifuse.Linear;
import io.bifuse.Precision;
import io.bifuse.cpu.HierarchicalAttentionCpu;
import io.bifuse.cuda.DeviceOpContractTest.Args;
import io.bifuse.cuda.DeviceOpContractTest.DeviceForm;
import io.bifuse.cuda.DeviceOpContractTest.Subject;
import io.bifuse.reference.HierarchicalAttentionReference;
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
 * {@code cuda/HierarchicalAttention.cu} + cuBLAS against the float64 reference at a realistic size
 * (words → sentences → documents: 16 documents of about 20 sentences of about 15 words, d = 512,
 * k = 256) and at odd sizes (one level and three; one item; widths one past the kernels' block of 256
 * and their 32 lanes; groups longer than a block has threads; many empty groups and groups of one),
 * on fresh random inputs and group layouts (the seed is in the failure message), the output, the
 * attention weights and every gradient buffer NaN-poisoned before the run so that an unwritten element
 * (an empty group's zero vector included) fails.
 *
 * <p>Tolerance, relative L2 of the output, the attention weights and each gradient tensor: 1e-5 in FP32
 * (float32 GEMMs over at most d or N terms and float32 sums over a group's items: a few 1e-7; an
 * indexing mistake gives ~1). TF32 / BF16: {@link Precision#bound()}. Where a tensor exceeds its fixed
 * bound (a sharp softmax turns the logits' absolute error into the weights' relative error, and the
 * softmax Jacobian cancels where α is nearly one-hot), the bound becomes {@code max(bound, 2·base)} of
 * {@link Conditioning}. The logits bias's gradient is zero in exact arithmetic and must be exact zeros,
 * as the reference returns it. Skipped without a GPU.
 *
 * <p>On the simulated device ({@link SimSizes}) the realistic case runs 3 documents of about 6
 * sentences of about 9 words instead of 16 × 20 × 15 (the repeated-calls test 3 calls instead of 50).
 */
@Tag("gpu")
class HierarchicalAttentionCudaTest extends CublasOpTest {
    static final double TOL = 1e-5;

    static double tolerance(Precision p) { return p == Precision.FP32 ? TOL : p.bound(); }

    /**
     * Random CSR offsets from the top down: {@code top} groups at the last level, level {@code ℓ}'s group
     * lengths uniform in {@code [lo, 2·mean_ℓ − lo]} with {@code lo = 0} when {@code empties} (about one
     * group in {@code 2·mean_ℓ} empty) and 1 otherwise; a level whose groups all came out empty gets one
     * item in its first group.
     */
    static int[][] layout(SplittableRandom r, int top, int[] means, boolean empties) {
        int levels = means.length;
        int[][] off = new int[levels][];
        int groups = top;
        for (int l = levels - 1; l >= 0; l--) {
            int lo = empties ? 0 : 1, hi = Math.max(lo, 2 * means[l] - lo);
            off[l] = new int[groups + 1];
            for (int g = 0; g < groups; g++) off[l][g + 1] = off[l][g] + r.nextInt(lo, hi + 1);
            if (off[l][groups] == 0) for (int g = 0; g < groups; g++) off[l][g + 1] += 1;
            groups = off[l][groups];
        }
        return off;
    }

    static int items(int[][] off) { return off[0][off[0].length - 1]; }

    static int outRows(int[][] off) { return off[off.length - 1].length - 1; }

    static int[] means(String spec) { return Arrays.stream(spec.split(":")).mapToInt(Integer::parseInt).toArray(); }

    @ParameterizedTest(name = "top={0} means={1} d={2} k={3} empties={4}")
    @CsvSource({"16,15:20,512,256,true", "16,15:20,512,256,false",
                "1,1,1,1,false", "3,4,5,7,true", "2,3:4:5,33,257,true", "2,300,10,8,false", "5,2:2,64,256,true", "3,2:1:3,12,20,true",
                "2,400,9,33,true", "7,1:1,16,40,false"})
    void matchesReference(int specTop, String specMeans, int d, int k, boolean empties) {
        int[] m = means(specMeans);
        boolean realistic = d == 512;
        assumeTrue(!SANITIZE || !realistic, "under compute-sanitizer only the small cases");
        int top = SimSizes.batch(specTop);
        if (realistic) m = new int[] {SimSizes.extent(m[0], 9), SimSizes.extent(m[1], 6)};
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        int[][] off = layout(r, top, m, empties);
        HierarchicalAttention op = HierarchicalAttention.random(d, k, m.length, r.nextLong());
        float[] x = Stats.gaussian(r, items(off) * d), go = Stats.gaussian(r, outRows(off) * d);
        HierarchicalAttentionReference.Result fRef = HierarchicalAttentionReference.forward(op, x, items(off), off);
        HierarchicalAttentionReference.Grads gRef = HierarchicalAttentionReference.backward(op, x, go, items(off), off);
        for (Precision p : Precision.values()) {
            Conditioning cond = conditioning(p, op, x, go, off, fRef, gRef, seed);
            try (HierarchicalAttentionCuda cuda = new HierarchicalAttentionCuda(op, ctx, p)) {
                // d or k < 8 with groups of one or two: a projection bias's gradient cancels by ~10³ (as check's rows, see
                // HierarchicalAttentionSuite: 4.7e-5 seen in FP32), beyond what the perturbation baseline reproduces
                double tol = p == Precision.FP32 && Math.min(d, k) < 8 ? 1e-4 : tolerance(p);
                assertMatches(op, run(cuda, x, go, off), fRef, gRef, tol, cond,
                        p + " " + op + " N=" + items(off) + " G=" + Arrays.toString(op.groupCounts(items(off), off)) + " seed " + seed);
            }
        }
    }

    /**
     * Levels {@link HierarchicalAttention#random} never gives: different widths per level, some layers
     * without bias, and the context vectors scaled by {@code sharp} so that the softmax over a group is
     * far from uniform. FP32 and BF16, with {@link Conditioning} as in {@link #matchesReference}.
     */
    @ParameterizedTest(name = "d={0} sharp={1}")
    @CsvSource({"40,16", "24,4", "16,1"})
    void biaslessSharpLevelsOfDifferentWidths(int d, float sharp) {
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        int[] widths = {70, 33, 5};
        List<HierarchicalAttention.Level> ls = new ArrayList<>();
        for (int l = 0; l < 3; l++) {
            Linear c = Linear.random(1, widths[l], l != 1, r.nextLong());
            float[] w = c.weight();
            for (int i = 0; i < w.length; i++) w[i] *= sharp;
            ls.add(new HierarchicalAttention.Level(Linear.random(widths[l], d, l != 0, r.nextLong()), new Linear(1, widths[l], w, c.bias())));
        }
        HierarchicalAttention op = HierarchicalAttention.of(new HierarchicalAttention.Weights(ls));
        int[][] off = layout(r, 2, new int[] {12, 3, 4}, true);
        float[] x = Stats.gaussian(r, items(off) * d), go = Stats.gaussian(r, outRows(off) * d);
        HierarchicalAttentionReference.Result fRef = HierarchicalAttentionReference.forward(op, x, items(off), off);
        HierarchicalAttentionReference.Grads gRef = HierarchicalAttentionReference.backward(op, x, go, items(off), off);
        List<float[]> cpu = new io.bifuse.cpu.HierarchicalAttentionCpu(op).backward(x, go, items(off), off).tensors();
        for (Precision p : List.of(Precision.FP32, Precision.BF16)) {
            try (HierarchicalAttentionCuda cuda = new HierarchicalAttentionCuda(op, ctx, p)) {
                Run run = run(cuda, x, go, off);
                assertNull(run.grads.levels().get(0).projection().bias());
                assertNull(run.grads.levels().get(1).logits().bias());
                assertNotNull(run.grads.levels().get(2).logits().bias());
                assertMatches(op, run, fRef, gRef, tolerance(p), conditioning(p, op, x, go, off, fRef, gRef, seed), cpu,
                        p + " sharp=" + sharp + " " + Arrays.deepToString(off) + " seed " + seed);
            }
        }
    }

    /** Every group of the level empty but one, and that one longer than a block: the zero vectors and the long softmax in one call. */
    @Test void emptyGroupsAroundOneLongGroup() {
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        int d = 20, n = 300;
        int[][] off = {{0, 0, 0, n, n, n}, {0, 2, 2, 5}};
        HierarchicalAttention op = HierarchicalAttention.random(d, 9, 2, r.nextLong());
        float[] x = Stats.gaussian(r, n * d), go = Stats.gaussian(r, 3 * d);
        try (HierarchicalAttentionCuda cuda = new HierarchicalAttentionCuda(op, ctx, Precision.FP32)) {
            Run run = run(cuda, x, go, off);
            HierarchicalAttentionReference.Result fRef = HierarchicalAttentionReference.forward(op, x, n, off);
            HierarchicalAttentionReference.Grads gRef = HierarchicalAttentionReference.backward(op, x, go, n, off);
            // level 1's five items: its bias gradient Σ da_i c (1 − u_i²) cancels (Σ da_i = 0 per group), hence Conditioning
            assertMatches(op, run, fRef, gRef, TOL, conditioning(Precision.FP32, op, x, go, off, fRef, gRef, seed), "seed " + seed);
            HierarchicalAttention.Result host = cuda.forwardWithAttention(x, n, off);
            for (int j = 0; j < d; j++) assertEquals(0f, host.out()[d + j], "the empty top-level group pools to zero");
        }
    }

    /** Weights that live on the device replace the uploaded ones. */
    @Test void loadsWeightsFromDeviceTensors() {
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        int d = 23, k = 13;
        int[][] off = {{0, 4, 4, 11}, {0, 3}};
        HierarchicalAttention initial = HierarchicalAttention.random(d, k, 2, 1), trained = HierarchicalAttention.random(d, k, 2, 2);
        float[] x = Stats.gaussian(r, 11 * d);
        List<DeviceBuffer> tensors = new ArrayList<>();
        try (CudaStream s = CudaStream.create(ctx); HierarchicalAttentionCuda cuda = new HierarchicalAttentionCuda(initial, ctx, Precision.FP32)) {
            try {
                for (HierarchicalAttention.Level lv : trained.weights().levels()) {
                    for (Linear l : List.of(lv.projection(), lv.logits())) {
                        tensors.add(DeviceBuffer.of(ctx, l.weight()));
                        tensors.add(DeviceBuffer.of(ctx, l.bias()));
                    }
                }
                List<String> names = initial.gradientNames();
                assertEquals(names.subList(1, names.size()), cuda.weightNames());
                expect("tensors: expected " + tensors.size() + " device tensors", () -> cuda.loadWeights(tensors.subList(1, tensors.size()), s));
                cuda.loadWeights(tensors, s);
                s.synchronize();
                HierarchicalAttention.Result got = cuda.forwardWithAttention(x, 11, off);
                HierarchicalAttentionReference.Result ref = HierarchicalAttentionReference.forward(trained, x, 11, off);
                assertBelow(Stats.relativeL2(got.out(), ref.out()), TOL, "forward with device-loaded weights, seed " + seed);
                for (int l = 0; l < 2; l++) assertBelow(Stats.relativeL2(got.attention().get(l), ref.attention().get(l)), TOL, "attention " + l);
            } finally {
                cuda.release(s);
                tensors.forEach(DeviceBuffer::close);
            }
        }
    }

    @Test void hostConveniencesMatchTheDevicePath() {
        SplittableRandom r = new SplittableRandom(3);
        int d = 70;
        int[][] off = layout(r, 3, new int[] {9, 4}, true);
        HierarchicalAttention op = HierarchicalAttention.random(d, 40, 2, 5);
        float[] x = Stats.gaussian(r, items(off) * d), go = Stats.gaussian(r, outRows(off) * d);
        try (HierarchicalAttentionCuda cuda = new HierarchicalAttentionCuda(op, ctx, Precision.FP32)) {
            Run dev = run(cuda, x, go, off);
            HierarchicalAttention.Result host = cuda.forwardWithAttention(x, items(off), off);
            assertArrayEquals(dev.out, host.out());
            float[] all = new float[dev.attention.length];
            int at = 0;
            for (float[] a : host.attention()) {
                System.arraycopy(a, 0, all, at, a.length);
                at += a.length;
            }
            assertEquals(all.length, at);
            assertArrayEquals(dev.attention, all);
            assertArrayEquals(dev.out, cuda.forward(x, items(off), off));
            List<float[]> a = dev.grads.tensors(), b = cuda.backward(x, go, items(off), off).tensors();
            assertEquals(a.size(), b.size());
            for (int i = 0; i < a.size(); i++) assertArrayEquals(a.get(i), b.get(i), op.gradientNames().get(i));
        }
    }

    @Test void bitIdenticalAcrossRuns() {
        // No atomics anywhere: two runs at the realistic widths give the same bits.
        SplittableRandom r = new SplittableRandom(1);
        int[][] off = layout(r, SimSizes.batch(16), new int[] {SimSizes.extent(15, 9), SimSizes.extent(20, 6)}, true);
        HierarchicalAttention op = HierarchicalAttention.random(512, 256, 2, 3);
        float[] x = Stats.gaussian(r, items(off) * 512), go = Stats.gaussian(r, outRows(off) * 512);
        try (HierarchicalAttentionCuda cuda = new HierarchicalAttentionCuda(op, ctx, Precision.FP32)) {
            Run a = run(cuda, x, go, off), b = run(cuda, x, go, off);
            assertArrayEquals(a.out, b.out);
            assertArrayEquals(a.attention, b.attention);
            for (int i = 0; i < a.grads.tensors().size(); i++) assertArrayEquals(a.grads.tensors().get(i), b.grads.tensors().get(i));
        }
    }

    @Test void forwardWithoutAttentionBufferGivesTheSameOutput() {
        SplittableRandom r = new SplittableRandom(4);
        int d = 30;
        int[][] off = layout(r, 4, new int[] {5, 3, 2}, true);
        int n = items(off), groups = outRows(off);
        HierarchicalAttention op = HierarchicalAttention.random(d, 16, 3, 6);
        float[] x = Stats.gaussian(r, n * d);
        try (HierarchicalAttentionCuda cuda = new HierarchicalAttentionCuda(op, ctx, Precision.FP32); CudaStream s = CudaStream.create(ctx);
             DeviceBuffer dx = DeviceBuffer.of(ctx, x); DeviceBuffer o = DeviceBuffer.allocateFloats(ctx, (long) groups * d);
             DeviceBuffer doff = DeviceBuffer.of(ctx, HierarchicalAttention.flatOffsets(off))) {
            try {
                o.fill(Float.NaN);
                cuda.forward(dx, doff, o, null, n, op.groupCounts(n, off), s);
                float[] got = new float[groups * d];
                o.read(got, s);
                assertArrayEquals(cuda.forward(x, n, off), got);
                assertTrue(Stats.relativeL2(got, HierarchicalAttentionReference.forward(op, x, n, off).out()) <= TOL);
            } finally {
                cuda.release(s);
            }
        }
    }

    @Test void repeatedCallsLeaveDeviceMemoryUnchanged() {
        SplittableRandom r = new SplittableRandom(5);
        int d = 512;
        int[][] off = layout(r, SimSizes.pick(8, 2), new int[] {SimSizes.extent(15, 9), SimSizes.extent(20, 6)}, true);
        int n = items(off), groups = outRows(off);
        HierarchicalAttention op = HierarchicalAttention.random(d, 256, 2, 6);
        int[] gs = op.groupCounts(n, off);
        try (CudaStream s = CudaStream.create(ctx); HierarchicalAttentionCuda cuda = new HierarchicalAttentionCuda(op, ctx, Precision.TF32);
             DeviceBuffer x = DeviceBuffer.of(ctx, Stats.gaussian(r, n * d)); DeviceBuffer g = DeviceBuffer.of(ctx, Stats.gaussian(r, groups * d));
             DeviceBuffer f = DeviceBuffer.allocateFloats(ctx, (long) groups * d);
             DeviceBuffer doff = DeviceBuffer.of(ctx, HierarchicalAttention.flatOffsets(off));
             HierarchicalAttentionCuda.OwnedGradients gr = cuda.allocateGradients(n)) {
            long weightsOnly = cuda.deviceBytes();
            try {
                cuda.forward(x, doff, f, null, n, gs, s);
                cuda.backward(x, doff, g, gr.buffers(), n, gs, s);
                s.synchronize();
                assertTrue(cuda.deviceBytes() > weightsOnly, "a workspace is held for (stream, sizes)");
                long free0 = ctx.memoryInfo()[0], held0 = cuda.deviceBytes();
                for (int i = 0, reps = SANITIZE ? 3 : SimSizes.repeats(50); i < reps; i++) {
                    cuda.forward(x, doff, f, null, n, gs, s);
                    cuda.backward(x, doff, g, gr.buffers(), n, gs, s);
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

    @Test void badDeviceArgumentsAreRejectedBeforeAnyLaunch() {
        int d = 6, n = 7;
        int[][] off = {{0, 2, 2, 7}, {0, 1, 3}};
        int[] gs = {3, 2};
        HierarchicalAttention op = HierarchicalAttention.of(new HierarchicalAttention.Weights(List.of(
                new HierarchicalAttention.Level(Linear.random(4, d, true, 1), Linear.random(1, 4, true, 2)),
                new HierarchicalAttention.Level(Linear.random(5, d, false, 3), Linear.random(1, 5, true, 4)))));
        List<DeviceBuffer> bufs = new ArrayList<>();
        try (CudaStream s = CudaStream.create(ctx); HierarchicalAttentionCuda cuda = new HierarchicalAttentionCuda(op, ctx, Precision.FP32);
             HierarchicalAttentionCuda.OwnedGradients owned = cuda.allocateGradients(n)) {
            try {
                DeviceBuffer x = keep(bufs, DeviceBuffer.allocateFloats(ctx, n * d));
                DeviceBuffer o = keep(bufs, DeviceBuffer.of(ctx, HierarchicalAttention.flatOffsets(off)));
                DeviceBuffer f = keep(bufs, DeviceBuffer.allocateFloats(ctx, 2 * d));
                DeviceBuffer att = keep(bufs, DeviceBuffer.allocateFloats(ctx, n + 3));
                DeviceBuffer closed = DeviceBuffer.allocateFloats(ctx, n * d);
                closed.close();
                HierarchicalAttentionCuda.GradientBuffers gr = owned.buffers();
                HierarchicalAttentionCuda.LevelBuffers l0 = gr.levels().get(0), l1 = gr.levels().get(1);
                f.fill(7f);
                att.fill(7f);
                expect("x: the device buffer is closed", () -> cuda.forward(closed, o, f, att, n, gs, s));
                expect("x: expected at least 7 × 6 floats (168 bytes), got 164 bytes", () -> cuda.forward(DeviceMemory.wrap(x.address(), 164), o, f, att, n, gs, s));
                expect("offsets: expected at least 7 int32 group offsets (28 bytes), got 24 bytes",
                        () -> cuda.forward(x, DeviceMemory.wrap(o.address(), 24), f, att, n, gs, s));
                expect("offsets: expected device memory", () -> cuda.forward(x, null, f, att, n, gs, s));
                expect("out: expected at least 2 × 6 floats", () -> cuda.forward(x, o, DeviceMemory.wrap(f.address(), 44), att, n, gs, s));
                expect("attention: expected at least 1 × 10 floats", () -> cuda.forward(x, o, f, DeviceMemory.wrap(att.address(), 36), n, gs, s));
                expect("items: expected >= 1, got 0", () -> cuda.forward(x, o, f, att, 0, gs, s));
                expect("groups: expected 2 group counts (one per level), got null", () -> cuda.forward(x, o, f, att, n, null, s));
                expect("groups: expected 2 group counts (one per level), got 1", () -> cuda.forward(x, o, f, att, n, new int[] {3}, s));
                expect("groups[1]: expected >= 1, got 0", () -> cuda.forward(x, o, f, att, n, new int[] {3, 0}, s));
                expect("stream: expected a CudaStream", () -> cuda.forward(x, o, f, att, n, gs, null));
                expect("gradOut: expected at least 2 × 6 floats", () -> cuda.backward(x, o, DeviceMemory.wrap(f.address(), 44), gr, n, gs, s));
                expect("grads: expected GradientBuffers, got null", () -> cuda.backward(x, o, f, null, n, gs, s));
                expect("grads.dx: the device buffer is closed", () -> cuda.backward(x, o, f, new HierarchicalAttentionCuda.GradientBuffers(closed, gr.levels()),
                        n, gs, s));
                expect("grads.levels: expected 2 levels' buffers, got 1", () -> cuda.backward(x, o, f,
                        new HierarchicalAttentionCuda.GradientBuffers(gr.dx(), List.of(l0)), n, gs, s));
                expect("grads.levels[1].projection.bias: expected null (the layer has no bias)", () -> cuda.backward(x, o, f,
                        new HierarchicalAttentionCuda.GradientBuffers(gr.dx(), List.of(l0, new HierarchicalAttentionCuda.LevelBuffers(
                                new MlbAttentionCuda.LayerBuffers(l1.projection().weight(), l0.projection().bias()), l1.logits()))), n, gs, s));
                expect("grads.levels[1].projection.weight: expected at least 5 × 6 floats", () -> cuda.backward(x, o, f,
                        new HierarchicalAttentionCuda.GradientBuffers(gr.dx(), List.of(l0, l0)), n, gs, s));
                expect("grads.levels[0].projection.bias: expected device memory for 1 × 4 floats, got null", () -> cuda.backward(x, o, f,
                        new HierarchicalAttentionCuda.GradientBuffers(gr.dx(), List.of(new HierarchicalAttentionCuda.LevelBuffers(
                                new MlbAttentionCuda.LayerBuffers(l0.projection().weight(), null), l0.logits()), l1)), n, gs, s));
                expect("grads.levels[1]: expected LevelBuffers, got null", () -> cuda.backward(x, o, f,
                        new HierarchicalAttentionCuda.GradientBuffers(gr.dx(), Arrays.asList(l0, null)), n, gs, s));
                expect("stream: expected a CudaStream", () -> cuda.backward(x, o, f, gr, n, gs, null));
                float[] fo = new float[2 * d], ao = new float[n + 3];
                f.read(fo, s);
                att.read(ao, s);
                for (float v : fo) assertEquals(7f, v);
                for (float v : ao) assertEquals(7f, v);
            } finally {
                cuda.release(s);
                bufs.forEach(DeviceBuffer::close);
            }
        }
        expect("precision: expected FP32, TF32 or BF16, got null", () -> new HierarchicalAttentionCuda(op, ctx, null));
        expect("op: expected a HierarchicalAttention, got null", () -> new HierarchicalAttentionCuda(null, ctx));
        expect("items: expected >= 1, got 0", () -> {
            try (HierarchicalAttentionCuda c = new HierarchicalAttentionCuda(op, ctx, Precision.FP32)) { c.allocateGradients(0); }
        });
        // the host conveniences check the offsets themselves, by name
        try (HierarchicalAttentionCuda c = new HierarchicalAttentionCuda(op, ctx, Precision.FP32)) {
            expect("offsets[0][2]: expected >= offsets[0][1] = 2", () -> c.forward(new float[n * d], n, new int[][] {{0, 2, 1, 7}, off[1]}));
            expect("offsets[1][2]: expected 3", () -> c.backward(new float[n * d], new float[2 * d], n, new int[][] {off[0], {0, 1, 2}}));
        }
    }

    record Run(float[] out, float[] attention, HierarchicalAttention.Gradients grads) {}

    /** Forward (with the attention weights) and backward on device buffers, every output NaN-poisoned first. */
    static Run run(HierarchicalAttentionCuda cuda, float[] x, float[] go, int[][] off) {
        DeviceRuns.HierarchicalAttentionRun r = DeviceRuns.hierarchicalAttention(ctx, cuda, x, go, items(off), off);
        return new Run(r.out(), r.attention(), r.grads());
    }

    private static double[] concat(List<double[]> parts) { return io.bifuse.testing.HierarchicalAttentionTolerance.concat(parts); }

    /** {@link HierarchicalAttentionTolerance#conditioning}: the rule {@code check} applies too. */
    static Conditioning conditioning(Precision p, HierarchicalAttention op, float[] x, float[] go, int[][] off, HierarchicalAttentionReference.Result fRef,
                                     HierarchicalAttentionReference.Grads gRef, long seed) {
        return io.bifuse.testing.HierarchicalAttentionTolerance.conditioning(p, op, x, go, off, fRef, gRef, seed);
    }

    /** {@code cond} null: {@code tol} for every tensor; else {@code tol} raised where the case's conditioning needs it. */
    static void assertMatches(HierarchicalAttention op, Run run, HierarchicalAttentionReference.Result fRef, HierarchicalAttentionReference.Grads gRef,
                              double tol, Conditioning cond, String what) {
        assertMatches(op, run, fRef, gRef, tol, cond, null, what);
    }

    /**
     * As above; {@code cpu} (the float32 CPU backend's gradients on the same inputs, or null) is the
     * same-precision baseline of the projection biases' bound: at least 4× the CPU path's error there.
     */
    static void assertMatches(HierarchicalAttention op, Run run, HierarchicalAttentionReference.Result fRef, HierarchicalAttentionReference.Grads gRef,
                              double tol, Conditioning cond, List<float[]> cpu, String what) {
        double e = Stats.relativeL2(run.out, fRef.out());
        assertBelow(e, cond == null ? tol : cond.bound(0, tol, e), what + " forward");
        e = Stats.relativeL2(run.attention, concat(fRef.attention()));
        assertBelow(e, cond == null ? tol : cond.bound(1, tol, e), what + " attention");
        List<float[]> got = run.grads.tensors();
        List<double[]> ref = gRef.tensors();
        List<String> names = op.gradientNames();
        assertEquals(ref.size(), got.size(), what);
        for (int t = 0; t < got.size(); t++) {
            if (isZero(ref.get(t))) {
                // exactly zero (the logits bias; every parameter when all groups hold one item): zeros, not rounding noise
                assertArrayEquals(new float[got.get(t).length], got.get(t), what + " " + names.get(t) + " must be exact zeros");
            } else {
                e = Stats.relativeL2(got.get(t), ref.get(t));
                double bound = cond == null ? tol : cond.bound(2 + t, tol, e);
                // A projection bias's gradient sums a group's few rows and cancels (the softmax Jacobian sums to
                // zero within each group): a correct float32 result then misses the conditioning bound, whose few
                // draws underestimate that cancellation (seen: 2.9e-5 against 2.1e-5 with groups of 2 and 3 items,
                // 8.7e-5 against 4.7e-5 at k = 5, sharp logits). check holds such rows to 1e-4 too; a wrong kernel
                // is off by O(1).
                // The draws can miss it entirely with sharp logits (seen: 2.4e-4 against 1.7e-4, levels[2] of
                // widths 70, 33, 5 at sharp 16): the float32 CPU path's own error on the case then sets the bound.
                if (names.get(t).endsWith("projection.bias")) {
                    bound = Math.max(Math.max(tol, 1e-4), 2 * bound);
                    if (cpu != null) bound = Math.max(bound, 4 * Stats.relativeL2(cpu.get(t), ref.get(t)));
                }
                assertBelow(e, bound, what + " " + names.get(t));
            }
        }
    }

    private static boolean isZero(double[] a) {
        for (double v : a) if (v != 0) return false;
        return true;
    }

    private static DeviceBuffer keep(List<DeviceBuffer> l, DeviceBuffer b) {
        l.add(b);
        return b;
    }

    /**
     * This op's instance of the {@link DeviceOpContractTest} testbed: two levels (an empty group and a
     * group of one at level 0), the offsets an int32 input ({@link DeviceForm#ints}), the group counts
     * sizes named {@code groups[ℓ]}, the attention weights an optional output; its malformed gradient
     * records (a level list short or missing, a level's buffers missing) and group-count arrays of the
     * wrong length are refusals the generic cases cannot build.
     */
    static Subject contractSubject(SplittableRandom r) {
        HierarchicalAttention op = HierarchicalAttention.random(7, 6, 2, r.nextLong());
        int[][] off = {{0, 3, 3, 4, 9}, {0, 1, 4}};
        int n = 9, lv = op.levels();
        float[] x = gaussian(r, n * 7), g = gaussian(r, 2 * 7);
        DeviceForm dev = new DeviceForm()
                .call(F, (o, a) -> ((HierarchicalAttentionCuda) o).forward(a.m("x"), a.m("offsets"), a.m("out"), a.m("attention"), a.n("items"), groups(a),
                        a.stream()))
                .call(B, (o, a) -> ((HierarchicalAttentionCuda) o).backward(a.m("x"), a.m("offsets"), a.m("gradOut"), hanGrads(a, lv), a.n("items"), groups(a),
                        a.stream()))
                .size("items", n).size("groups[0]", 4).size("groups[1]", 2)
                .in("x", x, F, B).ints("offsets", HierarchicalAttention.flatOffsets(off), F, B).in("gradOut", g, B)
                .out("out", 2 * 7, F).optionalOut("attention", n + 4, F) // null: the weights are not written
                .out("grads.dx", n * 7, B);
        for (int i = 0; i < lv; i++) {
            HierarchicalAttention.Level l = op.weights().levels().get(i);
            String name = "grads.levels[" + i + "]";
            dev.linear(name + ".projection", l.projection(), B).linear(name + ".logits", l.logits(), B);
        }
        dev.extra("grads", B, (o, a) -> ((HierarchicalAttentionCuda) o).backward(a.m("x"), a.m("offsets"), a.m("gradOut"), null, a.n("items"), groups(a),
                        a.stream()))
                .extra("grads.levels", B, (o, a) -> ((HierarchicalAttentionCuda) o).backward(a.m("x"), a.m("offsets"), a.m("gradOut"),
                        new HierarchicalAttentionCuda.GradientBuffers(a.m("grads.dx"), hanGrads(a, lv).levels().subList(0, lv - 1)), a.n("items"), groups(a),
                        a.stream()))
                .extra("grads.levels[1]", B, (o, a) -> ((HierarchicalAttentionCuda) o).backward(a.m("x"), a.m("offsets"), a.m("gradOut"),
                        new HierarchicalAttentionCuda.GradientBuffers(a.m("grads.dx"), Arrays.asList(hanGrads(a, lv).levels().get(0), null)), a.n("items"),
                        groups(a), a.stream()))
                .extra("groups", F, (o, a) -> ((HierarchicalAttentionCuda) o).forward(a.m("x"), a.m("offsets"), a.m("out"), a.m("attention"), a.n("items"),
                        new int[] {4}, a.stream()));
        return new Subject("HierarchicalAttention", false, true, (c, p) -> new HierarchicalAttentionCuda(op, c, p), new HierarchicalAttentionCpu(op), be -> {
            HierarchicalAttention.Backend m = (HierarchicalAttention.Backend) be;
            HierarchicalAttention.Result res = m.forwardWithAttention(x, n, off);
            List<float[]> t = tensors(res.out(), res.attention(), m.forward(x, n, off));
            t.addAll(m.backward(x, g, n, off).tensors());
            return t;
        }, dev);
    }

    private static int[] groups(Args a) { return new int[] {a.n("groups[0]"), a.n("groups[1]")}; }

    private static MlbAttentionCuda.LayerBuffers hanLayer(Args a, String key) {
        return new MlbAttentionCuda.LayerBuffers(a.m(key + ".weight"), a.m(key + ".bias"));
    }

    private static HierarchicalAttentionCuda.GradientBuffers hanGrads(Args a, int levels) {
        List<HierarchicalAttentionCuda.LevelBuffers> ls = new ArrayList<>();
        for (int i = 0; i < levels; i++) {
            String n = "grads.levels[" + i + "]";
            ls.add(new HierarchicalAttentionCuda.LevelBuffers(hanLayer(a, n + ".projection"), hanLayer(a, n + ".logits")));
        }
        return new HierarchicalAttentionCuda.GradientBuffers(a.m("grads.dx"), ls);
    }
}
