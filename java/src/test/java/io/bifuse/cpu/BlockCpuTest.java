package io.bifuse.cpu;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.bifuse.Block;
import io.bifuse.Block.NormPosition;
import io.bifuse.Normalization;
import io.bifuse.Precision;
import io.bifuse.StateDict;
import io.bifuse.reference.BlockReference;
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
 * The float32 BLOCK backend against the float64 reference on fresh random inputs (the seed is in every
 * failure message), and against block.bootstrap's module through the fixtures. Tolerance and its reason:
 * {@link MutanCpuTest}'s (the same GEMMs and core per chunk).
 */
class BlockCpuTest {
    static final double TOL = 1e-5;

    @TempDir Path dir;

    @ParameterizedTest(name = "B={0} Dx={1} Dy={2} M={3} chunks={4} R={5} Out={6} shared={7} {8} normalized={9}")
    @CsvSource({"1,1,1,1,1,1,1,false,BEFORE_CAT,false", "3,7,5,11,4,3,2,false,AFTER_CAT,true", "5,9,9,10,7,2,4,true,BEFORE_CAT,true",
        "4,9,9,13,4,3,3,true,AFTER_CAT,false", "33,301,257,160,20,5,97,false,BEFORE_CAT,true", "2,2400,2048,1600,20,15,300,false,BEFORE_CAT,true"})
    void matchesTheFloat64Reference(int batch, int dx, int dy, int m, int chunks, int rank, int out, boolean shared, NormPosition pos, boolean normalized) {
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        Block op = Block.random(dx, dy, m, chunks, rank, out, shared, normalized ? Normalization.pytorch() : Normalization.NONE, pos, r.nextLong());
        float[] x = Stats.gaussian(r, batch * dx), y = Stats.gaussian(r, batch * dy), g = Stats.gaussian(r, batch * out);
        BlockCpu cpu = new BlockCpu(op);
        List<float[]> got = tensors(cpu.forward(x, y, batch), cpu.backward(x, y, g, batch));
        List<double[]> want = refTensors(op, x, y, g, batch);
        List<String> names = new ArrayList<>(List.of("forward"));
        names.addAll(op.gradientNames());
        Conditioning cond = new Conditioning(Conditioning.step(Precision.FP32, Math.max(Math.max(dx, dy), Math.max(rank * m, batch))), seed, (rr, s) -> {
            List<io.bifuse.Linear> m0 = new ArrayList<>(), m1 = new ArrayList<>();
            for (int c = 0; c < op.chunks(); c++) {
                m0.add(Conditioning.perturb(op.merge0().get(c), s, rr));
                m1.add(Conditioning.perturb(op.merge1().get(c), s, rr));
            }
            Block moved = shared
                    ? Block.shared(Conditioning.perturb(op.linear0(), s, rr), m0, Conditioning.perturb(op.linearOut(), s, rr), rank, op.normalization(), pos)
                    : Block.of(Conditioning.perturb(op.linear0(), s, rr), Conditioning.perturb(op.linear1(), s, rr), m0, m1, Conditioning.perturb(op.linearOut(), s, rr),
                            rank, op.normalization(), pos);
            List<double[]> mt = refTensors(moved, Conditioning.perturb(x, s, rr), Conditioning.perturb(y, s, rr), Conditioning.perturb(g, s, rr), batch);
            double[] e = new double[mt.size()];
            for (int t = 0; t < e.length; t++) e[t] = Stats.relativeL2(mt.get(t), want.get(t));
            return e;
        });
        FusionChecks.assertMatchesReference(got, want, names, cond, TOL, seed);
    }

    /** block.bootstrap's module, through the safetensors fixture: float32 against its float64 results, at the same bound. */
    @ParameterizedTest(name = "{0}")
    @ValueSource(strings = {"block-default", "block-uneven-aftercat-shared"})
    void matchesBlockBootstrapsModuleToFloat32(String stem) throws IOException {
        try (StateDict sd = Fixtures.open(dir, stem)) {
            NormPosition pos = sd.metadata().get("config").contains("\"pos_norm\": \"after_cat\"") ? NormPosition.AFTER_CAT : NormPosition.BEFORE_CAT;
            Block op = Block.fromStateDict(sd, "", Fixtures.flag(sd, "shared"), pos);
            int batch = (int) sd.info("input.0").shape()[0];
            BlockCpu cpu = new BlockCpu(op);
            float[] x = sd.floats("input.0"), y = sd.floats("input.1"), g = sd.floats("grad_out");
            FusionChecks.assertMatchesFixture(sd, stem, cpu.forward(x, y, batch), cpu.backward(x, y, g, batch).tensors(), op.gradientNames(), TOL);
        }
    }

    @Test void bitwiseTheSameOnRerunsAndForEveryThreadCount() {
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        int batch = 37, dx = 300, dy = 257, m = 96, chunks = 5, rank = 6, out = 130;
        for (NormPosition pos : NormPosition.values()) {
            Block op = Block.random(dx, dy, m, chunks, rank, out, false, Normalization.pytorch(), pos, r.nextLong());
            float[] x = Stats.gaussian(r, batch * dx), y = Stats.gaussian(r, batch * dy), g = Stats.gaussian(r, batch * out);
            BlockCpu one = new BlockCpu(op, CpuRuntime.withThreads(1));
            List<float[]> want = tensors(one.forward(x, y, batch), one.backward(x, y, g, batch));
            assertEqual(want, tensors(one.forward(x, y, batch), one.backward(x, y, g, batch)), "rerun, seed " + seed);
            for (int threads : new int[] {2, 3}) {
                BlockCpu many = new BlockCpu(op, CpuRuntime.withThreads(threads));
                assertEqual(want, tensors(many.forward(x, y, batch), many.backward(x, y, g, batch)), threads + " threads, seed " + seed);
            }
        }
    }

    @Test void refusesBadInputsAndSizesByName() {
        BlockCpu cpu = new BlockCpu(Block.random(3, 4, 6, 2, 2, 5, false, Normalization.NONE, NormPosition.BEFORE_CAT, 1));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> cpu.forward(new float[6], new float[7], 2));
        assertEquals("y: expected 2 × 4 = 8 floats, got 7", e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> cpu.backward(new float[6], new float[8], new float[9], 2));
        assertEquals("gradOut: expected 2 × 5 = 10 floats, got 9", e.getMessage());
        BlockCpu wide = new BlockCpu(Block.random(1, 1, 2048, 16, 1, 1, true, Normalization.NONE, NormPosition.BEFORE_CAT, 2));
        float[] big = new float[1 << 21];
        for (var call : List.<org.junit.jupiter.api.function.Executable>of(() -> wide.forward(big, big, 1 << 21), () -> wide.backward(big, big, big, 1 << 21))) {
            e = assertThrows(IllegalArgumentException.class, call);
            assertTrue(e.getMessage().startsWith("batch: the projections B × mm_dim: 2097152 × 2048 floats pass"), e.getMessage());
        }
        assertEquals("cpu-fp32", cpu.backend());
    }

    static List<float[]> tensors(float[] out, Block.Gradients g) {
        List<float[]> t = new ArrayList<>(List.of(out));
        t.addAll(g.tensors());
        return t;
    }

    static List<double[]> refTensors(Block op, float[] x, float[] y, float[] g, int batch) {
        List<double[]> t = new ArrayList<>(List.of(BlockReference.forward(op, x, y, batch)));
        t.addAll(BlockReference.backward(op, x, y, g, batch).tensors());
        return t;
    }

    private static void assertEqual(List<float[]> want, List<float[]> got, String what) {
        assertEquals(want.size(), got.size());
        for (int t = 0; t < want.size(); t++) assertArrayEquals(want.get(t), got.get(t), what + ", tensor " + t);
    }
}
