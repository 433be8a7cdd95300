package io.bifuse.cpu;

import io.bifuse.HierarchicalAttention;
import io.bifuse.LinearGradients;
import java.util.ArrayList;
import java.util.List;

/**
 * {@link HierarchicalAttention} on the CPU in float32. Per level, over that level's {@code N} items:
 * <ol>
 *   <li>one GEMM for every item's projection, {@code X·Wᵀ + b} ({@code N × k}, {@link CpuLinear});</li>
 *   <li>one fused pass per group, walking the CSR offsets (no padding work; an empty group pools to
 *       zero): the tanh in place ({@link SanHanKernels#tanh}, vectorized), the logit {@code c·u_i} per item, the group's softmax (exponentials and
 *       their sum in double) and the pooled vector {@code s_g = Σ α_i x_i}, which is the next level's item.</li>
 * </ol>
 * The logits bias shifts a whole group alike and is never added (the softmax cancels it).
 *
 * <p>Backward recomputes the forward (the same calls, so the same bits), then per level from the last:
 * one fused pass per group ({@code dα_i = g·x_i}, {@code dx_i = α_i g}, the softmax Jacobian
 * {@code da_i = α_i (dα_i − Σ_j α_j dα_j)} with the group's sum in double, and
 * {@code dp_i = da_i·c ⊙ (1 − u_i²)}), then GEMMs over the level's items: {@code dx += dP·W},
 * {@code dW = dPᵀX}, {@code db = 1ᵀdP}, {@code dc = daᵀU}; {@code dx} of a level is {@code g} of the
 * level below. The logits bias gradient is exact zeros, as the reference writes it.
 *
 * <p>Threads: the GEMMs share out their tiles ({@link Sgemm}); the fused passes run contiguous ranges of
 * whole groups in parallel, the ranges cut from the shapes only. No sum is split between threads and
 * every one has a fixed order, so results are bitwise the same for every thread count and rerun. Weights
 * are prepared once ({@link CpuLinear}); intermediates come from a {@link Scratch}, sized and checked
 * ({@link CpuBackend#elements}) before anything is allocated; a call allocates only its results.
 * Thread-safe; {@link #close()} frees nothing.
 */
public final class HierarchicalAttentionCpu extends CpuBackend<HierarchicalAttention> implements HierarchicalAttention.Backend {
    /** Per-group passes: about this many multiply-adds per task, so tiny groups are not one task each. */
    private static final long TASK_WORK = 1 << 15;

    private final int levels, d;
    private final CpuLinear[] projection;
    private final float[][] context;
    private final boolean[] logitsBias;
    private final Scratch scratch = new Scratch();

    public HierarchicalAttentionCpu(HierarchicalAttention op) {
        this(op, CpuRuntime.defaults());
    }

    public HierarchicalAttentionCpu(HierarchicalAttention op, CpuRuntime runtime) {
        super(op, "a HierarchicalAttention", Backends.FP32, runtime);
        levels = op.levels();
        d = op.dim();
        projection = new CpuLinear[levels];
        context = new float[levels][];
        logitsBias = new boolean[levels];
        for (int l = 0; l < levels; l++) {
            HierarchicalAttention.Level lv = op.weights().levels().get(l);
            projection[l] = new CpuLinear(lv.projection());
            context[l] = lv.logits().weight();
            logitsBias[l] = lv.logits().hasBias();
        }
    }

    /** {@code x (N_0 × d)} → {@code G_{L−1} × d}. */
    @Override public float[] forward(float[] x, int items, int[][] offsets) {
        int[] groups = op.checkInputs(x, items, offsets);
        try (Scratch.Lease lease = scratch.lease()) {
            return new Pass(lease, x, items, offsets, groups, false).out;
        }
    }

    /** The forward, also returning every level's attention weights ({@code N_ℓ} each). */
    @Override public HierarchicalAttention.Result forwardWithAttention(float[] x, int items, int[][] offsets) {
        int[] groups = op.checkInputs(x, items, offsets);
        try (Scratch.Lease lease = scratch.lease()) {
            Pass p = new Pass(lease, x, items, offsets, groups, true);
            return new HierarchicalAttention.Result(p.out, List.of(p.alpha));
        }
    }

    /** Every gradient given {@code gradOut = ∂L/∂out} ({@code G_{L−1} × d}). */
    @Override public HierarchicalAttention.Gradients backward(float[] x, float[] gradOut, int items, int[][] offsets) {
        int[] groups = op.checkInputs(x, gradOut, items, offsets);
        try (Scratch.Lease lease = scratch.lease()) {
            Pass p = new Pass(lease, x, items, offsets, groups, false);
            int maxItems = 0, maxK = 0;
            for (int l = 0; l < levels; l++) {
                maxItems = Math.max(maxItems, p.n[l]);
                maxK = Math.max(maxK, projection[l].out);
            }
            // Level 0's input gradient is a result; above it the gradient alternates between two buffers.
            float[] dx = new float[elements("x gradient", items, d)];
            float[] dp = lease.floats(SLOT_DP, elements("projection gradients", maxItems, maxK));
            float[] da = lease.floats(SLOT_DA, maxItems);
            float[] ones = CpuLinear.ones(lease, SLOT_ONES, maxItems);
            List<HierarchicalAttention.LevelGradients> out = new ArrayList<>();
            for (int l = 0; l < levels; l++) out.add(null);
            float[] g = gradOut;
            for (int l = levels - 1; l >= 0; l--) {
                int n = p.n[l], k = projection[l].out;
                float[] gx = l == 0 ? dx : lease.floats(SLOT_GRAD + (l & 1), n * d);
                groupBackward(p, l, g, gx, dp, da);
                CpuLinear proj = projection[l];
                proj.backwardInput(runtime, n, dp, 0, k, gx, 0, d, true);
                float[] dW = new float[k * d], db = proj.bias != null ? new float[k] : null;
                proj.backwardParameters(runtime, n, dp, 0, k, p.x[l], 0, d, dW, db, ones, false);
                float[] dc = new float[k];
                Sgemm.gemm(runtime, true, false, 1, k, n, 1f, da, 0, 1, p.u[l], 0, k, 0f, dc, 0, k);
                out.set(l, new HierarchicalAttention.LevelGradients(new LinearGradients(dW, db),
                        new LinearGradients(dc, logitsBias[l] ? new float[1] : null)));
                g = gx;
            }
            return new HierarchicalAttention.Gradients(dx, out);
        }
    }

    private static final int SLOT_DP = 0, SLOT_DA = 1, SLOT_ONES = 2, SLOT_GRAD = 3, SLOT_LEVEL = 5; // SLOT_GRAD, SLOT_GRAD + 1

    /** The forward of every level, keeping each level's items, tanh'd projections and weights. */
    private final class Pass {
        final int[][] offsets;
        final int[] n;
        final float[][] x, u, alpha;
        final float[] out;

        Pass(Scratch.Lease lease, float[] input, int items, int[][] offsets, int[] groups, boolean freshAttention) {
            this.offsets = offsets;
            n = new int[levels];
            x = new float[levels][];
            u = new float[levels][];
            alpha = new float[levels][];
            // Every size first: a batch too large for one array fails by name before anything is allocated.
            for (int l = 0, m = items; l < levels; l++) {
                n[l] = m;
                elements("level " + l + " projections", m, projection[l].out);
                elements("level " + l + " pooled vectors", groups[l], d);
                m = groups[l];
            }
            x[0] = input;
            float[] pooled = null;
            for (int l = 0; l < levels; l++) {
                int k = projection[l].out, base = SLOT_LEVEL + 3 * l, lv = l;
                float[] xl = x[l], ul = u[l] = lease.floats(base, n[l] * k);
                float[] al = alpha[l] = freshAttention ? new float[n[l]] : lease.floats(base + 1, n[l]);
                float[] pl = pooled = l == levels - 1 ? new float[groups[l] * d] : lease.floats(base + 2, groups[l] * d);
                projection[l].forward(runtime, n[l], xl, 0, d, ul, 0, k, false);
                int[] off = offsets[l];
                eachGroupRange(off, n[l], d + k, (g0, g1) -> {
                    for (int grp = g0; grp < g1; grp++) pool(lv, xl, ul, al, pl, off[grp], off[grp + 1], grp);
                });
                if (l + 1 < levels) x[l + 1] = pooled;
            }
            out = pooled;
        }
    }

    /** Runs {@code body} over contiguous ranges of whole groups, sized from the shapes only. */
    private void eachGroupRange(int[] off, int items, int perItem, CpuRuntime.IntRangeBody body) {
        int groups = off.length - 1;
        long perGroup = Math.max(1, (long) items * perItem / groups);
        int grain = (int) Math.max(1, Math.min(groups, TASK_WORK / perGroup));
        runtime.parallelRanges(groups, grain, body);
    }

    /** One group's tanh, logits, softmax and pooled vector (zero when the group is empty). */
    private void pool(int l, float[] x, float[] u, float[] alpha, float[] pooled, int lo, int hi, int grp) {
        int k = projection[l].out, po = grp * d;
        java.util.Arrays.fill(pooled, po, po + d, 0f);
        if (lo == hi) return;
        float[] c = context[l];
        float max = Float.NEGATIVE_INFINITY;
        for (int i = lo; i < hi; i++) {
            int uo = i * k;
            SanHanKernels.tanhInPlace(u, uo, k);
            // in double: one per item, and the group's softmax Jacobian downstream cancels (Σ da = 0)
            float a = (float) SanHanKernels.dotDouble(c, u, uo, k);
            alpha[i] = a;
            max = Math.max(max, a);
        }
        double sum = 0;
        for (int i = lo; i < hi; i++) sum += Math.exp(alpha[i] - max);
        for (int i = lo; i < hi; i++) {
            float w = (float) (Math.exp(alpha[i] - max) / sum);
            alpha[i] = w;
            int xo = i * d;
            for (int j = 0; j < d; j++) pooled[po + j] += w * x[xo + j];
        }
    }

    /**
     * Level {@code l}'s per-group backward given {@code g} ({@code ∂L/∂s}, one row per group):
     * {@code gx_i = α_i g}, {@code da_i} (the softmax Jacobian, the group's sum in double) and
     * {@code dp_i = da_i·c ⊙ (1 − u_i²)}.
     */
    private void groupBackward(Pass p, int l, float[] g, float[] gx, float[] dp, float[] da) {
        int k = projection[l].out;
        int[] off = p.offsets[l];
        float[] x = p.x[l], u = p.u[l], alpha = p.alpha[l], c = context[l];
        eachGroupRange(off, p.n[l], d + k, (g0, g1) -> {
            for (int grp = g0; grp < g1; grp++) {
                int lo = off[grp], hi = off[grp + 1], go = grp * d;
                double sum = 0;
                for (int i = lo; i < hi; i++) {
                    int xo = i * d;
                    float a = alpha[i], dot = 0f;
                    for (int j = 0; j < d; j++) {
                        float gj = g[go + j];
                        dot += gj * x[xo + j];
                        gx[xo + j] = a * gj;
                    }
                    da[i] = dot;
                    sum += (double) a * dot;
                }
                float mean = (float) sum;
                for (int i = lo; i < hi; i++) {
                    float dai = alpha[i] * (da[i] - mean);
                    da[i] = dai;
                    int uo = i * k;
                    for (int j = 0; j < k; j++) {
                        float t = u[uo + j];
                        dp[uo + j] = dai * c[j] * (1f - t * t);
                    }
                }
            }
        });
    }
}
