package io.bifuse.cpu;

import io.bifuse.BanAttention;
import io.bifuse.LinearGradients;
import io.bifuse.ObjectMask;
import java.util.Arrays;

/**
 * {@link BanAttention} on the CPU in float32: the bilinear attention maps of ban-vqa and their gradients.
 *
 * <p>Forward, per sample: the tokens are scaled by every glimpse's weights at once
 * ({@code Ypp[g·M + j] = p_g ⊙ Y'_j}, {@code G·M × K}), and the logits of all glimpses are ONE GEMM per
 * run of real objects, {@code X'[real] · Yppᵀ} ({@code N_b × G·M × K}): the {@code B × G × N × K}
 * intermediate of a left-to-right einsum is never formed, and padded objects are neither read nor
 * computed. A fused pass adds the bias and takes the softmax over each flattened {@code N_b × M} map
 * (exp and its sum in double), and scatters maps and logits to {@code B × G × N × M} ({@code −inf} and 0 at
 * padded objects).
 *
 * <p>Backward recomputes the maps the same way (so they are bitwise the forward's), then per sample:
 * the softmax Jacobian {@code dl = A ⊙ (dA − Σ A·dA)} (the sum in double), {@code dxp = dl · Ypp} (one
 * GEMM, {@code N_b × K × G·M}), {@code S = dlᵀ · X'} ({@code G·M × K × N_b}), and one pass over S for
 * {@code dyp[j] = Σ_g p_g ⊙ S[g·M + j]} and the sample's share of {@code dp[g] = Σ_j Y'_j ⊙ S[g·M + j]}.
 * The bias gradient is exact zeros (see {@link BanAttention}).
 *
 * <p>Threading and determinism: the batch is cut into {@link BanKernels#chunks} of consecutive samples
 * (by the batch size only), run with {@link CpuRuntime#parallelFor}; each chunk sums its samples' share of
 * {@code dp} in order and the chunks' partial sums are added in chunk order, so every result is bitwise
 * the same for every thread count. Intermediates come from the backend's {@link Scratch} pools; a call
 * allocates only what it returns. Thread-safe; {@link #close()} frees nothing.
 */
public final class BanAttentionCpu extends CpuBackend<BanAttention> implements BanAttention.Backend {
    private final int glimpses, width;
    private final float[] bias;
    private final float[][] pRows; // the logits' weight p, one array per glimpse
    private final Scratch scratch = new Scratch(), tasks = new Scratch();

    public BanAttentionCpu(BanAttention op) {
        this(op, CpuRuntime.defaults());
    }

    public BanAttentionCpu(BanAttention op, CpuRuntime runtime) {
        super(op, "a BanAttention", Backends.FP32, runtime);
        this.glimpses = op.glimpses();
        this.width = op.width();
        this.bias = op.logits().hasBias() ? op.logits().bias() : null;
        this.pRows = BanKernels.rows(op.logits().weight(), glimpses, width);
    }

    /**
     * The attention maps and logits of {@code xp} ({@code B × N × K}) and {@code yp} ({@code B × M × K});
     * {@code mask} null means every object is real.
     */
    @Override public BanAttention.Result forward(float[] xp, float[] yp, ObjectMask mask, int batch, int objects, int tokens) {
        op.checkInputs(xp, yp, mask, batch, objects, tokens);
        int maps = elements("attention maps", batch, glimpses, objects, tokens);
        float[] att = new float[maps], logits = new float[maps];
        BanKernels.Runs runs = BanKernels.Runs.objects(mask, batch, objects);
        int chunks = BanKernels.chunks(batch), gm = glimpses * tokens;
        runtime.parallelFor(chunks, ch -> {
            try (Scratch.Lease w = tasks.lease()) {
                float[] ypp = w.floats(0, gm * width), l = w.floats(1, objects * gm), a = w.floats(2, objects * gm);
                float[] row = w.floats(5, width), tmp = w.floats(6, width);
                for (int b = BanKernels.chunkStart(ch, batch, chunks); b < BanKernels.chunkStart(ch + 1, batch, chunks); b++) {
                    Arrays.fill(logits, b * glimpses * objects * tokens, (b + 1) * glimpses * objects * tokens, Float.NEGATIVE_INFINITY);
                    int cnt = runs.count[b];
                    if (cnt == 0) continue;
                    maps(runs, b, xp, yp, tokens, ypp, l, a, row, tmp);
                    scatter(runs, b, objects, tokens, l, logits);
                    scatter(runs, b, objects, tokens, a, att);
                }
            }
        });
        return new BanAttention.Result(att, logits);
    }

    /** Every gradient given {@code gradAttention = ∂L/∂A} ({@code B × G × N × M}). */
    @Override public BanAttention.Gradients backward(float[] xp, float[] yp, ObjectMask mask, float[] gradAttention, int batch, int objects,
                                                     int tokens) {
        op.checkInputs(xp, yp, mask, batch, objects, tokens);
        op.checkMaps("gradAttention", gradAttention, batch, objects, tokens);
        int rows = elements("dxp", batch, objects, width), tokRows = elements("dyp", batch, tokens, width);
        float[] dxp = new float[rows], dyp = new float[tokRows], dp = new float[glimpses * width];
        BanKernels.Runs runs = BanKernels.Runs.objects(mask, batch, objects);
        int chunks = BanKernels.chunks(batch), gm = glimpses * tokens, gk = glimpses * width;
        try (Scratch.Lease call = scratch.lease()) {
            float[] partial = call.floats(0, chunks * gk);
            runtime.parallelFor(chunks, ch -> {
                try (Scratch.Lease w = tasks.lease()) {
                    float[] ypp = w.floats(0, gm * width), l = w.floats(1, objects * gm), a = w.floats(2, objects * gm);
                    float[] dl = w.floats(3, objects * gm), s = w.floats(4, gm * width);
                    float[] row = w.floats(5, width), tmp = w.floats(6, width), dRow = w.floats(7, width);
                    float[][] dpRows = BanKernels.zeroRows(w, 8, glimpses, width);
                    for (int b = BanKernels.chunkStart(ch, batch, chunks); b < BanKernels.chunkStart(ch + 1, batch, chunks); b++) {
                        if (runs.count[b] > 0) {
                            maps(runs, b, xp, yp, tokens, ypp, l, a, row, tmp);
                            gather(runs, b, objects, tokens, gradAttention, dl);
                            BanKernels.softmaxBackward(runs.count[b], glimpses, tokens, a, 0, dl, 0);
                        }
                        BanKernels.logitsBackward(runtime, width, glimpses, tokens, pRows, dl, 0, ypp, xp, width, runs, b, dxp, width, s, yp,
                                b * tokens * width, width, dyp, b * tokens * width, width, dpRows, row, tmp, dRow);
                    }
                    for (int g = 0; g < glimpses; g++) System.arraycopy(dpRows[g], 0, partial, ch * gk + g * width, width);
                }
            });
            for (int ch = 0; ch < chunks; ch++) for (int t = 0; t < gk; t++) dp[t] += partial[ch * gk + t];
        }
        return new BanAttention.Gradients(dxp, dyp, new LinearGradients(dp, bias == null ? null : new float[glimpses]));
    }

    /** The compact logits {@code l} and maps {@code a} ({@code N_b × G·M}) of sample {@code b}; {@code ypp} is left holding its scaled tokens. */
    private void maps(BanKernels.Runs runs, int b, float[] xp, float[] yp, int tokens, float[] ypp, float[] l, float[] a, float[] row, float[] tmp) {
        int gm = glimpses * tokens;
        BanKernels.scaledTokens(pRows, glimpses, width, tokens, yp, b * tokens * width, width, ypp, row, tmp);
        BanKernels.logits(runtime, width, gm, xp, width, runs, b, ypp, l, 0);
        BanKernels.softmax(runs.count[b], glimpses, tokens, bias, l, 0, a, 0);
    }

    /** Compact {@code N_b × G·M} rows of sample {@code b} to their places in a {@code B × G × N × M} tensor. */
    private void scatter(BanKernels.Runs runs, int b, int objects, int tokens, float[] compact, float[] maps) {
        int gm = glimpses * tokens, c = 0;
        for (int r = runs.off[b]; r < runs.off[b + 1]; r++) {
            for (int t = 0; t < runs.len[r]; t++, c++) {
                int i = runs.start[r] - b * objects + t;
                for (int g = 0; g < glimpses; g++) System.arraycopy(compact, c * gm + g * tokens, maps, ((b * glimpses + g) * objects + i) * tokens, tokens);
            }
        }
    }

    /** The reverse of {@link #scatter}: the real objects' rows of a {@code B × G × N × M} tensor, compact. */
    private void gather(BanKernels.Runs runs, int b, int objects, int tokens, float[] maps, float[] compact) {
        int gm = glimpses * tokens, c = 0;
        for (int r = runs.off[b]; r < runs.off[b + 1]; r++) {
            for (int t = 0; t < runs.len[r]; t++, c++) {
                int i = runs.start[r] - b * objects + t;
                for (int g = 0; g < glimpses; g++) System.arraycopy(maps, ((b * glimpses + g) * objects + i) * tokens, compact, c * gm + g * tokens, tokens);
            }
        }
    }
}
