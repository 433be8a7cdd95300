package io.bifuse.tools;

import io.bifuse.MultiHeadAttention;
import io.bifuse.ObjectMask;
import io.bifuse.Precision;
import io.bifuse.cpu.MultiHeadAttentionCpu;
import io.bifuse.cuda.CudaContext;
import io.bifuse.cuda.DeviceBuffer;
import io.bifuse.cuda.MultiHeadAttentionCuda;
import io.bifuse.reference.MultiHeadAttentionReference;
import io.bifuse.testing.DeviceRuns;
import io.bifuse.testing.Stats;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

/**
 * {@link MultiHeadAttention} in check and bench. Tolerances: the CPU backend and CUDA in FP32 (both
 * attention cores, fused and unfused) against 1e-5; CUDA in TF32 / BF16 against {@link Precision#bound()}.
 * Forward rows compare the output and the attention maps (the worse of the two); backward rows the worst
 * relative L2 over every gradient tensor (the key layer's bias gradient is exactly zero: absolute there).
 * Each check size pads the keys: sample b keeps {@code Lk − b mod 3} real keys, and the first small size
 * has a sample with none (mcan-vqa's uniform attention).
 *
 * <p>The bench case is MCAN's image self-attention (B = 64, 100 objects, hidden 512, 8 heads of 64),
 * every key real, as {@code multi_head_attention_peer.py} runs it, on the CPU (float32) and on CUDA.
 */
final class MultiHeadAttentionSuite implements Suite {

    /** Batch, queries, keys, input width (query = key = value width = output), hidden, heads; {@code empty}: sample 0 has no real key. */
    record Size(int batch, int queries, int keys, int dim, int hidden, int heads, boolean empty) {
        String label() {
            return "B=" + batch + " Lq=" + queries + " Lk=" + keys + " D=" + dim + " H=" + hidden + " heads=" + heads + (empty ? " empty sample" : "");
        }

        /** The size string shared with the PyTorch peer; the batch is its own column. */
        String csvSize() { return "Lq=" + queries + ",Lk=" + keys + ",D=" + dim + ",H=" + hidden + ",heads=" + heads; }

        Size withBatch(int b) { return new Size(b, queries, keys, dim, hidden, heads, empty); }

        MultiHeadAttention op(long seed) { return MultiHeadAttention.random(dim, hidden, heads, seed); }

        ObjectMask mask() {
            int[] c = new int[batch];
            for (int b = 0; b < batch; b++) c[b] = empty && b == 0 ? 0 : Math.max(1, keys - b % 3);
            return ObjectMask.counts(c, keys);
        }
    }

    /** MCAN's image self-attention. */
    static final Size SPEC = new Size(64, 100, 100, 512, 512, 8, false);
    static final Size MEDIUM = new Size(4, 33, 40, 64, 128, 2, false);

    /** Odd small sizes (one key, an empty sample, heads of 3), a medium one; not quick: MCAN's three attentions at B = 2. */
    static List<Size> sizes(boolean quick) {
        List<Size> s = new ArrayList<>(List.of(new Size(3, 7, 9, 12, 16, 2, true), new Size(2, 5, 1, 6, 9, 3, false), MEDIUM));
        if (!quick) {
            s.add(new Size(2, 14, 14, 512, 512, 8, false));  // the question's self-attention
            s.add(new Size(2, 100, 14, 512, 512, 8, false)); // the image guided by the question
            s.add(SPEC.withBatch(2));
        }
        return s;
    }

    /** The cost model shared with the PyTorch peer (GEMM FLOPs only): {bytes, flops}. */
    static double[] cost(String op, Size s) {
        double b = s.batch(), lq = s.queries(), lk = s.keys(), d = s.dim(), h = s.hidden();
        double in = b * lq * d + 2 * b * lk * d, w = 4 * h * d + 4 * h, out = b * lq * d;
        double m = 2 * b * lq * h * d + 2 * b * lk * h * d + b * lq * lk * h * 2;
        if (op.endsWith("forward")) return new double[] {4 * (in + w + out), 2 * m};
        return new double[] {4 * (3 * in + 3 * w + 2 * out), 6 * m};
    }

    @Override public void check(boolean quick, CudaContext ctx, SplittableRandom rnd, Check.Report report) {
        String noGpu = ctx == null ? null : MlbSuite.gpuReason();
        if (noGpu != null) report.skipped("MultiHeadAttention", noGpu);
        boolean gpu = ctx != null && noGpu == null;
        for (Size s : sizes(quick)) {
            MultiHeadAttention op = s.op(rnd.nextLong());
            int b = s.batch(), lq = s.queries(), lk = s.keys();
            ObjectMask mask = s.mask();
            float[] x = Stats.gaussian(rnd, b * lq * s.dim()), y = Stats.gaussian(rnd, b * lk * s.dim()), g = Stats.gaussian(rnd, b * lq * s.dim());
            float[] k = lq == lk ? x : y; // self-attention where the lengths agree, else the query attends to y
            MultiHeadAttentionReference.Result fRef = MultiHeadAttentionReference.forward(op, x, k, k, mask, b, lq, lk);
            List<double[]> gRef = MultiHeadAttentionReference.backward(op, x, k, k, mask, g, b, lq, lk).tensors();
            MultiHeadAttentionCpu cpu = new MultiHeadAttentionCpu(op);
            MultiHeadAttention.Result cr = cpu.forwardWithAttention(x, k, k, mask, b, lq, lk);
            report.add(forwardRow(cpu.backend(), s, cr.out(), cr.attention(), fRef, Check.TOLERANCE));
            report.add(backwardRow(cpu.backend(), s, cpu.backward(x, k, k, mask, g, b, lq, lk), gRef, Check.TOLERANCE));
            if (!gpu) continue;
            for (MultiHeadAttentionCuda.Path path : List.of(MultiHeadAttentionCuda.Path.FUSED, MultiHeadAttentionCuda.Path.UNFUSED)) {
                for (Precision p : Precision.values()) {
                    // the reduced modes at widths under 32 are a few rounded products with nothing to average (see MlbAttentionSuite)
                    if (p != Precision.FP32 && (path == MultiHeadAttentionCuda.Path.UNFUSED || Math.min(s.dim(), s.hidden()) < 32)) continue;
                    String backend = "cuda-" + p.name().toLowerCase() + (path == MultiHeadAttentionCuda.Path.FUSED ? "" : "-unfused");
                    double tol = p == Precision.FP32 ? Check.TOLERANCE : p.bound();
                    try (MultiHeadAttentionCuda cuda = new MultiHeadAttentionCuda(op, ctx, p, path)) {
                        DeviceRuns.MultiHeadAttentionRun r = DeviceRuns.multiHeadAttention(ctx, cuda, x, k, k, mask, g, b, lq, lk);
                        report.add(forwardRow(backend, s, r.out(), r.attention(), fRef, tol));
                        report.add(backwardRow(backend, s, r.grads(), gRef, tol));
                    }
                }
            }
        }
    }

    static Check.Row forwardRow(String backend, Size s, float[] out, float[] attention, MultiHeadAttentionReference.Result ref, double tol) {
        double e = Math.max(Stats.relativeL2(out, ref.out()), Stats.relativeL2(attention, ref.attention())); // NaN propagates
        return new Check.Row("MultiHeadAttention.forward", backend, s.label(), e, tol, e <= tol);
    }

    static Check.Row backwardRow(String backend, Size s, MultiHeadAttention.Gradients got, List<double[]> ref, double tol) {
        double e = Stats.worstError(got.tensors(), ref);
        return new Check.Row("MultiHeadAttention.backward", backend, s.label(), e, tol, e <= tol);
    }

    @Override public String gpuUnavailableReason() { return MlbSuite.gpuReason(); }

    @Override public List<BenchCase> benchCases(boolean quick) {
        Size s = quick ? MEDIUM : SPEC;
        java.util.function.Supplier<MultiHeadAttention> op = BenchCase.once(() -> s.op(42));
        Size cpu = s;
        int hb = cpu.batch(), b = s.batch(), l = s.queries(), dim = s.dim();
        String label = cpu.label();
        BenchCase host = BenchCase.host("MultiHeadAttention", label, cpu.csvSize(), hb, cost("MultiHeadAttention.forward", cpu),
                cost("MultiHeadAttention.fwd+bwd", cpu), r -> {
                    MultiHeadAttentionCpu c = new MultiHeadAttentionCpu(op.get());
                    float[] x = Stats.gaussian(r, hb * l * dim), g = Stats.gaussian(r, hb * l * dim);
                    return List.of(new BenchCase.HostRun(c.backend(), () -> c.forward(x, x, x, null, hb, l, l), () -> {
                        c.forward(x, x, x, null, hb, l, l);
                        return c.backward(x, x, x, null, g, hb, l, l);
                    }));
                });
        BenchCase device = BenchCase.device("MultiHeadAttention", s.label(), s.csvSize(), b, cost("MultiHeadAttention.forward", s),
                cost("MultiHeadAttention.fwd+bwd", s), BenchCase.PRECISIONS, (ctx, var, st, r) -> {
                    BenchCase.Devices d = new BenchCase.Devices(st);
                    try {
                        MultiHeadAttentionCuda cuda = d.op(new MultiHeadAttentionCuda(op.get(), ctx, BenchCase.precision(var)));
                        DeviceBuffer dx = d.own(DeviceBuffer.of(ctx, Stats.gaussian(r, b * l * dim)));
                        DeviceBuffer dg = d.own(DeviceBuffer.of(ctx, Stats.gaussian(r, b * l * dim)));
                        DeviceBuffer out = d.own(DeviceBuffer.allocateFloats(ctx, (long) b * l * dim));
                        MultiHeadAttentionCuda.GradientBuffers gr = d.own(cuda.allocateGradients(b, l, l)).buffers();
                        // self-attention: one buffer as query, key and value; the maps are not written (as a model runs it)
                        return d.calls(() -> cuda.forward(dx, dx, dx, null, out, null, b, l, l, st), () -> {
                            cuda.forward(dx, dx, dx, null, out, null, b, l, l, st);
                            cuda.backward(dx, dx, dx, null, dg, gr, b, l, l, st);
                        });
                    } catch (RuntimeException e) {
                        throw d.fail(e);
                    }
                });
        return List.of(host, device);
    }
}
