package io.bifuse;

import static org.junit.jupiter.api.Assertions.*;

import io.bifuse.cpu.GuidedAttentionUnitCpu;
import io.bifuse.reference.GuidedAttentionUnitReference;
import io.bifuse.testing.Stats;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.Executable;

/** The CPU backend against the reference (float32: 1e-5, the bound of its {@code io.bifuse.cpu} test), the names, and the API's argument checks. */
class GuidedAttentionUnitTest {
    @Test void cpuMatchesReference() {
        SplittableRandom r = new SplittableRandom(5);
        int batch = 3, lx = 6, ly = 4, h = 8;
        GuidedAttentionUnit op = GuidedAttentionUnit.random(h, 2, 12, LayerNorm.mcan(), 9);
        float[] x = Stats.gaussian(r, batch * lx * h), y = Stats.gaussian(r, batch * ly * h), g = Stats.gaussian(r, batch * lx * h);
        ObjectMask xm = ObjectMask.counts(new int[] {6, 2, 1}, lx), ym = ObjectMask.counts(new int[] {4, 0, 3}, ly);
        GuidedAttentionUnitCpu cpu = new GuidedAttentionUnitCpu(op);
        assertTrue(Stats.relativeL2(cpu.forward(x, xm, y, ym, batch, lx, ly), GuidedAttentionUnitReference.forward(op, x, xm, y, ym, batch, lx, ly)) < 1e-5);
        Stats.assertEachBelow(op.gradientNames(), cpu.backward(x, xm, y, ym, g, batch, lx, ly).tensors(),
                GuidedAttentionUnitReference.backward(op, x, xm, y, ym, g, batch, lx, ly), 1e-5);
        assertEquals(op.gradientNames().size() - 2, GuidedAttentionUnit.STATE_DICT_NAMES.size());
        assertEquals("mhatt2.linear_q.weight", GuidedAttentionUnit.STATE_DICT_NAMES.get(8));
        assertEquals("guidedAttention.query.weight", op.gradientNames().get(10));
    }

    @Test void badArgumentsAreRefusedByName() {
        GuidedAttentionUnit ok = GuidedAttentionUnit.random(8, 2, 12, LayerNorm.mcan(), 3);
        GuidedAttentionUnit.Weights w = ok.weights();
        refused("guidedAttention", () -> new GuidedAttentionUnit.Weights(w.selfAttention(), MultiHeadAttention.random(6, 8, 2, 1).weights(), w.ffnHidden(),
                w.ffnOut(), w.norm1(), w.norm2(), w.norm3()));
        refused("guidedAttention", () -> new GuidedAttentionUnit.Weights(w.selfAttention(), null, w.ffnHidden(), w.ffnOut(), w.norm1(), w.norm2(), w.norm3()));
        refused("norm2", () -> new GuidedAttentionUnit.Weights(w.selfAttention(), w.guidedAttention(), w.ffnHidden(), w.ffnOut(), w.norm1(),
                LayerNorm.Affine.identity(3), w.norm3()));
        refused("norm3", () -> new GuidedAttentionUnit.Weights(w.selfAttention(), w.guidedAttention(), w.ffnHidden(), w.ffnOut(), w.norm1(), w.norm2(), null));
        refused("heads", () -> GuidedAttentionUnit.of(w, 3, LayerNorm.mcan()));
        GuidedAttentionUnitCpu cpu = new GuidedAttentionUnitCpu(ok);
        float[] x = new float[2 * 3 * 8], y = new float[2 * 5 * 8];
        refused("x", () -> cpu.forward(new float[1], null, y, null, 2, 3, 5));
        refused("y", () -> cpu.forward(x, null, new float[1], null, 2, 3, 5));
        refused("xTokens", () -> cpu.forward(x, null, y, null, 2, 0, 5));
        refused("yTokens", () -> cpu.forward(x, null, y, null, 2, 3, 0));
        refused("xMask", () -> cpu.forward(x, ObjectMask.all(2, 5), y, null, 2, 3, 5));
        refused("yMask", () -> cpu.forward(x, null, y, ObjectMask.all(2, 3), 2, 3, 5));
        refused("gradOut", () -> cpu.backward(x, null, y, null, new float[2], 2, 3, 5));
        assertNotNull(cpu.backward(x, null, y, null, new float[x.length], 2, 3, 5));
    }

    private static void refused(String name, Executable call) {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, call);
        assertTrue(e.getMessage().startsWith(name + ":"), () -> "expected a message starting with '" + name + ":', got: " + e.getMessage());
    }
}
