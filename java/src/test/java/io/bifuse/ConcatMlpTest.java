package io.bifuse;

import static io.bifuse.BlockTest.put;
import static io.bifuse.BlockTest.refused;
import static org.junit.jupiter.api.Assertions.*;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/**
 * The {@link ConcatMlp} descriptor: Dx, Dy and Out from the layers and {@code dx}, every refusal by name,
 * loading a state dict ({@code mlp.linears.i}: round trip, missing and misshapen tensors), the gradient
 * names and the order of {@link ConcatMlp.Gradients#tensors()}, equality.
 */
class ConcatMlpTest {
    static final Activation R = Activation.RELU;

    @Test void shapesComeFromTheLayers() {
        ConcatMlp op = ConcatMlp.random(4, 5, new int[] {6, 7}, 3, Activation.TANH, 1);
        assertEquals(List.of(4, 5, 3), List.of(op.dx(), op.dy(), op.out()));
        assertEquals(List.of(9, 6, 7), op.layers().stream().map(Linear::in).toList());
        assertEquals(List.of(6, 7, 3), op.layers().stream().map(Linear::out).toList());
        assertEquals(Activation.TANH, op.activation());
        List<Linear> layers = new ArrayList<>(op.layers());
        ConcatMlp same = ConcatMlp.of(4, layers, Activation.TANH);
        assertEquals(op, same);
        layers.clear();
        assertEquals(3, same.layers().size());
        assertThrows(UnsupportedOperationException.class, () -> same.layers().clear());
        // no hidden layer: one linear layer over [x, y]
        ConcatMlp one = ConcatMlp.random(2, 3, new int[0], 4, R, 1);
        assertEquals(List.of(1, 2, 3, 4), List.of(one.layers().size(), one.dx(), one.dy(), one.out()));
    }

    @Test void badLayersAreRefusedByName() {
        Linear a = Linear.random(6, 9, true, 1), b = Linear.random(3, 6, true, 2);
        assertDoesNotThrow(() -> ConcatMlp.of(4, List.of(a, b), R));
        refused("layers[1]: expected a layer 6 → 3 (weight 3 × 6), got 5 → 3", () -> ConcatMlp.of(4, List.of(a, Linear.random(3, 5, true, 2)), R));
        refused("layers[1]: expected a Linear layer, got null", () -> ConcatMlp.of(4, Arrays.asList(a, null), R));
        refused("layers: expected at least one layer, got none", () -> ConcatMlp.of(4, List.of(), R));
        refused("layers: expected at least one layer, got null", () -> ConcatMlp.of(4, null, R));
        refused("dx: expected 1 <= dx < 9 (layers[0] reads Dx + Dy = 9 features), got 9", () -> ConcatMlp.of(9, List.of(a, b), R));
        refused("dx: expected 1 <= dx < 9", () -> ConcatMlp.of(0, List.of(a, b), R));
        refused("activation: expected one of NONE, RELU, TANH, SIGMOID, got null", () -> ConcatMlp.of(4, List.of(a, b), null));
        refused("dx, dy, out: expected >= 1, got 4, 0, 3", () -> ConcatMlp.random(4, 0, new int[] {6}, 3, R, 1));
    }

    @Test void stateDictRoundTripsAndRefusesBadTensorsByName() {
        String pre = "network.fusion.", sd = "the in-memory state dict: ";
        ConcatMlp op = ConcatMlp.random(4, 5, new int[] {6, 7}, 3, R, 1);
        Map<String, double[]> v = new HashMap<>();
        Map<String, long[]> s = new HashMap<>();
        for (int i = 0; i < 3; i++) put(v, s, pre + "mlp.linears." + i, op.layers().get(i));
        assertEquals(op, ConcatMlp.fromStateDict(StateDict.of(v, s), pre, 4, R));
        ConcatMlp other = ConcatMlp.fromStateDict(StateDict.of(v, s), pre, 2, Activation.TANH);
        assertEquals(List.of(2, 7, Activation.TANH), List.of(other.dx(), other.dy(), other.activation()));

        refused(sd + "no tensor 'mlp.linears.0.weight' (a ConcatMLP has at least one layer)", () -> ConcatMlp.fromStateDict(StateDict.of(v, s), "", 4, R));
        Map<String, double[]> v1 = new HashMap<>(v);
        Map<String, long[]> s1 = new HashMap<>(s);
        put(v1, s1, pre + "mlp.linears.2", Linear.random(3, 8, true, 3));
        refused(sd + "'network.fusion.mlp.linears.2.weight': expected 7 input features (mlp.linears.1's outputs), got 8",
                () -> ConcatMlp.fromStateDict(StateDict.of(v1, s1), pre, 4, R));
        Map<String, double[]> v2 = new HashMap<>(v);
        Map<String, long[]> s2 = new HashMap<>(s);
        v2.put(pre + "mlp.linears.1.bias", new double[6]);
        s2.put(pre + "mlp.linears.1.bias", new long[] {6});
        refused(sd + "'network.fusion.mlp.linears.1.bias': expected shape [7], got [6]", () -> ConcatMlp.fromStateDict(StateDict.of(v2, s2), pre, 4, R));
        Map<String, double[]> v3 = new HashMap<>(v);
        Map<String, long[]> s3 = new HashMap<>(s);
        v3.put(pre + "mlp.linears.0.weight", new double[54]);
        s3.put(pre + "mlp.linears.0.weight", new long[] {54});
        refused(sd + "'network.fusion.mlp.linears.0.weight': expected a 2-D out × in weight, got shape [54]", () -> ConcatMlp.fromStateDict(StateDict.of(v3, s3), pre, 4, R));
        refused("dx: expected 1 <= dx < 9", () -> ConcatMlp.fromStateDict(StateDict.of(v, s), pre, 9, R));
    }

    @Test void gradientNamesAndTensorsFollowTheStateDict() {
        ConcatMlp op = ConcatMlp.of(2, List.of(Linear.random(3, 5, true, 1), Linear.random(2, 3, false, 2), Linear.random(1, 2, true, 3)), R);
        List<String> names = List.of("input.0", "input.1", "mlp.linears.0.weight", "mlp.linears.0.bias", "mlp.linears.1.weight", "mlp.linears.2.weight",
                "mlp.linears.2.bias");
        assertEquals(names, op.gradientNames());
        float[][] t = new float[names.size()][];
        for (int i = 0; i < t.length; i++) t[i] = new float[] {i};
        ConcatMlp.Gradients g = new ConcatMlp.Gradients(t[0], t[1], List.of(new LinearGradients(t[2], t[3]), new LinearGradients(t[4], null),
                new LinearGradients(t[5], t[6])));
        assertEquals(List.of(t), g.tensors());
    }

    @Test void equalityAndToString() {
        ConcatMlp op = ConcatMlp.random(4, 5, new int[] {6, 7}, 3, R, 1);
        assertEquals(op, ConcatMlp.random(4, 5, new int[] {6, 7}, 3, R, 1));
        assertEquals(op.hashCode(), ConcatMlp.random(4, 5, new int[] {6, 7}, 3, R, 1).hashCode());
        assertNotEquals(op, ConcatMlp.random(4, 5, new int[] {6, 7}, 3, R, 2));
        assertNotEquals(op, ConcatMlp.random(4, 5, new int[] {6, 7}, 3, Activation.TANH, 1));
        // the same layers with another split of their 9 inputs
        assertNotEquals(op, ConcatMlp.of(3, op.layers(), R));
        assertEquals("ConcatMlp[Dx=4, Dy=5, widths=6→7→3, RELU]", op.toString());
    }

    /** Found in review: a gap in the layers' numbering, hidden widths named, and toString with one layer object used twice. */
    @Test void gapsHiddenWidthsAndRepeatedLayers() {
        ConcatMlp op = ConcatMlp.random(4, 5, new int[] {6, 7}, 3, R, 1);
        Map<String, double[]> v = new HashMap<>();
        Map<String, long[]> s = new HashMap<>();
        put(v, s, "mlp.linears.0", op.layers().get(0));
        put(v, s, "mlp.linears.2", op.layers().get(2));
        refused("the in-memory state dict: no tensor 'mlp.linears.1.weight' (found 'mlp.linears.2.", () -> ConcatMlp.fromStateDict(StateDict.of(v, s), "", 4, R));
        v.remove("mlp.linears.2.weight");
        s.remove("mlp.linears.2.weight");
        v.remove("mlp.linears.2.bias");
        s.remove("mlp.linears.2.bias");
        v.put("mlp.linears.1.bias", new double[7]);
        s.put("mlp.linears.1.bias", new long[] {7});
        refused("the in-memory state dict: no tensor 'mlp.linears.1.weight' (found 'mlp.linears.1.bias'", () -> ConcatMlp.fromStateDict(StateDict.of(v, s), "", 4, R));
        refused("hidden[0]: expected >= 1, got 0", () -> ConcatMlp.random(4, 5, new int[] {0}, 3, R, 1));
        refused("hidden: expected the hidden layers' widths", () -> ConcatMlp.random(4, 5, null, 3, R, 1));
        Linear sq = Linear.random(3, 3, true, 2);
        assertEquals("ConcatMlp[Dx=4, Dy=5, widths=3→3→3, RELU]", ConcatMlp.of(4, List.of(Linear.random(3, 9, true, 1), sq, sq), R).toString());
    }
}
