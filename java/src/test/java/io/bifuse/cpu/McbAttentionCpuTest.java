package io.bifuse.cpu;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.bifuse.CompactBilinear;
import io.bifuse.McbAttention;
import io.bifuse.McbAttention.L2Scope;
import io.bifuse.Normalization;
import io.bifuse.Precision;
import io.bifuse.reference.McbAttentionReference;
import io.bifuse.testing.Conditioning;
import io.bifuse.testing.McbAttentionTolerance;
import io.bifuse.testing.Stats;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * The float32 CPU backend against the float64 reference (outer-product count sketches, no FFT).
 *
 * <p>Tolerance: relative L2 <= 1e-5 for the output, the attention maps and every gradient (float32 FFTs
 * of length up to 16000 and float32 GEMMs over up to d1 = 16000 terms land near 1e-6; a wiring mistake is
 * of order 1). Where a tensor exceeds it, {@link McbAttentionTolerance}'s rule (the one check and the GPU
 * tests use): {@code max(1e-5, 2·base)}, base the float64 reference's own change when every operand moves
 * by the float32 step {@code 2^-24·sqrt(longest sum)}: a hidden ReLU whose input is within rounding of 0
 * flips, the exact signed-sqrt derivative {@code 0.5/sqrt|z|} amplifies the float32 error of the smallest
 * |z|, and at the tiniest widths an l2 backward over a block of a few values cancels. {@code logits.bias}'s
 * gradient is exactly zero (written as zeros; the bound is absolute); a reference gradient that is a
 * cancelled sum ({@link Stats#cancelled}) is held to an absolute bound, float32's residue of it. Every size
 * draws {@code Dq·Dv >= 20·d1} and {@code G·Dv·Dq >= 20·d2} products where a signed sqrt is used, so no
 * count-sketch bin is empty (see McbAttentionSuite).
 */
class McbAttentionCpuTest {
    private static final double TOL = 1e-5;

    @ParameterizedTest(name = "B={0} L={1} Dq={2} Dv={3} d1={4} H={5} G={6} d2={7} A={8} {9} {10}")
    @CsvSource({"1,1,40,25,48,4,1,50,3,MAP,pytorch", "2,3,40,30,60,8,2,90,5,CELL,pytorch", "2,3,40,30,60,8,2,90,5,MAP,caffe",
            "3,5,60,40,105,16,3,64,7,CELL,caffe", "2,7,45,33,71,12,2,97,9,MAP,pytorch", "2,6,512,512,4000,64,2,4000,50,MAP,pytorch",
            "1,4,1024,1024,16000,32,2,16000,20,MAP,pytorch", "2,5,1024,1024,16000,24,2,16000,10,CELL,caffe",
            "2,150,64,64,16000,8,2,2000,5,MAP,l2"})
    void matchesTheReference(int batch, int cells, int dq, int dv, int d1, int hd, int g, int d2, int a, L2Scope scope, String norm) {
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        McbAttention op = op(r.nextLong(), batch, cells, dq, dv, d1, hd, g, d2, a, scope, norm);
        float[] q = Stats.gaussian(r, batch * dq), im = Stats.gaussian(r, batch * cells * dv), go = Stats.gaussian(r, batch * a);
        McbAttentionReference.Result fRef = McbAttentionReference.forward(op, q, im, batch, cells);
        McbAttentionReference.Grads gRef = McbAttentionReference.backward(op, q, im, go, batch, cells);
        McbAttentionCpu cpu = new McbAttentionCpu(op);
        McbAttention.Result got = cpu.forwardWithAttention(q, im, batch, cells);
        assertArrayEquals(got.out(), cpu.forward(q, im, batch, cells), "forward and forwardWithAttention");
        List<float[]> tensors = new ArrayList<>(List.of(got.out(), got.attention()));
        tensors.addAll(cpu.backward(q, im, go, batch, cells).tensors());
        List<double[]> ref = new ArrayList<>(List.of(fRef.out(), fRef.attention()));
        ref.addAll(gRef.tensors());
        List<String> names = new ArrayList<>(List.of("out", "attention"));
        names.addAll(op.gradientNames());
        Conditioning cond = McbAttentionTolerance.conditioning(Precision.FP32, op, q, im, go, batch, cells, fRef, gRef, r.nextLong());
        for (int t = 0; t < tensors.size(); t++) {
            boolean cancelled = Stats.cancelled(ref.get(t));
            double e = cancelled ? Stats.norm(tensors.get(t)) : Stats.relativeL2(tensors.get(t), ref.get(t));
            double bound = cancelled ? Math.max(TOL, Stats.CANCELLED_DEVICE) : names.get(t).equals("logits.bias") ? TOL : cond.bound(t, TOL, e);
            assertTrue(e <= bound, names.get(t) + ": relative L2 " + e + " (bound " + bound + " after " + cond.draws() + " draws, seed " + seed + ")");
        }
    }

    @Test
    void bitwiseAcrossRerunsAndThreadCounts() {
        SplittableRandom r = new SplittableRandom(Stats.freshSeed());
        for (Object[] c : new Object[][] {{3, 5, L2Scope.CELL, "caffe", 105}, {2, 150, L2Scope.MAP, "l2", 16000}}) {
            int batch = (int) c[0], cells = (int) c[1], d1 = (int) c[4], dq = 40, dv = 30;
            McbAttention op = op(r.nextLong(), batch, cells, dq, dv, d1, 8, 2, 90, 5, (L2Scope) c[2], (String) c[3]);
            float[] q = Stats.gaussian(r, batch * dq), im = Stats.gaussian(r, batch * cells * dv), go = Stats.gaussian(r, batch * 5);
            McbAttentionCpu one = new McbAttentionCpu(op, CpuRuntime.withThreads(1));
            McbAttention.Result f = one.forwardWithAttention(q, im, batch, cells);
            List<float[]> g = one.backward(q, im, go, batch, cells).tensors();
            assertArrayEquals(f.out(), one.forward(q, im, batch, cells), "rerun");
            assertEachEqual(g, one.backward(q, im, go, batch, cells).tensors(), "rerun");
            for (int t : new int[] {2, 3}) {
                McbAttentionCpu many = new McbAttentionCpu(op, CpuRuntime.withThreads(t));
                McbAttention.Result f2 = many.forwardWithAttention(q, im, batch, cells);
                assertArrayEquals(f.out(), f2.out(), t + " threads: out");
                assertArrayEquals(f.attention(), f2.attention(), t + " threads: attention");
                assertEachEqual(g, many.backward(q, im, go, batch, cells).tensors(), t + " threads");
            }
        }
    }

    /** B·L·H passes a Java array while every input is tiny (Dq = Dv = 1): a named error before any allocation or work. */
    @Test
    void intermediatesTooLargeAreNamed() {
        McbAttention op = McbAttention.random(1, 1, 2, 1 << 16, 1, 2, 1, 7);
        McbAttentionCpu cpu = new McbAttentionCpu(op);
        int cells = 1 << 16;
        for (int call = 0; call < 3; call++) {
            int which = call;
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> {
                if (which == 0) cpu.forward(new float[1], new float[cells], 1, cells);
                else if (which == 1) cpu.forwardWithAttention(new float[1], new float[cells], 1, cells);
                else cpu.backward(new float[1], new float[cells], new float[1], 1, cells);
            });
            assertTrue(e.getMessage().startsWith("McbAttention hidden activations: 65536 × 65536 floats pass"), e.getMessage());
        }
    }

    @Test
    void namesItselfAndKeepsItsRuntime() {
        McbAttention op = McbAttention.random(3, 4, 7, 5, 2, 9, 2, 1);
        assertEquals("cpu-fp32", new McbAttentionCpu(op).backend());
        assertEquals(3, new McbAttentionCpu(op, CpuRuntime.withThreads(3)).runtime().threads());
        assertThrows(IllegalArgumentException.class, () -> new McbAttentionCpu(op, null));
    }

    private static McbAttention op(long seed, int batch, int cells, int dq, int dv, int d1, int hd, int g, int d2, int a, L2Scope scope, String norm) {
        Normalization n = switch (norm) {
            case "pytorch" -> Normalization.pytorch();
            case "caffe" -> Normalization.caffe();
            case "l2" -> new Normalization(false, 0f, Normalization.L2.MAX_NORM, 1e-12f); // no signed sqrt: empty bins are harmless
            default -> throw new IllegalArgumentException(norm);
        };
        McbAttention r = McbAttention.random(dq, dv, d1, hd, g, d2, a, seed);
        CompactBilinear att = r.attention().withNormalization(n), fus = r.fusion().withNormalization(n);
        return McbAttention.of(att, scope, fus, r.weights());
    }

    private static void assertEachEqual(List<float[]> want, List<float[]> got, String what) {
        assertEquals(want.size(), got.size(), what);
        for (int i = 0; i < want.size(); i++) {
            if (want.get(i) == null) assertEquals(null, got.get(i), what);
            else assertArrayEquals(want.get(i), got.get(i), what + ": tensor " + i);
        }
    }
}
