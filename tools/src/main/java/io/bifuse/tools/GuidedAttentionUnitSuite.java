package io.bifuse.tools;

import io.bifuse.LayerNorm;
import io.bifuse.ObjectMask;
import io.bifuse.Precision;
import io.bifuse.GuidedAttentionUnit;
import io.bifuse.cpu.GuidedAttentionUnitCpu;
import io.bifuse.cuda.CudaContext;
import io.bifuse.cuda.DeviceBuffer;
import io.bifuse.cuda.GuidedAttentionUnitCuda;
import io.bifuse.reference.GuidedAttentionUnitReference;
import io.bifuse.testing.DeviceRuns;
import io.bifuse.testing.Stats;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

/**
 * {@link GuidedAttentionUnit} in check and bench, as {@link SelfAttentionUnitSuite} (the same tolerances and the
 * same reason to check TF32 / BF16 on the output only). Check sizes pad both sequences (x's sample b keeps
 * {@code Lx − b mod 3} objects, y's {@code Ly − b mod 2} tokens). The bench case is MCAN's image unit: B = 64,
 * 100 objects guided by 14 tokens, hidden 512, 8 heads, F = 2048, mcan-vqa's LayerNorm, nothing padded, as
 * {@code guided_attention_unit_peer.py} runs it, on the CPU (float32) and on CUDA.
 */
final class GuidedAttentionUnitSuite implements Suite {

    record Size(int batch, int lx, int ly, int hidden, int heads, int ffn, LayerNorm norm) {
        String variant() { return norm.variant() == LayerNorm.Variant.MCAN ? "mcan" : "pytorch"; }

        String label() { return "B=" + batch + " Lx=" + lx + " Ly=" + ly + " H=" + hidden + " heads=" + heads + " F=" + ffn + " " + variant(); }

        String csvSize() { return "Lx=" + lx + ",Ly=" + ly + ",H=" + hidden + ",heads=" + heads + ",F=" + ffn + "," + variant(); }

        Size withBatch(int b) { return new Size(b, lx, ly, hidden, heads, ffn, norm); }

        GuidedAttentionUnit op(long seed) { return GuidedAttentionUnit.random(hidden, heads, ffn, norm, seed); }

        ObjectMask mask(int tokens, int period) {
            int[] c = new int[batch];
            for (int b = 0; b < batch; b++) c[b] = Math.max(1, tokens - b % period);
            return ObjectMask.counts(c, tokens);
        }
    }

    static final Size SPEC = new Size(64, 100, 14, 512, 8, 2048, LayerNorm.mcan());
    static final Size MEDIUM = new Size(4, 20, 14, 64, 4, 128, LayerNorm.mcan());

    static List<Size> sizes(boolean quick) {
        List<Size> s = new ArrayList<>(List.of(new Size(3, 7, 5, 12, 3, 20, LayerNorm.mcan()), new Size(2, 5, 9, 16, 2, 9, LayerNorm.pytorch()), MEDIUM));
        if (!quick) s.add(SPEC.withBatch(2));
        return s;
    }

    /** The cost model shared with the PyTorch peer (GEMM FLOPs only): {bytes, flops}. */
    static double[] cost(String op, Size s) {
        double b = s.batch(), lx = s.lx(), ly = s.ly(), h = s.hidden(), f = s.ffn();
        double in = b * lx * h + b * ly * h, w = 8 * h * h + 2 * h * f + 8 * h + f + h + 6 * h, out = b * lx * h;
        double m = 4 * b * lx * h * h + 2 * b * lx * lx * h + 2 * b * lx * h * h + 2 * b * ly * h * h + 2 * b * lx * ly * h + 2 * b * lx * h * f;
        if (op.endsWith("forward")) return new double[] {4 * (in + w + out), 2 * m};
        return new double[] {4 * (3 * in + 3 * w + 2 * out), 6 * m};
    }

    @Override public void check(boolean quick, CudaContext ctx, SplittableRandom rnd, Check.Report report) {
        String noGpu = ctx == null ? null : MlbSuite.gpuReason();
        if (noGpu != null) report.skipped("GuidedAttentionUnit", noGpu);
        boolean gpu = ctx != null && noGpu == null;
        for (Size s : sizes(quick)) {
            GuidedAttentionUnit op = s.op(rnd.nextLong());
            int b = s.batch(), lx = s.lx(), ly = s.ly();
            ObjectMask xm = s.mask(lx, 3), ym = s.mask(ly, 2);
            float[] x = Stats.gaussian(rnd, b * lx * s.hidden()), y = Stats.gaussian(rnd, b * ly * s.hidden()), g = Stats.gaussian(rnd, b * lx * s.hidden());
            double[] fRef = GuidedAttentionUnitReference.forward(op, x, xm, y, ym, b, lx, ly);
            List<double[]> gRef = GuidedAttentionUnitReference.backward(op, x, xm, y, ym, g, b, lx, ly);
            GuidedAttentionUnitCpu cpu = new GuidedAttentionUnitCpu(op);
            report.add(forwardRow(cpu.backend(), s, cpu.forward(x, xm, y, ym, b, lx, ly), fRef, Check.TOLERANCE));
            report.add(backwardRow(cpu.backend(), s, cpu.backward(x, xm, y, ym, g, b, lx, ly), gRef, Check.TOLERANCE));
            if (!gpu) continue;
            for (Precision p : Precision.values()) {
                if (p != Precision.FP32 && s.hidden() < 32) continue; // a few rounded products with nothing to average (see MlbAttentionSuite)
                String backend = "cuda-" + p.name().toLowerCase();
                try (GuidedAttentionUnitCuda cuda = new GuidedAttentionUnitCuda(op, ctx, p)) {
                    DeviceRuns.GuidedAttentionUnitRun r = DeviceRuns.guidedAttentionUnit(ctx, cuda, x, xm, y, ym, g, b, lx, ly);
                    report.add(forwardRow(backend, s, r.out(), fRef, p == Precision.FP32 ? Check.TOLERANCE : p.bound()));
                    if (p == Precision.FP32) report.add(backwardRow(backend, s, r.grads(), gRef, Check.TOLERANCE));
                }
            }
        }
    }

    static Check.Row forwardRow(String backend, Size s, float[] out, double[] ref, double tol) {
        double e = Stats.relativeL2(out, ref);
        return new Check.Row("GuidedAttentionUnit.forward", backend, s.label(), e, tol, e <= tol);
    }

    static Check.Row backwardRow(String backend, Size s, GuidedAttentionUnit.Gradients got, List<double[]> ref, double tol) {
        double e = Stats.worstError(got.tensors(), ref);
        return new Check.Row("GuidedAttentionUnit.backward", backend, s.label(), e, tol, e <= tol);
    }

    @Override public String gpuUnavailableReason() { return MlbSuite.gpuReason(); }

    @Override public List<BenchCase> benchCases(boolean quick) {
        Size s = quick ? MEDIUM : SPEC;
        java.util.function.Supplier<GuidedAttentionUnit> op = BenchCase.once(() -> s.op(42));
        // The CPU rows at B = 16 unless quick (B = 64 takes seconds per step on 2 cores; the peers run at the same batch: benchmarks/cpu-vs-torch.sh).
        Size cpu = quick ? s : s.withBatch(16);
        int hb = cpu.batch(), b = s.batch(), lx = s.lx(), ly = s.ly(), h = s.hidden();
        String label = cpu.label();
        BenchCase host = BenchCase.host("GuidedAttentionUnit", label, cpu.csvSize(), hb, cost("GuidedAttentionUnit.forward", cpu),
                cost("GuidedAttentionUnit.fwd+bwd", cpu), r -> {
                    GuidedAttentionUnitCpu c = new GuidedAttentionUnitCpu(op.get());
                    float[] x = Stats.gaussian(r, hb * lx * h), y = Stats.gaussian(r, hb * ly * h), g = Stats.gaussian(r, hb * lx * h);
                    return List.of(new BenchCase.HostRun(c.backend(), () -> c.forward(x, null, y, null, hb, lx, ly), () -> {
                        c.forward(x, null, y, null, hb, lx, ly);
                        return c.backward(x, null, y, null, g, hb, lx, ly);
                    }));
                });
        BenchCase device = BenchCase.device("GuidedAttentionUnit", s.label(), s.csvSize(), b, cost("GuidedAttentionUnit.forward", s),
                cost("GuidedAttentionUnit.fwd+bwd", s), BenchCase.PRECISIONS, (ctx, var, st, r) -> {
                    BenchCase.Devices d = new BenchCase.Devices(st);
                    try {
                        GuidedAttentionUnitCuda cuda = d.op(new GuidedAttentionUnitCuda(op.get(), ctx, BenchCase.precision(var)));
                        DeviceBuffer dx = d.own(DeviceBuffer.of(ctx, Stats.gaussian(r, b * lx * h)));
                        DeviceBuffer dy = d.own(DeviceBuffer.of(ctx, Stats.gaussian(r, b * ly * h)));
                        DeviceBuffer dg = d.own(DeviceBuffer.of(ctx, Stats.gaussian(r, b * lx * h)));
                        DeviceBuffer out = d.own(DeviceBuffer.allocateFloats(ctx, (long) b * lx * h));
                        GuidedAttentionUnitCuda.GradientBuffers gr = d.own(cuda.allocateGradients(b, lx, ly)).buffers();
                        return d.calls(() -> cuda.forward(dx, null, dy, null, out, b, lx, ly, st), () -> {
                            cuda.forward(dx, null, dy, null, out, b, lx, ly, st);
                            cuda.backward(dx, null, dy, null, dg, gr, b, lx, ly, st);
                        });
                    } catch (RuntimeException e) {
                        throw d.fail(e);
                    }
                });
        return List.of(host, device);
    }
}
