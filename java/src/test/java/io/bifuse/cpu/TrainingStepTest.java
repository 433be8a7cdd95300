package io.bifuse.cpu;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.bifuse.Activation;
import io.bifuse.LinearGradients;
import io.bifuse.Mfb;
import io.bifuse.Mlb;
import io.bifuse.MlbAttention;
import io.bifuse.Normalization;
import io.bifuse.TrainingStep;
import io.bifuse.testing.Stats;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.function.Function;
import java.util.function.Supplier;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * {@link TrainingStep}'s contract for the CPU backends that keep their forward (MLB, MFB/MFH, MLB
 * attention here; SAN and the BAN block in their own tests, through {@link #checkContract}) and for the
 * recomputing default: the step's output and gradients are bitwise the
 * backend's {@code forward} and recomputing {@code backward} (the same calls on the same operands, so no
 * tolerance: any difference is a step that reads a spent or shared intermediate); two steps open at once
 * keep apart; a wrong gradOut is refused by name and leaves the step usable; a second backward, or one
 * after close, is refused. Fresh random inputs (never zeros); the seed is in every message.
 */
class TrainingStepTest {

    /** One op's backend, its inputs and two gradOuts, seen through the same five calls. */
    record Case<G>(String what, Supplier<float[]> forward, Function<float[], G> backward, Supplier<TrainingStep<G>> step,
                   Function<G, List<float[]>> tensors, float[] gradOut, float[] otherGradOut) {}

    static <G> void checkContract(Case<G> c) {
        float[] want = c.forward.get();
        List<float[]> wantGrads = c.tensors.apply(c.backward.apply(c.gradOut));
        List<float[]> wantOther = c.tensors.apply(c.backward.apply(c.otherGradOut));

        // Two steps open at once, their backwards in the other order: each keeps its own intermediates.
        try (TrainingStep<G> first = c.step.get(); TrainingStep<G> second = c.step.get()) {
            assertArrayEquals(want, first.out(), c.what + ": the step's output is the forward's");
            assertArrayEquals(want, second.out(), c.what + ": the second open step's output");
            assertTensorsEqual(wantOther, c.tensors.apply(second.backward(c.otherGradOut)), c.what + ": the second step's backward");
            assertTensorsEqual(wantGrads, c.tensors.apply(first.backward(c.gradOut)), c.what + ": the first step's backward, after the second's");
            IllegalStateException again = assertThrows(IllegalStateException.class, () -> first.backward(c.gradOut));
            assertTrue(again.getMessage().startsWith("backward: this training step has already run its backward"), again.getMessage());
        }

        // A wrong gradOut is refused by name before anything runs; the step stays usable.
        try (TrainingStep<G> s = c.step.get()) {
            float[] out = s.out();
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> s.backward(new float[c.gradOut.length + 1]));
            assertTrue(e.getMessage().startsWith("gradOut: expected "), e.getMessage());
            e = assertThrows(IllegalArgumentException.class, () -> s.backward(null));
            assertTrue(e.getMessage().startsWith("gradOut: expected "), e.getMessage());
            assertSame(out, s.out());
            assertTensorsEqual(wantGrads, c.tensors.apply(s.backward(c.gradOut)), c.what + ": the backward after refused gradOuts");
        }

        // Closed before its backward: refused, and close is idempotent; the pool still serves later steps.
        TrainingStep<G> abandoned = c.step.get();
        abandoned.close();
        abandoned.close();
        IllegalStateException closed = assertThrows(IllegalStateException.class, () -> abandoned.backward(c.gradOut));
        assertTrue(closed.getMessage().startsWith("backward: this training step is closed"), closed.getMessage());
        try (TrainingStep<G> s = c.step.get()) {
            assertTensorsEqual(wantGrads, c.tensors.apply(s.backward(c.gradOut)), c.what + ": a step after an abandoned one");
        }
    }

    @ParameterizedTest(name = "B={0} Dx={1} Dy={2} J={3} Out={4} {5}")
    @CsvSource({"1,1,1,1,1,TANH", "5,37,29,17,11,RELU", "7,40,31,33,13,NONE", "33,301,257,129,97,TANH"})
    void mlb(int batch, int dx, int dy, int j, int out, Activation act) {
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        MlbCpu cpu = new MlbCpu(Mlb.random(dx, dy, j, out, act, r.nextLong()));
        float[] x = Stats.gaussian(r, batch * dx), y = Stats.gaussian(r, batch * dy);
        float[] g = Stats.gaussian(r, batch * out), g2 = Stats.gaussian(r, batch * out);
        checkContract(new Case<>("MlbCpu B=" + batch + " " + act + ", seed " + seed, () -> cpu.forward(x, y, batch), gr -> cpu.backward(x, y, gr, batch),
                () -> cpu.trainingStep(x, y, batch), TrainingStepTest::tensors, g, g2));
    }

    @ParameterizedTest(name = "B={0} Dx={1} Dy={2} o={3} k={4} blocks={5} {6} normalized={7}")
    @CsvSource({"1,1,1,1,1,1,NONE,false", "3,17,13,7,5,1,RELU,true", "5,23,19,11,3,2,TANH,true", "9,64,48,20,5,3,NONE,false"})
    void mfb(int batch, int dx, int dy, int o, int k, int blocks, Activation act, boolean normalized) {
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        MfbCpu cpu = new MfbCpu(Mfb.random(dx, dy, o, k, blocks, act, normalized ? Normalization.pytorch() : Normalization.NONE, r.nextLong()));
        int width = blocks * o;
        float[] x = Stats.gaussian(r, batch * dx), y = Stats.gaussian(r, batch * dy);
        float[] g = Stats.gaussian(r, batch * width), g2 = Stats.gaussian(r, batch * width);
        checkContract(new Case<>("MfbCpu B=" + batch + " blocks=" + blocks + " " + act + ", seed " + seed, () -> cpu.forward(x, y, batch),
                gr -> cpu.backward(x, y, gr, batch), () -> cpu.trainingStep(x, y, batch), TrainingStepTest::tensors, g, g2));
    }

    @ParameterizedTest(name = "B={0} L={1} Dq={2} Dv={3} J={4} G={5} Out={6} {7}")
    @CsvSource({"1,1,1,1,1,1,1,TANH", "3,5,11,13,7,2,5,RELU", "2,9,17,12,10,1,3,NONE", "4,36,40,32,24,3,17,TANH"})
    void mlbAttention(int batch, int cells, int dq, int dv, int j, int glimpses, int out, Activation act) {
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        MlbAttentionCpu cpu = new MlbAttentionCpu(MlbAttention.random(dq, dv, j, glimpses, out, act, r.nextLong()));
        float[] q = Stats.gaussian(r, batch * dq), v = Stats.gaussian(r, batch * cells * dv);
        float[] g = Stats.gaussian(r, batch * out), g2 = Stats.gaussian(r, batch * out);
        checkContract(new Case<>("MlbAttentionCpu B=" + batch + " L=" + cells + " " + act + ", seed " + seed, () -> cpu.forward(q, v, batch, cells),
                gr -> cpu.backward(q, v, gr, batch, cells), () -> cpu.trainingStep(q, v, batch, cells), MlbAttention.Gradients::tensors, g, g2));
    }

    /** The default a backend without kept state inherits: the same contract, through the recomputing backward. */
    @Test void theRecomputingDefault() {
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        int batch = 6, dx = 19, dy = 14, j = 9, out = 7;
        MlbCpu cpu = new MlbCpu(Mlb.random(dx, dy, j, out, Activation.TANH, r.nextLong()));
        Mlb.Backend recomputing = new Mlb.Backend() { // forward and backward only: trainingStep is the interface's
            @Override public float[] forward(float[] x, float[] y, int b) { return cpu.forward(x, y, b); }
            @Override public Mlb.Gradients backward(float[] x, float[] y, float[] g, int b) { return cpu.backward(x, y, g, b); }
            @Override public Mlb op() { return cpu.op(); }
            @Override public String backend() { return "recomputing"; }
            @Override public void close() {}
        };
        float[] x = Stats.gaussian(r, batch * dx), y = Stats.gaussian(r, batch * dy);
        float[] g = Stats.gaussian(r, batch * out), g2 = Stats.gaussian(r, batch * out);
        checkContract(new Case<>("the default, seed " + seed, () -> cpu.forward(x, y, batch), gr -> cpu.backward(x, y, gr, batch),
                () -> recomputing.trainingStep(x, y, batch), TrainingStepTest::tensors, g, g2));
        // And the kept and recomputed steps agree with each other.
        try (TrainingStep<Mlb.Gradients> kept = cpu.trainingStep(x, y, batch); TrainingStep<Mlb.Gradients> again = recomputing.trainingStep(x, y, batch)) {
            assertArrayEquals(kept.out(), again.out());
            assertTensorsEqual(tensors(kept.backward(g)), tensors(again.backward(g)), "kept vs recomputed, seed " + seed);
        }
    }

    @Test void stepsRefuseBadInputsByNameBeforeKeepingAnything() {
        MlbCpu mlb = new MlbCpu(Mlb.random(4, 3, 2, 5, Activation.TANH, 1));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> mlb.trainingStep(new float[7], new float[6], 2));
        assertTrue(e.getMessage().startsWith("x: expected"), e.getMessage());
        MfbCpu mfb = new MfbCpu(Mfb.random(4, 3, 2, 2, 1, Activation.NONE, Normalization.NONE, 1));
        e = assertThrows(IllegalArgumentException.class, () -> mfb.trainingStep(new float[8], new float[5], 2));
        assertTrue(e.getMessage().startsWith("y: expected"), e.getMessage());
        MlbAttentionCpu att = new MlbAttentionCpu(MlbAttention.random(4, 3, 2, 1, 5, Activation.TANH, 1));
        e = assertThrows(IllegalArgumentException.class, () -> att.trainingStep(new float[8], new float[18], 2, 0));
        assertTrue(e.getMessage().startsWith("cells: expected"), e.getMessage());
        IllegalArgumentException o = assertThrows(IllegalArgumentException.class, () -> TrainingStep.recomputing(new float[5], 2, 3, g -> g));
        assertEquals("out: expected 2 × 3 floats, got 5", o.getMessage());
    }

    static List<float[]> tensors(Mlb.Gradients g) {
        List<float[]> t = new ArrayList<>(List.of(g.dx(), g.dy()));
        for (LinearGradients l : List.of(g.u(), g.v(), g.p())) {
            t.add(l.weight());
            t.add(l.bias());
        }
        return t;
    }

    static List<float[]> tensors(Mfb.Gradients g) {
        List<float[]> t = new ArrayList<>(List.of(g.dx(), g.dy()));
        for (List<LinearGradients> side : List.of(g.u(), g.v())) {
            for (LinearGradients l : side) {
                t.add(l.weight());
                t.add(l.bias());
            }
        }
        return t;
    }

    static void assertTensorsEqual(List<float[]> want, List<float[]> got, String what) {
        assertEquals(want.size(), got.size(), what + ": tensor count");
        for (int t = 0; t < want.size(); t++) assertArrayEquals(want.get(t), got.get(t), what + ": tensor " + t + " not bitwise equal");
    }
}
