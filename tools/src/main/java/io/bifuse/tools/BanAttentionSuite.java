package io.bifuse.tools;

import io.bifuse.testing.Stats;
import io.bifuse.testing.BanAttentionRuns;
import io.bifuse.cpu.BanAttentionCpu;
import io.bifuse.BanAttention;
import io.bifuse.ObjectMask;
import io.bifuse.cuda.DeviceMatrix;
import io.bifuse.cuda.BanAttentionCuda;
import io.bifuse.cuda.Cuda;
import io.bifuse.cuda.CudaContext;
import io.bifuse.cuda.CudaStream;
import io.bifuse.cuda.DeviceBuffer;
import io.bifuse.cuda.DeviceObjectMask;
import io.bifuse.cuda.Kernels;
import io.bifuse.reference.BanAttentionReference;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

/**
 * {@link BanAttention} in check and bench. Tolerance: the CPU backend and CUDA (FP32 kernels, no GEMM) against
 * 1e-5. Forward rows compare the maps and the finite logits (the worse of the two; a {@code −inf} logit
 * where the reference has a finite one, or the reverse, is an error of +inf); backward rows the worst
 * relative L2 over {@code dxp}, {@code dyp}, {@code logits.weight} and {@code logits.bias} (exact zeros, an
 * absolute error). Masks: 10..N real objects per sample (ban-vqa's detector gives 10..100 boxes), and at the
 * small sizes an empty and a single-object sample.
 *
 * <p>The float64 reference costs about {@code 5·B·G·N·M·K} multiply-adds for forward + backward (7·10¹⁰ at
 * B = 256, N = 100): seconds on a many-core host, so check runs the spec's sizes at the spec's batch, the
 * CPU backend ({@code cpu-fp32}: per-sample GEMMs) included at every size; bench times the CPU backend at
 * the spec's sizes too.
 */
final class BanAttentionSuite implements Suite {

    /** Batch, objects, tokens, width K, glimpses. */
    record Size(int batch, int objects, int tokens, int width, int glimpses) {
        String label() { return "B=" + batch + " N=" + objects + " M=" + tokens + " K=" + width + " G=" + glimpses; }

        /** The size string shared with the PyTorch peer (ban_attention_peer.py); the batch is its own column. */
        String csvSize() { return "N=" + objects + ",M=" + tokens + ",K=" + width + ",G=" + glimpses; }

        Size withBatch(int b) { return new Size(b, objects, tokens, width, glimpses); }
    }

    static final Size SPEC_36 = new Size(256, 36, 14, 3840, 8), SPEC_100 = new Size(256, 100, 14, 3840, 8);
    static final Size SMALL = new Size(4, 9, 14, 70, 8);

    static List<Size> sizes(boolean quick) {
        List<Size> s = new ArrayList<>(List.of(new Size(3, 5, 3, 33, 3), SMALL, new Size(3, 129, 3, 20, 2), new Size(3, 7, 17, 24, 1)));
        if (!quick) {
            s.add(SPEC_36);
            s.add(SPEC_100);
        }
        return s;
    }

    /** The cost model shared with the PyTorch peer: I = B(N+M)K, W = G·K + G, O = B·G·N·M, Mac = B·G·N·M·K; {bytes, flops}. */
    static double[] cost(String op, Size s) {
        double b = s.batch(), n = s.objects(), m = s.tokens(), k = s.width(), g = s.glimpses();
        double in = b * (n + m) * k, w = g * k + g, out = b * g * n * m, mac = b * g * n * m * k;
        if (op.endsWith("forward")) return new double[] {4 * (in + w + out), 2 * mac};
        return new double[] {4 * (3 * in + 3 * w + 2 * out), 6 * mac};
    }

    /** 10..N real objects per sample; with {@code edges} (and B > 2) sample 0 empty and sample 1 a single object. */
    static ObjectMask mask(SplittableRandom r, int batch, int objects, boolean edges) {
        int lo = Math.min(10, objects);
        int[] c = new int[batch];
        for (int b = 0; b < batch; b++) c[b] = lo + r.nextInt(objects - lo + 1);
        if (edges && batch > 2) {
            c[0] = 0;
            c[1] = 1;
        }
        return ObjectMask.counts(c, objects);
    }

    static String gpuReason() {
        if (!Cuda.isAvailable()) return Cuda.status().reason();
        if (Kernels.fatbin() == null) return "no CUDA kernels in this build (built without nvcc)";
        return null;
    }

    @Override public void check(boolean quick, CudaContext ctx, SplittableRandom rnd, Check.Report report) {
        String noGpu = ctx == null ? null : gpuReason();
        if (noGpu != null) report.skipped("BanAttention", noGpu);
        boolean gpu = ctx != null && noGpu == null;
        for (Size s : sizes(quick)) {
            int b = s.batch(), n = s.objects(), m = s.tokens();
            BanAttention op = BanAttention.random(s.glimpses(), s.width(), rnd.nextLong());
            BanAttentionCpu onCpu = new BanAttentionCpu(op);
            float[] xp = Stats.gaussian(rnd, b * n * s.width()), yp = Stats.gaussian(rnd, b * m * s.width());
            float[] ga = Stats.gaussian(rnd, b * s.glimpses() * n * m);
            boolean spec = s.width() == SPEC_100.width();
            ObjectMask mask = mask(rnd, b, n, !spec);
            BanAttentionReference.Result fRef = BanAttentionReference.forward(op, xp, yp, mask, b, n, m);
            List<double[]> gRef = BanAttentionReference.backward(op, xp, yp, mask, ga, b, n, m).tensors();
            BanAttention.Result onCpuMaps = onCpu.forward(xp, yp, mask, b, n, m);
            report.add(forwardRow(onCpu.backend(), s, onCpuMaps.attention(), onCpuMaps.logits(), fRef));
            report.add(backwardRow(onCpu.backend(), s, onCpu.backward(xp, yp, mask, ga, b, n, m), gRef));
            if (!gpu) continue;
            try (BanAttentionCuda cuda = new BanAttentionCuda(op, ctx)) {
                BanAttentionRuns.Run r = BanAttentionRuns.run(ctx, cuda, xp, yp, mask, ga, b, n, m, 0, false);
                String path = cuda.isFused(n, m) ? "cuda-fp32" : "cuda-fp32-tiled";
                report.add(forwardRow(path, s, r.attention(), r.logits(), fRef));
                report.add(backwardRow(path, s, r.grads(), gRef));
            }
        }
    }

    static Check.Row forwardRow(String backend, Size s, float[] att, float[] logits, BanAttentionReference.Result ref) {
        double e = Math.max(Stats.relativeL2(att, ref.attention()), logitsError(logits, ref.logits())); // NaN propagates
        return new Check.Row("BanAttention.forward", backend, s.label(), e, Check.TOLERANCE, e <= Check.TOLERANCE);
    }

    /** Relative L2 over the finite reference logits; +inf when the {@code −inf} positions differ. */
    static double logitsError(float[] got, double[] ref) {
        double num = 0, den = 0;
        for (int i = 0; i < ref.length; i++) {
            boolean padded = ref[i] == Double.NEGATIVE_INFINITY;
            if (padded != (got[i] == Float.NEGATIVE_INFINITY)) return Double.POSITIVE_INFINITY;
            if (padded) continue;
            double d = got[i] - ref[i];
            num += d * d;
            den += ref[i] * ref[i];
        }
        return den == 0 ? Math.sqrt(num) : Math.sqrt(num / den);
    }

    static Check.Row backwardRow(String backend, Size s, BanAttention.Gradients got, List<double[]> ref) {
        List<float[]> g = got.tensors();
        if (g.size() != ref.size()) throw new IllegalStateException("gradient tensors: " + g.size() + " vs " + ref.size());
        double worst = 0;
        for (int i = 0; i < g.size(); i++) {
            double e = Stats.relativeL2(g.get(i), ref.get(i));
            if (!(e <= worst)) worst = e; // NaN sticks
        }
        return new Check.Row("BanAttention.backward", backend, s.label(), worst, Check.TOLERANCE, worst <= Check.TOLERANCE);
    }

    @Override public String gpuUnavailableReason() { return gpuReason(); }

    @Override public List<BenchCase> benchCases(boolean quick) {
        List<BenchCase> cases = new java.util.ArrayList<>();
        // The CPU rows at B = 32 (PyTorch's einsum takes a minute and a half per training step at B = 256 on 2 cores).
        for (Size cpu : quick ? List.of(SMALL) : List.of(SPEC_36.withBatch(32), SPEC_100.withBatch(32))) {
            int b = cpu.batch(), n = cpu.objects(), m = cpu.tokens(), k = cpu.width(), g = cpu.glimpses();
            BanAttention op = BanAttention.random(g, k, 42);
            String label = cpu.label();
            cases.add(BenchCase.host("BanAttention", label, cpu.csvSize(), b, cost("BanAttention.forward", cpu), cost("BanAttention.fwd+bwd", cpu), r -> {
                BanAttentionCpu c = new BanAttentionCpu(op);
                float[] xp = Stats.gaussian(r, b * n * k), yp = Stats.gaussian(r, b * m * k), ga = Stats.gaussian(r, b * g * n * m);
                ObjectMask mask = mask(r, b, n, false);
                return List.of(new BenchCase.HostRun(c.backend(), () -> c.forward(xp, yp, mask, b, n, m), () -> {
                    c.forward(xp, yp, mask, b, n, m);
                    return c.backward(xp, yp, mask, ga, b, n, m);
                }));
            }));
        }
        for (Size s : quick ? List.of(SMALL) : List.of(SPEC_36, SPEC_100)) {
            int b = s.batch(), n = s.objects(), m = s.tokens(), k = s.width(), g = s.glimpses();
            BanAttention op = BanAttention.random(g, k, 42);
            cases.add(BenchCase.device("BanAttention", s.label(), s.csvSize(), b, cost("BanAttention.forward", s), cost("BanAttention.fwd+bwd", s),
                    List.of("fp32"), (ctx, v, st, r) -> {
                        BenchCase.Devices d = new BenchCase.Devices(st);
                        try {
                            BanAttentionCuda cuda = d.op(new BanAttentionCuda(op, ctx));
                            DeviceMatrix mx = DeviceMatrix.of("xp", d.own(DeviceBuffer.of(ctx, Stats.gaussian(r, b * n * k))), b * n, k);
                            DeviceMatrix my = DeviceMatrix.of("yp", d.own(DeviceBuffer.of(ctx, Stats.gaussian(r, b * m * k))), b * m, k);
                            DeviceBuffer dga = d.own(DeviceBuffer.of(ctx, Stats.gaussian(r, b * g * n * m)));
                            DeviceObjectMask dm = d.own(DeviceObjectMask.upload(ctx, mask(r, b, n, false)));
                            DeviceBuffer att = d.own(DeviceBuffer.allocateFloats(ctx, (long) b * g * n * m));
                            DeviceMatrix mgx = DeviceMatrix.of("gradXp", d.own(DeviceBuffer.allocateFloats(ctx, (long) b * n * k)), b * n, k);
                            DeviceMatrix mgy = DeviceMatrix.of("gradYp", d.own(DeviceBuffer.allocateFloats(ctx, (long) b * m * k)), b * m, k);
                            DeviceBuffer gw = d.own(DeviceBuffer.allocateFloats(ctx, (long) g * k)), gb = d.own(DeviceBuffer.allocateFloats(ctx, g));
                            // The logits are an optional output: the timed forward is the op as a model uses it (maps only).
                            return d.calls(() -> cuda.forward(mx, my, dm, b, n, m, att, null, st), () -> {
                                cuda.forward(mx, my, dm, b, n, m, att, null, st);
                                cuda.backward(mx, my, dm, b, n, m, att, dga, mgx, mgy, gw, gb, false, st);
                            });
                        } catch (RuntimeException e) {
                            throw d.fail(e);
                        }
                    }));
        }
        return cases;
    }
}
