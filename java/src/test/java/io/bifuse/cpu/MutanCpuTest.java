package io.bifuse.cpu;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.bifuse.Mutan;
import io.bifuse.Normalization;
import io.bifuse.Precision;
import io.bifuse.StateDict;
import io.bifuse.reference.MutanReference;
import io.bifuse.testing.Conditioning;
import io.bifuse.testing.Fixtures;
import io.bifuse.testing.FusionChecks;
import io.bifuse.testing.Stats;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The float32 MUTAN backend against the float64 reference on fresh random inputs (the seed is in every
 * failure message), and against block.bootstrap's module through the fixtures.
 *
 * <p>Tolerance: 1e-5 relative L2 on the output and every gradient: each value is a float32 GEMM sum of at
 * most max(Dx, Dy, R·M, B) products, or the core's sum of R, whose typical error is 2⁻²⁴·sqrt(n), far
 * below it. Where a tensor exceeds it, {@link Conditioning}'s {@code max(1e-5, 2·base)} applies: with the
 * normalization, a core value near zero puts the signed sqrt's slope {@code 1/(2·sqrt|z|)} on its float32
 * rounding, which no float32 implementation avoids (the float64 reference with every operand moved by the
 * float32 step shows the same change).
 */
class MutanCpuTest {
    static final double TOL = 1e-5;

    @TempDir Path dir;

    @ParameterizedTest(name = "B={0} Dx={1} Dy={2} M={3} R={4} Out={5} shared={6} normalized={7}")
    @CsvSource({"1,1,1,1,1,1,false,false", "3,7,5,4,3,2,false,true", "5,9,9,6,2,4,true,false", "4,9,9,6,5,3,true,true",
        "33,301,257,64,5,97,false,true", "2,2400,2048,160,10,300,false,false", "64,310,310,100,15,30,true,true"})
    void matchesTheFloat64Reference(int batch, int dx, int dy, int m, int rank, int out, boolean shared, boolean normalized) {
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        Mutan op = Mutan.random(dx, dy, m, rank, out, shared, normalized ? Normalization.pytorch() : Normalization.NONE, r.nextLong());
        float[] x = Stats.gaussian(r, batch * dx), y = Stats.gaussian(r, batch * dy), g = Stats.gaussian(r, batch * out);
        MutanCpu cpu = new MutanCpu(op);
        List<float[]> got = tensors(cpu.forward(x, y, batch), cpu.backward(x, y, g, batch));
        List<double[]> want = refTensors(op, x, y, g, batch);
        List<String> names = names(op);
        Conditioning cond = new Conditioning(Conditioning.step(Precision.FP32, Math.max(Math.max(dx, dy), Math.max(rank * m, batch))), seed, (rr, s) -> {
            Mutan moved = shared
                    ? Mutan.shared(Conditioning.perturb(op.linear0(), s, rr), Conditioning.perturb(op.mergeLinear0(), s, rr), Conditioning.perturb(op.linearOut(), s, rr),
                            rank, op.normalization())
                    : Mutan.of(Conditioning.perturb(op.linear0(), s, rr), Conditioning.perturb(op.linear1(), s, rr), Conditioning.perturb(op.mergeLinear0(), s, rr),
                            Conditioning.perturb(op.mergeLinear1(), s, rr), Conditioning.perturb(op.linearOut(), s, rr), rank, op.normalization());
            List<double[]> mt = refTensors(moved, Conditioning.perturb(x, s, rr), Conditioning.perturb(y, s, rr), Conditioning.perturb(g, s, rr), batch);
            double[] e = new double[mt.size()];
            for (int t = 0; t < e.length; t++) e[t] = Stats.relativeL2(mt.get(t), want.get(t));
            return e;
        });
        FusionChecks.assertMatchesReference(got, want, names, cond, TOL, seed);
    }

    /** block.bootstrap's module, through the safetensors fixture: float32 against its float64 results, at the same bound. */
    @ParameterizedTest(name = "{0}")
    @ValueSource(strings = {"mutan-default", "mutan-shared-normalized"})
    void matchesBlockBootstrapsModuleToFloat32(String stem) throws IOException {
        try (StateDict sd = Fixtures.open(dir, stem)) {
            Mutan op = Mutan.fromStateDict(sd, "", Fixtures.flag(sd, "shared"), Fixtures.flag(sd, "normalize"));
            int batch = (int) sd.info("input.0").shape()[0];
            MutanCpu cpu = new MutanCpu(op);
            float[] x = sd.floats("input.0"), y = sd.floats("input.1"), g = sd.floats("grad_out");
            FusionChecks.assertMatchesFixture(sd, stem, cpu.forward(x, y, batch), cpu.backward(x, y, g, batch).tensors(), op.gradientNames(), TOL);
        }
    }

    @Test void bitwiseTheSameOnRerunsAndForEveryThreadCount() {
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        int batch = 37, dx = 300, dy = 257, m = 96, rank = 6, out = 130;
        for (boolean normalized : new boolean[] {false, true}) {
            Mutan op = Mutan.random(dx, dy, m, rank, out, false, normalized ? Normalization.pytorch() : Normalization.NONE, r.nextLong());
            float[] x = Stats.gaussian(r, batch * dx), y = Stats.gaussian(r, batch * dy), g = Stats.gaussian(r, batch * out);
            MutanCpu one = new MutanCpu(op, CpuRuntime.withThreads(1));
            List<float[]> want = tensors(one.forward(x, y, batch), one.backward(x, y, g, batch));
            assertEqual(want, tensors(one.forward(x, y, batch), one.backward(x, y, g, batch)), "rerun, seed " + seed);
            for (int threads : new int[] {2, 3}) {
                MutanCpu many = new MutanCpu(op, CpuRuntime.withThreads(threads));
                assertEqual(want, tensors(many.forward(x, y, batch), many.backward(x, y, g, batch)), threads + " threads, seed " + seed);
            }
        }
    }

    @Test void theTrainingStepContract() {
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        int batch = 4, dx = 9, dy = 9, m = 5, rank = 3, out = 6;
        for (boolean shared : new boolean[] {false, true}) {
            MutanCpu cpu = new MutanCpu(Mutan.random(dx, dy, m, rank, out, shared, Normalization.pytorch(), r.nextLong()));
            float[] x = Stats.gaussian(r, batch * dx), y = Stats.gaussian(r, batch * dy);
            TrainingStepTest.checkContract(new TrainingStepTest.Case<>("MutanCpu shared=" + shared + ", seed " + seed, () -> cpu.forward(x, y, batch),
                    gr -> cpu.backward(x, y, gr, batch), () -> cpu.trainingStep(x, y, batch), Mutan.Gradients::tensors,
                    Stats.gaussian(r, batch * out), Stats.gaussian(r, batch * out)));
        }
    }

    @Test void refusesBadInputsAndSizesByName() {
        MutanCpu cpu = new MutanCpu(Mutan.random(3, 4, 2, 2, 5, false, Normalization.NONE, 1));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> cpu.forward(new float[6], new float[7], 2));
        assertEquals("y: expected 2 × 4 = 8 floats, got 7", e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> cpu.backward(new float[6], new float[8], new float[9], 2));
        assertEquals("gradOut: expected 2 × 5 = 10 floats, got 9", e.getMessage());
        // 2^21 samples of a 2048-wide core: B × M passes 2^31, refused before anything is allocated
        MutanCpu wide = new MutanCpu(Mutan.random(1, 1, 2048, 1, 1, true, Normalization.NONE, 2));
        float[] big = new float[1 << 21];
        for (var call : List.<org.junit.jupiter.api.function.Executable>of(() -> wide.forward(big, big, 1 << 21), () -> wide.backward(big, big, big, 1 << 21))) {
            e = assertThrows(IllegalArgumentException.class, call);
            assertTrue(e.getMessage().startsWith("batch: the projections B × mm_dim: 2097152 × 2048 floats pass"), e.getMessage());
        }
        assertEquals("cpu-fp32", cpu.backend());
    }

    static List<float[]> tensors(float[] out, Mutan.Gradients g) {
        List<float[]> t = new ArrayList<>(List.of(out));
        t.addAll(g.tensors());
        return t;
    }

    static List<double[]> refTensors(Mutan op, float[] x, float[] y, float[] g, int batch) {
        List<double[]> t = new ArrayList<>(List.of(MutanReference.forward(op, x, y, batch)));
        t.addAll(MutanReference.backward(op, x, y, g, batch).tensors());
        return t;
    }

    static List<String> names(Mutan op) {
        List<String> n = new ArrayList<>(List.of("forward"));
        n.addAll(op.gradientNames());
        return n;
    }

    private static void assertEqual(List<float[]> want, List<float[]> got, String what) {
        assertEquals(want.size(), got.size());
        for (int t = 0; t < want.size(); t++) assertArrayEquals(want.get(t), got.get(t), what + ", tensor " + t);
    }
}
