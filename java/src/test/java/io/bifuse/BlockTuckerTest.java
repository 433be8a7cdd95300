package io.bifuse;

import static io.bifuse.BlockTest.put;
import static io.bifuse.BlockTest.refused;
import static org.junit.jupiter.api.Assertions.*;

import io.bifuse.Block.NormPosition;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/**
 * The {@link BlockTucker} descriptor: the chunks ({@code get_sizes_list}) and shapes it derives from its
 * layers, every refusal by name, loading a state dict (round trip, shared, missing and misshapen
 * tensors), the gradient names and the order of {@link BlockTucker.Gradients#tensors()}, equality. Its
 * numbers are {@code BlockTuckerReferenceTest}'s and {@code io.bifuse.cpu.BlockTuckerCpuTest}'s.
 */
class BlockTuckerTest {
    static final Normalization N = Normalization.pytorch();
    static final NormPosition P = NormPosition.BEFORE_CAT;

    @Test void shapesComeFromTheLayers() {
        BlockTucker op = BlockTucker.random(5, 4, 11, 4, 2, false, N, NormPosition.AFTER_CAT, 7);
        assertEquals(List.of(5, 4, 11, 4, 2), List.of(op.dx(), op.dy(), op.mmDim(), op.chunks(), op.out()));
        int[] sizes = {3, 3, 3, 2}, offsets = {0, 3, 6, 9};
        for (int c = 0; c < 4; c++) {
            assertEquals(sizes[c], op.chunkSize(c));
            assertEquals(offsets[c], op.chunkOffset(c));
            BilinearLayer b = op.bilinears().get(c);
            assertEquals(List.of(sizes[c], sizes[c], sizes[c]), List.of(b.out(), b.in1(), b.in2()));
        }
        assertFalse(op.isShared());
        assertEquals(NormPosition.AFTER_CAT, op.position());
        List<BilinearLayer> bl = new ArrayList<>(op.bilinears());
        BlockTucker same = BlockTucker.of(op.linear0(), op.linear1(), bl, op.linearOut(), N, NormPosition.AFTER_CAT);
        assertEquals(op, same);
        bl.clear();
        assertEquals(4, same.bilinears().size());
        assertThrows(UnsupportedOperationException.class, () -> same.bilinears().clear());
        BlockTucker sh = BlockTucker.shared(op.linear0(), op.bilinears(), op.linearOut(), N, P);
        assertTrue(sh.isShared());
        assertEquals(5, sh.dy());
        assertSame(sh.linear0(), sh.linear1());
        assertTrue(BlockTucker.random(6, 6, 7, 5, 3, true, Normalization.NONE, P, 1).isShared());
    }

    @Test void badLayersAreRefusedByName() {
        BlockTucker op = BlockTucker.random(5, 4, 11, 4, 2, false, N, P, 7);
        Linear l0 = op.linear0(), l1 = op.linear1(), lo = op.linearOut();
        List<BilinearLayer> bl = op.bilinears();
        List<BilinearLayer> wrong = new ArrayList<>(bl);
        wrong.set(3, BilinearLayer.random(2, 2, 3, true, 1)); // chunk 3 is 2 × 2 → 2
        refused("bilinears[3]: expected a bilinear layer 2 × 2 → 2, got 2 × 3 → 2", () -> BlockTucker.of(l0, l1, wrong, lo, N, P));
        refused("bilinears[1]: expected a BilinearLayer, got null", () -> BlockTucker.of(l0, l1, Arrays.asList(bl.get(0), null, bl.get(2), bl.get(3)), lo, N, P));
        refused("bilinears[0]: expected a bilinear layer 11 × 11 → 11, got 3 × 3 → 3", () -> BlockTucker.of(l0, l1, bl.subList(0, 1), lo, N, P));
        refused("bilinears: expected one layer per chunk, got none", () -> BlockTucker.of(l0, l1, List.of(), lo, N, P));
        refused("bilinears: expected one layer per chunk, got null", () -> BlockTucker.shared(l0, null, lo, N, P));
        refused("chunks: expected at most mm_dim = 11 chunks", () -> BlockTucker.of(l0, l1, Collections.nCopies(12, bl.get(3)), lo, N, P));
        refused("linear1: expected a layer 4 → 11 (weight 11 × 4), got 4 → 10", () -> BlockTucker.of(l0, Linear.random(10, 4, true, 1), bl, lo, N, P));
        refused("linearOut: expected a layer 11 → 2 (weight 2 × 11), got 12 → 2", () -> BlockTucker.of(l0, l1, bl, Linear.random(2, 12, true, 1), N, P));
        refused("linear0: expected a Linear layer, got null", () -> BlockTucker.of(null, l1, bl, lo, N, P));
        refused("linear1: expected a Linear layer, got null", () -> BlockTucker.of(l0, null, bl, lo, N, P));
        refused("linearOut: expected a Linear layer, got null", () -> BlockTucker.shared(l0, bl, null, N, P));
        refused("dx, dy, mmDim, out: expected >= 1, got 5, 4, 0, 2", () -> BlockTucker.random(5, 4, 0, 1, 2, false, N, P, 1));
        refused("shared: expected dx == dy, got 5 and 4", () -> BlockTucker.random(5, 4, 11, 4, 2, true, N, P, 1));
        refused("chunks: expected >= 1, got 0", () -> BlockTucker.random(5, 4, 11, 0, 2, false, N, P, 1));
    }

    @Test void stateDictRoundTripsAndRefusesBadTensorsByName() {
        String pre = "m.", sd = "the in-memory state dict: ";
        BlockTucker op = BlockTucker.random(5, 4, 11, 4, 2, false, N, NormPosition.AFTER_CAT, 7);
        Map<String, double[]> v = new HashMap<>();
        Map<String, long[]> s = new HashMap<>();
        put(v, s, pre + "linear0", op.linear0());
        put(v, s, pre + "linear1", op.linear1());
        for (int c = 0; c < 4; c++) putBilinear(v, s, pre + "bilinears." + c, op.bilinears().get(c));
        put(v, s, pre + "linear_out", op.linearOut());
        assertEquals(op, BlockTucker.fromStateDict(StateDict.of(v, s), pre, false, NormPosition.AFTER_CAT));
        assertNotEquals(op, BlockTucker.fromStateDict(StateDict.of(v, s), pre, false, P));

        Map<String, double[]> v1 = new HashMap<>(v);
        Map<String, long[]> s1 = new HashMap<>(s);
        v1.remove(pre + "linear1.weight");
        s1.remove(pre + "linear1.weight");
        refused(sd + "no tensor 'm.linear1.weight'", () -> BlockTucker.fromStateDict(StateDict.of(v1, s1), pre, false, P));
        v1.keySet().removeIf(n -> n.contains("bilinears"));
        s1.keySet().removeIf(n -> n.contains("bilinears"));
        refused(sd + "no tensor 'm.bilinears.0.weight' (a BlockTucker has one bilinear layer per chunk)", () -> BlockTucker.fromStateDict(StateDict.of(v1, s1), pre, true, P));
        Map<String, double[]> v2 = new HashMap<>(v);
        Map<String, long[]> s2 = new HashMap<>(s);
        putBilinear(v2, s2, pre + "bilinears.2", BilinearLayer.random(3, 3, 2, true, 1));
        refused(sd + "'m.bilinears.2.weight': expected shape [3, 3, 3] (chunk 2 of get_sizes_list(11, 4) = [3, 3, 3, 2]), got [3, 3, 2]",
                () -> BlockTucker.fromStateDict(StateDict.of(v2, s2), pre, false, P));
        v2.put(pre + "bilinears.2.weight", new double[9]);
        s2.put(pre + "bilinears.2.weight", new long[] {3, 3});
        refused(sd + "'m.bilinears.2.weight': expected a 3-D out × in1 × in2 weight, got shape [3, 3]", () -> BlockTucker.fromStateDict(StateDict.of(v2, s2), pre, false, P));
        Map<String, double[]> v3 = new HashMap<>(v);
        Map<String, long[]> s3 = new HashMap<>(s);
        v3.put(pre + "bilinears.3.bias", new double[3]);
        s3.put(pre + "bilinears.3.bias", new long[] {3});
        refused(sd + "'m.bilinears.3.bias': expected shape [2], got [3]", () -> BlockTucker.fromStateDict(StateDict.of(v3, s3), pre, false, P));
        refused(sd + "'m.linear1': shared=true, so expected the same values as linear0", () -> BlockTucker.fromStateDict(StateDict.of(v, s), pre, true, P));

        // shared: linear1 absent, or equal to linear0
        BlockTucker sh = BlockTucker.random(5, 5, 7, 3, 2, true, N, P, 3);
        Map<String, double[]> vs = new HashMap<>();
        Map<String, long[]> ss = new HashMap<>();
        put(vs, ss, "linear0", sh.linear0());
        for (int c = 0; c < 3; c++) putBilinear(vs, ss, "bilinears." + c, sh.bilinears().get(c));
        put(vs, ss, "linear_out", sh.linearOut());
        assertEquals(sh, BlockTucker.fromStateDict(StateDict.of(vs, ss), "", true, P));
        put(vs, ss, "linear1", sh.linear0());
        assertEquals(sh, BlockTucker.fromStateDict(StateDict.of(vs, ss), "", true, P));
    }

    @Test void gradientNamesAndTensorsFollowTheStateDict() {
        // mm_dim 3 in chunks [2, 1]; linear1 and bilinears.1 without bias
        BlockTucker op = BlockTucker.of(Linear.random(3, 2, true, 1), Linear.random(3, 4, false, 2),
                List.of(BilinearLayer.random(2, 2, 2, true, 3), BilinearLayer.random(1, 1, 1, false, 4)), Linear.random(2, 3, true, 5), N, P);
        List<String> names = List.of("input.0", "input.1", "linear0.weight", "linear0.bias", "linear1.weight", "bilinears.0.weight", "bilinears.0.bias",
                "bilinears.1.weight", "linear_out.weight", "linear_out.bias");
        assertEquals(names, op.gradientNames());
        float[][] t = new float[names.size()][];
        for (int i = 0; i < t.length; i++) t[i] = new float[] {i};
        BlockTucker.Gradients g = new BlockTucker.Gradients(t[0], t[1], new LinearGradients(t[2], t[3]), new LinearGradients(t[4], null),
                List.of(new BlockTucker.BilinearGradients(t[5], t[6]), new BlockTucker.BilinearGradients(t[7], null)), new LinearGradients(t[8], t[9]));
        assertEquals(List.of(t), g.tensors());
    }

    @Test void equalityAndToString() {
        BlockTucker op = BlockTucker.random(5, 4, 11, 4, 2, false, N, P, 7);
        assertEquals(op, BlockTucker.random(5, 4, 11, 4, 2, false, N, P, 7));
        assertEquals(op.hashCode(), BlockTucker.random(5, 4, 11, 4, 2, false, N, P, 7).hashCode());
        assertNotEquals(op, BlockTucker.random(5, 4, 11, 4, 2, false, N, P, 8));
        assertNotEquals(op, BlockTucker.random(5, 4, 11, 4, 2, false, N, NormPosition.AFTER_CAT, 7));
        assertNotEquals(op, BlockTucker.random(5, 4, 11, 4, 2, false, Normalization.NONE, P, 7));
        BlockTucker sh = BlockTucker.random(5, 5, 11, 4, 2, true, N, P, 7);
        assertNotEquals(sh, BlockTucker.of(sh.linear0(), sh.linear0(), sh.bilinears(), sh.linearOut(), N, P));
        assertTrue(op.toString().startsWith("BlockTucker[Dx=5, Dy=4, mm_dim=11, chunks=[3, 3, 3, 2], Out=2, "), op.toString());
        assertTrue(op.toString().endsWith(" BEFORE_CAT]"), op.toString());
        assertTrue(sh.toString().contains(", shared, "), sh.toString());
    }

    static void putBilinear(Map<String, double[]> v, Map<String, long[]> s, String name, BilinearLayer b) {
        v.put(name + ".weight", b.weightAsDouble());
        s.put(name + ".weight", new long[] {b.out(), b.in1(), b.in2()});
        v.remove(name + ".bias");
        s.remove(name + ".bias");
        if (b.hasBias()) {
            v.put(name + ".bias", b.biasAsDouble());
            s.put(name + ".bias", new long[] {b.out()});
        }
    }
}
