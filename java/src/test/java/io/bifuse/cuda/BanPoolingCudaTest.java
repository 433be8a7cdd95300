package io.bifuse.cuda;

import static io.bifuse.cuda.DeviceOpContractTest.B;
import static io.bifuse.cuda.DeviceOpContractTest.F;
import static io.bifuse.cuda.DeviceOpContractTest.gaussian;
import static io.bifuse.cuda.DeviceOpContractTest.mat;
import static io.bifuse.cuda.DeviceOpContractTest.tensors;
import static org.junit.jupiter.api.Assertions.*;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.bifuse.BanPooling;
import io.bifuse.ObjectMask;
import io.bifuse.cpu.BanPoolingCpu;
import io.bifuse.cuda.DeviceOpContractTest.DeviceForm;
import io.bifuse.cuda.DeviceOpContractTest.Subject;
import io.bifuse.reference.BanPoolingReference;
import io.bifuse.testing.Stats;
import java.util.ArrayList;
import java.util.Arrays;
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
 * {@code cuda/BanPooling.cu} against the float64 reference: at the spec's sizes (B = 256, N ∈ {36, 100},
 * M = 14; K' = 1280 with group 1 as each BAN glimpse uses it, K' = 3840 with group 3) and at odd small
 * sizes (N·M beyond one 32 × 16 tile, M > 16 so dX accumulates over token tiles, K' one past the
 * 128-column block, a group larger than the block), with the layouts the BAN block uses: the maps as
 * glimpse g of a {@code B × G × N × M} tensor ({@code attStride = G·N·M}), projections as column slices
 * of wider rows ({@code ld > K'}), and {@code throughRelu}. Masks: none, counts with an empty and a
 * single-object sample (the rest 10..N real objects, as a detector gives), and holes.
 *
 * <p>Every output and gradient buffer is NaN-poisoned before the run: each element the op must write
 * fails if unwritten, and what it must NOT write (the other glimpses' maps of {@code gradAttention},
 * the columns past K' of {@code gradX}/{@code gradY}) must still be NaN afterwards. Padded objects'
 * rows of the inputs are NaN too (they must not be read), and their gradient rows must be exact zeros.
 *
 * <p>Tolerance: relative L2 <= 1e-5 per tensor (FP32 kernels; sums of at most N·M = 1400 products per
 * output and K' = 3840 per dA entry, which the emulation {@code native-build/emu/ban_pooling_emu.cpp}
 * measures at 5e-8..1e-6; an indexing mistake gives ~1). Skipped, with the reason, without a GPU;
 * cuBLAS is not needed. Under {@code -Dbifuse.sanitize=true} the spec's sizes skip (compute-sanitizer).
 */
@Tag("gpu")
class BanPoolingCudaTest {
    static final double TOL = 1e-5;
    static final boolean SANITIZE = Boolean.getBoolean("bifuse.sanitize");
    static CudaContext ctx;

    @BeforeAll static void open() {
        if (Cuda.isAvailable()) ctx = CudaContext.open(0);
    }

    @BeforeEach void requireGpu() {
        RequireGpu.device();
    }

    @AfterAll static void close() {
        if (ctx != null) ctx.close();
        ctx = null;
    }

    enum MaskKind { NONE, COUNTS, HOLES }

    /** One case: sizes, the glimpse layout, padding of the row strides, the mask, ReLU. */
    record Case(int batch, int objects, int tokens, int width, int group, int glimpses, int glimpse, int xpad, int ypad, MaskKind mask,
                boolean relu) {
        int ldx() { return width + xpad; }
        int ldy() { return width + ypad; }
        int ldgx() { return width + (xpad == 0 ? 0 : xpad + 1); }
        int ldgy() { return width + (ypad == 0 ? 0 : ypad + 2); }
        long map() { return (long) objects * tokens; }
        long attStride() { return glimpses * map(); }
        String label() {
            return "B=" + batch + " N=" + objects + " M=" + tokens + " K'=" + width + " k=" + group + " glimpse " + glimpse + "/" + glimpses
                    + " ldx=" + ldx() + " ldy=" + ldy() + " " + mask + (relu ? " relu" : "");
        }
    }

    // The first four rows are the spec's sizes; then odd small sizes and every layout.
    @ParameterizedTest(name = "B={0} N={1} M={2} K'={3} k={4} G={5} g={6} xpad={7} ypad={8} {9} relu={10}")
    @CsvSource({"256,36,14,1280,1,8,3,2560,0,COUNTS,true", "256,100,14,1280,1,1,0,0,0,COUNTS,false",
                "256,36,14,3840,3,1,0,0,0,NONE,false", "256,100,14,3840,3,2,1,0,0,COUNTS,true",
                "1,1,1,1,1,1,0,0,0,NONE,false", "3,5,14,12,1,1,0,0,0,COUNTS,false", "4,36,14,20,1,8,5,3,7,COUNTS,true",
                "3,40,17,130,1,2,1,0,2,HOLES,false", "2,33,20,129,3,1,0,5,0,NONE,true", "2,17,33,260,130,3,2,1,1,COUNTS,false",
                "2,7,3,256,256,1,0,0,0,HOLES,true", "5,100,14,33,1,2,0,0,0,COUNTS,false", "3,9,5,384,3,1,0,0,0,HOLES,false",
                "2,64,16,128,2,1,0,0,0,NONE,false", "3,1,19,200,5,4,3,0,0,COUNTS,true", "2,3,4,6,3,1,0,0,0,NONE,false"})
    void matchesReference(int specBatch, int objects, int tokens, int width, int group, int glimpses, int glimpse, int xpad, int ypad,
                          MaskKind mask, boolean relu) {
        assumeTrue(!SANITIZE || specBatch <= 8, "under compute-sanitizer only B <= 8");
        int batch = SimSizes.batch(specBatch);
        Case c = new Case(batch, objects, tokens, width, group, glimpses, glimpse, xpad, ypad, mask, relu);
        long seed = Stats.freshSeed();
        check(c, seed);
    }

    /** Runs a case on fresh inputs from {@code seed} and checks every result (see the class comment). */
    static void check(Case c, long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        BanPooling op = BanPooling.of(c.width(), c.group());
        Inputs in = Inputs.random(c, r);
        Run run = run(op, c, in);
        String what = c.label() + " seed " + seed;
        double[] f = BanPoolingReference.forward(op, in.att, in.x, in.y, in.mask, c.batch(), c.objects(), c.tokens());
        BanPoolingReference.Grads g = BanPoolingReference.backward(op, in.att, in.x, in.y, in.mask, in.go, c.batch(), c.objects(), c.tokens());
        double[] dx = g.dx(), dy = g.dy();
        if (c.relu()) { // gradients of the pre-activations: times [x > 0], [y > 0]
            for (int e = 0; e < dx.length; e++) if (!(in.x[e] > 0)) dx[e] = 0;
            for (int e = 0; e < dy.length; e++) if (!(in.y[e] > 0)) dy[e] = 0;
        }
        assertBelow(Stats.relativeL2(run.out, f), "forward " + what);
        assertBelow(Stats.relativeL2(run.da, g.da()), "da " + what);
        assertBelow(Stats.relativeL2(run.dx, dx), "dx " + what);
        assertBelow(Stats.relativeL2(run.dy, dy), "dy " + what);
        assertTrue(run.untouched, "wrote outside its glimpse or past column K': " + what);
        if (in.mask != null) {
            for (int b = 0; b < c.batch(); b++) {
                for (int i = 0; i < c.objects(); i++) {
                    if (in.mask.isReal(b, i)) continue;
                    for (int j = 0; j < c.tokens(); j++) assertEquals(0f, run.da[(b * c.objects() + i) * c.tokens() + j], 0f, "padded da " + what);
                    for (int k = 0; k < c.width(); k++) assertEquals(0f, run.dx[(b * c.objects() + i) * c.width() + k], 0f, "padded dx " + what);
                }
            }
        }
    }

    @Test void emptyAndSingleObjectSamples() {
        // All samples empty: zeros everywhere (not NaN: ban-vqa's softmax would give NaN maps, bifuse zero ones).
        BanPooling op = BanPooling.of(8, 2);
        SplittableRandom r = new SplittableRandom(3);
        int b = 3, n = 4, m = 2;
        float[] a = Stats.gaussian(r, b * n * m), x = Stats.gaussian(r, b * n * 8), y = Stats.gaussian(r, b * m * 8), g = Stats.gaussian(r, b * 4);
        try (BanPoolingCuda cuda = new BanPoolingCuda(op, ctx)) {
            ObjectMask none = ObjectMask.counts(new int[] {0, 0, 0}, n);
            for (float v : cuda.forward(a, x, y, none, b, n, m)) assertEquals(0f, v, 0f);
            for (float[] t : cuda.backward(a, x, y, none, g, b, n, m).tensors()) for (float v : t) assertEquals(0f, v, 0f);
            // One object: f = x[i0] ⊙ (A[i0] · Y), the reference's rows.
            ObjectMask single = ObjectMask.counts(new int[] {1, 1, 1}, n);
            float[] got = cuda.forward(a, x, y, single, b, n, m);
            assertBelow(Stats.relativeL2(got, BanPoolingReference.forward(op, a, x, y, single, b, n, m)), "single-object forward");
        }
    }

    @Test void hostConveniencesMatchTheDevicePath() {
        Case c = new Case(3, 11, 5, 30, 3, 1, 0, 0, 0, MaskKind.COUNTS, false);
        SplittableRandom r = new SplittableRandom(4);
        BanPooling op = BanPooling.of(c.width(), c.group());
        Inputs in = Inputs.random(c, r);
        try (BanPoolingCuda cuda = new BanPoolingCuda(op, ctx)) {
            Run dev = run(op, c, in);
            assertArrayEquals(dev.out, cuda.forward(in.att, in.x, in.y, in.mask, c.batch(), c.objects(), c.tokens()));
            BanPooling.Gradients host = cuda.backward(in.att, in.x, in.y, in.mask, in.go, c.batch(), c.objects(), c.tokens());
            assertArrayEquals(dev.da, host.da());
            assertArrayEquals(dev.dx, host.dx());
            assertArrayEquals(dev.dy, host.dy());
        }
    }

    @Test void bitIdenticalAcrossRuns() {
        Case c = new Case(SANITIZE ? 4 : SimSizes.batch(64), 100, 14, 1280, 1, 2, 1, 0, 0, MaskKind.COUNTS, true);
        SplittableRandom r = new SplittableRandom(5);
        BanPooling op = BanPooling.of(c.width(), c.group());
        Inputs in = Inputs.random(c, r);
        Run a = run(op, c, in), b = run(op, c, in);
        assertArrayEquals(a.out, b.out);
        assertArrayEquals(a.da, b.da);
        assertArrayEquals(a.dx, b.dx);
        assertArrayEquals(a.dy, b.dy);
    }

    @Test void badDeviceArgumentsAreRejectedBeforeAnyLaunch() {
        BanPooling op = BanPooling.of(6, 3);
        int b = 2, n = 3, m = 2, w = 6;
        List<DeviceBuffer> bufs = new ArrayList<>();
        try (CudaStream s = CudaStream.create(ctx); BanPoolingCuda cuda = new BanPoolingCuda(op, ctx);
             DeviceObjectMask mask = DeviceObjectMask.upload(ctx, ObjectMask.counts(new int[] {1, 3}, n));
             DeviceObjectMask wrong = DeviceObjectMask.upload(ctx, ObjectMask.all(b, n + 1))) {
            try {
                DeviceBuffer a = keep(bufs, DeviceBuffer.allocateFloats(ctx, b * n * m)), x = keep(bufs, DeviceBuffer.allocateFloats(ctx, b * n * w));
                DeviceBuffer y = keep(bufs, DeviceBuffer.allocateFloats(ctx, b * m * w)), out = keep(bufs, DeviceBuffer.allocateFloats(ctx, b * 2));
                DeviceBuffer g = keep(bufs, DeviceBuffer.allocateFloats(ctx, b * 2)), ga = keep(bufs, DeviceBuffer.allocateFloats(ctx, b * n * m));
                DeviceBuffer gx = keep(bufs, DeviceBuffer.allocateFloats(ctx, b * n * w)), gy = keep(bufs, DeviceBuffer.allocateFloats(ctx, b * m * w));
                DeviceBuffer closed = DeviceBuffer.allocateFloats(ctx, b * n * w);
                closed.close();
                for (DeviceBuffer d : List.of(out, ga, gx, gy)) d.fill(7f);
                DeviceBuffer wide = keep(bufs, DeviceBuffer.allocateFloats(ctx, 2L * b * n * m));
                DeviceMatrix ma = DeviceMatrix.of("attention", a, b, n * m), mx = DeviceMatrix.of("x", x, b * n, w), my = DeviceMatrix.of("y", y, b * m, w);
                DeviceMatrix mga = DeviceMatrix.of("gradAttention", ga, b, n * m), mgx = DeviceMatrix.of("gradX", gx, b * n, w);
                DeviceMatrix mgy = DeviceMatrix.of("gradY", gy, b * m, w);
                expect("batch: expected >= 1", () -> cuda.forward(ma, mx, my, null, 0, n, m, out, s));
                expect("objects: expected N >= 1", () -> cuda.forward(ma, mx, my, null, b, 0, m, out, s));
                expect("tokens: expected M >= 1", () -> cuda.forward(ma, mx, my, null, b, n, 0, out, s));
                // A matrix whose memory is too small for its shape and stride cannot even be made.
                expect("attention: 2 × 6 floats with row stride 12 need 72 bytes, the memory has 48", () -> new DeviceMatrix("attention", a, b, n * m, 12));
                expect("x: 6 × 6 floats with row stride 7 need 164 bytes", () -> new DeviceMatrix("x", x, b * n, w, 7));
                expect("attention: expected 2 × 6, got 2 × 5", () -> cuda.forward(DeviceMatrix.of("attention", a, b, 5), mx, my, null, b, n, m, out, s));
                expect("attention: expected 2 × 6, got 1 × 6", () -> cuda.forward(ma.rows(0, 1), mx, my, null, b, n, m, out, s));
                expect("x: expected 6 × 6, got 6 × 5", () -> cuda.forward(ma, DeviceMatrix.of("x", x, b * n, 5), my, null, b, n, m, out, s));
                expect("x: the device buffer is closed", () -> cuda.forward(ma, DeviceMatrix.of("x", closed, b * n, w), my, null, b, n, m, out, s));
                expect("y: expected a DeviceMatrix of 4 × 6, got null", () -> cuda.forward(ma, mx, null, null, b, n, m, out, s));
                expect("y: expected 4 × 6, got 3 × 6", () -> cuda.forward(ma, mx, my.rows(0, 3), null, b, n, m, out, s));
                expect("mask: expected a mask for 2 samples × 3 objects, got 2 × 4", () -> cuda.forward(ma, mx, my, wrong, b, n, m, out, s));
                expect("out: expected at least 2 × 2 floats", () -> cuda.forward(ma, mx, my, mask, b, n, m, DeviceMemory.wrap(out.address(), 12), s));
                expect("out: expected a 4-byte aligned address", () -> cuda.forward(ma, mx, my, mask, b, n, m, DeviceMemory.wrap(out.address() + 2, 16), s));
                expect("stream: expected a CudaStream", () -> cuda.forward(ma, mx, my, mask, b, n, m, out, null));
                expect("gradOut: expected at least 2 × 2 floats",
                        () -> cuda.backward(ma, mx, my, mask, b, n, m, DeviceMemory.wrap(g.address(), 8), mga, mgx, mgy, false, s));
                expect("gradAttention: expected a DeviceMatrix of 2 × 6, got null", () -> cuda.backward(ma, mx, my, mask, b, n, m, g, null, mgx, mgy, false, s));
                expect("gradAttention: expected the row stride of attention (6 floats), got 12",
                        () -> cuda.backward(ma, mx, my, mask, b, n, m, g, new DeviceMatrix("gradAttention", wide, b, n * m, 12), mgx, mgy, false, s));
                expect("gradX: expected 6 × 6, got 6 × 2", () -> cuda.backward(ma, mx, my, mask, b, n, m, g, mga, mgx.columns(0, 2), mgy, false, s));
                expect("gradY: the device buffer is closed",
                        () -> cuda.backward(ma, mx, my, mask, b, n, m, g, mga, mgx, DeviceMatrix.of("gradY", closed, b * m, w), false, s));
                expect("mask: the mask is closed", () -> {
                    DeviceObjectMask shut = DeviceObjectMask.upload(ctx, ObjectMask.all(b, n));
                    shut.close();
                    cuda.backward(ma, mx, my, shut, b, n, m, g, mga, mgx, mgy, false, s);
                });
                expect("stream: expected a CudaStream", () -> cuda.backward(ma, mx, my, mask, b, n, m, g, mga, mgx, mgy, false, null));
                // Nothing was queued by any of the rejected calls: the outputs still hold the fill.
                for (DeviceBuffer d : List.of(out, ga, gx, gy)) {
                    float[] v = new float[(int) (d.byteSize() / 4)];
                    d.read(v, s);
                    for (float e : v) assertEquals(7f, e);
                }
            } finally {
                bufs.forEach(DeviceBuffer::close);
            }
        }
        expect("op: expected a BanPooling", () -> new BanPoolingCuda(null, ctx));
        expect("context: expected an open CudaContext", () -> new BanPoolingCuda(BanPooling.of(2, 1), null));
    }

    /** Dense inputs (what the reference takes), the mask, and gradOut. */
    record Inputs(float[] att, float[] x, float[] y, float[] go, ObjectMask mask) {
        static Inputs random(Case c, SplittableRandom r) {
            int b = c.batch(), n = c.objects(), m = c.tokens(), w = c.width();
            float[] x = Stats.gaussian(r, b * n * w), y = Stats.gaussian(r, b * m * w);
            if (c.relu()) {
                for (int e = 0; e < x.length; e++) x[e] = Math.max(0f, x[e]);
                for (int e = 0; e < y.length; e++) y[e] = Math.max(0f, y[e]);
            }
            ObjectMask mask = switch (c.mask()) {
                case NONE -> null;
                case COUNTS -> {
                    int[] counts = new int[b];
                    int lo = Math.min(10, n);
                    for (int s = 0; s < b; s++) counts[s] = lo + r.nextInt(n - lo + 1);
                    counts[0] = 0;             // an empty sample
                    if (b > 1) counts[1] = 1;  // a single-object sample
                    yield ObjectMask.counts(counts, n);
                }
                case HOLES -> {
                    boolean[] real = new boolean[b * n];
                    for (int e = 0; e < real.length; e++) real[e] = r.nextInt(3) != 0;
                    yield ObjectMask.of(real, b, n);
                }
            };
            return new Inputs(Stats.gaussian(r, b * n * m), x, y, Stats.gaussian(r, b * c.width() / c.group()), mask);
        }
    }

    /** Dense results, and whether everything the op must not write still holds the NaN poison. */
    record Run(float[] out, float[] da, float[] dx, float[] dy, boolean untouched) {}

    /**
     * Lays the inputs out as the case says (maps at glimpse g of B × G × N × M, rows of ld floats; the
     * other glimpses, the extra columns and the padded objects' rows NaN), poisons every output, runs
     * forward and backward on a private stream, and extracts the dense results.
     */
    static Run run(BanPooling op, Case c, Inputs in) {
        int b = c.batch(), n = c.objects(), m = c.tokens(), w = c.width(), gl = c.glimpses(), g0 = c.glimpse();
        int ldx = c.ldx(), ldy = c.ldy(), ldgx = c.ldgx(), ldgy = c.ldgy();
        float[] att = new float[b * gl * n * m], x = new float[b * n * ldx], y = new float[b * m * ldy];
        Arrays.fill(att, Float.NaN);
        Arrays.fill(x, Float.NaN);
        Arrays.fill(y, Float.NaN);
        for (int s = 0; s < b; s++) {
            for (int i = 0; i < n; i++) {
                if (in.mask != null && !in.mask.isReal(s, i)) continue; // padded rows stay NaN: they must not be read
                System.arraycopy(in.att, (s * n + i) * m, att, ((s * gl + g0) * n + i) * m, m);
                System.arraycopy(in.x, (s * n + i) * w, x, (s * n + i) * ldx, w);
            }
            for (int j = 0; j < m; j++) System.arraycopy(in.y, (s * m + j) * w, y, (s * m + j) * ldy, w);
        }
        long offset = 4L * g0 * n * m;
        try (CudaStream st = CudaStream.create(ctx); BanPoolingCuda cuda = new BanPoolingCuda(op, ctx);
             DeviceBuffer da = DeviceBuffer.of(ctx, att); DeviceBuffer dx = DeviceBuffer.of(ctx, x); DeviceBuffer dy = DeviceBuffer.of(ctx, y);
             DeviceBuffer dg = DeviceBuffer.of(ctx, in.go);
             DeviceObjectMask mask = in.mask == null ? null : DeviceObjectMask.upload(ctx, in.mask);
             DeviceBuffer out = DeviceBuffer.allocateFloats(ctx, (long) b * op.outWidth());
             DeviceBuffer ga = DeviceBuffer.allocateFloats(ctx, att.length);
             DeviceBuffer gx = DeviceBuffer.allocateFloats(ctx, (long) b * n * ldgx); DeviceBuffer gy = DeviceBuffer.allocateFloats(ctx, (long) b * m * ldgy)) {
            for (DeviceBuffer d : List.of(out, ga, gx, gy)) d.fill(Float.NaN);
            DeviceMemory a0 = da.slice(offset, da.byteSize() - offset), ga0 = ga.slice(offset, ga.byteSize() - offset);
            int stride = Math.toIntExact(c.attStride());
            DeviceMatrix ma = new DeviceMatrix("attention", a0, b, n * m, stride), mx = new DeviceMatrix("x", dx, b * n, w, ldx);
            DeviceMatrix my = new DeviceMatrix("y", dy, b * m, w, ldy);
            cuda.forward(ma, mx, my, mask, b, n, m, out, st);
            cuda.backward(ma, mx, my, mask, b, n, m, dg, new DeviceMatrix("gradAttention", ga0, b, n * m, stride), new DeviceMatrix("gradX", gx, b * n, w, ldgx),
                    new DeviceMatrix("gradY", gy, b * m, w, ldgy), c.relu(), st);
            float[] fo = new float[b * op.outWidth()], gaAll = new float[att.length], gxAll = new float[b * n * ldgx], gyAll = new float[b * m * ldgy];
            out.read(fo, st);
            ga.read(gaAll, st);
            gx.read(gxAll, st);
            gy.read(gyAll, st);
            io.bifuse.testing.DeviceRuns.unchanged(st, "attention", da, att, "x", dx, x, "y", dy, y, "gradOut", dg, in.go);
            float[] rda = new float[b * n * m], rdx = new float[b * n * w], rdy = new float[b * m * w];
            boolean untouched = true;
            for (int s = 0; s < b; s++) {
                for (int q = 0; q < gl; q++) {
                    int from = (s * gl + q) * n * m;
                    if (q == g0) System.arraycopy(gaAll, from, rda, s * n * m, n * m);
                    else for (int e = 0; e < n * m; e++) untouched &= isPoison(gaAll[from + e]);
                }
                for (int i = 0; i < n; i++) {
                    int row = (s * n + i) * ldgx;
                    System.arraycopy(gxAll, row, rdx, (s * n + i) * w, w);
                    for (int k = w; k < ldgx; k++) untouched &= isPoison(gxAll[row + k]);
                }
                for (int j = 0; j < m; j++) {
                    int row = (s * m + j) * ldgy;
                    System.arraycopy(gyAll, row, rdy, (s * m + j) * w, w);
                    for (int k = w; k < ldgy; k++) untouched &= isPoison(gyAll[row + k]);
                }
            }
            return new Run(fo, rda, rdx, rdy, untouched);
        }
    }

    private static boolean isPoison(float v) { return Float.floatToRawIntBits(v) == Float.floatToRawIntBits(Float.NaN); }

    static void assertBelow(double err, String what) {
        assertTrue(err <= TOL, what + ": relative L2 " + err + " > " + TOL);
    }

    static void expect(String message, Runnable call) {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, call::run);
        assertTrue(e.getMessage().contains(message), "'" + e.getMessage() + "' lacks '" + message + "'");
    }

    private static DeviceBuffer keep(List<DeviceBuffer> l, DeviceBuffer b) {
        l.add(b);
        return b;
    }

    /**
     * This op's instance of the {@link DeviceOpContractTest} testbed: a mask with a one-object row, the
     * forward also run without it; its calls take {@link DeviceMatrix} arguments, so matrices of the wrong shape
     * are refusals of its own.
     */
    static Subject contractSubject(SplittableRandom r) {
        BanPooling op = BanPooling.of(6, 2);
        int b = 3, n = 4, m = 3;
        ObjectMask mask = ObjectMask.counts(new int[] {4, 1, 3}, n);
        float[] att = gaussian(r, b * n * m), x = gaussian(r, b * n * 6), y = gaussian(r, b * m * 6), g = gaussian(r, b * 3);
        int nm = n * m, w = 6;
        DeviceForm dev = new DeviceForm()
                .call(F, (o, a) -> ((BanPoolingCuda) o).forward(mat(a, "attention", b, nm), mat(a, "x", b * n, w), mat(a, "y", b * m, w), a.mask(),
                        a.n("batch"), a.n("objects"), a.n("tokens"), a.m("out"), a.stream()))
                .call(B, (o, a) -> ((BanPoolingCuda) o).backward(mat(a, "attention", b, nm), mat(a, "x", b * n, w), mat(a, "y", b * m, w), a.mask(),
                        a.n("batch"), a.n("objects"), a.n("tokens"), a.m("gradOut"), mat(a, "gradAttention", b, nm), mat(a, "gradX", b * n, w),
                        mat(a, "gradY", b * m, w), false, a.stream()))
                .size("batch", b).size("objects", n).size("tokens", m).mask(mask)
                .in("attention", att, F, B).in("x", x, F, B).in("y", y, F, B).in("gradOut", g, B).out("out", b * 3, F)
                .out("gradAttention", b * n * m, B).out("gradX", b * n * 6, B).out("gradY", b * m * 6, B)
                // matrices of the wrong shape (their memory large enough): named by the op
                .extra("attention", F, (o, a) -> ((BanPoolingCuda) o).forward(mat(a, "attention", b, nm - 1), mat(a, "x", b * n, w),
                        mat(a, "y", b * m, w), a.mask(), a.n("batch"), a.n("objects"), a.n("tokens"), a.m("out"), a.stream()))
                .extra("x", F, (o, a) -> ((BanPoolingCuda) o).forward(mat(a, "attention", b, nm), mat(a, "x", b * n, w - 1),
                        mat(a, "y", b * m, w), a.mask(), a.n("batch"), a.n("objects"), a.n("tokens"), a.m("out"), a.stream()))
                .extra("gradY", B, (o, a) -> ((BanPoolingCuda) o).backward(mat(a, "attention", b, nm), mat(a, "x", b * n, w), mat(a, "y", b * m, w),
                        a.mask(), a.n("batch"), a.n("objects"), a.n("tokens"), a.m("gradOut"), mat(a, "gradAttention", b, nm),
                        mat(a, "gradX", b * n, w), mat(a, "gradY", b * m - 1, w), false, a.stream()));
        return new Subject("BanPooling", false, false, (c, p) -> new BanPoolingCuda(op, c), new BanPoolingCpu(op), be -> {
            BanPooling.Backend p = (BanPooling.Backend) be;
            List<float[]> t = tensors(p.forward(att, x, y, mask, b, n, m), p.forward(att, x, y, null, b, n, m));
            t.addAll(p.backward(att, x, y, mask, g, b, n, m).tensors());
            return t;
        }, dev);
    }
}
