package io.bifuse;

import static org.junit.jupiter.api.Assertions.*;

import io.bifuse.BanBlockParityTest.Tensor;
import io.bifuse.cpu.MultiHeadAttentionCpu;
import io.bifuse.cpu.SelfAttentionUnitCpu;
import io.bifuse.reference.MultiHeadAttentionReference;
import io.bifuse.reference.SelfAttentionUnitReference;
import io.bifuse.testing.Stats;
import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Parity with MILVLG/mcan-vqa: the fixture {@code mcan_parity.txt}, written by
 * {@code benchmarks/python/mcan_fixture.py} from mcan-vqa's own MHAtt, SA and SGA modules in float64 (padded
 * question tokens, a sample without any, padded image objects found from their zero rows), loads by mcan-vqa's
 * state-dict names, without reshuffling, into {@link MultiHeadAttention}, {@link SelfAttentionUnit} and
 * {@link GuidedAttentionUnit}. The float64 references must agree with torch's float64
 * to 1e-12 relative L2 (two double evaluations of the same sums in different orders: ~1e-15); the float32 CPU
 * backends to 1e-6 (this fixture's sums are short: their float32 error is ~1e-7).
 */
class McanParityTest {
    static Map<String, Tensor> t;
    static int batch, lq, lk, hidden;
    static ObjectMask mask;

    @BeforeAll static void load() throws IOException {
        t = BanBlockParityTest.load("mcan_parity.txt");
        int[] xs = t.get("x").shape(), ys = t.get("y").shape();
        batch = xs[0];
        lq = xs[1];
        lk = ys[1];
        hidden = xs[2];
        double[] c = t.get("token_counts").values();
        int[] counts = new int[batch];
        for (int b = 0; b < batch; b++) counts[b] = (int) c[b];
        mask = ObjectMask.counts(counts, lk);
        assertEquals(0, mask.count(2), "the fixture has a sample without any real token");
    }

    static Linear linear(String name) {
        int[] s = t.get(name + ".weight").shape();
        return new Linear(s[0], s[1], t.get(name + ".weight").floats(), t.get(name + ".bias").floats());
    }

    static MultiHeadAttention.Weights attention(String prefix) {
        List<Linear> l = new ArrayList<>();
        for (String n : MultiHeadAttention.STATE_DICT_NAMES) l.add(linear(prefix + n));
        return new MultiHeadAttention.Weights(l.get(0), l.get(1), l.get(2), l.get(3));
    }

    @Test void multiHeadAttentionMatchesMhatt() {
        MultiHeadAttention op = MultiHeadAttention.of(attention("mhatt."), 2);
        float[] x = t.get("x").floats(), y = t.get("y").floats(), r = t.get("R_mhatt").floats();
        MultiHeadAttentionReference.Result f = MultiHeadAttentionReference.forward(op, x, y, y, mask, batch, lq, lk);
        assertBelow("out", Stats.relativeL2(f.out(), t.get("mhatt.out").values()), 1e-12);
        assertBelow("attention", Stats.relativeL2(f.attention(), t.get("mhatt.attention").values()), 1e-12);
        MultiHeadAttentionReference.Grads g = MultiHeadAttentionReference.backward(op, x, y, y, mask, r, batch, lq, lk);
        assertBelow("dx", Stats.relativeL2(g.dQuery(), t.get("grad.mhatt.x").values()), 1e-12);
        double[] dy = new double[g.dKey().length];
        for (int i = 0; i < dy.length; i++) dy[i] = g.dKey()[i] + g.dValue()[i]; // k = v = y
        assertBelow("dy", Stats.relativeL2(dy, t.get("grad.mhatt.y").values()), 1e-12);
        List<String> names = new ArrayList<>();
        for (String n : MultiHeadAttention.STATE_DICT_NAMES) names.addAll(List.of(n + ".weight", n + ".bias"));
        for (int i = 0; i < names.size(); i++) {
            double[] want = t.get("grad.mhatt." + names.get(i)).values(), got = g.parameters().get(i);
            if (names.get(i).equals("linear_k.bias")) { // zero in exact arithmetic; torch's float64 residue against the reference's exact zeros
                assertTrue(Stats.norm(want) < 1e-12 && Stats.norm(got) == 0, "linear_k.bias: torch " + Stats.norm(want));
                continue;
            }
            assertBelow(names.get(i), Stats.relativeL2(got, want), 1e-12);
        }
        MultiHeadAttention.Result cpu = new MultiHeadAttentionCpu(op).forwardWithAttention(x, y, y, mask, batch, lq, lk);
        assertBelow("cpu out", Stats.relativeL2(cpu.out(), t.get("mhatt.out").values()), 1e-6);
        // mcan-vqa's -1e9 on every key of the sample without any real one: uniform, never NaN
        for (int i = 2 * 2 * lq * lk; i < 3 * 2 * lq * lk; i++) assertEquals(1.0 / lk, f.attention()[i], 1e-15);
    }

    @Test void selfAttentionUnitMatchesSa() {
        List<String> sd = SelfAttentionUnit.STATE_DICT_NAMES;
        SelfAttentionUnit op = SelfAttentionUnit.of(new SelfAttentionUnit.Weights(attention("sa.mhatt."), linear("sa.ffn.mlp.fc.linear"),
                linear("sa.ffn.mlp.linear"), new LayerNorm.Affine(t.get("sa.norm1.a_2").floats(), t.get("sa.norm1.b_2").floats()),
                new LayerNorm.Affine(t.get("sa.norm2.a_2").floats(), t.get("sa.norm2.b_2").floats())), 2, LayerNorm.mcan());
        float[] y = t.get("y").floats(), r = t.get("R_sa").floats();
        assertBelow("out", Stats.relativeL2(SelfAttentionUnitReference.forward(op, y, mask, batch, lk), t.get("sa.out").values()), 1e-12);
        List<double[]> g = SelfAttentionUnitReference.backward(op, y, mask, r, batch, lk);
        assertBelow("dy", Stats.relativeL2(g.get(0), t.get("grad.sa.y").values()), 1e-12);
        assertEquals(sd.size(), g.size() - 1);
        for (int i = 0; i < sd.size(); i++) {
            double[] want = t.get("grad.sa." + sd.get(i)).values(), got = g.get(i + 1);
            if (sd.get(i).equals("mhatt.linear_k.bias")) {
                assertTrue(Stats.norm(want) < 1e-12 && Stats.norm(got) == 0, "mhatt.linear_k.bias: torch " + Stats.norm(want));
                continue;
            }
            assertBelow(sd.get(i), Stats.relativeL2(got, want), 1e-12);
        }
        assertBelow("cpu out", Stats.relativeL2(new SelfAttentionUnitCpu(op).forward(y, mask, batch, lk), t.get("sa.out").values()), 1e-6);
    }

    @Test void guidedAttentionUnitMatchesSga() {
        List<String> sd = GuidedAttentionUnit.STATE_DICT_NAMES;
        LayerNorm.Affine[] n = new LayerNorm.Affine[3];
        for (int i = 0; i < 3; i++) n[i] = new LayerNorm.Affine(t.get("sga.norm" + (i + 1) + ".a_2").floats(), t.get("sga.norm" + (i + 1) + ".b_2").floats());
        GuidedAttentionUnit op = GuidedAttentionUnit.of(new GuidedAttentionUnit.Weights(attention("sga.mhatt1."), attention("sga.mhatt2."),
                linear("sga.ffn.mlp.fc.linear"), linear("sga.ffn.mlp.linear"), n[0], n[1], n[2]), 2, LayerNorm.mcan());
        float[] x = t.get("sga.x").floats(), y = t.get("y").floats(), r = t.get("R_sga").floats();
        ObjectMask xm = ObjectMask.zeroRows(x, batch, lq, hidden); // mcan-vqa's make_mask on the image features
        assertEquals(lq - 2, xm.count(1), "the fixture pads two objects of sample 1");
        assertBelow("out", Stats.relativeL2(io.bifuse.reference.GuidedAttentionUnitReference.forward(op, x, xm, y, mask, batch, lq, lk),
                t.get("sga.out").values()), 1e-12);
        List<double[]> g = io.bifuse.reference.GuidedAttentionUnitReference.backward(op, x, xm, y, mask, r, batch, lq, lk);
        assertBelow("dx", Stats.relativeL2(g.get(0), t.get("grad.sga.x").values()), 1e-12);
        assertBelow("dy", Stats.relativeL2(g.get(1), t.get("grad.sga.y").values()), 1e-12);
        assertEquals(sd.size(), g.size() - 2);
        for (int i = 0; i < sd.size(); i++) {
            double[] want = t.get("grad.sga." + sd.get(i)).values(), got = g.get(i + 2);
            if (sd.get(i).endsWith("linear_k.bias")) {
                assertTrue(Stats.norm(want) < 1e-12 && Stats.norm(got) == 0, sd.get(i) + ": torch " + Stats.norm(want));
                continue;
            }
            assertBelow(sd.get(i), Stats.relativeL2(got, want), 1e-12);
        }
        assertBelow("cpu out", Stats.relativeL2(new io.bifuse.cpu.GuidedAttentionUnitCpu(op).forward(x, xm, y, mask, batch, lq, lk),
                t.get("sga.out").values()), 1e-6);
    }

    static SelfAttentionUnit.Weights saWeights(String p) {
        return new SelfAttentionUnit.Weights(attention(p + "mhatt."), linear(p + "ffn.mlp.fc.linear"), linear(p + "ffn.mlp.linear"), norm(p + "norm1"),
                norm(p + "norm2"));
    }

    static GuidedAttentionUnit.Weights gaWeights(String p) {
        return new GuidedAttentionUnit.Weights(attention(p + "mhatt1."), attention(p + "mhatt2."), linear(p + "ffn.mlp.fc.linear"), linear(p + "ffn.mlp.linear"),
                norm(p + "norm1"), norm(p + "norm2"), norm(p + "norm3"));
    }

    static LayerNorm.Affine norm(String p) { return new LayerNorm.Affine(t.get(p + ".a_2").floats(), t.get(p + ".b_2").floats()); }

    static McanEncoderDecoder.Flatten flatten(String p) {
        return new McanEncoderDecoder.Flatten(linear(p + "mlp.fc.linear"), linear(p + "mlp.linear"), linear(p + "linear_merge"));
    }

    @Test void encoderDecoderMatchesMcanVqasNetFromBackboneToProjNorm() {
        List<SelfAttentionUnit.Weights> enc = new ArrayList<>();
        List<GuidedAttentionUnit.Weights> dec = new ArrayList<>();
        for (int i = 0; i < 2; i++) {
            enc.add(saWeights("ed.backbone.enc_list." + i + "."));
            dec.add(gaWeights("ed.backbone.dec_list." + i + "."));
        }
        McanEncoderDecoder op = McanEncoderDecoder.of(new McanEncoderDecoder.Weights(enc, dec, flatten("ed.attflat_lang."), flatten("ed.attflat_img."),
                norm("ed.proj_norm")), 2, LayerNorm.mcan());
        // every tensor of the state dict, by its mcan-vqa name, in the op's order: nothing reshuffled
        List<String> names = op.stateDictNames();
        for (String n : names) assertNotNull(t.get("ed." + n), "the fixture's state dict has no " + n);
        float[] q = t.get("y").floats(), v = t.get("sga.x").floats(), r = t.get("R_ed").floats();
        ObjectMask vm = ObjectMask.zeroRows(v, batch, lq, hidden);
        assertBelow("out", Stats.relativeL2(io.bifuse.reference.McanEncoderDecoderReference.forward(op, q, mask, v, vm, batch, lk, lq), t.get("ed.out").values()),
                1e-12);
        List<double[]> g = io.bifuse.reference.McanEncoderDecoderReference.backward(op, q, mask, v, vm, r, batch, lk, lq);
        assertBelow("dq", Stats.relativeL2(g.get(0), t.get("grad.ed.q").values()), 1e-12);
        assertBelow("dv", Stats.relativeL2(g.get(1), t.get("grad.ed.v").values()), 1e-12);
        for (int i = 0; i < names.size(); i++) {
            double[] want = t.get("grad.ed." + names.get(i)).values(), got = g.get(i + 2);
            if (names.get(i).endsWith("linear_k.bias") || names.get(i).endsWith("attflat_lang.mlp.linear.bias") || names.get(i).endsWith("attflat_img.mlp.linear.bias")) {
                assertTrue(Stats.norm(want) < 1e-12 && Stats.norm(got) == 0, names.get(i) + ": torch " + Stats.norm(want)); // softmax invariance
                continue;
            }
            assertBelow(names.get(i), Stats.relativeL2(got, want), 1e-12);
        }
        assertBelow("cpu out", Stats.relativeL2(new io.bifuse.cpu.McanEncoderDecoderCpu(op).forward(q, mask, v, vm, batch, lk, lq), t.get("ed.out").values()),
                1e-6);
    }

    private static void assertBelow(String what, double e, double tol) {
        assertTrue(e <= tol, what + ": " + e + " > " + tol);
    }
}
