package io.bifuse.cpu;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.bifuse.Activation;
import io.bifuse.ConcatMlp;
import io.bifuse.Linear;
import io.bifuse.Precision;
import io.bifuse.StateDict;
import io.bifuse.reference.ConcatMlpReference;
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
 * The float32 ConcatMlp backend against the float64 reference (fresh seeds) and block.bootstrap's module
 * (the fixtures); tolerance 1e-5 with {@link Conditioning}'s escape (a ReLU flip), as {@link MutanCpuTest}.
 */
class ConcatMlpCpuTest {
    static final double TOL = 1e-5;

    @TempDir Path dir;

    @ParameterizedTest(name = "B={0} Dx={1} Dy={2} hidden={3} Out={4} {5}")
    @CsvSource({"1,1,1,'',1,RELU", "3,7,5,4,2,TANH", "5,9,8,6 4,3,SIGMOID", "33,301,257,500 500,97,RELU", "4,2400,2048,500,300,NONE"})
    void matchesTheFloat64Reference(int batch, int dx, int dy, String hiddenList, int out, Activation act) {
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        int[] hidden = hiddenList.isBlank() ? new int[0] : java.util.Arrays.stream(hiddenList.trim().split(" ")).mapToInt(Integer::parseInt).toArray();
        ConcatMlp op = ConcatMlp.random(dx, dy, hidden, out, act, r.nextLong());
        float[] x = Stats.gaussian(r, batch * dx), y = Stats.gaussian(r, batch * dy), g = Stats.gaussian(r, batch * out);
        ConcatMlpCpu cpu = new ConcatMlpCpu(op);
        List<float[]> got = new ArrayList<>(List.of(cpu.forward(x, y, batch)));
        got.addAll(cpu.backward(x, y, g, batch).tensors());
        List<double[]> want = ref(op, x, y, g, batch);
        List<String> names = new ArrayList<>(List.of("forward"));
        names.addAll(op.gradientNames());
        int longest = Math.max(dx + dy, batch);
        for (int hw : hidden) longest = Math.max(longest, hw);
        Conditioning cond = new Conditioning(Conditioning.step(Precision.FP32, longest), seed, (rr, s) -> {
            List<Linear> moved = new ArrayList<>();
            for (Linear l : op.layers()) moved.add(Conditioning.perturb(l, s, rr));
            List<double[]> mt = ref(ConcatMlp.of(dx, moved, act), Conditioning.perturb(x, s, rr), Conditioning.perturb(y, s, rr), Conditioning.perturb(g, s, rr), batch);
            double[] e = new double[mt.size()];
            for (int t = 0; t < e.length; t++) e[t] = Stats.relativeL2(mt.get(t), want.get(t));
            return e;
        });
        FusionChecks.assertMatchesReference(got, want, names, cond, TOL, seed);
    }

    private static List<double[]> ref(ConcatMlp op, float[] x, float[] y, float[] g, int batch) {
        List<double[]> t = new ArrayList<>(List.of(ConcatMlpReference.forward(op, x, y, batch)));
        t.addAll(ConcatMlpReference.backward(op, x, y, g, batch));
        return t;
    }

    @ParameterizedTest(name = "{0}")
    @CsvSource({"concatmlp-default,RELU", "concatmlp-tanh,TANH"})
    void matchesBlockBootstrapsModuleToFloat32(String stem, Activation act) throws IOException {
        try (StateDict sd = Fixtures.open(dir, stem)) {
            ConcatMlp op = ConcatMlp.fromStateDict(sd, "", 10, act);
            int batch = (int) sd.info("input.0").shape()[0];
            ConcatMlpCpu cpu = new ConcatMlpCpu(op);
            float[] x = sd.floats("input.0"), y = sd.floats("input.1"), g = sd.floats("grad_out");
            FusionChecks.assertMatchesFixture(sd, stem, cpu.forward(x, y, batch), cpu.backward(x, y, g, batch).tensors(), op.gradientNames(), TOL);
        }
    }

    @Test void bitwiseTheSameOnRerunsAndForEveryThreadCount() {
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        int batch = 37, dx = 300, dy = 257, out = 130;
        ConcatMlp op = ConcatMlp.random(dx, dy, new int[] {500, 260}, out, Activation.RELU, r.nextLong());
        float[] x = Stats.gaussian(r, batch * dx), y = Stats.gaussian(r, batch * dy), g = Stats.gaussian(r, batch * out);
        List<float[]> want = run(new ConcatMlpCpu(op, CpuRuntime.withThreads(1)), x, y, g, batch);
        for (int threads : new int[] {1, 2, 3}) {
            List<float[]> got = run(new ConcatMlpCpu(op, CpuRuntime.withThreads(threads)), x, y, g, batch);
            assertEquals(want.size(), got.size());
            for (int t = 0; t < want.size(); t++) assertArrayEquals(want.get(t), got.get(t), threads + " threads, tensor " + t + ", seed " + seed);
        }
    }

    private static List<float[]> run(ConcatMlpCpu c, float[] x, float[] y, float[] g, int batch) {
        List<float[]> t = new ArrayList<>(List.of(c.forward(x, y, batch)));
        t.addAll(c.backward(x, y, g, batch).tensors());
        return t;
    }
}
