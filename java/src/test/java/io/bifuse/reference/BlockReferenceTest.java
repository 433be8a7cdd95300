package io.bifuse.reference;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.bifuse.Block;
import io.bifuse.Block.NormPosition;
import io.bifuse.Linear;
import io.bifuse.Normalization;
import io.bifuse.StateDict;
import io.bifuse.testing.FiniteDifferences;
import io.bifuse.testing.Fixtures;
import io.bifuse.testing.FusionChecks;
import io.bifuse.testing.Stats;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
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
 * {@link BlockReference} against block.bootstrap's own {@code fusions.Block} through the fixtures (the
 * tolerance and its reason: {@link MutanReferenceTest}), against float64 central differences for every
 * input element and one element of every parameter tensor, and the loader's refusals.
 */
class BlockReferenceTest {
    @TempDir Path dir;

    @ParameterizedTest(name = "{0}")
    @ValueSource(strings = {"block-default", "block-uneven-aftercat-shared"})
    void matchesBlockBootstrapsModule(String stem) throws IOException {
        try (StateDict sd = Fixtures.open(dir, stem)) {
            assertEquals("Block", sd.metadata().get("fusion"));
            NormPosition pos = sd.metadata().get("config").contains("\"pos_norm\": \"after_cat\"") ? NormPosition.AFTER_CAT : NormPosition.BEFORE_CAT;
            Block op = Block.fromStateDict(sd, "", Fixtures.flag(sd, "shared"), pos);
            int batch = (int) sd.info("input.0").shape()[0];
            double[] x = sd.doubles("input.0"), y = sd.doubles("input.1"), g = sd.doubles("grad_out");
            double e = Stats.relativeL2(BlockReference.forward(op, x, y, batch), sd.doubles("out"));
            assertTrue(e <= MutanReferenceTest.FIXTURE_TOL, stem + " forward: relative L2 " + e);
            List<double[]> got = BlockReference.backward(op, x, y, g, batch).tensors();
            List<String> names = op.gradientNames();
            assertEquals(2 + 2 * (2 + 2 * op.chunks() + 1), names.size(), "every layer has a bias");
            for (int t = 0; t < names.size(); t++) {
                e = Stats.relativeL2(got.get(t), sd.doubles("grad." + names.get(t)));
                assertTrue(e <= MutanReferenceTest.FIXTURE_TOL, stem + " " + names.get(t) + ": relative L2 " + e);
            }
        }
    }

    @Test void chunkSizesAreBlockBootstrapsGetSizesList() {
        // get_sizes_list's results, worked by hand from its code (the last chunks shrink when ceil overshoots)
        assertArrayEquals(new int[] {4, 4, 4}, Block.chunkSizes(12, 3));
        assertArrayEquals(new int[] {4, 4, 4, 1}, Block.chunkSizes(13, 4));
        assertArrayEquals(new int[] {3, 3, 3, 2}, Block.chunkSizes(11, 4));
        assertArrayEquals(new int[] {2, 2, 2, 1, 1, 1, 1}, Block.chunkSizes(10, 7));
        assertArrayEquals(new int[] {80, 80, 80, 80, 80, 80, 80, 80, 80, 80, 80, 80, 80, 80, 80, 80, 80, 80, 80, 80}, Block.chunkSizes(1600, 20));
        assertArrayEquals(new int[] {1}, Block.chunkSizes(1, 1));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Block.chunkSizes(3, 4));
        assertEquals("chunks: expected at most mm_dim = 3 chunks (one unit each at least), got 4", e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> Block.chunkSizes(3, 0));
        assertEquals("chunks: expected >= 1, got 0", e.getMessage());
    }

    /**
     * Central differences of {@code L = Σ w ⊙ f} in float64 ({@link FiniteDifferences}, h = 2⁻¹⁶):
     * every input element, and one element of every parameter tensor through the op rebuilt from its
     * state dict with that float parameter moved (by the step float allows; both names of a shared layer).
     */
    @ParameterizedTest(name = "M={0} chunks={1} rank={2} shared={3} {4}")
    @CsvSource({"7,2,1,false,BEFORE_CAT", "11,4,3,false,AFTER_CAT", "10,7,2,true,BEFORE_CAT", "9,3,2,true,AFTER_CAT"})
    void gradientsMatchFiniteDifferences(int m, int chunks, int rank, boolean shared, NormPosition pos) {
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        int batch = 3, dx = 6, dy = shared ? 6 : 5, out = 3;
        Block op = Block.random(dx, dy, m, chunks, rank, out, shared, Normalization.pytorch(), pos, r.nextLong());
        double[] x = FusionChecks.floatExactGaussian(r, batch * dx), y = FusionChecks.floatExactGaussian(r, batch * dy), w = FusionChecks.floatExactGaussian(r, batch * out);
        List<double[]> grads = BlockReference.backward(op, x, y, w, batch).tensors();
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
            FiniteDifferences.assertDerivative(d -> {
                Map<String, double[]> v = new LinkedHashMap<>(values);
                double value = (float) (values.get(name)[index] + d);
                for (String n : shared ? List.of(name, sibling(name)) : List.of(name)) {
                    double[] a = v.get(n).clone();
                    a[index] = value;
                    v.put(n, a);
                }
                return new double[] {value - values.get(name)[index], loss(Block.fromStateDict(StateDict.of(v, shapes), "", shared, pos), x, y, w, batch)};
            }, h, grads.get(t)[index], what + ": " + name + "[" + index + "]");
        }
    }

    /** The other side's name of a shared layer's tensor (linear0 ↔ linear1, merge_linears0.c ↔ merge_linears1.c); linear_out is its own. */
    private static String sibling(String name) {
        if (name.startsWith("linear0.")) return "linear1." + name.substring(8);
        if (name.startsWith("linear1.")) return "linear0." + name.substring(8);
        if (name.startsWith("merge_linears0.")) return "merge_linears1." + name.substring(15);
        if (name.startsWith("merge_linears1.")) return "merge_linears0." + name.substring(15);
        return name;
    }

    /** The op's parameters under block.bootstrap's names, as its module's state dict holds them. */
    static void stateDict(Block op, Map<String, double[]> values, Map<String, long[]> shapes) {
        List<String> names = new ArrayList<>(List.of("linear0", "linear1"));
        List<Linear> layers = new ArrayList<>(List.of(op.linear0(), op.linear1()));
        for (int c = 0; c < op.chunks(); c++) {
            names.add("merge_linears0." + c);
            layers.add(op.merge0().get(c));
        }
        for (int c = 0; c < op.chunks(); c++) {
            names.add("merge_linears1." + c);
            layers.add(op.merge1().get(c));
        }
        names.add("linear_out");
        layers.add(op.linearOut());
        for (int i = 0; i < names.size(); i++) {
            Linear l = layers.get(i);
            values.put(names.get(i) + ".weight", l.weightAsDouble());
            shapes.put(names.get(i) + ".weight", new long[] {l.out(), l.in()});
            values.put(names.get(i) + ".bias", l.biasAsDouble());
            shapes.put(names.get(i) + ".bias", new long[] {l.out()});
        }
    }

    private static double loss(Block op, double[] x, double[] y, double[] w, int batch) {
        return FusionChecks.dot(w, BlockReference.forward(op, x, y, batch));
    }


    @Test void loadingRefusesBadStateDictsByName() throws IOException {
        Block op = Block.random(5, 4, 11, 4, 3, 2, false, Normalization.pytorch(), NormPosition.BEFORE_CAT, 7);
        Map<String, double[]> v = new LinkedHashMap<>();
        Map<String, long[]> s = new HashMap<>();
        stateDict(op, v, s);
        assertEquals(op, Block.fromStateDict(StateDict.of(v, s), "", false, NormPosition.BEFORE_CAT), "a state dict round trip");
        // chunk 2 of get_sizes_list(11, 4) = [3, 3, 3, 2] is 3 units wide: a 2-wide merge layer is refused
        Map<String, double[]> v1 = new LinkedHashMap<>(v);
        Map<String, long[]> s1 = new HashMap<>(s);
        v1.put("merge_linears0.2.weight", new double[6 * 2]);
        s1.put("merge_linears0.2.weight", new long[] {6, 2});
        v1.put("merge_linears0.2.bias", new double[6]);
        s1.put("merge_linears0.2.bias", new long[] {6});
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Block.fromStateDict(StateDict.of(v1, s1), "", false, NormPosition.BEFORE_CAT));
        assertEquals("the in-memory state dict: 'merge_linears0.2.weight': expected shape [3 × 3, 3] (chunk 2 of get_sizes_list(11, 4) = [3, 3, 3, 2]), got [6, 2]",
                e.getMessage());
        // a missing merge layer of side 1
        Map<String, double[]> v2 = new LinkedHashMap<>(v);
        Map<String, long[]> s2 = new HashMap<>(s);
        v2.remove("merge_linears1.3.weight");
        s2.remove("merge_linears1.3.weight");
        e = assertThrows(IllegalArgumentException.class, () -> Block.fromStateDict(StateDict.of(v2, s2), "", false, NormPosition.BEFORE_CAT));
        assertTrue(e.getMessage().startsWith("the in-memory state dict: no tensor 'merge_linears1.3.weight' (under 'merge_linears1.3.': merge_linears1.3.bias)"),
                e.getMessage());
        // no merge layers at all
        e = assertThrows(IllegalArgumentException.class, () -> Block.fromStateDict(StateDict.of(Map.of("linear0.weight", new double[2], "linear_out.weight",
                new double[2]), Map.of("linear0.weight", new long[] {2, 1}, "linear_out.weight", new long[] {1, 2})), "", false, NormPosition.BEFORE_CAT));
        assertEquals("the in-memory state dict: no tensor 'merge_linears0.0.weight' (a Block has one merge layer per chunk)", e.getMessage());
        // shared, but the sides differ
        e = assertThrows(IllegalArgumentException.class, () -> Block.fromStateDict(StateDict.of(v, s), "", true, NormPosition.BEFORE_CAT));
        assertTrue(e.getMessage().contains("shared=true, so expected the same values"), e.getMessage());
        // the descriptor's own checks
        e = assertThrows(IllegalArgumentException.class, () -> Block.random(4, 4, 6, 2, 0, 2, false, Normalization.NONE, NormPosition.AFTER_CAT, 1));
        assertEquals("dx, dy, mmDim, rank, out: expected >= 1, got 4, 4, 6, 0, 2", e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> Block.random(4, 4, 6, 7, 2, 2, false, Normalization.NONE, NormPosition.AFTER_CAT, 1));
        assertEquals("chunks: expected at most mm_dim = 6 chunks (one unit each at least), got 7", e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> Block.of(op.linear0(), op.linear1(), op.merge0(), op.merge1().subList(0, 3), op.linearOut(), 3,
                Normalization.NONE, NormPosition.AFTER_CAT));
        assertEquals("merge1: expected 4 layers (one per chunk, as merge0), got 3", e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> Block.of(op.linear0(), op.linear1(), op.merge0(), op.merge1(), op.linearOut(), 2,
                Normalization.NONE, NormPosition.AFTER_CAT));
        assertEquals("merge0[0]: expected a layer 3 → 6 (weight 6 × 3), got 3 → 9 (weight 9 × 3)", e.getMessage());
    }
}
