package io.bifuse.cuda;

import static io.bifuse.cuda.DeviceOpContractTest.B;
import static io.bifuse.cuda.DeviceOpContractTest.F;
import static io.bifuse.cuda.DeviceOpContractTest.gaussian;
import static io.bifuse.cuda.DeviceOpContractTest.mat;
import static io.bifuse.cuda.DeviceOpContractTest.tensors;
import static org.junit.jupiter.api.Assertions.*;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.bifuse.BanAttention;
import io.bifuse.Linear;
import io.bifuse.ObjectMask;
import io.bifuse.cpu.BanAttentionCpu;
import io.bifuse.cuda.DeviceOpContractTest.DeviceForm;
import io.bifuse.cuda.DeviceOpContractTest.Subject;
import io.bifuse.reference.BanAttentionReference;
import io.bifuse.testing.BanAttentionRuns;
import io.bifuse.testing.Conditioning;
import io.bifuse.testing.Stats;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * {@code cuda/BanAttention.cu} against the float64 reference at the spec's sizes (B = 256, N ∈ {36, 100},
 * M = 14, K = 3840, G = 8, 10..N real objects per sample) and at odd small sizes, on both forward paths
 * (fused, and tiled: forced at small sizes, natural past N = 128 or M = 16), with fresh random inputs
 * (the seed is in the failure message), masks from counts and from zero rows (empty and single-object
 * samples included), strided inputs and throughRelu. Every output and gradient buffer is NaN-poisoned
 * before the run, so an unwritten element fails.
 *
 * <p>Tolerance, relative L2 of the maps, the finite logits and each gradient: 1e-5 (FP32 kernels; float
 * sums over K = 3840 terms and a softmax over 1400 entries land near 3e-7, as the kernel emulation
 * {@code native-build/emu/ban_attention_emu.cpp} measures at these widths; an indexing or masking mistake
 * gives ~1 or NaN). Exact: {@code −inf} logits at padded objects, zero maps of empty samples, the bias
 * gradient (zeros), padded objects' rows of {@code dxp}. Needs only the driver and the kernels (no cuBLAS);
 * every test is SKIPPED, with the reason, without them. {@code -Dbifuse.sanitize=true} skips the spec sizes.
 */
@Tag("gpu")
class BanAttentionCudaTest {
    static final double TOL = 1e-5;
    static final boolean SANITIZE = Boolean.getBoolean("bifuse.sanitize");
    static CudaContext ctx;

    @BeforeAll static void open() {
        if (Cuda.isAvailable() && Kernels.fatbin() != null) ctx = CudaContext.open(0);
    }

    @BeforeEach void requireGpu() {
        RequireGpu.device();
    }

    @AfterAll static void close() {
        if (ctx != null) ctx.close();
        ctx = null;
    }

    // mask: none | counts (10..N real, sample 0 empty, sample 1 a single object when B > 2) | full (counts, none padded)
    @ParameterizedTest(name = "B={0} N={1} M={2} K={3} G={4} mask={5} path={6} pad={7} relu={8}")
    @CsvSource({"256,36,14,3840,8,counts,auto,0,false", "256,100,14,3840,8,counts,auto,0,true", "16,100,14,3840,8,counts,tiled,0,false",
                "1,1,1,1,1,none,auto,0,false", "1,1,1,1,1,none,tiled,0,false", "3,5,3,33,3,counts,auto,0,false", "3,5,3,33,3,counts,tiled,3,true",
                "4,128,16,40,2,counts,auto,1,false", "4,129,3,20,2,counts,auto,0,false", "3,5,17,24,3,counts,auto,0,true",
                "3,70,33,130,1,counts,auto,2,true", "3,8,5,45,32,counts,auto,0,false", "5,36,14,300,8,full,tiled,5,true",
                "2,200,40,64,4,none,auto,0,false", "3,128,16,40,2,counts,tiled,1,false"})
    void matchesReference(int specBatch, int objects, int tokens, int width, int glimpses, String maskKind, String path, int pad, boolean relu) {
        assumeTrue(!SANITIZE || (long) specBatch * objects * width <= 1L << 22, "under compute-sanitizer only B·N·K <= 2^22");
        int batch = SimSizes.batch(specBatch);
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        BanAttention op = BanAttention.random(glimpses, width, r.nextLong());
        float[] xp = inputs(r, batch * objects * width, relu), yp = inputs(r, batch * tokens * width, relu);
        float[] ga = Stats.gaussian(r, batch * glimpses * objects * tokens);
        ObjectMask mask = switch (maskKind) {
            case "none" -> null;
            case "full" -> ObjectMask.all(batch, objects);
            default -> counts(r, batch, objects);
        };
        try (BanAttentionCuda cuda = new BanAttentionCuda(op, ctx)) {
            if (path.equals("tiled")) cuda.forceTiled(true);
            assertEquals(!path.equals("tiled") && objects <= 128 && tokens <= 16, cuda.isFused(objects, tokens));
            BanAttentionRuns.Run run = BanAttentionRuns.run(ctx, cuda, xp, yp, mask, ga, batch, objects, tokens, pad, relu);
            assertMatches(op, run, xp, yp, mask, ga, batch, objects, tokens, relu,
                    op + " B=" + batch + " N=" + objects + " M=" + tokens + " " + maskKind + " " + path + " seed " + seed);
        }
    }

    /**
     * Logits layers {@link BanAttention#random} never gives: without a bias (the kernels then read the
     * zeros BanAttentionCuda uploads, and no bias gradient is written), and with p scaled by {@code sharp}
     * so that the logits, of standard deviation ≈ sharp/√3 here (±40 at the extremes), make most maps
     * nearly one-hot (the largest entry of a map 0.3 .. 1 − 10⁻⁶ at sharp 24). Masks: counts with an
     * empty and a single-object sample, or holes (real objects scattered). Both forward paths.
     *
     * <p>Tolerance: 1e-5 as in {@link #matchesReference} where it holds; a sharp map is ill-conditioned at
     * float32's own error, since its logits carry an absolute error ~2⁻²⁴·|logit| that the softmax turns
     * into a relative error of the map, and the backward's {@code A ⊙ (ga − ⟨A, ga⟩)} cancels where A is
     * nearly one-hot (measured on the simulated device at sharp 24: up to 3e-6 on the gradients, at 32 up
     * to 8e-6, at 128 2.5e-5). So a tensor past 1e-5 gets {@link Conditioning}'s {@code max(1e-5, 2·base)},
     * {@code base} from {@link #sharpConditioning}: measured 2..4e-5 for the gradients at sharp 24 (10× the
     * errors; 1e-4..4e-4 at sharp 128, still 5× the errors there), so an indexing or masking mistake (~1)
     * fails.
     */
    @ParameterizedTest(name = "B={0} N={1} M={2} K={3} G={4} sharp={5} bias={6} mask={7} path={8} pad={9} relu={10}")
    @CsvSource({"3,5,3,33,3,1,false,counts,auto,0,false", "3,5,3,33,3,1,false,holes,tiled,2,true",
                "3,7,6,37,2,24,true,holes,auto,3,true", "3,9,14,70,8,24,true,counts,auto,1,false",
                "3,9,14,70,8,24,false,holes,tiled,0,false", "2,20,18,30,2,24,true,holes,auto,0,false"})
    void biaslessAndSharpLogits(int batch, int objects, int tokens, int width, int glimpses, float sharp, boolean bias, String maskKind,
                                String path, int pad, boolean relu) {
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        Linear l = Linear.random(glimpses, width, bias, r.nextLong());
        float[] p = l.weight();
        for (int i = 0; i < p.length; i++) p[i] *= sharp;
        BanAttention op = BanAttention.of(new Linear(glimpses, width, p, l.bias()));
        float[] xp = inputs(r, batch * objects * width, relu), yp = inputs(r, batch * tokens * width, relu);
        float[] ga = Stats.gaussian(r, batch * glimpses * objects * tokens);
        ObjectMask mask = maskKind.equals("holes") ? holes(r, batch, objects) : counts(r, batch, objects);
        try (BanAttentionCuda cuda = new BanAttentionCuda(op, ctx)) {
            if (path.equals("tiled")) cuda.forceTiled(true);
            BanAttentionRuns.Run run = BanAttentionRuns.run(ctx, cuda, xp, yp, mask, ga, batch, objects, tokens, pad, relu);
            assertEquals(bias, run.grads().logits().bias() != null);
            assertMatches(op, run, xp, yp, mask, ga, batch, objects, tokens, relu, sharpConditioning(op, xp, yp, mask, ga, batch, objects, tokens, relu, seed),
                    op + " sharp=" + sharp + " B=" + batch + " N=" + objects + " M=" + tokens + " " + maskKind + " " + path + " seed " + seed);
        }
    }

    @Test void fusedAndTiledPathsGiveTheSameLogits() {
        // One per-entry order of the K sum in both kernels: the logits agree bit for bit; the maps to rounding.
        SplittableRandom r = new SplittableRandom(1);
        int b = 4, n = 36, m = 14, k = 300, g = 8;
        BanAttention op = BanAttention.random(g, k, 2);
        float[] xp = Stats.gaussian(r, b * n * k), yp = Stats.gaussian(r, b * m * k), ga = Stats.gaussian(r, b * g * n * m);
        ObjectMask mask = ObjectMask.counts(new int[] {36, 0, 1, 20}, n);
        try (BanAttentionCuda fused = new BanAttentionCuda(op, ctx); BanAttentionCuda tiled = new BanAttentionCuda(op, ctx)) {
            tiled.forceTiled(true);
            BanAttentionRuns.Run a = BanAttentionRuns.run(ctx, fused, xp, yp, mask, ga, b, n, m, 0, false);
            BanAttentionRuns.Run t = BanAttentionRuns.run(ctx, tiled, xp, yp, mask, ga, b, n, m, 0, false);
            assertArrayEquals(a.logits(), t.logits());
            assertTrue(Stats.relativeL2(t.attention(), toDouble(a.attention())) <= 1e-6);
            assertArrayEquals(a.grads().dxp(), t.grads().dxp(), 1e-5f);
        }
    }

    @Test void masksFromZeroRowsMatchTheHostRule() {
        // Raw objects with padding scattered (±0 rows), a fully padded sample, a single-object sample, a row
        // whose only nonzero is a NaN (real), a row with a nonzero last entry; read through a stride ldx > dim.
        SplittableRandom r = new SplittableRandom(3);
        int b = 5, n = 37, dim = 45, ldx = 50;
        float[] x = Stats.gaussian(r, b * n * dim);
        for (int row = 0; row < b * n; row++) {
            int s = row / n;
            boolean pad = s == 1 || (s == 2 && row % n != 17) || (s >= 3 && r.nextInt(3) == 0);
            if (pad) for (int d = 0; d < dim; d++) x[row * dim + d] = d % 2 == 0 ? 0f : -0f;
        }
        for (int d = 0; d < dim; d++) x[(3 * n + 4) * dim + d] = d == dim - 1 ? 2f : 0f;
        for (int d = 0; d < dim; d++) x[(4 * n + 5) * dim + d] = d == 7 ? Float.NaN : 0f;
        ObjectMask host = ObjectMask.zeroRows(x, b, n, dim);
        assertEquals(1, host.emptySamples());
        assertEquals(1, host.count(2));
        float[] strided = BanAttentionRuns.strided(x, dim, ldx);
        for (int i = 0; i < strided.length; i++) if (i % ldx >= dim) strided[i] = 1f; // a read past dim would make padding real
        try (CudaStream s = CudaStream.create(ctx); DeviceBuffer dx = DeviceBuffer.of(ctx, strided);
             DeviceObjectMask dm = DeviceObjectMask.fromZeroRows(ctx, new DeviceMatrix("x", dx, b * n, dim, ldx), b, n, s)) {
            assertEquals(host, dm.download(s));
            int[] counts = new int[b], idx = new int[b * n];
            ((DeviceBuffer) dm.counts()).read(counts, s);
            ((DeviceBuffer) dm.indices()).read(idx, s);
            assertArrayEquals(host.counts(), counts);
            assertArrayEquals(host.indices(), idx, "ascending real indices, then −1");
            // and the maps with it equal the maps with the host mask
            int m = 6, k = 40, g = 3;
            BanAttention op = BanAttention.random(g, k, 4);
            float[] xp = Stats.gaussian(r, b * n * k), yp = Stats.gaussian(r, b * m * k);
            try (BanAttentionCuda cuda = new BanAttentionCuda(op, ctx); DeviceBuffer dxp = DeviceBuffer.of(ctx, xp); DeviceBuffer dyp = DeviceBuffer.of(ctx, yp);
                 DeviceBuffer att = DeviceBuffer.allocateFloats(ctx, (long) b * g * n * m)) {
                try {
                    att.fill(Float.NaN);
                    cuda.forward(DeviceMatrix.of("xp", dxp, b * n, k), DeviceMatrix.of("yp", dyp, b * m, k), dm, b, n, m, att, null, s);
                    float[] got = new float[b * g * n * m];
                    att.read(got, s);
                    assertTrue(Stats.relativeL2(got, BanAttentionReference.forward(op, xp, yp, host, b, n, m).attention()) <= TOL);
                } finally {
                    cuda.release(s);
                }
            }
        }
    }

    @Test void hostConveniencesMatchTheDevicePath() {
        SplittableRandom r = new SplittableRandom(5);
        int b = 3, n = 9, m = 14, k = 70, g = 8;
        BanAttention op = BanAttention.random(g, k, 6);
        float[] xp = Stats.gaussian(r, b * n * k), yp = Stats.gaussian(r, b * m * k), ga = Stats.gaussian(r, b * g * n * m);
        ObjectMask mask = ObjectMask.counts(new int[] {9, 4, 0}, n);
        try (BanAttentionCuda cuda = new BanAttentionCuda(op, ctx)) {
            BanAttentionRuns.Run dev = BanAttentionRuns.run(ctx, cuda, xp, yp, mask, ga, b, n, m, 0, false);
            BanAttention.Result host = cuda.forward(xp, yp, mask, b, n, m);
            assertArrayEquals(dev.attention(), host.attention());
            assertArrayEquals(dev.logits(), host.logits());
            List<float[]> a = dev.grads().tensors(), h = cuda.backward(xp, yp, mask, ga, b, n, m).tensors();
            for (int i = 0; i < a.size(); i++) assertArrayEquals(a.get(i), h.get(i), op.gradientNames().get(i));
        }
    }

    @Test void bitIdenticalAcrossRuns() {
        SplittableRandom r = new SplittableRandom(7);
        int b = SANITIZE ? 2 : SimSizes.batch(32), n = 100, m = 14, k = 3840, g = 8;
        BanAttention op = BanAttention.random(g, k, 8);
        float[] xp = inputs(r, b * n * k, true), yp = inputs(r, b * m * k, true), ga = Stats.gaussian(r, b * g * n * m);
        ObjectMask mask = counts(r, b, n);
        try (BanAttentionCuda cuda = new BanAttentionCuda(op, ctx)) {
            BanAttentionRuns.Run x = BanAttentionRuns.run(ctx, cuda, xp, yp, mask, ga, b, n, m, 0, true);
            BanAttentionRuns.Run y = BanAttentionRuns.run(ctx, cuda, xp, yp, mask, ga, b, n, m, 0, true);
            assertArrayEquals(x.attention(), y.attention());
            for (int i = 0; i < x.grads().tensors().size(); i++) assertArrayEquals(x.grads().tensors().get(i), y.grads().tensors().get(i));
        }
    }

    @Test void argumentsAreCheckedByNameBeforeAnythingIsQueued() {
        int b = 2, n = 3, m = 4, k = 5, g = 2;
        BanAttention op = BanAttention.random(g, k, 9);
        List<DeviceBuffer> bufs = new ArrayList<>();
        try (CudaStream s = CudaStream.create(ctx); BanAttentionCuda cuda = new BanAttentionCuda(op, ctx); DeviceObjectMask wrong = DeviceObjectMask.upload(ctx, ObjectMask.all(b, n + 1))) {
            try {
                DeviceBuffer xp = keep(bufs, DeviceBuffer.allocateFloats(ctx, b * n * k)), yp = keep(bufs, DeviceBuffer.allocateFloats(ctx, b * m * k));
                DeviceBuffer att = keep(bufs, DeviceBuffer.allocateFloats(ctx, b * g * n * m)), ga = keep(bufs, DeviceBuffer.allocateFloats(ctx, b * g * n * m));
                DeviceBuffer gx = keep(bufs, DeviceBuffer.allocateFloats(ctx, b * n * k)), gy = keep(bufs, DeviceBuffer.allocateFloats(ctx, b * m * k));
                DeviceBuffer gw = keep(bufs, DeviceBuffer.allocateFloats(ctx, g * k)), gb = keep(bufs, DeviceBuffer.allocateFloats(ctx, g));
                DeviceBuffer closed = DeviceBuffer.allocateFloats(ctx, b * n * k);
                closed.close();
                for (DeviceBuffer d : List.of(att, gx, gy, gw, gb)) d.fill(7f);
                DeviceMatrix mx = DeviceMatrix.of("xp", xp, b * n, k), my = DeviceMatrix.of("yp", yp, b * m, k);
                DeviceMatrix mgx = DeviceMatrix.of("gradXp", gx, b * n, k), mgy = DeviceMatrix.of("gradYp", gy, b * m, k);
                // A matrix whose memory is too small for its shape and stride cannot even be made.
                expect("xp: 6 × 5 floats with row stride 6 need 140 bytes, the memory has 120", () -> new DeviceMatrix("xp", xp, b * n, k, 6));
                expect("xp: expected 6 × 5, got 6 × 4", () -> cuda.forward(DeviceMatrix.of("xp", xp, b * n, 4), my, null, b, n, m, att, null, s));
                expect("xp: the device buffer is closed", () -> cuda.forward(DeviceMatrix.of("xp", closed, b * n, k), my, null, b, n, m, att, null, s));
                expect("yp: expected a DeviceMatrix of 8 × 5, got null", () -> cuda.forward(mx, null, null, b, n, m, att, null, s));
                expect("yp: expected 8 × 5, got 7 × 5", () -> cuda.forward(mx, my.rows(0, 7), null, b, n, m, att, null, s));
                expect("mask: expected a mask for 2 samples × 3 objects, got 2 × 4", () -> cuda.forward(mx, my, wrong, b, n, m, att, null, s));
                expect("attention: expected at least 4 × 12 floats", () -> cuda.forward(mx, my, null, b, n, m, gw, null, s));
                expect("logits: expected at least 4 × 12 floats", () -> cuda.forward(mx, my, null, b, n, m, att, gw, s));
                expect("objects: expected >= 1, got 0", () -> cuda.forward(mx, my, null, b, 0, m, att, null, s));
                expect("stream: expected a CudaStream", () -> cuda.forward(mx, my, null, b, n, m, att, null, null));
                expect("gradAttention: expected at least 4 × 12 floats", () -> cuda.backward(mx, my, null, b, n, m, att, gw, mgx, mgy, gw, gb, false, s));
                expect("gradYp: expected 8 × 5, got 8 × 3", () -> cuda.backward(mx, my, null, b, n, m, att, ga, mgx, mgy.columns(2, 3), gw, gb, false, s));
                expect("gradWeight: expected at least 2 × 5 floats", () -> cuda.backward(mx, my, null, b, n, m, att, ga, mgx, mgy, gb, gb, false, s));
                expect("gradBias: expected device memory for 1 × 2 floats, got null",
                        () -> cuda.backward(mx, my, null, b, n, m, att, ga, mgx, mgy, gw, null, false, s));
                expect("x: expected 6 × 5, got 2 × 5", () -> DeviceObjectMask.fromZeroRows(ctx, DeviceMatrix.of("x", gw, 2, k), b, n, s));
                expect("x: expected a DeviceMatrix of batch·objects = 6 rows, got null", () -> DeviceObjectMask.fromZeroRows(ctx, null, b, n, s));
                expect("x: the device buffer is closed", () -> DeviceObjectMask.fromZeroRows(ctx, DeviceMatrix.of("x", closed, b * n, k), b, n, s));
                try (BanAttentionCuda noBias = new BanAttentionCuda(BanAttention.of(Linear.random(g, k, false, 1)), ctx)) {
                    expect("gradBias: expected null (the layer has no bias)",
                            () -> noBias.backward(mx, my, null, b, n, m, att, ga, mgx, mgy, gw, gb, false, s));
                }
                for (DeviceBuffer d : List.of(att, gx, gy, gw, gb)) {
                    float[] h = new float[(int) (d.byteSize() / 4)];
                    d.read(h, s);
                    for (float v : h) assertEquals(7f, v, "a rejected call queued work");
                }
            } finally {
                cuda.release(s);
                bufs.forEach(DeviceBuffer::close);
            }
        }
    }

    static void assertMatches(BanAttention op, BanAttentionRuns.Run run, float[] xp, float[] yp, ObjectMask mask, float[] ga, int b, int n, int m,
                              boolean relu, String what) {
        assertMatches(op, run, xp, yp, mask, ga, b, n, m, relu, null, what);
    }

    /**
     * {@code cond} null: 1e-5 for every tensor; else 1e-5 raised where the case's conditioning needs it
     * (tensors in the order attention, finite logits, dxp, dyp, logits.weight).
     */
    static void assertMatches(BanAttention op, BanAttentionRuns.Run run, float[] xp, float[] yp, ObjectMask mask, float[] ga, int b, int n, int m,
                              boolean relu, Conditioning cond, String what) {
        BanAttentionReference.Result f = BanAttentionReference.forward(op, xp, yp, mask, b, n, m);
        BanAttentionReference.Grads gr = BanAttentionReference.backward(op, xp, yp, mask, ga, b, n, m);
        assertBelow(Stats.relativeL2(run.attention(), f.attention()), cond, 0, what + " attention");
        int finite = 0;
        for (double v : f.logits()) if (v != Double.NEGATIVE_INFINITY) finite++;
        float[] lg = new float[finite];
        double[] lr = new double[finite];
        for (int i = 0, c = 0; i < f.logits().length; i++) {
            if (f.logits()[i] == Double.NEGATIVE_INFINITY) assertEquals(Float.NEGATIVE_INFINITY, run.logits()[i], what + " logits[" + i + "]");
            else { lg[c] = run.logits()[i]; lr[c++] = f.logits()[i]; }
        }
        assertBelow(Stats.relativeL2(lg, lr), cond, 1, what + " logits");
        double[] dx = throughRelu(gr.dxp(), xp, relu), dy = throughRelu(gr.dyp(), yp, relu);
        assertBelow(Stats.relativeL2(run.grads().dxp(), dx), cond, 2, what + " dxp");
        assertBelow(Stats.relativeL2(run.grads().dyp(), dy), cond, 3, what + " dyp");
        assertBelow(Stats.relativeL2(run.grads().logits().weight(), gr.dweight()), cond, 4, what + " logits.weight");
        if (op.logits().hasBias()) assertArrayEquals(new float[op.glimpses()], run.grads().logits().bias(), what + " logits.bias must be exact zeros");
        assertTrue(run.paddingUntouched(), what + ": a gradient was written past K in a strided row");
        int k = op.width();
        for (int s = 0; s < b; s++) {
            for (int i = 0; i < n; i++) {
                if (mask != null && !mask.isReal(s, i)) for (int kk = 0; kk < k; kk++) assertEquals(0f, run.grads().dxp()[(s * n + i) * k + kk], what);
            }
        }
    }

    static void assertBelow(double err, String what) {
        assertTrue(err <= TOL, what + ": relative L2 " + err + " > " + TOL);
    }

    /** {@code err <= TOL}, or with {@code cond} its bound for tensor {@code t}; a NaN error fails. */
    static void assertBelow(double err, Conditioning cond, int t, String what) {
        double bound = cond == null ? TOL : cond.bound(t, TOL, err);
        assertTrue(err <= bound, what + ": relative L2 " + err + " > " + bound + (cond == null ? "" : " (" + cond.draws() + " conditioning draws)"));
    }

    /** The gradient of the pre-activations when the inputs are ReLU outputs: zero where the input is not positive. */
    static double[] throughRelu(double[] grad, float[] input, boolean relu) {
        double[] d = grad.clone();
        if (relu) for (int i = 0; i < d.length; i++) if (!(input[i] > 0)) d[i] = 0;
        return d;
    }

    /**
     * The {@link Conditioning} of a BAN attention case (tensors: the maps, the finite logits, dxp, dyp,
     * logits.weight) at FP32's step for the longest float sum, over K or over a map's N·M entries. Each
     * draw moves xp, yp, p and gradAttention by {@code 1 ± step} and recomputes the reference's maps and
     * logits, and also moves the maps the backward takes by {@code 1 ± step} entrywise before the
     * gradients are formed from them ({@link #gradientsFromMaps}). The backward's maps are an operand
     * like any other (BanAttentionCuda.backward reads the forward's float32 maps, whose entries carry
     * float error and do not sum to exactly 1), and the reference, which renormalizes its own, would
     * otherwise hide how much {@code ⟨A, ga⟩}'s cancellation amplifies that error.
     */
    static Conditioning sharpConditioning(BanAttention op, float[] xp, float[] yp, ObjectMask mask, float[] ga, int b, int n, int m, boolean relu,
                                          long seed) {
        BanAttentionReference.Result f = BanAttentionReference.forward(op, xp, yp, mask, b, n, m);
        BanAttentionReference.Grads gr = BanAttentionReference.backward(op, xp, yp, mask, ga, b, n, m);
        List<double[]> ref = List.of(f.attention(), finite(f.logits()), throughRelu(gr.dxp(), xp, relu), throughRelu(gr.dyp(), yp, relu), gr.dweight());
        return new Conditioning(Conditioning.step(io.bifuse.Precision.FP32, Math.max(op.width(), n * m)), seed, (r, e) -> {
            BanAttention moved = BanAttention.of(Conditioning.perturb(op.logits(), e, r));
            float[] px = Conditioning.perturb(xp, e, r), py = Conditioning.perturb(yp, e, r), pg = Conditioning.perturb(ga, e, r);
            BanAttentionReference.Result pf = BanAttentionReference.forward(moved, px, py, mask, b, n, m);
            double[] maps = pf.attention().clone();
            for (int i = 0; i < maps.length; i++) maps[i] *= r.nextBoolean() ? 1 + e : 1 - e;
            double[][] g = gradientsFromMaps(moved, maps, px, py, pg, b, n, m);
            List<double[]> got = List.of(pf.attention(), finite(pf.logits()), throughRelu(g[0], xp, relu), throughRelu(g[1], yp, relu), g[2]);
            return Conditioning.errors(got, ref);
        });
    }

    /**
     * dxp, dyp and dp of BAN attention in double from given maps A (padded objects' entries are 0 in
     * them, so they contribute nothing): {@code dl = A ⊙ (ga − ⟨A, ga⟩)} per map, then the three sums of
     * the definition (see {@link BanAttention}).
     */
    static double[][] gradientsFromMaps(BanAttention op, double[] maps, float[] xp, float[] yp, float[] ga, int b, int n, int m) {
        int g = op.glimpses(), k = op.width(), nm = n * m;
        float[] p = op.logits().weight();
        double[] dx = new double[b * n * k], dy = new double[b * m * k], dp = new double[g * k];
        for (int s = 0; s < b; s++) {
            for (int q = 0; q < g; q++) {
                int at = (s * g + q) * nm;
                double c = 0;
                for (int e = 0; e < nm; e++) c += maps[at + e] * ga[at + e];
                for (int i = 0; i < n; i++) {
                    for (int j = 0; j < m; j++) {
                        double dl = maps[at + i * m + j] * (ga[at + i * m + j] - c);
                        if (dl == 0) continue;
                        int xi = (s * n + i) * k, yj = (s * m + j) * k;
                        for (int kk = 0; kk < k; kk++) {
                            dx[xi + kk] += p[q * k + kk] * dl * yp[yj + kk];
                            dy[yj + kk] += p[q * k + kk] * dl * xp[xi + kk];
                            dp[q * k + kk] += dl * xp[xi + kk] * yp[yj + kk];
                        }
                    }
                }
            }
        }
        return new double[][] {dx, dy, dp};
    }

    private static double[] finite(double[] logits) {
        return java.util.Arrays.stream(logits).filter(v -> v != Double.NEGATIVE_INFINITY).toArray();
    }

    /** Each object real with probability 2/3, independently: real objects scattered, some samples possibly empty. */
    static ObjectMask holes(SplittableRandom r, int batch, int objects) {
        boolean[] real = new boolean[batch * objects];
        for (int i = 0; i < real.length; i++) real[i] = r.nextInt(3) != 0;
        return ObjectMask.of(real, batch, objects);
    }

    /** ban-vqa's detector gives 10..100 boxes: counts in [min(10, N), N]; sample 0 empty and sample 1 a single object when B > 2. */
    static ObjectMask counts(SplittableRandom r, int batch, int objects) {
        int[] c = new int[batch];
        for (int s = 0; s < batch; s++) c[s] = Math.min(10, objects) + r.nextInt(objects - Math.min(10, objects) + 1);
        if (batch > 2) {
            c[0] = 0;
            c[1] = 1;
        }
        return ObjectMask.counts(c, objects);
    }

    static float[] inputs(SplittableRandom r, int n, boolean relu) {
        float[] a = Stats.gaussian(r, n);
        if (relu) for (int i = 0; i < n; i++) a[i] = Math.max(a[i], 0f);
        return a;
    }

    static double[] toDouble(float[] a) {
        double[] d = new double[a.length];
        for (int i = 0; i < a.length; i++) d[i] = a[i];
        return d;
    }

    static void expect(String message, Runnable call) {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, call::run);
        assertTrue(e.getMessage().startsWith(message), "'" + e.getMessage() + "' does not start with '" + message + "'");
    }

    private static DeviceBuffer keep(List<DeviceBuffer> l, DeviceBuffer b) {
        l.add(b);
        return b;
    }

    /**
     * This op's instance of the {@link DeviceOpContractTest} testbed: two glimpses under a mask with a full,
     * a partial and an empty row, so that padded objects (their logits −inf) and a sample with no object at
     * all are in the case.
     */
    static Subject contractSubject(SplittableRandom r) {
        BanAttention op = BanAttention.random(2, 8, r.nextLong());
        int b = 3, n = 5, m = 4, maps = b * 2 * n * m;
        ObjectMask mask = ObjectMask.counts(new int[] {5, 2, 0}, n);
        float[] xp = gaussian(r, b * n * 8), yp = gaussian(r, b * m * 8), ga = gaussian(r, maps);
        // backward reads the forward's maps: "attention" is an output of one call and an input of the next
        DeviceForm dev = new DeviceForm()
                .call(F, (o, a) -> ((BanAttentionCuda) o).forward(mat(a, "xp", b * n, 8), mat(a, "yp", b * m, 8), a.mask(), a.n("batch"), a.n("objects"),
                        a.n("tokens"), a.m("attention"), a.m("logits"), a.stream()))
                .call(B, (o, a) -> ((BanAttentionCuda) o).backward(mat(a, "xp", b * n, 8), mat(a, "yp", b * m, 8), a.mask(), a.n("batch"), a.n("objects"),
                        a.n("tokens"), a.m("attention"), a.m("gradAttention"), mat(a, "gradXp", b * n, 8), mat(a, "gradYp", b * m, 8), a.m("gradWeight"),
                        a.m("gradBias"), false, a.stream()))
                .size("batch", b).size("objects", n).size("tokens", m).mask(mask)
                .in("xp", xp, F, B).in("yp", yp, F, B).in("gradAttention", ga, B)
                .out("attention", maps, F, B).optionalOut("logits", maps, F) // null: the logits are not written
                .out("gradXp", b * n * 8, B).out("gradYp", b * m * 8, B).linear("gradWeight", "gradBias", op.logits(), B)
                .extra("yp", F, (o, a) -> ((BanAttentionCuda) o).forward(mat(a, "xp", b * n, 8), mat(a, "yp", b * m, 7), a.mask(), a.n("batch"),
                        a.n("objects"), a.n("tokens"), a.m("attention"), a.m("logits"), a.stream()))
                .extra("gradXp", B, (o, a) -> ((BanAttentionCuda) o).backward(mat(a, "xp", b * n, 8), mat(a, "yp", b * m, 8), a.mask(), a.n("batch"),
                        a.n("objects"), a.n("tokens"), a.m("attention"), a.m("gradAttention"), mat(a, "gradXp", b * n - 1, 8), mat(a, "gradYp", b * m, 8),
                        a.m("gradWeight"), a.m("gradBias"), false, a.stream()));
        return new Subject("BanAttention", false, false, (c, p) -> new BanAttentionCuda(op, c), new BanAttentionCpu(op), be -> {
            BanAttention.Backend a = (BanAttention.Backend) be;
            BanAttention.Result res = a.forward(xp, yp, mask, b, n, m);
            List<float[]> t = tensors(res.attention(), res.logits());
            t.addAll(a.backward(xp, yp, mask, ga, b, n, m).tensors());
            return t;
        }, dev);
    }
}
