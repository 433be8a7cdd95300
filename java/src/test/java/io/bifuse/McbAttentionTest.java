package io.bifuse;

import static org.junit.jupiter.api.Assertions.*;

import io.bifuse.McbAttention.L2Scope;
import io.bifuse.cpu.McbAttentionCpu;
import io.bifuse.reference.McbAttentionReference;
import io.bifuse.testing.Conditioning;
import io.bifuse.testing.McbAttentionTolerance;
import io.bifuse.testing.Stats;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * The CPU backend against the reference, and the API's argument checks. The CPU backend computes in
 * float32 (FFTs and GEMMs): relative L2 1e-5 for every tensor, raised where a tensor exceeds it to
 * {@link McbAttentionTolerance}'s conditioning bound {@code max(1e-5, 2·base)} (at these tiny widths many
 * count-sketch bins are empty or nearly so, and the exact signed-sqrt derivative amplifies float32's error
 * there; an l2 block of one value cancels); {@code logits.bias} (exactly zero) and cancelled reference sums
 * absolute. A wiring mistake (wrong tensor, wrong order) shows as O(1). McbAttentionCpuTest holds the
 * backend at more sizes.
 */
class McbAttentionTest {
    static final double TOL = 1e-5;

    @ParameterizedTest(name = "B={0} L={1} Dq={2} Dv={3} d1={4} H={5} G={6} d2={7} A={8} {9} {10}")
    @CsvSource({"1,1,1,1,1,1,1,1,1,MAP,pytorch", "2,3,5,4,7,6,2,9,3,CELL,pytorch", "2,3,5,4,7,6,2,9,3,MAP,caffe",
            "3,7,6,5,16,8,3,20,4,CELL,caffe", "2,49,16,12,64,10,2,48,10,MAP,pytorch"})
    void cpuMatchesReference(int batch, int cells, int dq, int dv, int d1, int hd, int g, int d2, int a, L2Scope scope, String norm) {
        SplittableRandom r = new SplittableRandom(batch * 131L + cells);
        McbAttention op = withNormalization(McbAttention.random(dq, dv, d1, hd, g, d2, a, r.nextLong()), scope,
                norm.equals("caffe") ? Normalization.caffe() : Normalization.pytorch());
        float[] q = Stats.gaussian(r, batch * dq), im = Stats.gaussian(r, batch * cells * dv), go = Stats.gaussian(r, batch * a);
        McbAttentionReference.Result ref = McbAttentionReference.forward(op, q, im, batch, cells);
        McbAttentionReference.Grads gRef = McbAttentionReference.backward(op, q, im, go, batch, cells);
        McbAttention.Result got = new McbAttentionCpu(op).forwardWithAttention(q, im, batch, cells);
        assertArrayEquals(got.out(), new McbAttentionCpu(op).forward(q, im, batch, cells));
        List<float[]> gt = new java.util.ArrayList<>(List.of(got.out(), got.attention()));
        gt.addAll(new McbAttentionCpu(op).backward(q, im, go, batch, cells).tensors());
        List<double[]> rt = new java.util.ArrayList<>(List.of(ref.out(), ref.attention()));
        rt.addAll(gRef.tensors());
        List<String> names = new java.util.ArrayList<>(List.of("out", "attention"));
        names.addAll(op.gradientNames());
        Conditioning cond = McbAttentionTolerance.conditioning(Precision.FP32, op, q, im, go, batch, cells, ref, gRef, r.nextLong());
        for (int t = 0; t < gt.size(); t++) {
            boolean cancelled = Stats.cancelled(rt.get(t));
            double e = cancelled ? Stats.norm(gt.get(t)) : Stats.relativeL2(gt.get(t), rt.get(t));
            double bound = cancelled ? Math.max(TOL, Stats.CANCELLED_DEVICE) : names.get(t).equals("logits.bias") ? TOL : cond.bound(t, TOL, e);
            assertTrue(e <= bound, names.get(t) + ": relative L2 " + e + " (bound " + bound + ")");
        }
    }

    @Test void attentionMapsAreDistributionsOverTheCells() {
        SplittableRandom r = new SplittableRandom(5);
        int batch = 3, cells = 11, g = 3;
        McbAttention op = McbAttention.random(4, 6, 13, 5, g, 11, 2, 8);
        float[] att = new McbAttentionCpu(op).forwardWithAttention(Stats.gaussian(r, batch * 4), Stats.gaussian(r, batch * cells * 6), batch, cells)
                .attention();
        assertEquals(batch * g * cells, att.length);
        for (int row = 0; row < batch * g; row++) {
            double s = 0;
            for (int c = 0; c < cells; c++) {
                assertTrue(att[row * cells + c] > 0);
                s += att[row * cells + c];
            }
            assertEquals(1, s, 1e-6);
        }
    }

    @Test void gradientsHaveTheLayersShapesAndTheLogitsBiasGradientIsZero() {
        SplittableRandom r = new SplittableRandom(6);
        McbAttention op = McbAttention.random(4, 6, 13, 5, 2, 11, 3, 9);
        McbAttention.Gradients gr = new McbAttentionCpu(op).backward(Stats.gaussian(r, 2 * 4), Stats.gaussian(r, 2 * 7 * 6), Stats.gaussian(r, 2 * 3), 2, 7);
        assertEquals(2 * 4, gr.dq().length);
        assertEquals(2 * 7 * 6, gr.dI().length);
        assertEquals(5 * 13, gr.hidden().weight().length);
        assertEquals(5, gr.hidden().bias().length);
        assertEquals(2 * 5, gr.logits().weight().length);
        assertArrayEquals(new float[2], gr.logits().bias());
        assertEquals(3 * 11, gr.answer().weight().length);
        assertEquals(List.of("dq", "dI", "hidden.weight", "hidden.bias", "logits.weight", "logits.bias", "answer.weight", "answer.bias"),
                op.gradientNames());
        assertEquals(op.gradientNames().size(), gr.tensors().size());
        assertSame(gr.dI(), gr.tensors().get(1));
    }

    @Test void layersWithoutBiasGetNoBiasGradient() {
        SplittableRandom r = new SplittableRandom(7);
        McbAttention rnd = McbAttention.random(3, 4, 7, 5, 1, 9, 2, 3);
        McbAttention op = McbAttention.of(rnd.attention(), L2Scope.CELL, rnd.fusion(),
                new McbAttention.Weights(Linear.random(5, 7, false, 1), Linear.random(1, 5, false, 2), Linear.random(2, 9, false, 3)));
        McbAttention.Gradients gr = new McbAttentionCpu(op).backward(Stats.gaussian(r, 3), Stats.gaussian(r, 3 * 4), Stats.gaussian(r, 2), 1, 3);
        assertNull(gr.hidden().bias());
        assertNull(gr.logits().bias());
        assertNull(gr.answer().bias());
        assertEquals(List.of("dq", "dI", "hidden.weight", "logits.weight", "answer.weight"), op.gradientNames());
        assertEquals(5, gr.tensors().size());
    }

    @Test void weightsAndPoolingsAreValidatedByName() {
        int dq = 3, dv = 4, d1 = 7, hd = 5, g = 2, d2 = 9, a = 2;
        CompactBilinear att = CompactBilinear.seeded(dq, dv, d1, 1), fus = CompactBilinear.seeded(g * dv, dq, d2, 2);
        Linear hL = Linear.random(hd, d1, true, 1), lL = Linear.random(g, hd, true, 2), aL = Linear.random(a, d2, true, 3);
        McbAttention.Weights w = new McbAttention.Weights(hL, lL, aL);
        assertNotNull(McbAttention.of(att, L2Scope.MAP, fus, w));
        expect("logits: expected a layer 5 → 2 (H = hidden.out() inputs), got 6 → 2",
                () -> new McbAttention.Weights(hL, Linear.random(g, hd + 1, true, 2), aL));
        expect("hidden: expected a Linear layer, got null", () -> new McbAttention.Weights(null, lL, aL));
        expect("logits: expected a Linear layer, got null", () -> new McbAttention.Weights(hL, null, aL));
        expect("answer: expected a Linear layer, got null", () -> new McbAttention.Weights(hL, lL, null));
        expect("hidden: expected a layer 7 → 5 (d1 = attention.d() inputs), got 8 → 5",
                () -> McbAttention.of(att, L2Scope.MAP, fus, new McbAttention.Weights(Linear.random(hd, d1 + 1, true, 1), lL, aL)));
        expect("answer: expected a layer 9 → 2 (d2 = fusion.d() inputs), got 8 → 2",
                () -> McbAttention.of(att, L2Scope.MAP, fus, new McbAttention.Weights(hL, lL, Linear.random(a, d2 - 1, true, 3))));
        // G = 3 glimpses from the logits layer, but the fusion pooling takes 2 × 4 inputs
        expect("fusion: expected Dx = 12 (x is the glimpses concatenated, G·Dv = 3 × 4), got 8",
                () -> McbAttention.of(att, L2Scope.MAP, fus, new McbAttention.Weights(hL, Linear.random(3, hd, true, 2), aL)));
        expect("fusion: expected Dy = 3 (y is q, Dq = attention.dx()), got 4",
                () -> McbAttention.of(att, L2Scope.MAP, CompactBilinear.seeded(g * dv, dq + 1, d2, 2), w));
        expect("attention: expected a CompactBilinear", () -> McbAttention.of(null, L2Scope.MAP, fus, w));
        expect("scope: expected one of [CELL, MAP], got null", () -> McbAttention.of(att, null, fus, w));
        expect("fusion: expected a CompactBilinear", () -> McbAttention.of(att, L2Scope.MAP, null, w));
        expect("weights: expected McbAttention.Weights, got null", () -> McbAttention.of(att, L2Scope.MAP, fus, null));
        expect("glimpses: expected >= 1, got 0", () -> McbAttention.random(dq, dv, d1, hd, 0, d2, a, 1));
        expect("d1: expected >= 1, got 0", () -> McbAttention.random(dq, dv, 0, hd, g, d2, a, 1));
    }

    @Test void givenHashesAreCheckedAndMustFitTheOtherPooling() {
        // Out-of-range hashes never make a CompactBilinear, so never an McbAttention; in-range hashes of
        // the wrong lengths (here the attention's h1 gives Dq = 2, the fusion's h2 3) are rejected by of().
        int[] h1 = {0, 6}, h2 = {1, 2, 3, 4};
        float[] s1 = {1, -1}, s2 = {1, 1, -1, 1};
        expect("h1[1]: expected a value in [0, 6), got 6", () -> CompactBilinear.fromHashes(6, h1, s1, h2, s2));
        expect("s2[2]: expected +1 or -1, got 0.5", () -> CompactBilinear.fromHashes(7, h1, s1, h2, new float[] {1, 1, 0.5f, 1}));
        CompactBilinear att = CompactBilinear.fromHashes(7, h1, s1, h2, s2); // Dq = 2, Dv = 4, d1 = 7
        CompactBilinear fus = CompactBilinear.fromHashes(5, new int[] {0, 1, 2, 3, 4, 0, 1, 2}, new float[] {1, 1, 1, 1, -1, -1, -1, -1},
                new int[] {4, 3, 2}, new float[] {1, -1, 1}); // Dx = 8 = G·Dv, Dy = 3 ≠ Dq
        McbAttention.Weights w = new McbAttention.Weights(Linear.random(3, 7, true, 1), Linear.random(2, 3, true, 2), Linear.random(2, 5, true, 3));
        expect("fusion: expected Dy = 2 (y is q, Dq = attention.dx()), got 3", () -> McbAttention.of(att, L2Scope.CELL, fus, w));
        CompactBilinear fits = CompactBilinear.fromHashes(5, new int[] {0, 1, 2, 3, 4, 0, 1, 2}, new float[] {1, 1, 1, 1, -1, -1, -1, -1},
                new int[] {4, 3}, new float[] {1, -1});
        McbAttention op = McbAttention.of(att, L2Scope.CELL, fits, w);
        assertEquals(2, op.dq());
        assertEquals(4, op.dv());
        assertEquals(7, op.d1());
        assertEquals(3, op.hidden());
        assertEquals(2, op.glimpses());
        assertEquals(5, op.d2());
        assertEquals(2, op.answers());
    }

    @Test void convolutionWeightsLoadAsLinearLayers() {
        SplittableRandom r = new SplittableRandom(9);
        float[] w = Stats.gaussian(r, 6 * 4), b = Stats.gaussian(r, 6);
        Linear conv = McbAttention.conv1x1("hidden", new int[] {6, 4, 1, 1}, w, b);
        assertEquals(new Linear(6, 4, w, b), conv);
        assertEquals(conv, McbAttention.conv1x1("hidden", new int[] {6, 4}, w, b));
        assertFalse(McbAttention.conv1x1("logits", new int[] {6, 4, 1, 1}, w, null).hasBias());
        expect("hidden: expected a 1×1 convolution weight of shape (out, in, 1, 1) or (out, in), got (512, 16000, 3, 3)",
                () -> McbAttention.conv1x1("hidden", new int[] {512, 16000, 3, 3}, new float[512 * 16000 * 9], null));
        expect("logits: expected a 1×1 convolution weight of shape (out, in, 1, 1) or (out, in), got (6, 4, 1)",
                () -> McbAttention.conv1x1("logits", new int[] {6, 4, 1}, w, null));
        expect("logits: expected a 1×1 convolution weight shape", () -> McbAttention.conv1x1("logits", null, w, null));
        expect("answer: expected 6 × 5 = 30 floats", () -> McbAttention.conv1x1("answer", new int[] {6, 5, 1, 1}, w, b));
        expect("answer bias: expected 6 floats (one per output feature), got 5", () -> McbAttention.conv1x1("answer", new int[] {6, 4}, w, new float[5]));
        expect("hidden: expected out >= 1 output features, got 0", () -> McbAttention.conv1x1("hidden", new int[] {0, 4, 1, 1}, new float[0], null));
    }

    @Test void inputsAreValidatedByNameBeforeAnyWork() {
        McbAttention op = McbAttention.random(3, 4, 7, 5, 2, 9, 2, 1);
        float[] q = new float[2 * 3], im = new float[2 * 7 * 4], g = new float[2 * 2];
        expect("cells: expected >= 1, got 0", () -> new McbAttentionCpu(op).forward(q, new float[0], 2, 0));
        expect("batch: expected >= 1, got 0", () -> new McbAttentionCpu(op).forward(new float[0], new float[0], 0, 7));
        expect("q: expected 2 × 3 = 6 floats, got 5", () -> new McbAttentionCpu(op).forward(new float[5], im, 2, 7));
        expect("q: expected 2 × 3 floats, got null", () -> new McbAttentionCpu(op).forward(null, im, 2, 7));
        expect("image: expected 2 × 7 × 4 = 56 floats, got 55", () -> new McbAttentionCpu(op).forward(q, new float[55], 2, 7));
        expect("image: expected 2 × 7 × 4 floats, got null", () -> new McbAttentionCpu(op).forward(q, null, 2, 7));
        expect("image: expected 2 × 6 × 4 = 48 floats, got 56", () -> new McbAttentionCpu(op).forwardWithAttention(q, im, 2, 6));
        expect("gradOut: expected 2 × 2 = 4 floats, got 3", () -> new McbAttentionCpu(op).backward(q, im, new float[3], 2, 7));
        expect("gradOut: expected 2 × 2 floats, got null", () -> new McbAttentionCpu(op).backward(q, im, null, 2, 7));
        expect("cells: expected >= 1, got -1", () -> new McbAttentionCpu(op).backward(q, im, g, 2, -1));
        expect("batch, cells: expected batch·cells <= 2147483647", () -> new McbAttentionCpu(op).forward(q, im, 65536, 65536));
        expect("op: expected an McbAttention, got null", () -> new McbAttentionCpu(null));
    }

    @Test void randomIsReproducibleAndMatchesItsParts() {
        McbAttention a = McbAttention.random(3, 4, 7, 5, 2, 9, 2, 42), b = McbAttention.random(3, 4, 7, 5, 2, 9, 2, 42);
        assertEquals(a.weights(), b.weights());
        assertEquals(a.attention(), b.attention());
        assertEquals(CompactBilinear.seeded(3, 4, 7, 42).withNormalization(Normalization.pytorch()), a.attention());
        assertEquals(CompactBilinear.seeded(8, 3, 9, 43).withNormalization(Normalization.pytorch()), a.fusion());
        assertEquals(Linear.random(5, 7, true, 44), a.weights().hidden());
        assertEquals(Linear.random(2, 9, true, 46), a.weights().answer());
        assertEquals(L2Scope.MAP, a.scope());
        assertEquals(McbAttention.Backend.class, a.backendType());
        assertEquals("cpu-fp32", new McbAttentionCpu(a).backend());
        assertTrue(a.toString().startsWith("McbAttention[Dq=3, Dv=4, d1=7, H=5, G=2, d2=9, A=2, MAP"), a.toString());
    }

    /** {@code op} with both poolings normalized by {@code n} and the attention's l2 over {@code scope}. */
    static McbAttention withNormalization(McbAttention op, L2Scope scope, Normalization n) {
        return McbAttention.of(op.attention().withNormalization(n), scope, op.fusion().withNormalization(n), op.weights());
    }

    private static void expect(String message, Runnable call) {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, call::run);
        assertTrue(e.getMessage().startsWith(message) || e.getMessage().contains(message), "'" + e.getMessage() + "' lacks '" + message + "'");
    }
}
