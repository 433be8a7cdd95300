package io.bifuse.cpu;

import io.bifuse.ObjectMask;

/**
 * The per-sample float32 pieces of bilinear attention networks, shared by {@link BanAttentionCpu},
 * {@link BanPoolingCpu} and {@link BanBlockCpu}: the bilinear logits and their flattened softmax, the
 * softmax Jacobian and the logits' backward, and the bilinear attention pooling with its backward. Every
 * product over objects, tokens or units is an {@link Sgemm} call on one sample; what is left are passes
 * over {@code M × K}-sized rows (scaling, masking, the pooling's reduction over tokens) that run while the
 * GEMM's operands are still in cache.
 *
 * <p>Objects are addressed as rows of a row-major array ({@code row · ld}); a sample's real objects are
 * given as {@link Runs} of consecutive rows, so a padded object is never read and costs nothing, and the
 * GEMMs run over whole runs (one per sample for a {@code counts} mask or no mask). Per-sample results
 * indexed by the real objects (logits, maps, their gradients) are "compact": the sample's real rows one
 * after the other, in run order.
 *
 * <p>Threading: the callers cut a batch into {@link #chunks} of consecutive samples (a count that depends
 * on the batch only) and run the chunks with {@link CpuRuntime#parallelFor}; inside a chunk the samples run
 * in order, and the GEMMs called there run on that thread. Every sum has one order, so results are
 * bitwise the same for every thread count.
 */
final class BanKernels {
    /** The most tasks one call cuts its batch into: enough to balance many threads, few enough to keep per-chunk partial sums small. */
    static final int MAX_CHUNKS = 64;

    private BanKernels() {}

    static int chunks(int batch) { return Math.min(batch, MAX_CHUNKS); }

    /** The first sample of chunk {@code c} of {@code chunks} (chunk {@code c} ends where {@code c + 1} starts). */
    static int chunkStart(int c, int batch, int chunks) { return (int) ((long) c * batch / chunks); }

    /**
     * The real objects of every sample as runs of consecutive rows: sample {@code b}'s runs are
     * {@code [off[b], off[b+1])}, run {@code r} covering rows {@code [start[r], start[r] + len[r])} of the
     * object array; {@code count[b]} real objects in all, the sample's first compact row being
     * {@code first[b]} (the real objects of the samples before it).
     */
    static final class Runs {
        final int[] off, start, len, count, first;
        final int total;

        private Runs(int[] off, int[] start, int[] len, int[] count) {
            this.off = off;
            this.start = start;
            this.len = len;
            this.count = count;
            this.first = new int[count.length + 1];
            for (int b = 0; b < count.length; b++) first[b + 1] = first[b] + count[b];
            this.total = first[count.length];
        }

        /** Rows {@code b·N + i} of a {@code B × N} object array for the real {@code i} ({@code mask} null: all). */
        static Runs objects(ObjectMask mask, int batch, int objects) {
            if (mask == null) {
                int[] off = new int[batch + 1], start = new int[batch], len = new int[batch], count = new int[batch];
                for (int b = 0; b < batch; b++) {
                    off[b + 1] = b + 1;
                    start[b] = b * objects;
                    len[b] = count[b] = objects;
                }
                return new Runs(off, start, len, count);
            }
            int[] idx = mask.indices(), count = mask.counts();
            int n = 0;
            for (int b = 0; b < batch; b++) {
                for (int c = 0; c < count[b]; c++) if (c == 0 || idx[b * objects + c] != idx[b * objects + c - 1] + 1) n++;
            }
            int[] off = new int[batch + 1], start = new int[n], len = new int[n];
            int r = -1;
            for (int b = 0; b < batch; b++) {
                for (int c = 0; c < count[b]; c++) {
                    int i = idx[b * objects + c];
                    if (c == 0 || i != idx[b * objects + c - 1] + 1) start[++r] = b * objects + i;
                    len[r]++;
                }
                off[b + 1] = r + 1;
            }
            return new Runs(off, start, len, count);
        }

        /** The real rows packed: sample {@code b}'s one run is rows {@code [first[b], first[b] + count[b])}. */
        Runs compact() {
            int batch = count.length, n = 0;
            for (int b = 0; b < batch; b++) if (count[b] > 0) n++;
            int[] off = new int[batch + 1], start = new int[n], len = new int[n];
            int r = 0;
            for (int b = 0; b < batch; b++) {
                if (count[b] > 0) {
                    start[r] = first[b];
                    len[r++] = count[b];
                }
                off[b + 1] = r;
            }
            return new Runs(off, start, len, count.clone());
        }

        /** Whether every object of every sample is real and in place (rows = compact rows). */
        boolean dense(int objects) {
            for (int b = 0; b < count.length; b++) if (count[b] != objects) return false;
            return true;
        }
    }

    // ---------------------------------------------------------------- attention maps

    /** The rows of a row-major {@code rows × cols} matrix as arrays of their own (indexed from 0: see {@link #scaledTokens}). */
    static float[][] rows(float[] a, int rows, int cols) {
        float[][] r = new float[rows][];
        for (int i = 0; i < rows; i++) r[i] = java.util.Arrays.copyOfRange(a, i * cols, (i + 1) * cols);
        return r;
    }

    /** {@code rows} zeroed rows of {@code width} floats from the lease's slots {@code slot ..}: a per-task accumulator indexed from 0. */
    static float[][] zeroRows(Scratch.Lease w, int slot, int rows, int width) {
        float[][] r = new float[rows][];
        for (int i = 0; i < rows; i++) java.util.Arrays.fill(r[i] = w.floats(slot + i, width), 0, width, 0f);
        return r;
    }

    /**
     * {@code ypp[g·M + j, k] = p[g,k]·yp[j,k]}: the sample's tokens scaled by each glimpse's weights
     * ({@code G·M × K}). The products run over arrays indexed from 0 ({@code pRows}, and {@code row},
     * {@code tmp}: K-float scratch, filled and emptied by arraycopy): HotSpot vectorizes a loop only when
     * its arrays share one index expression.
     */
    static void scaledTokens(float[][] pRows, int glimpses, int width, int tokens, float[] yp, int yOff, int ldy, float[] ypp, float[] row,
            float[] tmp) {
        for (int j = 0; j < tokens; j++) {
            System.arraycopy(yp, yOff + j * ldy, row, 0, width);
            for (int g = 0; g < glimpses; g++) {
                float[] pg = pRows[g];
                for (int k = 0; k < width; k++) tmp[k] = pg[k] * row[k];
                System.arraycopy(tmp, 0, ypp, (g * tokens + j) * width, width);
            }
        }
    }

    /**
     * The sample's bilinear logits without the bias, every glimpse at once: {@code l[c, g·M + j] =
     * Σ_k xp[c,k]·ypp[g·M + j, k]} for its compact rows c, one GEMM per run ({@code cnt × G·M × K}).
     */
    static void logits(CpuRuntime rt, int width, int gm, float[] xp, int ldx, Runs runs, int b, float[] ypp, float[] l, int lOff) {
        int c = 0;
        for (int r = runs.off[b]; r < runs.off[b + 1]; r++) {
            Sgemm.gemm(rt, false, true, runs.len[r], gm, width, 1f, xp, runs.start[r] * ldx, ldx, ypp, 0, width, 0f, l, lOff + c * gm, gm);
            c += runs.len[r];
        }
    }

    /**
     * Fused bias and softmax over each glimpse's {@code cnt × M} block of the compact {@code cnt × G·M}
     * logits: {@code l += bias[g]} in place, {@code a = exp(l − max) / Σ exp(l − max)} (exp and the sum
     * in double: the sum has up to N·M terms).
     */
    static void softmax(int cnt, int glimpses, int tokens, float[] bias, float[] l, int lOff, float[] a, int aOff) {
        int gm = glimpses * tokens;
        for (int g = 0; g < glimpses; g++) {
            float bg = bias == null ? 0f : bias[g], max = Float.NEGATIVE_INFINITY;
            for (int c = 0; c < cnt; c++) {
                int at = lOff + c * gm + g * tokens;
                for (int j = 0; j < tokens; j++) {
                    float v = l[at + j] + bg;
                    l[at + j] = v;
                    max = Math.max(max, v);
                }
            }
            double s = 0;
            for (int c = 0; c < cnt; c++) {
                int at = lOff + c * gm + g * tokens, to = aOff + c * gm + g * tokens;
                for (int j = 0; j < tokens; j++) {
                    float e = (float) Math.exp(l[at + j] - max);
                    a[to + j] = e;
                    s += e;
                }
            }
            double inv = 1 / s;
            for (int c = 0; c < cnt; c++) {
                int to = aOff + c * gm + g * tokens;
                for (int j = 0; j < tokens; j++) a[to + j] = (float) (a[to + j] * inv);
            }
        }
    }

    /** In place on the compact {@code cnt × G·M} gradient: {@code dl = a ⊙ (da − Σ a·da)} per glimpse (the sum in double). */
    static void softmaxBackward(int cnt, int glimpses, int tokens, float[] a, int aOff, float[] da, int daOff) {
        int gm = glimpses * tokens;
        for (int g = 0; g < glimpses; g++) {
            double dot = 0;
            for (int c = 0; c < cnt; c++) {
                int at = aOff + c * gm + g * tokens, dt = daOff + c * gm + g * tokens;
                for (int j = 0; j < tokens; j++) dot += (double) a[at + j] * da[dt + j];
            }
            for (int c = 0; c < cnt; c++) {
                int at = aOff + c * gm + g * tokens, dt = daOff + c * gm + g * tokens;
                for (int j = 0; j < tokens; j++) da[dt + j] = (float) (a[at + j] * (da[dt + j] - dot));
            }
        }
    }

    /**
     * The logits' backward for one sample, from its compact {@code dl} ({@code cnt × G·M}):
     * <pre>
     *   dxp[rows] = dl · ypp                                  one GEMM per run (cnt × K × G·M)
     *   S         = dlᵀ · xp[rows]                            G·M × K, summed over the runs
     *   dyp[j,k]  = Σ_g p[g,k]·S[g·M + j, k],   dp[g][k] += Σ_j yp[j,k]·S[g·M + j, k]     one pass over S
     * </pre>
     * {@code dxp} rows are addressed as {@code xp}'s ({@code row · lddx}); a sample without a real object
     * gets zero {@code dyp} rows and adds nothing to {@code dp} (G rows of K, indexed from 0). Scratch:
     * {@code s} ({@code G·M × K}), {@code yRow}, {@code sRow}, {@code dRow} (K each; the pass runs over
     * arrays indexed from 0, see {@link #scaledTokens}).
     */
    static void logitsBackward(CpuRuntime rt, int width, int glimpses, int tokens, float[][] pRows, float[] dl, int dlOff, float[] ypp,
            float[] xp, int ldx, Runs runs, int b, float[] dxp, int lddx, float[] s, float[] yp, int yOff, int ldy, float[] dyp,
            int dyOff, int lddy, float[][] dp, float[] yRow, float[] sRow, float[] dRow) {
        int gm = glimpses * tokens;
        if (runs.count[b] == 0) {
            for (int j = 0; j < tokens; j++) java.util.Arrays.fill(dyp, dyOff + j * lddy, dyOff + j * lddy + width, 0f);
            return;
        }
        int c = 0;
        for (int r = runs.off[b]; r < runs.off[b + 1]; r++) {
            int len = runs.len[r], row = runs.start[r];
            Sgemm.gemm(rt, false, false, len, width, gm, 1f, dl, dlOff + c * gm, gm, ypp, 0, width, 0f, dxp, row * lddx, lddx);
            Sgemm.gemm(rt, true, false, gm, width, len, 1f, dl, dlOff + c * gm, gm, xp, row * ldx, ldx, c == 0 ? 0f : 1f, s, 0, width);
            c += len;
        }
        for (int j = 0; j < tokens; j++) {
            System.arraycopy(yp, yOff + j * ldy, yRow, 0, width);
            java.util.Arrays.fill(dRow, 0, width, 0f);
            for (int g = 0; g < glimpses; g++) {
                System.arraycopy(s, (g * tokens + j) * width, sRow, 0, width);
                float[] pg = pRows[g], dg = dp[g];
                for (int k = 0; k < width; k++) {
                    float v = sRow[k];
                    dRow[k] += pg[k] * v;
                    dg[k] += yRow[k] * v;
                }
            }
            System.arraycopy(dRow, 0, dyp, dyOff + j * lddy, width);
        }
    }

    // ---------------------------------------------------------------- attention pooling

    /**
     * {@code s (M × K') = Σ_runs A[rows]ᵀ · x[rows]}: the attention-weighted sum of the sample's real
     * objects for every token, one GEMM per run; {@code A}'s row for an object row is at
     * {@code aBase + row · lda}. False (s unwritten) when the sample has no real object.
     */
    static boolean attendedObjects(CpuRuntime rt, int tokens, int width, float[] a, int aBase, int lda, float[] x, int ldx, Runs runs, int b,
            float[] s) {
        boolean first = true;
        for (int r = runs.off[b]; r < runs.off[b + 1]; r++) {
            int row = runs.start[r];
            Sgemm.gemm(rt, true, false, tokens, width, runs.len[r], 1f, a, aBase + row * lda, lda, x, row * ldx, ldx, first ? 0f : 1f, s, 0, width);
            first = false;
        }
        return !first;
    }

    /**
     * The pooled vector of one sample: {@code F[c] = Σ_j y[j,c]·s[j,c]} (s from {@link #attendedObjects}),
     * then sums of {@code group} adjacent units into {@code out[outOff .. + K'/group)}. {@code f}:
     * {@code K'} scratch.
     */
    static void pool(int tokens, int width, int group, float[] s, float[] y, int yOff, int ldy, float[] f, float[] out, int outOff) {
        java.util.Arrays.fill(f, 0, width, 0f);
        for (int j = 0; j < tokens; j++) {
            int yr = yOff + j * ldy, sr = j * width;
            for (int c = 0; c < width; c++) f[c] += y[yr + c] * s[sr + c];
        }
        int units = width / group;
        if (group == 1) {
            System.arraycopy(f, 0, out, outOff, units);
            return;
        }
        for (int u = 0; u < units; u++) {
            float v = 0;
            for (int t = 0; t < group; t++) v += f[u * group + t];
            out[outOff + u] = v;
        }
    }

    /**
     * The pooling's backward for one sample given {@code df} (K', the pooled gradient spread over each
     * group), with {@code yd = y ⊙ df} ({@code M × K'} scratch) and {@code s} ({@code M × K'} scratch):
     * <pre>
     *   dA[rows] = x[rows] · ydᵀ      (cnt × M × K')        dx[rows] = A[rows] · yd      (cnt × K' × M)
     *   dy[j,c]  = df[c] · (Σ_runs A[rows]ᵀ x[rows])[j,c]   (zeros without a real object)
     * </pre>
     * {@code dA} rows are addressed as {@code A}'s ({@code daBase + row · ldda}), {@code dx} rows as
     * {@code x}'s ({@code row · lddx}).
     */
    static void poolBackward(CpuRuntime rt, int tokens, int width, float[] df, int dfOff, float[] a, int aBase, int lda, float[] x, int ldx,
            Runs runs, int b, float[] y, int yOff, int ldy, float[] yd, float[] s, float[] da, int daBase, int ldda, float[] dx, int lddx,
            float[] dy, int dyOff, int lddy) {
        if (runs.count[b] == 0) {
            for (int j = 0; j < tokens; j++) java.util.Arrays.fill(dy, dyOff + j * lddy, dyOff + j * lddy + width, 0f);
            return;
        }
        for (int j = 0; j < tokens; j++) {
            int yr = yOff + j * ldy, dr = j * width;
            for (int c = 0; c < width; c++) yd[dr + c] = y[yr + c] * df[dfOff + c];
        }
        boolean first = true;
        for (int r = runs.off[b]; r < runs.off[b + 1]; r++) {
            int row = runs.start[r], len = runs.len[r];
            Sgemm.gemm(rt, false, true, len, tokens, width, 1f, x, row * ldx, ldx, yd, 0, width, 0f, da, daBase + row * ldda, ldda);
            Sgemm.gemm(rt, false, false, len, width, tokens, 1f, a, aBase + row * lda, lda, yd, 0, width, 0f, dx, row * lddx, lddx);
            Sgemm.gemm(rt, true, false, tokens, width, len, 1f, a, aBase + row * lda, lda, x, row * ldx, ldx, first ? 0f : 1f, s, 0, width);
            first = false;
        }
        for (int j = 0; j < tokens; j++) {
            int sr = j * width, dr = dyOff + j * lddy;
            for (int c = 0; c < width; c++) dy[dr + c] = df[dfOff + c] * s[sr + c];
        }
    }
}
