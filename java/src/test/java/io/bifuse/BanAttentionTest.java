package io.bifuse;

import io.bifuse.cpu.BanAttentionCpu;
import static org.junit.jupiter.api.Assertions.*;

import io.bifuse.reference.BanAttentionReference;
import io.bifuse.testing.Stats;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * The CPU backend against the reference, the mask's semantics, and the API's argument checks. The CPU
 * backend computes in float32 (GEMM logits over K, softmax sums in double): relative L2 ~1e-7 at these
 * sizes; 1e-5, the float32 backends' bound, catches any wiring mistake (wrong tensor, wrong order, wrong
 * mask), which shows as O(1). BanAttentionCpuTest checks larger sizes, determinism and threads.
 */
class BanAttentionTest {
    static final double TOL = 1e-5;

    @ParameterizedTest(name = "B={0} N={1} M={2} K={3} G={4} mask={5}")
    @CsvSource({"1,1,1,1,1,none", "2,3,4,5,2,none", "3,5,3,7,3,counts", "4,4,2,6,2,zeroRows", "2,9,14,12,8,counts"})
    void cpuMatchesReference(int batch, int objects, int tokens, int width, int glimpses, String maskKind) {
        SplittableRandom r = new SplittableRandom(batch * 131L + objects);
        BanAttention op = BanAttention.random(glimpses, width, r.nextLong());
        float[] xp = Stats.gaussian(r, batch * objects * width), yp = Stats.gaussian(r, batch * tokens * width);
        ObjectMask mask = mask(maskKind, r, xp, batch, objects, width);
        float[] ga = Stats.gaussian(r, batch * glimpses * objects * tokens);
        BanAttentionReference.Result ref = BanAttentionReference.forward(op, xp, yp, mask, batch, objects, tokens);
        BanAttention.Result got = new BanAttentionCpu(op).forward(xp, yp, mask, batch, objects, tokens);
        assertTrue(Stats.relativeL2(got.attention(), ref.attention()) < TOL, "attention");
        assertLogits(got.logits(), ref.logits(), TOL, "logits");
        List<float[]> gt = new BanAttentionCpu(op).backward(xp, yp, mask, ga, batch, objects, tokens).tensors();
        List<double[]> rt = BanAttentionReference.backward(op, xp, yp, mask, ga, batch, objects, tokens).tensors();
        Stats.assertEachBelow(op.gradientNames(), gt, rt, TOL);
    }

    @Test void shapesAndNames() {
        SplittableRandom r = new SplittableRandom(1);
        int b = 2, n = 3, m = 4, k = 5, g = 2;
        BanAttention op = BanAttention.random(g, k, 7);
        assertEquals(g, op.glimpses());
        assertEquals(k, op.width());
        float[] xp = Stats.gaussian(r, b * n * k), yp = Stats.gaussian(r, b * m * k);
        BanAttention.Result res = new BanAttentionCpu(op).forward(xp, yp, null, b, n, m);
        assertEquals(b * g * n * m, res.attention().length);
        assertEquals(b * g * n * m, res.logits().length);
        BanAttention.Gradients gr = new BanAttentionCpu(op).backward(xp, yp, null, Stats.gaussian(r, b * g * n * m), b, n, m);
        assertEquals(b * n * k, gr.dxp().length);
        assertEquals(b * m * k, gr.dyp().length);
        assertEquals(g * k, gr.logits().weight().length);
        assertArrayEquals(new float[g], gr.logits().bias(), "the bias gradient is exactly zero");
        assertEquals(List.of("dxp", "dyp", "logits.weight", "logits.bias"), op.gradientNames());
        BanAttention noBias = BanAttention.of(Linear.random(g, k, false, 3));
        assertNull(new BanAttentionCpu(noBias).backward(xp, yp, null, new float[b * g * n * m], b, n, m).logits().bias());
        assertEquals(List.of("dxp", "dyp", "logits.weight"), noBias.gradientNames());
        assertEquals("BanAttention[G=2, K=5]", op.toString());
        assertEquals(BanAttention.random(g, k, 7), op);
        assertEquals(Linear.random(g, k, true, 7), op.logits());
    }

    @Test void softmaxIsOverTheFlattenedMap() {
        // ban-vqa: softmax over the N·M map of each (b, g), not per object row: the whole map sums to 1, the rows do not.
        SplittableRandom r = new SplittableRandom(2);
        int b = 3, n = 5, m = 4, k = 6, g = 2;
        BanAttention op = BanAttention.random(g, k, 9);
        float[] att = new BanAttentionCpu(op).forward(Stats.gaussian(r, b * n * k), Stats.gaussian(r, b * m * k), null, b, n, m).attention();
        boolean rowNotOne = false;
        for (int map = 0; map < b * g; map++) {
            double s = 0;
            for (int i = 0; i < n; i++) {
                double row = 0;
                for (int j = 0; j < m; j++) {
                    float a = att[(map * n + i) * m + j];
                    assertTrue(a > 0 && a < 1);
                    row += a;
                }
                rowNotOne |= Math.abs(row - 1) > 0.05;
                s += row;
            }
            assertEquals(1, s, 1e-6, "map " + map);
        }
        assertTrue(rowNotOne, "every object row sums to 1: a per-row softmax?");
    }

    @Test void maskedObjectsGetZeroAttentionAndZeroGradient() {
        SplittableRandom r = new SplittableRandom(3);
        int b = 2, n = 6, m = 3, k = 5, g = 3;
        BanAttention op = BanAttention.random(g, k, 11);
        float[] xp = Stats.gaussian(r, b * n * k), yp = Stats.gaussian(r, b * m * k);
        ObjectMask mask = ObjectMask.counts(new int[] {4, 2}, n);
        BanAttention.Result res = new BanAttentionCpu(op).forward(xp, yp, mask, b, n, m);
        BanAttention.Gradients gr = new BanAttentionCpu(op).backward(xp, yp, mask, Stats.gaussian(r, b * g * n * m), b, n, m);
        for (int bb = 0; bb < b; bb++) {
            for (int i = mask.count(bb); i < n; i++) {
                for (int gg = 0; gg < g; gg++) {
                    for (int j = 0; j < m; j++) {
                        int at = ((bb * g + gg) * n + i) * m + j;
                        assertEquals(0f, res.attention()[at]);
                        assertEquals(Float.NEGATIVE_INFINITY, res.logits()[at]);
                    }
                }
                for (int kk = 0; kk < k; kk++) assertEquals(0f, gr.dxp()[(bb * n + i) * k + kk]);
            }
        }
        // The padded rows' content does not matter: change it, and nothing changes.
        float[] other = xp.clone();
        for (int i = 4 * k; i < n * k; i++) other[i] = 1e3f;
        assertArrayEquals(res.attention(), new BanAttentionCpu(op).forward(other, yp, mask, b, n, m).attention());
        // A sample's maps with padding equal those of the same sample cut to its real objects.
        float[] cut = java.util.Arrays.copyOfRange(xp, n * k, n * k + 2 * k), cutY = java.util.Arrays.copyOfRange(yp, m * k, 2 * m * k);
        float[] alone = new BanAttentionCpu(op).forward(cut, cutY, null, 1, 2, m).attention();
        for (int gg = 0; gg < g; gg++) {
            for (int e = 0; e < 2 * m; e++) assertEquals(alone[gg * 2 * m + e], res.attention()[((g + gg) * n) * m + e], 1e-7f);
        }
    }

    @Test void aFullyMaskedSampleGetsAnAllZeroMapAndZeroGradients() {
        SplittableRandom r = new SplittableRandom(4);
        int b = 3, n = 4, m = 3, k = 5, g = 2;
        BanAttention op = BanAttention.random(g, k, 13);
        float[] xp = Stats.gaussian(r, b * n * k), yp = Stats.gaussian(r, b * m * k), ga = Stats.gaussian(r, b * g * n * m);
        ObjectMask mask = ObjectMask.counts(new int[] {3, 0, 4}, n);
        assertEquals(1, mask.emptySamples());
        BanAttention.Result res = new BanAttentionCpu(op).forward(xp, yp, mask, b, n, m);
        BanAttention.Gradients gr = new BanAttentionCpu(op).backward(xp, yp, mask, ga, b, n, m);
        for (float[] t : List.of(res.attention(), gr.dxp(), gr.dyp(), gr.logits().weight(), gr.logits().bias())) {
            for (float v : t) assertFalse(Float.isNaN(v));
        }
        for (int e = g * n * m; e < 2 * g * n * m; e++) {
            assertEquals(0f, res.attention()[e]);
            assertEquals(Float.NEGATIVE_INFINITY, res.logits()[e]);
        }
        for (int e = n * k; e < 2 * n * k; e++) assertEquals(0f, gr.dxp()[e]);
        for (int e = m * k; e < 2 * m * k; e++) assertEquals(0f, gr.dyp()[e]);
        // its gradAttention does not reach the weight gradient either
        float[] ga2 = ga.clone();
        for (int e = g * n * m; e < 2 * g * n * m; e++) ga2[e] = 5;
        assertArrayEquals(gr.logits().weight(), new BanAttentionCpu(op).backward(xp, yp, mask, ga2, b, n, m).logits().weight());
    }

    @Test void aSingleObjectSampleAttendsOverItsTokensOnly() {
        SplittableRandom r = new SplittableRandom(5);
        int b = 2, n = 4, m = 5, k = 6, g = 2;
        BanAttention op = BanAttention.random(g, k, 15);
        float[] xp = Stats.gaussian(r, b * n * k), yp = Stats.gaussian(r, b * m * k);
        ObjectMask mask = ObjectMask.of(new boolean[] {false, false, true, false, true, true, true, true}, b, n);
        float[] att = new BanAttentionCpu(op).forward(xp, yp, mask, b, n, m).attention();
        for (int gg = 0; gg < g; gg++) {
            double row = 0;
            for (int i = 0; i < n; i++) {
                for (int j = 0; j < m; j++) {
                    float a = att[(gg * n + i) * m + j];
                    if (i == 2) { assertTrue(a > 0); row += a; } else assertEquals(0f, a);
                }
            }
            assertEquals(1, row, 1e-6);
        }
    }

    @Test void theBiasShiftsTheLogitsButNotTheMaps() {
        SplittableRandom r = new SplittableRandom(6);
        int b = 2, n = 3, m = 2, k = 4, g = 2;
        Linear base = Linear.random(g, k, true, 17);
        BanAttention a = BanAttention.of(base), z = BanAttention.of(new Linear(g, k, base.weight(), new float[g]));
        float[] xp = Stats.gaussian(r, b * n * k), yp = Stats.gaussian(r, b * m * k);
        BanAttention.Result ra = new BanAttentionCpu(a).forward(xp, yp, null, b, n, m), rz = new BanAttentionCpu(z).forward(xp, yp, null, b, n, m);
        assertArrayEquals(rz.attention(), ra.attention(), 1e-6f);
        assertEquals(rz.logits()[0] + base.bias()[0], ra.logits()[0], 1e-5);
    }

    @Test void zeroRowsMaskEqualsTheCountsMaskForTrailingPadding() {
        SplittableRandom r = new SplittableRandom(7);
        int b = 3, n = 5, dx = 4;
        float[] x = Stats.gaussian(r, b * n * dx);
        int[] counts = {5, 2, 0};
        for (int bb = 0; bb < b; bb++) for (int i = counts[bb]; i < n; i++) for (int d = 0; d < dx; d++) x[(bb * n + i) * dx + d] = d % 2 == 0 ? 0f : -0f;
        assertEquals(ObjectMask.counts(counts, n), ObjectMask.zeroRows(x, b, n, dx));
    }

    @Test void argumentsAreCheckedByNameBeforeAnyWork() {
        BanAttention op = BanAttention.random(2, 5, 1);
        int b = 2, n = 3, m = 4;
        float[] xp = new float[b * n * 5], yp = new float[b * m * 5], ga = new float[b * 2 * n * m];
        expect("glimpses: expected >= 1, got 0", () -> BanAttention.random(0, 5, 1));
        expect("glimpses: expected at most 32, got 33", () -> BanAttention.random(33, 5, 1));
        expect("width: expected >= 1, got 0", () -> BanAttention.random(2, 0, 1));
        expect("logits: expected a Linear layer, got null", () -> BanAttention.of(null));
        expect("logits: expected at most 32 glimpses (outputs), got 33", () -> BanAttention.of(Linear.random(33, 4, true, 1)));
        expect("batch: expected >= 1, got 0", () -> new BanAttentionCpu(op).forward(xp, yp, null, 0, n, m));
        expect("objects: expected >= 1, got 0", () -> new BanAttentionCpu(op).forward(xp, yp, null, b, 0, m));
        expect("tokens: expected >= 1, got 0", () -> new BanAttentionCpu(op).forward(xp, yp, null, b, n, 0));
        expect("xp: expected 2 × 3 × 5 = 30 floats (batch × objects × K), got 36 (width 6 instead of the layer's K = 5?)",
                () -> new BanAttentionCpu(op).forward(new float[b * n * 6], yp, null, b, n, m));
        expect("xp: expected 2 × 3 × 5 = 30 floats", () -> new BanAttentionCpu(op).forward(new float[29], yp, null, b, n, m));
        expect("xp: expected 2 × 3 × 5 floats (batch × objects × K), got null", () -> new BanAttentionCpu(op).forward(null, yp, null, b, n, m));
        expect("yp: expected 2 × 4 × 5 = 40 floats (batch × tokens × K), got 32 (width 4 instead", () -> new BanAttentionCpu(op).forward(xp, new float[32], null, b, n, m));
        expect("mask: expected a mask for 2 samples × 3 objects, got 2 × 4", () -> new BanAttentionCpu(op).forward(xp, yp, ObjectMask.all(2, 4), b, n, m));
        expect("mask: expected a mask for 2 samples × 3 objects, got 3 × 3", () -> new BanAttentionCpu(op).backward(xp, yp, ObjectMask.all(3, 3), ga, b, n, m));
        expect("gradAttention: expected 2 × 2 × 3 × 4 = 48 floats (batch × G × objects × tokens), got 24",
                () -> new BanAttentionCpu(op).backward(xp, yp, null, new float[24], b, n, m));
        expect("gradAttention: expected 2 × 2 × 3 × 4 floats", () -> new BanAttentionCpu(op).backward(xp, yp, null, null, b, n, m));
        expect("objects: expected batch·objects·K <= 2147483647", () -> new BanAttentionCpu(op).forward(xp, yp, null, 1 << 16, 1 << 14, 1));
        expect("batch, objects, tokens: expected batch·G·objects·tokens <= 2147483647", () -> new BanAttentionCpu(op).forward(xp, yp, null, 1 << 10, 1 << 10, 1 << 10));
    }

    static ObjectMask mask(String kind, SplittableRandom r, float[] xp, int batch, int objects, int width) {
        return switch (kind) {
            case "none" -> null;
            case "counts" -> {
                int[] c = new int[batch];
                for (int b = 0; b < batch; b++) c[b] = b == 0 ? 0 : b == 1 ? 1 : 1 + r.nextInt(objects);
                yield ObjectMask.counts(c, objects);
            }
            case "zeroRows" -> { // zero a few scattered rows, sample 0 entirely
                for (int row = 0; row < batch * objects; row++) {
                    if (row < objects || r.nextInt(3) == 0) java.util.Arrays.fill(xp, row * width, (row + 1) * width, 0f);
                }
                yield ObjectMask.zeroRows(xp, batch, objects, width);
            }
            default -> throw new IllegalArgumentException(kind);
        };
    }

    /** Same −inf positions; relative L2 over the finite entries. */
    static void assertLogits(float[] got, double[] ref, double tol, String what) {
        assertEquals(ref.length, got.length);
        int finite = 0;
        for (double v : ref) if (v != Double.NEGATIVE_INFINITY) finite++;
        float[] g = new float[finite];
        double[] f = new double[finite];
        for (int i = 0, c = 0; i < ref.length; i++) {
            if (ref[i] == Double.NEGATIVE_INFINITY) {
                assertEquals(Float.NEGATIVE_INFINITY, got[i], what + " [" + i + "] must be −inf");
            } else {
                g[c] = got[i];
                f[c++] = ref[i];
            }
        }
        assertTrue(Stats.relativeL2(g, f) <= tol, what + ": relative L2 " + Stats.relativeL2(g, f));
    }

    private static void expect(String message, Runnable call) {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, call::run);
        assertTrue(e.getMessage().startsWith(message), "'" + e.getMessage() + "' does not start with '" + message + "'");
    }
}
