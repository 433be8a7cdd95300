package io.bifuse.reference;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.bifuse.Linear;
import io.bifuse.Mutan;
import io.bifuse.Normalization;
import io.bifuse.StateDict;
import io.bifuse.testing.FiniteDifferences;
import io.bifuse.testing.Fixtures;
import io.bifuse.testing.FusionChecks;
import io.bifuse.testing.Stats;
import java.io.IOException;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * {@link MutanReference} against block.bootstrap's own {@code fusions.Mutan}: the fixtures that
 * {@code io/bifuse/fusions/make_fixtures.py} wrote (float64 autograd on float32-exact weights and inputs)
 * loaded through {@link StateDict#readSafetensors} and {@link Mutan#fromStateDict}, matched in forward
 * and every gradient at 1e-12 relative L2 (two float64 evaluations of the same sums in other orders
 * differ by about 1e-16 times the sums' condition; 1e-12 leaves room for the signed sqrt near zero, and
 * an indexing or chain-rule mistake is of order 1). Then the gradients against central finite differences
 * in float64, and the loader's refusals.
 */
class MutanReferenceTest {
    static final double FIXTURE_TOL = 1e-12;

    @TempDir Path dir;

    @ParameterizedTest(name = "{0}")
    @ValueSource(strings = {"mutan-default", "mutan-shared-normalized"})
    void matchesBlockBootstrapsModule(String stem) throws IOException {
        try (StateDict sd = Fixtures.open(dir, stem)) {
            assertEquals("Mutan", sd.metadata().get("fusion"));
            Mutan op = Mutan.fromStateDict(sd, "", Fixtures.flag(sd, "shared"), Fixtures.flag(sd, "normalize"));
            int batch = (int) sd.info("input.0").shape()[0];
            double[] x = sd.doubles("input.0"), y = sd.doubles("input.1"), g = sd.doubles("grad_out");
            double e = Stats.relativeL2(MutanReference.forward(op, x, y, batch), sd.doubles("out"));
            assertTrue(e <= FIXTURE_TOL, stem + " forward: relative L2 " + e);
            List<double[]> got = MutanReference.backward(op, x, y, g, batch).tensors();
            List<String> names = op.gradientNames();
            assertEquals(12, names.size(), "every layer of block.bootstrap's Mutan has a bias");
            for (int t = 0; t < names.size(); t++) {
                e = Stats.relativeL2(got.get(t), sd.doubles("grad." + names.get(t)));
                assertTrue(e <= FIXTURE_TOL, stem + " " + names.get(t) + ": relative L2 " + e);
            }
        }
    }

    /**
     * Central differences of {@code L = Σ w ⊙ f} in float64 ({@link FiniteDifferences}, h = 2⁻¹⁶: bounds
     * from the differences' own disagreement) for both inputs and, through layers rebuilt with one float
     * parameter moved (by the step float allows), one entry of every tensor.
     */
    @ParameterizedTest(name = "rank={0} shared={1} normalized={2}")
    @CsvSource({"1,false,false", "3,false,true", "2,true,true", "4,true,false"})
    void gradientsMatchFiniteDifferences(int rank, boolean shared, boolean normalized) {
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        int batch = 3, dx = 6, dy = shared ? 6 : 5, m = 4, out = 3;
        Mutan op = Mutan.random(dx, dy, m, rank, out, shared, normalized ? Normalization.pytorch() : Normalization.NONE, r.nextLong());
        double[] x = FusionChecks.floatExactGaussian(r, batch * dx), y = FusionChecks.floatExactGaussian(r, batch * dy), w = FusionChecks.floatExactGaussian(r, batch * out);
        List<double[]> grads = MutanReference.backward(op, x, y, w, batch).tensors();
        double h = 0x1p-16;
        String what = "rank=" + rank + " shared=" + shared + " normalized=" + normalized + ", seed " + seed;
        FiniteDifferences.assertInputGradient(x, grads.get(0), () -> loss(op, x, y, w, batch), h, what + ": input.0");
        FiniteDifferences.assertInputGradient(y, grads.get(1), () -> loss(op, x, y, w, batch), h, what + ": input.1");
        // One entry of each layer's weight and bias: the op rebuilt with that parameter moved by ±h.
        List<String> names = op.gradientNames();
        for (int t = 2; t < names.size(); t++) {
            String name = names.get(t);
            int index = (int) (r.nextLong(1 << 20) % grads.get(t).length);
            double base = original(op, name, index);
            FiniteDifferences.assertDerivative(d -> {
                Moved mv = moved(op, name, index, d);
                return new double[] {mv.value - base, loss(mv.op, x, y, w, batch)};
            }, h, grads.get(t)[index], what + ": " + name + "[" + index + "]");
        }
    }

    private static double loss(Mutan op, double[] x, double[] y, double[] w, int batch) {
        return FusionChecks.dot(w, MutanReference.forward(op, x, y, batch));
    }

    /** The value of element {@code index} of tensor {@code name} (a state-dict name). */
    private static double original(Mutan op, String name, int index) {
        Map<String, Linear> layers = Map.of("linear0", op.linear0(), "linear1", op.linear1(), "merge_linear0", op.mergeLinear0(), "merge_linear1", op.mergeLinear1(),
                "linear_out", op.linearOut());
        Linear l = layers.get(name.substring(0, name.lastIndexOf('.')));
        return name.endsWith(".bias") ? l.bias()[index] : l.weight()[index];
    }

    /** An op with one parameter moved, and that parameter's new value (the float nearest the asked one). */
    private record Moved(Mutan op, double value) {}

    /** {@code op} with element {@code index} of tensor {@code name} (a state-dict name) moved by about {@code delta}; a shared layer moves on both sides. */
    private static Moved moved(Mutan op, String name, int index, double delta) {
        String layer = name.substring(0, name.lastIndexOf('.'));
        boolean bias = name.endsWith(".bias");
        Map<String, Linear> layers = new HashMap<>(Map.of("linear0", op.linear0(), "linear1", op.linear1(), "merge_linear0", op.mergeLinear0(),
                "merge_linear1", op.mergeLinear1(), "linear_out", op.linearOut()));
        Linear l = layers.get(layer);
        float[] wt = l.weight(), b = l.bias();
        float[] target = bias ? b : wt;
        float moved = (float) (target[index] + delta);
        target[index] = moved;
        Linear nl = new Linear(l.out(), l.in(), wt, b);
        if (op.isShared()) {
            String base = layer.replace('1', '0');
            layers.put(base, nl);
            return new Moved(Mutan.shared(layers.get("linear0"), layers.get("merge_linear0"), layers.get("linear_out"), op.rank(), op.normalization()), moved);
        }
        layers.put(layer, nl);
        return new Moved(Mutan.of(layers.get("linear0"), layers.get("linear1"), layers.get("merge_linear0"), layers.get("merge_linear1"), layers.get("linear_out"),
                op.rank(), op.normalization()), moved);
    }


    @Test void loadingRefusesBadStateDictsByName() throws IOException {
        try (StateDict good = Fixtures.open(dir, "mutan-default")) {
            Map<String, double[]> v = new HashMap<>();
            Map<String, long[]> s = new HashMap<>();
            for (String n : good.names()) {
                if (n.startsWith("grad") || n.startsWith("input") || n.equals("out")) continue;
                v.put(n, good.doubles(n));
                s.put(n, good.info(n).shape());
            }
            assertEquals(10, v.size());
            // missing
            Map<String, double[]> v1 = new HashMap<>(v);
            Map<String, long[]> s1 = new HashMap<>(s);
            v1.remove("linear_out.weight");
            s1.remove("linear_out.weight");
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Mutan.fromStateDict(StateDict.of(v1, s1), "", false, false));
            assertTrue(e.getMessage().startsWith("the in-memory state dict: no tensor 'linear_out.weight' (under 'linear_out.': linear_out.bias)"), e.getMessage());
            // merge rows not a multiple of mm_dim (9): 26 × 9
            Map<String, double[]> v2 = new HashMap<>(v);
            Map<String, long[]> s2 = new HashMap<>(s);
            v2.put("merge_linear0.weight", new double[26 * 9]);
            s2.put("merge_linear0.weight", new long[] {26, 9});
            v2.put("merge_linear0.bias", new double[26]);
            s2.put("merge_linear0.bias", new long[] {26});
            e = assertThrows(IllegalArgumentException.class, () -> Mutan.fromStateDict(StateDict.of(v2, s2), "", false, false));
            assertEquals("the in-memory state dict: 'merge_linear0.weight': expected shape [rank × 9, 9] (mm_dim = linear0's 9 rows), got [26, 9]", e.getMessage());
            // a misshapen bias
            Map<String, double[]> v3 = new HashMap<>(v);
            Map<String, long[]> s3 = new HashMap<>(s);
            v3.put("linear1.bias", new double[8]);
            s3.put("linear1.bias", new long[] {8});
            e = assertThrows(IllegalArgumentException.class, () -> Mutan.fromStateDict(StateDict.of(v3, s3), "", false, false));
            assertEquals("the in-memory state dict: 'linear1.bias': expected shape [9], got [8]", e.getMessage());
            // merge_linear1 of another width than linear1's output
            Map<String, double[]> v4 = new HashMap<>(v);
            Map<String, long[]> s4 = new HashMap<>(s);
            v4.put("merge_linear1.weight", new double[27 * 8]);
            s4.put("merge_linear1.weight", new long[] {27, 8});
            e = assertThrows(IllegalArgumentException.class, () -> Mutan.fromStateDict(StateDict.of(v4, s4), "", false, false));
            assertEquals("the in-memory state dict: 'merge_linear1.weight': expected a layer 9 → 27 (weight 27 × 9), got 8 → 27 (weight 27 × 8)", e.getMessage());
            // shared, but linear1 differs from linear0 (and the input widths differ)
            e = assertThrows(IllegalArgumentException.class, () -> Mutan.fromStateDict(StateDict.of(v, s), "", true, false));
            assertTrue(e.getMessage().startsWith("the in-memory state dict: 'linear1': shared=true, so expected the same values as linear0"), e.getMessage());
            // a prefix that matches nothing
            e = assertThrows(IllegalArgumentException.class, () -> Mutan.fromStateDict(good, "network.fusion.", false, false));
            assertTrue(e.getMessage().contains("no tensor 'network.fusion.linear0.weight'"), e.getMessage());
        }
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Mutan.random(4, 4, 3, 0, 2, false, Normalization.NONE, 1));
        assertEquals("rank: expected >= 1, got 0", e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> Mutan.random(4, 5, 3, 2, 2, true, Normalization.NONE, 1));
        assertEquals("shared: expected dx == dy, got 4 and 5", e.getMessage());
        Mutan ok = Mutan.random(4, 5, 3, 2, 2, false, Normalization.NONE, 1);
        e = assertThrows(IllegalArgumentException.class, () -> Mutan.of(ok.linear0(), ok.linear1(), ok.mergeLinear0(), ok.mergeLinear1(), ok.linearOut(), 3,
                Normalization.NONE));
        assertEquals("mergeLinear0: expected a layer 3 → 9 (weight 9 × 3), got 3 → 6 (weight 6 × 3)", e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> ok.checkInputs(new float[8], new float[11], 2));
        assertEquals("y: expected 2 × 5 = 10 floats, got 11", e.getMessage());
    }
}
