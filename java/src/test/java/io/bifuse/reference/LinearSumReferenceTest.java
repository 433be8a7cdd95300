package io.bifuse.reference;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.bifuse.Activation;
import io.bifuse.Linear;
import io.bifuse.LinearSum;
import io.bifuse.Normalization;
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
 * {@link LinearSumReference} against block.bootstrap's own {@code fusions.LinearSum} through the
 * fixtures (1e-12: see {@link MutanReferenceTest}), against float64 central differences
 * ({@link FiniteDifferences}) for every activation, and the loader's refusals.
 */
class LinearSumReferenceTest {
    @TempDir Path dir;

    @ParameterizedTest(name = "{0}")
    @CsvSource({"linearsum-default,RELU,RELU", "linearsum-tanh-sigmoid-normalized,TANH,SIGMOID"})
    void matchesBlockBootstrapsModule(String stem, Activation in, Activation out) throws IOException {
        try (StateDict sd = Fixtures.open(dir, stem)) {
            assertEquals("LinearSum", sd.metadata().get("fusion"));
            LinearSum op = LinearSum.fromStateDict(sd, "", in, out, Fixtures.flag(sd, "normalize"));
            int batch = (int) sd.info("input.0").shape()[0];
            double[] x = sd.doubles("input.0"), y = sd.doubles("input.1");
            double e = Stats.relativeL2(LinearSumReference.forward(op, x, y, batch), sd.doubles("out"));
            assertTrue(e <= MutanReferenceTest.FIXTURE_TOL, stem + " forward: relative L2 " + e);
            List<double[]> got = LinearSumReference.backward(op, x, y, sd.doubles("grad_out"), batch);
            List<String> names = op.gradientNames();
            for (int t = 0; t < names.size(); t++) {
                e = Stats.relativeL2(got.get(t), sd.doubles("grad." + names.get(t)));
                assertTrue(e <= MutanReferenceTest.FIXTURE_TOL, stem + " " + names.get(t) + ": relative L2 " + e);
            }
        }
    }

    @ParameterizedTest(name = "{0} {1} normalized={2}")
    @CsvSource({"NONE,NONE,false", "RELU,RELU,false", "TANH,SIGMOID,true", "SIGMOID,TANH,true", "RELU,NONE,true"})
    void gradientsMatchFiniteDifferences(Activation in, Activation out, boolean normalized) {
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        int batch = 3, dx = 6, dy = 5, m = 7, o = 4;
        LinearSum op = LinearSum.random(dx, dy, m, o, in, out, normalized ? Normalization.pytorch() : Normalization.NONE, r.nextLong());
        double[] x = FusionChecks.floatExactGaussian(r, batch * dx), y = FusionChecks.floatExactGaussian(r, batch * dy), w = FusionChecks.floatExactGaussian(r, batch * o);
        List<double[]> grads = LinearSumReference.backward(op, x, y, w, batch);
        double h = 0x1p-16;
        String what = op + ", seed " + seed;
        FiniteDifferences.assertInputGradient(x, grads.get(0), () -> loss(op, x, y, w, batch), h, what + ": input.0");
        FiniteDifferences.assertInputGradient(y, grads.get(1), () -> loss(op, x, y, w, batch), h, what + ": input.1");
        Map<String, double[]> values = new LinkedHashMap<>();
        Map<String, long[]> shapes = new HashMap<>();
        for (String[] nl : new String[][] {{"linear0"}, {"linear1"}, {"linear_out"}}) {
            Linear l = nl[0].equals("linear0") ? op.linear0() : nl[0].equals("linear1") ? op.linear1() : op.linearOut();
            values.put(nl[0] + ".weight", l.weightAsDouble());
            shapes.put(nl[0] + ".weight", new long[] {l.out(), l.in()});
            values.put(nl[0] + ".bias", l.biasAsDouble());
            shapes.put(nl[0] + ".bias", new long[] {l.out()});
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
                return new double[] {a[index] - values.get(name)[index], loss(LinearSum.fromStateDict(StateDict.of(v, shapes), "", in, out, normalized), x, y, w, batch)};
            }, h, grads.get(t)[index], what + ": " + name + "[" + index + "]");
        }
    }

    private static double loss(LinearSum op, double[] x, double[] y, double[] w, int batch) {
        return FusionChecks.dot(w, LinearSumReference.forward(op, x, y, batch));
    }


    @Test void refusesBadLayersByName() {
        LinearSum op = LinearSum.random(5, 4, 6, 3, Activation.RELU, Activation.RELU, Normalization.NONE, 3);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> LinearSum.of(op.linear0(), Linear.random(5, 4, true, 1), op.linearOut(),
                Activation.RELU, Activation.RELU, Normalization.NONE));
        assertEquals("linear1: expected a layer 4 → 6 (weight 6 × 4), got 4 → 5 (weight 5 × 4)", e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> LinearSum.of(op.linear0(), op.linear1(), op.linearOut(), null, Activation.RELU, Normalization.NONE));
        assertEquals("inputActivation: expected one of NONE, RELU, TANH, SIGMOID, got null", e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> LinearSum.fromStateDict(StateDict.of(Map.of(), Map.of()), "fusion.", Activation.RELU, Activation.RELU, false));
        assertEquals("the in-memory state dict: no tensor 'fusion.linear0.weight' (0 tensors)", e.getMessage());
    }
}
