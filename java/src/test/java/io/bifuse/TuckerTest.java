package io.bifuse;

import static io.bifuse.BlockTest.put;
import static io.bifuse.BlockTest.refused;
import static io.bifuse.BlockTuckerTest.putBilinear;
import static org.junit.jupiter.api.Assertions.*;

import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/**
 * The {@link Tucker} descriptor: the shapes it derives from its layers, every refusal by name, loading a
 * state dict (round trip, missing and misshapen tensors), the gradient names ({@code bilinear}, not
 * {@code bilinears.0}) and the order of {@link Tucker.Gradients#tensors()}, its one-chunk
 * {@link BlockTucker} and the gradients' mapping back, equality.
 */
class TuckerTest {
    static final Normalization N = Normalization.pytorch();

    @Test void shapesComeFromTheLayers() {
        Tucker op = Tucker.random(5, 4, 6, 3, N, 7);
        assertEquals(List.of(5, 4, 6, 3), List.of(op.dx(), op.dy(), op.mmDim(), op.out()));
        assertEquals(List.of(6, 6, 6), List.of(op.bilinear().out(), op.bilinear().in1(), op.bilinear().in2()));
        assertEquals(N, op.normalization());
        assertEquals(op, Tucker.of(op.linear0(), op.linear1(), op.bilinear(), op.linearOut(), N));
        // no shared variant: with equal widths linear1 is still its own layer
        Tucker eq = Tucker.random(5, 5, 6, 3, N, 7);
        assertNotEquals(eq.linear0(), eq.linear1());
        assertFalse(eq.asBlockTucker().isShared());
    }

    @Test void badLayersAreRefusedByName() {
        Linear l0 = Linear.random(6, 5, true, 1), l1 = Linear.random(6, 4, true, 2), lo = Linear.random(3, 6, true, 3);
        BilinearLayer b = BilinearLayer.random(6, 6, 6, true, 4);
        assertDoesNotThrow(() -> Tucker.of(l0, l1, b, lo, N));
        refused("bilinear: expected a BilinearLayer, got null", () -> Tucker.of(l0, l1, null, lo, N));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Tucker.of(l0, l1, BilinearLayer.random(6, 6, 5, true, 4), lo, N));
        assertTrue(e.getMessage().contains("expected a bilinear layer 6 × 6 → 6, got 6 × 5 → 6"), e.getMessage());
        refused("linear1: expected a layer 4 → 6 (weight 6 × 4), got 4 → 7", () -> Tucker.of(l0, Linear.random(7, 4, true, 2), b, lo, N));
        refused("linearOut: expected a layer 6 → 3 (weight 3 × 6), got 5 → 3", () -> Tucker.of(l0, l1, b, Linear.random(3, 5, true, 3), N));
        refused("linear0: expected a Linear layer, got null", () -> Tucker.of(null, l1, b, lo, N));
        refused("linear1: expected a Linear layer, got null", () -> Tucker.of(l0, null, b, lo, N));
        refused("linearOut: expected a Linear layer, got null", () -> Tucker.of(l0, l1, b, null, N));
        refused("dx, dy, mmDim, out: expected >= 1, got 5, 4, 6, 0", () -> Tucker.random(5, 4, 6, 0, N, 1));
    }

    @Test void stateDictRoundTripsAndRefusesBadTensorsByName() {
        String pre = "fusion.", sd = "the in-memory state dict: ";
        Tucker op = Tucker.random(5, 4, 6, 3, N, 7);
        Map<String, double[]> v = new HashMap<>();
        Map<String, long[]> s = new HashMap<>();
        put(v, s, pre + "linear0", op.linear0());
        put(v, s, pre + "linear1", op.linear1());
        putBilinear(v, s, pre + "bilinear", op.bilinear());
        put(v, s, pre + "linear_out", op.linearOut());
        assertEquals(op, Tucker.fromStateDict(StateDict.of(v, s), pre, true));
        assertEquals(Normalization.NONE, Tucker.fromStateDict(StateDict.of(v, s), pre, false).normalization());

        Map<String, double[]> v1 = new HashMap<>(v);
        Map<String, long[]> s1 = new HashMap<>(s);
        v1.remove(pre + "bilinear.weight");
        s1.remove(pre + "bilinear.weight");
        refused(sd + "no tensor 'fusion.bilinear.weight'", () -> Tucker.fromStateDict(StateDict.of(v1, s1), pre, true));
        refused(sd + "no tensor 'linear0.weight'", () -> Tucker.fromStateDict(StateDict.of(v, s), "", true));
        Map<String, double[]> v2 = new HashMap<>(v);
        Map<String, long[]> s2 = new HashMap<>(s);
        v2.put(pre + "bilinear.weight", new double[36]);
        s2.put(pre + "bilinear.weight", new long[] {6, 6});
        refused(sd + "'fusion.bilinear.weight': expected a 3-D out × in1 × in2 weight, got shape [6, 6]", () -> Tucker.fromStateDict(StateDict.of(v2, s2), pre, true));
        Map<String, double[]> v3 = new HashMap<>(v);
        Map<String, long[]> s3 = new HashMap<>(s);
        v3.put(pre + "bilinear.bias", new double[5]);
        s3.put(pre + "bilinear.bias", new long[] {5});
        refused(sd + "'fusion.bilinear.bias': expected shape [6], got [5]", () -> Tucker.fromStateDict(StateDict.of(v3, s3), pre, true));
    }

    @Test void gradientNamesAndTensorsFollowTheStateDict() {
        Tucker op = Tucker.of(Linear.random(2, 3, false, 1), Linear.random(2, 2, true, 2), BilinearLayer.random(2, 2, 2, true, 3), Linear.random(1, 2, true, 4),
                Normalization.NONE);
        List<String> names = List.of("input.0", "input.1", "linear0.weight", "linear1.weight", "linear1.bias", "bilinear.weight", "bilinear.bias",
                "linear_out.weight", "linear_out.bias");
        assertEquals(names, op.gradientNames());
        float[][] t = new float[names.size()][];
        for (int i = 0; i < t.length; i++) t[i] = new float[] {i};
        Tucker.Gradients g = new Tucker.Gradients(t[0], t[1], new LinearGradients(t[2], null), new LinearGradients(t[3], t[4]),
                new BlockTucker.BilinearGradients(t[5], t[6]), new LinearGradients(t[7], t[8]));
        assertEquals(List.of(t), g.tensors());
    }

    @Test void asBlockTuckerIsTheOneChunkBlockTuckerAndItsGradientsMapBack() {
        Tucker op = Tucker.random(5, 4, 6, 3, N, 7);
        BlockTucker b = op.asBlockTucker();
        assertEquals(List.of(5, 4, 6, 1, 6, 0, 3), List.of(b.dx(), b.dy(), b.mmDim(), b.chunks(), b.chunkSize(0), b.chunkOffset(0), b.out()));
        assertEquals(List.of(op.linear0(), op.linear1(), op.linearOut()), List.of(b.linear0(), b.linear1(), b.linearOut()));
        assertEquals(List.of(op.bilinear()), b.bilinears());
        assertEquals(N, b.normalization());
        assertEquals(op.gradientNames().size(), b.gradientNames().size());
        float[][] t = new float[6][];
        for (int i = 0; i < t.length; i++) t[i] = new float[] {i};
        LinearGradients l0 = new LinearGradients(t[2], null), l1 = new LinearGradients(t[3], null), lo = new LinearGradients(t[5], null);
        BlockTucker.BilinearGradients bg = new BlockTucker.BilinearGradients(t[4], null);
        Tucker.Gradients g = Tucker.Gradients.of(new BlockTucker.Gradients(t[0], t[1], l0, l1, List.of(bg), lo));
        assertSame(t[0], g.dx());
        assertSame(t[1], g.dy());
        assertEquals(List.of(l0, l1, bg, lo), List.of(g.linear0(), g.linear1(), g.bilinear(), g.linearOut()));
    }

    @Test void equalityAndToString() {
        Tucker op = Tucker.random(5, 4, 6, 3, N, 7);
        assertEquals(op, Tucker.random(5, 4, 6, 3, N, 7));
        assertEquals(op.hashCode(), Tucker.random(5, 4, 6, 3, N, 7).hashCode());
        assertNotEquals(op, Tucker.random(5, 4, 6, 3, N, 8));
        assertNotEquals(op, Tucker.random(5, 4, 6, 3, Normalization.NONE, 7));
        assertTrue(op.toString().startsWith("Tucker[Dx=5, Dy=4, mm_dim=6, Out=3, Normalization["), op.toString());
        assertEquals("Tucker[Dx=5, Dy=4, mm_dim=6, Out=3]", Tucker.random(5, 4, 6, 3, Normalization.NONE, 7).toString());
    }

    /** Tucker's one core is named as Tucker's argument ({@code bilinear}) and as its state-dict tensor, not as BlockTucker's {@code bilinears[0]}. */
    @Test void theCoreIsNamedAsTuckersOwn() {
        Linear l0 = Linear.random(6, 5, true, 1), l1 = Linear.random(6, 4, true, 2), lo = Linear.random(3, 6, true, 3);
        refused("bilinear: expected a bilinear layer 6 × 6 → 6, got 6 × 5 → 6", () -> Tucker.of(l0, l1, BilinearLayer.random(6, 6, 5, true, 4), lo, N));
        Map<String, double[]> v = new HashMap<>();
        Map<String, long[]> s = new HashMap<>();
        put(v, s, "linear0", l0);
        put(v, s, "linear1", l1);
        putBilinear(v, s, "bilinear", BilinearLayer.random(6, 6, 5, true, 4));
        put(v, s, "linear_out", lo);
        refused("the in-memory state dict: 'bilinear.weight': expected a bilinear layer 6 × 6 → 6", () -> Tucker.fromStateDict(StateDict.of(v, s), "", false));
    }
}
