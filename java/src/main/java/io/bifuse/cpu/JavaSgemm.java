package io.bifuse.cpu;

/**
 * bifuse's own float32 GEMM (the contract is {@link Sgemm}'s), single-threaded: {@link Sgemm} shares
 * tiles of C between threads.
 *
 * <p>Blocking: {@code op(B)} is packed, {@code KC} rows by {@code NC} columns at a time, into a per-thread
 * panel, and {@code MC} rows of C are accumulated in per-thread rows; {@code A} is read as scalars with
 * {@code alpha} folded in. The micro-kernel updates four accumulator rows from four panel rows: one loop
 * over columns, four panel loads, four accumulator loads and stores and sixteen fused multiply-adds per
 * column. Panel and accumulator rows are separate arrays indexed from 0 because HotSpot 25's superword
 * vectorizes a loop only when every array in it is indexed by the same expression (it cannot prove that
 * {@code c[c0 + j]} and {@code p[b0 + j]} never overlap): with offsets the same loop runs 5-8x slower.
 *
 * <p>Each element of C sums over k in one fixed order ({@code KC}-blocks in order, within a block in
 * steps of four, each step {@code fma(a3, b3, fma(a2, b2, fma(a1, b1, fma(a0, b0, c))))}, then the
 * block's remainder one by one), whatever the tile's position or size: a product is bitwise the same
 * however {@link Sgemm} cuts it.
 */
final class JavaSgemm {
    // Measured on the 2-core AMD EPYC (AVX2) developer machine at 512 × 1200 × 2400, one thread: 128/512/128
    // ran at 43-46 GFLOP/s where 256/256/64 ran at 26 (the wider panel row amortizes the loop's overhead).
    static final int KC = 128, NC = 512, MC = 128;

    /** One thread's panel and accumulators (a backend's threads each get their own, once). */
    private static final class Work {
        final float[][] panel = new float[KC][NC], acc = new float[MC][NC];
    }

    private static final ThreadLocal<Work> WORK = ThreadLocal.withInitial(Work::new);

    private JavaSgemm() {}

    static void gemm(boolean transA, boolean transB, int m, int n, int k, float alpha, float[] a, int aOff, int lda, float[] b, int bOff,
            int ldb, float beta, float[] c, int cOff, int ldc) {
        if (k == 0 || alpha == 0f) {
            for (int i = 0; i < m; i++) scale(c, cOff + i * ldc, n, beta);
            return;
        }
        Work w = WORK.get();
        float[][] panel = w.panel, acc = w.acc;
        // A's element (i, p) is a[aOff + i*ai + p*ap].
        int ai = transA ? 1 : lda, ap = transA ? lda : 1;
        for (int jc = 0; jc < n; jc += NC) {
            int nb = Math.min(NC, n - jc);
            for (int ic = 0; ic < m; ic += MC) {
                int mb = Math.min(MC, m - ic);
                for (int i = 0; i < mb; i++) {
                    int r = cOff + (ic + i) * ldc + jc;
                    if (beta == 0f) java.util.Arrays.fill(acc[i], 0, nb, 0f);
                    else for (int j = 0; j < nb; j++) acc[i][j] = beta * c[r + j];
                }
                for (int pc = 0; pc < k; pc += KC) {
                    int kb = Math.min(KC, k - pc);
                    pack(transB, b, bOff, ldb, pc, kb, jc, nb, panel);
                    int i = 0;
                    for (; i + 4 <= mb; i += 4) rows4(panel, kb, nb, alpha, a, aOff + (ic + i) * ai + pc * ap, ai, ap, acc, i);
                    for (; i < mb; i++) row1(panel, kb, nb, alpha, a, aOff + (ic + i) * ai + pc * ap, ap, acc[i]);
                }
                for (int i = 0; i < mb; i++) System.arraycopy(acc[i], 0, c, cOff + (ic + i) * ldc + jc, nb);
            }
        }
    }

    private static void scale(float[] c, int r, int n, float beta) {
        if (beta == 0f) java.util.Arrays.fill(c, r, r + n, 0f);
        else if (beta != 1f) for (int j = 0; j < n; j++) c[r + j] *= beta;
    }

    /** {@code panel[p][j] = op(B)[pc + p, jc + j]}. */
    private static void pack(boolean transB, float[] b, int bOff, int ldb, int pc, int kb, int jc, int nb, float[][] panel) {
        if (!transB) {
            for (int p = 0; p < kb; p++) System.arraycopy(b, bOff + (pc + p) * ldb + jc, panel[p], 0, nb);
            return;
        }
        // op(B)[p, j] = B[j, p]: walk B's rows (unit stride) and scatter into the panel's columns.
        for (int j = 0; j < nb; j++) {
            int src = bOff + (jc + j) * ldb + pc;
            for (int p = 0; p < kb; p++) panel[p][j] = b[src + p];
        }
    }

    private static void rows4(float[][] panel, int kb, int nb, float alpha, float[] a, int a0, int ai, int ap, float[][] acc, int i) {
        float[] d0 = acc[i], d1 = acc[i + 1], d2 = acc[i + 2], d3 = acc[i + 3];
        int p = 0;
        for (; p + 4 <= kb; p += 4) {
            int x = a0 + p * ap;
            float a00 = alpha * a[x], a01 = alpha * a[x + ap], a02 = alpha * a[x + 2 * ap], a03 = alpha * a[x + 3 * ap];
            x += ai;
            float a10 = alpha * a[x], a11 = alpha * a[x + ap], a12 = alpha * a[x + 2 * ap], a13 = alpha * a[x + 3 * ap];
            x += ai;
            float a20 = alpha * a[x], a21 = alpha * a[x + ap], a22 = alpha * a[x + 2 * ap], a23 = alpha * a[x + 3 * ap];
            x += ai;
            float a30 = alpha * a[x], a31 = alpha * a[x + ap], a32 = alpha * a[x + 2 * ap], a33 = alpha * a[x + 3 * ap];
            float[] p0 = panel[p], p1 = panel[p + 1], p2 = panel[p + 2], p3 = panel[p + 3];
            for (int j = 0; j < nb; j++) {
                float x0 = p0[j], x1 = p1[j], x2 = p2[j], x3 = p3[j];
                d0[j] = Math.fma(a03, x3, Math.fma(a02, x2, Math.fma(a01, x1, Math.fma(a00, x0, d0[j]))));
                d1[j] = Math.fma(a13, x3, Math.fma(a12, x2, Math.fma(a11, x1, Math.fma(a10, x0, d1[j]))));
                d2[j] = Math.fma(a23, x3, Math.fma(a22, x2, Math.fma(a21, x1, Math.fma(a20, x0, d2[j]))));
                d3[j] = Math.fma(a33, x3, Math.fma(a32, x2, Math.fma(a31, x1, Math.fma(a30, x0, d3[j]))));
            }
        }
        for (; p < kb; p++) {
            int x = a0 + p * ap;
            float a00 = alpha * a[x], a10 = alpha * a[x + ai], a20 = alpha * a[x + 2 * ai], a30 = alpha * a[x + 3 * ai];
            float[] p0 = panel[p];
            for (int j = 0; j < nb; j++) {
                float x0 = p0[j];
                d0[j] = Math.fma(a00, x0, d0[j]);
                d1[j] = Math.fma(a10, x0, d1[j]);
                d2[j] = Math.fma(a20, x0, d2[j]);
                d3[j] = Math.fma(a30, x0, d3[j]);
            }
        }
    }

    /** One row of C: the same order of operations as a row of {@link #rows4}. */
    private static void row1(float[][] panel, int kb, int nb, float alpha, float[] a, int a0, int ap, float[] d0) {
        int p = 0;
        for (; p + 4 <= kb; p += 4) {
            int x = a0 + p * ap;
            float a00 = alpha * a[x], a01 = alpha * a[x + ap], a02 = alpha * a[x + 2 * ap], a03 = alpha * a[x + 3 * ap];
            float[] p0 = panel[p], p1 = panel[p + 1], p2 = panel[p + 2], p3 = panel[p + 3];
            for (int j = 0; j < nb; j++) d0[j] = Math.fma(a03, p3[j], Math.fma(a02, p2[j], Math.fma(a01, p1[j], Math.fma(a00, p0[j], d0[j]))));
        }
        for (; p < kb; p++) {
            float a00 = alpha * a[a0 + p * ap];
            float[] p0 = panel[p];
            for (int j = 0; j < nb; j++) d0[j] = Math.fma(a00, p0[j], d0[j]);
        }
    }
}
