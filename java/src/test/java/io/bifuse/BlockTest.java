package io.bifuse;

import static org.junit.jupiter.api.Assertions.*;

import io.bifuse.Block.NormPosition;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.Executable;

/**
 * The {@link Block} descriptor: block.bootstrap's {@code get_sizes_list} chunks, the shapes, rank and chunk
 * offsets it derives from its layers, every refusal by name, loading a state dict (round trip, missing and
 * misshapen tensors), the gradient names and the order of {@link Block.Gradients#tensors()}, equality.
 * Its numbers are {@code BlockReferenceTest}'s and {@code io.bifuse.cpu.BlockCpuTest}'s.
 */
class BlockTest {
    static final Normalization N = Normalization.pytorch();

    @Test void chunkSizesFollowGetSizesList() {
        assertArrayEquals(new int[] {3, 3, 3, 2}, Block.chunkSizes(11, 4));
        assertArrayEquals(new int[] {4, 4, 4}, Block.chunkSizes(12, 3));
        // ceil(7/5) = 2 would leave the last chunk -1: the last three give up a unit each instead
        assertArrayEquals(new int[] {2, 2, 1, 1, 1}, Block.chunkSizes(7, 5));
        assertArrayEquals(new int[] {2, 2, 2, 1, 1, 1, 1}, Block.chunkSizes(10, 7));
        assertArrayEquals(new int[] {1, 1, 1}, Block.chunkSizes(3, 3));
        assertArrayEquals(new int[] {5}, Block.chunkSizes(5, 1));
        refused("chunks: expected >= 1, got 0", () -> Block.chunkSizes(5, 0));
        refused("chunks: expected at most mm_dim = 5 chunks (one unit each at least), got 6", () -> Block.chunkSizes(5, 6));
    }

    @Test void shapesComeFromTheLayers() {
        Block op = Block.random(5, 4, 11, 4, 3, 2, false, N, NormPosition.AFTER_CAT, 7);
        assertEquals(List.of(5, 4, 11, 4, 3, 2), List.of(op.dx(), op.dy(), op.mmDim(), op.chunks(), op.rank(), op.out()));
        int[] sizes = {3, 3, 3, 2}, offsets = {0, 3, 6, 9};
        for (int c = 0; c < 4; c++) {
            assertEquals(sizes[c], op.chunkSize(c));
            assertEquals(offsets[c], op.chunkOffset(c));
            assertEquals(3 * sizes[c], op.merge1().get(c).out());
        }
        assertFalse(op.isShared());
        assertEquals(NormPosition.AFTER_CAT, op.position());
        assertEquals(N, op.normalization());
        List<Linear> m0 = new ArrayList<>(op.merge0());
        Block same = Block.of(op.linear0(), op.linear1(), m0, op.merge1(), op.linearOut(), 3, N, NormPosition.AFTER_CAT);
        assertEquals(op, same);
        m0.clear(); // the op holds its own copy of the list, and hands out an unmodifiable one
        assertEquals(4, same.merge0().size());
        assertThrows(UnsupportedOperationException.class, () -> same.merge0().add(op.linear0()));

        Block sh = Block.shared(op.linear0(), op.merge0(), op.linearOut(), 3, N, NormPosition.BEFORE_CAT);
        assertTrue(sh.isShared());
        assertEquals(5, sh.dy());
        assertSame(sh.linear0(), sh.linear1());
        assertEquals(sh.merge0(), sh.merge1());
        Block rs = Block.random(6, 6, 7, 5, 2, 3, true, Normalization.NONE, NormPosition.BEFORE_CAT, 1);
        assertTrue(rs.isShared());
        assertEquals(rs.linear0(), rs.linear1());
        assertEquals(List.of(2, 2, 1, 1, 1), List.of(rs.chunkSize(0), rs.chunkSize(1), rs.chunkSize(2), rs.chunkSize(3), rs.chunkSize(4)));
        assertEquals(6, rs.chunkOffset(4));
    }

    @Test void badLayersAreRefusedByName() {
        Block op = Block.random(5, 4, 11, 4, 3, 2, false, N, NormPosition.BEFORE_CAT, 7);
        Linear l0 = op.linear0(), l1 = op.linear1(), lo = op.linearOut();
        List<Linear> m0 = op.merge0(), m1 = op.merge1();
        NormPosition p = NormPosition.BEFORE_CAT;
        refused("rank: expected >= 1, got 0", () -> Block.of(l0, l1, m0, m1, lo, 0, N, p));
        refused("merge0[0]: expected a layer 3 → 6 (weight 6 × 3), got 3 → 9 (weight 9 × 3)", () -> Block.of(l0, l1, m0, m1, lo, 2, N, p));
        refused("rank: rank × chunk size = 6442450941 does not fit an int", () -> Block.of(l0, l1, m0, m1, lo, Integer.MAX_VALUE, N, p));
        refused("linear1: expected a layer 4 → 11 (weight 11 × 4), got 4 → 10", () -> Block.of(l0, Linear.random(10, 4, true, 1), m0, m1, lo, 3, N, p));
        refused("linearOut: expected a layer 11 → 2 (weight 2 × 11), got 10 → 2", () -> Block.of(l0, l1, m0, m1, Linear.random(2, 10, true, 1), 3, N, p));
        List<Linear> wrong = new ArrayList<>(m1);
        wrong.set(3, Linear.random(6, 3, true, 1)); // chunk 3 is 2 units wide
        refused("merge1[3]: expected a layer 2 → 6 (weight 6 × 2), got 3 → 6", () -> Block.of(l0, l1, m0, wrong, lo, 3, N, p));
        refused("merge0[1]: expected a Linear layer, got null", () -> Block.of(l0, l1, Arrays.asList(m0.get(0), null, m0.get(2), m0.get(3)), m1, lo, 3, N, p));
        refused("merge0: expected one layer per chunk, got none", () -> Block.of(l0, l1, List.of(), m1, lo, 3, N, p));
        refused("merge0: expected one layer per chunk, got null", () -> Block.of(l0, l1, null, m1, lo, 3, N, p));
        refused("merge1: expected 4 layers (one per chunk, as merge0), got 3", () -> Block.of(l0, l1, m0, m1.subList(0, 3), lo, 3, N, p));
        refused("merge1: expected 4 layers (one per chunk, as merge0), got null", () -> Block.of(l0, l1, m0, null, lo, 3, N, p));
        List<Linear> twelve = Collections.nCopies(12, Linear.random(3, 1, true, 1));
        refused("chunks: expected at most mm_dim = 11 chunks", () -> Block.of(l0, l1, twelve, twelve, lo, 3, N, p));
        refused("linear0: expected a Linear layer, got null", () -> Block.of(null, l1, m0, m1, lo, 3, N, p));
        refused("linear1: expected a Linear layer, got null", () -> Block.of(l0, null, m0, m1, lo, 3, N, p));
        refused("linearOut: expected a Linear layer, got null", () -> Block.shared(l0, m0, null, 3, N, p));
        refused("dx, dy, mmDim, rank, out: expected >= 1, got 5, 4, 11, 0, 2", () -> Block.random(5, 4, 11, 4, 0, 2, false, N, p, 1));
        refused("shared: expected dx == dy, got 5 and 4", () -> Block.random(5, 4, 11, 4, 3, 2, true, N, p, 1));
        refused("chunks: expected at most mm_dim = 11 chunks (one unit each at least), got 12", () -> Block.random(5, 4, 11, 12, 3, 2, false, N, p, 1));
        refused("chunks: expected >= 1, got 0", () -> Block.random(5, 4, 11, 0, 3, 2, false, N, p, 1));
    }

    @Test void stateDictRoundTripsAndRefusesBadTensorsByName() {
        String pre = "network.fusion.";
        Block op = Block.random(5, 4, 11, 4, 3, 2, false, N, NormPosition.AFTER_CAT, 7);
        Map<String, double[]> v = new HashMap<>();
        Map<String, long[]> s = new HashMap<>();
        put(v, s, pre + "linear0", op.linear0());
        put(v, s, pre + "linear1", op.linear1());
        for (int c = 0; c < 4; c++) {
            put(v, s, pre + "merge_linears0." + c, op.merge0().get(c));
            put(v, s, pre + "merge_linears1." + c, op.merge1().get(c));
        }
        put(v, s, pre + "linear_out", op.linearOut());
        assertEquals(op, Block.fromStateDict(StateDict.of(v, s), pre, false, NormPosition.AFTER_CAT));
        assertNotEquals(op, Block.fromStateDict(StateDict.of(v, s), pre, false, NormPosition.BEFORE_CAT));

        String sd = "the in-memory state dict: ";
        refused(sd + "no tensor 'network.fusion.merge_linears1.2.weight'", () -> Block.fromStateDict(without(v, s, pre + "merge_linears1.2.weight"), pre, false, NormPosition.AFTER_CAT));
        refused(sd + "no tensor 'network.fusion.linear_out.weight'", () -> Block.fromStateDict(without(v, s, pre + "linear_out.weight"), pre, false, NormPosition.AFTER_CAT));
        Map<String, double[]> v0 = new HashMap<>(v);
        Map<String, long[]> s0 = new HashMap<>(s);
        v0.keySet().removeIf(n -> n.contains("merge"));
        s0.keySet().removeIf(n -> n.contains("merge"));
        refused(sd + "no tensor 'network.fusion.merge_linears0.0.weight' (a Block has one merge layer per chunk)",
                () -> Block.fromStateDict(StateDict.of(v0, s0), pre, false, NormPosition.AFTER_CAT));
        Map<String, double[]> v1 = new HashMap<>(v);
        Map<String, long[]> s1 = new HashMap<>(s);
        put(v1, s1, pre + "merge_linears0.1", Linear.random(6, 3, true, 1)); // rank 2 where chunk 0 has rank 3
        refused(sd + "'network.fusion.merge_linears0.1.weight': expected shape [3 × 3, 3] (chunk 1 of get_sizes_list(11, 4) = [3, 3, 3, 2]), got [6, 3]",
                () -> Block.fromStateDict(StateDict.of(v1, s1), pre, false, NormPosition.AFTER_CAT));
        Map<String, double[]> v2 = new HashMap<>(v);
        Map<String, long[]> s2 = new HashMap<>(s);
        v2.put(pre + "merge_linears0.4.bias", new double[6]);
        s2.put(pre + "merge_linears0.4.bias", new long[] {6});
        refused(sd + "'network.fusion.merge_linears0.4.bias' without its weight", () -> Block.fromStateDict(StateDict.of(v2, s2), pre, false, NormPosition.AFTER_CAT));
        Map<String, double[]> v3 = new HashMap<>(v);
        Map<String, long[]> s3 = new HashMap<>(s);
        v3.put(pre + "linear0.bias", new double[10]);
        s3.put(pre + "linear0.bias", new long[] {10});
        refused(sd + "'network.fusion.linear0.bias': expected shape [11], got [10]", () -> Block.fromStateDict(StateDict.of(v3, s3), pre, false, NormPosition.AFTER_CAT));
        refused(sd + "'network.fusion.merge_linears1.0': shared=true, so expected the same values", () -> Block.fromStateDict(StateDict.of(v, s), pre, true, NormPosition.AFTER_CAT));

        // shared: the side-1 names hold the side-0 layers, or are absent
        Block sh = Block.random(5, 5, 11, 4, 3, 2, true, N, NormPosition.BEFORE_CAT, 3);
        Map<String, double[]> vs = new HashMap<>();
        Map<String, long[]> ss = new HashMap<>();
        put(vs, ss, "linear0", sh.linear0());
        for (int c = 0; c < 4; c++) put(vs, ss, "merge_linears0." + c, sh.merge0().get(c));
        put(vs, ss, "linear_out", sh.linearOut());
        assertEquals(sh, Block.fromStateDict(StateDict.of(vs, ss), "", true, NormPosition.BEFORE_CAT));
        put(vs, ss, "linear1", sh.linear0());
        for (int c = 0; c < 4; c++) put(vs, ss, "merge_linears1." + c, sh.merge0().get(c));
        assertEquals(sh, Block.fromStateDict(StateDict.of(vs, ss), "", true, NormPosition.BEFORE_CAT));
    }

    @Test void gradientNamesAndTensorsFollowTheStateDict() {
        // mm_dim 3 in chunks [2, 1], rank 1; linear0 and merge_linears0.1 without bias
        Block op = Block.of(Linear.random(3, 2, false, 1), Linear.random(3, 2, true, 2), List.of(Linear.random(2, 2, true, 3), Linear.random(1, 1, false, 4)),
                List.of(Linear.random(2, 2, true, 5), Linear.random(1, 1, true, 6)), Linear.random(4, 3, true, 7), 1, Normalization.NONE, NormPosition.BEFORE_CAT);
        assertEquals(List.of("input.0", "input.1", "linear0.weight", "linear1.weight", "linear1.bias", "merge_linears0.0.weight", "merge_linears0.0.bias",
                "merge_linears0.1.weight", "merge_linears1.0.weight", "merge_linears1.0.bias", "merge_linears1.1.weight", "merge_linears1.1.bias",
                "linear_out.weight", "linear_out.bias"), op.gradientNames());
        float[][] t = new float[12][];
        for (int i = 0; i < t.length; i++) t[i] = new float[] {i};
        Block.Gradients g = new Block.Gradients(t[0], t[1], new LinearGradients(t[2], null), new LinearGradients(t[3], t[4]),
                List.of(new LinearGradients(t[5], t[6]), new LinearGradients(t[7], null)), List.of(new LinearGradients(t[8], t[9]), new LinearGradients(t[10], t[11])),
                new LinearGradients(new float[] {12}, new float[] {13}));
        List<float[]> got = g.tensors();
        assertEquals(op.gradientNames().size(), got.size());
        for (int i = 0; i < got.size(); i++) assertEquals(i, got.get(i)[0], op.gradientNames().get(i));
        assertThrows(UnsupportedOperationException.class, () -> g.merge0().clear());
    }

    @Test void equalityAndToString() {
        Block op = Block.random(5, 4, 11, 4, 3, 2, false, N, NormPosition.BEFORE_CAT, 7);
        Block same = Block.random(5, 4, 11, 4, 3, 2, false, N, NormPosition.BEFORE_CAT, 7);
        assertEquals(op, same);
        assertEquals(op.hashCode(), same.hashCode());
        assertNotEquals(op, Block.random(5, 4, 11, 4, 3, 2, false, N, NormPosition.BEFORE_CAT, 8));
        assertNotEquals(op, Block.random(5, 4, 11, 4, 3, 2, false, N, NormPosition.AFTER_CAT, 7));
        assertNotEquals(op, Block.random(5, 4, 11, 4, 3, 2, false, Normalization.NONE, NormPosition.BEFORE_CAT, 7));
        // the same layers, shared or not: the gradients differ (shared sums both sides'), so the ops do
        Block sh = Block.random(5, 5, 11, 4, 3, 2, true, N, NormPosition.BEFORE_CAT, 7);
        assertNotEquals(sh, Block.of(sh.linear0(), sh.linear0(), sh.merge0(), sh.merge0(), sh.linearOut(), 3, N, NormPosition.BEFORE_CAT));
        assertTrue(op.toString().startsWith("Block[Dx=5, Dy=4, mm_dim=11, chunks=[3, 3, 3, 2], rank=3, Out=2, "), op.toString());
        assertTrue(op.toString().endsWith(" BEFORE_CAT]"), op.toString());
        assertTrue(sh.toString().contains(", shared, "), sh.toString());
    }

    private static StateDict without(Map<String, double[]> v, Map<String, long[]> s, String name) {
        Map<String, double[]> v1 = new HashMap<>(v);
        Map<String, long[]> s1 = new HashMap<>(s);
        v1.remove(name);
        s1.remove(name);
        return StateDict.of(v1, s1);
    }

    static void put(Map<String, double[]> v, Map<String, long[]> s, String name, Linear l) {
        v.put(name + ".weight", l.weightAsDouble());
        s.put(name + ".weight", new long[] {l.out(), l.in()});
        v.remove(name + ".bias");
        s.remove(name + ".bias");
        if (l.hasBias()) {
            v.put(name + ".bias", l.biasAsDouble());
            s.put(name + ".bias", new long[] {l.out()});
        }
    }

    static void refused(String start, Executable call) {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, call);
        assertTrue(e.getMessage().startsWith(start), "message '" + e.getMessage() + "' does not start with '" + start + "'");
    }
}
