package io.bifuse.cpu;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.bifuse.Linear;
import io.bifuse.MultiHeadAttention;
import io.bifuse.ObjectMask;
import io.bifuse.reference.MultiHeadAttentionReference;
import io.bifuse.testing.Stats;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.Executable;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * The float32 backend against the float64 reference on fresh random inputs. Tolerance 1e-5 relative L2 for
 * the output, the attention maps and every gradient: the longest float32 sums here are GEMMs of at most
 * a few hundred products (typical error sqrt(k)·2^-24 ≈ 1e-6), the softmax's max and sum are in double,
 * and nothing here cancels (the key bias's gradient, which cancels exactly, is written as zeros and
 * compared exactly: the reference writes zeros too). Also: reruns and thread counts bitwise identical,
 * padded keys' exact zeros, and named size errors.
 */
class MultiHeadAttentionCpuTest {
    static final double TOL = 1e-5;

    /** Key padding: none, sample b keeps Lk − b mod 3 keys, sample 0 has none, or keys padded in the middle (non-contiguous). */
    enum Pad { NONE, TAIL, EMPTY, HOLES }

    static ObjectMask mask(Pad pad, int batch, int lk, SplittableRandom r) {
        boolean[] real = new boolean[batch * lk];
        for (int b = 0; b < batch; b++) {
            for (int j = 0; j < lk; j++) {
                real[b * lk + j] = switch (pad) {
                    case NONE -> true;
                    case TAIL -> j < Math.max(1, lk - b % 3);
                    case EMPTY -> b != 0 && j < Math.max(1, lk - b % 3);
                    case HOLES -> j == 0 || r.nextInt(3) != 0;
                };
            }
        }
        return pad == Pad.NONE && r.nextBoolean() ? null : ObjectMask.of(real, batch, lk);
    }

    @ParameterizedTest(name = "B={0} Lq={1} Lk={2} Dq={3} Dk={4} Dv={5} H={6} heads={7} out={8} {9}")
    @CsvSource({"1,1,1,1,1,1,1,1,1,NONE", "2,3,4,5,6,7,6,2,3,TAIL", "3,7,5,8,8,8,12,4,8,EMPTY", "1,9,13,7,11,5,15,3,9,HOLES",
            "4,14,14,16,16,16,16,8,16,TAIL", "2,33,40,64,64,64,128,2,64,HOLES", "2,100,14,512,512,512,512,8,512,EMPTY",
            "2,14,14,512,512,512,512,8,512,TAIL"})
    void matchesTheReference(int batch, int lq, int lk, int dq, int dk, int dv, int hidden, int heads, int out, Pad pad) {
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        MultiHeadAttention op = MultiHeadAttention.of(new MultiHeadAttention.Weights(Linear.random(hidden, dq, true, r.nextLong()),
                Linear.random(hidden, dk, true, r.nextLong()), Linear.random(hidden, dv, lq != 1, r.nextLong()), Linear.random(out, hidden, true, r.nextLong())),
                heads);
        float[] x = Stats.gaussian(r, batch * lq * dq), k = Stats.gaussian(r, batch * lk * dk), v = Stats.gaussian(r, batch * lk * dv);
        float[] g = Stats.gaussian(r, batch * lq * out);
        ObjectMask m = mask(pad, batch, lk, r);
        MultiHeadAttentionCpu cpu = new MultiHeadAttentionCpu(op);
        assertEquals("cpu-fp32", cpu.backend());
        MultiHeadAttentionReference.Result ref = MultiHeadAttentionReference.forward(op, x, k, v, m, batch, lq, lk);
        MultiHeadAttention.Result got = cpu.forwardWithAttention(x, k, v, m, batch, lq, lk);
        String at = " (seed " + seed + ")";
        assertTrue(Stats.relativeL2(got.out(), ref.out()) <= TOL, () -> "out: " + Stats.relativeL2(got.out(), ref.out()) + at);
        assertTrue(Stats.relativeL2(got.attention(), ref.attention()) <= TOL, () -> "attention: " + Stats.relativeL2(got.attention(), ref.attention()) + at);
        assertArrayEquals(got.out(), cpu.forward(x, k, v, m, batch, lq, lk), "forward and forwardWithAttention agree bitwise");
        MultiHeadAttention.Gradients gr = cpu.backward(x, k, v, m, g, batch, lq, lk);
        List<double[]> gRef = MultiHeadAttentionReference.backward(op, x, k, v, m, g, batch, lq, lk).tensors();
        try {
            Stats.assertEachBelow(op.gradientNames(), gr.tensors(), gRef, TOL);
        } catch (AssertionError e) {
            throw new AssertionError(e.getMessage() + at, e);
        }
        double worst = Math.max(Stats.relativeL2(got.out(), ref.out()), Stats.relativeL2(got.attention(), ref.attention()));
        for (int t = 0; t < gRef.size(); t++) worst = Math.max(worst, Stats.relativeL2(gr.tensors().get(t), gRef.get(t)));
        System.out.println(op + " B=" + batch + " Lq=" + lq + " Lk=" + lk + at + ": worst relative L2 " + worst);
        assertArrayEquals(new float[hidden], gr.key().bias(), "the key bias's gradient is exact zeros");
        // padded keys: exactly zero attention (where the sample has a real key) and exactly zero dKey, dValue rows
        int n = op.heads();
        for (int b = 0; b < batch; b++) {
            int real = m == null ? lk : m.count(b);
            for (int j = 0; j < lk; j++) {
                if (m == null || m.isReal(b, j)) continue;
                for (int c = 0; c < dk; c++) assertEquals(0f, gr.dKey()[(b * lk + j) * dk + c], "dKey of a padded key");
                if (real == 0) continue; // no real key: uniform attention, the values still get their share
                for (int c = 0; c < dv; c++) assertEquals(0f, gr.dValue()[(b * lk + j) * dv + c], "dValue of a padded key");
                for (int h = 0; h < n; h++) for (int i = 0; i < lq; i++) assertEquals(0f, got.attention()[((b * n + h) * lq + i) * lk + j]);
            }
            if (real == 0) for (int e = 0; e < n * lq * lk; e++) assertEquals((float) (1.0 / lk), got.attention()[b * n * lq * lk + e], "uniform");
        }
        // reruns are bitwise identical
        assertArrayEquals(got.attention(), cpu.forwardWithAttention(x, k, v, m, batch, lq, lk).attention());
        MultiHeadAttention.Gradients again = cpu.backward(x, k, v, m, g, batch, lq, lk);
        for (int t = 0; t < gr.tensors().size(); t++) assertArrayEquals(gr.tensors().get(t), again.tensors().get(t), op.gradientNames().get(t));
    }

    /** Sizes where the GEMMs cut C into several tiles and the (sample, head) pairs spread over the threads. */
    @Test void everyThreadCountGivesTheSameBits() {
        SplittableRandom r = new SplittableRandom(Stats.freshSeed());
        int batch = 5, lq = 37, lk = 41, dim = 128;
        MultiHeadAttention op = MultiHeadAttention.random(dim, dim, 4, r.nextLong());
        float[] x = Stats.gaussian(r, batch * lq * dim), k = Stats.gaussian(r, batch * lk * dim), g = Stats.gaussian(r, batch * lq * dim);
        ObjectMask m = mask(Pad.EMPTY, batch, lk, r);
        MultiHeadAttention.Result f1 = null;
        List<float[]> g1 = null;
        for (int threads : new int[] {1, 2, 3}) {
            MultiHeadAttentionCpu cpu = new MultiHeadAttentionCpu(op, CpuRuntime.withThreads(threads));
            MultiHeadAttention.Result f = cpu.forwardWithAttention(x, k, k, m, batch, lq, lk);
            List<float[]> gt = cpu.backward(x, k, k, m, g, batch, lq, lk).tensors();
            if (f1 == null) {
                f1 = f;
                g1 = gt;
                continue;
            }
            assertArrayEquals(f1.out(), f.out(), threads + " threads: out");
            assertArrayEquals(f1.attention(), f.attention(), threads + " threads: attention");
            for (int t = 0; t < gt.size(); t++) assertArrayEquals(g1.get(t), gt.get(t), threads + " threads: " + op.gradientNames().get(t));
        }
    }

    /** B·n·Lq·Lk past a Java array with small inputs: the attention maps' size is refused by name before any allocation. */
    @Test void attentionMapsPastAnArrayAreRefusedByName() {
        MultiHeadAttention op = MultiHeadAttention.random(1, 2, 2, 7);
        MultiHeadAttentionCpu cpu = new MultiHeadAttentionCpu(op);
        int l = 40_000; // 2 heads · 40000² = 3.2e9 maps
        float[] x = new float[l];
        refused("attention maps", () -> cpu.forward(x, x, x, null, 1, l, l));
        refused("attention maps", () -> cpu.forwardWithAttention(x, x, x, null, 1, l, l));
        refused("attention maps", () -> cpu.backward(x, x, x, null, x, 1, l, l));
    }

    @Test void aNullRuntimeOrOpIsRefused() {
        refused("runtime", () -> new MultiHeadAttentionCpu(MultiHeadAttention.random(2, 2, 1, 1), null));
        refused("op", () -> new MultiHeadAttentionCpu(null, CpuRuntime.withThreads(1)));
    }

    static void refused(String name, Executable call) {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, call);
        assertTrue(e.getMessage().startsWith(name + ":"), () -> "expected a message starting with '" + name + ":', got: " + e.getMessage());
    }
}
