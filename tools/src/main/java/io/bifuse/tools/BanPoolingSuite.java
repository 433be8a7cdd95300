package io.bifuse.tools;

import io.bifuse.testing.Stats;
import io.bifuse.testing.DeviceRuns;
import io.bifuse.cpu.BanPoolingCpu;
import io.bifuse.BanPooling;
import io.bifuse.ObjectMask;
import io.bifuse.cuda.DeviceMatrix;
import io.bifuse.cuda.BanPoolingCuda;
import io.bifuse.cuda.Cuda;
import io.bifuse.cuda.CudaContext;
import io.bifuse.cuda.CudaStream;
import io.bifuse.cuda.DeviceBuffer;
import io.bifuse.cuda.DeviceObjectMask;
import io.bifuse.reference.BanPoolingReference;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

/**
 * {@link BanPooling} in check and bench, at the spec's sizes: B = 256, N ∈ {36, 100} objects, M = 14
 * tokens, K' = 1280 with group 1 (each BAN glimpse's pooling) and K' = 3840 with group 3 (a BCNet with
 * k = 3). Objects are masked as a detector's boxes are: each sample has 10..N real objects (counts
 * drawn uniformly), the rest padding; attention maps are softmax-like (positive, summing to 1 over the
 * real objects' entries) and the projections ReLU outputs, as in the BAN model.
 *
 * <p>Tolerances: the CPU backend ({@code cpu-fp32}: per-sample GEMMs) and the CUDA kernels (FP32, no
 * cuBLAS, so no TF32/BF16 rows) against 1e-5. Forward rows compare the output; backward rows the worst
 * relative L2 of {@code da}, {@code dx}, {@code dy}. The reference costs about 4·B·N·M·K' multiply-adds
 * per forward + backward (6·10⁹ at N = 100, K' = 3840): seconds, so check runs the spec's full batch, the
 * CPU rows at every size; bench times the CPU backend at the spec's sizes too.
 */
final class BanPoolingSuite implements Suite {

    /** Batch, objects, tokens, width K', group k. */
    record Size(int batch, int objects, int tokens, int width, int group) {
        String label() { return "B=" + batch + " N=" + objects + " M=" + tokens + " K'=" + width + " k=" + group; }

        /** The size string shared with the PyTorch peer (ban_pooling_peer.py); the batch is its own column. */
        String csvSize() { return "N=" + objects + ",M=" + tokens + ",K'=" + width + ",k=" + group; }

        Size withBatch(int b) { return new Size(b, objects, tokens, width, group); }

        BanPooling op() { return BanPooling.of(width, group); }
    }

    static final List<Size> SPEC = List.of(new Size(256, 36, 14, 1280, 1), new Size(256, 100, 14, 1280, 1),
            new Size(256, 36, 14, 3840, 3), new Size(256, 100, 14, 3840, 3));

    static List<Size> sizes(boolean quick) {
        List<Size> s = new ArrayList<>(List.of(new Size(3, 7, 5, 12, 3), new Size(2, 1, 1, 1, 1), new Size(4, 36, 14, 129, 1),
                new Size(3, 40, 17, 390, 3)));
        if (!quick) s.addAll(SPEC);
        return s;
    }

    /** The cost model shared with the PyTorch peer: {bytes, flops}. */
    static double[] cost(String op, Size s) {
        double b = s.batch(), n = s.objects(), m = s.tokens(), k = s.width();
        double in = b * n * m + b * (n + m) * k, w = 0, out = b * k / s.group(), mac = b * n * k * (m + 1);
        if (op.endsWith("forward")) return new double[] {4 * (in + w + out), 2 * mac};
        return new double[] {4 * (3 * in + 3 * w + 2 * out), 6 * mac};
    }

    /** Inputs as the BAN model gives them: masks with 10..N real objects, a softmax over the real entries, ReLU features. */
    record Inputs(float[] att, float[] x, float[] y, float[] go, ObjectMask mask) {
        static Inputs random(Size s, SplittableRandom r) {
            int b = s.batch(), n = s.objects(), m = s.tokens(), w = s.width();
            int[] counts = new int[b];
            int lo = Math.min(10, n);
            for (int i = 0; i < b; i++) counts[i] = lo + r.nextInt(n - lo + 1);
            ObjectMask mask = ObjectMask.counts(counts, n);
            float[] att = new float[b * n * m];
            for (int i = 0; i < b; i++) {
                double sum = 0;
                for (int e = 0; e < counts[i] * m; e++) sum += att[i * n * m + e] = (float) Math.exp(r.nextGaussian());
                for (int e = 0; e < counts[i] * m; e++) att[i * n * m + e] /= (float) sum;
            }
            float[] x = Stats.gaussian(r, b * n * w), y = Stats.gaussian(r, b * m * w);
            for (int e = 0; e < x.length; e++) x[e] = Math.max(0f, x[e]);
            for (int e = 0; e < y.length; e++) y[e] = Math.max(0f, y[e]);
            return new Inputs(att, x, y, Stats.gaussian(r, b * w / s.group()), mask);
        }
    }

    @Override public void check(boolean quick, CudaContext ctx, SplittableRandom rnd, Check.Report report) {
        boolean gpu = ctx != null && Cuda.isAvailable();
        for (Size s : sizes(quick)) {
            BanPooling op = s.op();
            BanPoolingCpu onCpu = new BanPoolingCpu(op);
            Inputs in = Inputs.random(s, rnd);
            int b = s.batch(), n = s.objects(), m = s.tokens();
            double[] fRef = BanPoolingReference.forward(op, in.att, in.x, in.y, in.mask, b, n, m);
            BanPoolingReference.Grads gRef = BanPoolingReference.backward(op, in.att, in.x, in.y, in.mask, in.go, b, n, m);
            report.add("BanPooling.forward", onCpu.backend(), s.label(), onCpu.forward(in.att, in.x, in.y, in.mask, b, n, m), fRef, Check.TOLERANCE);
            report.add(backwardRow(onCpu.backend(), s, onCpu.backward(in.att, in.x, in.y, in.mask, in.go, b, n, m), gRef));
            if (!gpu) continue;
            try (BanPoolingCuda cuda = new BanPoolingCuda(op, ctx)) {
                float[][] r = runCuda(ctx, cuda, s, in);
                report.add("BanPooling.forward", "cuda-fp32", s.label(), r[0], fRef, Check.TOLERANCE);
                report.add(backwardRow("cuda-fp32", s, new BanPooling.Gradients(r[1], r[2], r[3]), gRef));
            }
        }
    }

    static Check.Row backwardRow(String backend, Size s, BanPooling.Gradients got, BanPoolingReference.Grads ref) {
        double e = 0;
        double[] errs = {Stats.relativeL2(got.da(), ref.da()), Stats.relativeL2(got.dx(), ref.dx()), Stats.relativeL2(got.dy(), ref.dy())};
        for (double v : errs) if (!(v <= e)) e = v; // NaN (an unwritten element) sticks
        return new Check.Row("BanPooling.backward", backend, s.label(), e, Check.TOLERANCE, e <= Check.TOLERANCE);
    }

    /** Forward and backward on dense device buffers, every output NaN-poisoned first, inputs unchanged after: {out, da, dx, dy}. */
    static float[][] runCuda(CudaContext ctx, BanPoolingCuda cuda, Size s, Inputs in) {
        int b = s.batch(), n = s.objects(), m = s.tokens(), w = s.width(), ow = w / s.group();
        try (CudaStream st = CudaStream.create(ctx);
             DeviceBuffer a = DeviceBuffer.of(ctx, in.att); DeviceBuffer x = DeviceBuffer.of(ctx, in.x); DeviceBuffer y = DeviceBuffer.of(ctx, in.y);
             DeviceBuffer g = DeviceBuffer.of(ctx, in.go); DeviceObjectMask mask = DeviceObjectMask.upload(ctx, in.mask);
             DeviceBuffer out = DeviceBuffer.allocateFloats(ctx, (long) b * ow); DeviceBuffer ga = DeviceBuffer.allocateFloats(ctx, in.att.length);
             DeviceBuffer gx = DeviceBuffer.allocateFloats(ctx, in.x.length); DeviceBuffer gy = DeviceBuffer.allocateFloats(ctx, in.y.length)) {
            for (DeviceBuffer d : List.of(out, ga, gx, gy)) d.fill(Float.NaN);
            DeviceMatrix ma = DeviceMatrix.of("attention", a, b, n * m), mx = DeviceMatrix.of("x", x, b * n, w), my = DeviceMatrix.of("y", y, b * m, w);
            cuda.forward(ma, mx, my, mask, b, n, m, out, st);
            cuda.backward(ma, mx, my, mask, b, n, m, g, DeviceMatrix.of("gradAttention", ga, b, n * m), DeviceMatrix.of("gradX", gx, b * n, w),
                    DeviceMatrix.of("gradY", gy, b * m, w), false, st);
            float[][] r = {new float[b * ow], new float[in.att.length], new float[in.x.length], new float[in.y.length]};
            out.read(r[0], st);
            ga.read(r[1], st);
            gx.read(r[2], st);
            gy.read(r[3], st);
            DeviceRuns.unchanged(st, "attention", a, in.att, "x", x, in.x, "y", y, in.y, "gradOut", g, in.go);
            return r;
        }
    }

    @Override public String gpuUnavailableReason() { return null; } // FP32 kernels only: no cuBLAS, no cuFFT

    @Override public List<BenchCase> benchCases(boolean quick) {
        List<BenchCase> cases = new java.util.ArrayList<>();
        for (Size s : quick ? List.of(new Size(8, 36, 14, 256, 1)) : SPEC) {
            BanPooling op = s.op();
            Size cpu = s;
            int hb = cpu.batch(), n = s.objects(), m = s.tokens(), b = s.batch(), w = s.width();
            String label = cpu.label();
            cases.add(BenchCase.host("BanPooling", label, cpu.csvSize(), hb, cost("BanPooling.forward", cpu), cost("BanPooling.fwd+bwd", cpu), r -> {
                BanPoolingCpu c = new BanPoolingCpu(op);
                Inputs in = Inputs.random(cpu, r);
                return List.of(new BenchCase.HostRun(c.backend(), () -> c.forward(in.att, in.x, in.y, in.mask, hb, n, m), () -> {
                    c.forward(in.att, in.x, in.y, in.mask, hb, n, m);
                    return c.backward(in.att, in.x, in.y, in.mask, in.go, hb, n, m);
                }));
            }));
            cases.add(BenchCase.device("BanPooling", s.label(), s.csvSize(), b, cost("BanPooling.forward", s), cost("BanPooling.fwd+bwd", s),
                    List.of("fp32"), (ctx, v, st, r) -> {
                        BenchCase.Devices d = new BenchCase.Devices(st);
                        try {
                            BanPoolingCuda cuda = d.op(new BanPoolingCuda(op, ctx));
                            Inputs in = Inputs.random(s, r);
                            DeviceMatrix ma = DeviceMatrix.of("attention", d.own(DeviceBuffer.of(ctx, in.att)), b, n * m);
                            DeviceMatrix mx = DeviceMatrix.of("x", d.own(DeviceBuffer.of(ctx, in.x)), b * n, w);
                            DeviceMatrix my = DeviceMatrix.of("y", d.own(DeviceBuffer.of(ctx, in.y)), b * m, w);
                            DeviceBuffer g = d.own(DeviceBuffer.of(ctx, in.go));
                            DeviceObjectMask mask = d.own(DeviceObjectMask.upload(ctx, in.mask));
                            DeviceBuffer out = d.own(DeviceBuffer.allocateFloats(ctx, (long) b * op.outWidth()));
                            DeviceMatrix mga = DeviceMatrix.of("gradAttention", d.own(DeviceBuffer.allocateFloats(ctx, in.att.length)), b, n * m);
                            DeviceMatrix mgx = DeviceMatrix.of("gradX", d.own(DeviceBuffer.allocateFloats(ctx, in.x.length)), b * n, w);
                            DeviceMatrix mgy = DeviceMatrix.of("gradY", d.own(DeviceBuffer.allocateFloats(ctx, in.y.length)), b * m, w);
                            return d.calls(() -> cuda.forward(ma, mx, my, mask, b, n, m, out, st), () -> {
                                cuda.forward(ma, mx, my, mask, b, n, m, out, st);
                                cuda.backward(ma, mx, my, mask, b, n, m, g, mga, mgx, mgy, false, st);
                            });
                        } catch (RuntimeException e) {
                            throw d.fail(e);
                        }
                    }));
        }
        return cases;
    }
}
