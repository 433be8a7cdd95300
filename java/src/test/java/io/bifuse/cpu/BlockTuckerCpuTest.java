package io.bifuse.cpu;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.bifuse.BilinearLayer;
import io.bifuse.Block.NormPosition;
import io.bifuse.BlockTucker;
import io.bifuse.Normalization;
import io.bifuse.Precision;
import io.bifuse.StateDict;
import io.bifuse.Tucker;
import io.bifuse.reference.BlockTuckerReference;
import io.bifuse.reference.TuckerReference;
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
 * The float32 BlockTucker and Tucker backends against the float64 reference (fresh seeds, in every
 * message) and against block.bootstrap's modules through the fixtures. Tolerance 1e-5 with
 * {@link Conditioning}'s escape, as {@link MutanCpuTest} (here the longest sum is a chunk's s² outer
 * products).
 */
class BlockTuckerCpuTest {
    static final double TOL = 1e-5;

    @TempDir Path dir;

    @ParameterizedTest(name = "B={0} Dx={1} Dy={2} M={3} chunks={4} Out={5} shared={6} {7} normalized={8}")
    @CsvSource({"1,1,1,1,1,1,false,AFTER_CAT,false", "3,7,5,11,4,2,false,AFTER_CAT,true", "5,9,9,10,7,4,true,BEFORE_CAT,true",
        "33,301,257,160,20,97,false,BEFORE_CAT,true", "1030,8,8,64,1,3,false,AFTER_CAT,false", "6,40,30,48,1,5,false,AFTER_CAT,true"})
    void matchesTheFloat64Reference(int batch, int dx, int dy, int m, int chunks, int out, boolean shared, NormPosition pos, boolean normalized) {
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        BlockTucker op = BlockTucker.random(dx, dy, m, chunks, out, shared, normalized ? Normalization.pytorch() : Normalization.NONE, pos, r.nextLong());
        float[] x = Stats.gaussian(r, batch * dx), y = Stats.gaussian(r, batch * dy), g = Stats.gaussian(r, batch * out);
        BlockTuckerCpu cpu = new BlockTuckerCpu(op);
        List<float[]> got = new ArrayList<>(List.of(cpu.forward(x, y, batch)));
        got.addAll(cpu.backward(x, y, g, batch).tensors());
        List<double[]> want = ref(op, x, y, g, batch);
        List<String> names = new ArrayList<>(List.of("forward"));
        names.addAll(op.gradientNames());
        int longest = Math.max(Math.max(dx, dy), Math.max(op.chunkSize(0) * op.chunkSize(0), batch));
        Conditioning cond = new Conditioning(Conditioning.step(Precision.FP32, longest), seed, (rr, s) -> {
            List<BilinearLayer> bl = new ArrayList<>();
            for (BilinearLayer b : op.bilinears()) {
                float[] w = Conditioning.perturb(b.weight(), s, rr), bb = Conditioning.perturb(b.bias(), s, rr);
                bl.add(new BilinearLayer(b.out(), b.in1(), b.in2(), w, bb));
            }
            BlockTucker moved = shared
                    ? BlockTucker.shared(Conditioning.perturb(op.linear0(), s, rr), bl, Conditioning.perturb(op.linearOut(), s, rr), op.normalization(), pos)
                    : BlockTucker.of(Conditioning.perturb(op.linear0(), s, rr), Conditioning.perturb(op.linear1(), s, rr), bl, Conditioning.perturb(op.linearOut(), s, rr),
                            op.normalization(), pos);
            List<double[]> mt = ref(moved, Conditioning.perturb(x, s, rr), Conditioning.perturb(y, s, rr), Conditioning.perturb(g, s, rr), batch);
            double[] e = new double[mt.size()];
            for (int t = 0; t < e.length; t++) e[t] = Stats.relativeL2(mt.get(t), want.get(t));
            return e;
        });
        FusionChecks.assertMatchesReference(got, want, names, cond, TOL, seed);
    }

    private static List<double[]> ref(BlockTucker op, float[] x, float[] y, float[] g, int batch) {
        List<double[]> t = new ArrayList<>(List.of(BlockTuckerReference.forward(op, x, y, batch)));
        t.addAll(BlockTuckerReference.backward(op, x, y, g, batch).tensors());
        return t;
    }

    @ParameterizedTest(name = "{0}")
    @ValueSource(strings = {"blocktucker-default", "blocktucker-uneven-aftercat", "tucker-default", "tucker-normalized"})
    void matchesBlockBootstrapsModulesToFloat32(String stem) throws IOException {
        try (StateDict sd = Fixtures.open(dir, stem)) {
            int batch = (int) sd.info("input.0").shape()[0];
            float[] x = sd.floats("input.0"), y = sd.floats("input.1"), g = sd.floats("grad_out");
            float[] out;
            List<float[]> grads;
            List<String> names;
            if (stem.startsWith("tucker")) {
                Tucker op = Tucker.fromStateDict(sd, "", Fixtures.flag(sd, "normalize"));
                TuckerCpu cpu = new TuckerCpu(op);
                out = cpu.forward(x, y, batch);
                grads = cpu.backward(x, y, g, batch).tensors();
                names = op.gradientNames();
                assertEquals(TuckerReference.backward(op, x, y, g, batch).size(), names.size());
            } else {
                NormPosition pos = sd.metadata().get("config").contains("\"pos_norm\": \"after_cat\"") ? NormPosition.AFTER_CAT : NormPosition.BEFORE_CAT;
                BlockTucker op = BlockTucker.fromStateDict(sd, "", Fixtures.flag(sd, "shared"), pos);
                BlockTuckerCpu cpu = new BlockTuckerCpu(op);
                out = cpu.forward(x, y, batch);
                grads = cpu.backward(x, y, g, batch).tensors();
                names = op.gradientNames();
            }
            double e = Stats.relativeL2(out, sd.doubles("out"));
            assertTrue(e <= TOL, stem + " forward: " + e);
            for (int t = 0; t < names.size(); t++) {
                e = Stats.relativeL2(grads.get(t), sd.doubles("grad." + names.get(t)));
                assertTrue(e <= TOL, stem + " " + names.get(t) + ": " + e);
            }
        }
    }

    @Test void bitwiseTheSameOnRerunsAndForEveryThreadCount() {
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        int batch = 37, dx = 200, dy = 150, m = 96, chunks = 3, out = 50;
        BlockTucker op = BlockTucker.random(dx, dy, m, chunks, out, false, Normalization.pytorch(), NormPosition.BEFORE_CAT, r.nextLong());
        float[] x = Stats.gaussian(r, batch * dx), y = Stats.gaussian(r, batch * dy), g = Stats.gaussian(r, batch * out);
        BlockTuckerCpu one = new BlockTuckerCpu(op, CpuRuntime.withThreads(1));
        List<float[]> want = run(one, x, y, g, batch);
        assertEqual(want, run(one, x, y, g, batch), "rerun, seed " + seed);
        for (int threads : new int[] {2, 3}) assertEqual(want, run(new BlockTuckerCpu(op, CpuRuntime.withThreads(threads)), x, y, g, batch), threads + " threads, seed " + seed);
    }

    private static List<float[]> run(BlockTuckerCpu c, float[] x, float[] y, float[] g, int batch) {
        List<float[]> t = new ArrayList<>(List.of(c.forward(x, y, batch)));
        t.addAll(c.backward(x, y, g, batch).tensors());
        return t;
    }

    private static void assertEqual(List<float[]> want, List<float[]> got, String what) {
        assertEquals(want.size(), got.size());
        for (int t = 0; t < want.size(); t++) assertArrayEquals(want.get(t), got.get(t), what + ", tensor " + t);
    }
}
