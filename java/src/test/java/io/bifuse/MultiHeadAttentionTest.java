package io.bifuse;

import static org.junit.jupiter.api.Assertions.*;

import io.bifuse.cpu.MultiHeadAttentionCpu;
import io.bifuse.reference.MultiHeadAttentionReference;
import io.bifuse.testing.Stats;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.function.Executable;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * The CPU backend against the reference, and the API's argument checks. The CPU backend computes in float32
 * (GEMMs of at most a few dozen products here: ~1e-7 relative L2); 1e-5, the float32 bound of
 * {@code MultiHeadAttentionCpuTest}, leaves room for that and catches any wiring mistake (wrong tensor, wrong
 * order), which shows as O(1).
 */
class MultiHeadAttentionTest {
    static final double TOL = 1e-5;

    @ParameterizedTest(name = "B={0} Lq={1} Lk={2} D={3} H={4} heads={5} padded={6}")
    @CsvSource({"1,1,1,1,1,1,false", "2,3,4,5,6,2,true", "3,7,5,8,12,4,true", "2,14,14,16,16,8,false"})
    void cpuMatchesReference(int batch, int lq, int lk, int dim, int hidden, int heads, boolean padded) {
        SplittableRandom r = new SplittableRandom(batch * 131L + lq * 7L + lk);
        MultiHeadAttention op = MultiHeadAttention.random(dim, hidden, heads, r.nextLong());
        float[] x = Stats.gaussian(r, batch * lq * dim), y = Stats.gaussian(r, batch * lk * dim), g = Stats.gaussian(r, batch * lq * dim);
        int[] counts = new int[batch];
        for (int b = 0; b < batch; b++) counts[b] = padded ? b % (lk + 1) : lk;
        ObjectMask mask = ObjectMask.counts(counts, lk);
        MultiHeadAttentionCpu cpu = new MultiHeadAttentionCpu(op);
        MultiHeadAttentionReference.Result ref = MultiHeadAttentionReference.forward(op, x, y, y, mask, batch, lq, lk);
        MultiHeadAttention.Result got = cpu.forwardWithAttention(x, y, y, mask, batch, lq, lk);
        assertTrue(Stats.relativeL2(got.out(), ref.out()) < TOL, "forward");
        assertTrue(Stats.relativeL2(got.attention(), ref.attention()) < TOL, "attention");
        assertArrayEquals(got.out(), cpu.forward(x, y, y, mask, batch, lq, lk));
        List<float[]> gt = cpu.backward(x, y, y, mask, g, batch, lq, lk).tensors();
        Stats.assertEachBelow(op.gradientNames(), gt, MultiHeadAttentionReference.backward(op, x, y, y, mask, g, batch, lq, lk).tensors(), TOL);
        assertEquals("cpu-fp32", cpu.backend());
    }

    @Test void gradientsHaveTheInputsAndLayersShapesAndTheKeyBiasGradientIsZero() {
        SplittableRandom r = new SplittableRandom(6);
        MultiHeadAttention op = MultiHeadAttention.of(new MultiHeadAttention.Weights(Linear.random(12, 5, true, 1), Linear.random(12, 7, true, 2),
                Linear.random(12, 3, false, 3), Linear.random(4, 12, true, 4)), 3);
        assertEquals(List.of("dQuery", "dKey", "dValue", "query.weight", "query.bias", "key.weight", "key.bias", "value.weight", "merge.weight",
                "merge.bias"), op.gradientNames());
        assertEquals(4, op.headDim());
        assertEquals(0.5, op.scale(), 0);
        MultiHeadAttention.Gradients gr = new MultiHeadAttentionCpu(op).backward(Stats.gaussian(r, 2 * 3 * 5), Stats.gaussian(r, 2 * 4 * 7),
                Stats.gaussian(r, 2 * 4 * 3), null, Stats.gaussian(r, 2 * 3 * 4), 2, 3, 4);
        assertEquals(2 * 3 * 5, gr.dQuery().length);
        assertEquals(2 * 4 * 7, gr.dKey().length);
        assertEquals(2 * 4 * 3, gr.dValue().length);
        assertNull(gr.value().bias());
        assertArrayEquals(new float[12], gr.key().bias());
        assertTrue(Stats.norm(gr.key().weight()) > 1e-3);
        assertEquals(op.gradientNames().size(), gr.tensors().size());
    }

    @Test void badDescriptorsAreRefusedByName() {
        Linear h8 = Linear.random(8, 5, true, 1), h6 = Linear.random(6, 5, true, 2), m = Linear.random(5, 8, true, 3);
        refused("query", () -> new MultiHeadAttention.Weights(null, h8, h8, m));
        refused("key", () -> new MultiHeadAttention.Weights(h8, h6, h8, m));
        refused("value", () -> new MultiHeadAttention.Weights(h8, h8, h6, m));
        refused("merge", () -> new MultiHeadAttention.Weights(h8, h8, h8, Linear.random(5, 6, true, 4)));
        refused("weights", () -> MultiHeadAttention.of(null, 2));
        refused("heads", () -> MultiHeadAttention.of(new MultiHeadAttention.Weights(h8, h8, h8, m), 3));
        refused("heads", () -> MultiHeadAttention.of(new MultiHeadAttention.Weights(h8, h8, h8, m), 0));
        refused("hidden", () -> MultiHeadAttention.random(4, 0, 1, 1));
    }

    @Test void badInputsAreRefusedByNameBeforeAnyWork() {
        MultiHeadAttention op = MultiHeadAttention.random(4, 8, 2, 5);
        MultiHeadAttentionCpu cpu = new MultiHeadAttentionCpu(op);
        float[] x = new float[2 * 3 * 4], k = new float[2 * 5 * 4], g = new float[2 * 3 * 4];
        refused("batch", () -> cpu.forward(x, k, k, null, 0, 3, 5));
        refused("queries", () -> cpu.forward(x, k, k, null, 2, 0, 5));
        refused("keys", () -> cpu.forward(x, k, k, null, 2, 3, -1));
        refused("query", () -> cpu.forward(new float[5], k, k, null, 2, 3, 5));
        refused("query", () -> cpu.forward(null, k, k, null, 2, 3, 5));
        refused("key", () -> cpu.forward(x, new float[2 * 4 * 4], k, null, 2, 3, 5));
        refused("value", () -> cpu.forward(x, k, new float[1], null, 2, 3, 5));
        refused("mask", () -> cpu.forward(x, k, k, ObjectMask.all(2, 4), 2, 3, 5));
        refused("mask", () -> cpu.forward(x, k, k, ObjectMask.all(3, 5), 2, 3, 5));
        refused("gradOut", () -> cpu.backward(x, k, k, null, new float[3], 2, 3, 5));
        refused("batch, queries", () -> cpu.forward(x, k, k, null, 1 << 16, 1 << 16, 1));
        refused("op", () -> new MultiHeadAttentionCpu(null));
        assertNotNull(cpu.backward(x, k, k, null, g, 2, 3, 5)); // the same call with good arguments runs
    }

    private static void refused(String name, Executable call) {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, call);
        assertTrue(e.getMessage().startsWith(name + ":"), () -> "expected a message starting with '" + name + ":', got: " + e.getMessage());
    }
}
