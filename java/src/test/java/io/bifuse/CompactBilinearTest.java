package io.bifuse;

import io.bifuse.cpu.CompactBilinearCpu;
import static org.junit.jupiter.api.Assertions.*;

import io.bifuse.reference.CompactBilinearReference;
import io.bifuse.testing.CompactBilinearTolerance;
import io.bifuse.testing.Stats;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * The CPU backend (count sketch + float32 FFT) against the definition-based reference, and the API's
 * argument checks. Tolerances: {@link CompactBilinearTolerance}'s rule (relative L2 1e-5, raised through the
 * signed sqrt to 10× the float64 reference's own error at float32-FFT-sized noise in z; backward rows
 * with the exact signed-sqrt derivative only where every bin is populated); CompactBilinearCpuTest
 * holds the backend to it at more sizes.
 */
class CompactBilinearTest {
    static final double TOL = CompactBilinearTolerance.TOLERANCE;

    @ParameterizedTest(name = "B={0} Dx={1} Dy={2} d={3}")
    @CsvSource({"1,1,1,1", "3,1,5,2", "2,5,3,1", "4,17,9,16", "3,40,30,31", "2,64,64,15999", "2,100,90,15838", "2,2048,2048,16000", "1,300,200,16001"})
    void cpuMatchesReference(int batch, int dx, int dy, int d) {
        SplittableRandom r = new SplittableRandom(batch * 31L + d);
        for (Normalization n : new Normalization[] {Normalization.NONE, Normalization.pytorch(), Normalization.caffe()}) {
            CompactBilinear op = CompactBilinear.seeded(dx, dy, d, r.nextLong()).withNormalization(n);
            float[] x = Stats.gaussian(r, batch * dx), y = Stats.gaussian(r, batch * dy), g = Stats.gaussian(r, batch * d);
            double[] zRef = CompactBilinearReference.forward(op, x, y, batch);
            double fTol = CompactBilinearTolerance.forwardTolerance(op, x, y, batch, zRef, r.nextLong());
            double e = Stats.relativeL2(new CompactBilinearCpu(op).forward(x, y, batch), zRef);
            assertTrue(e <= fTol, n + " forward error " + e + " (bound " + fTol + ")");
            if (!CompactBilinearTolerance.backwardComparable(n, dx, dy, d)) continue; // ill-conditioned: see CompactBilinearTolerance
            Gradients cg = new CompactBilinearCpu(op).backward(x, y, g, batch);
            double[][] ref = CompactBilinearReference.backward(op, x, y, g, batch);
            double bTol = CompactBilinearTolerance.backwardTolerance(op, x, y, g, batch, ref, r.nextLong());
            assertTrue(Stats.relativeL2(cg.dx(), ref[0]) <= bTol, n + " dx error " + Stats.relativeL2(cg.dx(), ref[0]) + " (bound " + bTol + ")");
            assertTrue(Stats.relativeL2(cg.dy(), ref[1]) <= bTol, n + " dy error " + Stats.relativeL2(cg.dy(), ref[1]) + " (bound " + bTol + ")");
        }
    }

    @Test void seededHashesFollowTheDocumentedGenerator() {
        CompactBilinear op = CompactBilinear.seeded(4, 3, 10, 42);
        SplitMix64 r = new SplitMix64(42);
        int[] h1 = new int[4];
        for (int i = 0; i < 4; i++) h1[i] = (int) Long.remainderUnsigned(r.next(), 10);
        assertArrayEquals(h1, op.h1());
        for (int i = 0; i < 4; i++) assertEquals((r.next() >>> 63) == 0 ? 1f : -1f, op.s1()[i]);
        assertEquals(op, CompactBilinear.seeded(4, 3, 10, 42));
        assertNotEquals(op, CompactBilinear.seeded(4, 3, 10, 43));
    }

    @Test void seededHashesMatchThePythonPeer() {
        // benchmarks/python/compact_bilinear_peer.py's bifuse_hashes(4, 3, 10, 42) prints exactly these.
        CompactBilinear op = CompactBilinear.seeded(4, 3, 10, 42);
        assertArrayEquals(new int[] {3, 1, 8, 4}, op.h1());
        assertArrayEquals(new float[] {1, -1, 1, -1}, op.s1());
        assertArrayEquals(new int[] {5, 4, 7}, op.h2());
        assertArrayEquals(new float[] {1, -1, -1}, op.s2());
    }

    @Test void splitMix64KnownValues() {
        // SplitMix64 reference outputs for seed 0 (the published test vector of the algorithm).
        SplitMix64 r = new SplitMix64(0);
        assertEquals(0xE220A8397B1DCDAFL, r.next());
        assertEquals(0x6E789E6AA1B965F4L, r.next());
        assertEquals(0x06C45D188009454FL, r.next());
    }

    @Test void hashesAreCopiedIn() {
        int[] h = {0, 1};
        float[] s = {1, -1};
        CompactBilinear op = CompactBilinear.fromHashes(2, h, s, h, s);
        h[0] = 1;
        s[0] = -1;
        assertArrayEquals(new int[] {0, 1}, op.h1());
        op.h1()[0] = 1; // a getter's copy
        assertArrayEquals(new int[] {0, 1}, op.h1());
    }

    @Test void badHashesAreRejectedByName() {
        int[] h = {0, 1};
        float[] s = {1, -1};
        assertMessage("h1[1]: expected a value in [0, 1)", () -> CompactBilinear.fromHashes(1, h, s, new int[] {0}, new float[] {1}));
        assertMessage("h2[0]: expected a value in [0, 2), got -1", () -> CompactBilinear.fromHashes(2, h, s, new int[] {-1}, new float[] {1}));
        assertMessage("s1[1]: expected +1 or -1, got 0.5", () -> CompactBilinear.fromHashes(2, h, new float[] {1, 0.5f}, h, s));
        assertMessage("s2: expected 2 signs", () -> CompactBilinear.fromHashes(2, h, s, h, new float[] {1}));
        assertMessage("h1: expected an int array", () -> CompactBilinear.fromHashes(2, null, s, h, s));
        assertMessage("s2: expected a float array", () -> CompactBilinear.fromHashes(2, h, s, h, null));
        assertMessage("d: expected >= 1, got 0", () -> CompactBilinear.fromHashes(0, h, s, h, s));
        assertMessage("h1: expected at least one entry", () -> CompactBilinear.fromHashes(2, new int[0], new float[0], h, s));
        assertMessage("s1[0]: expected +1 or -1, got NaN", () -> CompactBilinear.fromHashes(2, h, new float[] {Float.NaN, 1}, h, s));
        assertMessage("dx: expected >= 1, got 0", () -> CompactBilinear.seeded(0, 3, 10, 1));
    }

    @Test void badInputsAreRejectedByName() {
        CompactBilinear op = CompactBilinear.seeded(3, 2, 5, 1);
        float[] x = new float[6], y = new float[4], g = new float[10];
        assertMessage("batch: expected >= 1, got 0", () -> new CompactBilinearCpu(op).forward(x, y, 0));
        assertMessage("x: expected 2 × 3 = 6 floats, got 5", () -> new CompactBilinearCpu(op).forward(new float[5], y, 2));
        assertMessage("y: expected 2 × 2 = 4 floats, got 6", () -> new CompactBilinearCpu(op).forward(x, new float[6], 2));
        assertMessage("x: expected 2 × 3 floats, got null", () -> new CompactBilinearCpu(op).forward(null, y, 2));
        assertMessage("gradOut: expected 2 × 5 = 10 floats, got 9", () -> new CompactBilinearCpu(op).backward(x, y, new float[9], 2));
        assertMessage("y: expected 3 × 2 = 6 floats, got 4", () -> new CompactBilinearCpu(op).backward(new float[9], y, new float[15], 3));
        assertDoesNotThrow(() -> new CompactBilinearCpu(op).backward(x, y, g, 2));
        assertMessage("normalization: expected a Normalization", () -> op.withNormalization(null));
    }

    @Test void badNormalizationsAreRejectedByName() {
        assertMessage("l2Eps: expected a finite value >= 0, got -1.0", () -> new Normalization(false, 0, Normalization.L2.MAX_NORM, -1));
        assertMessage("signedSqrtGradEps: expected a finite value >= 0, got NaN", () -> new Normalization(true, Float.NaN, Normalization.L2.NONE, 0));
        assertMessage("l2: expected one of", () -> new Normalization(true, 0, null, 0));
        assertMessage("l2Eps: SUM_SQUARES needs eps > 0", () -> new Normalization(true, 0, Normalization.L2.SUM_SQUARES, 0));
    }

    @Test void forwardIsLinearInEachInput() {
        // A property independent of the reference: Φ(a·x1 + x2, y) = a·Φ(x1, y) + Φ(x2, y).
        SplittableRandom r = new SplittableRandom(3);
        CompactBilinear op = CompactBilinear.seeded(50, 40, 997, 8);
        float[] x1 = Stats.gaussian(r, 50), x2 = Stats.gaussian(r, 50), y = Stats.gaussian(r, 40), mix = new float[50];
        for (int i = 0; i < 50; i++) mix[i] = 2 * x1[i] + x2[i];
        float[] a = new CompactBilinearCpu(op).forward(x1, y, 1), b = new CompactBilinearCpu(op).forward(x2, y, 1), m = new CompactBilinearCpu(op).forward(mix, y, 1);
        double[] expect = new double[m.length];
        for (int i = 0; i < m.length; i++) expect[i] = 2.0 * a[i] + b[i];
        assertTrue(Stats.relativeL2(m, expect) < TOL); // three float32 FFT routes, each ~3e-7
    }

    static void assertMessage(String expected, org.junit.jupiter.api.function.Executable call) {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, call);
        assertTrue(e.getMessage().contains(expected), "message '" + e.getMessage() + "' lacks '" + expected + "'");
    }
}
