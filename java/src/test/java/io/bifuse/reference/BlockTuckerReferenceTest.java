package io.bifuse.reference;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.bifuse.BilinearLayer;
import io.bifuse.Block.NormPosition;
import io.bifuse.BlockTucker;
import io.bifuse.Linear;
import io.bifuse.Normalization;
import io.bifuse.StateDict;
import io.bifuse.Tucker;
import io.bifuse.testing.FiniteDifferences;
import io.bifuse.testing.Fixtures;
import io.bifuse.testing.FusionChecks;
import io.bifuse.testing.Stats;
import java.io.IOException;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * {@link BlockTuckerReference} against block.bootstrap's own {@code fusions.BlockTucker} through the
 * fixtures ({@link TuckerReference} in {@link TuckerReferenceTest}) (1e-12: see
 * {@link MutanReferenceTest}), BlockTucker's gradients against float64 central differences (every input
 * element, one element of every parameter tensor through the op rebuilt from its state dict), and the
 * loaders' refusals.
 */
class BlockTuckerReferenceTest {
    @TempDir Path dir;

    @ParameterizedTest(name = "{0}")
    @ValueSource(strings = {"blocktucker-default", "blocktucker-uneven-aftercat"})
    void blockTuckerMatchesBlockBootstrapsModule(String stem) throws IOException {
        try (StateDict sd = Fixtures.open(dir, stem)) {
            assertEquals("BlockTucker", sd.metadata().get("fusion"));
            NormPosition pos = sd.metadata().get("config").contains("\"pos_norm\": \"after_cat\"") ? NormPosition.AFTER_CAT : NormPosition.BEFORE_CAT;
            BlockTucker op = BlockTucker.fromStateDict(sd, "", Fixtures.flag(sd, "shared"), pos);
            compare(stem, sd, BlockTuckerReference.forward(op, in(sd, 0), in(sd, 1), batch(sd)),
                    BlockTuckerReference.backward(op, in(sd, 0), in(sd, 1), sd.doubles("grad_out"), batch(sd)).tensors(), op.gradientNames());
        }
    }

    static double[] in(StateDict sd, int i) { return sd.doubles("input." + i); }

    static int batch(StateDict sd) { return (int) sd.info("input.0").shape()[0]; }

    static void compare(String stem, StateDict sd, double[] out, List<double[]> grads, List<String> names) {
        double e = Stats.relativeL2(out, sd.doubles("out"));
        assertTrue(e <= MutanReferenceTest.FIXTURE_TOL, stem + " forward: relative L2 " + e);
        assertEquals(names.size(), grads.size());
        for (int t = 0; t < names.size(); t++) {
            e = Stats.relativeL2(grads.get(t), sd.doubles("grad." + names.get(t)));
            assertTrue(e <= MutanReferenceTest.FIXTURE_TOL, stem + " " + names.get(t) + ": relative L2 " + e);
        }
    }

    @ParameterizedTest(name = "M={0} chunks={1} shared={2} {3}")
    @CsvSource({"5,1,false,AFTER_CAT", "11,4,false,BEFORE_CAT", "9,3,true,AFTER_CAT", "10,7,true,BEFORE_CAT"})
    void gradientsMatchFiniteDifferences(int m, int chunks, boolean shared, NormPosition pos) {
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        int batch = 3, dx = 6, dy = shared ? 6 : 5, out = 3;
        BlockTucker op = BlockTucker.random(dx, dy, m, chunks, out, shared, Normalization.pytorch(), pos, r.nextLong());
        double[] x = FusionChecks.floatExactGaussian(r, batch * dx), y = FusionChecks.floatExactGaussian(r, batch * dy), w = FusionChecks.floatExactGaussian(r, batch * out);
        List<double[]> grads = BlockTuckerReference.backward(op, x, y, w, batch).tensors();
        double h = 0x1p-16;
        String what = op + ", seed " + seed;
        FiniteDifferences.assertInputGradient(x, grads.get(0), () -> loss(op, x, y, w, batch), h, what + ": input.0");
        FiniteDifferences.assertInputGradient(y, grads.get(1), () -> loss(op, x, y, w, batch), h, what + ": input.1");
        Map<String, double[]> values = new LinkedHashMap<>();
        Map<String, long[]> shapes = new HashMap<>();
        stateDict(op, values, shapes);
        List<String> names = op.gradientNames();
        for (int t = 2; t < names.size(); t++) {
            String name = names.get(t);
            int index = (int) (r.nextLong(1 << 20) % grads.get(t).length);
            String other = name.startsWith("linear0.") ? "linear1." + name.substring(8) : name.startsWith("linear1.") ? "linear0." + name.substring(8) : name;
            FiniteDifferences.assertDerivative(d -> {
                Map<String, double[]> v = new LinkedHashMap<>(values);
                double value = (float) (values.get(name)[index] + d);
                for (String n : shared ? List.of(name, other) : List.of(name)) {
                    double[] a = v.get(n).clone();
                    a[index] = value;
                    v.put(n, a);
                }
                return new double[] {value - values.get(name)[index], loss(BlockTucker.fromStateDict(StateDict.of(v, shapes), "", shared, pos), x, y, w, batch)};
            }, h, grads.get(t)[index], what + ": " + name + "[" + index + "]");
        }
    }

    /** The op's parameters under block.bootstrap's names. */
    static void stateDict(BlockTucker op, Map<String, double[]> values, Map<String, long[]> shapes) {
        for (String[] nl : new String[][] {{"linear0", "0"}, {"linear1", "1"}, {"linear_out", "2"}}) {
            Linear l = nl[1].equals("0") ? op.linear0() : nl[1].equals("1") ? op.linear1() : op.linearOut();
            values.put(nl[0] + ".weight", l.weightAsDouble());
            shapes.put(nl[0] + ".weight", new long[] {l.out(), l.in()});
            values.put(nl[0] + ".bias", l.biasAsDouble());
            shapes.put(nl[0] + ".bias", new long[] {l.out()});
        }
        for (int c = 0; c < op.chunks(); c++) {
            BilinearLayer b = op.bilinears().get(c);
            values.put("bilinears." + c + ".weight", b.weightAsDouble());
            shapes.put("bilinears." + c + ".weight", new long[] {b.out(), b.in1(), b.in2()});
            values.put("bilinears." + c + ".bias", b.biasAsDouble());
            shapes.put("bilinears." + c + ".bias", new long[] {b.out()});
        }
    }

    private static double loss(BlockTucker op, double[] x, double[] y, double[] w, int batch) {
        return FusionChecks.dot(w, BlockTuckerReference.forward(op, x, y, batch));
    }


    @Test void loadingRefusesBadStateDictsByName() {
        BlockTucker op = BlockTucker.random(5, 4, 11, 4, 2, false, Normalization.pytorch(), NormPosition.BEFORE_CAT, 7);
        Map<String, double[]> v = new LinkedHashMap<>();
        Map<String, long[]> s = new HashMap<>();
        stateDict(op, v, s);
        assertEquals(op, BlockTucker.fromStateDict(StateDict.of(v, s), "", false, NormPosition.BEFORE_CAT), "a state dict round trip");
        Map<String, double[]> v1 = new LinkedHashMap<>(v);
        Map<String, long[]> s1 = new HashMap<>(s);
        v1.put("bilinears.3.weight", new double[27]);
        s1.put("bilinears.3.weight", new long[] {3, 3, 3});
        v1.put("bilinears.3.bias", new double[3]);
        s1.put("bilinears.3.bias", new long[] {3});
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> BlockTucker.fromStateDict(StateDict.of(v1, s1), "", false, NormPosition.BEFORE_CAT));
        assertEquals("the in-memory state dict: 'bilinears.3.weight': expected shape [2, 2, 2] (chunk 3 of get_sizes_list(11, 4) = [3, 3, 3, 2]), got [3, 3, 3]",
                e.getMessage());
        Map<String, double[]> v2 = new LinkedHashMap<>(v);
        Map<String, long[]> s2 = new HashMap<>(s);
        v2.put("bilinears.0.weight", new double[9]);
        s2.put("bilinears.0.weight", new long[] {3, 3});
        e = assertThrows(IllegalArgumentException.class, () -> BlockTucker.fromStateDict(StateDict.of(v2, s2), "", false, NormPosition.BEFORE_CAT));
        assertEquals("the in-memory state dict: 'bilinears.0.weight': expected a 3-D out × in1 × in2 weight, got shape [3, 3]", e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> Tucker.fromStateDict(StateDict.of(v, s), "", false));
        assertTrue(e.getMessage().startsWith("the in-memory state dict: no tensor 'bilinear.weight'"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> Tucker.of(op.linear0(), op.linear1(), op.bilinears().get(0), op.linearOut(), Normalization.NONE));
        assertEquals("bilinear: expected a bilinear layer 11 × 11 → 11, got 3 × 3 → 3", e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> new BilinearLayer(2, 2, 2, new float[7], null));
        assertEquals("weight: expected 2 × 2 × 2 = 8 floats (out × in1 × in2, as nn.Bilinear.weight), got 7", e.getMessage());
    }
}
