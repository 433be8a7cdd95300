package io.bifuse;

import static org.junit.jupiter.api.Assertions.*;

import io.bifuse.cpu.McanEncoderDecoderCpu;
import io.bifuse.reference.McanEncoderDecoderReference;
import io.bifuse.testing.Stats;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.Executable;

/** The CPU backend against the reference (float32: 1e-5, the bound of its {@code io.bifuse.cpu} test), the names, and the argument checks by name. */
class McanEncoderDecoderTest {
    @Test void cpuMatchesReference() {
        SplittableRandom r = new SplittableRandom(3);
        int batch = 2, lq = 4, lv = 5, h = 8;
        McanEncoderDecoder op = McanEncoderDecoder.random(2, h, 2, 12, 6, 2, 7, LayerNorm.mcan(), 11);
        float[] q = Stats.gaussian(r, batch * lq * h), v = Stats.gaussian(r, batch * lv * h), g = Stats.gaussian(r, batch * 7);
        ObjectMask qm = ObjectMask.counts(new int[] {4, 0}, lq), vm = ObjectMask.counts(new int[] {3, 5}, lv);
        McanEncoderDecoderCpu cpu = new McanEncoderDecoderCpu(op);
        assertTrue(Stats.relativeL2(cpu.forward(q, qm, v, vm, batch, lq, lv), McanEncoderDecoderReference.forward(op, q, qm, v, vm, batch, lq, lv)) < 1e-5);
        Stats.assertEachBelow(op.gradientNames(), cpu.backward(q, qm, v, vm, g, batch, lq, lv).tensors(),
                McanEncoderDecoderReference.backward(op, q, qm, v, vm, g, batch, lq, lv), 1e-5);
        List<String> n = op.stateDictNames();
        assertEquals("backbone.enc_list.0.mhatt.linear_q.weight", n.get(0));
        assertEquals("backbone.dec_list.1.norm3.b_2", n.get(2 * 16 + 2 * 26 - 1));
        assertEquals("proj_norm.b_2", n.get(n.size() - 1));
        assertEquals(McanEncoderDecoderReference.params(op).tensors().size(), n.size());
    }

    @Test void badArgumentsAreRefusedByName() {
        McanEncoderDecoder ok = McanEncoderDecoder.random(2, 8, 2, 12, 6, 1, 7, LayerNorm.mcan(), 5);
        McanEncoderDecoder.Weights w = ok.weights();
        refused("decoder", () -> new McanEncoderDecoder.Weights(w.encoder(), w.decoder().subList(0, 1), w.questionFlatten(), w.imageFlatten(), w.norm()));
        refused("encoder", () -> new McanEncoderDecoder.Weights(List.of(), w.decoder(), w.questionFlatten(), w.imageFlatten(), w.norm()));
        refused("imageFlatten", () -> new McanEncoderDecoder.Weights(w.encoder(), w.decoder(), w.questionFlatten(), null, w.norm()));
        refused("norm", () -> new McanEncoderDecoder.Weights(w.encoder(), w.decoder(), w.questionFlatten(), w.imageFlatten(), LayerNorm.Affine.identity(6)));
        refused("merge", () -> new McanEncoderDecoder.Flatten(Linear.random(6, 8, true, 1), Linear.random(2, 6, true, 2), Linear.random(7, 8, true, 3)));
        refused("mlpOut", () -> new McanEncoderDecoder.Flatten(Linear.random(6, 8, true, 1), Linear.random(2, 5, true, 2), Linear.random(7, 16, true, 3)));
        refused("layers", () -> McanEncoderDecoder.random(0, 8, 2, 12, 6, 1, 7, LayerNorm.mcan(), 5));
        refused("norm", () -> McanEncoderDecoder.random(1, 8, 2, 12, 6, 1, 1, LayerNorm.mcan(), 5)); // an unbiased std of one value
        McanEncoderDecoderCpu cpu = new McanEncoderDecoderCpu(ok);
        float[] q = new float[2 * 3 * 8], v = new float[2 * 4 * 8];
        refused("q", () -> cpu.forward(new float[1], null, v, null, 2, 3, 4));
        refused("v", () -> cpu.forward(q, null, new float[1], null, 2, 3, 4));
        refused("qTokens", () -> cpu.forward(q, null, v, null, 2, 0, 4));
        refused("vMask", () -> cpu.forward(q, null, v, ObjectMask.all(2, 3), 2, 3, 4));
        refused("gradOut", () -> cpu.backward(q, null, v, null, new float[3], 2, 3, 4));
        assertNotNull(cpu.backward(q, null, v, null, new float[2 * 7], 2, 3, 4));
    }

    private static void refused(String name, Executable call) {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, call);
        assertTrue(e.getMessage().startsWith(name + ":"), () -> "expected a message starting with '" + name + ":', got: " + e.getMessage());
    }
}
