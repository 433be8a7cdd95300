package io.bifuse.cpu;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import io.bifuse.GuidedAttentionUnit;
import io.bifuse.LayerNorm;
import io.bifuse.ObjectMask;
import io.bifuse.reference.GuidedAttentionUnitReference;
import io.bifuse.testing.Stats;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * The float32 GA unit against the float64 reference on fresh random inputs: the output and every gradient
 * (dx, dy, both attentions', the FFN's, the three norms') within 1e-5 relative L2 ({@link McanCpuChecks#TOL}:
 * float32 GEMM sums of at most F products, statistics and softmax sums in double), raised by
 * {@link io.bifuse.testing.Conditioning} only for a tensor that exceeds it, where the feed-forward ReLU flips
 * (see {@link McanCpuChecks}). Both key biases' gradients are exact zeros. Reruns and thread counts 1, 2, 3
 * bitwise identical; sizes past an array refused by name.
 */
class GuidedAttentionUnitCpuTest {
    @ParameterizedTest(name = "B={0} Lx={1} Ly={2} H={3} heads={4} F={5} {6} x {7} y {8}")
    @CsvSource({"1,1,1,2,1,1,MCAN,NONE,NONE", "3,6,4,8,2,12,MCAN,TAIL,EMPTY", "2,7,3,12,3,10,PYTORCH,EMPTY,HOLES", "1,11,13,6,3,7,MCAN,HOLES,TAIL",
            "4,20,14,64,8,96,PYTORCH,TAIL,TAIL", "2,12,14,512,8,2048,MCAN,HOLES,EMPTY", "2,100,14,128,8,512,MCAN,TAIL,TAIL"})
    void matchesTheReference(int batch, int lx, int ly, int hidden, int heads, int ffn, LayerNorm.Variant v, McanCpuChecks.Pad xPad,
            McanCpuChecks.Pad yPad) {
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        GuidedAttentionUnit op = GuidedAttentionUnit.random(hidden, heads, ffn, v == LayerNorm.Variant.MCAN ? LayerNorm.mcan() : LayerNorm.pytorch(),
                r.nextLong());
        float[] x = Stats.gaussian(r, batch * lx * hidden), y = Stats.gaussian(r, batch * ly * hidden), g = Stats.gaussian(r, batch * lx * hidden);
        ObjectMask xm = McanCpuChecks.mask(xPad, batch, lx, r), ym = McanCpuChecks.mask(yPad, batch, ly, r);
        GuidedAttentionUnitCpu cpu = new GuidedAttentionUnitCpu(op);
        assertEquals("cpu-fp32", cpu.backend());
        float[] out = cpu.forward(x, xm, y, ym, batch, lx, ly);
        GuidedAttentionUnit.Gradients gr = cpu.backward(x, xm, y, ym, g, batch, lx, ly);
        List<float[]> got = McanCpuChecks.with(out, gr.tensors());
        List<double[]> ref = McanCpuChecks.withRef(GuidedAttentionUnitReference.forward(op, x, xm, y, ym, batch, lx, ly),
                GuidedAttentionUnitReference.backward(op, x, xm, y, ym, g, batch, lx, ly));
        List<String> names = McanCpuChecks.names(op.gradientNames());
        McanCpuChecks.assertConditioned(Math.max(ffn, Math.max(hidden, Math.max(lx, ly))), seed, names, got, ref,
                (rr, step) -> McanCpuChecks.perturbed(rr, step, op, x, xm, y, ym, g, batch, lx, ly), op + " B=" + batch + " Lx=" + lx + " Ly=" + ly + " seed " + seed);
        assertArrayEquals(new float[hidden], gr.selfAttention().key().bias(), "the key bias's gradient is exact zeros");
        assertArrayEquals(new float[hidden], gr.guidedAttention().key().bias(), "the key bias's gradient is exact zeros");
        McanCpuChecks.assertSameBits(got, McanCpuChecks.with(cpu.forward(x, xm, y, ym, batch, lx, ly), cpu.backward(x, xm, y, ym, g, batch, lx, ly).tensors()),
                names, "rerun");
    }

    @Test void everyThreadCountGivesTheSameBits() {
        SplittableRandom r = new SplittableRandom(Stats.freshSeed());
        int batch = 4, lx = 37, ly = 9, hidden = 128, ffn = 256;
        GuidedAttentionUnit op = GuidedAttentionUnit.random(hidden, 4, ffn, LayerNorm.mcan(), r.nextLong());
        float[] x = Stats.gaussian(r, batch * lx * hidden), y = Stats.gaussian(r, batch * ly * hidden), g = Stats.gaussian(r, batch * lx * hidden);
        ObjectMask xm = McanCpuChecks.mask(McanCpuChecks.Pad.TAIL, batch, lx, r), ym = McanCpuChecks.mask(McanCpuChecks.Pad.EMPTY, batch, ly, r);
        List<float[]> first = null;
        for (int threads : new int[] {1, 2, 3}) {
            GuidedAttentionUnitCpu cpu = new GuidedAttentionUnitCpu(op, CpuRuntime.withThreads(threads));
            List<float[]> t = McanCpuChecks.with(cpu.forward(x, xm, y, ym, batch, lx, ly), cpu.backward(x, xm, y, ym, g, batch, lx, ly).tensors());
            if (first == null) first = t;
            else McanCpuChecks.assertSameBits(first, t, McanCpuChecks.names(op.gradientNames()), threads + " threads");
        }
    }

    /** B·n·Lx² past a Java array with small x and y: refused by name, before any allocation. */
    @Test void attentionMapsPastAnArrayAreRefusedByName() {
        GuidedAttentionUnitCpu cpu = new GuidedAttentionUnitCpu(GuidedAttentionUnit.random(2, 1, 2, LayerNorm.mcan(), 4));
        int l = 50_000;
        float[] x = new float[2 * l], y = new float[2 * 3];
        MultiHeadAttentionCpuTest.refused("attention maps", () -> cpu.forward(x, null, y, null, 1, l, 3));
        MultiHeadAttentionCpuTest.refused("attention maps", () -> cpu.backward(x, null, y, null, x, 1, l, 3));
    }
}
