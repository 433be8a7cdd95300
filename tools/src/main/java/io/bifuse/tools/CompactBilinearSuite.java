package io.bifuse.tools;

import io.bifuse.testing.CompactBilinearTolerance;
import io.bifuse.testing.Stats;
import io.bifuse.cpu.CompactBilinearCpu;
import io.bifuse.CompactBilinear;
import io.bifuse.Gradients;
import io.bifuse.Normalization;
import io.bifuse.cuda.CompactBilinearCuda;
import io.bifuse.cuda.CudaContext;
import io.bifuse.cuda.CudaStream;
import io.bifuse.cuda.DeviceBuffer;
import io.bifuse.reference.CompactBilinearReference;
import java.util.List;
import java.util.SplittableRandom;

/** {@link CompactBilinear} in check and bench (the tolerances are explained in {@link Check}). */
final class CompactBilinearSuite implements Suite {

    @Override public void check(boolean quick, CudaContext ctx, SplittableRandom rnd, Check.Report report) {
        String noGpu = ctx == null ? null : Check.gpuUnavailableReason();
        if (noGpu != null) report.skipped("CompactBilinear", noGpu);
        boolean gpu = ctx != null && noGpu == null;
        for (Sizes s : Sizes.compactBilinear(quick)) {
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
                report.add("CompactBilinear.forward", "cpu-double", size, onCpu.forward(x, y, s.batch()), zRef, Check.TOLERANCE);
                // The CPU backend works in double: the exact-derivative conditioning costs it nothing measurable.
                if (gRef != null) {
                    report.add(Check.row("CompactBilinear.backward", "cpu-double", size, onCpu.backward(x, y, g, s.batch()), gRef, Check.TOLERANCE));
                }
                long fwdSeed = rnd.nextLong();
                if (!gpu) continue;
                double fwdTol = CompactBilinearTolerance.forwardTolerance(op, x, y, s.batch(), zRef, fwdSeed); // float32 FFT noise through the signed sqrt
                for (CompactBilinearCuda.Sketch mode : CompactBilinearCuda.Sketch.values()) {
                    String backend = mode == CompactBilinearCuda.Sketch.DETERMINISTIC ? "cuda-fp32" : "cuda-fp32-atomic";
                    try (CompactBilinearCuda cuda = new CompactBilinearCuda(op, ctx, mode)) {
                        float[][] r = CompactBilinearTolerance.run(ctx, cuda, x, y, g, s.batch());
                        report.add("CompactBilinear.forward", backend, size, r[0], zRef, fwdTol);
                        if (gRef != null) report.add(Check.row("CompactBilinear.backward", backend, size, new Gradients(r[1], r[2]), gRef, bwdTol));
                    }
                }
            }
        }
    }

    @Override public String gpuUnavailableReason() { return Check.gpuUnavailableReason(); }

    @Override public List<BenchCase> benchCases(boolean quick) {
        List<BenchCase> cases = new java.util.ArrayList<>();
        for (Sizes s : Sizes.compactBilinear(quick)) {
            CompactBilinear op = CompactBilinear.seeded(s.dx(), s.dy(), s.d(), 42);
            int b = s.batch();
            cases.add(new BenchCase("CompactBilinear", s.label(), s.csvSize(), b, Bench.cost("CompactBilinear.forward", s),
                    Bench.cost("CompactBilinear.fwd+bwd", s), r -> {
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
                    }, List.of("fp32", "fp32-atomic"), (ctx, v, st, r) -> {
                        BenchCase.Devices d = new BenchCase.Devices(st);
                        try {
                            CompactBilinearCuda.Sketch mode = v.equals("fp32") ? CompactBilinearCuda.Sketch.DETERMINISTIC : CompactBilinearCuda.Sketch.ATOMIC;
                            CompactBilinearCuda cuda = d.op(new CompactBilinearCuda(op, ctx, mode));
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
        return cases;
    }
}
