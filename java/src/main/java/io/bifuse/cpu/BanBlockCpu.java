package io.bifuse.cpu;

import io.bifuse.BanBlock;
import io.bifuse.CompactBilinear;
import io.bifuse.ObjectMask;
import io.bifuse.TrainingStep;
import io.bifuse.WeightNormGradients;
import io.bifuse.WeightNormLinear;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * {@link BanBlock} on the CPU in float32: ban-vqa's bilinear attention block (attention maps, G glimpses
 * of bilinear attention pooling with residual updates of the tokens) and every gradient.
 *
 * <p>Weights: each weight-normed layer's effective weight {@code g·V/‖V‖} is computed once, at
 * construction, and prepared as a {@link CpuLinear}; V, g and ‖V‖ are kept for the weight-norm chain of
 * the backward.
 *
 * <p>Forward. The real objects of every sample are packed into {@code R} rows (a copy only when the mask
 * pads some), so no GEMM reads or computes a padded object. Then
 * <ul>
 *   <li>{@code X' = relu(X W_xᵀ + b_x)} ({@code R × K}) and {@code Y' = relu(Y W_yᵀ + b_y)}
 *       ({@code B·M × K}): one GEMM each over the whole batch, then a ReLU pass;</li>
 *   <li>the maps, per sample ({@link BanKernels}): all G glimpses' logits in one GEMM
 *       {@code X'_b · (p ⊙ Y'_b)ᵀ} ({@code N_b × G·M × K}), then the fused bias + flattened softmax;</li>
 *   <li>per glimpse: {@code X''_g} and {@code Y''_g} (one GEMM each over the batch, ReLU pass), the pooling
 *       per sample {@code S = A_gᵀ X''_g} ({@code M × K' × N_b} GEMM) and
 *       {@code f = Σ_j Y''_g ⊙ S} with the group sums, the residual layer over the batch
 *       ({@code B × Dy × K'/k} GEMM) and the update of every token;</li>
 *   <li>{@code out = Σ_j Y_G}.</li>
 * </ul>
 * Backward recomputes that forward, keeping every glimpse's projections and tokens, then walks the glimpses
 * back: the residual layer's gradients and input gradient (GEMMs over the batch), the pooling's backward per
 * sample (three GEMMs: {@code dA}, {@code dX''}, {@code dY''}) with fused ReLU masks, the projections'
 * parameter gradients ({@code dWᵀ = dPreᵀ · input}, over the batch) and input gradients accumulated into
 * {@code dx} and {@code dy}; then the softmax Jacobian and the logits' backward per sample
 * ({@link BanKernels#logitsBackward}), and the attention projections likewise. Each layer's {@code dW}
 * goes through the weight-norm chain {@code dg = ⟨dW, V⟩/‖V‖} (in double),
 * {@code dV = (g/‖V‖)(dW − (dg/‖V‖)V)}.
 *
 * <p>{@link #backward} recomputes the forward; a {@link #trainingStep} keeps its state (every glimpse's
 * projections and tokens, in the backend's scratch) for its backward instead, saving a quarter of a
 * training step's work with the same bits.
 *
 * <p>Threading and determinism: the batch-wide GEMMs are tiled by {@link Sgemm}; the per-sample work runs
 * in {@link BanKernels#chunks} of consecutive samples (cut by the batch size only) with
 * {@link CpuRuntime#parallelFor}, each chunk summing its share of the logits' weight gradient in sample order,
 * the chunks' sums added in order; elementwise passes run over fixed ranges. Every sum has one order: results
 * are bitwise the same for every thread count. Intermediates come from the backend's {@link Scratch}
 * pools; a call allocates only what it returns (and the object mask found from zero rows when
 * {@code mask} is null). Thread-safe; {@link #close()} frees nothing.
 */
public final class BanBlockCpu extends CpuBackend<BanBlock> implements BanBlock.Backend {
    /** Elements per task of an elementwise pass: large enough to amortize a task, fixed so the cut depends on sizes only. */
    private static final int GRAIN = 1 << 15;

    /** One weight-normed layer: the prepared effective layer and what the weight-norm chain needs. */
    private record Layer(CpuLinear linear, float[] v, float g, double norm) {
        static Layer of(WeightNormLinear l) {
            return new Layer(new CpuLinear(l.effective()), l.weightVArray(), l.g(), l.norm());
        }
    }

    private final Layer objects, tokens, logits;
    private final Layer[] glimpseObjects, glimpseTokens, residuals;
    private final float[][] pRows; // the logits' weight p, one array per glimpse
    private final int dx, dy, width, glimpses, glimpseWidth, group, pooled, largestLayer;
    private final Scratch scratch = new Scratch(), tasks = new Scratch();

    public BanBlockCpu(BanBlock op) {
        this(op, CpuRuntime.defaults());
    }

    public BanBlockCpu(BanBlock op, CpuRuntime runtime) {
        super(op, "a BanBlock", Backends.FP32, runtime);
        BanBlock.Weights w = op.weights();
        objects = Layer.of(w.objects());
        tokens = Layer.of(w.tokens());
        logits = Layer.of(w.logits());
        glimpses = op.glimpses();
        glimpseObjects = new Layer[glimpses];
        glimpseTokens = new Layer[glimpses];
        residuals = new Layer[glimpses];
        int largest = Math.max(Math.max(objects.v.length, tokens.v.length), logits.v.length);
        for (int g = 0; g < glimpses; g++) {
            glimpseObjects[g] = Layer.of(w.glimpseObjects().get(g));
            glimpseTokens[g] = Layer.of(w.glimpseTokens().get(g));
            residuals[g] = Layer.of(w.residuals().get(g));
            largest = Math.max(largest, Math.max(glimpseObjects[g].v.length, Math.max(glimpseTokens[g].v.length, residuals[g].v.length)));
        }
        dx = op.dx();
        dy = op.dy();
        width = op.width();
        glimpseWidth = op.glimpseWidth();
        group = op.group();
        pooled = op.pooledWidth();
        largestLayer = largest;
        pRows = BanKernels.rows(logits.linear.weight, glimpses, width);
    }

    /** {@code x (B × N × Dx)}, {@code y (B × M × Dy)} → {@code B × Dy}; {@code mask} null: zero rows of x are padding. */
    @Override public float[] forward(float[] x, float[] y, ObjectMask mask, int batch, int objects, int tokens) {
        op.checkInputs(x, y, mask, batch, objects, tokens);
        return forward(x, y, mask, batch, objects, tokens, false).out;
    }

    /** The forward, also returning the attention maps ({@code B × G × N × M}, zero at padded objects). */
    @Override public BanBlock.Result forwardWithAttention(float[] x, float[] y, ObjectMask mask, int batch, int objects, int tokens) {
        op.checkInputs(x, y, mask, batch, objects, tokens);
        State s = forward(x, y, mask, batch, objects, tokens, true);
        return new BanBlock.Result(s.out, s.maps);
    }

    /** Every gradient given {@code gradOut = ∂L/∂out} ({@code B × Dy}), recomputing the forward. */
    @Override public BanBlock.Gradients backward(float[] x, float[] y, ObjectMask mask, float[] gradOut, int batch, int objects, int tokens) {
        op.checkInputs(x, y, mask, batch, objects, tokens);
        CompactBilinear.checkLength("gradOut", gradOut, batch, op.dy());
        try (Scratch.Lease l = scratch.lease()) {
            return backward(l, run(l, x, y, mask, batch, objects, tokens, true, false), y, gradOut);
        }
    }

    /**
     * A training step whose backward walks back from this forward's state (held, with its lease, until
     * then) instead of recomputing it. Bitwise {@link #forward} and {@link #backward}.
     */
    @Override public TrainingStep<BanBlock.Gradients> trainingStep(float[] x, float[] y, ObjectMask mask, int batch, int objects, int tokens) {
        op.checkInputs(x, y, mask, batch, objects, tokens);
        Scratch.Lease l = scratch.lease();
        State s;
        try {
            s = run(l, x, y, mask, batch, objects, tokens, true, false);
        } catch (RuntimeException | Error e) {
            l.close();
            throw e;
        }
        return new TrainingStep<>(s.out, batch, op.dy()) {
            @Override protected BanBlock.Gradients gradients(float[] gradOut) { return BanBlockCpu.this.backward(l, s, y, gradOut); }
            @Override protected void release() { l.close(); }
        };
    }

    private State forward(float[] x, float[] y, ObjectMask mask, int batch, int objects, int tokens, boolean withMaps) {
        try (Scratch.Lease l = scratch.lease()) {
            return run(l, x, y, mask, batch, objects, tokens, false, withMaps);
        }
    }

    // Scratch slots of the call's lease. Kept forward (for the backward), per glimpse g: GLIMPSE + 4·g holds
    // X''_g, + 1 Y''_g, + 2 the pooled vectors, + 3 Y_{g+1}; a plain forward uses glimpse 0's slots and
    // alternates the tokens between Y_A and Y_B.
    private static final int XR = 0, XP = 1, YP = 2, ATT = 3, LOGITS = 4, RES = 5, Y_A = 6, Y_B = 7, D_RES = 8, D_POOLED = 9, D_ATT = 10,
            D_XPP = 11, D_YPP = 12, D_XR = 13, D_XP = 14, D_YP = 15, D_W = 16, ONES = 17, PARTIAL = 18, GLIMPSE = 19;

    /** What a forward leaves for the backward: arrays of the call's lease, or the inputs themselves. */
    private static final class State {
        int batch, objects, tokens;
        boolean dense;
        BanKernels.Runs runs, packed;
        float[] xr, xp, yp, att, out, maps;
        float[][] xpp, ypp, pooled, yg;
    }

    /**
     * The forward. {@code keep}: every glimpse's projections, pooled vectors and tokens in slots of their
     * own, for the backward. {@code withMaps}: also the {@code B × G × N × M} maps.
     */
    private State run(Scratch.Lease l, float[] x, float[] y, ObjectMask mask, int batch, int objects, int tokens, boolean keep,
            boolean withMaps) {
        ObjectMask m = mask != null ? mask : ObjectMask.zeroRows(x, batch, objects, dx);
        BanKernels.Runs runs = BanKernels.Runs.objects(m, batch, objects), packed = runs.compact();
        int r = runs.total, gm = glimpses * tokens, bm = batch * tokens, chunks = BanKernels.chunks(batch);
        // every batch-dependent intermediate, by name, before anything is allocated
        int nXr = elements("packed objects (real objects × Dx)", r, dx), nXp = elements("object projections (real objects × K)", r, width);
        int nYp = elements("token projections (B·M × K)", batch, tokens, width), nAtt = elements("attention maps (real objects × G·M)", r, gm);
        int nXpp = elements("glimpse object projections (real objects × K')", r, glimpseWidth);
        int nYpp = elements("glimpse token projections (B·M × K')", batch, tokens, glimpseWidth);
        int nY = elements("tokens (B·M × Dy)", batch, tokens, dy), nRes = elements("residuals (B × Dy)", batch, dy);
        int nPooled = elements("pooled vectors (B × K'/group)", batch, pooled);
        int nMaps = withMaps ? elements("attention maps", batch, glimpses, objects, tokens) : 0;

        State s = new State();
        s.batch = batch;
        s.objects = objects;
        s.tokens = tokens;
        s.runs = runs;
        s.packed = packed;
        s.dense = runs.dense(objects);
        float[] xr = s.xr = s.dense ? x : l.floats(XR, nXr);
        if (!s.dense) {
            runtime.parallelFor(chunks, ch -> {
                for (int b = BanKernels.chunkStart(ch, batch, chunks); b < BanKernels.chunkStart(ch + 1, batch, chunks); b++) {
                    int c = packed.first[b];
                    for (int q = runs.off[b]; q < runs.off[b + 1]; q++) {
                        System.arraycopy(x, runs.start[q] * dx, xr, c * dx, runs.len[q] * dx);
                        c += runs.len[q];
                    }
                }
            });
        }
        float[] xp = s.xp = l.floats(XP, nXp), yp = s.yp = l.floats(YP, nYp);
        projectRelu(objects(), r, xr, dx, xp, width);
        projectRelu(tokens(), bm, y, dy, yp, width);

        // the maps, compact: row = packed object, column g·M + j
        float[] att = s.att = l.floats(ATT, nAtt), lg = l.floats(LOGITS, nAtt), bias = logits.linear.bias;
        runtime.parallelFor(chunks, ch -> {
            try (Scratch.Lease w = tasks.lease()) {
                float[] ypp = w.floats(0, gm * width), row = w.floats(5, width), tmp = w.floats(6, width);
                for (int b = BanKernels.chunkStart(ch, batch, chunks); b < BanKernels.chunkStart(ch + 1, batch, chunks); b++) {
                    if (packed.count[b] == 0) continue;
                    int at = packed.first[b] * gm;
                    BanKernels.scaledTokens(pRows, glimpses, width, tokens, yp, b * tokens * width, width, ypp, row, tmp);
                    BanKernels.logits(runtime, width, gm, xp, width, packed, b, ypp, lg, at);
                    BanKernels.softmax(packed.count[b], glimpses, tokens, bias, lg, at, att, at);
                }
            }
        });

        int kept = keep ? glimpses : 1;
        s.xpp = new float[kept][];
        s.ypp = new float[kept][];
        s.pooled = new float[kept][];
        s.yg = new float[glimpses + 1][];
        s.yg[0] = y;
        float[] res = l.floats(RES, nRes);
        for (int g = 0; g < glimpses; g++) {
            int k = keep ? g : 0, gg = g;
            float[] xpp = s.xpp[k] = l.floats(GLIMPSE + 4 * k, nXpp), ypp = s.ypp[k] = l.floats(GLIMPSE + 4 * k + 1, nYpp);
            float[] pool = s.pooled[k] = l.floats(GLIMPSE + 4 * k + 2, nPooled);
            float[] cur = s.yg[g], next = s.yg[g + 1] = l.floats(keep ? GLIMPSE + 4 * k + 3 : g % 2 == 0 ? Y_A : Y_B, nY);
            projectRelu(glimpseObjects[g].linear, r, xr, dx, xpp, glimpseWidth);
            projectRelu(glimpseTokens[g].linear, bm, cur, dy, ypp, glimpseWidth);
            runtime.parallelFor(chunks, ch -> {
                try (Scratch.Lease w = tasks.lease()) {
                    float[] sm = w.floats(1, tokens * glimpseWidth), f = w.floats(2, glimpseWidth);
                    for (int b = BanKernels.chunkStart(ch, batch, chunks); b < BanKernels.chunkStart(ch + 1, batch, chunks); b++) {
                        if (BanKernels.attendedObjects(runtime, tokens, glimpseWidth, att, gg * tokens, gm, xpp, glimpseWidth, packed, b, sm)) {
                            BanKernels.pool(tokens, glimpseWidth, group, sm, ypp, b * tokens * glimpseWidth, glimpseWidth, f, pool, b * pooled);
                        } else {
                            Arrays.fill(pool, b * pooled, (b + 1) * pooled, 0f); // nothing attended: the residual path alone
                        }
                    }
                }
            });
            residuals[g].linear.forward(runtime, batch, pool, 0, pooled, res, 0, dy, false);
            runtime.parallelRanges(bm, rowsPerTask(dy), (from, to) -> {
                for (int row = from; row < to; row++) {
                    int at = row * dy, rb = (row / tokens) * dy;
                    for (int d = 0; d < dy; d++) next[at + d] = cur[at + d] + res[rb + d];
                }
            });
        }
        float[] last = s.yg[glimpses], out = s.out = new float[nRes];
        runtime.parallelRanges(batch, rowsPerTask(tokens * dy), (from, to) -> {
            for (int b = from; b < to; b++) {
                for (int j = 0; j < tokens; j++) {
                    int at = (b * tokens + j) * dy;
                    for (int d = 0; d < dy; d++) out[b * dy + d] += last[at + d];
                }
            }
        });
        if (withMaps) {
            float[] maps = s.maps = new float[nMaps];
            runtime.parallelFor(chunks, ch -> {
                for (int b = BanKernels.chunkStart(ch, batch, chunks); b < BanKernels.chunkStart(ch + 1, batch, chunks); b++) {
                    int c = packed.first[b];
                    for (int q = runs.off[b]; q < runs.off[b + 1]; q++) {
                        for (int t = 0; t < runs.len[q]; t++, c++) {
                            int i = runs.start[q] - b * objects + t;
                            for (int g = 0; g < glimpses; g++) {
                                System.arraycopy(att, c * gm + g * tokens, maps, ((b * glimpses + g) * objects + i) * tokens, tokens);
                            }
                        }
                    }
                }
            });
        }
        return s;
    }

    private CpuLinear objects() { return objects.linear; }

    private CpuLinear tokens() { return tokens.linear; }

    /** The backward from a kept forward: the glimpses walked back, then the maps, then the attention projections. */
    private BanBlock.Gradients backward(Scratch.Lease l, State s, float[] y, float[] gradOut) {
        int batch = s.batch, objects = s.objects, tokens = s.tokens, r = s.runs.total, bm = batch * tokens, gm = glimpses * tokens;
        int chunks = BanKernels.chunks(batch), gk = glimpses * width, kp = glimpseWidth;
        BanKernels.Runs runs = s.runs, packed = s.packed;
        int nDx = elements("dx", batch, objects, dx), nDy = elements("dy", batch, tokens, dy);
        int nPartial = elements("the logits' weight gradient per chunk", chunks, gk);
        float[] gx = new float[nDx], gy = new float[nDy];
        // gy holds dY_{g+1} while the glimpses are walked back (every token gets gradOut), then dy
        runtime.parallelRanges(bm, rowsPerTask(dy), (from, to) -> {
            for (int row = from; row < to; row++) System.arraycopy(gradOut, (row / tokens) * dy, gy, row * dy, dy);
        });
        float[] dr = l.floats(D_RES, batch * dy), ds = l.floats(D_POOLED, batch * pooled), dA = l.floats(D_ATT, r * gm);
        float[] dXpp = l.floats(D_XPP, r * kp), dYpp = l.floats(D_YPP, bm * kp), dXr = s.dense ? gx : l.floats(D_XR, r * dx);
        float[] dW = l.floats(D_W, largestLayer), ones = CpuLinear.ones(l, ONES, Math.max(1, Math.max(r, bm)));
        WeightNormGradients[] gRes = new WeightNormGradients[glimpses], gGo = new WeightNormGradients[glimpses];
        WeightNormGradients[] gGt = new WeightNormGradients[glimpses];
        for (int g = glimpses - 1; g >= 0; g--) {
            int gg = g;
            float[] xpp = s.xpp[g], ypp = s.ypp[g];
            runtime.parallelRanges(batch, rowsPerTask(tokens * dy), (from, to) -> {
                for (int b = from; b < to; b++) {
                    Arrays.fill(dr, b * dy, (b + 1) * dy, 0f);
                    for (int j = 0; j < tokens; j++) {
                        int at = (b * tokens + j) * dy;
                        for (int d = 0; d < dy; d++) dr[b * dy + d] += gy[at + d];
                    }
                }
            });
            gRes[g] = parameters(residuals[g], batch, dr, dy, s.pooled[g], pooled, dW, ones);
            residuals[g].linear.backwardInput(runtime, batch, dr, 0, dy, ds, 0, pooled, false);
            runtime.parallelFor(chunks, ch -> {
                try (Scratch.Lease w = tasks.lease()) {
                    float[] yd = w.floats(1, tokens * kp), sm = w.floats(2, tokens * kp), df = w.floats(3, kp);
                    for (int b = BanKernels.chunkStart(ch, batch, chunks); b < BanKernels.chunkStart(ch + 1, batch, chunks); b++) {
                        for (int c = 0; c < kp; c++) df[c] = ds[b * pooled + c / group];
                        int yo = b * tokens * kp;
                        BanKernels.poolBackward(runtime, tokens, kp, df, 0, s.att, gg * tokens, gm, xpp, kp, packed, b, ypp, yo, kp, yd, sm, dA,
                                gg * tokens, gm, dXpp, kp, dYpp, yo, kp);
                        reluMask(dXpp, xpp, packed.first[b] * kp, packed.count[b] * kp);
                        reluMask(dYpp, ypp, yo, tokens * kp);
                    }
                }
            });
            gGo[g] = parameters(glimpseObjects[g], r, dXpp, kp, s.xr, dx, dW, ones);
            glimpseObjects[g].linear.backwardInput(runtime, r, dXpp, 0, kp, dXr, 0, dx, g != glimpses - 1);
            gGt[g] = parameters(glimpseTokens[g], bm, dYpp, kp, s.yg[g], dy, dW, ones);
            glimpseTokens[g].linear.backwardInput(runtime, bm, dYpp, 0, kp, gy, 0, dy, true);
        }

        // the maps: softmax Jacobian and the bilinear logits, per sample
        float[] dXp = l.floats(D_XP, r * width), dYp = l.floats(D_YP, bm * width), partial = l.floats(PARTIAL, nPartial);
        float[] xp = s.xp, yp = s.yp;
        runtime.parallelFor(chunks, ch -> {
            try (Scratch.Lease w = tasks.lease()) {
                float[] ypp = w.floats(0, gm * width), sm = w.floats(4, gm * width);
                float[] row = w.floats(5, width), tmp = w.floats(6, width), dRow = w.floats(7, width);
                float[][] dpRows = BanKernels.zeroRows(w, 8, glimpses, width);
                for (int b = BanKernels.chunkStart(ch, batch, chunks); b < BanKernels.chunkStart(ch + 1, batch, chunks); b++) {
                    int at = packed.first[b] * gm, cnt = packed.count[b], yo = b * tokens * width;
                    if (cnt > 0) {
                        BanKernels.scaledTokens(pRows, glimpses, width, tokens, yp, yo, width, ypp, row, tmp);
                        BanKernels.softmaxBackward(cnt, glimpses, tokens, s.att, at, dA, at);
                    }
                    BanKernels.logitsBackward(runtime, width, glimpses, tokens, pRows, dA, at, ypp, xp, width, packed, b, dXp, width, sm, yp, yo,
                            width, dYp, yo, width, dpRows, row, tmp, dRow);
                    reluMask(dXp, xp, packed.first[b] * width, cnt * width);
                    reluMask(dYp, yp, yo, tokens * width);
                }
                for (int g = 0; g < glimpses; g++) System.arraycopy(dpRows[g], 0, partial, ch * gk + g * width, width);
            }
        });
        Arrays.fill(dW, 0, gk, 0f);
        for (int ch = 0; ch < chunks; ch++) for (int t = 0; t < gk; t++) dW[t] += partial[ch * gk + t];
        WeightNormGradients gLog = chain(logits, dW, logits.linear.bias == null ? null : new float[glimpses]); // exactly zero: see BanBlock

        WeightNormGradients gObj = parameters(this.objects, r, dXp, width, s.xr, dx, dW, ones);
        objects().backwardInput(runtime, r, dXp, 0, width, dXr, 0, dx, true);
        WeightNormGradients gTok = parameters(this.tokens, bm, dYp, width, y, dy, dW, ones);
        tokens().backwardInput(runtime, bm, dYp, 0, width, gy, 0, dy, true);
        if (!s.dense) {
            runtime.parallelFor(chunks, ch -> {
                for (int b = BanKernels.chunkStart(ch, batch, chunks); b < BanKernels.chunkStart(ch + 1, batch, chunks); b++) {
                    int c = packed.first[b];
                    for (int q = runs.off[b]; q < runs.off[b + 1]; q++) {
                        System.arraycopy(dXr, c * dx, gx, runs.start[q] * dx, runs.len[q] * dx);
                        c += runs.len[q];
                    }
                }
            });
        }
        return new BanBlock.Gradients(gx, gy, gObj, gTok, gLog, List.of(gGo), List.of(gGt), List.of(gRes));
    }

    /** {@code out = relu(in · Wᵀ + b)} over {@code rows} rows: the layer's GEMM, then the ReLU in fixed ranges. */
    private void projectRelu(CpuLinear layer, int rows, float[] in, int ldIn, float[] out, int ldOut) {
        layer.forward(runtime, rows, in, 0, ldIn, out, 0, ldOut, false);
        runtime.parallelRanges(rows, rowsPerTask(ldOut), (from, to) -> {
            for (int i = from * ldOut, e = to * ldOut; i < e; i++) out[i] = Math.max(out[i], 0f);
        });
    }

    /** {@code d[off + i] = 0} where the ReLU's output {@code act[off + i]} is not positive (its input was not). */
    private static void reluMask(float[] d, float[] act, int off, int n) {
        for (int i = off, e = off + n; i < e; i++) if (!(act[i] > 0f)) d[i] = 0f;
    }

    private static int rowsPerTask(int rowLength) { return Math.max(1, GRAIN / Math.max(1, rowLength)); }

    /**
     * One layer's stored-parameter gradients from {@code rows} rows of its pre-activation gradient
     * {@code dPre} and its input: {@code dW = dPreᵀ · input} (a GEMM over the rows, into {@code dW}
     * scratch), {@code db = Σ_rows dPre} (a GEMM with ones), then the weight-norm chain.
     */
    private WeightNormGradients parameters(Layer layer, int rows, float[] dPre, int ldPre, float[] input, int ldIn, float[] dW, float[] ones) {
        float[] db = layer.linear.bias == null ? null : new float[layer.linear.out];
        layer.linear.backwardParameters(runtime, rows, dPre, 0, ldPre, input, 0, ldIn, dW, db, ones, false);
        return chain(layer, dW, db);
    }

    /** {@code dg = ⟨dW, V⟩/‖V‖} (one sum, in double), {@code dV = (g/‖V‖)(dW − (dg/‖V‖)·V)} in fixed ranges. */
    private WeightNormGradients chain(Layer layer, float[] dW, float[] db) {
        float[] v = layer.v;
        int n = v.length;
        double dot = 0;
        for (int i = 0; i < n; i++) dot += (double) dW[i] * v[i];
        double dg = dot / layer.norm, scale = layer.g / layer.norm, along = dg / layer.norm;
        float[] dv = new float[n];
        runtime.parallelRanges(n, GRAIN, (from, to) -> {
            for (int i = from; i < to; i++) dv[i] = (float) (scale * (dW[i] - along * v[i]));
        });
        return new WeightNormGradients(dv, (float) dg, db);
    }
}
