package io.bifuse.cuda;

import static org.junit.jupiter.api.Assertions.*;

import io.bifuse.Activation;
import io.bifuse.BanAttention;
import io.bifuse.BanBlock;
import io.bifuse.CompactBilinear;
import io.bifuse.McbAttention;
import io.bifuse.Mlb;
import io.bifuse.MlbAttention;
import io.bifuse.MultiHeadAttention;
import io.bifuse.LayerNorm;
import io.bifuse.SelfAttentionUnit;
import io.bifuse.ObjectMask;
import io.bifuse.Precision;
import io.bifuse.testing.BanAttentionRuns;
import io.bifuse.testing.CompactBilinearTolerance;
import io.bifuse.testing.DeviceRuns;
import io.bifuse.testing.Stats;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.function.Supplier;
import org.junit.jupiter.api.Test;

/**
 * The grid-stride kernels' later trips. {@link DeviceArgs#grid} sizes a grid-stride launch to fill the
 * GPU, so at the sizes the other tests can afford every thread handles one element and the loop's
 * second trip never runs: a wrong stride, a {@code return} where the loop should {@code continue}, or an
 * index computed once outside the loop would pass them all. Here each op runs once with the usual grid
 * and once with {@link DeviceArgs#gridCap} = 1 (one block of 256 threads striding over several hundred
 * to a few thousand elements per launch), outputs NaN-poisoned both times (DeviceRuns). The element
 * computations do not depend on the grid, so the two runs must agree to float32 rounding: bit for bit
 * except where a kernel accumulates with atomics (MCB's sketch scatter), hence relative L2 <= 1e-6
 * rather than equality; an unwritten element is NaN and fails. The uncapped runs are compared with the
 * float64 references by each op's own test class.
 */
class GridStrideTest extends CublasOpTest {
    static final double TOL = 1e-6;

    /** {@code run} with the full grid, then with one block per grid-stride launch; each pair of tensors compared. */
    static void sameWithOneBlock(String what, Supplier<List<float[]>> run) {
        List<float[]> full = run.get(), capped;
        int before = DeviceArgs.gridCap;
        DeviceArgs.gridCap = 1;
        try {
            capped = run.get();
        } finally {
            DeviceArgs.gridCap = before;
        }
        assertEquals(full.size(), capped.size());
        for (int t = 0; t < full.size(); t++) {
            if (full.get(t) == null) { assertNull(capped.get(t), what + " tensor " + t); continue; }
            float[] a = full.get(t), c = capped.get(t);
            assertEquals(a.length, c.length);
            // Entries the op leaves non-finite by design (the logits of padded objects) must stay exactly that.
            double num = 0, den = 0;
            for (int i = 0; i < a.length; i++) {
                if (!Float.isFinite(a[i])) {
                    assertEquals(Float.floatToIntBits(a[i]), Float.floatToIntBits(c[i]), what + " tensor " + t + " element " + i);
                    continue;
                }
                num += ((double) c[i] - a[i]) * ((double) c[i] - a[i]);
                den += (double) a[i] * a[i];
            }
            double e = Math.sqrt(num / Math.max(den, Double.MIN_NORMAL));
            assertTrue(e <= TOL, what + " tensor " + t + " of " + full.size() + ": one block vs full grid, relative L2 " + e);
        }
    }

    @Test void mlb() {
        // forward B·J = 900 (4 trips), the bias-gradient rows likewise
        SplittableRandom r = new SplittableRandom(31);
        Mlb op = Mlb.random(20, 16, 300, 7, Activation.TANH, 1);
        int b = 3;
        float[] x = Stats.gaussian(r, b * 20), y = Stats.gaussian(r, b * 16), g = Stats.gaussian(r, b * 7);
        try (MlbCuda cuda = new MlbCuda(op, ctx, Precision.FP32)) {
            sameWithOneBlock("MLB", () -> {
                DeviceRuns.MlbRun run = DeviceRuns.mlb(ctx, cuda, x, y, g, b);
                Mlb.Gradients gr = run.grads();
                return java.util.Arrays.asList(run.out(), gr.dx(), gr.dy(), gr.u().weight(), gr.u().bias(), gr.v().weight(), gr.v().bias(),
                        gr.p().weight(), gr.p().bias());
            });
        }
    }

    @Test void mlbAttention() {
        // the fuse kernels over B·G·J = 600, the question kernel over B·G·J as well
        SplittableRandom r = new SplittableRandom(32);
        MlbAttention op = MlbAttention.random(10, 12, 100, 2, 5, Activation.TANH, 2);
        int b = 3, cells = 9;
        float[] q = Stats.gaussian(r, b * 10), v = Stats.gaussian(r, b * cells * 12), g = Stats.gaussian(r, b * 5);
        try (MlbAttentionCuda cuda = new MlbAttentionCuda(op, ctx, Precision.FP32)) {
            sameWithOneBlock("MLB attention", () -> {
                DeviceRuns.MlbAttentionRun run = DeviceRuns.mlbAttention(ctx, cuda, q, v, g, b, cells);
                List<float[]> t = new ArrayList<>(List.of(run.out(), run.attention()));
                t.addAll(run.grads().tensors());
                return t;
            });
        }
    }

    @Test void multiHeadAttention() {
        // fused: B·n·ceil(Lq/32) = 12 query units and B·n·ceil(Lk/32) = 12 key units over one block each; the
        // probs and delta kernels over B·n·Lq = 396 rows; unfused: the softmax kernels over the same rows
        SplittableRandom r = new SplittableRandom(38);
        MultiHeadAttention op = MultiHeadAttention.random(6, 8, 2, 4);
        int b = 3, lq = 66, lk = 40;
        ObjectMask mask = ObjectMask.counts(new int[] {40, 33, 0}, lk);
        float[] x = Stats.gaussian(r, b * lq * 6), y = Stats.gaussian(r, b * lk * 6), g = Stats.gaussian(r, b * lq * 6);
        for (MultiHeadAttentionCuda.Path path : List.of(MultiHeadAttentionCuda.Path.FUSED, MultiHeadAttentionCuda.Path.UNFUSED)) {
            try (MultiHeadAttentionCuda cuda = new MultiHeadAttentionCuda(op, ctx, Precision.FP32, path)) {
                sameWithOneBlock("multi-head attention " + path, () -> {
                    DeviceRuns.MultiHeadAttentionRun run = DeviceRuns.multiHeadAttention(ctx, cuda, x, y, y, mask, g, b, lq, lk);
                    List<float[]> t = new ArrayList<>(List.of(run.out(), run.attention()));
                    t.addAll(run.grads().tensors());
                    return t;
                });
            }
        }
    }

    @Test void selfAttentionUnit() {
        // the row kernels (residual + LayerNorm, its backward) over B·L = 18 rows, the elementwise ones over B·L·F
        SplittableRandom r = new SplittableRandom(39);
        SelfAttentionUnit op = SelfAttentionUnit.random(8, 2, 12, LayerNorm.mcan(), 5);
        int b = 3, l = 6;
        ObjectMask mask = ObjectMask.counts(new int[] {6, 4, 1}, l);
        float[] x = Stats.gaussian(r, b * l * 8), g = Stats.gaussian(r, b * l * 8);
        try (SelfAttentionUnitCuda cuda = new SelfAttentionUnitCuda(op, ctx)) {
            sameWithOneBlock("self-attention unit", () -> {
                DeviceRuns.SelfAttentionUnitRun run = DeviceRuns.selfAttentionUnit(ctx, cuda, x, mask, g, b, l);
                List<float[]> t = new ArrayList<>(List.of(run.out()));
                t.addAll(run.grads().tensors());
                return t;
            });
        }
    }

    @Test void banBlock() {
        // the bias+ReLU kernels over B·N·K = 4500, the residual and broadcast over B·M·Dy, the token sum, weight-norm grads
        SplittableRandom r = new SplittableRandom(33);
        BanBlock op = BanBlock.random(40, 33, 50, 20, 2, 1, 3);
        int b = 3, n = 30, m = 7;
        float[] x = Stats.gaussian(r, b * n * 40), y = Stats.gaussian(r, b * m * 33), g = Stats.gaussian(r, b * 33);
        ObjectMask mask = ObjectMask.counts(new int[] {30, 11, 1}, n);
        try (BanBlockCuda cuda = new BanBlockCuda(op, ctx, Precision.FP32)) {
            sameWithOneBlock("BAN block", () -> {
                DeviceRuns.BanBlockRun run = DeviceRuns.banBlock(ctx, cuda, x, y, mask, g, b, n, m);
                List<float[]> t = new ArrayList<>(List.of(run.out(), run.attention()));
                t.addAll(run.grads().tensors());
                return t;
            });
        }
    }

    @Test void banAttention() {
        // the logits-weight gradient reduction over G·K = 800
        SplittableRandom r = new SplittableRandom(34);
        BanAttention op = BanAttention.random(4, 200, 4);
        int b = 3, n = 5, m = 3;
        float[] xp = Stats.gaussian(r, b * n * 200), yp = Stats.gaussian(r, b * m * 200), ga = Stats.gaussian(r, b * 4 * n * m);
        ObjectMask mask = ObjectMask.counts(new int[] {5, 2, 4}, n);
        try (BanAttentionCuda cuda = new BanAttentionCuda(op, ctx)) {
            sameWithOneBlock("BAN attention", () -> {
                BanAttentionRuns.Run run = BanAttentionRuns.run(ctx, cuda, xp, yp, mask, ga, b, n, m, 0, false);
                List<float[]> t = new ArrayList<>(List.of(run.attention(), run.logits()));
                t.addAll(run.grads().tensors());
                return t;
            });
        }
    }

    @Test void mcbAttention() {
        // the cell kernels and the row kernels over B·L = 12 cells, the elementwise ones over 12·H = 96 and
        // 12·G = 24; chunks of 5 cells, so the question-gradient sums span samples
        SplittableRandom r = new SplittableRandom(37);
        McbAttention op = McbAttentionCudaTest.op(40, 30, 60, 8, 2, 90, 5, McbAttention.L2Scope.MAP, io.bifuse.Normalization.pytorch(), 3);
        int b = 3, l = 4;
        float[] q = Stats.gaussian(r, b * 40), im = Stats.gaussian(r, b * l * 30), g = Stats.gaussian(r, b * 5);
        try (McbAttentionCuda cuda = new McbAttentionCuda(op, ctx, Precision.FP32, 5L * 4 * (2 * 60 + 40))) {
            sameWithOneBlock("MCB attention", () -> {
                DeviceRuns.McbAttentionRun run = DeviceRuns.mcbAttention(ctx, cuda, q, im, g, b, l);
                List<float[]> t = new ArrayList<>(List.of(run.out(), run.attention()));
                t.addAll(run.grads().tensors());
                return t;
            });
        }
    }

    @Test void stackedAttention() {
        // the per-sample layer kernels striding over B = 3 samples with one block, san_cells_backward over
        // B·L·d = 3·9·40 = 1080 (5 trips of 256)
        SplittableRandom r = new SplittableRandom(38);
        io.bifuse.StackedAttention op = io.bifuse.StackedAttention.random(40, 24, 2, io.bifuse.StackedAttention.Placement.PUBLIC_CODE, 4);
        int b = 3, cells = 9;
        float[] u = Stats.gaussian(r, b * 40), v = Stats.gaussian(r, b * cells * 40), g = Stats.gaussian(r, b * 40);
        try (StackedAttentionCuda cuda = new StackedAttentionCuda(op, ctx, Precision.FP32)) {
            sameWithOneBlock("stacked attention", () -> {
                DeviceRuns.StackedAttentionRun run = DeviceRuns.stackedAttention(ctx, cuda, u, v, g, b, cells);
                List<float[]> t = new ArrayList<>(List.of(run.out(), run.attention()));
                t.addAll(run.grads().tensors());
                return t;
            });
        }
    }

    @Test void hierarchicalAttention() {
        // the per-group level kernels striding over G = 7 word groups (two empty, one longer than the
        // block's 8-item chunks) and G = 2 sentence groups with one block
        SplittableRandom r = new SplittableRandom(39);
        io.bifuse.HierarchicalAttention op = io.bifuse.HierarchicalAttention.random(40, 24, 2, 5);
        int[][] off = {{0, 3, 3, 14, 16, 16, 20, 21}, {0, 4, 7}};
        float[] x = Stats.gaussian(r, 21 * 40), g = Stats.gaussian(r, 2 * 40);
        try (HierarchicalAttentionCuda cuda = new HierarchicalAttentionCuda(op, ctx, Precision.FP32)) {
            sameWithOneBlock("hierarchical attention", () -> {
                DeviceRuns.HierarchicalAttentionRun run = DeviceRuns.hierarchicalAttention(ctx, cuda, x, g, 21, off);
                List<float[]> t = new ArrayList<>(List.of(run.out(), run.attention()));
                t.addAll(run.grads().tensors());
                return t;
            });
        }
    }

    @Test void compactBilinear() {
        // the pipeline: the spectral product and its gradient over B·(d/2+1) = 1503, the sketches over B·d
        // and B·dx; the fused kernels: one block for the B = 3 samples
        RequireGpu.cufft();
        SplittableRandom r = new SplittableRandom(35);
        CompactBilinear op = CompactBilinear.seeded(700, 600, 1000, 5).withNormalization(io.bifuse.Normalization.pytorch());
        int b = 3;
        float[] x = Stats.gaussian(r, b * 700), y = Stats.gaussian(r, b * 600), g = Stats.gaussian(r, b * 1000);
        for (CompactBilinearCuda.Path path : new CompactBilinearCuda.Path[] {CompactBilinearCuda.Path.PIPELINE, CompactBilinearCuda.Path.FUSED}) {
            try (CompactBilinearCuda cuda = new CompactBilinearCuda(op, ctx, CompactBilinearCuda.Sketch.DETERMINISTIC, path)) {
                sameWithOneBlock("MCB " + path, () -> List.of(CompactBilinearTolerance.run(ctx, cuda, x, y, g, b)));
            }
        }
    }
}
