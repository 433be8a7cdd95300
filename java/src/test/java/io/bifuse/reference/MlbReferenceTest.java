package io.bifuse.reference;

import static io.bifuse.reference.Vectors.*;
import static org.junit.jupiter.api.Assertions.*;

import io.bifuse.Activation;
import io.bifuse.Linear;
import io.bifuse.Mlb;
import io.bifuse.Normalization;
import io.bifuse.StateDict;
import io.bifuse.testing.Fixtures;
import io.bifuse.testing.FusionChecks;
import java.io.IOException;
import java.nio.file.Path;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/** The oracle itself: a hand-computed case, the paper's column-vector form, and float64 finite differences of every tensor. */
class MlbReferenceTest {

    @Test void handComputedCase() {
        // Dx = 2, Dy = 1, J = 2, Out = 1, σ = none.
        // U = [[1, 0], [0, 2]], b_u = [0, 1];  V = [[3], [-1]], b_v = [1, 0];  P = [[1, -1]], b_p = [0.5].
        // x = [1, 2], y = [2]: pu = [1, 4 + 1] = [1, 5], pv = [6 + 1, -2] = [7, -2], h = [7, -10], f = 7 + 10 + 0.5.
        Mlb op = Mlb.of(new Linear(2, 2, new float[] {1, 0, 0, 2}, new float[] {0, 1}),
                new Linear(2, 1, new float[] {3, -1}, new float[] {1, 0}),
                new Linear(1, 2, new float[] {1, -1}, new float[] {0.5f}), Activation.NONE);
        assertArrayEquals(new double[] {17.5}, MlbReference.forward(op, new float[] {1, 2}, new float[] {2}, 1), 0);
        // tanh: f = tanh(1)·tanh(7) − tanh(5)·tanh(−2) + 0.5
        double expect = Math.tanh(1) * Math.tanh(7) - Math.tanh(5) * Math.tanh(-2) + 0.5;
        assertArrayEquals(new double[] {expect}, MlbReference.forward(op.withActivation(Activation.TANH), new float[] {1, 2}, new float[] {2}, 1), 1e-15);
        // relu: h = [1·7, 5·0] → f = 7 + 0.5
        assertArrayEquals(new double[] {7.5}, MlbReference.forward(op.withActivation(Activation.RELU), new float[] {1, 2}, new float[] {2}, 1), 0);
        // Backward with σ = none, g = [1]: gh = g·P = [1, −1]; dpu = gh ⊙ pv = [7, 2]; dpv = gh ⊙ pu = [1, −5].
        MlbReference.Grads gr = MlbReference.backward(op, new float[] {1, 2}, new float[] {2}, new float[] {1}, 1);
        assertArrayEquals(new double[] {7, 4}, gr.dx(), 0);        // dpu·U = [7·1, 2·2]
        assertArrayEquals(new double[] {3 + 5}, gr.dy(), 0);       // dpv·V = 1·3 + (−5)(−1)
        assertArrayEquals(new double[] {7, 14, 2, 4}, gr.u(), 0);  // dpuᵀ·x
        assertArrayEquals(new double[] {7, 2}, gr.bu(), 0);
        assertArrayEquals(new double[] {2, -10}, gr.v(), 0);       // dpvᵀ·y
        assertArrayEquals(new double[] {7, -10}, gr.p(), 0);       // gᵀ·h
        assertArrayEquals(new double[] {1}, gr.bp(), 0);
    }

    @Test void equalsThePapersColumnVectorForm() {
        // f = Pᵀ(σ(Uᵀx + b_u) ⊙ σ(Vᵀy + b_v)) + b_p with the paper's U (Dx × J), V (Dy × J), P (J × Out):
        // those are the transposes of the nn.Linear weights, written out here with explicit index loops.
        SplittableRandom r = new SplittableRandom(21);
        int dx = 6, dy = 5, j = 4, out = 3;
        Mlb op = Mlb.random(dx, dy, j, out, Activation.TANH, 77);
        float[] uw = op.u().weight(), vw = op.v().weight(), pw = op.p().weight();
        double[] x = gaussian(r, dx), y = gaussian(r, dy), f = new double[out];
        double[] h = new double[j];
        for (int k = 0; k < j; k++) {
            double a = op.u().bias()[k], c = op.v().bias()[k];
            for (int i = 0; i < dx; i++) a += uw[k * dx + i] * x[i];   // paper U[i][k] = weight[k][i]
            for (int i = 0; i < dy; i++) c += vw[k * dy + i] * y[i];
            h[k] = Math.tanh(a) * Math.tanh(c);
        }
        for (int o = 0; o < out; o++) {
            f[o] = op.p().bias()[o];
            for (int k = 0; k < j; k++) f[o] += pw[o * j + k] * h[k];
        }
        assertArrayEquals(f, MlbReference.forward(MlbReference.Weights.of(op), x, y, 1), 1e-14);
    }

    @Test void gradientsMatchFiniteDifferences() {
        SplittableRandom r = new SplittableRandom(5);
        for (Activation act : Activation.values()) {
            int batch = 3, dx = 5, dy = 4, j = 6, out = 7;
            Mlb op = Mlb.random(dx, dy, j, out, act, r.nextLong());
            double[] x = gaussian(r, batch * dx), y = gaussian(r, batch * dy), g = gaussian(r, batch * out);
            MlbReference.Weights w = MlbReference.Weights.of(op);
            // ReLU has a kink at 0: redraw until every pre-activation is clearly away from it.
            for (int tries = 0; act == Activation.RELU && minAbsPreActivation(w, x, y, batch) < 1e-3; tries++) {
                assertTrue(tries < 1000, "no draw kept the pre-activations away from 0");
                x = gaussian(r, batch * dx);
                y = gaussian(r, batch * dy);
            }
            double[][] analytic = MlbReference.backward(w, x, y, g, batch).all();
            double[][] numeric = finiteDifferences(w, x, y, g, batch);
            String[] names = {"dx", "dy", "U", "b_u", "V", "b_v", "P", "b_p"};
            for (int t = 0; t < names.length; t++) {
                // Central differences with step 1e-6 in float64: truncation ~1e-12·f''', rounding ~1e-16/1e-6.
                double e = relErr(analytic[t], numeric[t]);
                assertTrue(e < 1e-7, act + " " + names[t] + " error " + e);
            }
        }
    }

    /** block.bootstrap's options: the normalization of h and σ_out on f, every tensor against float64 central differences. */
    @ParameterizedTest(name = "{0} in, {1} out, normalized={2}")
    @CsvSource({"TANH,SIGMOID,true", "NONE,TANH,true", "SIGMOID,NONE,true", "TANH,RELU,false"})
    void optionsGradientsMatchFiniteDifferences(Activation in, Activation outAct, boolean normalized) {
        SplittableRandom r = new SplittableRandom(17);
        int batch = 3, dx = 5, dy = 4, j = 6, out = 7;
        Mlb op = Mlb.random(dx, dy, j, out, in, r.nextLong()).withOptions(normalized ? Normalization.pytorch() : Normalization.NONE, outAct);
        double[] x = gaussian(r, batch * dx), y = gaussian(r, batch * dy), g = gaussian(r, batch * out);
        MlbReference.Weights w = MlbReference.Weights.of(op);
        double[][] analytic = MlbReference.backward(w, x, y, g, batch).all();
        double[][] numeric = finiteDifferences(w, x, y, g, batch);
        String[] names = {"dx", "dy", "U", "b_u", "V", "b_v", "P", "b_p"};
        for (int t = 0; t < names.length; t++) {
            // A ReLU output unit within 1e-6 of its kink would break the central difference; these seeds keep clear of it (a failure names the tensor).
            double e = relErr(analytic[t], numeric[t]);
            assertTrue(e < 1e-7, op + " " + names[t] + " error " + e);
        }
    }

    /** block.bootstrap's MLB module (float64 fixtures written by its own code): forward and every gradient to 1e-12. */
    @ParameterizedTest(name = "{0}")
    @CsvSource({"mlb-default,RELU,RELU", "mlb-tanh-normalized,TANH,SIGMOID"})
    void matchesBlockBootstrapsModule(String stem, Activation in, Activation outAct, @TempDir Path dir) throws IOException {
        try (StateDict sd = Fixtures.open(dir, stem)) {
            Mlb op = Mlb.fromStateDict(sd, "", in, outAct, Fixtures.flag(sd, "normalize"));
            int batch = FusionChecks.batch(sd);
            double[] x = sd.doubles("input.0"), y = sd.doubles("input.1"), g = sd.doubles("grad_out");
            MlbReference.Weights w = MlbReference.Weights.of(op);
            java.util.List<double[]> grads = java.util.List.of(MlbReference.backward(w, x, y, g, batch).all());
            FusionChecks.assertReferenceMatchesFixture(sd, stem, MlbReference.forward(w, x, y, batch), grads, op.gradientNames(), 1e-12);
        }
    }

    @Test void refusesAMisshapenStateDictByName() {
        Mlb op = Mlb.random(4, 3, 5, 2, Activation.RELU, 1);
        java.util.Map<String, double[]> v = new java.util.LinkedHashMap<>();
        java.util.Map<String, long[]> s = new java.util.LinkedHashMap<>();
        put(v, s, "linear0", op.u());
        put(v, s, "linear1", Linear.random(6, 3, true, 2)); // mm_dim 6, not linear0's 5
        put(v, s, "linear_out", op.p());
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Mlb.fromStateDict(StateDict.of(v, s), "", Activation.RELU, Activation.RELU, false));
        assertTrue(e.getMessage().contains("'linear1.weight': expected 5 rows (mm_dim, linear0's), got 6"), e.getMessage());
        v.remove("linear_out.weight");
        e = assertThrows(IllegalArgumentException.class, () -> Mlb.fromStateDict(StateDict.of(v, s), "", Activation.RELU, Activation.RELU, false));
        assertTrue(e.getMessage().contains("linear_out.weight"), e.getMessage());
    }

    private static void put(java.util.Map<String, double[]> v, java.util.Map<String, long[]> s, String name, Linear l) {
        v.put(name + ".weight", l.weightAsDouble());
        s.put(name + ".weight", new long[] {l.out(), l.in()});
        v.put(name + ".bias", l.biasAsDouble());
        s.put(name + ".bias", new long[] {l.out()});
    }

    @Test void reluGradientIsZeroWhereTheUnitIsOff() {
        // With σ = relu a unit whose pre-activation is negative passes no gradient to U's row, V's row or b.
        Mlb op = Mlb.of(new Linear(2, 1, new float[] {1, -1}, null), new Linear(2, 1, new float[] {1, 1}, null),
                new Linear(1, 2, new float[] {1, 1}, null), Activation.RELU);
        MlbReference.Grads gr = MlbReference.backward(op, new float[] {2}, new float[] {3}, new float[] {1}, 1);
        // pu = [2, −2] → au = [2, 0]; pv = [3, 3] → av = [3, 3]; gh = [1, 1].
        assertArrayEquals(new double[] {3 * 2, 0}, gr.u(), 0); // dpu = [1·3·1, 1·3·0], x = 2
        assertArrayEquals(new double[] {2 * 3, 0}, gr.v(), 0); // dpv = [1·2·1, 1·0·1], y = 3
    }

    static double[][] finiteDifferences(MlbReference.Weights w, double[] x, double[] y, double[] g, int batch) {
        double[][] tensors = {x, y, w.u(), w.bu(), w.v(), w.bv(), w.p(), w.bp()}; // perturbed in place, restored
        double[][] out = new double[tensors.length][];
        double h = 1e-6;
        for (int t = 0; t < tensors.length; t++) {
            double[] a = tensors[t];
            out[t] = new double[a.length];
            for (int i = 0; i < a.length; i++) {
                double keep = a[i];
                a[i] = keep + h;
                double up = dot(g, MlbReference.forward(w, x, y, batch));
                a[i] = keep - h;
                double down = dot(g, MlbReference.forward(w, x, y, batch));
                a[i] = keep;
                out[t][i] = (up - down) / (2 * h);
            }
        }
        return out;
    }

    static double minAbsPreActivation(MlbReference.Weights w, double[] x, double[] y, int batch) {
        double m = Double.POSITIVE_INFINITY;
        for (int b = 0; b < batch; b++) {
            for (double v : MlbReference.affine(x, b, w.dx(), w.u(), w.bu(), w.joint())) m = Math.min(m, Math.abs(v));
            for (double v : MlbReference.affine(y, b, w.dy(), w.v(), w.bv(), w.joint())) m = Math.min(m, Math.abs(v));
        }
        return m;
    }

    static double relErr(double[] a, double[] ref) {
        double num = 0, den = 0;
        for (int i = 0; i < a.length; i++) { num += (a[i] - ref[i]) * (a[i] - ref[i]); den += ref[i] * ref[i]; }
        return Math.sqrt(num / den);
    }
}
