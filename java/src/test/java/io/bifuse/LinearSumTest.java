package io.bifuse;

import static io.bifuse.BlockTest.put;
import static io.bifuse.BlockTest.refused;
import static org.junit.jupiter.api.Assertions.*;

import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/**
 * The {@link LinearSum} descriptor: the shapes it derives from its layers, every refusal by name, loading
 * a state dict (round trip with the constructor's activations and {@code normalize}, missing and misshapen
 * tensors), the gradient names and the order of {@link LinearSum.Gradients#tensors()}, equality.
 */
class LinearSumTest {
    static final Activation R = Activation.RELU;

    @Test void shapesComeFromTheLayers() {
        LinearSum op = LinearSum.random(5, 4, 6, 3, Activation.TANH, Activation.SIGMOID, Normalization.NONE, 7);
        assertEquals(List.of(5, 4, 6, 3), List.of(op.dx(), op.dy(), op.mmDim(), op.out()));
        assertEquals(Activation.TANH, op.inputActivation());
        assertEquals(Activation.SIGMOID, op.outputActivation());
        assertEquals(Normalization.NONE, op.normalization());
        assertEquals(op, LinearSum.of(op.linear0(), op.linear1(), op.linearOut(), Activation.TANH, Activation.SIGMOID, Normalization.NONE));
    }

    @Test void badLayersAreRefusedByName() {
        Linear l0 = Linear.random(6, 5, true, 1), l1 = Linear.random(6, 4, false, 2), lo = Linear.random(3, 6, true, 3);
        Normalization n = Normalization.pytorch();
        assertDoesNotThrow(() -> LinearSum.of(l0, l1, lo, R, R, n));
        refused("linear1: expected a layer 4 → 6 (weight 6 × 4), got 4 → 5", () -> LinearSum.of(l0, Linear.random(5, 4, true, 2), lo, R, R, n));
        refused("linearOut: expected a layer 6 → 3 (weight 3 × 6), got 7 → 3", () -> LinearSum.of(l0, l1, Linear.random(3, 7, true, 3), R, R, n));
        refused("linear0: expected a Linear layer, got null", () -> LinearSum.of(null, l1, lo, R, R, n));
        refused("linear1: expected a Linear layer, got null", () -> LinearSum.of(l0, null, lo, R, R, n));
        refused("linearOut: expected a Linear layer, got null", () -> LinearSum.of(l0, l1, null, R, R, n));
        refused("inputActivation: expected one of NONE, RELU, TANH, SIGMOID, got null", () -> LinearSum.of(l0, l1, lo, null, R, n));
        refused("outputActivation: expected one of NONE, RELU, TANH, SIGMOID, got null", () -> LinearSum.of(l0, l1, lo, R, null, n));
        refused("dx, dy, mmDim, out: expected >= 1, got 5, 0, 6, 3", () -> LinearSum.random(5, 0, 6, 3, R, R, n, 1));
        refused("outputActivation: expected one of", () -> LinearSum.random(5, 4, 6, 3, R, null, n, 1));
    }

    @Test void stateDictRoundTripsAndRefusesBadTensorsByName() {
        String pre = "network.fusion.", sd = "the in-memory state dict: ";
        LinearSum op = LinearSum.random(5, 4, 6, 3, R, Activation.NONE, Normalization.pytorch(), 7);
        Map<String, double[]> v = new HashMap<>();
        Map<String, long[]> s = new HashMap<>();
        put(v, s, pre + "linear0", op.linear0());
        put(v, s, pre + "linear1", op.linear1());
        put(v, s, pre + "linear_out", op.linearOut());
        assertEquals(op, LinearSum.fromStateDict(StateDict.of(v, s), pre, R, Activation.NONE, true));
        LinearSum plain = LinearSum.fromStateDict(StateDict.of(v, s), pre, Activation.TANH, R, false);
        assertEquals(List.of(Activation.TANH, R, Normalization.NONE), List.of(plain.inputActivation(), plain.outputActivation(), plain.normalization()));

        Map<String, double[]> v1 = new HashMap<>(v);
        Map<String, long[]> s1 = new HashMap<>(s);
        v1.remove(pre + "linear1.weight");
        s1.remove(pre + "linear1.weight");
        refused(sd + "no tensor 'network.fusion.linear1.weight'", () -> LinearSum.fromStateDict(StateDict.of(v1, s1), pre, R, R, false));
        refused(sd + "no tensor 'linear0.weight'", () -> LinearSum.fromStateDict(StateDict.of(v, s), "", R, R, false));
        Map<String, double[]> v2 = new HashMap<>(v);
        Map<String, long[]> s2 = new HashMap<>(s);
        v2.put(pre + "linear_out.bias", new double[4]);
        s2.put(pre + "linear_out.bias", new long[] {4});
        refused(sd + "'network.fusion.linear_out.bias': expected shape [3], got [4]", () -> LinearSum.fromStateDict(StateDict.of(v2, s2), pre, R, R, false));
        Map<String, double[]> v3 = new HashMap<>(v);
        Map<String, long[]> s3 = new HashMap<>(s);
        v3.put(pre + "linear0.weight", new double[30]);
        s3.put(pre + "linear0.weight", new long[] {6, 5, 1});
        refused(sd + "'network.fusion.linear0.weight': expected a 2-D out × in weight, got shape [6, 5, 1]", () -> LinearSum.fromStateDict(StateDict.of(v3, s3), pre, R, R, false));
        refused("inputActivation: expected one of", () -> LinearSum.fromStateDict(StateDict.of(v, s), pre, null, R, false));
    }

    @Test void gradientNamesAndTensorsFollowTheStateDict() {
        LinearSum op = LinearSum.of(Linear.random(2, 3, true, 1), Linear.random(2, 2, false, 2), Linear.random(1, 2, true, 3), R, R, Normalization.NONE);
        List<String> names = List.of("input.0", "input.1", "linear0.weight", "linear0.bias", "linear1.weight", "linear_out.weight", "linear_out.bias");
        assertEquals(names, op.gradientNames());
        float[][] t = new float[names.size()][];
        for (int i = 0; i < t.length; i++) t[i] = new float[] {i};
        LinearSum.Gradients g = new LinearSum.Gradients(t[0], t[1], new LinearGradients(t[2], t[3]), new LinearGradients(t[4], null), new LinearGradients(t[5], t[6]));
        assertEquals(List.of(t), g.tensors());
    }

    @Test void equalityAndToString() {
        Normalization n = Normalization.pytorch();
        LinearSum op = LinearSum.random(5, 4, 6, 3, R, R, n, 7);
        assertEquals(op, LinearSum.random(5, 4, 6, 3, R, R, n, 7));
        assertEquals(op.hashCode(), LinearSum.random(5, 4, 6, 3, R, R, n, 7).hashCode());
        assertNotEquals(op, LinearSum.random(5, 4, 6, 3, R, R, n, 8));
        assertNotEquals(op, LinearSum.random(5, 4, 6, 3, Activation.TANH, R, n, 7));
        assertNotEquals(op, LinearSum.random(5, 4, 6, 3, R, Activation.NONE, n, 7));
        assertNotEquals(op, LinearSum.random(5, 4, 6, 3, R, R, Normalization.NONE, 7));
        assertTrue(op.toString().startsWith("LinearSum[Dx=5, Dy=4, mm_dim=6, Out=3, in RELU, out RELU, Normalization["), op.toString());
        assertEquals("LinearSum[Dx=5, Dy=4, mm_dim=6, Out=3, in TANH, out NONE]", LinearSum.random(5, 4, 6, 3, Activation.TANH, Activation.NONE, Normalization.NONE, 7)
                .toString());
    }
}
