package io.bifuse;

import io.bifuse.cpu.BanBlockCpu;
import static org.junit.jupiter.api.Assertions.*;

import io.bifuse.reference.BanBlockReference;
import io.bifuse.testing.Conditioning;
import io.bifuse.testing.Stats;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * The CPU backend against the reference, padding and empty samples, and the API's argument checks.
 * The CPU backend computes in float32 (GEMMs over the batch and per sample): the forward is held to 1e-5
 * relative L2, every gradient to 1e-5 raised where a tensor exceeds it to {@link Conditioning}'s
 * {@code max(1e-5, 2·base)}, the float64 reference's own change when every input and parameter moves by
 * float32's GEMM error (the weight-norm gains' gradients {@code ⟨dW, V⟩/‖V‖} cancel; see BanBlockCpuTest,
 * which also checks determinism and larger sizes). A wiring mistake (wrong tensor, wrong order) shows as O(1).
 */
class BanBlockTest {
    static final double TOL = 1e-5;

    @ParameterizedTest(name = "B={0} N={1} M={2} Dx={3} Dy={4} K={5} K'={6} G={7} group={8}")
    @CsvSource({"1,1,1,1,1,1,1,1,1", "3,5,4,6,5,6,5,2,1", "2,7,3,5,4,9,6,3,3", "4,10,14,12,10,15,10,8,1"})
    void cpuMatchesReference(int batch, int n, int m, int dx, int dy, int k, int kp, int gs, int group) {
        SplittableRandom r = new SplittableRandom(batch * 131L + n);
        BanBlock op = BanBlock.random(dx, dy, k, kp, gs, group, r.nextLong());
        float[] x = Stats.gaussian(r, batch * n * dx), y = Stats.gaussian(r, batch * m * dy), go = Stats.gaussian(r, batch * dy);
        int[] counts = new int[batch];
        for (int b = 0; b < batch; b++) counts[b] = 1 + (b * 7 + 3) % n;
        ObjectMask mask = ObjectMask.counts(counts, n);
        BanBlockReference.Result ref = BanBlockReference.forward(op, x, y, mask, batch, n, m);
        BanBlock.Result got = new BanBlockCpu(op).forwardWithAttention(x, y, mask, batch, n, m);
        assertTrue(Stats.relativeL2(got.out(), ref.out()) < TOL, "forward " + Stats.relativeL2(got.out(), ref.out()));
        assertTrue(Stats.relativeL2(got.attention(), ref.attention()) < TOL, "attention");
        assertArrayEquals(got.out(), new BanBlockCpu(op).forward(x, y, mask, batch, n, m));
        List<float[]> gt = new BanBlockCpu(op).backward(x, y, mask, go, batch, n, m).tensors();
        List<double[]> rt = BanBlockReference.backward(op, x, y, mask, go, batch, n, m).tensors();
        // the logits bias gradient is exactly zero on both sides, where relativeL2 is the absolute norm
        int longest = Math.max(Math.max(Math.max(dx, dy), Math.max(k, kp)), Math.max(n * m, batch * Math.max(n, m)));
        Conditioning cond = new Conditioning(Conditioning.step(Precision.FP32, longest), 17,
                (rnd, step) -> BanBlockReference.perturbationBaseline(op, x, y, mask, go, batch, n, m, rt, step, 1, rnd.nextLong()));
        for (int t = 0; t < gt.size(); t++) {
            double e = Stats.relativeL2(gt.get(t), rt.get(t));
            assertTrue(e <= cond.bound(t, TOL, e), op.gradientNames().get(t) + ": relative L2 " + e);
        }
    }

    @Test void attentionMapsAreDistributionsOverTheRealObjects() {
        SplittableRandom r = new SplittableRandom(5);
        int batch = 3, n = 6, m = 4, gs = 3;
        BanBlock op = BanBlock.random(5, 4, 6, 4, gs, 2, 8);
        ObjectMask mask = ObjectMask.counts(new int[] {6, 1, 3}, n);
        float[] att = new BanBlockCpu(op).forwardWithAttention(Stats.gaussian(r, batch * n * 5), Stats.gaussian(r, batch * m * 4), mask, batch, n, m).attention();
        assertEquals(batch * gs * n * m, att.length);
        for (int b = 0; b < batch; b++) {
            for (int g = 0; g < gs; g++) {
                double s = 0;
                for (int i = 0; i < n; i++) {
                    for (int j = 0; j < m; j++) {
                        float a = att[((b * gs + g) * n + i) * m + j];
                        if (mask.isReal(b, i)) assertTrue(a > 0);
                        else assertEquals(0f, a);
                        s += a;
                    }
                }
                assertEquals(1, s, 1e-6);
            }
        }
    }

    @Test void singleObjectSampleAttendsOverTheTokensOfThatObject() {
        // One real object (index 2 of 4, padding around it): its row of each map is a distribution over the
        // M tokens, every other row is zero, and the gradients stay finite.
        SplittableRandom r = new SplittableRandom(6);
        int n = 4, m = 3, dx = 3, gs = 2;
        BanBlock op = BanBlock.random(dx, 2, 4, 3, gs, 1, 9);
        float[] x = new float[n * dx];
        for (int d = 0; d < dx; d++) x[2 * dx + d] = (float) r.nextGaussian();
        float[] y = Stats.gaussian(r, m * 2);
        BanBlock.Result res = new BanBlockCpu(op).forwardWithAttention(x, y, null, 1, n, m);
        for (int g = 0; g < gs; g++) {
            double s = 0;
            for (int i = 0; i < n; i++) {
                for (int j = 0; j < m; j++) {
                    float a = res.attention()[(g * n + i) * m + j];
                    if (i != 2) assertEquals(0f, a);
                    s += a;
                }
            }
            assertEquals(1, s, 1e-6);
        }
        BanBlock.Gradients gr = new BanBlockCpu(op).backward(x, y, null, Stats.gaussian(r, 2), 1, n, m);
        for (float[] t : gr.tensors()) for (float v : t) assertTrue(Float.isFinite(v));
        for (int i = 0; i < n * dx; i++) if (i / dx != 2) assertEquals(0f, gr.dx()[i]);
    }

    @Test void emptySampleGivesZeroAttentionAndNoNaN() {
        // Sample 1 has only zero rows: ban-vqa gives NaN there; bifuse gives zero attention and the residual path.
        SplittableRandom r = new SplittableRandom(7);
        int batch = 2, n = 3, m = 2, dx = 4, dy = 3, gs = 2;
        BanBlock op = BanBlock.random(dx, dy, 5, 4, gs, 1, 10);
        float[] x = Stats.gaussian(r, batch * n * dx);
        java.util.Arrays.fill(x, n * dx, 2 * n * dx, 0f);
        float[] y = Stats.gaussian(r, batch * m * dy);
        assertEquals(1, ObjectMask.zeroRows(x, batch, n, dx).emptySamples());
        BanBlock.Result res = new BanBlockCpu(op).forwardWithAttention(x, y, null, batch, n, m);
        for (float v : res.out()) assertFalse(Float.isNaN(v));
        for (int i = gs * n * m; i < 2 * gs * n * m; i++) assertEquals(0f, res.attention()[i]);
        for (int d = 0; d < dy; d++) {
            double o = 0;
            for (int j = 0; j < m; j++) o += y[(m + j) * dy + d];
            for (int g = 0; g < gs; g++) o += m * (double) op.weights().residuals().get(g).bias()[d];
            assertEquals(o, res.out()[dy + d], 1e-5);
        }
        BanBlock.Gradients gr = new BanBlockCpu(op).backward(x, y, null, Stats.gaussian(r, batch * dy), batch, n, m);
        for (float[] t : gr.tensors()) for (float v : t) assertFalse(Float.isNaN(v));
        for (int i = n * dx; i < 2 * n * dx; i++) assertEquals(0f, gr.dx()[i]);
    }

    @Test void nullMaskIsTheZeroRowRule() {
        // Zero rows anywhere (here a hole in the middle of sample 0 and a padded tail in sample 2) give the
        // same results as the explicit mask that marks them padding.
        SplittableRandom r = new SplittableRandom(8);
        int batch = 3, n = 5, m = 3, dx = 4, dy = 3;
        BanBlock op = BanBlock.random(dx, dy, 6, 4, 2, 2, 11);
        float[] x = Stats.gaussian(r, batch * n * dx), y = Stats.gaussian(r, batch * m * dy), go = Stats.gaussian(r, batch * dy);
        boolean[] real = new boolean[batch * n];
        java.util.Arrays.fill(real, true);
        for (int row : new int[] {2, 2 * n + 3, 2 * n + 4}) {
            real[row] = false;
            java.util.Arrays.fill(x, row * dx, (row + 1) * dx, 0f);
        }
        ObjectMask explicit = ObjectMask.of(real, batch, n);
        BanBlock.Result a = new BanBlockCpu(op).forwardWithAttention(x, y, null, batch, n, m), b = new BanBlockCpu(op).forwardWithAttention(x, y, explicit, batch, n, m);
        assertArrayEquals(b.out(), a.out());
        assertArrayEquals(b.attention(), a.attention());
        List<float[]> ga = new BanBlockCpu(op).backward(x, y, null, go, batch, n, m).tensors(), gb = new BanBlockCpu(op).backward(x, y, explicit, go, batch, n, m).tensors();
        for (int i = 0; i < ga.size(); i++) assertArrayEquals(gb.get(i), ga.get(i), op.gradientNames().get(i));
        // and the rule differs from "no padding": the zero rows would otherwise get attention
        assertFalse(java.util.Arrays.equals(a.attention(), new BanBlockCpu(op).forwardWithAttention(x, y, ObjectMask.all(batch, n), batch, n, m).attention()));
    }

    @Test void gradientsHaveTheLayersShapesAndNames() {
        SplittableRandom r = new SplittableRandom(9);
        int batch = 2, n = 3, m = 4, dx = 5, dy = 3, k = 6, kp = 4, gs = 2, group = 2;
        BanBlock op = BanBlock.random(dx, dy, k, kp, gs, group, 12);
        BanBlock.Gradients gr = new BanBlockCpu(op).backward(Stats.gaussian(r, batch * n * dx), Stats.gaussian(r, batch * m * dy), null,
                Stats.gaussian(r, batch * dy), batch, n, m);
        assertEquals(batch * n * dx, gr.dx().length);
        assertEquals(batch * m * dy, gr.dy().length);
        assertEquals(k * dx, gr.objects().weightV().length);
        assertEquals(k * dy, gr.tokens().weightV().length);
        assertEquals(gs * k, gr.logits().weightV().length);
        assertArrayEquals(new float[gs], gr.logits().bias());
        assertEquals(kp * dx, gr.glimpseObjects().get(1).weightV().length);
        assertEquals(kp * dy, gr.glimpseTokens().get(1).weightV().length);
        assertEquals(dy * kp / group, gr.residuals().get(1).weightV().length);
        assertEquals(dy, gr.residuals().get(0).bias().length);
        assertEquals(List.of("dx", "dy", "objects.weight_v", "objects.weight_g", "objects.bias", "tokens.weight_v", "tokens.weight_g",
                "tokens.bias", "logits.weight_v", "logits.weight_g", "logits.bias", "glimpseObjects[0].weight_v", "glimpseObjects[0].weight_g",
                "glimpseObjects[0].bias", "glimpseObjects[1].weight_v", "glimpseObjects[1].weight_g", "glimpseObjects[1].bias",
                "glimpseTokens[0].weight_v", "glimpseTokens[0].weight_g", "glimpseTokens[0].bias", "glimpseTokens[1].weight_v",
                "glimpseTokens[1].weight_g", "glimpseTokens[1].bias", "residuals[0].weight_v", "residuals[0].weight_g", "residuals[0].bias",
                "residuals[1].weight_v", "residuals[1].weight_g", "residuals[1].bias"), op.gradientNames());
        assertEquals(op.gradientNames().size(), gr.tensors().size());
        for (float[] t : gr.tensors()) assertNotNull(t);
    }

    @Test void layersWithoutBiasGetNoBiasGradient() {
        SplittableRandom r = new SplittableRandom(10);
        WeightNormLinear obj = WeightNormLinear.random(4, 3, false, 1), tok = WeightNormLinear.random(4, 2, false, 2);
        WeightNormLinear log = WeightNormLinear.random(1, 4, false, 3);
        BanBlock op = BanBlock.of(new BanBlock.Weights(obj, tok, log, List.of(WeightNormLinear.random(3, 3, false, 4)),
                List.of(WeightNormLinear.random(3, 2, false, 5)), List.of(WeightNormLinear.random(2, 3, false, 6))), 1);
        BanBlock.Gradients gr = new BanBlockCpu(op).backward(Stats.gaussian(r, 2 * 3), Stats.gaussian(r, 3 * 2), null, Stats.gaussian(r, 2), 1, 2, 3);
        assertNull(gr.objects().bias());
        assertNull(gr.residuals().get(0).bias());
        assertEquals(2 + 6 * 2, gr.tensors().size());
        assertEquals(op.gradientNames().size(), gr.tensors().size());
        assertEquals(4 * 3 + 4 * 2 + 4 + 9 + 6 + 6 + 6L, op.parameterCount());
    }

    @Test void parameterCountIsEveryStateDictFloat() {
        // ban-vqa's block: v_net/q_net (K = 3840) with h_mat/h_bias, G = 8 b_nets (K' = 1280) and q_prjs.
        BanBlock op = BanBlock.random(6, 5, 6, 5, 2, 1, 1);
        long dx = 6, dy = 5, k = 6, kp = 5, g = 2;
        long expect = (k * dx + 1 + k) + (k * dy + 1 + k) + (g * k + 1 + g) + g * (kp * dx + 1 + kp) + g * (kp * dy + 1 + kp) + g * (dy * kp + 1 + dy);
        assertEquals(expect, op.parameterCount());
    }

    @Test void weightsAreValidatedByName() {
        int dx = 4, dy = 3, k = 6, g = 2, kp = 4;
        WeightNormLinear obj = WeightNormLinear.random(k, dx, true, 1), tok = WeightNormLinear.random(k, dy, true, 2);
        WeightNormLinear log = WeightNormLinear.random(g, k, true, 3);
        List<WeightNormLinear> go = List.of(WeightNormLinear.random(kp, dx, true, 4), WeightNormLinear.random(kp, dx, true, 5));
        List<WeightNormLinear> gt = List.of(WeightNormLinear.random(kp, dy, true, 6), WeightNormLinear.random(kp, dy, true, 7));
        List<WeightNormLinear> res = List.of(WeightNormLinear.random(dy, kp, true, 8), WeightNormLinear.random(dy, kp, true, 9));
        assertNotNull(BanBlock.of(new BanBlock.Weights(obj, tok, log, go, gt, res), 1));
        expect("objects: expected a WeightNormLinear layer, got null", () -> new BanBlock.Weights(null, tok, log, go, gt, res));
        expect("tokens: expected a layer 3 → 6 (K = objects.out()), got 3 → 5",
                () -> new BanBlock.Weights(obj, WeightNormLinear.random(5, dy, true, 2), log, go, gt, res));
        expect("logits: expected a layer 6 → 2 (K = objects.out() inputs), got 5 → 2",
                () -> new BanBlock.Weights(obj, tok, WeightNormLinear.random(g, 5, true, 3), go, gt, res));
        expect("logits: expected at most 32 glimpses (outputs), got 33",
                () -> new BanBlock.Weights(obj, tok, WeightNormLinear.random(33, k, true, 3), go, gt, res));
        expect("glimpseObjects: expected 2 layers (one per glimpse, G = logits.out()), got 1",
                () -> new BanBlock.Weights(obj, tok, log, go.subList(0, 1), gt, res));
        expect("glimpseTokens: expected a list of G = 2 WeightNormLinear layers, got null", () -> new BanBlock.Weights(obj, tok, log, go, null, res));
        expect("residuals: expected 2 layers", () -> new BanBlock.Weights(obj, tok, log, go, gt, res.subList(0, 1)));
        List<WeightNormLinear> withNull = new ArrayList<>(gt);
        withNull.set(1, null);
        expect("glimpseTokens[1]: expected a WeightNormLinear layer, got null", () -> new BanBlock.Weights(obj, tok, log, go, withNull, res));
        expect("glimpseObjects[1]: expected a layer 4 → 4 (weight_v 4 × 4), got 3 → 4",
                () -> new BanBlock.Weights(obj, tok, log, List.of(go.get(0), WeightNormLinear.random(kp, 3, true, 5)), gt, res));
        expect("glimpseObjects[1]: expected a layer 4 → 4 (weight_v 4 × 4), got 4 → 5",
                () -> new BanBlock.Weights(obj, tok, log, List.of(go.get(0), WeightNormLinear.random(5, dx, true, 5)), gt, res));
        expect("glimpseTokens[0]: expected a layer 3 → 4 (weight_v 4 × 3), got 3 → 5",
                () -> new BanBlock.Weights(obj, tok, log, go, List.of(WeightNormLinear.random(5, dy, true, 6), gt.get(1)), res));
        expect("residuals[1]: expected a layer 4 → 3 (weight_v 3 × 4), got 4 → 2",
                () -> new BanBlock.Weights(obj, tok, log, go, gt, List.of(res.get(0), WeightNormLinear.random(2, kp, true, 9))));
        expect("residuals[1]: expected a layer 4 → 3 (weight_v 3 × 4), got 2 → 3",
                () -> new BanBlock.Weights(obj, tok, log, go, gt, List.of(res.get(0), WeightNormLinear.random(dy, 2, true, 9))));
        BanBlock.Weights w = new BanBlock.Weights(obj, tok, log, go, gt, res);
        expect("group: expected >= 1, got 0", () -> BanBlock.of(w, 0));
        expect("group: expected a divisor of glimpseWidth K' = 4, got 3", () -> BanBlock.of(w, 3));
        expect("residuals: expected layers 2 → 3 (K'/group = 4/2 inputs), got 4 → 3", () -> BanBlock.of(w, 2));
        expect("weights: expected BanBlock.Weights, got null", () -> BanBlock.of(null, 1));
        expect("glimpses: expected at most 32, got 33", () -> BanBlock.random(dx, dy, k, kp, 33, 1, 1));
        expect("glimpses: expected >= 1, got 0", () -> BanBlock.random(dx, dy, k, kp, 0, 1, 1));
        expect("glimpseWidth: expected >= 1, got 0", () -> BanBlock.random(dx, dy, k, 0, 2, 1, 1));
        expect("width: expected >= 1, got -1", () -> BanBlock.random(dx, dy, -1, kp, 2, 1, 1));
        expect("dx: expected >= 1, got 0", () -> BanBlock.random(0, dy, k, kp, 2, 1, 1));
        expect("dy: expected >= 1, got 0", () -> BanBlock.random(dx, 0, k, kp, 2, 1, 1));
        expect("group: expected a divisor of glimpseWidth K' = 4, got 3", () -> BanBlock.random(dx, dy, k, kp, 2, 3, 1));
    }

    @Test void inputsAreValidatedByNameBeforeAnyWork() {
        BanBlock op = BanBlock.random(3, 2, 4, 3, 2, 1, 1);
        float[] x = new float[2 * 5 * 3], y = new float[2 * 4 * 2], g = new float[2 * 2];
        expect("batch: expected >= 1, got 0", () -> new BanBlockCpu(op).forward(x, y, null, 0, 5, 4));
        expect("objects: expected >= 1, got 0", () -> new BanBlockCpu(op).forward(x, y, null, 2, 0, 4));
        expect("tokens: expected >= 1, got -1", () -> new BanBlockCpu(op).backward(x, y, null, g, 2, 5, -1));
        expect("x: expected 2 × 5 × 3 = 30 floats, got 29", () -> new BanBlockCpu(op).forward(new float[29], y, null, 2, 5, 4));
        expect("x: expected 2 × 5 × 3 floats, got null", () -> new BanBlockCpu(op).forwardWithAttention(null, y, null, 2, 5, 4));
        expect("y: expected 2 × 4 × 2 = 16 floats, got 14", () -> new BanBlockCpu(op).forward(x, new float[14], null, 2, 5, 4));
        expect("y: expected 2 × 3 × 2 = 12 floats, got 16", () -> new BanBlockCpu(op).forward(x, y, null, 2, 5, 3));
        expect("mask: expected a mask for 2 samples × 5 objects, got 2 × 4", () -> new BanBlockCpu(op).forward(x, y, ObjectMask.all(2, 4), 2, 5, 4));
        expect("mask: expected a mask for 2 samples × 5 objects, got 3 × 5", () -> new BanBlockCpu(op).backward(x, y, ObjectMask.all(3, 5), g, 2, 5, 4));
        expect("gradOut: expected 2 × 2 = 4 floats, got 3", () -> new BanBlockCpu(op).backward(x, y, null, new float[3], 2, 5, 4));
        expect("gradOut: expected 2 × 2 floats, got null", () -> new BanBlockCpu(op).backward(x, y, null, null, 2, 5, 4));
        expect("batch, objects, tokens: expected every tensor", () -> new BanBlockCpu(op).forward(x, y, null, 65536, 65536, 4));
        expect("x: expected", () -> BanBlockReference.forward(op, new float[1], y, null, 2, 5, 4));
    }

    @Test void randomIsReproducibleAndSeedsEachLayer() {
        BanBlock a = BanBlock.random(3, 2, 6, 4, 2, 2, 42), b = BanBlock.random(3, 2, 6, 4, 2, 2, 42);
        assertEquals(a.weights(), b.weights());
        assertEquals(WeightNormLinear.random(6, 3, true, 42), a.weights().objects());
        assertEquals(WeightNormLinear.random(2, 6, true, 44), a.weights().logits());
        assertEquals(WeightNormLinear.random(4, 2, true, 42 + 3 + 2 + 1), a.weights().glimpseTokens().get(1));
        assertEquals(WeightNormLinear.random(2, 2, true, 42 + 3 + 4 + 1), a.weights().residuals().get(1));
        assertEquals("BanBlock[Dx=3, Dy=2, K=6, G=2, K'=4, group=2]", a.toString());
        assertEquals(2, a.pooledWidth());
        assertEquals(4, a.glimpseWidth());
        assertEquals(6, a.width());
    }

    private static void expect(String message, Runnable call) {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, call::run);
        assertTrue(e.getMessage().startsWith(message), "'" + e.getMessage() + "' does not start with '" + message + "'");
    }
}
