package io.bifuse;

import static io.bifuse.BlockTest.put;
import static io.bifuse.BlockTest.refused;
import static org.junit.jupiter.api.Assertions.*;

import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/**
 * The {@link Mutan} descriptor: the shapes and rank it derives from its layers, every refusal by name,
 * loading a state dict (round trip, shared, missing and misshapen tensors), the gradient names and the
 * order of {@link Mutan.Gradients#tensors()}, its one-chunk {@link Block} and the gradients' mapping back,
 * equality. Its numbers are {@code MutanReferenceTest}'s and {@code io.bifuse.cpu.MutanCpuTest}'s.
 */
class MutanTest {
    static final Normalization N = Normalization.pytorch();

    @Test void shapesComeFromTheLayers() {
        Mutan op = Mutan.random(5, 4, 6, 3, 2, false, N, 7);
        assertEquals(List.of(5, 4, 6, 3, 2), List.of(op.dx(), op.dy(), op.mmDim(), op.rank(), op.out()));
        assertEquals(18, op.mergeLinear0().out());
        assertEquals(6, op.mergeLinear1().in());
        assertFalse(op.isShared());
        assertEquals(op, Mutan.of(op.linear0(), op.linear1(), op.mergeLinear0(), op.mergeLinear1(), op.linearOut(), 3, N));
        Mutan sh = Mutan.shared(op.linear0(), op.mergeLinear0(), op.linearOut(), 3, Normalization.NONE);
        assertTrue(sh.isShared());
        assertEquals(5, sh.dy());
        assertSame(sh.linear0(), sh.linear1());
        assertSame(sh.mergeLinear0(), sh.mergeLinear1());
        Mutan rs = Mutan.random(5, 5, 6, 2, 3, true, N, 1);
        assertTrue(rs.isShared());
        assertEquals(rs.mergeLinear0(), rs.mergeLinear1());
    }

    @Test void badLayersAreRefusedByName() {
        Linear l0 = Linear.random(6, 5, true, 1), l1 = Linear.random(6, 4, true, 2), m0 = Linear.random(18, 6, true, 3), m1 = Linear.random(18, 6, true, 4);
        Linear lo = Linear.random(2, 6, true, 5);
        assertDoesNotThrow(() -> Mutan.of(l0, l1, m0, m1, lo, 3, N));
        refused("rank: expected >= 1, got 0", () -> Mutan.of(l0, l1, m0, m1, lo, 0, N));
        refused("mergeLinear0: expected a layer 6 → 12 (weight 12 × 6), got 6 → 18", () -> Mutan.of(l0, l1, m0, m1, lo, 2, N));
        refused("rank: rank × mm_dim = 12884901882 does not fit an int", () -> Mutan.of(l0, l1, m0, m1, lo, Integer.MAX_VALUE, N));
        refused("linear1: expected a layer 4 → 6 (weight 6 × 4), got 4 → 7", () -> Mutan.of(l0, Linear.random(7, 4, true, 2), m0, m1, lo, 3, N));
        refused("mergeLinear1: expected a layer 6 → 18 (weight 18 × 6), got 7 → 18", () -> Mutan.of(l0, l1, m0, Linear.random(18, 7, true, 4), lo, 3, N));
        refused("linearOut: expected a layer 6 → 2 (weight 2 × 6), got 5 → 2", () -> Mutan.of(l0, l1, m0, m1, Linear.random(2, 5, true, 5), 3, N));
        refused("linear0: expected a Linear layer, got null", () -> Mutan.of(null, l1, m0, m1, lo, 3, N));
        refused("linear1: expected a Linear layer, got null", () -> Mutan.of(l0, null, m0, m1, lo, 3, N));
        refused("mergeLinear0: expected a Linear layer, got null", () -> Mutan.shared(l0, null, lo, 3, N));
        refused("mergeLinear1: expected a Linear layer, got null", () -> Mutan.of(l0, l1, m0, null, lo, 3, N));
        refused("linearOut: expected a Linear layer, got null", () -> Mutan.shared(l0, m0, null, 3, N));
        refused("mmDim: expected >= 1, got 0", () -> Mutan.random(5, 4, 0, 3, 2, false, N, 1));
        refused("rank: expected >= 1, got 0", () -> Mutan.random(5, 4, 6, 0, 2, false, N, 1));
        refused("dy: expected >= 1, got -1", () -> Mutan.random(5, -1, 6, 3, 2, false, N, 1));
        refused("out: expected >= 1, got 0", () -> Mutan.random(5, 4, 6, 3, 0, false, N, 1));
        refused("shared: expected dx == dy, got 5 and 4", () -> Mutan.random(5, 4, 6, 3, 2, true, N, 1));
    }

    @Test void stateDictRoundTripsAndRefusesBadTensorsByName() {
        String pre = "network.fusion.", sd = "the in-memory state dict: ";
        Mutan op = Mutan.random(5, 4, 6, 3, 2, false, N, 7);
        Map<String, double[]> v = new HashMap<>();
        Map<String, long[]> s = new HashMap<>();
        String[] names = {"linear0", "linear1", "merge_linear0", "merge_linear1", "linear_out"};
        Linear[] layers = {op.linear0(), op.linear1(), op.mergeLinear0(), op.mergeLinear1(), op.linearOut()};
        for (int i = 0; i < 5; i++) put(v, s, pre + names[i], layers[i]);
        assertEquals(op, Mutan.fromStateDict(StateDict.of(v, s), pre, false, true));
        assertEquals(Normalization.NONE, Mutan.fromStateDict(StateDict.of(v, s), pre, false, false).normalization());

        Map<String, double[]> v1 = new HashMap<>(v);
        Map<String, long[]> s1 = new HashMap<>(s);
        v1.remove(pre + "merge_linear1.weight");
        s1.remove(pre + "merge_linear1.weight");
        refused(sd + "no tensor 'network.fusion.merge_linear1.weight'", () -> Mutan.fromStateDict(StateDict.of(v1, s1), pre, false, true));
        refused(sd + "no tensor 'linear0.weight'", () -> Mutan.fromStateDict(StateDict.of(v, s), "", false, true));
        Map<String, double[]> v2 = new HashMap<>(v);
        Map<String, long[]> s2 = new HashMap<>(s);
        put(v2, s2, pre + "merge_linear0", Linear.random(20, 6, true, 1)); // 20 rows: not rank × 6
        refused(sd + "'network.fusion.merge_linear0.weight': expected shape [rank × 6, 6] (mm_dim = linear0's 6 rows), got [20, 6]",
                () -> Mutan.fromStateDict(StateDict.of(v2, s2), pre, false, true));
        put(v2, s2, pre + "merge_linear0", Linear.random(18, 5, true, 1));
        refused(sd + "'network.fusion.merge_linear0.weight': expected shape [rank × 6, 6]", () -> Mutan.fromStateDict(StateDict.of(v2, s2), pre, false, true));
        Map<String, double[]> v3 = new HashMap<>(v);
        Map<String, long[]> s3 = new HashMap<>(s);
        v3.put(pre + "linear_out.weight", new double[12]);
        s3.put(pre + "linear_out.weight", new long[] {12});
        refused(sd + "'network.fusion.linear_out.weight': expected a 2-D out × in weight, got shape [12]", () -> Mutan.fromStateDict(StateDict.of(v3, s3), pre, false, true));
        refused(sd + "'network.fusion.linear1': shared=true, so expected the same values as network.fusion.linear0", () -> Mutan.fromStateDict(StateDict.of(v, s), pre, true, true));

        // shared: side 1's names hold side 0's layers (as the module's state dict does), or are absent
        Mutan sh = Mutan.random(5, 5, 6, 3, 2, true, N, 9);
        Map<String, double[]> vs = new HashMap<>();
        Map<String, long[]> ss = new HashMap<>();
        put(vs, ss, "linear0", sh.linear0());
        put(vs, ss, "merge_linear0", sh.mergeLinear0());
        put(vs, ss, "linear_out", sh.linearOut());
        assertEquals(sh, Mutan.fromStateDict(StateDict.of(vs, ss), "", true, true));
        put(vs, ss, "linear1", sh.linear0());
        put(vs, ss, "merge_linear1", sh.mergeLinear0());
        assertEquals(sh, Mutan.fromStateDict(StateDict.of(vs, ss), "", true, true));
        put(vs, ss, "merge_linear1", Linear.random(18, 6, true, 2));
        refused(sd + "'merge_linear1': shared=true, so expected the same values as merge_linear0", () -> Mutan.fromStateDict(StateDict.of(vs, ss), "", true, true));
    }

    @Test void gradientNamesAndTensorsFollowTheStateDict() {
        Mutan op = Mutan.of(Linear.random(2, 3, true, 1), Linear.random(2, 2, false, 2), Linear.random(4, 2, true, 3), Linear.random(4, 2, true, 4),
                Linear.random(1, 2, false, 5), 2, Normalization.NONE);
        List<String> names = List.of("input.0", "input.1", "linear0.weight", "linear0.bias", "linear1.weight", "merge_linear0.weight", "merge_linear0.bias",
                "merge_linear1.weight", "merge_linear1.bias", "linear_out.weight");
        assertEquals(names, op.gradientNames());
        float[][] t = new float[names.size()][];
        for (int i = 0; i < t.length; i++) t[i] = new float[] {i};
        Mutan.Gradients g = new Mutan.Gradients(t[0], t[1], new LinearGradients(t[2], t[3]), new LinearGradients(t[4], null), new LinearGradients(t[5], t[6]),
                new LinearGradients(t[7], t[8]), new LinearGradients(t[9], null));
        assertEquals(List.of(t), g.tensors());
    }

    @Test void asBlockIsTheOneChunkBlockAndItsGradientsMapBack() {
        for (boolean shared : new boolean[] {false, true}) {
            Mutan op = Mutan.random(5, shared ? 5 : 4, 6, 3, 2, shared, N, 7);
            Block b = op.asBlock();
            assertEquals(List.of(op.dx(), op.dy(), op.mmDim(), 1, 6, 0, op.rank(), op.out()),
                    List.of(b.dx(), b.dy(), b.mmDim(), b.chunks(), b.chunkSize(0), b.chunkOffset(0), b.rank(), b.out()));
            assertEquals(List.of(op.linear0(), op.linear1(), op.mergeLinear0(), op.mergeLinear1(), op.linearOut()),
                    List.of(b.linear0(), b.linear1(), b.merge0().get(0), b.merge1().get(0), b.linearOut()));
            assertEquals(shared, b.isShared());
            assertEquals(op.normalization(), b.normalization());
            assertEquals(op.gradientNames().size(), b.gradientNames().size());
        }
        float[][] t = new float[7][];
        for (int i = 0; i < t.length; i++) t[i] = new float[] {i};
        LinearGradients l0 = new LinearGradients(t[2], null), l1 = new LinearGradients(t[3], null), m0 = new LinearGradients(t[4], null);
        LinearGradients m1 = new LinearGradients(t[5], null), lo = new LinearGradients(t[6], null);
        Mutan.Gradients g = Mutan.Gradients.of(new Block.Gradients(t[0], t[1], l0, l1, List.of(m0), List.of(m1), lo));
        assertSame(t[0], g.dx());
        assertSame(t[1], g.dy());
        assertEquals(List.of(l0, l1, m0, m1, lo), List.of(g.linear0(), g.linear1(), g.mergeLinear0(), g.mergeLinear1(), g.linearOut()));
    }

    @Test void equalityAndToString() {
        Mutan op = Mutan.random(5, 4, 6, 3, 2, false, N, 7);
        assertEquals(op, Mutan.random(5, 4, 6, 3, 2, false, N, 7));
        assertEquals(op.hashCode(), Mutan.random(5, 4, 6, 3, 2, false, N, 7).hashCode());
        assertNotEquals(op, Mutan.random(5, 4, 6, 3, 2, false, N, 8));
        assertNotEquals(op, Mutan.random(5, 4, 6, 3, 2, false, Normalization.NONE, 7));
        Mutan sh = Mutan.random(5, 5, 6, 3, 2, true, N, 7);
        assertNotEquals(sh, Mutan.of(sh.linear0(), sh.linear1(), sh.mergeLinear0(), sh.mergeLinear1(), sh.linearOut(), 3, N));
        assertTrue(op.toString().startsWith("Mutan[Dx=5, Dy=4, mm_dim=6, rank=3, Out=2, Normalization["), op.toString());
        assertEquals("Mutan[Dx=5, Dy=5, mm_dim=6, rank=3, Out=2, shared]", Mutan.random(5, 5, 6, 3, 2, true, Normalization.NONE, 7).toString());
    }

    /** Refusals found in review, now by name: a prefix holding a '1', a misshapen layer under its state-dict name, a null normalization. */
    @Test void refusalsNameTheStateDictsTensorsWhateverThePrefix() {
        String sd = "the in-memory state dict: ";
        Mutan sh = Mutan.random(5, 5, 6, 3, 2, true, N, 9);
        Map<String, double[]> v = new HashMap<>();
        Map<String, long[]> s = new HashMap<>();
        put(v, s, "fusion1.linear0", sh.linear0());
        put(v, s, "fusion1.merge_linear0", sh.mergeLinear0());
        put(v, s, "fusion1.linear_out", sh.linearOut());
        put(v, s, "fusion1.linear1", Linear.random(6, 5, true, 3));
        refused(sd + "'fusion1.linear1': shared=true, so expected the same values as fusion1.linear0", () -> Mutan.fromStateDict(StateDict.of(v, s), "fusion1.", true, true));
        put(v, s, "fusion1.merge_linear1", Linear.random(18, 5, true, 4)); // M = 6 columns expected
        refused(sd + "'fusion1.merge_linear1.weight': expected a layer 6 → 18", () -> Mutan.fromStateDict(StateDict.of(v, s), "fusion1.", false, true));
        refused("normalization: expected a Normalization", () -> Mutan.of(sh.linear0(), sh.linear0(), sh.mergeLinear0(), sh.mergeLinear0(), sh.linearOut(), 3, null));
    }
}
