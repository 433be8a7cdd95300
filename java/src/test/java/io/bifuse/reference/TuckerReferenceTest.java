package io.bifuse.reference;

import static org.junit.jupiter.api.Assertions.assertEquals;

import io.bifuse.BilinearLayer;
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
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * {@link TuckerReference} (BlockTucker's reference on the one-chunk form) against block.bootstrap's own
 * {@code fusions.Tucker} through the fixtures (1e-12: see {@link MutanReferenceTest}), and its gradients
 * against float64 central differences: every input element, and one element of every parameter tensor
 * through the op rebuilt from its state dict under Tucker's own names (so the mapping onto the one-chunk
 * form, and the normalization's place after it, are what is checked).
 */
class TuckerReferenceTest {
    @TempDir Path dir;

    @ParameterizedTest(name = "{0}")
    @ValueSource(strings = {"tucker-default", "tucker-normalized"})
    void matchesBlockBootstrapsModule(String stem) throws IOException {
        try (StateDict sd = Fixtures.open(dir, stem)) {
            assertEquals("Tucker", sd.metadata().get("fusion"));
            Tucker op = Tucker.fromStateDict(sd, "", Fixtures.flag(sd, "normalize"));
            int batch = BlockTuckerReferenceTest.batch(sd);
            double[] x = BlockTuckerReferenceTest.in(sd, 0), y = BlockTuckerReferenceTest.in(sd, 1);
            BlockTuckerReferenceTest.compare(stem, sd, TuckerReference.forward(op, x, y, batch), TuckerReference.backward(op, x, y, sd.doubles("grad_out"), batch),
                    op.gradientNames());
        }
    }

    @ParameterizedTest(name = "normalized={0}")
    @ValueSource(booleans = {false, true})
    void gradientsMatchFiniteDifferences(boolean normalized) {
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        int batch = 3, dx = 6, dy = 5, m = 7, out = 4;
        Tucker op = Tucker.random(dx, dy, m, out, normalized ? Normalization.pytorch() : Normalization.NONE, r.nextLong());
        double[] x = FusionChecks.floatExactGaussian(r, batch * dx), y = FusionChecks.floatExactGaussian(r, batch * dy), w = FusionChecks.floatExactGaussian(r, batch * out);
        List<double[]> grads = TuckerReference.backward(op, x, y, w, batch);
        double h = 0x1p-16;
        String what = op + ", seed " + seed;
        FiniteDifferences.assertInputGradient(x, grads.get(0), () -> loss(op, x, y, w, batch), h, what + ": input.0");
        FiniteDifferences.assertInputGradient(y, grads.get(1), () -> loss(op, x, y, w, batch), h, what + ": input.1");
        Map<String, double[]> values = new LinkedHashMap<>();
        Map<String, long[]> shapes = new HashMap<>();
        put(values, shapes, "linear0", op.linear0());
        put(values, shapes, "linear1", op.linear1());
        put(values, shapes, "linear_out", op.linearOut());
        BilinearLayer b = op.bilinear();
        values.put("bilinear.weight", b.weightAsDouble());
        shapes.put("bilinear.weight", new long[] {b.out(), b.in1(), b.in2()});
        values.put("bilinear.bias", b.biasAsDouble());
        shapes.put("bilinear.bias", new long[] {b.out()});
        List<String> names = op.gradientNames();
        assertEquals(names.size(), grads.size(), "one gradient per name");
        for (int t = 2; t < names.size(); t++) {
            String name = names.get(t);
            int index = (int) (r.nextLong(1 << 20) % grads.get(t).length);
            FiniteDifferences.assertDerivative(d -> {
                Map<String, double[]> v = new LinkedHashMap<>(values);
                double value = (float) (values.get(name)[index] + d);
                double[] a = v.get(name).clone();
                a[index] = value;
                v.put(name, a);
                return new double[] {value - values.get(name)[index], loss(Tucker.fromStateDict(StateDict.of(v, shapes), "", normalized), x, y, w, batch)};
            }, h, grads.get(t)[index], what + ": " + name + "[" + index + "]");
        }
    }

    private static void put(Map<String, double[]> values, Map<String, long[]> shapes, String name, Linear l) {
        values.put(name + ".weight", l.weightAsDouble());
        shapes.put(name + ".weight", new long[] {l.out(), l.in()});
        values.put(name + ".bias", l.biasAsDouble());
        shapes.put(name + ".bias", new long[] {l.out()});
    }

    private static double loss(Tucker op, double[] x, double[] y, double[] w, int batch) {
        return FusionChecks.dot(w, TuckerReference.forward(op, x, y, batch));
    }
}
