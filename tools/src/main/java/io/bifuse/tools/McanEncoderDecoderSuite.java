package io.bifuse.tools;

import io.bifuse.LayerNorm;
import io.bifuse.McanEncoderDecoder;
import io.bifuse.ObjectMask;
import io.bifuse.Precision;
import io.bifuse.cpu.McanEncoderDecoderCpu;
import io.bifuse.cuda.CudaContext;
import io.bifuse.cuda.DeviceBuffer;
import io.bifuse.cuda.McanEncoderDecoderCuda;
import io.bifuse.reference.McanEncoderDecoderReference;
import io.bifuse.testing.DeviceRuns;
import io.bifuse.testing.Stats;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

/**
 * {@link McanEncoderDecoder} in check and bench, with {@link SelfAttentionUnitSuite}'s tolerances (TF32 / BF16 on the
 * output only). Check sizes pad both sequences (the question's sample b keeps {@code Lq − b mod 2} tokens, the image's
 * {@code Lv − b mod 3} objects). The float64 reference of MCAN's six layers at its widths costs about
 * {@code 6·(4 B L H² + 2 B L H F)·2} multiply-adds a forward per side and several times that backward, so check runs
 * two layers at MCAN's widths at B = 2 (not quick), the CPU (float32) and CUDA rows both; the bench case is
 * MCAN's (6 layers, B = 64, 14 tokens, 100 objects, hidden 512, 8 heads, F = 2048, M = 512, G = 1, O = 1024), as
 * {@code mcan_encoder_decoder_peer.py} runs it.
 */
final class McanEncoderDecoderSuite implements Suite {

    record Size(int layers, int batch, int lq, int lv, int hidden, int heads, int ffn, int mlp, int glimpses, int out) {
        String label() {
            return "n=" + layers + " B=" + batch + " Lq=" + lq + " Lv=" + lv + " H=" + hidden + " heads=" + heads + " F=" + ffn + " M=" + mlp + " G=" + glimpses
                    + " O=" + out;
        }

        String csvSize() {
            return "n=" + layers + ",Lq=" + lq + ",Lv=" + lv + ",H=" + hidden + ",heads=" + heads + ",F=" + ffn + ",M=" + mlp + ",G=" + glimpses + ",O=" + out;
        }

        Size withBatch(int b) { return new Size(layers, b, lq, lv, hidden, heads, ffn, mlp, glimpses, out); }

        McanEncoderDecoder op(long seed) { return McanEncoderDecoder.random(layers, hidden, heads, ffn, mlp, glimpses, out, LayerNorm.mcan(), seed); }

        ObjectMask mask(int tokens, int period) {
            int[] c = new int[batch];
            for (int b = 0; b < batch; b++) c[b] = Math.max(1, tokens - b % period);
            return ObjectMask.counts(c, tokens);
        }
    }

    static final Size SPEC = new Size(6, 64, 14, 100, 512, 8, 2048, 512, 1, 1024);
    static final Size MEDIUM = new Size(2, 2, 14, 20, 64, 4, 128, 32, 1, 96);

    static List<Size> sizes(boolean quick) {
        List<Size> s = new ArrayList<>(List.of(new Size(1, 3, 5, 7, 12, 3, 20, 8, 2, 10), MEDIUM));
        if (!quick) s.add(new Size(2, 2, 14, 100, 512, 8, 2048, 512, 1, 1024));
        return s;
    }

    /** The cost model shared with the PyTorch peer (GEMM FLOPs only): {bytes, flops}. */
    static double[] cost(String op, Size s) {
        double n = s.layers(), b = s.batch(), lq = s.lq(), lv = s.lv(), h = s.hidden(), f = s.ffn(), m = s.mlp(), g = s.glimpses(), o = s.out();
        double in = b * (lq + lv) * h, w = n * (4 * h * h + 2 * h * f) + n * (8 * h * h + 2 * h * f) + 2 * (h * m + m * g + g * h * o), outF = b * o;
        double sa = 4 * b * lq * h * h + 2 * b * lq * lq * h + 2 * b * lq * h * f;
        double ga = 4 * b * lv * h * h + 2 * b * lv * lv * h + 2 * b * lv * h * h + 2 * b * lq * h * h + 2 * b * lv * lq * h + 2 * b * lv * h * f;
        double mac = n * (sa + ga) + b * (lq + lv) * (h * m + m * g + g * h) + 2 * b * g * h * o;
        if (op.endsWith("forward")) return new double[] {4 * (in + w + outF), 2 * mac};
        return new double[] {4 * (3 * in + 3 * w + 2 * outF), 6 * mac};
    }

    @Override public void check(boolean quick, CudaContext ctx, SplittableRandom rnd, Check.Report report) {
        String noGpu = ctx == null ? null : MlbSuite.gpuReason();
        if (noGpu != null) report.skipped("McanEncoderDecoder", noGpu);
        boolean gpu = ctx != null && noGpu == null;
        for (Size s : sizes(quick)) {
            McanEncoderDecoder op = s.op(rnd.nextLong());
            int b = s.batch(), lq = s.lq(), lv = s.lv();
            ObjectMask qm = s.mask(lq, 2), vm = s.mask(lv, 3);
            float[] q = Stats.gaussian(rnd, b * lq * s.hidden()), v = Stats.gaussian(rnd, b * lv * s.hidden()), g = Stats.gaussian(rnd, b * s.out());
            double[] fRef = McanEncoderDecoderReference.forward(op, q, qm, v, vm, b, lq, lv);
            List<double[]> gRef = McanEncoderDecoderReference.backward(op, q, qm, v, vm, g, b, lq, lv);
            McanEncoderDecoderCpu cpu = new McanEncoderDecoderCpu(op);
            report.add(forwardRow(cpu.backend(), s, cpu.forward(q, qm, v, vm, b, lq, lv), fRef, Check.TOLERANCE));
            report.add(backwardRow(cpu.backend(), s, cpu.backward(q, qm, v, vm, g, b, lq, lv).tensors(), gRef, Check.TOLERANCE));
            if (!gpu) continue;
            for (Precision p : Precision.values()) {
                if (p != Precision.FP32 && s.hidden() < 32) continue;
                String backend = "cuda-" + p.name().toLowerCase();
                try (McanEncoderDecoderCuda cuda = new McanEncoderDecoderCuda(op, ctx, p)) {
                    DeviceRuns.McanEncoderDecoderRun r = DeviceRuns.mcanEncoderDecoder(ctx, cuda, q, qm, v, vm, g, b, lq, lv);
                    report.add(forwardRow(backend, s, r.out(), fRef, p == Precision.FP32 ? Check.TOLERANCE : p.bound()));
                    if (p == Precision.FP32) report.add(backwardRow(backend, s, r.grads().tensors(), gRef, Check.TOLERANCE));
                }
            }
        }
    }

    static Check.Row forwardRow(String backend, Size s, float[] out, double[] ref, double tol) {
        double e = Stats.relativeL2(out, ref);
        return new Check.Row("McanEncoderDecoder.forward", backend, s.label(), e, tol, e <= tol);
    }

    static Check.Row backwardRow(String backend, Size s, List<float[]> got, List<double[]> ref, double tol) {
        double e = Stats.worstError(got, ref);
        return new Check.Row("McanEncoderDecoder.backward", backend, s.label(), e, tol, e <= tol);
    }

    @Override public String gpuUnavailableReason() { return MlbSuite.gpuReason(); }

    @Override public List<BenchCase> benchCases(boolean quick) {
        Size s = quick ? MEDIUM : SPEC;
        java.util.function.Supplier<McanEncoderDecoder> op = BenchCase.once(() -> s.op(42));
        // The CPU rows at B = 8 unless quick (a training step at B = 64 takes over a minute on 2 cores; the peers run at the same batch: benchmarks/cpu-vs-torch.sh).
        Size cpu = quick ? s : s.withBatch(8);
        int hb = cpu.batch(), b = s.batch(), lq = s.lq(), lv = s.lv(), h = s.hidden();
        String label = cpu.label();
        BenchCase host = BenchCase.host("McanEncoderDecoder", label, cpu.csvSize(), hb, cost("McanEncoderDecoder.forward", cpu),
                cost("McanEncoderDecoder.fwd+bwd", cpu), r -> {
                    McanEncoderDecoderCpu c = new McanEncoderDecoderCpu(op.get());
                    float[] q = Stats.gaussian(r, hb * lq * h), v = Stats.gaussian(r, hb * lv * h), g = Stats.gaussian(r, hb * s.out());
                    return List.of(new BenchCase.HostRun(c.backend(), () -> c.forward(q, null, v, null, hb, lq, lv), () -> {
                        c.forward(q, null, v, null, hb, lq, lv);
                        return c.backward(q, null, v, null, g, hb, lq, lv);
                    }));
                });
        BenchCase device = BenchCase.device("McanEncoderDecoder", s.label(), s.csvSize(), b, cost("McanEncoderDecoder.forward", s),
                cost("McanEncoderDecoder.fwd+bwd", s), BenchCase.PRECISIONS, (ctx, var, st, r) -> {
                    BenchCase.Devices d = new BenchCase.Devices(st);
                    try {
                        McanEncoderDecoderCuda cuda = d.op(new McanEncoderDecoderCuda(op.get(), ctx, BenchCase.precision(var)));
                        DeviceBuffer dq = d.own(DeviceBuffer.of(ctx, Stats.gaussian(r, b * lq * h)));
                        DeviceBuffer dv = d.own(DeviceBuffer.of(ctx, Stats.gaussian(r, b * lv * h)));
                        DeviceBuffer dg = d.own(DeviceBuffer.of(ctx, Stats.gaussian(r, b * s.out())));
                        DeviceBuffer out = d.own(DeviceBuffer.allocateFloats(ctx, (long) b * s.out()));
                        McanEncoderDecoderCuda.GradientBuffers gr = d.own(cuda.allocateGradients(b, lq, lv)).buffers();
                        return d.calls(() -> cuda.forward(dq, null, dv, null, out, b, lq, lv, st), () -> {
                            cuda.forward(dq, null, dv, null, out, b, lq, lv, st);
                            cuda.backward(dq, null, dv, null, dg, gr, b, lq, lv, st);
                        });
                    } catch (RuntimeException e) {
                        throw d.fail(e);
                    }
                });
        return List.of(host, device);
    }
}
