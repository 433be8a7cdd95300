package io.bifuse.tools;

import io.bifuse.LayerNorm;
import io.bifuse.ObjectMask;
import io.bifuse.Precision;
import io.bifuse.SelfAttentionUnit;
import io.bifuse.cpu.SelfAttentionUnitCpu;
import io.bifuse.cuda.CudaContext;
import io.bifuse.cuda.DeviceBuffer;
import io.bifuse.cuda.SelfAttentionUnitCuda;
import io.bifuse.reference.SelfAttentionUnitReference;
import io.bifuse.testing.DeviceRuns;
import io.bifuse.testing.Stats;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

/**
 * {@link SelfAttentionUnit} in check and bench. Tolerances: the CPU backend and CUDA in FP32 against 1e-5; CUDA
 * in TF32 / BF16 against {@link Precision#bound()} on the output only (its gradients go through the feed-forward
 * ReLU, where a rounded operand flips units: {@code SelfAttentionUnitCudaTest} holds them to the perturbation
 * rule instead). Backward rows are the worst relative L2 over every gradient tensor. Check sizes pad the tokens
 * (sample b keeps {@code L − b mod 3}).
 *
 * <p>The bench case is MCAN's image self-attention unit (B = 64, 100 objects, hidden 512, 8 heads, F = 2048,
 * mcan-vqa's LayerNorm), every token real, as {@code self_attention_unit_peer.py} runs it, on the CPU (float32) and on
 * CUDA.
 */
final class SelfAttentionUnitSuite implements Suite {

    record Size(int batch, int tokens, int hidden, int heads, int ffn, LayerNorm norm) {
        String variant() { return norm.variant() == LayerNorm.Variant.MCAN ? "mcan" : "pytorch"; }

        String label() { return "B=" + batch + " L=" + tokens + " H=" + hidden + " heads=" + heads + " F=" + ffn + " " + variant(); }

        String csvSize() { return "L=" + tokens + ",H=" + hidden + ",heads=" + heads + ",F=" + ffn + "," + variant(); }

        Size withBatch(int b) { return new Size(b, tokens, hidden, heads, ffn, norm); }

        SelfAttentionUnit op(long seed) { return SelfAttentionUnit.random(hidden, heads, ffn, norm, seed); }

        ObjectMask mask() {
            int[] c = new int[batch];
            for (int b = 0; b < batch; b++) c[b] = Math.max(1, tokens - b % 3);
            return ObjectMask.counts(c, tokens);
        }
    }

    static final Size SPEC = new Size(64, 100, 512, 8, 2048, LayerNorm.mcan());
    static final Size MEDIUM = new Size(4, 14, 64, 4, 128, LayerNorm.mcan());

    static List<Size> sizes(boolean quick) {
        List<Size> s = new ArrayList<>(List.of(new Size(3, 7, 12, 3, 20, LayerNorm.mcan()), new Size(2, 5, 16, 2, 9, LayerNorm.pytorch()), MEDIUM));
        if (!quick) {
            s.add(new Size(2, 14, 512, 8, 2048, LayerNorm.mcan())); // the question's unit
            s.add(SPEC.withBatch(2));
        }
        return s;
    }

    /** The cost model shared with the PyTorch peer (GEMM FLOPs only): {bytes, flops}. */
    static double[] cost(String op, Size s) {
        double b = s.batch(), l = s.tokens(), h = s.hidden(), f = s.ffn();
        double in = b * l * h, w = 4 * h * h + 2 * h * f + 4 * h + f + h + 4 * h, out = b * l * h;
        double m = 4 * b * l * h * h + 2 * b * l * l * h + 2 * b * l * h * f;
        if (op.endsWith("forward")) return new double[] {4 * (in + w + out), 2 * m};
        return new double[] {4 * (3 * in + 3 * w + 2 * out), 6 * m};
    }

    @Override public void check(boolean quick, CudaContext ctx, SplittableRandom rnd, Check.Report report) {
        String noGpu = ctx == null ? null : MlbSuite.gpuReason();
        if (noGpu != null) report.skipped("SelfAttentionUnit", noGpu);
        boolean gpu = ctx != null && noGpu == null;
        for (Size s : sizes(quick)) {
            SelfAttentionUnit op = s.op(rnd.nextLong());
            int b = s.batch(), l = s.tokens();
            ObjectMask mask = s.mask();
            float[] x = Stats.gaussian(rnd, b * l * s.hidden()), g = Stats.gaussian(rnd, b * l * s.hidden());
            double[] fRef = SelfAttentionUnitReference.forward(op, x, mask, b, l);
            List<double[]> gRef = SelfAttentionUnitReference.backward(op, x, mask, g, b, l);
            SelfAttentionUnitCpu cpu = new SelfAttentionUnitCpu(op);
            report.add(forwardRow(cpu.backend(), s, cpu.forward(x, mask, b, l), fRef, Check.TOLERANCE));
            report.add(backwardRow(cpu.backend(), s, cpu.backward(x, mask, g, b, l), gRef, Check.TOLERANCE));
            if (!gpu) continue;
            for (Precision p : Precision.values()) {
                if (p != Precision.FP32 && s.hidden() < 32) continue; // a few rounded products with nothing to average (see MlbAttentionSuite)
                String backend = "cuda-" + p.name().toLowerCase();
                try (SelfAttentionUnitCuda cuda = new SelfAttentionUnitCuda(op, ctx, p)) {
                    DeviceRuns.SelfAttentionUnitRun r = DeviceRuns.selfAttentionUnit(ctx, cuda, x, mask, g, b, l);
                    report.add(forwardRow(backend, s, r.out(), fRef, p == Precision.FP32 ? Check.TOLERANCE : p.bound()));
                    if (p == Precision.FP32) report.add(backwardRow(backend, s, r.grads(), gRef, Check.TOLERANCE));
                }
            }
        }
    }

    static Check.Row forwardRow(String backend, Size s, float[] out, double[] ref, double tol) {
        double e = Stats.relativeL2(out, ref);
        return new Check.Row("SelfAttentionUnit.forward", backend, s.label(), e, tol, e <= tol);
    }

    static Check.Row backwardRow(String backend, Size s, SelfAttentionUnit.Gradients got, List<double[]> ref, double tol) {
        double e = Stats.worstError(got.tensors(), ref);
        return new Check.Row("SelfAttentionUnit.backward", backend, s.label(), e, tol, e <= tol);
    }

    @Override public String gpuUnavailableReason() { return MlbSuite.gpuReason(); }

    @Override public List<BenchCase> benchCases(boolean quick) {
        Size s = quick ? MEDIUM : SPEC;
        java.util.function.Supplier<SelfAttentionUnit> op = BenchCase.once(() -> s.op(42));
        // The CPU rows at B = 16 unless quick (B = 64 takes seconds per step on 2 cores; the peers run at the same batch: benchmarks/cpu-vs-torch.sh).
        Size cpu = quick ? s : s.withBatch(16);
        int hb = cpu.batch(), b = s.batch(), l = s.tokens(), h = s.hidden();
        String label = cpu.label();
        BenchCase host = BenchCase.host("SelfAttentionUnit", label, cpu.csvSize(), hb, cost("SelfAttentionUnit.forward", cpu),
                cost("SelfAttentionUnit.fwd+bwd", cpu), r -> {
                    SelfAttentionUnitCpu c = new SelfAttentionUnitCpu(op.get());
                    float[] x = Stats.gaussian(r, hb * l * h), g = Stats.gaussian(r, hb * l * h);
                    return List.of(new BenchCase.HostRun(c.backend(), () -> c.forward(x, null, hb, l), () -> {
                        c.forward(x, null, hb, l);
                        return c.backward(x, null, g, hb, l);
                    }));
                });
        BenchCase device = BenchCase.device("SelfAttentionUnit", s.label(), s.csvSize(), b, cost("SelfAttentionUnit.forward", s),
                cost("SelfAttentionUnit.fwd+bwd", s), BenchCase.PRECISIONS, (ctx, var, st, r) -> {
                    BenchCase.Devices d = new BenchCase.Devices(st);
                    try {
                        SelfAttentionUnitCuda cuda = d.op(new SelfAttentionUnitCuda(op.get(), ctx, BenchCase.precision(var)));
                        DeviceBuffer dx = d.own(DeviceBuffer.of(ctx, Stats.gaussian(r, b * l * h)));
                        DeviceBuffer dg = d.own(DeviceBuffer.of(ctx, Stats.gaussian(r, b * l * h)));
                        DeviceBuffer out = d.own(DeviceBuffer.allocateFloats(ctx, (long) b * l * h));
                        SelfAttentionUnitCuda.GradientBuffers gr = d.own(cuda.allocateGradients(b, l)).buffers();
                        return d.calls(() -> cuda.forward(dx, null, out, b, l, st), () -> {
                            cuda.forward(dx, null, out, b, l, st);
                            cuda.backward(dx, null, dg, gr, b, l, st);
                        });
                    } catch (RuntimeException e) {
                        throw d.fail(e);
                    }
                });
        return List.of(host, device);
    }
}
