package io.bifuse.cpu;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.bifuse.Activation;
import io.bifuse.LinearSum;
import io.bifuse.Normalization;
import io.bifuse.Precision;
import io.bifuse.StateDict;
import io.bifuse.reference.LinearSumReference;
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

/**
 * The float32 LinearSum backend against the float64 reference (fresh seeds) and block.bootstrap's module
 * (the fixtures); tolerance 1e-5 with {@link Conditioning}'s escape (a ReLU flip, the signed sqrt near
 * zero), as {@link MutanCpuTest}.
 */
class LinearSumCpuTest {
    static final double TOL = 1e-5;

    @TempDir Path dir;

    @ParameterizedTest(name = "B={0} Dx={1} Dy={2} M={3} Out={4} {5} {6} normalized={7}")
    @CsvSource({"1,1,1,1,1,NONE,NONE,false", "3,7,5,4,2,RELU,RELU,false", "5,9,8,6,4,TANH,SIGMOID,true", "33,301,257,129,97,SIGMOID,TANH,true",
        "8,2400,2048,1200,300,RELU,RELU,true"})
    void matchesTheFloat64Reference(int batch, int dx, int dy, int m, int out, Activation in, Activation outAct, boolean normalized) {
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        LinearSum op = LinearSum.random(dx, dy, m, out, in, outAct, normalized ? Normalization.pytorch() : Normalization.NONE, r.nextLong());
        float[] x = Stats.gaussian(r, batch * dx), y = Stats.gaussian(r, batch * dy), g = Stats.gaussian(r, batch * out);
        LinearSumCpu cpu = new LinearSumCpu(op);
        List<float[]> got = new ArrayList<>(List.of(cpu.forward(x, y, batch)));
        got.addAll(cpu.backward(x, y, g, batch).tensors());
        List<double[]> want = ref(op, x, y, g, batch);
        List<String> names = new ArrayList<>(List.of("forward"));
        names.addAll(op.gradientNames());
        Conditioning cond = new Conditioning(Conditioning.step(Precision.FP32, Math.max(Math.max(dx, dy), Math.max(m, batch))), seed, (rr, s) -> {
            LinearSum moved = LinearSum.of(Conditioning.perturb(op.linear0(), s, rr), Conditioning.perturb(op.linear1(), s, rr), Conditioning.perturb(op.linearOut(), s, rr),
                    in, outAct, op.normalization());
            List<double[]> mt = ref(moved, Conditioning.perturb(x, s, rr), Conditioning.perturb(y, s, rr), Conditioning.perturb(g, s, rr), batch);
            double[] e = new double[mt.size()];
            for (int t = 0; t < e.length; t++) e[t] = Stats.relativeL2(mt.get(t), want.get(t));
            return e;
        });
        FusionChecks.assertMatchesReference(got, want, names, cond, TOL, seed);
    }

    private static List<double[]> ref(LinearSum op, float[] x, float[] y, float[] g, int batch) {
        List<double[]> t = new ArrayList<>(List.of(LinearSumReference.forward(op, x, y, batch)));
        t.addAll(LinearSumReference.backward(op, x, y, g, batch));
        return t;
    }

    @ParameterizedTest(name = "{0}")
    @CsvSource({"linearsum-default,RELU,RELU", "linearsum-tanh-sigmoid-normalized,TANH,SIGMOID"})
    void matchesBlockBootstrapsModuleToFloat32(String stem, Activation in, Activation out) throws IOException {
        try (StateDict sd = Fixtures.open(dir, stem)) {
            LinearSum op = LinearSum.fromStateDict(sd, "", in, out, Fixtures.flag(sd, "normalize"));
            int batch = (int) sd.info("input.0").shape()[0];
            LinearSumCpu cpu = new LinearSumCpu(op);
            float[] x = sd.floats("input.0"), y = sd.floats("input.1"), g = sd.floats("grad_out");
            FusionChecks.assertMatchesFixture(sd, stem, cpu.forward(x, y, batch), cpu.backward(x, y, g, batch).tensors(), op.gradientNames(), TOL);
        }
    }

    @Test void bitwiseTheSameOnRerunsAndForEveryThreadCount() {
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        int batch = 37, dx = 300, dy = 257, m = 520, out = 130;
        for (Activation act : Activation.values()) {
            LinearSum op = LinearSum.random(dx, dy, m, out, act, act, Normalization.pytorch(), r.nextLong());
            float[] x = Stats.gaussian(r, batch * dx), y = Stats.gaussian(r, batch * dy), g = Stats.gaussian(r, batch * out);
            List<float[]> want = run(new LinearSumCpu(op, CpuRuntime.withThreads(1)), x, y, g, batch);
            for (int threads : new int[] {1, 2, 3}) {
                List<float[]> got = run(new LinearSumCpu(op, CpuRuntime.withThreads(threads)), x, y, g, batch);
                assertEquals(want.size(), got.size());
                for (int t = 0; t < want.size(); t++) assertArrayEquals(want.get(t), got.get(t), act + " " + threads + " threads, tensor " + t + ", seed " + seed);
            }
        }
    }

    private static List<float[]> run(LinearSumCpu c, float[] x, float[] y, float[] g, int batch) {
        List<float[]> t = new ArrayList<>(List.of(c.forward(x, y, batch)));
        t.addAll(c.backward(x, y, g, batch).tensors());
        return t;
    }
}
