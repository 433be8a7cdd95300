package io.bifuse.cpu;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.bifuse.BanPooling;
import io.bifuse.ObjectMask;
import io.bifuse.reference.BanPoolingReference;
import io.bifuse.testing.Stats;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * The float32 {@link BanPoolingCpu} against the float64 reference on fresh random inputs, its
 * determinism (reruns, thread counts) and its size errors.
 *
 * <p>Tolerance 1e-5 relative L2 on the pooled output and on {@code da}, {@code dx}, {@code dy} (the
 * issue's bound): every output is a float32 GEMM sum over N_b, M or K' products (at most 1280 here:
 * sqrt(1280)·2⁻²⁴ ≈ 2e-6 relative in the worst case) followed by at most one short float sum (the M
 * tokens, the k units of a group). Nothing cancels systematically with Gaussian inputs, so no conditioning
 * baseline is needed.
 */
class BanPoolingCpuTest {
    static final double TOL = 1e-5;

    @ParameterizedTest(name = "B={0} N={1} M={2} K'={3} k={4} mask={5}")
    @CsvSource({"1,1,1,1,1,none", "1,9,14,30,3,counts", "3,5,2,7,1,holes", "4,17,3,12,4,holes", "2,10,14,128,2,none", "5,6,1,9,9,counts",
        "8,100,14,1280,1,counts"})
    void matchesTheFloat64Reference(int batch, int objects, int tokens, int width, int group, String maskKind) {
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        BanPooling op = BanPooling.of(width, group);
        float[] a = Stats.gaussian(r, batch * objects * tokens), x = Stats.gaussian(r, batch * objects * width);
        float[] y = Stats.gaussian(r, batch * tokens * width), go = Stats.gaussian(r, batch * op.outWidth());
        ObjectMask mask = BanAttentionCpuTest.mask(maskKind, r, x, batch, objects, width);
        BanPoolingCpu cpu = new BanPoolingCpu(op);
        String at = " (seed " + seed + ")";
        double ef = Stats.relativeL2(cpu.forward(a, x, y, mask, batch, objects, tokens), BanPoolingReference.forward(op, a, x, y, mask, batch, objects, tokens));
        assertTrue(ef <= TOL, "forward: relative L2 " + ef + at);
        BanPooling.Gradients g = cpu.backward(a, x, y, mask, go, batch, objects, tokens);
        BanPoolingReference.Grads rg = BanPoolingReference.backward(op, a, x, y, mask, go, batch, objects, tokens);
        List<double[]> ref = List.of(rg.da(), rg.dx(), rg.dy());
        StringBuilder seen = new StringBuilder("forward " + ef);
        for (int t = 0; t < 3; t++) seen.append(", ").append(BanPooling.Gradients.NAMES.get(t)).append(' ').append(Stats.relativeL2(g.tensors().get(t), ref.get(t)));
        System.out.println("BanPoolingCpu B=" + batch + " N=" + objects + " M=" + tokens + " K'=" + width + " k=" + group + ": " + seen);
        Stats.assertEachBelow(BanPooling.Gradients.NAMES, g.tensors(), ref, TOL);
        if (mask != null) { // padded objects: zero rows of da and dx, exactly
            for (int b = 0; b < batch; b++) {
                for (int i = 0; i < objects; i++) {
                    if (mask.isReal(b, i)) continue;
                    for (int j = 0; j < tokens; j++) assertEquals(0f, g.da()[(b * objects + i) * tokens + j], "padded da" + at);
                    for (int c = 0; c < width; c++) assertEquals(0f, g.dx()[(b * objects + i) * width + c], "padded dx" + at);
                }
            }
        }
    }

    /** NaN in a padded object's attention or features is never read. */
    @Test void paddedObjectsAreNeverRead() {
        SplittableRandom r = new SplittableRandom(Stats.freshSeed());
        int b = 3, n = 6, m = 4, w = 10;
        BanPooling op = BanPooling.of(w, 2);
        float[] a = Stats.gaussian(r, b * n * m), x = Stats.gaussian(r, b * n * w), y = Stats.gaussian(r, b * m * w), go = Stats.gaussian(r, b * 5);
        ObjectMask mask = ObjectMask.of(new boolean[] {true, false, true, true, false, false, false, false, false, false, false, false,
            false, true, true, false, true, true}, b, n);
        double[] want = BanPoolingReference.forward(op, a, x, y, mask, b, n, m);
        for (int bb = 0; bb < b; bb++) {
            for (int i = 0; i < n; i++) {
                if (mask.isReal(bb, i)) continue;
                java.util.Arrays.fill(a, (bb * n + i) * m, (bb * n + i + 1) * m, Float.NaN);
                java.util.Arrays.fill(x, (bb * n + i) * w, (bb * n + i + 1) * w, Float.NaN);
            }
        }
        BanPoolingCpu cpu = new BanPoolingCpu(op);
        assertTrue(Stats.relativeL2(cpu.forward(a, x, y, mask, b, n, m), want) <= TOL);
        for (float[] t : cpu.backward(a, x, y, mask, go, b, n, m).tensors()) for (float v : t) assertTrue(Float.isFinite(v));
    }

    /** Same results on a second call (after another size dirtied the scratch) and from a fresh backend. */
    @Test void rerunsAreBitwiseIdentical() {
        SplittableRandom r = new SplittableRandom(Stats.freshSeed());
        int b = 5, n = 11, m = 6, w = 40;
        BanPooling op = BanPooling.of(w, 4);
        float[] a = Stats.gaussian(r, b * n * m), x = Stats.gaussian(r, b * n * w), y = Stats.gaussian(r, b * m * w), go = Stats.gaussian(r, b * 10);
        ObjectMask mask = BanAttentionCpuTest.mask("holes", r, x, b, n, w);
        BanPoolingCpu cpu = new BanPoolingCpu(op);
        float[] f1 = cpu.forward(a, x, y, mask, b, n, m);
        List<float[]> g1 = cpu.backward(a, x, y, mask, go, b, n, m).tensors();
        cpu.backward(Stats.gaussian(r, 2 * 3 * 9), Stats.gaussian(r, 2 * 3 * w), Stats.gaussian(r, 2 * 9 * w), null, Stats.gaussian(r, 2 * 10), 2, 3, 9);
        for (BanPoolingCpu c : new BanPoolingCpu[] {cpu, new BanPoolingCpu(op)}) {
            assertArrayEquals(f1, c.forward(a, x, y, mask, b, n, m));
            BanAttentionCpuTest.assertTensorsEqual(g1, c.backward(a, x, y, mask, go, b, n, m).tensors());
        }
    }

    /** 1, 2 and 3 threads give bitwise the same output and gradients. */
    @ParameterizedTest(name = "B={0} N={1}")
    @CsvSource({"7,13", "1,100", "70,5"})
    void threadCountsAgreeBitwise(int b, int n) {
        SplittableRandom r = new SplittableRandom(Stats.freshSeed());
        int m = 14, w = b == 1 ? 1280 : 64;
        BanPooling op = BanPooling.of(w, 2);
        float[] a = Stats.gaussian(r, b * n * m), x = Stats.gaussian(r, b * n * w), y = Stats.gaussian(r, b * m * w), go = Stats.gaussian(r, b * w / 2);
        ObjectMask mask = BanAttentionCpuTest.mask("holes", r, x, b, n, w);
        BanPoolingCpu one = new BanPoolingCpu(op, CpuRuntime.withThreads(1));
        float[] f1 = one.forward(a, x, y, mask, b, n, m);
        List<float[]> g1 = one.backward(a, x, y, mask, go, b, n, m).tensors();
        for (int threads : new int[] {2, 3}) {
            BanPoolingCpu c = new BanPoolingCpu(op, CpuRuntime.withThreads(threads));
            assertArrayEquals(f1, c.forward(a, x, y, mask, b, n, m), threads + " threads");
            BanAttentionCpuTest.assertTensorsEqual(g1, c.backward(a, x, y, mask, go, b, n, m).tensors());
        }
    }

    /**
     * The backend's batch-dependent arrays are the outputs, which the descriptor bounds (per-sample scratch is
     * M × K'), so a batch too large fails by the descriptor's named size check before any array is read or
     * allocated.
     */
    @Test void aBatchTooLargeIsANamedError() {
        BanPoolingCpu cpu = new BanPoolingCpu(BanPooling.of(1280, 1));
        float[] tiny = new float[4];
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> cpu.forward(tiny, tiny, tiny, null, 1 << 15, 100, 14));
        assertTrue(e.getMessage().startsWith("batch: expected B·N·M, B·N·K' and B·M·K' < 2^31"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> cpu.backward(tiny, tiny, tiny, null, tiny, 1 << 20, 1 << 6, 1 << 6));
        assertTrue(e.getMessage().startsWith("batch: expected"), e.getMessage());
    }

    @Test void namesItselfCpuFp32() {
        BanPoolingCpu cpu = new BanPoolingCpu(BanPooling.of(4, 2), CpuRuntime.withThreads(3));
        assertEquals("cpu-fp32", cpu.backend());
        assertEquals(3, cpu.runtime().threads());
        assertEquals("cpu-fp32", new BanPoolingCpu(BanPooling.of(4, 2)).backend());
        assertThrows(IllegalArgumentException.class, () -> new BanPoolingCpu(null));
    }
}
