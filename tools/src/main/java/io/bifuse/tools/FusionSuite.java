package io.bifuse.tools;

import io.bifuse.Fusion;
import io.bifuse.FusionBackend;
import io.bifuse.Precision;
import io.bifuse.TrainingStep;
import io.bifuse.cuda.CudaContext;
import io.bifuse.cuda.CudaOp;
import io.bifuse.cuda.DeviceBuffer;
import io.bifuse.cuda.DeviceFusion;
import io.bifuse.cuda.DeviceMemory;
import io.bifuse.testing.Conditioning;
import io.bifuse.testing.DeviceRuns;
import io.bifuse.testing.Stats;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.function.Function;

/**
 * What the block.bootstrap fusions' suites share (MUTAN, BLOCK, Tucker, BlockTucker, LinearSum,
 * ConcatMLP: {@link Fusion}s whose CUDA backends are {@link DeviceFusion}s): the check rows and the bench
 * cases, from a subclass that says how to make the op at a size, run its reference, and open its backends.
 *
 * <p>Check. Forward row: the output's relative L2 error against the float64 reference. Backward row: every
 * gradient tensor's, reported for the tensor nearest its bound (error / bound largest). Bounds: the CPU
 * backend {@code 1e-5}; CUDA in FP32 {@code max(1e-5, 4·e_cpu)} per tensor, {@code e_cpu} the float32
 * CPU path's error on the same inputs (both do the same float32 sums in other orders, as the CUDA tests
 * hold them); TF32 / BF16 {@link Precision#bound()} (only where every width is at least 32, so that
 * errors average over long sums, as the other GEMM suites); each raised where needed to
 * {@link Conditioning}'s rule (the reference's own change when x, y and gradOut move by the precision's
 * step: a signed sqrt on a near-zero value amplifies any float error), and a tensor whose baseline says
 * the precision cannot resolve it is held to finite values only, which the row's size label says
 * ({@code [k of n finite only]}). GPU outputs and gradients are NaN-poisoned
 * before each run ({@link DeviceRuns#fusion}).
 *
 * <p>Bench: the spec-less block.bootstrap VQA size the subclass gives (its {@code options/vqa2} classifier
 * fusion: inputs 4800 and 4096, 3000 outputs, B = 256), CPU forward and training step, and each GPU
 * precision's forward and forward + backward through the device call forms. Cost model, shared with the
 * PyTorch peer: bytes {@code 4·(I + W + O)} forward and {@code 4·(3I + 3W + 2O)} for a step, FLOPs
 * {@code 2·M} and {@code 6·M}, with I the input floats, W the parameters, O the output floats and M the
 * forward's multiply-adds ({@link #cost}).
 *
 * @param <O> the op's descriptor
 * @param <G> its gradients record
 * @param <S> a size
 */
abstract class FusionSuite<O extends Fusion, G, S extends FusionSuite.Size> implements Suite {

    /** A size: its batch, its label (rows), its CSV spelling (the peer's), and the op's widths. */
    interface Size {
        int batch();
        String label();
        String csvSize();
        /** The longest sum of the op at this size (sets the float32 step of the conditioning draws). */
        int longestSum();
        /** Whether every width is at least 32 (TF32 / BF16 rows only then). */
        boolean wide();
    }

    /** The sizes {@code check} runs ({@code quick}: seconds). */
    abstract List<S> sizes(boolean quick);

    /** The size {@code bench} and JMH time ({@code quick}: a small one). */
    abstract S benchSize(boolean quick);

    abstract O make(S size, long seed);

    abstract FusionBackend<O, G> cpu(O op);

    /** The CUDA backend, GEMMs in {@code p}: a {@link DeviceFusion} (all six are). */
    abstract CudaOp<O> cuda(O op, CudaContext ctx, Precision p);

    private static DeviceFusion calls(CudaOp<?> op) { return (DeviceFusion) op; }

    /** The gradients as tensors in {@code gradientNames()} order. */
    abstract List<float[]> tensors(G g);

    /** The float64 reference: the output, then every gradient in {@code gradientNames()} order. */
    abstract List<double[]> reference(O op, float[] x, float[] y, float[] g, int batch);

    /** {I, W, O, M} at {@code s} (see the class comment). */
    abstract double[] counts(S s);

    /** The cost model shared with the PyTorch peer: {bytes, flops} of a forward, or of a step (forward then backward). */
    double[] cost(S s, boolean forward) {
        double[] c = counts(s);
        double in = c[0], w = c[1], out = c[2], m = c[3];
        return forward ? new double[] {4 * (in + w + out), 2 * m} : new double[] {4 * (3 * in + 3 * w + 2 * out), 6 * m};
    }

    /** What MLB's CUDA path needs too: the driver and a device, the kernels, cuBLAS. */
    @Override public String gpuUnavailableReason() { return MlbSuite.gpuReason(); }

    @Override public void check(boolean quick, CudaContext ctx, SplittableRandom rnd, Check.Report report) {
        String noGpu = ctx == null ? null : gpuUnavailableReason();
        if (noGpu != null) report.skipped(name(), noGpu);
        boolean gpu = ctx != null && noGpu == null;
        for (S s : sizes(quick)) {
            O op = make(s, rnd.nextLong());
            int b = s.batch();
            float[] x = Stats.gaussian(rnd, b * op.dx()), y = Stats.gaussian(rnd, b * op.dy()), g = Stats.gaussian(rnd, b * op.out());
            List<double[]> want = reference(op, x, y, g, b);
            FusionBackend<O, G> onCpu = cpu(op);
            List<float[]> cpu = joined(onCpu.forward(x, y, b), tensors(onCpu.backward(x, y, g, b)));
            long seed = rnd.nextLong();
            addRows(report, onCpu.backend(), s, cpu, want, t -> Check.TOLERANCE, conditioning(op, Precision.FP32, s, x, y, g, want, seed));
            if (!gpu) continue;
            for (Precision p : Precision.values()) {
                if (p != Precision.FP32 && !s.wide()) continue;
                try (CudaOp<O> cuda = cuda(op, ctx, p)) {
                    List<float[]> got = DeviceRuns.fusion(ctx, calls(cuda), op.out(), x, y, g, b);
                    Function<Integer, Double> base = p == Precision.FP32
                            ? t -> Math.max(Check.TOLERANCE, 4 * Stats.relativeL2(cpu.get(t), want.get(t))) : t -> p.bound();
                    addRows(report, cuda.backend(), s, got, want, base, conditioning(op, p, s, x, y, g, want, seed));
                }
            }
        }
    }

    private Conditioning conditioning(O op, Precision p, S s, float[] x, float[] y, float[] g, List<double[]> want, long seed) {
        int b = s.batch();
        return new Conditioning(Conditioning.step(p, Math.max(s.longestSum(), b)), seed, (r, step) -> Conditioning.errors(
                reference(op, Conditioning.perturb(x, step, r), Conditioning.perturb(y, step, r), Conditioning.perturb(g, step, r), b), want));
    }

    /** The forward row (tensor 0) and the backward row (the gradient nearest its bound). */
    private void addRows(Check.Report report, String backend, S s, List<float[]> got, List<double[]> want, Function<Integer, Double> base,
                         Conditioning cond) {
        for (Check.Row r : List.of(row(name() + ".forward", backend, s, got, want, base, cond, 0, 1),
                row(name() + ".backward", backend, s, got, want, base, cond, 1, got.size()))) {
            if (Double.isNaN(r.error()) && r.pass()) { // every tensor finite, none comparable at this precision: said, not counted
                report.notCompared(r.op() + " " + io.bifuse.cuda.Cuda.label(r.backend()) + " " + s.label(),
                        "every tensor written and finite, but the reference itself moves by more than 1e-2 under this precision's rounding");
            } else {
                report.add(r);
            }
        }
    }

    private static Check.Row row(String op, String backend, Size s, List<float[]> got, List<double[]> want, Function<Integer, Double> base,
                                 Conditioning cond, int from, int to) {
        double worstRatio = -1, error = 0, tol = 0;
        boolean pass = got.size() == want.size();
        int finiteOnly = 0, n = Math.min(to, got.size()) - from;
        for (int t = from; t < Math.min(to, got.size()); t++) {
            double e = Stats.relativeL2(got.get(t), want.get(t)), bound = cond.bound(t, base.apply(t), e);
            if (!cond.comparable(t)) { // this precision cannot resolve this tensor here: finite values only
                for (float v : got.get(t)) pass &= Float.isFinite(v);
                finiteOnly++;
                continue;
            }
            boolean ok = e <= bound; // NaN fails
            pass &= ok;
            double ratio = ok ? e / bound : Double.POSITIVE_INFINITY;
            if (ratio > worstRatio) {
                worstRatio = ratio;
                error = e;
                tol = bound;
            }
        }
        // Say so where tensors were held to finite values only, and report NaN where none was compared.
        String label = finiteOnly == 0 ? s.label() : s.label() + " [" + finiteOnly + " of " + n + " finite only]";
        return new Check.Row(op, backend, label, finiteOnly == n ? Double.NaN : error, finiteOnly == n ? Double.NaN : tol, pass);
    }

    static List<float[]> joined(float[] out, List<float[]> grads) {
        List<float[]> t = new ArrayList<>(List.of(out));
        t.addAll(grads);
        return t;
    }

    static List<double[]> joined(double[] out, List<double[]> grads) {
        List<double[]> t = new ArrayList<>(List.of(out));
        t.addAll(grads);
        return t;
    }

    @Override public List<BenchCase> benchCases(boolean quick) {
        S s = benchSize(quick);
        java.util.function.Supplier<O> op = BenchCase.once(() -> make(s, 42));
        int b = s.batch();
        return List.of(new BenchCase(name(), s.label(), s.csvSize(), b, cost(s, true), cost(s, false), r -> {
            FusionBackend<O, G> cpu = cpu(op.get());
            O o = op.get();
            float[] x = Stats.gaussian(r, b * o.dx()), y = Stats.gaussian(r, b * o.dy()), g = Stats.gaussian(r, b * o.out());
            return List.of(new BenchCase.HostRun(cpu.backend(), () -> cpu.forward(x, y, b), () -> {
                try (TrainingStep<G> step = cpu.trainingStep(x, y, b)) { // the forward kept for its backward where the backend keeps it
                    return step.backward(g);
                }
            }));
        }, BenchCase.PRECISIONS, (ctx, v, st, r) -> {
            BenchCase.Devices d = new BenchCase.Devices(st);
            try {
                O o = op.get();
                CudaOp<O> op1 = d.op(cuda(o, ctx, BenchCase.precision(v)));
                DeviceFusion cuda = calls(op1);
                DeviceBuffer dx = d.own(DeviceBuffer.of(ctx, Stats.gaussian(r, b * o.dx()))), dy = d.own(DeviceBuffer.of(ctx, Stats.gaussian(r, b * o.dy())));
                DeviceBuffer dg = d.own(DeviceBuffer.of(ctx, Stats.gaussian(r, b * o.out())));
                DeviceBuffer out = d.own(DeviceBuffer.allocateFloats(ctx, (long) b * o.out()));
                List<DeviceMemory> grads = new ArrayList<>();
                for (long n : cuda.sizes(b)) grads.add(d.own(DeviceBuffer.allocateFloats(ctx, n)));
                return d.calls(() -> cuda.forward(dx, dy, out, b, st), () -> {
                    cuda.forward(dx, dy, out, b, st);
                    cuda.backward(dx, dy, dg, grads, b, st);
                });
            } catch (RuntimeException e) {
                throw d.fail(e);
            }
        }));
    }
}
