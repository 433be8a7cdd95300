package io.bifuse.cpu;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;

import io.bifuse.LayerNorm;
import io.bifuse.ObjectMask;
import io.bifuse.SelfAttentionUnit;
import io.bifuse.reference.SelfAttentionUnitReference;
import io.bifuse.testing.Stats;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * The float32 SA unit against the float64 reference on fresh random inputs: the output and every gradient
 * within 1e-5 relative L2 ({@link McanCpuChecks#TOL}: float32 GEMM sums of at most F = 2048 products, the
 * norms' statistics and the softmax sums in double), raised by {@link io.bifuse.testing.Conditioning} only
 * for a tensor that exceeds it, where the feed-forward ReLU flips (see {@link McanCpuChecks}). The key
 * bias's gradient is exact zeros in both. Reruns and thread counts 1, 2, 3 bitwise identical; sizes past an
 * array refused by name.
 */
class SelfAttentionUnitCpuTest {
    @ParameterizedTest(name = "B={0} L={1} H={2} heads={3} F={4} {5} {6}")
    @CsvSource({"1,1,2,1,1,MCAN,NONE", "2,5,8,2,12,MCAN,TAIL", "3,7,12,3,10,PYTORCH,EMPTY", "1,13,6,3,7,MCAN,HOLES", "4,14,64,8,96,PYTORCH,TAIL",
            "2,14,512,8,2048,MCAN,EMPTY", "2,100,256,8,1024,MCAN,HOLES"})
    void matchesTheReference(int batch, int tokens, int hidden, int heads, int ffn, LayerNorm.Variant v, McanCpuChecks.Pad pad) {
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        SelfAttentionUnit op = SelfAttentionUnit.random(hidden, heads, ffn, v == LayerNorm.Variant.MCAN ? LayerNorm.mcan() : LayerNorm.pytorch(), r.nextLong());
        float[] x = Stats.gaussian(r, batch * tokens * hidden), g = Stats.gaussian(r, batch * tokens * hidden);
        ObjectMask mask = McanCpuChecks.mask(pad, batch, tokens, r);
        SelfAttentionUnitCpu cpu = new SelfAttentionUnitCpu(op);
        assertEquals("cpu-fp32", cpu.backend());
        float[] out = cpu.forward(x, mask, batch, tokens);
        SelfAttentionUnit.Gradients gr = cpu.backward(x, mask, g, batch, tokens);
        List<float[]> got = McanCpuChecks.with(out, gr.tensors());
        List<double[]> ref = McanCpuChecks.withRef(SelfAttentionUnitReference.forward(op, x, mask, batch, tokens),
                SelfAttentionUnitReference.backward(op, x, mask, g, batch, tokens));
        List<String> names = McanCpuChecks.names(op.gradientNames());
        McanCpuChecks.assertConditioned(Math.max(ffn, Math.max(hidden, tokens)), seed, names, got, ref,
                (rr, step) -> McanCpuChecks.perturbed(rr, step, op, x, mask, g, batch, tokens), op + " B=" + batch + " L=" + tokens + " seed " + seed);
        assertArrayEquals(new float[hidden], gr.attention().key().bias(), "the key bias's gradient is exact zeros");
        assertNull(gr.attention().dQuery(), "the attention's input gradients are folded into dx");
        McanCpuChecks.assertSameBits(got, McanCpuChecks.with(cpu.forward(x, mask, batch, tokens), cpu.backward(x, mask, g, batch, tokens).tensors()), names,
                "rerun");
    }

    @Test void everyThreadCountGivesTheSameBits() {
        SplittableRandom r = new SplittableRandom(Stats.freshSeed());
        int batch = 4, tokens = 37, hidden = 128, ffn = 256;
        SelfAttentionUnit op = SelfAttentionUnit.random(hidden, 4, ffn, LayerNorm.mcan(), r.nextLong());
        float[] x = Stats.gaussian(r, batch * tokens * hidden), g = Stats.gaussian(r, batch * tokens * hidden);
        ObjectMask mask = McanCpuChecks.mask(McanCpuChecks.Pad.EMPTY, batch, tokens, r);
        List<float[]> first = null;
        for (int threads : new int[] {1, 2, 3}) {
            SelfAttentionUnitCpu cpu = new SelfAttentionUnitCpu(op, CpuRuntime.withThreads(threads));
            List<float[]> t = McanCpuChecks.with(cpu.forward(x, mask, batch, tokens), cpu.backward(x, mask, g, batch, tokens).tensors());
            if (first == null) first = t;
            else McanCpuChecks.assertSameBits(first, t, McanCpuChecks.names(op.gradientNames()), threads + " threads");
        }
    }

    /** B·n·L² past a Java array with a small x (B·L·H = 10⁵ floats): refused by name, before any allocation. */
    @Test void attentionMapsPastAnArrayAreRefusedByName() {
        SelfAttentionUnitCpu cpu = new SelfAttentionUnitCpu(SelfAttentionUnit.random(2, 1, 2, LayerNorm.mcan(), 4));
        int l = 50_000;
        float[] x = new float[2 * l];
        MultiHeadAttentionCpuTest.refused("attention maps", () -> cpu.forward(x, null, 1, l));
        MultiHeadAttentionCpuTest.refused("attention maps", () -> cpu.backward(x, null, x, 1, l));
    }
}
