package io.bifuse.cuda;

import static io.bifuse.cuda.DeviceOpContractTest.B;
import static io.bifuse.cuda.DeviceOpContractTest.F;
import static io.bifuse.cuda.DeviceOpContractTest.gaussian;
import static io.bifuse.cuda.DeviceOpContractTest.tensors;
import static org.junit.jupiter.api.Assertions.*;

import io.bifuse.GuidedAttentionUnit;
import io.bifuse.LayerNorm;
import io.bifuse.MultiHeadAttention;
import io.bifuse.ObjectMask;
import io.bifuse.Precision;
import io.bifuse.cpu.GuidedAttentionUnitCpu;
import io.bifuse.cuda.DeviceOpContractTest.Args;
import io.bifuse.cuda.DeviceOpContractTest.DeviceForm;
import io.bifuse.cuda.DeviceOpContractTest.Subject;
import io.bifuse.reference.GuidedAttentionUnitReference;
import io.bifuse.testing.DeviceRuns;
import io.bifuse.testing.Stats;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * The GA unit on the device against the float64 reference: MCAN's sizes (100 image objects guided by 14 question
 * tokens, hidden 512, 8 heads, F = 2048, B = 64 → 3 on the simulated device) and odd ones, both LayerNorm
 * variants, padded objects and tokens (a sample with no real token included), outputs and gradients NaN-poisoned.
 * Tolerance as {@link SelfAttentionUnitCudaTest}'s: 1e-5 in FP32 and {@link Precision#bound()} in TF32 / BF16,
 * raised to {@code max(bound, 2·base)} of {@link io.bifuse.testing.Conditioning} where the feed-forward ReLU flips
 * (the GA reference perturbed), reduced precisions at widths of at least 32 only (see there). Skipped without a GPU.
 */
@Tag("gpu")
class GuidedAttentionUnitCudaTest extends CublasOpTest {
    static final double TOL = 1e-5;

    @ParameterizedTest(name = "B={0} Lx={1} Ly={2} H={3} heads={4} F={5} {6} padded={7}")
    @CsvSource({"64,100,14,512,8,2048,MCAN,true", "3,14,100,512,8,2048,PYTORCH,true", "1,1,1,2,1,1,MCAN,false", "3,33,7,24,3,40,MCAN,true",
                "2,9,40,64,1,96,PYTORCH,false"})
    void matchesReference(int specBatch, int lx, int ly, int hidden, int heads, int ffn, LayerNorm.Variant v, boolean padded) {
        int batch = SimSizes.batch(specBatch);
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        GuidedAttentionUnit op = GuidedAttentionUnit.random(hidden, heads, ffn, v == LayerNorm.Variant.MCAN ? LayerNorm.mcan() : LayerNorm.pytorch(),
                r.nextLong());
        float[] x = Stats.gaussian(r, batch * lx * hidden), y = Stats.gaussian(r, batch * ly * hidden), g = Stats.gaussian(r, batch * lx * hidden);
        ObjectMask xm = padded ? SelfAttentionUnitCudaTest.mask(batch, lx) : null, ym = padded ? ObjectMask.counts(counts(batch, ly), ly) : null;
        double[] fRef = GuidedAttentionUnitReference.forward(op, x, xm, y, ym, batch, lx, ly);
        List<double[]> gRef = GuidedAttentionUnitReference.backward(op, x, xm, y, ym, g, batch, lx, ly);
        for (Precision p : Precision.values()) {
            if (p != Precision.FP32 && Math.min(hidden, ffn) < 32) continue;
            try (GuidedAttentionUnitCuda cuda = new GuidedAttentionUnitCuda(op, ctx, p)) {
                DeviceRuns.GuidedAttentionUnitRun run = DeviceRuns.guidedAttentionUnit(ctx, cuda, x, xm, y, ym, g, batch, lx, ly);
                String what = p + " " + op + " B=" + batch + " Lx=" + lx + " Ly=" + ly + " seed " + seed;
                List<String> names = new ArrayList<>(List.of("out"));
                names.addAll(op.gradientNames());
                List<float[]> got = new ArrayList<>(List.of(run.out()));
                got.addAll(run.grads().tensors());
                List<double[]> ref = new ArrayList<>(List.of(fRef));
                ref.addAll(gRef);
                SelfAttentionUnitCudaTest.assertConditioned(p, p == Precision.FP32 ? TOL : p.bound(), Math.max(ffn, Math.max(hidden, Math.max(lx, ly))), seed,
                        names, got, ref, (rr, step) -> perturbed(rr, step, op, x, xm, y, ym, g, batch, lx, ly), what);
            }
        }
    }

    /** Sample 1 without any real token (mcan-vqa's uniform attention), the others with all but b of them. */
    static int[] counts(int batch, int tokens) {
        int[] c = new int[batch];
        for (int b = 0; b < batch; b++) c[b] = b == 1 ? 0 : Math.max(1, tokens - b);
        return c;
    }

    /** The GA reference's output and gradients with every operand moved by {@code 1 ± step}. */
    static List<double[]> perturbed(SplittableRandom r, double step, GuidedAttentionUnit op, float[] x, ObjectMask xm, float[] y, ObjectMask ym, float[] g,
                                    int batch, int lx, int ly) {
        GuidedAttentionUnitReference.Params pp = GuidedAttentionUnitReference.params(op);
        for (double[] t : pp.tensors()) System.arraycopy(SelfAttentionUnitCudaTest.moved(r, t, step), 0, t, 0, t.length);
        double[] xs = SelfAttentionUnitCudaTest.moved(r, x, step), ys = SelfAttentionUnitCudaTest.moved(r, y, step), gs = SelfAttentionUnitCudaTest.moved(r, g, step);
        boolean[] xr = io.bifuse.reference.MultiHeadAttentionReference.real(xm, batch, lx), yr = io.bifuse.reference.MultiHeadAttentionReference.real(ym, batch, ly);
        List<double[]> out = new ArrayList<>(List.of(GuidedAttentionUnitReference.forward(pp, xs, xr, ys, yr, batch, lx, ly)));
        out.addAll(GuidedAttentionUnitReference.backward(pp, xs, xr, ys, yr, gs, batch, lx, ly));
        return out;
    }

    static Subject contractSubject(SplittableRandom r) {
        GuidedAttentionUnit op = GuidedAttentionUnit.random(8, 2, 12, LayerNorm.mcan(), r.nextLong());
        int b = 3, lx = 5, ly = 4, h = 8;
        // the contract takes one mask, x's; y unmasked here (its masks are matchesReference's)
        ObjectMask xm = ObjectMask.counts(new int[] {5, 3, 1}, lx), ym = null;
        float[] x = gaussian(r, b * lx * h), y = gaussian(r, b * ly * h), g = gaussian(r, b * lx * h);
        GuidedAttentionUnit.Weights w = op.weights();
        DeviceForm dev = new DeviceForm()
                .call(F, (o, a) -> ((GuidedAttentionUnitCuda) o).forward(a.m("x"), a.mask(), a.m("y"), null, a.m("out"), a.n("batch"),
                        a.n("xTokens"), a.n("yTokens"), a.stream()))
                .call(B, (o, a) -> ((GuidedAttentionUnitCuda) o).backward(a.m("x"), a.mask(), a.m("y"), null, a.m("gradOut"), grads(a),
                        a.n("batch"), a.n("xTokens"), a.n("yTokens"), a.stream()))
                .size("batch", b).size("xTokens", lx).size("yTokens", ly).mask(xm, "xMask")
                .in("x", x, F, B).in("y", y, F, B).in("gradOut", g, B).out("out", b * lx * h, F).out("grads.dx", b * lx * h, B).out("grads.dy", b * ly * h, B);
        for (String a : List.of("selfAttention", "guidedAttention")) {
            MultiHeadAttention.Weights aw = a.equals("selfAttention") ? w.selfAttention() : w.guidedAttention();
            dev.linear("grads." + a + ".query", aw.query(), B).linear("grads." + a + ".key", aw.key(), B).linear("grads." + a + ".value", aw.value(), B)
                    .linear("grads." + a + ".merge", aw.merge(), B);
        }
        dev.linear("grads.ffnHidden", w.ffnHidden(), B).linear("grads.ffnOut", w.ffnOut(), B);
        for (int i = 1; i <= 3; i++) dev.out("grads.norm" + i + ".weight", h, B).out("grads.norm" + i + ".bias", h, B);
        dev.extra("grads", B, (o, a) -> ((GuidedAttentionUnitCuda) o).backward(a.m("x"), a.mask(), a.m("y"), null, a.m("gradOut"), null,
                a.n("batch"), a.n("xTokens"), a.n("yTokens"), a.stream()));
        return new Subject("GuidedAttentionUnit", false, true, (c, p) -> new GuidedAttentionUnitCuda(op, c, p), new GuidedAttentionUnitCpu(op), be -> {
            GuidedAttentionUnit.Backend m = (GuidedAttentionUnit.Backend) be;
            List<float[]> t = tensors(m.forward(x, xm, y, ym, b, lx, ly));
            t.addAll(m.backward(x, xm, y, ym, g, b, lx, ly).tensors());
            return t;
        }, dev);
    }

    private static MlbAttentionCuda.LayerBuffers layer(Args a, String key) {
        return new MlbAttentionCuda.LayerBuffers(a.m(key + ".weight"), a.m(key + ".bias"));
    }

    private static MultiHeadAttentionCuda.GradientBuffers attention(Args a, String key) {
        return new MultiHeadAttentionCuda.GradientBuffers(null, null, null, layer(a, key + ".query"), layer(a, key + ".key"), layer(a, key + ".value"),
                layer(a, key + ".merge"));
    }

    private static GuidedAttentionUnitCuda.GradientBuffers grads(Args a) {
        return new GuidedAttentionUnitCuda.GradientBuffers(a.m("grads.dx"), a.m("grads.dy"), attention(a, "grads.selfAttention"),
                attention(a, "grads.guidedAttention"), layer(a, "grads.ffnHidden"), layer(a, "grads.ffnOut"), layer(a, "grads.norm1"), layer(a, "grads.norm2"),
                layer(a, "grads.norm3"));
    }
}
