package io.bifuse.tools;

import io.bifuse.testing.CompactBilinearTolerance;
import io.bifuse.testing.Stats;
import io.bifuse.cpu.CompactBilinearCpu;
import io.bifuse.CompactBilinear;
import io.bifuse.Gradients;
import io.bifuse.Normalization;
import io.bifuse.cuda.CompactBilinearCuda;
import io.bifuse.cuda.Cuda;
import io.bifuse.cuda.CudaContext;
import io.bifuse.cuda.CudaStream;
import io.bifuse.cuda.DeviceBuffer;
import io.bifuse.reference.CompactBilinearReference;
import java.util.List;
import java.util.SplittableRandom;

/** {@link CompactBilinear} in check and bench (the tolerances: {@link CompactBilinearTolerance}). */
final class CompactBilinearSuite implements Suite {

    /** An MCB size of spec §5. */
    record Size(int batch, int dx, int dy, int d) {
        /**
         * B ∈ {1, 64, 512} at d = 16000; at B = 64 an odd 7-smooth d (5^6: the fused path), an odd d with a
         * large prime factor (3·5333) and an even one (2·7919), which take the pipeline; quick: small ones.
         */
        static List<Size> all(boolean quick) {
            if (quick) {
                return List.of(new Size(1, 2048, 2048, 16000), new Size(4, 256, 300, 999), new Size(2, 256, 300, 1125), new Size(3, 100, 80, 2 * 7919));
            }
            return List.of(new Size(1, 2048, 2048, 16000), new Size(64, 2048, 2048, 16000), new Size(512, 2048, 2048, 16000),
                    new Size(64, 2048, 2048, 15625), new Size(64, 2048, 2048, 15999), new Size(64, 2048, 2048, 2 * 7919));
        }

        String label() { return "B=" + batch + " Dx=" + dx + " Dy=" + dy + " d=" + d; }

        String csvSize() { return "Dx=" + dx + ",Dy=" + dy + ",d=" + d; }
    }

    /** Cost model, per call. C = Dx + Dy, F = d/2 + 1 bins; a real FFT of length d is 2.5·d·log2(d) FLOPs. */
    static double[] cost(String op, Size s) {
        double b = s.batch(), c = s.dx() + s.dy(), d = s.d(), f = s.d() / 2 + 1, fft = 2.5 * d * Math.log(d) / Math.log(2);
        // forward: read x, y; write z. 2 flops per sketched input, 2 R2C + 1 C2R, 6 flops per complex product.
        if (op.endsWith("forward")) return new double[] {4 * b * (c + d), b * (2 * c + 3 * fft + 6 * f)};
        // fwd+bwd: also read g, write gx, gy; backward adds the sketches again, 2 R2C (x,y) + 1 R2C (g)
        // + 2 C2R, two conjugate products, and 1 flop per gathered input.
        return new double[] {4 * b * (2 * c + 2 * d), b * (2 * c + 3 * fft + 6 * f) + b * (3 * c + 5 * fft + 12 * f)};
    }

    /** Null when MCB's CUDA path can run, else why not (driver, device, cuFFT). */
    static String gpuReason() {
        if (!Cuda.isAvailable()) return Cuda.status().reason();
        if (!io.bifuse.cuda.CufftPlan.libraryAvailable()) return io.bifuse.cuda.CufftPlan.describeLibrary();
        return null;
    }


    @Override public void check(boolean quick, CudaContext ctx, SplittableRandom rnd, Check.Report report) {
        String noGpu = ctx == null ? null : gpuReason();
        if (noGpu != null) report.skipped("CompactBilinear", noGpu);
        boolean gpu = ctx != null && noGpu == null;
        for (Size s : Size.all(quick)) {
            for (Normalization n : List.of(Normalization.NONE, Normalization.pytorch(), Normalization.caffe())) {
                if (s.batch() >= 512 && n != Normalization.NONE) continue; // the reference alone takes minutes there
                CompactBilinear op = CompactBilinear.seeded(s.dx(), s.dy(), s.d(), rnd.nextLong()).withNormalization(n);
                CompactBilinearCpu onCpu = new CompactBilinearCpu(op);
                float[] x = Stats.gaussian(rnd, s.batch() * s.dx()), y = Stats.gaussian(rnd, s.batch() * s.dy());
                float[] g = Stats.gaussian(rnd, s.batch() * s.d());
                double[] zRef = CompactBilinearReference.forward(op, x, y, s.batch());
                double[][] gRef = CompactBilinearTolerance.backwardComparable(n, s.dx(), s.dy(), s.d()) ? CompactBilinearReference.backward(op, x, y, g, s.batch()) : null;
                double bwdTol = gRef == null ? Double.NaN : CompactBilinearTolerance.backwardTolerance(op, x, y, g, s.batch(), gRef, rnd.nextLong());
                String size = s.label() + (n.isIdentity() ? "" : n.equals(Normalization.pytorch()) ? " +torch-norm" : " +caffe-norm");
                long fwdSeed = rnd.nextLong();
                double fwdTol = CompactBilinearTolerance.forwardTolerance(op, x, y, s.batch(), zRef, fwdSeed); // float32 FFT noise through the signed sqrt
                // float32 FFTs on the CPU too: the same conditioning rule as the GPU rows
                report.add("CompactBilinear.forward", onCpu.backend(), size, onCpu.forward(x, y, s.batch()), zRef, fwdTol);
                if (gRef != null) {
                    report.add(Check.row("CompactBilinear.backward", onCpu.backend(), size, onCpu.backward(x, y, g, s.batch()), gRef, bwdTol));
                }
                if (!gpu) continue;
                boolean defaultIsPipeline = false; // VARIANTS lists the default first
                for (String v : VARIANTS) {
                    String backend = "cuda-" + v;
                    if (v.equals("fp32-pipeline") && defaultIsPipeline) continue; // the default row ran the pipeline already
                    try (CompactBilinearCuda cuda = open(op, ctx, v)) {
                        if (v.equals("fp32")) {
                            defaultIsPipeline = cuda.forwardPath() == CompactBilinearCuda.Path.PIPELINE
                                    && cuda.backwardPath() == CompactBilinearCuda.Path.PIPELINE;
                        }
                        float[][] r = CompactBilinearTolerance.run(ctx, cuda, x, y, g, s.batch());
                        report.add("CompactBilinear.forward", backend, size, r[0], zRef, fwdTol);
                        if (gRef != null) report.add(Check.row("CompactBilinear.backward", backend, size, new Gradients(r[1], r[2]), gRef, bwdTol));
                    }
                }
            }
        }
        outputLayerRows(quick, ctx, gpu, rnd, report);
    }

    /**
     * block.bootstrap's MCB (the pooling with no normalization, then {@code linear_out} and relu):
     * forward and the worst gradient (dx, dy, the layer's weight and bias) against the float64 reference
     * at 1e-5, on the CPU and each GPU variant; quick: small widths, else block.bootstrap's VQA2 MCB
     * (inputs 2048 and 2048, mm_dim 16000, 3000 answers) at B = 8.
     */
    private static void outputLayerRows(boolean quick, CudaContext ctx, boolean gpu, SplittableRandom rnd, Check.Report report) {
        Size s = quick ? new Size(4, 256, 300, 1125) : new Size(8, 2048, 2048, 16000);
        int out = quick ? 30 : 3000, b = s.batch();
        CompactBilinear op = CompactBilinear.seeded(s.dx(), s.dy(), s.d(), rnd.nextLong())
                .withOutput(io.bifuse.Linear.random(out, s.d(), true, rnd.nextLong()), io.bifuse.Activation.RELU);
        float[] x = Stats.gaussian(rnd, b * s.dx()), y = Stats.gaussian(rnd, b * s.dy()), g = Stats.gaussian(rnd, b * out);
        double[] fRef = CompactBilinearReference.forward(op, x, y, b);
        double[][] gRef = CompactBilinearReference.backward(op, x, y, g, b);
        String size = s.label() + " linear_out=" + out + " relu";
        CompactBilinearCpu onCpu = new CompactBilinearCpu(op);
        report.add("CompactBilinear.forward", onCpu.backend(), size, onCpu.forward(x, y, b), fRef, Check.TOLERANCE);
        report.add(worst(onCpu.backend(), size, onCpu.backward(x, y, g, b).tensors(), gRef));
        if (!gpu) return;
        for (String v : VARIANTS) {
            try (CompactBilinearCuda cuda = open(op, ctx, v)) {
                float[][] r = CompactBilinearTolerance.run(ctx, cuda, x, y, g, b);
                report.add("CompactBilinear.forward", "cuda-" + v, size, r[0], fRef, Check.TOLERANCE);
                report.add(worst("cuda-" + v, size, List.of(r).subList(1, r.length), gRef));
            }
        }
    }

    /** The backward row: the largest relative L2 error over the gradient tensors. */
    private static Check.Row worst(String backend, String size, List<float[]> got, double[][] ref) {
        double e = got.size() == ref.length ? 0 : Double.POSITIVE_INFINITY;
        for (int t = 0; t < Math.min(got.size(), ref.length); t++) {
            double et = Stats.relativeL2(got.get(t), ref[t]);
            if (!(et <= e)) e = et; // NaN sticks
        }
        return new Check.Row("CompactBilinear.backward", backend, size, e, Check.TOLERANCE, e <= Check.TOLERANCE);
    }

    @Override public String gpuUnavailableReason() { return gpuReason(); }

    /**
     * The GPU rows: the default (the one-pass fused kernels where d allows, else the pipeline), the cuFFT
     * pipeline itself (its cross-check, and what the fused kernels are measured against), and the
     * pipeline with the atomic sketch.
     */
    static final List<String> VARIANTS = List.of("fp32", "fp32-pipeline", "fp32-atomic");

    static CompactBilinearCuda open(CompactBilinear op, CudaContext ctx, String variant) {
        return switch (variant) {
            case "fp32" -> new CompactBilinearCuda(op, ctx);
            case "fp32-pipeline" -> new CompactBilinearCuda(op, ctx, CompactBilinearCuda.Sketch.DETERMINISTIC, CompactBilinearCuda.Path.PIPELINE);
            case "fp32-atomic" -> new CompactBilinearCuda(op, ctx, CompactBilinearCuda.Sketch.ATOMIC, CompactBilinearCuda.Path.PIPELINE);
            default -> throw new IllegalArgumentException("variant: expected one of " + VARIANTS + ", got " + variant);
        };
    }

    @Override public List<BenchCase> benchCases(boolean quick) {
        List<BenchCase> cases = new java.util.ArrayList<>();
        for (Size s : Size.all(quick)) {
            CompactBilinear op = CompactBilinear.seeded(s.dx(), s.dy(), s.d(), 42);
            int b = s.batch();
            cases.add(new BenchCase("CompactBilinear", s.label(), s.csvSize(), b, cost("CompactBilinear.forward", s),
                    cost("CompactBilinear.fwd+bwd", s), r -> {
                        CompactBilinearCpu cpu = new CompactBilinearCpu(op);
                        float[] x = Stats.gaussian(r, b * s.dx()), y = Stats.gaussian(r, b * s.dy()), g = Stats.gaussian(r, b * s.d());
                        List<BenchCase.HostRun> runs = new java.util.ArrayList<>();
                        // The float64 definition itself, once, at B = 1: what the FFT route saves.
                        if (b == 1) runs.add(new BenchCase.HostRun("reference", () -> CompactBilinearReference.forward(op, x, y, b), null));
                        runs.add(new BenchCase.HostRun(cpu.backend(), () -> cpu.forward(x, y, b), () -> {
                            cpu.forward(x, y, b);
                            return cpu.backward(x, y, g, b);
                        }));
                        return runs;
                    }, VARIANTS, (ctx, v, st, r) -> {
                        BenchCase.Devices d = new BenchCase.Devices(st);
                        try {
                            CompactBilinearCuda cuda = d.op(open(op, ctx, v));
                            DeviceBuffer dx = d.own(DeviceBuffer.of(ctx, Stats.gaussian(r, b * s.dx()))), dy = d.own(DeviceBuffer.of(ctx, Stats.gaussian(r, b * s.dy())));
                            DeviceBuffer dg = d.own(DeviceBuffer.of(ctx, Stats.gaussian(r, b * s.d())));
                            DeviceBuffer z = d.own(DeviceBuffer.allocateFloats(ctx, (long) b * s.d()));
                            DeviceBuffer gx = d.own(DeviceBuffer.allocateFloats(ctx, (long) b * s.dx()));
                            DeviceBuffer gy = d.own(DeviceBuffer.allocateFloats(ctx, (long) b * s.dy()));
                            return d.calls(() -> cuda.forward(dx, dy, z, b, st), () -> {
                                cuda.forward(dx, dy, z, b, st);
                                cuda.backward(dx, dy, dg, gx, gy, b, st);
                            });
                        } catch (RuntimeException e) {
                            throw d.fail(e);
                        }
                    }));
        }
        if (!quick) cases.add(bootstrapCase());
        return cases;
    }

    /**
     * block.bootstrap's VQA2 MCB classifier fusion ({@code options/vqa2/mcb.yaml}: inputs 4800 and 4096,
     * mm_dim 16000, 3000 answers, relu out) at B = 256, as the PyTorch peer's {@code --bootstrap} rows:
     * the pooling's cost plus the output layer's GEMM (weights {@code Out·d} read, {@code 2·B·Out·d} FLOPs
     * forward, three times that for a step).
     */
    static BenchCase bootstrapCase() {
        Size s = new Size(256, 4800, 4096, 16000);
        int b = s.batch(), out = 3000;
        java.util.function.Supplier<CompactBilinear> op = BenchCase.once(() -> CompactBilinear.seeded(s.dx(), s.dy(), s.d(), 42)
                .withOutput(io.bifuse.Linear.random(out, s.d(), true, 43), io.bifuse.Activation.RELU));
        double[] f = cost("CompactBilinear.forward", s), st = cost("CompactBilinear.fwd+bwd", s);
        double c = s.dx() + s.dy(), layer = 2.0 * b * out * s.d();
        double[] fwd = {4 * (b * c + (double) out * s.d() + (double) b * out), f[1] + layer};
        double[] step = {4 * (2 * b * c + 3.0 * out * s.d() + 2.0 * b * out), st[1] + 3 * layer};
        return new BenchCase("CompactBilinear", s.label() + " linear_out=" + out + " relu", s.csvSize() + ",Out=" + out + ",bootstrap", b, fwd, step, r -> {
            CompactBilinearCpu cpu = new CompactBilinearCpu(op.get());
            float[] x = Stats.gaussian(r, b * s.dx()), y = Stats.gaussian(r, b * s.dy()), g = Stats.gaussian(r, b * out);
            return List.of(new BenchCase.HostRun(cpu.backend(), () -> cpu.forward(x, y, b), () -> {
                cpu.forward(x, y, b);
                return cpu.backward(x, y, g, b);
            }));
        }, VARIANTS, (ctx, v, stream, r) -> {
            BenchCase.Devices d = new BenchCase.Devices(stream);
            try {
                CompactBilinearCuda cuda = d.op(open(op.get(), ctx, v));
                DeviceBuffer dx = d.own(DeviceBuffer.of(ctx, Stats.gaussian(r, b * s.dx()))), dy = d.own(DeviceBuffer.of(ctx, Stats.gaussian(r, b * s.dy())));
                DeviceBuffer dg = d.own(DeviceBuffer.of(ctx, Stats.gaussian(r, b * out)));
                DeviceBuffer z = d.own(DeviceBuffer.allocateFloats(ctx, (long) b * out));
                DeviceBuffer gx = d.own(DeviceBuffer.allocateFloats(ctx, (long) b * s.dx())), gy = d.own(DeviceBuffer.allocateFloats(ctx, (long) b * s.dy()));
                DeviceBuffer gw = d.own(DeviceBuffer.allocateFloats(ctx, (long) out * s.d())), gb = d.own(DeviceBuffer.allocateFloats(ctx, out));
                return d.calls(() -> cuda.forward(dx, dy, z, b, stream), () -> {
                    cuda.forward(dx, dy, z, b, stream);
                    cuda.backward(dx, dy, dg, gx, gy, gw, gb, b, stream);
                });
            } catch (RuntimeException e) {
                throw d.fail(e);
            }
        });
    }
}
