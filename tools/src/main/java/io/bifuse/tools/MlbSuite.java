package io.bifuse.tools;

import io.bifuse.testing.Stats;
import io.bifuse.testing.DeviceRuns;
import io.bifuse.cpu.MlbCpu;
import io.bifuse.Activation;
import io.bifuse.Mlb;
import io.bifuse.Precision;
import io.bifuse.TrainingStep;
import io.bifuse.cuda.Cuda;
import io.bifuse.cuda.CublasHandle;
import io.bifuse.cuda.CudaContext;
import io.bifuse.cuda.CudaStream;
import io.bifuse.cuda.DeviceBuffer;
import io.bifuse.cuda.Kernels;
import io.bifuse.cuda.MlbCuda;
import io.bifuse.reference.MlbReference;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

/**
 * {@link Mlb} in check and bench. Tolerances: the CPU backend and CUDA in FP32 against 1e-5 (float32
 * GEMMs of length <= 2400 land near 1e-7); CUDA in TF32 / BF16 against {@link Precision#bound()}
 * (MlbTest measures what the operand rounding costs at the spec's size: well below half the bound).
 * Backward rows take the worst relative L2 over all eight gradients (dx, dy, U, b_u, V, b_v, P, b_p).
 */
final class MlbSuite implements Suite {

    /** An MLB size: batch, question and image dims, joint dim, output dim, activation. */
    /** {@code bootstrap}: block.bootstrap's {@code MLB} options on top (signed sqrt + l2 of h, relu after P; {@code act} relu). */
    record Size(int batch, int dx, int dy, int joint, int out, Activation act, boolean bootstrap) {
        Size(int batch, int dx, int dy, int joint, int out, Activation act) {
            this(batch, dx, dy, joint, out, act, false);
        }

        Mlb op(long seed) {
            Mlb m = Mlb.random(dx, dy, joint, out, act, seed);
            return bootstrap ? m.withOptions(io.bifuse.Normalization.pytorch(), Activation.RELU) : m;
        }

        String label() { return "B=" + batch + " Dx=" + dx + " Dy=" + dy + " J=" + joint + " Out=" + out + " " + (bootstrap ? "bootstrap" : act.name().toLowerCase()); }
        /** The PyTorch peer's size label (with {@code bootstrap}: its {@code --bootstrap} rows, block.bootstrap's own MLB). */
        String csvSize() { return "Dx=" + dx + ",Dy=" + dy + ",J=" + joint + ",Out=" + out + "," + (bootstrap ? "bootstrap" : act.name().toLowerCase()); }
        boolean spec() { return batch == 512 && dx == 2400 && dy == 2048 && joint == 1200 && out == 2000; }
    }

    /** The spec's size (tanh), odd small sizes for every activation; quick: small sizes only. */
    static List<Size> sizes(boolean quick) {
        List<Size> s = new ArrayList<>();
        for (Activation a : Activation.values()) s.add(new Size(3, 37, 29, 17, 11, a));
        s.add(new Size(8, 240, 204, 120, 200, Activation.TANH));
        s.add(new Size(3, 37, 29, 17, 11, Activation.RELU, true)); // block.bootstrap's MLB: normalize, relu out
        if (!quick) {
            s.add(new Size(33, 601, 515, 257, 129, Activation.RELU));
            s.add(new Size(512, 2400, 2048, 1200, 2000, Activation.TANH));
        }
        return s;
    }

    /** The cost model shared with the PyTorch peer (GEMM FLOPs only): {bytes, flops}. */
    static double[] cost(String op, Size s) {
        double b = s.batch(), c = s.dx() + s.dy(), j = s.joint(), o = s.out();
        double in = b * c, w = j * c + o * j, out = b * o, m = b * j * c + b * o * j;
        if (op.endsWith("forward")) return new double[] {4 * (in + w + out), 2 * m};
        return new double[] {4 * (3 * in + 3 * w + 2 * out), 6 * m};
    }

    /** Null when MLB's CUDA path can run, else why not (driver, device, kernels, cuBLAS). */
    static String gpuReason() {
        if (!Cuda.isAvailable()) return Cuda.status().reason();
        if (Kernels.fatbin() == null) return "no CUDA kernels in this build (built without nvcc)";
        if (!CublasHandle.libraryAvailable()) return CublasHandle.describeLibrary();
        return null;
    }

    @Override public void check(boolean quick, CudaContext ctx, SplittableRandom rnd, Check.Report report) {
        String noGpu = ctx == null ? null : gpuUnavailableReason();
        if (noGpu != null) report.skipped("Mlb", noGpu);
        boolean gpu = ctx != null && noGpu == null;
        for (Size s : sizes(quick)) {
            Mlb op = s.op(rnd.nextLong());
            MlbCpu onCpu = new MlbCpu(op);
            float[] x = Stats.gaussian(rnd, s.batch() * s.dx()), y = Stats.gaussian(rnd, s.batch() * s.dy());
            float[] g = Stats.gaussian(rnd, s.batch() * s.out());
            double[] fRef = MlbReference.forward(op, x, y, s.batch());
            MlbReference.Grads gRef = MlbReference.backward(op, x, y, g, s.batch());
            // block.bootstrap's options put a signed sqrt in the path, whose slope near 0 amplifies any float error:
            // there the bounds are raised where the reference itself moves as much under float32 steps of x, y and g.
            io.bifuse.testing.Conditioning cond = s.bootstrap() ? conditioning(op, x, y, g, s.batch(), fRef, gRef, rnd.nextLong()) : null;
            float[] fc = onCpu.forward(x, y, s.batch());
            Mlb.Gradients gc = onCpu.backward(x, y, g, s.batch());
            double ef = Stats.relativeL2(fc, fRef), eb = worstError(gc, gRef);
            double tf = cond == null ? Check.TOLERANCE : cond.bound(0, Check.TOLERANCE, ef), tb = cond == null ? Check.TOLERANCE : cond.bound(1, Check.TOLERANCE, eb);
            report.add("Mlb.forward", onCpu.backend(), s.label(), fc, fRef, tf);
            report.add(backwardRow(onCpu.backend(), s, gc, gRef, tb));
            if (!gpu) continue;
            for (Precision p : Precision.values()) {
                // TF32 / BF16 at the bound only where errors average over long sums (see MlbAttentionSuite);
                // MlbCudaTest holds the tiny widths to the conditioning-baseline rule.
                if (p != Precision.FP32 && Math.min(s.joint(), Math.min(s.dx(), s.dy())) < 32) continue;
                String backend = "cuda-" + p.name().toLowerCase();
                double tol = p == Precision.FP32 ? Check.TOLERANCE : p.bound();
                try (MlbCuda cuda = new MlbCuda(op, ctx, p)) {
                    DeviceRuns.MlbRun r = DeviceRuns.mlb(ctx, cuda, x, y, g, s.batch());
                    double e0 = Stats.relativeL2(r.out(), fRef), e1 = worstError(r.grads(), gRef);
                    report.add("Mlb.forward", backend, s.label(), r.out(), fRef, cond == null ? tol : cond.bound(0, tol, e0));
                    report.add(backwardRow(backend, s, r.grads(), gRef, cond == null ? tol : cond.bound(1, tol, e1)));
                }
            }
        }
    }

    /** {forward, worst gradient} errors of the float64 reference itself when x, y and g move by float32 steps. */
    private static io.bifuse.testing.Conditioning conditioning(Mlb op, float[] x, float[] y, float[] g, int batch, double[] fRef, MlbReference.Grads gRef,
                                                               long seed) {
        int longest = Math.max(Math.max(op.dx(), op.dy()), Math.max(op.joint(), batch));
        return new io.bifuse.testing.Conditioning(io.bifuse.testing.Conditioning.step(Precision.FP32, longest), seed, (r, st) -> {
            float[] px = io.bifuse.testing.Conditioning.perturb(x, st, r), py = io.bifuse.testing.Conditioning.perturb(y, st, r);
            MlbReference.Grads m = MlbReference.backward(op, px, py, io.bifuse.testing.Conditioning.perturb(g, st, r), batch);
            double worst = 0;
            for (double e : io.bifuse.testing.Conditioning.errors(List.of(m.all()), List.of(gRef.all()))) worst = Math.max(worst, e);
            return new double[] {Stats.relativeL2(MlbReference.forward(op, px, py, batch), fRef), worst};
        });
    }

    static Check.Row backwardRow(String backend, Size s, Mlb.Gradients got, MlbReference.Grads ref, double tol) {
        double e = worstError(got, ref);
        return new Check.Row("Mlb.backward", backend, s.label(), e, tol, e <= tol);
    }

    /** The largest relative L2 error over every gradient tensor (a missing bias gradient counts as NaN). */
    public static double worstError(Mlb.Gradients got, MlbReference.Grads ref) {
        float[][] g = {got.dx(), got.dy(), got.u().weight(), got.u().bias(), got.v().weight(), got.v().bias(), got.p().weight(), got.p().bias()};
        double[][] r = ref.all();
        double worst = 0;
        for (int i = 0; i < g.length; i++) {
            double e = g[i] == null ? Double.NaN : Stats.relativeL2(g[i], r[i]);
            if (!(e <= worst)) worst = e; // NaN sticks
        }
        return worst;
    }

    /**
     * Quick: a small size. Else the spec's (tanh), and block.bootstrap's VQA2 MLB classifier fusion
     * ({@code options/vqa2/mlb.yaml}: inputs 4800 and 4096, mm_dim 1200, 3000 answers, normalize; relu in
     * and out) at B = 256, as the PyTorch peer's {@code --bootstrap} rows.
     */
    @Override public List<BenchCase> benchCases(boolean quick) {
        if (quick) return List.of(benchCase(new Size(8, 240, 204, 120, 200, Activation.TANH)));
        return List.of(benchCase(new Size(512, 2400, 2048, 1200, 2000, Activation.TANH)), benchCase(new Size(256, 4800, 4096, 1200, 3000, Activation.RELU, true)));
    }

    private static BenchCase benchCase(Size s) {
        java.util.function.Supplier<Mlb> op = BenchCase.once(() -> s.op(42));
        int b = s.batch();
        return new BenchCase("Mlb", s.label(), s.csvSize(), b, cost("Mlb.forward", s), cost("Mlb.fwd+bwd", s), r -> {
            MlbCpu cpu = new MlbCpu(op.get());
            float[] x = Stats.gaussian(r, b * s.dx()), y = Stats.gaussian(r, b * s.dy()), g = Stats.gaussian(r, b * s.out());
            return List.of(new BenchCase.HostRun(cpu.backend(), () -> cpu.forward(x, y, b), () -> {
                try (TrainingStep<Mlb.Gradients> step = cpu.trainingStep(x, y, b)) { // the forward kept for its backward
                    return step.backward(g);
                }
            }));
        }, BenchCase.PRECISIONS, (ctx, v, st, r) -> {
            BenchCase.Devices d = new BenchCase.Devices(st);
            try {
                MlbCuda cuda = d.op(new MlbCuda(op.get(), ctx, BenchCase.precision(v)));
                DeviceBuffer dx = d.own(DeviceBuffer.of(ctx, Stats.gaussian(r, b * s.dx()))), dy = d.own(DeviceBuffer.of(ctx, Stats.gaussian(r, b * s.dy())));
                DeviceBuffer dg = d.own(DeviceBuffer.of(ctx, Stats.gaussian(r, b * s.out())));
                DeviceBuffer out = d.own(DeviceBuffer.allocateFloats(ctx, (long) b * s.out()));
                MlbCuda.DeviceGradients gr = d.own(cuda.allocateGradients(b)).buffers();
                return d.calls(() -> cuda.forward(dx, dy, out, b, st), () -> {
                    cuda.forward(dx, dy, out, b, st);
                    cuda.backward(dx, dy, dg, gr, b, st);
                });
            } catch (RuntimeException e) {
                throw d.fail(e);
            }
        });
    }

    @Override public String gpuUnavailableReason() { return gpuReason(); }
}
