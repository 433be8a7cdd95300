package io.bifuse.cuda;

import static io.bifuse.cuda.DeviceOpContractTest.B;
import static io.bifuse.cuda.DeviceOpContractTest.F;
import static io.bifuse.cuda.DeviceOpContractTest.gaussian;
import static io.bifuse.cuda.DeviceOpContractTest.tensors;
import static org.junit.jupiter.api.Assertions.*;

import io.bifuse.LayerNorm;
import io.bifuse.Linear;
import io.bifuse.MultiHeadAttention;
import io.bifuse.ObjectMask;
import io.bifuse.Precision;
import io.bifuse.SelfAttentionUnit;
import io.bifuse.cpu.SelfAttentionUnitCpu;
import io.bifuse.cuda.DeviceOpContractTest.Args;
import io.bifuse.cuda.DeviceOpContractTest.DeviceForm;
import io.bifuse.cuda.DeviceOpContractTest.Subject;
import io.bifuse.reference.SelfAttentionUnitReference;
import io.bifuse.testing.Conditioning;
import io.bifuse.testing.DeviceRuns;
import io.bifuse.testing.Stats;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * {@code cuda/SelfAttentionUnit.cu} + {@link MultiHeadAttentionCuda} + cuBLAS against the float64 reference at
 * MCAN's sizes (hidden 512, 8 heads, F = 2048; 14 question tokens and 100 image objects, B = 64) and at odd ones,
 * both LayerNorm variants, padded tokens and a sample without any, on fresh random inputs (the seed is in the
 * failure message), the output and every gradient buffer NaN-poisoned first.
 *
 * <p>Tolerance, relative L2 of the output and each gradient: 1e-5 in FP32, {@link Precision#bound()} in TF32 / BF16.
 * Everything is float32 GEMMs over at most 2048 terms and row reductions in double; the normalization divides by
 * a row's std (O(1) here after the residual), which does not amplify. But the feed-forward ReLU flips where an
 * operand's error moves a pre-activation across 0, and a flipped unit is wrong by its full size: in FP32 a rare
 * single flip among the B·L·F = 6·10⁵ units of the spec's image case (seen: dx 3.0e-4 at seed 52477470311669),
 * in TF32 / BF16 many. Where a tensor exceeds its fixed bound the bound becomes {@link Conditioning}'s
 * {@code max(bound, 2·base)} ({@link #assertConditioned}). At widths under 32 a reduced-precision sum is a few
 * rounded products with nothing to average and the chain of six GEMMs exceeds even that by chance (seen: BF16
 * {@code ffnHidden.weight} 3.1e-2 against 1.6e-2 at H = 24), so those sizes run in FP32 only, as {@code check}
 * does. Skipped without a GPU. On the simulated device ({@link SimSizes}) B = 64 runs at B = 3.
 */
@Tag("gpu")
class SelfAttentionUnitCudaTest extends CublasOpTest {
    static final double TOL = 1e-5;

    @ParameterizedTest(name = "B={0} L={1} H={2} heads={3} F={4} {5} padded={6}")
    @CsvSource({"64,14,512,8,2048,MCAN,true", "64,100,512,8,2048,MCAN,true", "3,100,512,8,2048,PYTORCH,false", "1,1,2,1,1,MCAN,false",
                "2,33,24,3,40,MCAN,true", "3,7,160,2,70,PYTORCH,true", "2,129,64,1,130,MCAN,false"})
    void matchesReference(int specBatch, int tokens, int hidden, int heads, int ffn, LayerNorm.Variant v, boolean padded) {
        int batch = SimSizes.batch(specBatch);
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        LayerNorm ln = v == LayerNorm.Variant.MCAN ? LayerNorm.mcan() : LayerNorm.pytorch();
        SelfAttentionUnit op = SelfAttentionUnit.random(hidden, heads, ffn, ln, r.nextLong());
        float[] x = Stats.gaussian(r, batch * tokens * hidden), g = Stats.gaussian(r, batch * tokens * hidden);
        ObjectMask mask = padded ? mask(batch, tokens) : null;
        double[] fRef = SelfAttentionUnitReference.forward(op, x, mask, batch, tokens);
        List<double[]> gRef = SelfAttentionUnitReference.backward(op, x, mask, g, batch, tokens);
        for (Precision p : Precision.values()) {
            if (p != Precision.FP32 && Math.min(hidden, ffn) < 32) continue; // see the class comment
            try (SelfAttentionUnitCuda cuda = new SelfAttentionUnitCuda(op, ctx, p)) {
                DeviceRuns.SelfAttentionUnitRun run = DeviceRuns.selfAttentionUnit(ctx, cuda, x, mask, g, batch, tokens);
                List<String> names = new ArrayList<>(List.of("out"));
                names.addAll(op.gradientNames());
                List<float[]> got = new ArrayList<>(List.of(run.out()));
                got.addAll(run.grads().tensors());
                List<double[]> ref = new ArrayList<>(List.of(fRef));
                ref.addAll(gRef);
                assertConditioned(p, p == Precision.FP32 ? TOL : p.bound(), Math.max(ffn, Math.max(hidden, tokens)), seed, names, got, ref,
                        (rr, step) -> perturbed(rr, step, op, x, mask, g, batch, tokens), p + " " + op + " B=" + batch + " L=" + tokens + " seed " + seed);
            }
        }
    }

    @Test void layersWithoutBias() {
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        int batch = 2, tokens = 9, h = 16, f = 24;
        MultiHeadAttention.Weights a = new MultiHeadAttention.Weights(Linear.random(h, h, false, 1), Linear.random(h, h, true, 2),
                Linear.random(h, h, false, 3), Linear.random(h, h, true, 4));
        SelfAttentionUnit base = SelfAttentionUnit.random(h, 4, f, LayerNorm.mcan(), 5);
        SelfAttentionUnit op = SelfAttentionUnit.of(new SelfAttentionUnit.Weights(a, Linear.random(f, h, false, 6), Linear.random(h, f, false, 7),
                base.weights().norm1(), base.weights().norm2()), 4, LayerNorm.mcan());
        float[] x = Stats.gaussian(r, batch * tokens * h), g = Stats.gaussian(r, batch * tokens * h);
        try (SelfAttentionUnitCuda cuda = new SelfAttentionUnitCuda(op, ctx)) {
            DeviceRuns.SelfAttentionUnitRun run = DeviceRuns.selfAttentionUnit(ctx, cuda, x, null, g, batch, tokens);
            assertNull(run.grads().ffnHidden().bias());
            assertMatches(op, run, SelfAttentionUnitReference.forward(op, x, null, batch, tokens),
                    SelfAttentionUnitReference.backward(op, x, null, g, batch, tokens), TOL, "no bias, seed " + seed);
        }
    }

    /**
     * Each of {@code got} (the output, then every gradient, named {@code names}) within {@code tol} of {@code ref},
     * or, where it exceeds that, within {@link Conditioning}'s {@code max(tol, 2·base)}: {@code perturbed} runs the
     * float64 reference with every input, gradOut and parameter moved by {@code 1 ± step} and returns its results in
     * the same order. {@code longestSum}: the longest float32 sum of the op's GEMMs (FP32's step).
     */
    static void assertConditioned(Precision p, double tol, int longestSum, long seed, List<String> names, List<float[]> got, List<double[]> ref,
                                  java.util.function.BiFunction<SplittableRandom, Double, List<double[]>> perturbed, String what) {
        Conditioning cond = new Conditioning(Conditioning.step(p, longestSum), seed, (r, step) -> {
            List<double[]> m = perturbed.apply(r, step);
            double[] e = new double[m.size()];
            for (int i = 0; i < e.length; i++) e[i] = Stats.relativeL2(m.get(i), ref.get(i));
            return e;
        });
        assertEquals(names.size(), got.size(), what + ": tensor count");
        for (int i = 0; i < names.size(); i++) {
            double e = Stats.relativeL2(got.get(i), ref.get(i)), bound = cond.bound(i, tol, e);
            assertTrue(e <= bound, what + ": " + names.get(i) + " relative L2 " + e + " > " + bound + " (" + cond.draws() + " conditioning draws)");
        }
    }

    /** {@code a}'s entries times {@code 1 ± step}, random signs. */
    static double[] moved(SplittableRandom r, double[] a, double step) {
        double[] d = new double[a.length];
        for (int i = 0; i < a.length; i++) d[i] = a[i] * (r.nextBoolean() ? 1 + step : 1 - step);
        return d;
    }

    static double[] moved(SplittableRandom r, float[] a, double step) {
        double[] d = new double[a.length];
        for (int i = 0; i < a.length; i++) d[i] = a[i] * (r.nextBoolean() ? 1 + step : 1 - step);
        return d;
    }

    /** The reference's output and gradients with every operand moved by {@code 1 ± step}. */
    static List<double[]> perturbed(SplittableRandom r, double step, SelfAttentionUnit op, float[] x, ObjectMask mask, float[] g, int batch, int tokens) {
        SelfAttentionUnitReference.Params pp = SelfAttentionUnitReference.params(op);
        for (double[] t : pp.tensors()) System.arraycopy(moved(r, t, step), 0, t, 0, t.length);
        double[] xs = moved(r, x, step), gs = moved(r, g, step);
        boolean[] real = io.bifuse.reference.MultiHeadAttentionReference.real(mask, batch, tokens);
        List<double[]> out = new ArrayList<>(List.of(SelfAttentionUnitReference.forward(pp, xs, real, batch, tokens)));
        out.addAll(SelfAttentionUnitReference.backward(pp, xs, real, gs, batch, tokens));
        return out;
    }

    static void assertMatches(SelfAttentionUnit op, DeviceRuns.SelfAttentionUnitRun run, double[] fRef, List<double[]> gRef, double tol, String what) {
        double e = Stats.relativeL2(run.out(), fRef);
        assertTrue(e <= tol, what + ": out relative L2 " + e + " > " + tol);
        List<String> names = op.gradientNames();
        List<float[]> got = run.grads().tensors();
        assertEquals(names.size(), got.size(), what + ": tensor count");
        for (int i = 0; i < names.size(); i++) {
            double ei = Stats.relativeL2(got.get(i), gRef.get(i));
            assertTrue(ei <= tol, what + ": " + names.get(i) + " relative L2 " + ei + " > " + tol);
        }
    }

    /** Sample b keeps L − b real tokens (at least one), and sample 2 (if any) none. */
    static ObjectMask mask(int batch, int tokens) {
        int[] c = new int[batch];
        for (int b = 0; b < batch; b++) c[b] = b == 2 ? 0 : Math.max(1, tokens - b);
        return ObjectMask.counts(c, tokens);
    }

    static Subject contractSubject(SplittableRandom r) {
        SelfAttentionUnit op = SelfAttentionUnit.random(8, 2, 12, LayerNorm.mcan(), r.nextLong());
        int b = 3, l = 5, h = 8;
        ObjectMask mask = ObjectMask.counts(new int[] {5, 2, 0}, l);
        float[] x = gaussian(r, b * l * h), g = gaussian(r, b * l * h);
        SelfAttentionUnit.Weights w = op.weights();
        MultiHeadAttention.Weights a = w.attention();
        DeviceForm dev = new DeviceForm()
                .call(F, (o, ar) -> ((SelfAttentionUnitCuda) o).forward(ar.m("x"), ar.mask(), ar.m("out"), ar.n("batch"), ar.n("tokens"), ar.stream()))
                .call(B, (o, ar) -> ((SelfAttentionUnitCuda) o).backward(ar.m("x"), ar.mask(), ar.m("gradOut"), grads(ar), ar.n("batch"), ar.n("tokens"),
                        ar.stream()))
                .size("batch", b).size("tokens", l).mask(mask)
                .in("x", x, F, B).in("gradOut", g, B).out("out", b * l * h, F).out("grads.dx", b * l * h, B)
                .linear("grads.query", a.query(), B).linear("grads.key", a.key(), B).linear("grads.value", a.value(), B).linear("grads.merge", a.merge(), B)
                .linear("grads.ffnHidden", w.ffnHidden(), B).linear("grads.ffnOut", w.ffnOut(), B)
                .out("grads.norm1.weight", h, B).out("grads.norm1.bias", h, B).out("grads.norm2.weight", h, B).out("grads.norm2.bias", h, B)
                .extra("grads", B, (o, ar) -> ((SelfAttentionUnitCuda) o).backward(ar.m("x"), ar.mask(), ar.m("gradOut"), null, ar.n("batch"),
                        ar.n("tokens"), ar.stream()))
                .extra("grads.norm2", B, (o, ar) -> {
                    SelfAttentionUnitCuda.GradientBuffers gr = grads(ar);
                    ((SelfAttentionUnitCuda) o).backward(ar.m("x"), ar.mask(), ar.m("gradOut"), new SelfAttentionUnitCuda.GradientBuffers(gr.dx(), gr.query(),
                            gr.key(), gr.value(), gr.merge(), gr.ffnHidden(), gr.ffnOut(), gr.norm1(), null), ar.n("batch"), ar.n("tokens"), ar.stream());
                });
        return new Subject("SelfAttentionUnit", false, true, (c, p) -> new SelfAttentionUnitCuda(op, c, p), new SelfAttentionUnitCpu(op), be -> {
            SelfAttentionUnit.Backend m = (SelfAttentionUnit.Backend) be;
            List<float[]> t = tensors(m.forward(x, mask, b, l));
            t.addAll(m.backward(x, mask, g, b, l).tensors());
            return t;
        }, dev);
    }

    private static MlbAttentionCuda.LayerBuffers layer(Args a, String key) {
        return new MlbAttentionCuda.LayerBuffers(a.m(key + ".weight"), a.m(key + ".bias"));
    }

    private static SelfAttentionUnitCuda.GradientBuffers grads(Args a) {
        return new SelfAttentionUnitCuda.GradientBuffers(a.m("grads.dx"), layer(a, "grads.query"), layer(a, "grads.key"), layer(a, "grads.value"),
                layer(a, "grads.merge"), layer(a, "grads.ffnHidden"), layer(a, "grads.ffnOut"), layer(a, "grads.norm1"), layer(a, "grads.norm2"));
    }
}
