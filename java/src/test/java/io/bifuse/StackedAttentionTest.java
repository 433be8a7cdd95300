package io.bifuse;

import static org.junit.jupiter.api.Assertions.*;

import io.bifuse.StackedAttention.Placement;
import io.bifuse.cpu.StackedAttentionCpu;
import io.bifuse.reference.StackedAttentionReference;
import io.bifuse.testing.Stats;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * The CPU backend against the reference, and the API's argument checks. The CPU backend computes in
 * float32 (see StackedAttentionCpu): 1e-5 relative L2 holds its few 1e-7 (up to ~2e-6 on the question
 * and logits-bias gradients, sums over the cells that the softmax Jacobian makes cancel) and catches any
 * wiring mistake (wrong tensor, wrong order), which shows as O(1). StackedAttentionCpuTest holds fresh
 * inputs at larger sizes to the same bound with the conditioning rule.
 */
class StackedAttentionTest {
    static final double TOL = 1e-5;

    @ParameterizedTest(name = "B={0} L={1} d={2} k={3} K={4} {5}")
    @CsvSource({"1,1,1,1,1,PAPER", "1,1,1,1,1,PUBLIC_CODE", "2,3,4,5,2,PAPER", "3,7,5,3,3,PUBLIC_CODE", "2,49,24,12,2,PAPER", "2,49,24,12,2,PUBLIC_CODE"})
    void cpuMatchesReference(int batch, int cells, int d, int k, int kk, Placement placement) {
        SplittableRandom r = new SplittableRandom(batch * 131L + cells);
        StackedAttention op = StackedAttention.random(d, k, kk, placement, r.nextLong());
        float[] u = Stats.gaussian(r, batch * d), v = Stats.gaussian(r, batch * cells * d), go = Stats.gaussian(r, batch * d);
        StackedAttentionReference.Result ref = StackedAttentionReference.forward(op, u, v, batch, cells);
        StackedAttention.Result got = new StackedAttentionCpu(op).forwardWithAttention(u, v, batch, cells);
        assertTrue(Stats.relativeL2(got.out(), ref.out()) < TOL, "forward " + Stats.relativeL2(got.out(), ref.out()));
        assertTrue(Stats.relativeL2(got.attention(), ref.attention()) < TOL, "attention");
        assertArrayEquals(got.out(), new StackedAttentionCpu(op).forward(u, v, batch, cells));
        List<float[]> gt = new StackedAttentionCpu(op).backward(u, v, go, batch, cells).tensors();
        List<double[]> rt = StackedAttentionReference.backward(op, u, v, go, batch, cells).tensors();
        Stats.assertEachBelow(op.gradientNames(), gt, rt, TOL);
    }

    @Test void attentionMapsAreDistributionsOverTheCellsPerLayer() {
        SplittableRandom r = new SplittableRandom(5);
        int batch = 3, cells = 11, kk = 3, d = 6;
        StackedAttention op = StackedAttention.random(d, 5, kk, Placement.PUBLIC_CODE, 8);
        float[] att = new StackedAttentionCpu(op).forwardWithAttention(Stats.gaussian(r, batch * d), Stats.gaussian(r, batch * cells * d), batch, cells)
                .attention();
        assertEquals(batch * kk * cells, att.length);
        for (int row = 0; row < batch * kk; row++) {
            double s = 0;
            for (int c = 0; c < cells; c++) {
                assertTrue(att[row * cells + c] > 0);
                s += att[row * cells + c];
            }
            assertEquals(1, s, 1e-6);
        }
    }

    @Test void gradientsHaveTheLayersShapesAndNames() {
        SplittableRandom r = new SplittableRandom(6);
        StackedAttention op = StackedAttention.random(4, 5, 2, Placement.PAPER, 9);
        StackedAttention.Gradients gr = new StackedAttentionCpu(op).backward(Stats.gaussian(r, 2 * 4), Stats.gaussian(r, 2 * 7 * 4),
                Stats.gaussian(r, 2 * 4), 2, 7);
        assertEquals(2 * 4, gr.du().length);
        assertEquals(2 * 7 * 4, gr.dv().length);
        assertEquals(2, gr.layers().size());
        assertEquals(5 * 4, gr.layers().get(1).image().weight().length);
        assertEquals(5 * 4, gr.layers().get(1).question().weight().length);
        assertEquals(5, gr.layers().get(0).logits().weight().length);
        assertArrayEquals(new float[1], gr.layers().get(0).logits().bias(), "the paper's logits bias: an exact zero");
        assertEquals(List.of("du", "dv", "layers[0].image.weight", "layers[0].image.bias", "layers[0].question.weight", "layers[0].question.bias",
                "layers[0].logits.weight", "layers[0].logits.bias", "layers[1].image.weight", "layers[1].image.bias", "layers[1].question.weight",
                "layers[1].question.bias", "layers[1].logits.weight", "layers[1].logits.bias"), op.gradientNames());
        assertEquals(op.gradientNames().size(), gr.tensors().size());
    }

    @Test void layersWithoutBiasGetNoBiasGradient() {
        SplittableRandom r = new SplittableRandom(7);
        int d = 3, k = 4;
        StackedAttention op = StackedAttention.of(new StackedAttention.Weights(List.of(new StackedAttention.Layer(Linear.random(k, d, false, 1),
                Linear.random(k, d, false, 2), Linear.random(1, k, false, 3)))), Placement.PUBLIC_CODE);
        StackedAttention.Gradients gr = new StackedAttentionCpu(op).backward(Stats.gaussian(r, d), Stats.gaussian(r, 3 * d), Stats.gaussian(r, d), 1, 3);
        assertNull(gr.layers().get(0).image().bias());
        assertNull(gr.layers().get(0).logits().bias());
        assertEquals(5, gr.tensors().size());
        assertEquals(List.of("du", "dv", "layers[0].image.weight", "layers[0].question.weight", "layers[0].logits.weight"), op.gradientNames());
    }

    @Test void weightsAreValidatedByName() {
        int d = 3, k = 5;
        StackedAttention.Layer good = new StackedAttention.Layer(Linear.random(k, d, true, 1), Linear.random(k, d, true, 2), Linear.random(1, k, true, 3));
        assertNotNull(new StackedAttention.Weights(List.of(good, good)));
        expect("layers: expected a list of K >= 1 attention layers, got null", () -> new StackedAttention.Weights(null));
        expect("layers: expected K >= 1 attention layers, got 0", () -> new StackedAttention.Weights(List.of()));
        List<StackedAttention.Layer> withNull = new ArrayList<>(List.of(good));
        withNull.add(null);
        expect("layers[1]: expected a StackedAttention.Layer, got null", () -> new StackedAttention.Weights(withNull));
        expect("layers[0].image: expected a Linear layer, got null",
                () -> new StackedAttention.Weights(List.of(new StackedAttention.Layer(null, good.question(), good.logits()))));
        expect("layers[1].image: expected a layer 3 → 5 (weight 5 × 3), got 4 → 5", () -> new StackedAttention.Weights(List.of(good,
                new StackedAttention.Layer(Linear.random(k, 4, true, 1), good.question(), good.logits()))));
        expect("layers[0].question: expected a layer 3 → 5 (weight 5 × 3), got 3 → 6", () -> new StackedAttention.Weights(List.of(
                new StackedAttention.Layer(good.image(), Linear.random(6, d, true, 1), good.logits()))));
        expect("layers[0].question: expected a Linear layer, got null",
                () -> new StackedAttention.Weights(List.of(new StackedAttention.Layer(good.image(), null, good.logits()))));
        expect("layers[1].logits: expected a layer 5 → 1 (weight 1 × 5), got 5 → 2", () -> new StackedAttention.Weights(List.of(good,
                new StackedAttention.Layer(good.image(), good.question(), Linear.random(2, k, true, 1)))));
        expect("layers[0].logits: expected a Linear layer, got null",
                () -> new StackedAttention.Weights(List.of(new StackedAttention.Layer(good.image(), good.question(), null))));
        expect("placement: expected PAPER or PUBLIC_CODE, got null", () -> StackedAttention.of(new StackedAttention.Weights(List.of(good)), null));
        expect("weights: expected StackedAttention.Weights, got null", () -> StackedAttention.of(null, Placement.PAPER));
        expect("layers: expected >= 1, got 0", () -> StackedAttention.random(3, 4, 0, Placement.PAPER, 1));
        expect("width: expected >= 1, got 0", () -> StackedAttention.random(3, 0, 2, Placement.PAPER, 1));
        expect("d: expected >= 1, got -1", () -> StackedAttention.random(-1, 4, 2, Placement.PAPER, 1));
    }

    @Test void inputsAreValidatedByNameBeforeAnyWork() {
        StackedAttention op = StackedAttention.random(3, 5, 2, Placement.PAPER, 1);
        float[] u = new float[2 * 3], v = new float[2 * 7 * 3], g = new float[2 * 3];
        StackedAttentionCpu cpu = new StackedAttentionCpu(op);
        expect("cells: expected >= 1, got 0", () -> cpu.forward(u, new float[0], 2, 0));
        expect("batch: expected >= 1, got 0", () -> cpu.forward(new float[0], new float[0], 0, 7));
        expect("u: expected 2 × 3 = 6 floats, got 5", () -> cpu.forward(new float[5], v, 2, 7));
        expect("u: expected 2 × 3 floats, got null", () -> cpu.forwardWithAttention(null, v, 2, 7));
        expect("v: expected 2 × 7 × 3 = 42 floats, got 41", () -> cpu.forward(u, new float[41], 2, 7));
        expect("v: expected 2 × 7 × 3 floats, got null", () -> cpu.forward(u, null, 2, 7));
        expect("v: expected 2 × 6 × 3 = 36 floats, got 42", () -> cpu.forwardWithAttention(u, v, 2, 6));
        expect("gradOut: expected 2 × 3 = 6 floats, got 3", () -> cpu.backward(u, v, new float[3], 2, 7));
        expect("gradOut: expected 2 × 3 floats, got null", () -> cpu.backward(u, v, null, 2, 7));
        expect("cells: expected >= 1, got -1", () -> cpu.backward(u, v, g, 2, -1));
        expect("batch, cells: expected batch·cells <= 2147483647", () -> cpu.forward(u, v, 65536, 65536));
        expect("op: expected a StackedAttention, got null", () -> new StackedAttentionCpu(null));
    }

    @Test void randomIsReproducibleAndMatchesLinearRandom() {
        StackedAttention a = StackedAttention.random(3, 4, 2, Placement.PUBLIC_CODE, 42), b = StackedAttention.random(3, 4, 2, Placement.PUBLIC_CODE, 42);
        assertEquals(a.weights(), b.weights());
        assertEquals(Linear.random(4, 3, true, 42), a.weights().layers().get(0).image());
        assertEquals(Linear.random(1, 4, true, 42 + 5), a.weights().layers().get(1).logits());
        assertEquals("StackedAttention[d=3, k=4, K=2, PUBLIC_CODE]", a.toString());
        assertEquals(3, a.dim());
        assertEquals(4, a.width());
        assertEquals(2, a.layers());
    }

    private static void expect(String message, Runnable call) {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, call::run);
        assertTrue(e.getMessage().startsWith(message), "'" + e.getMessage() + "' does not start with '" + message + "'");
    }
}
