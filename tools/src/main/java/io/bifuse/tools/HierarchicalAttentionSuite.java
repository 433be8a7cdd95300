package io.bifuse.tools;

import io.bifuse.HierarchicalAttention;
import io.bifuse.Precision;
import io.bifuse.cpu.HierarchicalAttentionCpu;
import io.bifuse.cuda.CudaContext;
import io.bifuse.cuda.DeviceBuffer;
import io.bifuse.cuda.HierarchicalAttentionCuda;
import io.bifuse.reference.HierarchicalAttentionReference;
import io.bifuse.testing.Conditioning;
import io.bifuse.testing.DeviceRuns;
import io.bifuse.testing.HierarchicalAttentionTolerance;
import io.bifuse.testing.Stats;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

/**
 * {@link HierarchicalAttention} in check and bench, as HAN uses it: two levels, words → sentences →
 * documents. Tolerances: the CPU backend and CUDA in FP32 against 1e-5 (backward: 1e-4 where d or k < 8,
 * and the conditioning baseline where a tensor exceeds that, see {@link #backwardRow}); CUDA in TF32 / BF16
 * against {@link Precision#bound()}. Forward rows compare the output and the attention weights (the worse of
 * the two); backward rows the worst relative L2 over every gradient tensor ({@code dx} and each level's
 * weights and biases; the logits bias gradient is exactly zero, where the error is absolute). The device
 * runs go through {@link DeviceRuns#hierarchicalAttention}: outputs NaN-poisoned, inputs read back
 * unchanged.
 *
 * <p>A size's groups are variable but fixed ({@link Size#offsets}): {@code B} documents of {@code S}
 * sentences each, sentence {@code j} (counted over all documents) of {@code W − 1 + (j mod 3)} words, so
 * lengths vary by ±1 around {@code W}; the PyTorch peer builds the same layout.
 *
 * <p>The float64 reference costs about {@code N·d·k} multiply-adds per forward (3·10⁸ per document at
 * 300 words, d = 512, k = 256) and about three times that for backward, so check runs the spec's widths
 * at B = 2. The CPU backend ({@code cpu-fp32}) has a row at every size check runs, held to the FP32
 * rule, and is benchmarked at the spec's B = 64, as the PyTorch peer is.
 */
final class HierarchicalAttentionSuite implements Suite {

    /** Documents B, sentences per document S, words per sentence W (mean), feature width d, attention width k (both levels). */
    record Size(int batch, int sentences, int words, int dim, int width) {
        String label() { return "B=" + batch + " S=" + sentences + " W=" + words + " d=" + dim + " k=" + width; }

        /** The size string shared with the PyTorch peer (hierarchical_attention_peer.py); the batch is its own column. */
        String csvSize() { return "S=" + sentences + ",W=" + words + ",d=" + dim + ",k=" + width; }

        Size withBatch(int b) { return new Size(b, sentences, words, dim, width); }

        HierarchicalAttention op(long seed) { return HierarchicalAttention.random(dim, width, 2, seed); }

        /** The two levels' offsets: see the class comment. */
        int[][] offsets() {
            int g = batch * sentences;
            int[] words0 = new int[g + 1], sent = new int[batch + 1];
            for (int j = 0; j < g; j++) words0[j + 1] = words0[j] + words - 1 + j % 3;
            for (int b = 0; b < batch; b++) sent[b + 1] = sent[b] + sentences;
            return new int[][] {words0, sent};
        }

        int items() { int[] o = offsets()[0]; return o[o.length - 1]; }
    }

    static final Size SPEC = new Size(64, 20, 15, 512, 256);
    static final Size MEDIUM = new Size(4, 6, 9, 128, 64);

    /** Odd small sizes (one-word sentences and one-sentence documents included), a medium one; not quick: odd larger and the spec's widths. */
    static List<Size> sizes(boolean quick) {
        List<Size> s = new ArrayList<>();
        s.add(new Size(3, 4, 5, 13, 9));
        s.add(new Size(2, 1, 2, 6, 5));
        s.add(new Size(1, 7, 11, 10, 7));
        s.add(MEDIUM);
        if (!quick) {
            s.add(new Size(5, 9, 30, 301, 257));
            s.add(SPEC.withBatch(2));
        }
        return s;
    }

    /**
     * The cost model shared with the PyTorch peer (GEMM and pooling FLOPs only): {bytes, flops}, with
     * I = N·d input floats (N the words), W = 2(kd + 2k + 1) parameter floats, O = B·d output floats and
     * M = (N + B·S)(d·k + k + d) multiply-adds (per level the projection, the logits and the weighted
     * sums over its items); fwd+bwd counts three times the inputs and weights, twice the output and
     * three times the multiply-adds.
     */
    static double[] cost(String op, Size s) {
        double n = s.items(), d = s.dim(), k = s.width(), b = s.batch(), sent = (double) s.batch() * s.sentences();
        double in = n * d, w = 2 * (k * d + 2 * k + 1), out = b * d, m = (n + sent) * (d * k + k + d);
        if (op.endsWith("forward")) return new double[] {4 * (in + w + out), 2 * m};
        return new double[] {4 * (3 * in + 3 * w + 2 * out), 6 * m};
    }

    @Override public void check(boolean quick, CudaContext ctx, SplittableRandom rnd, Check.Report report) {
        String noGpu = ctx == null ? null : MlbSuite.gpuReason();
        if (noGpu != null) report.skipped("HierarchicalAttention", noGpu);
        boolean gpu = ctx != null && noGpu == null;
        for (Size s : sizes(quick)) {
            HierarchicalAttention op = s.op(rnd.nextLong());
            int[][] off = s.offsets();
            int n = s.items();
            float[] x = Stats.gaussian(rnd, n * s.dim()), g = Stats.gaussian(rnd, s.batch() * s.dim());
            HierarchicalAttentionReference.Result fRef = HierarchicalAttentionReference.forward(op, x, n, off);
            HierarchicalAttentionReference.Grads grads = HierarchicalAttentionReference.backward(op, x, g, n, off);
            List<double[]> gRef = grads.tensors();
            long condSeed = 0x5eedL; // the perturbation draws: fixed, so the inputs after this size stay those of the seed
            // The CPU backend computes in float32: the FP32 rule of the device rows below.
            HierarchicalAttentionCpu onCpu = new HierarchicalAttentionCpu(op);
            report.add(forwardRow(onCpu.backend(), s, onCpu.forwardWithAttention(x, n, off), fRef, Check.TOLERANCE));
            report.add(fp32BackwardRow(onCpu.backend(), s, onCpu.backward(x, g, n, off).tensors(), gRef,
                    HierarchicalAttentionTolerance.conditioning(Precision.FP32, op, x, g, off, fRef, grads, condSeed)));
            if (!gpu) continue;
            for (Precision p : Precision.values()) {
                // 4u holds where errors average over sums of many rounded terms; at the tiniest widths a
                // reduced-precision gradient is a few products with nothing to average. There only FP32 is
                // checked here; HierarchicalAttentionCudaTest holds those sizes to the conditioning-baseline rule.
                if (p != Precision.FP32 && Math.min(s.dim(), s.width()) < 32) continue;
                String backend = "cuda-" + p.name().toLowerCase();
                double tol = p == Precision.FP32 ? Check.TOLERANCE : p.bound();
                try (HierarchicalAttentionCuda cuda = new HierarchicalAttentionCuda(op, ctx, p)) {
                    DeviceRuns.HierarchicalAttentionRun r = DeviceRuns.hierarchicalAttention(ctx, cuda, x, g, n, off);
                    report.add(forwardRow(backend, s, r.out(), r.attention(), fRef, tol));
                    Conditioning cond = HierarchicalAttentionTolerance.conditioning(p, op, x, g, off, fRef, grads, condSeed);
                    report.add(backwardRow(backend, s, r.grads().tensors(), gRef, cond, p == Precision.FP32 ? fp32BackwardTolerance(s) : tol));
                }
            }
        }
    }

    /**
     * At the tiniest widths (d or k < 8) with groups of one or two items a projection bias's gradient is a
     * sum that cancels by ~10³ (Σ da = 0 per group), and float32 leaves ~6e-8 of its terms: seen 4.7e-5 on
     * levels[0].projection.bias at d = 6, k = 5 in FP32, which the perturbation baseline does not reproduce.
     * There an FP32 backward row is held to 1e-4 (an indexing or scale mistake is still ~1).
     */
    static double fp32BackwardTolerance(Size s) {
        return Math.min(s.dim(), s.width()) < 8 ? Math.max(Check.TOLERANCE, 1e-4) : Check.TOLERANCE;
    }

    static Check.Row fp32BackwardRow(String backend, Size s, List<float[]> got, List<double[]> ref, Conditioning cond) {
        return backwardRow(backend, s, got, ref, cond, fp32BackwardTolerance(s));
    }

    /**
     * The test's rule: where a tensor exceeds {@code btol} (a group's cancelling bias sum, a flipped
     * decision), max(btol, 2·base) of the conditioning baseline (HierarchicalAttentionTolerance).
     */
    static Check.Row backwardRow(String backend, Size s, List<float[]> got, List<double[]> gRef, Conditioning cond, double btol) {
        double worst = 0, bound = btol;
        boolean ok = true;
        for (int t = 0; t < got.size(); t++) {
            double e = Stats.relativeL2(got.get(t), gRef.get(t)), b = cond.bound(2 + t, btol, e);
            ok &= e <= b;
            if (!(e <= worst)) {
                worst = e;
                bound = b;
            }
        }
        return new Check.Row("HierarchicalAttention.backward", backend, s.label(), worst, bound, ok);
    }

    static Check.Row forwardRow(String backend, Size s, HierarchicalAttention.Result got, HierarchicalAttentionReference.Result ref, double tol) {
        float[] all = new float[got.attention().stream().mapToInt(a -> a.length).sum()];
        int at = 0;
        for (float[] a : got.attention()) {
            System.arraycopy(a, 0, all, at, a.length);
            at += a.length;
        }
        return forwardRow(backend, s, got.out(), all, ref, tol);
    }

    /** {@code attention}: every level's weights concatenated. */
    static Check.Row forwardRow(String backend, Size s, float[] out, float[] attention, HierarchicalAttentionReference.Result ref, double tol) {
        double[] all = new double[attention.length];
        int at = 0;
        for (double[] a : ref.attention()) {
            System.arraycopy(a, 0, all, at, a.length);
            at += a.length;
        }
        double e = Math.max(Stats.relativeL2(out, ref.out()), Stats.relativeL2(attention, all)); // NaN propagates
        return new Check.Row("HierarchicalAttention.forward", backend, s.label(), e, tol, e <= tol);
    }

    @Override public String gpuUnavailableReason() { return MlbSuite.gpuReason(); }

    @Override public List<BenchCase> benchCases(boolean quick) {
        Size s = quick ? MEDIUM : SPEC;
        java.util.function.Supplier<HierarchicalAttention> op = BenchCase.once(() -> s.op(42));
        Size cpu = s;
        int d = s.dim();
        BenchCase host = BenchCase.host("HierarchicalAttention", cpu.label(), cpu.csvSize(), cpu.batch(), cost("HierarchicalAttention.forward", cpu),
                cost("HierarchicalAttention.fwd+bwd", cpu), r -> {
                    HierarchicalAttentionCpu c = new HierarchicalAttentionCpu(op.get());
                    int[][] off = cpu.offsets();
                    int n = cpu.items();
                    float[] x = Stats.gaussian(r, n * d), g = Stats.gaussian(r, cpu.batch() * d);
                    return List.of(new BenchCase.HostRun(c.backend(), () -> c.forward(x, n, off), () -> {
                        c.forward(x, n, off);
                        return c.backward(x, g, n, off);
                    }));
                });
        BenchCase device = BenchCase.device("HierarchicalAttention", s.label(), s.csvSize(), s.batch(), cost("HierarchicalAttention.forward", s),
                cost("HierarchicalAttention.fwd+bwd", s), BenchCase.PRECISIONS, (ctx, var, st, r) -> {
                    BenchCase.Devices dev = new BenchCase.Devices(st);
                    try {
                        HierarchicalAttentionCuda cuda = dev.op(new HierarchicalAttentionCuda(op.get(), ctx, BenchCase.precision(var)));
                        int[][] off = s.offsets();
                        int n = s.items();
                        int[] groups = op.get().groupCounts(n, off);
                        DeviceBuffer dx = dev.own(DeviceBuffer.of(ctx, Stats.gaussian(r, n * d)));
                        DeviceBuffer doff = dev.own(DeviceBuffer.of(ctx, HierarchicalAttention.flatOffsets(off)));
                        DeviceBuffer dg = dev.own(DeviceBuffer.of(ctx, Stats.gaussian(r, s.batch() * d)));
                        DeviceBuffer out = dev.own(DeviceBuffer.allocateFloats(ctx, (long) s.batch() * d));
                        HierarchicalAttentionCuda.GradientBuffers gr = dev.own(cuda.allocateGradients(n)).buffers();
                        // The attention weights are an optional output: the timed forward is the op as a model uses it.
                        return dev.calls(() -> cuda.forward(dx, doff, out, null, n, groups, st), () -> {
                            cuda.forward(dx, doff, out, null, n, groups, st);
                            cuda.backward(dx, doff, dg, gr, n, groups, st);
                        });
                    } catch (RuntimeException e) {
                        throw dev.fail(e);
                    }
                });
        return List.of(host, device);
    }
}
