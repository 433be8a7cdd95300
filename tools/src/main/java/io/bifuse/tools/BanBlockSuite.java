package io.bifuse.tools;

import io.bifuse.testing.Stats;
import io.bifuse.testing.DeviceRuns;
import io.bifuse.cpu.BanBlockCpu;
import io.bifuse.BanBlock;
import io.bifuse.ObjectMask;
import io.bifuse.Precision;
import io.bifuse.TrainingStep;
import io.bifuse.cuda.BanBlockCuda;
import io.bifuse.cuda.CudaStream;
import io.bifuse.cuda.DeviceBuffer;
import io.bifuse.cuda.DeviceObjectMask;
import io.bifuse.cuda.CudaContext;
import io.bifuse.reference.BanBlockReference;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

/**
 * {@link BanBlock} in check and bench. Tolerances: forward against 1e-5 in FP32 (the CPU backend, cpu-fp32,
 * and CUDA) and {@link Precision#bound()} in TF32 / BF16 (the projections' GEMMs), backward against
 * those raised to a conditioning baseline where the inputs need it ({@link #gradientTolerances}; the CPU
 * rows draw it only where a tensor exceeds 1e-5, {@link #cpuTolerances}). Forward rows compare
 * the output and the attention maps (the worse of the two); backward rows the worst relative L2 over
 * every gradient tensor ({@code dx}, {@code dy} and each layer's weight_v, weight_g, bias; the logits
 * bias gradient is exactly zero on both sides, where the error is absolute).
 *
 * <p>Object masks: small sizes have an empty sample (zero attention, the documented result) and a
 * single-object sample; the spec's sizes draw 10..N real objects per sample (ban-vqa's detector gives
 * 10..100 boxes), as {@code ban_block_peer.py} does.
 *
 * <p>The float64 reference costs about {@code N·Dx·(K + G·K')} multiply-adds per sample and forward
 * (1.3·10⁹ at N = 36, 2.8·10⁹ at N = 100) and about three times that for backward (3 s + 9 s at B = 2,
 * N = 36 on two cores), so check runs the spec's layers at B = 2 (N = 36) and B = 1 (N = 100), the CPU
 * backend at every size. Bench times the CPU backend at the spec's layers with B = 4 (the float32 block
 * still costs 4·10¹¹ multiply-adds per forward + backward at B = 256, N = 100: minutes on a few cores; PyTorch takes over a minute per step at B = 16 on 2 cores);
 * its rows say so.
 * GPU rows: {@link #checkCuda} (FP32, TF32, BF16 against the same reference) and {@link #benchCases}.
 */
final class BanBlockSuite implements Suite {

    /** Batch, objects (padded), tokens, object and token dims, attention width, glimpses, pooling width, group. */
    record Size(int batch, int objects, int tokens, int dx, int dy, int width, int glimpses, int glimpseWidth, int group) {
        String label() {
            return "B=" + batch + " N=" + objects + " M=" + tokens + " Dx=" + dx + " Dy=" + dy + " K=" + width + " G=" + glimpses + " K'="
                    + glimpseWidth + (group == 1 ? "" : " k=" + group);
        }

        /** The size string shared with the PyTorch peer (ban_block_peer.py); the batch is its own column. */
        String csvSize() {
            return "N=" + objects + ",M=" + tokens + ",Dx=" + dx + ",Dy=" + dy + ",K=" + width + ",G=" + glimpses + ",Kp=" + glimpseWidth
                    + ",group=" + group;
        }

        Size withBatch(int b) { return new Size(b, objects, tokens, dx, dy, width, glimpses, glimpseWidth, group); }

        BanBlock op(long seed) { return BanBlock.random(dx, dy, width, glimpseWidth, glimpses, group, seed); }

        /** Every parameter float in state-dict form (weight_v, weight_g, bias per layer): {@link BanBlock#parameterCount()}. */
        double parameters() {
            double k = width, g = glimpses, kp = glimpseWidth;
            return (k * dx + 1 + k) + (k * dy + 1 + k) + (g * k + 1 + g) + g * (kp * dx + 1 + kp) + g * (kp * dy + 1 + kp)
                    + g * ((double) dy * (glimpseWidth / group) + 1 + dy);
        }
    }

    static final Size SPEC36 = new Size(256, 36, 14, 2048, 1280, 3840, 8, 1280, 1);
    static final Size SPEC100 = new Size(256, 100, 14, 2048, 1280, 3840, 8, 1280, 1);
    static final Size MEDIUM = new Size(4, 20, 7, 128, 96, 192, 4, 96, 1);

    /** Odd small sizes (group 1 and 3, one object, one token), a medium one; not quick: odd larger and the spec's layers at B = 2 and 1. */
    static List<Size> sizes(boolean quick) {
        List<Size> s = new ArrayList<>();
        s.add(new Size(4, 7, 5, 13, 11, 9, 3, 6, 1));
        s.add(new Size(3, 5, 4, 6, 5, 6, 2, 15, 3));
        s.add(new Size(3, 1, 1, 3, 2, 3, 1, 2, 2));
        s.add(MEDIUM);
        if (!quick) {
            s.add(new Size(5, 37, 13, 301, 257, 387, 3, 129, 3));
            s.add(SPEC36.withBatch(2));
            s.add(SPEC100.withBatch(1));
        }
        return s;
    }

    /**
     * Real objects per sample: at small N sample 0 has none (the documented empty-sample result) and
     * sample 1 one; otherwise {@code min(10, N)..N}, uniform, like ban-vqa's 10..100 boxes.
     */
    static ObjectMask mask(SplittableRandom rnd, Size s) {
        int n = s.objects();
        int[] counts = new int[s.batch()];
        for (int b = 0; b < counts.length; b++) {
            int lo = Math.min(10, n);
            counts[b] = rnd.nextInt(lo, n + 1);
            if (n < 30 && s.batch() >= 3 && b < 2) counts[b] = b;
        }
        return ObjectMask.counts(counts, n);
    }

    /** The cost model shared with the PyTorch peer (bilinear maps and GEMMs only): {bytes, flops}. */
    static double[] cost(String op, Size s) {
        double b = s.batch(), n = s.objects(), m = s.tokens(), dx = s.dx(), dy = s.dy(), k = s.width(), g = s.glimpses(),
                kp = s.glimpseWidth(), pooled = s.glimpseWidth() / s.group();
        double in = b * n * dx + b * m * dy, w = s.parameters(), out = b * dy;
        double mac = b * n * dx * (k + g * kp) + b * m * dy * (k + g * kp) + b * g * n * m * k + g * b * n * kp * (m + 1) + g * b * dy * pooled;
        if (op.endsWith("forward")) return new double[] {4 * (in + w + out), 2 * mac};
        return new double[] {4 * (3 * in + 3 * w + 2 * out), 6 * mac};
    }

    @Override public void check(boolean quick, CudaContext ctx, SplittableRandom rnd, Check.Report report) {
        String noGpu = ctx == null ? null : MlbSuite.gpuReason();
        if (noGpu != null) report.skipped("BanBlock", noGpu);
        CudaContext gpu = ctx != null && noGpu == null ? ctx : null;
        for (Size s : sizes(quick)) {
            BanBlock op = s.op(rnd.nextLong());
            BanBlockCpu onCpu = new BanBlockCpu(op);
            int b = s.batch(), n = s.objects(), m = s.tokens();
            float[] x = Stats.gaussian(rnd, b * n * s.dx()), y = Stats.gaussian(rnd, b * m * s.dy()), g = Stats.gaussian(rnd, b * s.dy());
            ObjectMask mask = mask(rnd, s);
            BanBlockReference.Result fRef = BanBlockReference.forward(op, x, y, mask, b, n, m);
            List<double[]> gRef = BanBlockReference.backward(op, x, y, mask, g, b, n, m).tensors();
            report.add(forwardRow(onCpu.backend(), s, onCpu.forwardWithAttention(x, y, mask, b, n, m), fRef, Check.TOLERANCE));
            BanBlock.Gradients cpuGrads = onCpu.backward(x, y, mask, g, b, n, m);
            report.add(backwardRow(onCpu.backend(), s, cpuGrads, gRef, cpuTolerances(op, x, y, mask, g, s, gRef, cpuGrads)));
            if (gpu != null) checkCuda(gpu, s, op, x, y, mask, g, fRef, gRef, report);
        }
    }

    /**
     * GPU rows, for each {@link Precision}: the CUDA block's output and attention maps and every gradient
     * against the reference, 1e-5 in FP32, {@link Precision#bound()} in TF32/BF16, every output
     * NaN-poisoned first ({@link DeviceRuns#banBlock}). The explicit mask and, on the odd sizes, the
     * zero-row rule found on the device (padded rows of x zeroed, mask null) are both checked.
     */
    static void checkCuda(CudaContext ctx, Size s, BanBlock op, float[] x, float[] y, ObjectMask mask, float[] g,
                          BanBlockReference.Result fRef, List<double[]> gRef, Check.Report report) {
        int b = s.batch(), n = s.objects(), m = s.tokens();
        for (Precision p : Precision.values()) {
            String backend = "cuda-" + p.name().toLowerCase();
            double tol = p == Precision.FP32 ? Check.TOLERANCE : p.bound();
            try (BanBlockCuda cuda = new BanBlockCuda(op, ctx, p)) {
                DeviceRuns.BanBlockRun r = DeviceRuns.banBlock(ctx, cuda, x, y, mask, g, b, n, m);
                report.add(forwardRow(backend, s, new BanBlock.Result(r.out(), r.attention()), fRef, tol));
                report.add(backwardRow(backend, s, r.grads(), gRef, gradientTolerances(p, op, x, y, mask, g, s, gRef, r.grads())));
                if (p == Precision.FP32 && s.dx() != SPEC36.dx()) {
                    // ban-vqa's rule on the device: zero the padded rows, pass no mask; same reference (padded rows are never read)
                    float[] xz = x.clone();
                    for (int bb = 0; bb < b; bb++) {
                        for (int i = 0; i < n; i++) if (!mask.isReal(bb, i)) java.util.Arrays.fill(xz, (bb * n + i) * s.dx(), (bb * n + i + 1) * s.dx(), 0f);
                    }
                    DeviceRuns.BanBlockRun z = DeviceRuns.banBlock(ctx, cuda, xz, y, null, g, b, n, m);
                    report.add(forwardRow(backend + "-zero-rows", s, new BanBlock.Result(z.out(), z.attention()), fRef, tol));
                }
            }
        }
    }

    static Check.Row forwardRow(String backend, Size s, BanBlock.Result got, BanBlockReference.Result ref, double tol) {
        double e = Math.max(Stats.relativeL2(got.out(), ref.out()), Stats.relativeL2(got.attention(), ref.attention())); // NaN propagates
        return new Check.Row("BanBlock.forward", backend, s.label(), e, tol, e <= tol);
    }

    /**
     * GPU gradients: per tensor {@code max(bound, 2·base)} with {@code base} the float64 reference's own
     * change when every input and parameter moves by ±step ({@link BanBlockReference#perturbationBaseline},
     * three draws). TF32 / BF16, step 2u: rounded operands flip a few ReLU decisions, each wrong by its full
     * size, so a gradient cannot be held to O(u) (the kernel emulation measures 6-12× the bound); the
     * forward can, and is. FP32 (bound 1e-5), step {@code 2⁻²⁴·sqrt(n)}, n the longest sum (the typical
     * float32 error of a GEMM output accumulated in sequence): the weight-norm gains' gradients
     * {@code dg = ⟨dW, V⟩/‖V‖} are cancelling sums that amplify float32 error past 1e-5 (the simulated
     * device measured 7e-4 at the medium size), and a pre-activation within float32 error of 0 flips.
     * Where three draws leave a tensor of {@code got} above its bound, up to five more are drawn until one
     * explains it (a flip shows only in draws that move it the right way: three missed one in TF32 once).
     */
    static double[] gradientTolerances(Precision p, BanBlock op, float[] x, float[] y, ObjectMask mask, float[] g, Size s, List<double[]> ref,
                                       BanBlock.Gradients got) {
        double bound = p == Precision.FP32 ? Check.TOLERANCE : p.bound();
        int longest = Math.max(Math.max(Math.max(s.dx(), s.dy()), Math.max(s.width(), s.glimpseWidth())),
                Math.max(s.objects() * s.tokens(), s.batch() * Math.max(s.objects(), s.tokens())));
        double step = p == Precision.FP32 ? 0x1p-24 * Math.sqrt(longest) : p.bound() / 2;
        double[] base = BanBlockReference.perturbationBaseline(op, x, y, mask, g, s.batch(), s.objects(), s.tokens(), ref, step, 3, 7);
        List<float[]> t = got.tensors();
        for (int d = 0; d < 5; d++) {
            boolean explained = true;
            for (int i = 0; i < base.length; i++) explained &= !(Stats.relativeL2(t.get(i), ref.get(i)) > Math.max(bound, 2 * base[i])); // NaN fails anyway
            if (explained) break;
            double[] more = BanBlockReference.perturbationBaseline(op, x, y, mask, g, s.batch(), s.objects(), s.tokens(), ref, step, 1, 8 + d);
            for (int i = 0; i < base.length; i++) base[i] = Math.max(base[i], more[i]);
        }
        double[] tol = new double[base.length];
        for (int i = 0; i < tol.length; i++) tol[i] = Math.max(bound, 2 * base[i]);
        return tol;
    }

    /**
     * The CPU backend's gradient bounds: 1e-5 for every tensor where that holds them all (the usual case:
     * no reference draws), else {@link #gradientTolerances} in FP32 (the weight-norm gains' gradients cancel;
     * BanBlockCpuTest's rule).
     */
    static double[] cpuTolerances(BanBlock op, float[] x, float[] y, ObjectMask mask, float[] g, Size s, List<double[]> ref,
                                  BanBlock.Gradients got) {
        List<float[]> t = got.tensors();
        double[] tol = new double[ref.size()];
        java.util.Arrays.fill(tol, Check.TOLERANCE);
        for (int i = 0; i < tol.length; i++) {
            if (!(Stats.relativeL2(t.get(i), ref.get(i)) <= Check.TOLERANCE)) return gradientTolerances(Precision.FP32, op, x, y, mask, g, s, ref, got);
        }
        return tol;
    }

    /** A backward row with one tolerance per gradient tensor: the row shows the tensor worst against its own tolerance. */
    static Check.Row backwardRow(String backend, Size s, BanBlock.Gradients got, List<double[]> ref, double[] tol) {
        List<float[]> g = got.tensors();
        double worstRatio = -1, err = Double.NaN, at = tol[0];
        for (int i = 0; i < g.size(); i++) {
            double e = Stats.relativeL2(g.get(i), ref.get(i));
            if (Double.isNaN(e)) return new Check.Row("BanBlock.backward", backend, s.label(), e, tol[i], false);
            if (e / tol[i] > worstRatio) {
                worstRatio = e / tol[i];
                err = e;
                at = tol[i];
            }
        }
        return new Check.Row("BanBlock.backward", backend, s.label() + " (tolerance per tensor)", err, at, err <= at);
    }

    static Check.Row backwardRow(String backend, Size s, BanBlock.Gradients got, List<double[]> ref, double tol) {
        double e = Stats.worstError(got.tensors(), ref);
        return new Check.Row("BanBlock.backward", backend, s.label(), e, tol, e <= tol);
    }

    @Override public String gpuUnavailableReason() { return MlbSuite.gpuReason(); }

    @Override public List<BenchCase> benchCases(boolean quick) {
        List<BenchCase> cases = new java.util.ArrayList<>();
        for (Size s : quick ? List.of(MEDIUM) : List.of(SPEC36.withBatch(4), SPEC100.withBatch(4))) { // see the class comment; B = 4: PyTorch takes over a minute per step at 16
            java.util.function.Supplier<BanBlock> op = BenchCase.once(() -> s.op(42));
            int b = s.batch(), n = s.objects(), m = s.tokens();
            String label = s.label() + (quick ? "" : " (CPU: B = 4)");
            cases.add(BenchCase.host("BanBlock", label, s.csvSize(), b, cost("BanBlock.forward", s), cost("BanBlock.fwd+bwd", s), r -> {
                BanBlockCpu c = new BanBlockCpu(op.get());
                float[] x = Stats.gaussian(r, b * n * s.dx()), y = Stats.gaussian(r, b * m * s.dy()), g = Stats.gaussian(r, b * s.dy());
                ObjectMask mask = mask(r, s);
                return List.of(new BenchCase.HostRun(c.backend(), () -> c.forward(x, y, mask, b, n, m), () -> {
                    try (TrainingStep<BanBlock.Gradients> step = c.trainingStep(x, y, mask, b, n, m)) { // the forward kept for its backward
                        return step.backward(g);
                    }
                }));
            }));
        }
        for (Size s : quick ? List.of(MEDIUM) : List.of(SPEC36, SPEC100)) {
            int b = s.batch(), n = s.objects(), m = s.tokens();
            java.util.function.Supplier<BanBlock> op = BenchCase.once(() -> s.op(42));
            cases.add(BenchCase.device("BanBlock", s.label(), s.csvSize(), b, cost("BanBlock.forward", s), cost("BanBlock.fwd+bwd", s),
                    BenchCase.PRECISIONS, (ctx, v, st, r) -> {
                        BenchCase.Devices d = new BenchCase.Devices(st);
                        try {
                            BanBlockCuda cuda = d.op(new BanBlockCuda(op.get(), ctx, BenchCase.precision(v)));
                            DeviceBuffer dx = d.own(DeviceBuffer.of(ctx, Stats.gaussian(r, b * n * s.dx())));
                            DeviceBuffer dy = d.own(DeviceBuffer.of(ctx, Stats.gaussian(r, b * m * s.dy())));
                            DeviceBuffer dg = d.own(DeviceBuffer.of(ctx, Stats.gaussian(r, b * s.dy())));
                            DeviceObjectMask dm = d.own(DeviceObjectMask.upload(ctx, mask(r, s)));
                            DeviceBuffer out = d.own(DeviceBuffer.allocateFloats(ctx, (long) b * s.dy()));
                            BanBlockCuda.GradientBuffers gr = d.own(cuda.allocateGradients(b, n, m)).buffers();
                            return d.calls(() -> cuda.forward(dx, dy, dm, b, n, m, out, null, st), () -> {
                                cuda.forward(dx, dy, dm, b, n, m, out, null, st);
                                cuda.backward(dx, dy, dm, b, n, m, dg, gr, st);
                            });
                        } catch (RuntimeException e) {
                            throw d.fail(e);
                        }
                    }));
        }
        return cases;
    }

}
