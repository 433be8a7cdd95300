package io.bifuse.cpu;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import io.bifuse.LayerNorm;
import io.bifuse.McanEncoderDecoder;
import io.bifuse.ObjectMask;
import io.bifuse.reference.McanEncoderDecoderReference;
import io.bifuse.testing.Stats;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * The float32 MCAN encoder-decoder against the float64 reference on fresh random inputs: the output and
 * every gradient (dq, dv, one per state-dict tensor) within 1e-5 relative L2 ({@link McanCpuChecks#TOL}: float32
 * GEMM sums of at most F products, statistics and softmax sums in double), raised by
 * {@link io.bifuse.testing.Conditioning} only for a tensor that exceeds it, where a ReLU (the layers' FFNs,
 * AttFlat's MLP) flips (see {@link McanCpuChecks}). The attentions' key-bias and AttFlat's logit-bias
 * gradients are exact zeros. Reruns, thread counts 1, 2, 3, and the backward with and without every layer's
 * intermediates kept (recomputed) bitwise identical; sizes past an array refused by name.
 */
class McanEncoderDecoderCpuTest {
    @ParameterizedTest(name = "n={0} B={1} Lq={2} Lv={3} H={4} heads={5} F={6} M={7} G={8} O={9} {10} q {11} v {12}")
    @CsvSource({"1,1,1,1,2,1,1,1,1,2,MCAN,NONE,NONE", "2,2,4,5,8,2,12,6,2,7,MCAN,TAIL,EMPTY", "2,3,7,9,12,3,10,5,1,9,PYTORCH,EMPTY,HOLES",
            "3,1,6,11,6,3,7,4,3,5,MCAN,HOLES,TAIL", "2,2,14,20,64,8,96,32,2,48,MCAN,TAIL,TAIL", "2,1,5,7,512,8,2048,512,1,1024,MCAN,TAIL,HOLES",
            "2,2,14,50,128,8,256,128,2,256,MCAN,EMPTY,TAIL"})
    void matchesTheReference(int layers, int batch, int lq, int lv, int hidden, int heads, int ffn, int mlp, int glimpses, int out, LayerNorm.Variant v,
            McanCpuChecks.Pad qPad, McanCpuChecks.Pad vPad) {
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        McanEncoderDecoder op = McanEncoderDecoder.random(layers, hidden, heads, ffn, mlp, glimpses, out,
                v == LayerNorm.Variant.MCAN ? LayerNorm.mcan() : LayerNorm.pytorch(), r.nextLong());
        float[] q = Stats.gaussian(r, batch * lq * hidden), iv = Stats.gaussian(r, batch * lv * hidden), g = Stats.gaussian(r, batch * out);
        ObjectMask qm = McanCpuChecks.mask(qPad, batch, lq, r), vm = McanCpuChecks.mask(vPad, batch, lv, r);
        McanEncoderDecoderCpu cpu = new McanEncoderDecoderCpu(op);
        assertEquals("cpu-fp32", cpu.backend());
        float[] f = cpu.forward(q, qm, iv, vm, batch, lq, lv);
        McanEncoderDecoder.Gradients gr = cpu.backward(q, qm, iv, vm, g, batch, lq, lv);
        List<float[]> got = McanCpuChecks.with(f, gr.tensors());
        List<double[]> ref = McanCpuChecks.withRef(McanEncoderDecoderReference.forward(op, q, qm, iv, vm, batch, lq, lv),
                McanEncoderDecoderReference.backward(op, q, qm, iv, vm, g, batch, lq, lv));
        List<String> names = McanCpuChecks.names(op.gradientNames());
        McanCpuChecks.assertConditioned(Math.max(ffn, Math.max(hidden, Math.max(lv, glimpses * hidden))), seed, names, got, ref,
                (rr, step) -> McanCpuChecks.perturbed(rr, step, op, q, qm, iv, vm, g, batch, lq, lv), op + " B=" + batch + " Lq=" + lq + " Lv=" + lv + " seed " + seed);
        for (int i = 0; i < names.size(); i++) {
            if (names.get(i).endsWith("linear_k.bias")) assertArrayEquals(new float[hidden], got.get(i), names.get(i));
            if (names.get(i).startsWith("attflat_") && names.get(i).endsWith(".mlp.linear.bias")) assertArrayEquals(new float[glimpses], got.get(i), names.get(i));
        }
        McanCpuChecks.assertSameBits(got, McanCpuChecks.with(cpu.forward(q, qm, iv, vm, batch, lq, lv), cpu.backward(q, qm, iv, vm, g, batch, lq, lv).tensors()),
                names, "rerun");
        McanEncoderDecoderCpu recomputing = new McanEncoderDecoderCpu(op, CpuRuntime.defaults(), 0);
        McanCpuChecks.assertSameBits(gr.tensors(), recomputing.backward(q, qm, iv, vm, g, batch, lq, lv).tensors(), op.gradientNames(),
                "layers recomputed in the backward");
    }

    /** Also: the backward keeping every layer's intermediates, none, or some, gives the same bits. */
    @Test void everyThreadCountGivesTheSameBits() {
        SplittableRandom r = new SplittableRandom(Stats.freshSeed());
        int batch = 3, lq = 14, lv = 37, hidden = 128, out = 96;
        McanEncoderDecoder op = McanEncoderDecoder.random(3, hidden, 4, 256, 64, 2, out, LayerNorm.mcan(), r.nextLong());
        float[] q = Stats.gaussian(r, batch * lq * hidden), v = Stats.gaussian(r, batch * lv * hidden), g = Stats.gaussian(r, batch * out);
        ObjectMask qm = McanCpuChecks.mask(McanCpuChecks.Pad.EMPTY, batch, lq, r), vm = McanCpuChecks.mask(McanCpuChecks.Pad.HOLES, batch, lv, r);
        List<float[]> first = null;
        for (int threads : new int[] {1, 2, 3}) {
            // every layer kept (1 thread), none (2: each recomputed), and one decoder layer's worth (3: the second-last kept, the others recomputed)
            long keep = threads == 1 ? Long.MAX_VALUE : threads == 2 ? 0 : 900_000;
            McanEncoderDecoderCpu cpu = new McanEncoderDecoderCpu(op, CpuRuntime.withThreads(threads), keep);
            List<float[]> t = McanCpuChecks.with(cpu.forward(q, qm, v, vm, batch, lq, lv), cpu.backward(q, qm, v, vm, g, batch, lq, lv).tensors());
            if (first == null) first = t;
            else McanCpuChecks.assertSameBits(first, t, McanCpuChecks.names(op.gradientNames()), threads + " threads");
        }
    }

    /** The question's B·n·Lq² attention maps past a Java array with small inputs: refused by name, before any allocation. */
    @Test void attentionMapsPastAnArrayAreRefusedByName() {
        McanEncoderDecoderCpu cpu = new McanEncoderDecoderCpu(McanEncoderDecoder.random(1, 2, 1, 2, 2, 1, 2, LayerNorm.mcan(), 4));
        int l = 50_000;
        float[] q = new float[2 * l], v = new float[2 * 3], g = new float[2];
        MultiHeadAttentionCpuTest.refused("attention maps", () -> cpu.forward(q, null, v, null, 1, l, 3));
        MultiHeadAttentionCpuTest.refused("attention maps", () -> cpu.backward(q, null, v, null, g, 1, l, 3));
    }
}
