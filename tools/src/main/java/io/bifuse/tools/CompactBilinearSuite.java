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

    @Override public void bench(boolean quick, Bench.Session session) {
        SplittableRandom rnd = session.random();
        for (Sizes s : Sizes.compactBilinear(quick)) {
            CompactBilinear op = CompactBilinear.seeded(s.dx(), s.dy(), s.d(), 42);
            CompactBilinearCpu onCpu = new CompactBilinearCpu(op);
            float[] x = Stats.gaussian(rnd, s.batch() * s.dx()), y = Stats.gaussian(rnd, s.batch() * s.dy());
            float[] g = Stats.gaussian(rnd, s.batch() * s.d());
            double[] fwd = Bench.cost("CompactBilinear.forward", s), step = Bench.cost("CompactBilinear.fwd+bwd", s);
            if (s.batch() == 1) {
                session.cpu("CompactBilinear.forward", "bifuse-reference", s.label(), s.csvSize(), s.batch(), fwd,
                        () -> CompactBilinearReference.forward(op, x, y, s.batch()));
            }
            session.cpu("CompactBilinear.forward", "bifuse-cpu-double", s.label(), s.csvSize(), s.batch(), fwd, () -> onCpu.forward(x, y, s.batch()));
            session.cpu("CompactBilinear.fwd+bwd", "bifuse-cpu-double", s.label(), s.csvSize(), s.batch(), step, () -> {
                onCpu.forward(x, y, s.batch());
                onCpu.backward(x, y, g, s.batch());
            });
            CudaContext ctx = session.gpu();
            if (ctx == null) continue;
            if (Check.gpuUnavailableReason() != null) { session.skipped("CompactBilinear", Check.gpuUnavailableReason()); return; }
            for (CompactBilinearCuda.Sketch mode : CompactBilinearCuda.Sketch.values()) {
                String backend = mode == CompactBilinearCuda.Sketch.DETERMINISTIC ? "bifuse-cuda-fp32" : "bifuse-cuda-fp32-atomic";
                try (CudaStream st = CudaStream.create(ctx); CompactBilinearCuda cuda = new CompactBilinearCuda(op, ctx, mode);
                     DeviceBuffer dx = DeviceBuffer.of(ctx, x); DeviceBuffer dy = DeviceBuffer.of(ctx, y); DeviceBuffer dg = DeviceBuffer.of(ctx, g);
                     DeviceBuffer z = DeviceBuffer.allocateFloats(ctx, (long) s.batch() * s.d());
                     DeviceBuffer gx = DeviceBuffer.allocateFloats(ctx, (long) s.batch() * s.dx());
                     DeviceBuffer gy = DeviceBuffer.allocateFloats(ctx, (long) s.batch() * s.dy())) {
                    session.gpu("CompactBilinear.forward", backend, s.label(), s.csvSize(), s.batch(), fwd, st,
                            () -> cuda.forward(dx, dy, z, s.batch(), st));
                    session.gpu("CompactBilinear.fwd+bwd", backend, s.label(), s.csvSize(), s.batch(), step, st, () -> {
                        cuda.forward(dx, dy, z, s.batch(), st);
                        cuda.backward(dx, dy, dg, gx, gy, s.batch(), st);
                    });
                    cuda.release(st);
                }
            }
        }
    }
}
