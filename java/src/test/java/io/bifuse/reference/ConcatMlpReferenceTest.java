package io.bifuse.reference;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.bifuse.Activation;
import io.bifuse.ConcatMlp;
import io.bifuse.Linear;
import io.bifuse.StateDict;
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

/**
 * {@link ConcatMlpReference} against block.bootstrap's own {@code fusions.ConcatMLP} through the fixtures
 * (1e-12: see {@link MutanReferenceTest}), against float64 central differences ({@link FiniteDifferences}),
 * and the loader's refusals.
 */
class ConcatMlpReferenceTest {
    @TempDir Path dir;

    @ParameterizedTest(name = "{0}")
    @CsvSource({"concatmlp-default,RELU", "concatmlp-tanh,TANH"})
    void matchesBlockBootstrapsModule(String stem, Activation act) throws IOException {
        try (StateDict sd = Fixtures.open(dir, stem)) {
            assertEquals("ConcatMLP", sd.metadata().get("fusion"));
            assertTrue(sd.metadata().get("config").contains("\"input_dims\": [10, 12]"), sd.metadata().get("config"));
            ConcatMlp op = ConcatMlp.fromStateDict(sd, "", 10, act);
            int batch = (int) sd.info("input.0").shape()[0];
            double[] x = sd.doubles("input.0"), y = sd.doubles("input.1");
            double e = Stats.relativeL2(ConcatMlpReference.forward(op, x, y, batch), sd.doubles("out"));
            assertTrue(e <= MutanReferenceTest.FIXTURE_TOL, stem + " forward: relative L2 " + e);
            List<double[]> got = ConcatMlpReference.backward(op, x, y, sd.doubles("grad_out"), batch);
            List<String> names = op.gradientNames();
            for (int t = 0; t < names.size(); t++) {
                e = Stats.relativeL2(got.get(t), sd.doubles("grad." + names.get(t)));
                assertTrue(e <= MutanReferenceTest.FIXTURE_TOL, stem + " " + names.get(t) + ": relative L2 " + e);
            }
        }
    }

    @ParameterizedTest(name = "{0} hidden={1}")
    @CsvSource({"RELU,''", "TANH,5", "SIGMOID,6 4", "NONE,3 3 3"})
    void gradientsMatchFiniteDifferences(Activation act, String hiddenList) {
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        int[] hidden = hiddenList.isBlank() ? new int[0] : java.util.Arrays.stream(hiddenList.trim().split(" ")).mapToInt(Integer::parseInt).toArray();
        int batch = 3, dx = 4, dy = 5, out = 3;
        ConcatMlp op = ConcatMlp.random(dx, dy, hidden, out, act, r.nextLong());
        double[] x = FusionChecks.floatExactGaussian(r, batch * dx), y = FusionChecks.floatExactGaussian(r, batch * dy), w = FusionChecks.floatExactGaussian(r, batch * out);
        List<double[]> grads = ConcatMlpReference.backward(op, x, y, w, batch);
        double h = 0x1p-16;
        String what = op + ", seed " + seed;
        FiniteDifferences.assertInputGradient(x, grads.get(0), () -> loss(op, x, y, w, batch), h, what + ": input.0");
        FiniteDifferences.assertInputGradient(y, grads.get(1), () -> loss(op, x, y, w, batch), h, what + ": input.1");
        Map<String, double[]> values = new LinkedHashMap<>();
        Map<String, long[]> shapes = new HashMap<>();
        for (int i = 0; i < op.layers().size(); i++) {
            Linear l = op.layers().get(i);
            values.put("mlp.linears." + i + ".weight", l.weightAsDouble());
            shapes.put("mlp.linears." + i + ".weight", new long[] {l.out(), l.in()});
            values.put("mlp.linears." + i + ".bias", l.biasAsDouble());
            shapes.put("mlp.linears." + i + ".bias", new long[] {l.out()});
        }
        List<String> names = op.gradientNames();
        for (int t = 2; t < names.size(); t++) {
            String name = names.get(t);
            int index = (int) (r.nextLong(1 << 20) % grads.get(t).length);
            FiniteDifferences.assertDerivative(d -> {
                Map<String, double[]> v = new LinkedHashMap<>(values);
                double[] a = v.get(name).clone();
                a[index] = (float) (a[index] + d);
                v.put(name, a);
                return new double[] {a[index] - values.get(name)[index], loss(ConcatMlp.fromStateDict(StateDict.of(v, shapes), "", dx, act), x, y, w, batch)};
            }, h, grads.get(t)[index], what + ": " + name + "[" + index + "]");
        }
    }

    private static double loss(ConcatMlp op, double[] x, double[] y, double[] w, int batch) {
        return FusionChecks.dot(w, ConcatMlpReference.forward(op, x, y, batch));
    }


    @Test void refusesBadLayersByName() {
        ConcatMlp op = ConcatMlp.random(4, 5, new int[] {6}, 3, Activation.RELU, 1);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> ConcatMlp.of(9, op.layers(), Activation.RELU));
        assertEquals("dx: expected 1 <= dx < 9 (layers[0] reads Dx + Dy = 9 features), got 9", e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> ConcatMlp.of(4, List.of(op.layers().get(0), Linear.random(3, 5, true, 2)), Activation.RELU));
        assertEquals("layers[1]: expected a layer 6 → 3 (weight 3 × 6), got 5 → 3 (weight 3 × 5)", e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> ConcatMlp.of(4, List.of(), Activation.RELU));
        assertEquals("layers: expected at least one layer, got none", e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> ConcatMlp.fromStateDict(StateDict.of(Map.of("mlp.linears.0.weight", new double[18],
                "mlp.linears.1.weight", new double[15]), Map.of("mlp.linears.0.weight", new long[] {2, 9}, "mlp.linears.1.weight", new long[] {3, 5})), "", 4, Activation.RELU));
        assertEquals("the in-memory state dict: 'mlp.linears.1.weight': expected 2 input features (mlp.linears.0's outputs), got 5", e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> ConcatMlp.fromStateDict(StateDict.of(Map.of(), Map.of()), "", 4, Activation.RELU));
        assertEquals("the in-memory state dict: no tensor 'mlp.linears.0.weight' (a ConcatMLP has at least one layer)", e.getMessage());
    }
}
