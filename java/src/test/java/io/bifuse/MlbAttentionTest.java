package io.bifuse;

import io.bifuse.cpu.MlbAttentionCpu;
import static org.junit.jupiter.api.Assertions.*;

import io.bifuse.reference.MlbAttentionReference;
import io.bifuse.testing.Stats;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * The CPU backend against the reference, and the API's argument checks. The CPU backend computes in
 * float32: GEMM sums of at most a few hundred terms here, ~1e-7 relative; 1e-5 leaves room for that and
 * catches any wiring mistake (wrong tensor, wrong order), which shows as O(1). {@code io.bifuse.cpu.MlbAttentionCpuTest}
 * holds it to the reference at more sizes, with fresh inputs.
 */
class MlbAttentionTest {
    static final double TOL = 1e-5;

    @ParameterizedTest(name = "B={0} L={1} Dq={2} Dv={3} J={4} G={5} Out={6} {7}")
    @CsvSource({"1,1,1,1,1,1,1,TANH", "2,3,4,5,6,2,3,TANH", "3,7,5,3,4,3,2,RELU", "2,5,6,4,3,1,4,NONE", "2,49,24,20,12,2,10,TANH"})
    void cpuMatchesReference(int batch, int cells, int dq, int dv, int j, int g, int out, Activation act) {
        SplittableRandom r = new SplittableRandom(batch * 131L + cells);
        MlbAttention op = MlbAttention.random(dq, dv, j, g, out, act, r.nextLong());
        float[] q = Stats.gaussian(r, batch * dq), v = Stats.gaussian(r, batch * cells * dv), go = Stats.gaussian(r, batch * out);
        MlbAttentionReference.Result ref = MlbAttentionReference.forward(op, q, v, batch, cells);
        MlbAttention.Result got = new MlbAttentionCpu(op).forwardWithAttention(q, v, batch, cells);
        assertTrue(Stats.relativeL2(got.out(), ref.out()) < TOL, "forward " + Stats.relativeL2(got.out(), ref.out()));
        assertTrue(Stats.relativeL2(got.attention(), ref.attention()) < TOL, "attention");
        assertArrayEquals(got.out(), new MlbAttentionCpu(op).forward(q, v, batch, cells));
        List<float[]> gt = new MlbAttentionCpu(op).backward(q, v, go, batch, cells).tensors();
        List<double[]> rt = MlbAttentionReference.backward(op, q, v, go, batch, cells).tensors();
        Stats.assertEachBelow(op.gradientNames(), gt, rt, TOL);
    }

    @Test void attentionMapsAreDistributionsOverTheCells() {
        SplittableRandom r = new SplittableRandom(5);
        int batch = 3, cells = 11, g = 3;
        MlbAttention op = MlbAttention.random(4, 6, 5, g, 2, Activation.TANH, 8);
        float[] att = new MlbAttentionCpu(op).forwardWithAttention(Stats.gaussian(r, batch * 4), Stats.gaussian(r, batch * cells * 6), batch, cells).attention();
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
        MlbAttention op = MlbAttention.random(4, 6, 5, 2, 3, Activation.TANH, 9);
        MlbAttention.Gradients gr = new MlbAttentionCpu(op).backward(Stats.gaussian(r, 2 * 4), Stats.gaussian(r, 2 * 7 * 6), Stats.gaussian(r, 2 * 3), 2, 7);
        assertEquals(2 * 4, gr.dq().length);
        assertEquals(2 * 7 * 6, gr.dv().length);
        assertEquals(5 * 4, gr.question().weight().length);
        assertEquals(5 * 6, gr.cells().weight().length);
        assertEquals(2 * 5, gr.logits().weight().length);
        assertArrayEquals(new float[2], gr.logits().bias());
        assertEquals(2, gr.glimpses().size());
        assertEquals(5 * 6, gr.glimpses().get(1).weight().length);
        assertEquals(10 * 4, gr.questionFusion().weight().length);
        assertEquals(3 * 10, gr.answer().weight().length);
        assertEquals(List.of("dq", "dv", "question.weight", "question.bias", "cells.weight", "cells.bias", "logits.weight", "logits.bias",
                "glimpses[0].weight", "glimpses[0].bias", "glimpses[1].weight", "glimpses[1].bias", "questionFusion.weight",
                "questionFusion.bias", "answer.weight", "answer.bias"), op.gradientNames());
    }

    @Test void layersWithoutBiasGetNoBiasGradient() {
        SplittableRandom r = new SplittableRandom(7);
        int dq = 3, dv = 4, j = 5, g = 1, out = 2;
        MlbAttention op = MlbAttention.of(new MlbAttention.Weights(Linear.random(j, dq, false, 1), Linear.random(j, dv, false, 2),
                Linear.random(g, j, false, 3), List.of(Linear.random(j, dv, false, 4)), Linear.random(j, dq, false, 5),
                Linear.random(out, j, false, 6)), Activation.TANH);
        MlbAttention.Gradients gr = new MlbAttentionCpu(op).backward(Stats.gaussian(r, dq), Stats.gaussian(r, 3 * dv), Stats.gaussian(r, out), 1, 3);
        assertNull(gr.question().bias());
        assertNull(gr.answer().bias());
        assertEquals(8, gr.tensors().size());
        assertEquals(op.gradientNames().size(), gr.tensors().size());
    }

    @Test void weightsAreValidatedByName() {
        int dq = 3, dv = 4, j = 5, g = 2, out = 2;
        Linear qL = Linear.random(j, dq, true, 1), vL = Linear.random(j, dv, true, 2), aL = Linear.random(g, j, true, 3);
        List<Linear> gl = List.of(Linear.random(j, dv, true, 4), Linear.random(j, dv, true, 5));
        Linear fL = Linear.random(g * j, dq, true, 6), oL = Linear.random(out, g * j, true, 7);
        assertNotNull(new MlbAttention.Weights(qL, vL, aL, gl, fL, oL));
        expect("cells: expected a layer 4 → 5", () -> new MlbAttention.Weights(qL, Linear.random(6, dv, true, 2), aL, gl, fL, oL));
        expect("logits: expected a layer 5 → 2", () -> new MlbAttention.Weights(qL, vL, Linear.random(g, j + 1, true, 3), gl, fL, oL));
        expect("glimpses: expected 2 layers", () -> new MlbAttention.Weights(qL, vL, aL, gl.subList(0, 1), fL, oL));
        expect("glimpses[1]: expected a layer 4 → 5 (weight 5 × 4), got 3 → 5",
                () -> new MlbAttention.Weights(qL, vL, aL, List.of(gl.get(0), Linear.random(j, 3, true, 5)), fL, oL));
        expect("questionFusion: expected a layer 3 → 10", () -> new MlbAttention.Weights(qL, vL, aL, gl, Linear.random(j, dq, true, 6), oL));
        expect("answer: expected a layer 10 → 2 (G·J inputs), got 5 → 2",
                () -> new MlbAttention.Weights(qL, vL, aL, gl, fL, Linear.random(out, j, true, 7)));
        expect("question: expected a Linear layer, got null", () -> new MlbAttention.Weights(null, vL, aL, gl, fL, oL));
        expect("glimpses: expected a list", () -> new MlbAttention.Weights(qL, vL, aL, null, fL, oL));
        List<Linear> withNull = new ArrayList<>(gl);
        withNull.set(1, null);
        expect("glimpses[1]: expected a Linear layer, got null", () -> new MlbAttention.Weights(qL, vL, aL, withNull, fL, oL));
        expect("glimpses: expected at most 16, got 17", () -> MlbAttention.random(dq, dv, j, 17, out, Activation.TANH, 1));
        expect("logits: expected at most 16 glimpses (outputs), got 17",
                () -> new MlbAttention.Weights(qL, vL, Linear.random(17, j, true, 3), gl, fL, oL));
        expect("activation: expected one of NONE, RELU, TANH, SIGMOID, got null", () -> MlbAttention.of(new MlbAttention.Weights(qL, vL, aL, gl, fL, oL), null));
        expect("weights: expected MlbAttention.Weights, got null", () -> MlbAttention.of(null, Activation.TANH));
    }

    @Test void inputsAreValidatedByNameBeforeAnyWork() {
        MlbAttention op = MlbAttention.random(3, 4, 5, 2, 2, Activation.TANH, 1);
        float[] q = new float[2 * 3], v = new float[2 * 7 * 4], g = new float[2 * 2];
        expect("cells: expected >= 1, got 0", () -> new MlbAttentionCpu(op).forward(q, new float[0], 2, 0));
        expect("batch: expected >= 1, got 0", () -> new MlbAttentionCpu(op).forward(new float[0], new float[0], 0, 7));
        expect("q: expected 2 × 3 = 6 floats, got 5", () -> new MlbAttentionCpu(op).forward(new float[5], v, 2, 7));
        expect("v: expected 2 × 7 × 4 = 56 floats, got 55", () -> new MlbAttentionCpu(op).forward(q, new float[55], 2, 7));
        expect("v: expected 2 × 7 × 4 floats, got null", () -> new MlbAttentionCpu(op).forward(q, null, 2, 7));
        expect("v: expected 2 × 6 × 4 = 48 floats, got 56", () -> new MlbAttentionCpu(op).forwardWithAttention(q, v, 2, 6));
        expect("gradOut: expected 2 × 2 = 4 floats, got 3", () -> new MlbAttentionCpu(op).backward(q, v, new float[3], 2, 7));
        expect("cells: expected >= 1, got -1", () -> new MlbAttentionCpu(op).backward(q, v, g, 2, -1));
        expect("batch, cells: expected batch·cells <= 2147483647", () -> new MlbAttentionCpu(op).forward(q, v, 65536, 65536));
    }

    @Test void randomIsReproducibleAndMatchesLinearRandom() {
        MlbAttention a = MlbAttention.random(3, 4, 5, 2, 2, Activation.TANH, 42), b = MlbAttention.random(3, 4, 5, 2, 2, Activation.TANH, 42);
        assertEquals(a.weights(), b.weights());
        assertEquals(Linear.random(5, 3, true, 42), a.weights().question());
        assertEquals(Linear.random(2, 10, true, 42 + 6), a.weights().answer());
        assertEquals("MlbAttention[Dq=3, Dv=4, J=5, G=2, Out=2, TANH]", a.toString());
    }

    private static void expect(String message, Runnable call) {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, call::run);
        assertTrue(e.getMessage().startsWith(message) || e.getMessage().contains(message), "'" + e.getMessage() + "' lacks '" + message + "'");
    }
}
