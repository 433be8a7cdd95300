package io.bifuse.cpu;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.bifuse.testing.Stats;
import java.util.Arrays;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * The CPU GEMM against a float64 product, both engines (the Java one always; the system BLAS where one
 * is installed). Tolerance 1e-6 relative L2: a float32 sum of k products has error about
 * sqrt(k)·2^-24 relative, below 1e-6 for every k here (<= 600).
 */
class SgemmTest {
    private static final double TOL = 1e-6;

    private static double[] reference(boolean ta, boolean tb, int m, int n, int k, float alpha, float[] a, int ao, int lda, float[] b, int bo,
            int ldb, float beta, float[] c0, int co, int ldc) {
        double[] c = new double[c0.length];
        for (int i = 0; i < c0.length; i++) c[i] = c0[i];
        for (int i = 0; i < m; i++) {
            for (int j = 0; j < n; j++) {
                double s = 0;
                for (int p = 0; p < k; p++) {
                    double x = ta ? a[ao + p * lda + i] : a[ao + i * lda + p];
                    double y = tb ? b[bo + j * ldb + p] : b[bo + p * ldb + j];
                    s += x * y;
                }
                int at = co + i * ldc + j;
                c[at] = alpha * s + (beta == 0 ? 0 : beta * c0[at]);
            }
        }
        return c;
    }

    @ParameterizedTest(name = "ta={0} tb={1} m={2} n={3} k={4} beta={5}")
    @CsvSource({
        "false,false,1,1,1,0", "false,true,3,5,7,0", "true,false,17,9,300,1", "true,true,33,257,5,0.5", "false,true,130,260,259,0",
        "false,false,5,600,513,0", "true,true,129,3,600,0", "false,true,64,1,1,0", "true,false,1,300,77,-2"})
    void matchesTheFloat64Product(boolean ta, boolean tb, int m, int n, int k, float beta) {
        SplittableRandom r = new SplittableRandom(m * 31L + n * 7L + k);
        int lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 1, ldc = n + 2, ao = 5, bo = 2, co = 7;
        float[] a = Stats.gaussian(r, ao + (ta ? k : m) * lda), b = Stats.gaussian(r, bo + (tb ? n : k) * ldb);
        float[] c = Stats.gaussian(r, co + m * ldc);
        if (beta == 0) Arrays.fill(c, Float.NaN); // beta = 0 must not read C
        float alpha = 0.75f;
        double[] want = reference(ta, tb, m, n, k, alpha, a, ao, lda, b, bo, ldb, beta, c, co, ldc);
        float[] java = c.clone();
        JavaSgemm.gemm(ta, tb, m, n, k, alpha, a, ao, lda, b, bo, ldb, beta, java, co, ldc);
        assertClose(want, java, co, m, n, ldc, "java");
        for (int threads : new int[] {1, 2, 3}) {
            float[] got = c.clone();
            Sgemm.gemm(CpuRuntime.withThreads(threads), ta, tb, m, n, k, alpha, a, ao, lda, b, bo, ldb, beta, got, co, ldc);
            assertClose(want, got, co, m, n, ldc, Sgemm.describe() + " " + threads + " threads");
        }
    }

    /** Only the m × n block is written: the padding between rows and the offset keep their values. */
    private static void assertClose(double[] want, float[] got, int co, int m, int n, int ldc, String what) {
        double num = 0, den = 0;
        for (int i = 0; i < got.length; i++) {
            int rel = i - co;
            boolean inside = rel >= 0 && rel / ldc < m && rel % ldc < n;
            if (!inside) {
                assertTrue(Double.isNaN(want[i]) ? Float.isNaN(got[i]) : got[i] == (float) want[i], what + ": wrote outside C at " + i);
                continue;
            }
            assertTrue(Float.isFinite(got[i]), what + ": element " + i + " is " + got[i]);
            num += (got[i] - want[i]) * (got[i] - want[i]);
            den += want[i] * want[i];
        }
        double e = Math.sqrt(num / Math.max(den, 1e-300));
        assertTrue(e <= TOL, what + ": relative L2 " + e + " > " + TOL);
    }

    /** Tiles share no sum: every thread count and the Java engine's own blocking give the same bits. */
    @Test void bitwiseTheSameForEveryThreadCount() {
        SplittableRandom r = new SplittableRandom(3);
        int m = 300, n = 700, k = 530;
        float[] a = Stats.gaussian(r, m * k), b = Stats.gaussian(r, n * k);
        float[] one = new float[m * n];
        Sgemm.gemm(CpuRuntime.withThreads(1), false, true, m, n, k, 1f, a, 0, k, b, 0, k, 0f, one, 0, n);
        for (int threads : new int[] {2, 3, 8}) {
            float[] got = new float[m * n];
            Sgemm.gemm(CpuRuntime.withThreads(threads), false, true, m, n, k, 1f, a, 0, k, b, 0, k, 0f, got, 0, n);
            assertArrayEquals(one, got, threads + " threads");
        }
        float[] whole = new float[m * n];
        JavaSgemm.gemm(false, true, m, n, k, 1f, a, 0, k, b, 0, k, 0f, whole, 0, n);
        if (!Sgemm.usesBlas()) assertArrayEquals(one, whole, "one untiled call");
    }

    @Test void namesItsEngine() {
        String d = CpuRuntime.gemm();
        assertTrue(d.startsWith("java (") || d.contains("("), d);
        assertEquals(Sgemm.usesBlas(), !d.startsWith("java ("), d);
    }

    @Test void rejectsOperandsThatDoNotFit() {
        float[] a = new float[6], b = new float[6], c = new float[4];
        var e = assertThrows(IllegalArgumentException.class,
                () -> Sgemm.gemm(CpuRuntime.defaults(), false, false, 2, 2, 4, 1f, a, 0, 4, b, 0, 2, 0f, c, 0, 2));
        assertTrue(e.getMessage().contains("A (2 × 4"), e.getMessage());
    }

    @Test void threadCountIsChecked() {
        var e = assertThrows(IllegalArgumentException.class, () -> CpuRuntime.withThreads(0));
        assertTrue(e.getMessage().startsWith("threads: expected >= 1"), e.getMessage());
    }

    @Test void threadCountFromTheEnvironment() {
        assertEquals(Runtime.getRuntime().availableProcessors(), CpuRuntime.defaultThreads(null));
        assertEquals(3, CpuRuntime.defaultThreads(" 3"));
        var e = assertThrows(IllegalStateException.class, () -> CpuRuntime.defaultThreads("0"));
        assertTrue(e.getMessage().startsWith("BIFUSE_CPU_THREADS: expected a thread count"), e.getMessage());
    }
}
