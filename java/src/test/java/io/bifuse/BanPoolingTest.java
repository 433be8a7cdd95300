package io.bifuse;

import io.bifuse.cpu.BanPoolingCpu;
import static org.junit.jupiter.api.Assertions.*;

import io.bifuse.reference.BanPoolingReference;
import io.bifuse.testing.Stats;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * The CPU backend's shapes and semantics (group sums, masks, empty and single-object samples), its
 * agreement with the reference, and the API's argument checks. The CPU backend computes in float32
 * (GEMMs over objects, tokens or units): relative L2 ~1e-7 at these sizes, so 1e-5, the float32 backends'
 * bound, catches any wiring mistake (wrong tensor, wrong order, wrong group), which shows as O(1).
 */
class BanPoolingTest {
    static final double TOL = 1e-5;

    @ParameterizedTest(name = "B={0} N={1} M={2} K'={3} k={4} masked={5}")
    @CsvSource({"1,1,1,1,1,false", "2,3,4,6,3,false", "3,5,2,12,4,true", "2,7,14,9,9,true", "4,6,3,10,1,true"})
    void cpuMatchesReference(int batch, int objects, int tokens, int width, int group, boolean masked) {
        SplittableRandom r = new SplittableRandom(batch * 977L + objects * 31L + width);
        BanPooling op = BanPooling.of(width, group);
        float[] a = Stats.gaussian(r, batch * objects * tokens), x = Stats.gaussian(r, batch * objects * width);
        float[] y = Stats.gaussian(r, batch * tokens * width), g = Stats.gaussian(r, batch * op.outWidth());
        ObjectMask mask = masked ? randomCounts(r, batch, objects) : null;
        float[] f = new BanPoolingCpu(op).forward(a, x, y, mask, batch, objects, tokens);
        assertEquals(batch * width / group, f.length);
        assertTrue(Stats.relativeL2(f, BanPoolingReference.forward(op, a, x, y, mask, batch, objects, tokens)) < TOL);
        BanPooling.Gradients got = new BanPoolingCpu(op).backward(a, x, y, mask, g, batch, objects, tokens);
        BanPoolingReference.Grads ref = BanPoolingReference.backward(op, a, x, y, mask, g, batch, objects, tokens);
        assertEquals(a.length, got.da().length);
        assertEquals(x.length, got.dx().length);
        assertEquals(y.length, got.dy().length);
        assertTrue(Stats.relativeL2(got.da(), ref.da()) < TOL, "da");
        assertTrue(Stats.relativeL2(got.dx(), ref.dx()) < TOL, "dx");
        assertTrue(Stats.relativeL2(got.dy(), ref.dy()) < TOL, "dy");
        assertEquals(BanPooling.Gradients.NAMES.size(), got.tensors().size());
    }

    @Test void handComputedCase() {
        // One sample, N = 2 objects, M = 1 token, K' = 2, group 1: F[c] = Σ_i A[i,0]·X[i,c]·Y[0,c].
        BanPooling op = BanPooling.of(2, 1);
        float[] a = {0.25f, 0.75f}, x = {1, 2, 3, 4}, y = {10, 100};
        // c = 0: (0.25·1 + 0.75·3)·10 = 25;  c = 1: (0.25·2 + 0.75·4)·100 = 350
        assertArrayEquals(new float[] {25, 350}, new BanPoolingCpu(op).forward(a, x, y, null, 1, 2, 1));
        // group 2 sums both: 375
        assertArrayEquals(new float[] {375}, new BanPoolingCpu(BanPooling.of(2, 2)).forward(a, x, y, null, 1, 2, 1));
    }

    @Test void groupsSumAdjacentUnitsOfTheUngroupedOutput() {
        SplittableRandom r = new SplittableRandom(7);
        int batch = 3, objects = 4, tokens = 5, width = 12;
        float[] a = Stats.gaussian(r, batch * objects * tokens), x = Stats.gaussian(r, batch * objects * width), y = Stats.gaussian(r, batch * tokens * width);
        float[] full = new BanPoolingCpu(BanPooling.of(width, 1)).forward(a, x, y, null, batch, objects, tokens);
        for (int k : new int[] {2, 3, 4, 6, 12}) {
            float[] f = new BanPoolingCpu(BanPooling.of(width, k)).forward(a, x, y, null, batch, objects, tokens);
            assertEquals(batch * width / k, f.length);
            for (int b = 0; b < batch; b++) {
                for (int u = 0; u < width / k; u++) {
                    double s = 0;
                    for (int t = 0; t < k; t++) s += full[b * width + u * k + t];
                    assertEquals(s, f[b * (width / k) + u], 1e-5 * (1 + Math.abs(s)), "k=" + k + " b=" + b + " u=" + u);
                }
            }
        }
    }

    @Test void maskedObjectsContributeNothingAndGetZeroGradients() {
        // Padded objects with NONZERO attention and features: the output is that of the real objects alone.
        SplittableRandom r = new SplittableRandom(9);
        int batch = 3, objects = 5, tokens = 4, width = 6;
        BanPooling op = BanPooling.of(width, 2);
        int[] counts = {5, 2, 3};
        ObjectMask mask = ObjectMask.counts(counts, objects);
        float[] a = Stats.gaussian(r, batch * objects * tokens), x = Stats.gaussian(r, batch * objects * width), y = Stats.gaussian(r, batch * tokens * width);
        float[] g = Stats.gaussian(r, batch * op.outWidth());
        // The same inputs with the padded rows of A and X zeroed: without a mask they must give the same output.
        float[] a0 = a.clone(), x0 = x.clone();
        for (int b = 0; b < batch; b++) {
            for (int i = counts[b]; i < objects; i++) {
                for (int j = 0; j < tokens; j++) a0[(b * objects + i) * tokens + j] = 0;
                for (int c = 0; c < width; c++) x0[(b * objects + i) * width + c] = 0;
            }
        }
        float[] masked = new BanPoolingCpu(op).forward(a, x, y, mask, batch, objects, tokens);
        assertTrue(Stats.relativeL2(masked, BanPoolingReference.forward(op, a0, x0, y, null, batch, objects, tokens)) < TOL);
        BanPooling.Gradients gr = new BanPoolingCpu(op).backward(a, x, y, mask, g, batch, objects, tokens);
        BanPoolingReference.Grads zeroed = BanPoolingReference.backward(op, a0, x0, y, null, g, batch, objects, tokens);
        assertTrue(Stats.relativeL2(gr.dy(), zeroed.dy()) < TOL, "dy depends on the real objects only");
        for (int b = 0; b < batch; b++) {
            for (int i = counts[b]; i < objects; i++) {
                for (int j = 0; j < tokens; j++) assertEquals(0f, gr.da()[(b * objects + i) * tokens + j], 0f, "da padded b=" + b + " i=" + i);
                for (int c = 0; c < width; c++) assertEquals(0f, gr.dx()[(b * objects + i) * width + c], 0f, "dx padded b=" + b + " i=" + i);
            }
            for (int i = 0; i < counts[b]; i++) {
                double n = 0;
                for (int c = 0; c < width; c++) n += Math.abs(gr.dx()[(b * objects + i) * width + c]);
                assertTrue(n > 0, "a real object's dx row is not all zero");
            }
        }
        // A mask that skips a middle object (not only trailing padding).
        boolean[] real = new boolean[batch * objects];
        java.util.Arrays.fill(real, true);
        real[1] = false;
        real[objects + 3] = false;
        ObjectMask holes = ObjectMask.of(real, batch, objects);
        float[] ah = a.clone();
        for (int j = 0; j < tokens; j++) { ah[(0 * objects + 1) * tokens + j] = 0; ah[(1 * objects + 3) * tokens + j] = 0; }
        assertTrue(Stats.relativeL2(new BanPoolingCpu(op).forward(a, x, y, holes, batch, objects, tokens),
                BanPoolingReference.forward(op, ah, x, y, null, batch, objects, tokens)) < TOL);
    }

    @Test void emptySampleGivesZeroOutputAndZeroGradients() {
        SplittableRandom r = new SplittableRandom(11);
        int batch = 2, objects = 3, tokens = 2, width = 4;
        BanPooling op = BanPooling.of(width, 1);
        ObjectMask mask = ObjectMask.counts(new int[] {0, 3}, objects);
        float[] a = Stats.gaussian(r, batch * objects * tokens), x = Stats.gaussian(r, batch * objects * width), y = Stats.gaussian(r, batch * tokens * width);
        float[] g = Stats.gaussian(r, batch * width);
        float[] f = new BanPoolingCpu(op).forward(a, x, y, mask, batch, objects, tokens);
        for (int c = 0; c < width; c++) {
            assertEquals(0f, f[c], 0f, "empty sample's output");
            assertNotEquals(0f, f[width + c], "full sample's output");
        }
        BanPooling.Gradients gr = new BanPoolingCpu(op).backward(a, x, y, mask, g, batch, objects, tokens);
        // ±0: dF·0 keeps dF's sign
        for (int e = 0; e < objects * tokens; e++) assertEquals(0f, gr.da()[e], 0f);
        for (int e = 0; e < objects * width; e++) assertEquals(0f, gr.dx()[e], 0f);
        for (int e = 0; e < tokens * width; e++) assertEquals(0f, gr.dy()[e], 0f);
    }

    @Test void singleObjectSampleIsItsRowTimesTheAttentionWeightedTokens() {
        // N = 1 real object: F[c] = X[i0,c]·Σ_j A[i0,j]·Y[j,c] (computed here by hand).
        SplittableRandom r = new SplittableRandom(13);
        int objects = 4, tokens = 3, width = 5, i0 = 0;
        BanPooling op = BanPooling.of(width, 1);
        ObjectMask mask = ObjectMask.counts(new int[] {1}, objects);
        float[] a = Stats.gaussian(r, objects * tokens), x = Stats.gaussian(r, objects * width), y = Stats.gaussian(r, tokens * width);
        float[] f = new BanPoolingCpu(op).forward(a, x, y, mask, 1, objects, tokens);
        for (int c = 0; c < width; c++) {
            double s = 0;
            for (int j = 0; j < tokens; j++) s += (double) a[i0 * tokens + j] * y[j * width + c];
            assertEquals(x[i0 * width + c] * s, f[c], 1e-5);
        }
    }

    @Test void descriptorChecks() {
        assertEquals(1280, BanPooling.of(3840, 3).outWidth());
        assertEquals(3, BanPooling.of(3840, 3).group());
        assertEquals(BanPooling.of(6, 2), BanPooling.of(6, 2));
        expect("group: expected a divisor of width 10", () -> BanPooling.of(10, 3));
        expect("group: expected k >= 1", () -> BanPooling.of(10, 0));
        expect("width: expected K' >= 1", () -> BanPooling.of(0, 1));
    }

    @Test void argumentsAreCheckedByName() {
        BanPooling op = BanPooling.of(4, 2);
        int b = 2, n = 3, m = 2;
        float[] a = new float[b * n * m], x = new float[b * n * 4], y = new float[b * m * 4], g = new float[b * 2];
        expect("batch: expected >= 1", () -> new BanPoolingCpu(op).forward(a, x, y, null, 0, n, m));
        expect("objects: expected N >= 1", () -> new BanPoolingCpu(op).forward(a, x, y, null, b, 0, m));
        expect("tokens: expected M >= 1", () -> new BanPoolingCpu(op).forward(a, x, y, null, b, n, 0));
        expect("attention: expected B × N × M = 2 × 3 × 2 = 12 floats, got 11", () -> new BanPoolingCpu(op).forward(new float[11], x, y, null, b, n, m));
        expect("attention: expected", () -> new BanPoolingCpu(op).forward(null, x, y, null, b, n, m));
        expect("x: expected B × N × K' = 2 × 3 × 4 = 24 floats, got 20", () -> new BanPoolingCpu(op).forward(a, new float[20], y, null, b, n, m));
        expect("y: expected B × M × K' = 2 × 2 × 4", () -> new BanPoolingCpu(op).forward(a, x, new float[3], null, b, n, m));
        expect("mask: expected a mask for 2 samples × 3 objects, got 2 × 4", () -> new BanPoolingCpu(op).forward(a, x, y, ObjectMask.all(2, 4), b, n, m));
        expect("gradOut: expected 2 × 2 = 4 floats, got 3", () -> new BanPoolingCpu(op).backward(a, x, y, null, new float[3], b, n, m));
        expect("x: expected", () -> new BanPoolingCpu(op).backward(a, null, y, null, g, b, n, m));
        expect("batch: expected B·N·M, B·N·K' and B·M·K' < 2^31", () -> BanPooling.of(1 << 16, 1).checkSizes(1 << 10, 1 << 10, 1));
    }

    private static ObjectMask randomCounts(SplittableRandom r, int batch, int objects) {
        int[] c = new int[batch];
        for (int b = 0; b < batch; b++) c[b] = r.nextInt(objects + 1);
        c[0] = Math.min(objects, 1); // a single-object sample
        return ObjectMask.counts(c, objects);
    }

    static void expect(String message, Runnable call) {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, call::run);
        assertTrue(e.getMessage().startsWith(message.split(":")[0] + ":"), "'" + e.getMessage() + "' does not start with the argument's name");
        assertTrue(e.getMessage().contains(message), "'" + e.getMessage() + "' lacks '" + message + "'");
    }
}
