package io.bifuse;

import static org.junit.jupiter.api.Assertions.*;

import io.bifuse.cpu.SelfAttentionUnitCpu;
import io.bifuse.reference.SelfAttentionUnitReference;
import io.bifuse.testing.Stats;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.Executable;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/** The CPU backend (float32) against the reference (1e-5, the float32 bound of {@code SelfAttentionUnitCpuTest}), and the API's argument checks. */
class SelfAttentionUnitTest {
    static final double TOL = 1e-5;

    @ParameterizedTest(name = "B={0} L={1} H={2} heads={3} F={4} {5}")
    @CsvSource({"1,1,2,1,1,MCAN", "2,5,8,2,12,MCAN", "3,7,12,3,10,PYTORCH"})
    void cpuMatchesReference(int batch, int tokens, int hidden, int heads, int ffn, LayerNorm.Variant v) {
        SplittableRandom r = new SplittableRandom(batch * 31L + tokens);
        SelfAttentionUnit op = SelfAttentionUnit.random(hidden, heads, ffn, v == LayerNorm.Variant.MCAN ? LayerNorm.mcan() : LayerNorm.pytorch(), r.nextLong());
        float[] x = Stats.gaussian(r, batch * tokens * hidden), g = Stats.gaussian(r, batch * tokens * hidden);
        int[] c = new int[batch];
        for (int b = 0; b < batch; b++) c[b] = tokens - b % tokens;
        ObjectMask mask = ObjectMask.counts(c, tokens);
        SelfAttentionUnitCpu cpu = new SelfAttentionUnitCpu(op);
        assertTrue(Stats.relativeL2(cpu.forward(x, mask, batch, tokens), SelfAttentionUnitReference.forward(op, x, mask, batch, tokens)) < TOL);
        Stats.assertEachBelow(op.gradientNames(), cpu.backward(x, mask, g, batch, tokens).tensors(),
                SelfAttentionUnitReference.backward(op, x, mask, g, batch, tokens), TOL);
    }

    @Test void namesFollowTheLayers() {
        SelfAttentionUnit op = SelfAttentionUnit.random(8, 2, 16, LayerNorm.mcan(), 3);
        assertEquals(List.of("dx", "attention.query.weight", "attention.query.bias", "attention.key.weight", "attention.key.bias",
                "attention.value.weight", "attention.value.bias", "attention.merge.weight", "attention.merge.bias", "ffnHidden.weight", "ffnHidden.bias",
                "ffnOut.weight", "ffnOut.bias", "norm1.gain", "norm1.bias", "norm2.gain", "norm2.bias"), op.gradientNames());
        assertEquals(op.gradientNames().size() - 1, SelfAttentionUnit.STATE_DICT_NAMES.size());
        assertEquals(16, op.ffn());
    }

    @Test void badArgumentsAreRefusedByName() {
        SelfAttentionUnit ok = SelfAttentionUnit.random(8, 2, 16, LayerNorm.mcan(), 3);
        SelfAttentionUnit.Weights w = ok.weights();
        refused("attention", () -> new SelfAttentionUnit.Weights(MultiHeadAttention.random(6, 8, 2, 1).weights(), w.ffnHidden(), w.ffnOut(), w.norm1(),
                w.norm2()));
        refused("ffnHidden", () -> new SelfAttentionUnit.Weights(w.attention(), Linear.random(16, 7, true, 1), w.ffnOut(), w.norm1(), w.norm2()));
        refused("ffnOut", () -> new SelfAttentionUnit.Weights(w.attention(), w.ffnHidden(), Linear.random(8, 15, true, 1), w.norm1(), w.norm2()));
        refused("norm2", () -> new SelfAttentionUnit.Weights(w.attention(), w.ffnHidden(), w.ffnOut(), w.norm1(), LayerNorm.Affine.identity(7)));
        refused("norm1", () -> new SelfAttentionUnit.Weights(w.attention(), w.ffnHidden(), w.ffnOut(), null, w.norm2()));
        refused("heads", () -> SelfAttentionUnit.of(w, 3, LayerNorm.mcan()));
        refused("norm", () -> SelfAttentionUnit.of(w, 2, null));
        refused("eps", () -> new LayerNorm(LayerNorm.Variant.MCAN, 0));
        refused("bias", () -> new LayerNorm.Affine(new float[3], new float[2]));
        refused("gain", () -> new LayerNorm.Affine(new float[] {Float.NaN}, new float[1]));
        SelfAttentionUnitCpu cpu = new SelfAttentionUnitCpu(ok);
        float[] x = new float[2 * 3 * 8];
        refused("x", () -> cpu.forward(new float[5], null, 2, 3));
        refused("tokens", () -> cpu.forward(x, null, 2, 0));
        refused("batch", () -> cpu.forward(x, null, -1, 3));
        refused("mask", () -> cpu.forward(x, ObjectMask.all(2, 4), 2, 3));
        refused("gradOut", () -> cpu.backward(x, null, new float[3], 2, 3));
        assertNotNull(cpu.backward(x, null, new float[x.length], 2, 3));
    }

    private static void refused(String name, Executable call) {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, call);
        assertTrue(e.getMessage().startsWith(name + ":"), () -> "expected a message starting with '" + name + ":', got: " + e.getMessage());
    }
}
