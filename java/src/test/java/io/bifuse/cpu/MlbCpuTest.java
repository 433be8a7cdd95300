package io.bifuse.cpu;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.bifuse.Activation;
import io.bifuse.Mlb;
import io.bifuse.Normalization;
import io.bifuse.Precision;
import io.bifuse.StateDict;
import io.bifuse.testing.Fixtures;
import io.bifuse.testing.FusionChecks;
import java.io.IOException;
import java.nio.file.Path;
import io.bifuse.reference.MlbReference;
import io.bifuse.testing.Conditioning;
import io.bifuse.testing.Stats;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * The float32 MLB backend against the float64 reference, on fresh random inputs (the seed is in every
 * failure message; {@code -Dbifuse.seed=N} replays it).
 *
 * <p>Tolerance: 1e-5 relative L2 on the output and on each of the eight gradients. Every value is a
 * float32 GEMM sum of at most max(Dx, Dy, J, B) = 2400 products (or an elementwise step on one), whose
 * error is about 2⁻²⁴·sqrt(n) ≈ 3e-6 relative at worst and far less on average. Where a tensor exceeds
 * it, the bound becomes {@link Conditioning}'s {@code max(1e-5, 2·base)}: a ReLU pre-activation within
 * float32 rounding of 0 flips its derivative and moves a gradient by that unit's full contribution,
 * which no float32 implementation can avoid (rare; the float64 reference with every operand moved by
 * the float32 step reproduces it).
 */
class MlbCpuTest {
    static final double TOL = 1e-5;
    static final String[] NAMES = {"forward", "dx", "dy", "u.weight", "u.bias", "v.weight", "v.bias", "p.weight", "p.bias"};

    @ParameterizedTest(name = "B={0} Dx={1} Dy={2} J={3} Out={4} {5}")
    @CsvSource({"1,1,1,1,1,TANH", "1,13,7,5,3,RELU", "3,7,5,4,2,NONE", "5,37,29,17,11,RELU", "7,40,31,33,13,TANH", "2,240,204,120,200,NONE",
        "33,301,257,129,97,RELU", "8,2400,2048,1200,2000,TANH"})
    void matchesTheFloat64Reference(int batch, int dx, int dy, int j, int out, Activation act) {
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        Mlb op = Mlb.random(dx, dy, j, out, act, r.nextLong());
        float[] x = Stats.gaussian(r, batch * dx), y = Stats.gaussian(r, batch * dy), g = Stats.gaussian(r, batch * out);
        MlbCpu cpu = new MlbCpu(op);
        double[] fRef = MlbReference.forward(op, x, y, batch);
        MlbReference.Grads ref = MlbReference.backward(op, x, y, g, batch);
        float[][] got = tensors(cpu.forward(x, y, batch), cpu.backward(x, y, g, batch));
        double[][] want = refTensors(fRef, ref);
        Conditioning cond = conditioning(op, x, y, g, batch, want, seed);
        StringBuilder errors = new StringBuilder();
        for (int t = 0; t < got.length; t++) errors.append(' ').append(NAMES[t]).append(String.format("=%.2e", Stats.relativeL2(got[t], want[t])));
        System.out.println("MlbCpu B=" + batch + " Dx=" + dx + " Dy=" + dy + " J=" + j + " Out=" + out + " " + act + ":" + errors);
        for (int t = 0; t < got.length; t++) {
            double e = Stats.relativeL2(got[t], want[t]), bound = cond.bound(t, TOL, e);
            assertTrue(e <= bound, NAMES[t] + ": relative L2 " + e + " > " + bound + " (" + cond.draws() + " conditioning draws), seed " + seed);
        }
    }

    /** block.bootstrap's options (normalize, activ_output) against the reference, at the same bound and conditioning rule. */
    @ParameterizedTest(name = "B={0} Dx={1} Dy={2} J={3} Out={4} {5} out {6} normalized={7}")
    @CsvSource({"1,1,1,1,1,RELU,RELU,false", "3,7,5,4,2,TANH,SIGMOID,true", "5,37,29,17,11,RELU,RELU,true", "9,301,257,129,97,SIGMOID,TANH,true",
        "4,240,204,120,200,NONE,RELU,false"})
    void optionsMatchTheFloat64Reference(int batch, int dx, int dy, int j, int out, Activation act, Activation outAct, boolean normalized) {
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        Mlb op = Mlb.random(dx, dy, j, out, act, r.nextLong()).withOptions(normalized ? Normalization.pytorch() : Normalization.NONE, outAct);
        float[] x = Stats.gaussian(r, batch * dx), y = Stats.gaussian(r, batch * dy), g = Stats.gaussian(r, batch * out);
        MlbCpu cpu = new MlbCpu(op);
        List<float[]> got = new java.util.ArrayList<>(List.of(cpu.forward(x, y, batch)));
        got.addAll(cpu.backward(x, y, g, batch).tensors());
        double[][] want = refTensors(MlbReference.forward(op, x, y, batch), MlbReference.backward(op, x, y, g, batch));
        FusionChecks.assertMatchesReference(got, List.of(want), List.of(NAMES), conditioning(op, x, y, g, batch, want, seed), TOL, seed);
        TrainingStepTest.checkContract(new TrainingStepTest.Case<>(op + ", seed " + seed, () -> cpu.forward(x, y, batch), gr -> cpu.backward(x, y, gr, batch),
                () -> cpu.trainingStep(x, y, batch), Mlb.Gradients::tensors, Stats.gaussian(r, batch * out), Stats.gaussian(r, batch * out)));
    }

    /** block.bootstrap's MLB module through the safetensors fixtures: float32 against its float64 results. */
    @ParameterizedTest(name = "{0}")
    @CsvSource({"mlb-default,RELU,RELU", "mlb-tanh-normalized,TANH,SIGMOID"})
    void matchesBlockBootstrapsModuleToFloat32(String stem, Activation in, Activation outAct, @TempDir Path dir) throws IOException {
        try (StateDict sd = Fixtures.open(dir, stem)) {
            Mlb op = Mlb.fromStateDict(sd, "", in, outAct, Fixtures.flag(sd, "normalize"));
            int batch = FusionChecks.batch(sd);
            MlbCpu cpu = new MlbCpu(op);
            float[] x = sd.floats("input.0"), y = sd.floats("input.1"), g = sd.floats("grad_out");
            FusionChecks.assertMatchesFixture(sd, stem, cpu.forward(x, y, batch), cpu.backward(x, y, g, batch).tensors(), op.gradientNames(), TOL);
        }
    }

    @Test void bitwiseTheSameOnRerunsAndForEveryThreadCount() {
        // Large enough that the GEMMs cut their outputs into several tiles and the fused passes into several row blocks.
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        int batch = 37, dx = 300, dy = 257, j = 520, out = 130;
        for (Activation act : Activation.values()) {
            Mlb op = Mlb.random(dx, dy, j, out, act, r.nextLong());
            float[] x = Stats.gaussian(r, batch * dx), y = Stats.gaussian(r, batch * dy), g = Stats.gaussian(r, batch * out);
            MlbCpu one = new MlbCpu(op, CpuRuntime.withThreads(1));
            float[][] want = tensors(one.forward(x, y, batch), one.backward(x, y, g, batch));
            float[][] again = tensors(one.forward(x, y, batch), one.backward(x, y, g, batch));
            for (int t = 0; t < want.length; t++) assertArrayEquals(want[t], again[t], NAMES[t] + " rerun, seed " + seed);
            for (int threads : new int[] {2, 3}) {
                MlbCpu many = new MlbCpu(op, CpuRuntime.withThreads(threads));
                float[][] got = tensors(many.forward(x, y, batch), many.backward(x, y, g, batch));
                for (int t = 0; t < want.length; t++) assertArrayEquals(want[t], got[t], NAMES[t] + " " + threads + " threads, seed " + seed);
            }
        }
    }

    @Test void aBatchWhoseIntermediatesPassAJavaArrayIsRejectedByName() {
        // 65536 samples of one feature each pass every input check; their 65536 × 65536 joint activations cannot exist.
        Mlb op = Mlb.random(1, 1, 65536, 1, Activation.TANH, 3);
        MlbCpu cpu = new MlbCpu(op);
        float[] x = new float[65536], y = new float[65536], g = new float[65536];
        for (var call : List.<org.junit.jupiter.api.function.Executable>of(() -> cpu.forward(x, y, 65536), () -> cpu.backward(x, y, g, 65536))) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, call);
            assertTrue(e.getMessage().startsWith("batch: the joint activations B × J: 65536 × 65536 floats pass"), e.getMessage());
        }
    }

    @Test void theVectorizableTanhIsWithinAFewUlpOfTheCorrectlyRoundedOne() {
        // MlbKernels.tanh replaces Math.tanh in every TANH pass: its documented accuracy (at most 2.6 ulp),
        // oddness, saturation and NaN, on a dense grid of [-10, 10] and the special values.
        double worst = 0;
        for (int i = -2_000_000; i <= 2_000_000; i++) {
            float x = i * 5e-6f;
            float got = MlbKernels.tanh(x), want = (float) Math.tanh(x);
            assertEquals(-got, MlbKernels.tanh(-x), "odd at " + x);
            if (want != 0) worst = Math.max(worst, Math.abs(got - Math.tanh(x)) / Math.ulp(want));
        }
        assertTrue(worst <= 3, "worst " + worst + " ulp");
        assertEquals(1f, MlbKernels.tanh(40f));
        assertEquals(-1f, MlbKernels.tanh(Float.NEGATIVE_INFINITY));
        assertTrue(Float.isNaN(MlbKernels.tanh(Float.NaN)));
        assertEquals(1e-30f, MlbKernels.tanh(1e-30f), 1e-36f);
    }

    @Test void namesItselfAndItsRuntime() {
        Mlb op = Mlb.random(3, 2, 4, 5, Activation.TANH, 1);
        assertEquals("cpu-fp32", new MlbCpu(op).backend());
        assertEquals(CpuRuntime.defaults(), new MlbCpu(op).runtime());
        assertEquals(3, new MlbCpu(op, CpuRuntime.withThreads(3)).runtime().threads());
        assertThrows(IllegalArgumentException.class, () -> new MlbCpu(op, null));
        assertFalse(Sgemm.describe().isBlank());
    }

    static float[][] tensors(float[] out, Mlb.Gradients g) {
        return new float[][] {out, g.dx(), g.dy(), g.u().weight(), g.u().bias(), g.v().weight(), g.v().bias(), g.p().weight(), g.p().bias()};
    }

    static double[][] refTensors(double[] out, MlbReference.Grads g) {
        double[][] all = g.all(), t = new double[all.length + 1][];
        t[0] = out;
        System.arraycopy(all, 0, t, 1, all.length);
        return t;
    }

    /** The float64 reference's change under a float32-sized relative perturbation of every operand (see the class comment). */
    static Conditioning conditioning(Mlb op, float[] x, float[] y, float[] g, int batch, double[][] want, long seed) {
        int longest = Math.max(Math.max(op.dx(), op.dy()), Math.max(op.joint(), batch));
        return new Conditioning(Conditioning.step(Precision.FP32, longest), seed, (r, s) -> {
            Mlb moved = Mlb.of(Conditioning.perturb(op.u(), s, r), Conditioning.perturb(op.v(), s, r), Conditioning.perturb(op.p(), s, r),
                    op.activation()).withOptions(op.normalization(), op.outputActivation());
            float[] px = Conditioning.perturb(x, s, r), py = Conditioning.perturb(y, s, r);
            double[][] m = refTensors(MlbReference.forward(moved, px, py, batch), MlbReference.backward(moved, px, py, Conditioning.perturb(g, s, r), batch));
            double[] e = new double[m.length];
            for (int t = 0; t < m.length; t++) e[t] = Stats.relativeL2(m[t], want[t]);
            return e;
        });
    }
}
