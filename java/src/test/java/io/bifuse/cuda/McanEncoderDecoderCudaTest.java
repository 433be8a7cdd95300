package io.bifuse.cuda;

import static io.bifuse.cuda.DeviceOpContractTest.B;
import static io.bifuse.cuda.DeviceOpContractTest.F;
import static io.bifuse.cuda.DeviceOpContractTest.gaussian;
import static io.bifuse.cuda.DeviceOpContractTest.tensors;
import static org.junit.jupiter.api.Assertions.*;

import io.bifuse.LayerNorm;
import io.bifuse.McanEncoderDecoder;
import io.bifuse.ObjectMask;
import io.bifuse.Precision;
import io.bifuse.cpu.McanEncoderDecoderCpu;
import io.bifuse.cuda.DeviceOpContractTest.Args;
import io.bifuse.cuda.DeviceOpContractTest.DeviceForm;
import io.bifuse.cuda.DeviceOpContractTest.Subject;
import io.bifuse.reference.McanEncoderDecoderReference;
import io.bifuse.testing.DeviceRuns;
import io.bifuse.testing.Stats;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * The encoder-decoder on the device against the float64 reference: MCAN's widths (6 layers, hidden 512, 8 heads,
 * F = 2048, M = 512, G = 1, O = 1024, 14 tokens and 100 objects) at B = 8, in FP32 only (the float64 reference of
 * six layers costs ~10¹¹ multiply-adds a pass there, and the Conditioning draws of the reduced modes would repeat it
 * up to 16 times: the units' own tests hold TF32 / BF16 at these widths; on the simulated device 2 layers, B = 2,
 * 30 objects), and odd sizes with G = 2,
 * both sequences padded (a question without any real token), outputs and gradients NaN-poisoned. Tolerance as
 * {@link SelfAttentionUnitCudaTest}'s: 1e-5 in FP32, {@link Precision#bound()} in TF32 / BF16 at widths of at
 * least 32, each raised to {@code Conditioning}'s {@code max(bound, 2·base)} where a ReLU flips (twelve units of
 * feed-forward layers deep, a flip is likelier than in one unit). Skipped without a GPU.
 */
@Tag("gpu")
class McanEncoderDecoderCudaTest extends CublasOpTest {
    static final double TOL = 1e-5;

    @ParameterizedTest(name = "n={0} B={1} Lq={2} Lv={3} H={4} heads={5} F={6} M={7} G={8} O={9}")
    @CsvSource({"6,64,14,100,512,8,2048,512,1,1024", "1,1,1,1,2,1,1,1,1,2", "2,3,5,9,12,3,20,7,2,6", "1,2,33,40,64,2,96,32,2,48"})
    void matchesReference(int layers, int specBatch, int lq, int lv, int hidden, int heads, int ffn, int mlp, int glimpses, int out) {
        boolean spec = specBatch == 64;
        int n = spec ? SimSizes.pick(layers, 2) : layers, batch = spec ? SimSizes.pick(8, 2) : specBatch;
        int lvs = spec ? SimSizes.extent(lv, 30) : lv;
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        McanEncoderDecoder op = McanEncoderDecoder.random(n, hidden, heads, ffn, mlp, glimpses, out, LayerNorm.mcan(), r.nextLong());
        float[] q = Stats.gaussian(r, batch * lq * hidden), v = Stats.gaussian(r, batch * lvs * hidden), g = Stats.gaussian(r, batch * out);
        ObjectMask qm = ObjectMask.counts(GuidedAttentionUnitCudaTest.counts(batch, lq), lq), vm = SelfAttentionUnitCudaTest.mask(batch, lvs);
        double[] fRef = McanEncoderDecoderReference.forward(op, q, qm, v, vm, batch, lq, lvs);
        List<double[]> gRef = McanEncoderDecoderReference.backward(op, q, qm, v, vm, g, batch, lq, lvs);
        for (Precision p : Precision.values()) {
            if (p != Precision.FP32 && (spec || Math.min(hidden, ffn) < 32)) continue;
            try (McanEncoderDecoderCuda cuda = new McanEncoderDecoderCuda(op, ctx, p)) {
                DeviceRuns.McanEncoderDecoderRun run = DeviceRuns.mcanEncoderDecoder(ctx, cuda, q, qm, v, vm, g, batch, lq, lvs);
                List<String> names = new ArrayList<>(List.of("out"));
                names.addAll(op.gradientNames());
                List<float[]> got = new ArrayList<>(List.of(run.out()));
                got.addAll(run.grads().tensors());
                List<double[]> ref = new ArrayList<>(List.of(fRef));
                ref.addAll(gRef);
                SelfAttentionUnitCudaTest.assertConditioned(p, p == Precision.FP32 ? TOL : p.bound(), Math.max(ffn, Math.max(hidden, lvs)), seed, names, got, ref,
                        (rr, step) -> perturbed(rr, step, op, q, qm, v, vm, g, batch, lq, lvs), p + " " + op + " B=" + batch + " seed " + seed);
            }
        }
    }

    static List<double[]> perturbed(SplittableRandom r, double step, McanEncoderDecoder op, float[] q, ObjectMask qm, float[] v, ObjectMask vm, float[] g,
                                    int batch, int lq, int lv) {
        McanEncoderDecoderReference.Params pp = McanEncoderDecoderReference.params(op);
        for (double[] t : pp.tensors()) System.arraycopy(SelfAttentionUnitCudaTest.moved(r, t, step), 0, t, 0, t.length);
        double[] qs = SelfAttentionUnitCudaTest.moved(r, q, step), vs = SelfAttentionUnitCudaTest.moved(r, v, step), gs = SelfAttentionUnitCudaTest.moved(r, g, step);
        boolean[] qr = io.bifuse.reference.MultiHeadAttentionReference.real(qm, batch, lq), vr = io.bifuse.reference.MultiHeadAttentionReference.real(vm, batch, lv);
        List<double[]> out = new ArrayList<>(List.of(McanEncoderDecoderReference.forward(pp, qs, qr, vs, vr, batch, lq, lv)));
        out.addAll(McanEncoderDecoderReference.backward(pp, qs, qr, vs, vr, gs, batch, lq, lv));
        return out;
    }

    static Subject contractSubject(SplittableRandom r) {
        McanEncoderDecoder op = McanEncoderDecoder.random(1, 4, 2, 6, 3, 2, 5, LayerNorm.mcan(), r.nextLong());
        int b = 3, lq = 4, lv = 5, h = 4;
        // the contract takes one mask, the question's; the image unmasked here (its masks are matchesReference's)
        ObjectMask qm = ObjectMask.counts(new int[] {4, 1, 0}, lq);
        float[] q = gaussian(r, b * lq * h), v = gaussian(r, b * lv * h), g = gaussian(r, b * 5);
        List<String> names = op.stateDictNames();
        List<Integer> sizes = new ArrayList<>();
        for (double[] t : McanEncoderDecoderReference.params(op).tensors()) sizes.add(t.length);
        DeviceForm dev = new DeviceForm()
                .call(F, (o, a) -> ((McanEncoderDecoderCuda) o).forward(a.m("q"), a.mask(), a.m("v"), null, a.m("out"), a.n("batch"), a.n("qTokens"),
                        a.n("vTokens"), a.stream()))
                .call(B, (o, a) -> ((McanEncoderDecoderCuda) o).backward(a.m("q"), a.mask(), a.m("v"), null, a.m("gradOut"), grads(a, names), a.n("batch"),
                        a.n("qTokens"), a.n("vTokens"), a.stream()))
                .size("batch", b).size("qTokens", lq).size("vTokens", lv).mask(qm, "qMask")
                .in("q", q, F, B).in("v", v, F, B).in("gradOut", g, B).out("out", b * 5, F).out("grads.dq", b * lq * h, B).out("grads.dv", b * lv * h, B);
        for (int i = 0; i < names.size(); i++) dev.out("grads." + names.get(i), sizes.get(i), B);
        dev.extra("grads", B, (o, a) -> ((McanEncoderDecoderCuda) o).backward(a.m("q"), a.mask(), a.m("v"), null, a.m("gradOut"), null, a.n("batch"),
                        a.n("qTokens"), a.n("vTokens"), a.stream()))
                .extra("grads.parameters", B, (o, a) -> {
                    McanEncoderDecoderCuda.GradientBuffers gr = grads(a, names);
                    ((McanEncoderDecoderCuda) o).backward(a.m("q"), a.mask(), a.m("v"), null, a.m("gradOut"), new McanEncoderDecoderCuda.GradientBuffers(gr.dq(),
                            gr.dv(), gr.parameters().subList(1, gr.parameters().size())), a.n("batch"), a.n("qTokens"), a.n("vTokens"), a.stream());
                });
        return new Subject("McanEncoderDecoder", false, true, (c, p) -> new McanEncoderDecoderCuda(op, c, p), new McanEncoderDecoderCpu(op), be -> {
            McanEncoderDecoder.Backend m = (McanEncoderDecoder.Backend) be;
            List<float[]> t = tensors(m.forward(q, qm, v, null, b, lq, lv));
            t.addAll(m.backward(q, qm, v, null, g, b, lq, lv).tensors());
            return t;
        }, dev);
    }

    private static McanEncoderDecoderCuda.GradientBuffers grads(Args a, List<String> names) {
        List<DeviceMemory> p = new ArrayList<>();
        for (String n : names) p.add(a.m("grads." + n));
        return new McanEncoderDecoderCuda.GradientBuffers(a.m("grads.dq"), a.m("grads.dv"), p);
    }
}
