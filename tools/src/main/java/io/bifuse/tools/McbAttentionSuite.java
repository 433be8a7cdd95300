package io.bifuse.tools;

import io.bifuse.McbAttention;
import io.bifuse.Precision;
import io.bifuse.cpu.McbAttentionCpu;
import io.bifuse.cuda.CudaContext;
import io.bifuse.cuda.DeviceBuffer;
import io.bifuse.cuda.McbAttentionCuda;
import io.bifuse.reference.McbAttentionReference;
import io.bifuse.testing.Conditioning;
import io.bifuse.testing.DeviceRuns;
import io.bifuse.testing.McbAttentionTolerance;
import io.bifuse.testing.Stats;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

/**
 * {@link McbAttention} in check and bench.
 *
 * <p>Tolerances (those of {@code McbAttentionCudaTest}): the CPU backend and CUDA in FP32 against 1e-5,
 * TF32 / BF16 against {@link Precision#bound()}; on the CPU and the GPU, where a tensor exceeds that, the bound is
 * raised to {@link Conditioning}'s {@code max(bound, 2·base)} (a rounded GEMM operand flips a ReLU of the
 * hidden layer; the exact signed-sqrt derivative {@code 0.5/sqrt|z|} amplifies the float32 error of the
 * smallest |z|), and the row prints the bound it got. Forward rows hold the output and the attention maps,
 * backward rows every gradient tensor ({@code dq}, {@code dI}, each layer's weight and bias); each row shows
 * the tensor nearest its bound. {@code logits.bias}'s gradient is exactly zero (the softmax over the cells
 * cancels a per-glimpse shift), where the error is absolute and the bound stays fixed. Every size draws
 * {@code Dq·Dv >= 20·d1} and {@code G·Dv·Dq >= 20·d2} products, so that no count-sketch bin is empty (an
 * empty bin's float32 FFT noise through the signed sqrt is an O(1) relative error), and a d1 with no prime
 * factor above 7 (the CUDA cell pooling's in-block FFT).
 *
 * <p>The float64 reference costs about {@code B·L·Dq·Dv} scatter-adds for the attention pooling plus
 * {@code B·L·d1·H} multiply-adds for the hidden layer per forward, and about three times that for the
 * backward (measured: 3 s forward, 9 s backward at the spec's widths, B = 1, L = 196, on 2 cores), so
 * check runs the spec's widths at B = 2, L = 14 (CPU and GPU rows alike). The CPU backend (float32) is
 * benchmarked at B = 1, L = 196, where the PyTorch peer's CPU rows are: at B = 64 one fwd+bwd is
 * about 0.8 TFLOP of GEMMs, minutes per timed run on a small machine.
 *
 * <p>Bench's GPU variants: the three precisions at {@link McbAttentionCuda#DEFAULT_CHUNK_BYTES}, and FP32
 * at other budgets for the chunked cell pass ({@code fp32-chunk64m}, {@code -chunk1g}, {@code -chunk2g}: at
 * the spec's sizes a cell row's buffers are {@code 4·(2·d1 + Dq)} = 136,192 bytes, so 64 MiB holds 492 of
 * the 12,544 rows, the default (256 MiB when this was written) 1,971, 1 GiB 7,884, and 2 GiB all of them:
 * one chunk, as the PyTorch peer, which materializes the B × L × d1 tensor). Each row's peak device memory
 * (inputs, weights, outputs, gradients and the op's workspaces) is bench's {@code peak_mem_bytes}.
 *
 * <p>Cost model, per call, shared with {@code benchmarks/python/mcb_attention_peer.py} ({@link #cost}).
 */
final class McbAttentionSuite implements Suite {

    /** Batch, cells, question and cell dims, d1, hidden width, glimpses, d2, answers, the attention l2 scope. */
    record Size(int batch, int cells, int dq, int dv, int d1, int hidden, int glimpses, int d2, int answers, McbAttention.L2Scope scope) {
        String label() {
            return "B=" + batch + " L=" + cells + " Dq=" + dq + " Dv=" + dv + " d1=" + d1 + " H=" + hidden + " G=" + glimpses + " d2=" + d2
                    + " A=" + answers + " " + scope.name().toLowerCase();
        }

        /** The size string shared with the PyTorch peer (mcb_attention_peer.py); the batch is its own column. */
        String csvSize() {
            return "L=" + cells + ",Dq=" + dq + ",Dv=" + dv + ",d1=" + d1 + ",H=" + hidden + ",G=" + glimpses + ",d2=" + d2 + ",A=" + answers + ","
                    + scope.name().toLowerCase();
        }

        Size withBatchAndCells(int b, int l) { return new Size(b, l, dq, dv, d1, hidden, glimpses, d2, answers, scope); }

        /** bifuse's McbAttention.random (PyTorch normalization on both poolings), with this size's scope. */
        McbAttention op(long seed) {
            McbAttention r = McbAttention.random(dq, dv, d1, hidden, glimpses, d2, answers, seed);
            return scope == r.scope() ? r : McbAttention.of(r.attention(), scope, r.fusion(), r.weights());
        }

        /** Bytes of the CUDA chunk buffers per cell row, {@code 4·(2·d1 + Dq)} (McbAttentionCuda's constructor). */
        long rowBytes() { return 4L * (2L * d1 + dq); }
    }

    static final McbAttention.L2Scope MAP = McbAttention.L2Scope.MAP, CELL = McbAttention.L2Scope.CELL;
    static final Size SPEC = new Size(64, 196, 2048, 2048, 16000, 512, 2, 16000, 3000, MAP);
    static final Size MEDIUM = new Size(2, 49, 256, 256, 2000, 64, 2, 2000, 300, MAP);

    /**
     * Small sizes (both scopes, L = 1 and G = 1, G = 3, an odd d1 = 105 = 3·5·7) and a medium one; not quick:
     * the spec's widths at B = 2, L = 14.
     */
    static List<Size> sizes(boolean quick) {
        List<Size> s = new ArrayList<>(List.of(new Size(2, 3, 40, 30, 60, 8, 2, 90, 5, CELL), new Size(2, 3, 40, 30, 60, 8, 2, 90, 5, MAP),
                new Size(1, 1, 40, 25, 48, 4, 1, 50, 3, MAP), new Size(3, 5, 60, 40, 105, 16, 3, 64, 7, CELL), MEDIUM));
        if (!quick) s.add(SPEC.withBatchAndCells(2, 14));
        return s;
    }

    /** The size whose GPU rows also run with a chunk budget of {@link #CHUNK_ROWS} cell rows (several chunks and a remainder). */
    static final int CHUNK_ROWS = 4;

    /**
     * Cost model, per call ({bytes, flops}), the peer's {@code work_model}. R = B·L cell rows, F_d = d/2 + 1
     * bins, {@code fft(d) = 2.5·d·log2 d} for one real FFT, C2 = G·Dv + Dq; I = B·Dq + B·L·Dv input floats,
     * W = H·d1 + H + G·H + G + A·d2 + A parameter floats, O = B·A output floats.
     * <pre>
     * forward:  bytes 4(I + W + O)
     *           flops B(2Dq + fft(d1)) + R(2Dv + 2fft(d1) + 6F_d1)      attention MCB (q sketched and transformed once
     *                                                                     per sample; per cell a sketch, an R2C, the
     *                                                                     spectral product, a C2R)
     *                 + 2R·d1·H + 2R·H·G + 2B·G·L·Dv + 2B·d2·A           the 1×1 convs, the weighted sums, the answer layer
     *                 + B(2C2 + 3fft(d2) + 6F_d2)                        fusion MCB (CompactBilinearSuite's model)
     * fwd+bwd:  bytes 4(3I + 3W + 2O)
     *           flops forward + B(3Dq + fft(d1)) + R(3Dv + 4fft(d1) + 12F_d1)   attention MCB backward per cell: the cell's
     *                                                                            sketch and R2C again, the R2C of the
     *                                                                            gradient, two conjugate products, two C2R,
     *                                                                            gathers
     *                 + 2·(the forward's GEMMs) + B(3C2 + 5fft(d2) + 12F_d2)
     * </pre>
     * Normalizations, softmax and ReLU are not counted; nor is any materialized intermediate (bifuse's chunk
     * buffers, the peer's B·L·d1 tensors): the model is the operator's, the same for every backend.
     */
    static double[] cost(String op, Size s) {
        double b = s.batch(), l = s.cells(), r = b * l, dq = s.dq(), dv = s.dv(), d1 = s.d1(), hd = s.hidden(), g = s.glimpses(), d2 = s.d2(),
                a = s.answers();
        double f1 = s.d1() / 2 + 1, f2 = s.d2() / 2 + 1, fft1 = fft(s.d1()), fft2 = fft(s.d2()), c2 = g * dv + dq;
        double in = b * dq + b * l * dv, w = hd * d1 + hd + g * hd + g + a * d2 + a, out = b * a;
        double gemm = 2 * r * d1 * hd + 2 * r * hd * g + 2 * b * g * l * dv + 2 * b * d2 * a;
        double fwd = b * (2 * dq + fft1) + r * (2 * dv + 2 * fft1 + 6 * f1) + gemm + b * (2 * c2 + 3 * fft2 + 6 * f2);
        if (op.endsWith("forward")) return new double[] {4 * (in + w + out), fwd};
        double bwd = b * (3 * dq + fft1) + r * (3 * dv + 4 * fft1 + 12 * f1) + 2 * gemm + b * (3 * c2 + 5 * fft2 + 12 * f2);
        return new double[] {4 * (3 * in + 3 * w + 2 * out), fwd + bwd};
    }

    /** One real FFT of length d: 2.5·d·log2(d) FLOPs. */
    private static double fft(int d) { return 2.5 * d * Math.log(d) / Math.log(2); }

    /** Null when the op's CUDA path can run: kernels and cuBLAS (MlbSuite's), and cuFFT (the fusion pooling's fallback). */
    static String gpuReason() {
        String mlb = MlbSuite.gpuReason();
        return mlb != null ? mlb : CompactBilinearSuite.gpuReason();
    }

    @Override public String gpuUnavailableReason() { return gpuReason(); }

    @Override public void check(boolean quick, CudaContext ctx, SplittableRandom rnd, Check.Report report) {
        String noGpu = ctx == null ? null : gpuReason();
        if (noGpu != null) report.skipped("McbAttention", noGpu);
        boolean gpu = ctx != null && noGpu == null;
        List<Size> sizes = sizes(quick);
        for (Size s : sizes) {
            McbAttention op = s.op(rnd.nextLong());
            int b = s.batch(), l = s.cells();
            float[] q = Stats.gaussian(rnd, b * s.dq()), image = Stats.gaussian(rnd, b * l * s.dv()), g = Stats.gaussian(rnd, b * s.answers());
            McbAttentionReference.Result fRef = McbAttentionReference.forward(op, q, image, b, l);
            McbAttentionReference.Grads gRef = McbAttentionReference.backward(op, q, image, g, b, l);
            long condSeed = rnd.nextLong();
            // float32 on the CPU: the FP32 rule of the GPU rows, the same conditioning draws (made once, shared)
            Conditioning fp32 = McbAttentionTolerance.conditioning(Precision.FP32, op, q, image, g, b, l, fRef, gRef, condSeed);
            {
                McbAttentionCpu cpu = new McbAttentionCpu(op);
                McbAttention.Result r = cpu.forwardWithAttention(q, image, b, l);
                Run run = new Run(r.out(), r.attention(), cpu.backward(q, image, g, b, l));
                addRows(report, cpu.backend(), s.label(), op, run, fRef, gRef, Check.TOLERANCE, fp32);
            }
            if (!gpu) continue;
            for (Precision p : Precision.values()) {
                // At the tiniest widths a TF32 / BF16 output is a few rounded products with nothing to
                // average; there only FP32 is checked here (McbAttentionCudaTest holds them to the rule).
                if (p != Precision.FP32 && Math.min(s.hidden(), Math.min(s.dq(), s.dv())) < 32) continue;
                double tol = p == Precision.FP32 ? Check.TOLERANCE : p.bound();
                Conditioning cond = p == Precision.FP32 ? fp32 : McbAttentionTolerance.conditioning(p, op, q, image, g, b, l, fRef, gRef, condSeed);
                String backend = "cuda-" + p.name().toLowerCase();
                try (McbAttentionCuda cuda = new McbAttentionCuda(op, ctx, p)) {
                    addRows(report, backend, s.label(), op, device(ctx, cuda, q, image, g, b, l), fRef, gRef, tol, cond);
                }
                // Several chunks of cells, the last one partial: at the odd small size (B·L = 15 rows).
                if (p == Precision.FP32 && s == sizes.get(3)) {
                    try (McbAttentionCuda cuda = new McbAttentionCuda(op, ctx, p, CHUNK_ROWS * s.rowBytes())) {
                        String size = s.label() + " chunk=" + cuda.chunkCells(b, l) + " cells";
                        addRows(report, backend, size, op, device(ctx, cuda, q, image, g, b, l), fRef, gRef, tol, cond);
                    }
                }
            }
        }
    }

    /** What a backend computed: the output, the attention maps, the gradients. */
    record Run(float[] out, float[] attention, McbAttention.Gradients grads) {}

    /** On the device from host arrays, every output NaN-poisoned first ({@link DeviceRuns#mcbAttention}). */
    static Run device(CudaContext ctx, McbAttentionCuda cuda, float[] q, float[] image, float[] g, int batch, int cells) {
        DeviceRuns.McbAttentionRun r = DeviceRuns.mcbAttention(ctx, cuda, q, image, g, batch, cells);
        return new Run(r.out(), r.attention(), r.grads());
    }

    /**
     * The forward row (output and maps, tensors 0 and 1 of {@code cond}) and the backward row (every gradient,
     * tensors 2…), each showing the tensor nearest its bound; {@code cond} null: {@code tol} everywhere.
     */
    static void addRows(Check.Report report, String backend, String size, McbAttention op, Run run, McbAttentionReference.Result fRef,
                        McbAttentionReference.Grads gRef, double tol, Conditioning cond) {
        List<float[]> got = new ArrayList<>(List.of(run.out(), run.attention()));
        got.addAll(run.grads().tensors());
        List<double[]> ref = new ArrayList<>(List.of(fRef.out(), fRef.attention()));
        ref.addAll(gRef.tensors());
        List<String> names = new ArrayList<>(List.of("out", "attention"));
        names.addAll(op.gradientNames());
        if (got.size() != ref.size()) throw new IllegalStateException("McbAttention: " + got.size() + " tensors against the reference's " + ref.size());
        report.add(row("McbAttention.forward", backend, size, got, ref, names, 0, 2, tol, cond));
        report.add(row("McbAttention.backward", backend, size, got, ref, names, 2, got.size(), tol, cond));
    }

    private static Check.Row row(String op, String backend, String size, List<float[]> got, List<double[]> ref, List<String> names, int from, int to,
                                 double tol, Conditioning cond) {
        double worstE = 0, worstBound = tol, worstRatio = -1;
        boolean pass = true;
        for (int t = from; t < to; t++) {
            // A cancelled sum (Stats.cancelled: e.g. hidden.bias when a unit is active in every cell) is held,
            // like an exact zero, to an absolute bound: float32's residue of it.
            boolean cancelled = got.get(t) != null && Stats.cancelled(ref.get(t));
            double e = got.get(t) == null ? Double.NaN : cancelled ? Stats.norm(got.get(t))
                    : Stats.relativeL2(got.get(t), ref.get(t)); // an exact-zero reference: absolute
            boolean exactZero = names.get(t).equals("logits.bias");
            double bound = cancelled ? Math.max(tol, Stats.CANCELLED_DEVICE) : cond == null || exactZero ? tol : cond.bound(t, tol, e);
            boolean ok = e <= bound; // NaN fails
            pass &= ok;
            double ratio = Double.isNaN(e) ? Double.POSITIVE_INFINITY : e / bound;
            if (ratio > worstRatio) {
                worstRatio = ratio;
                worstE = e;
                worstBound = bound;
            }
        }
        return new Check.Row(op, backend, size, worstE, worstBound, pass);
    }

    /** The chunk budget a bench variant names: {@code fp32} the default, {@code fp32-chunk64m} 64 MiB ({@code k}, {@code m}, {@code g}). */
    static long chunkBytes(String variant) {
        int i = variant.indexOf("-chunk");
        if (i < 0) return McbAttentionCuda.DEFAULT_CHUNK_BYTES;
        String v = variant.substring(i + "-chunk".length());
        long unit = switch (Character.toLowerCase(v.charAt(v.length() - 1))) {
            case 'k' -> 1L << 10;
            case 'm' -> 1L << 20;
            case 'g' -> 1L << 30;
            default -> throw new IllegalArgumentException("variant " + variant + ": expected a chunk budget such as -chunk64m");
        };
        return Long.parseLong(v.substring(0, v.length() - 1)) * unit;
    }

    /** The precision a bench variant names ({@code fp32}, {@code tf32}, {@code bf16}, before any {@code -chunk...}). */
    static Precision precision(String variant) {
        int i = variant.indexOf('-');
        return BenchCase.precision(i < 0 ? variant : variant.substring(0, i));
    }

    /** Bench's GPU variants: the precisions at the default chunk budget, then FP32 at other budgets. */
    static List<String> variants(boolean quick) {
        return quick ? List.of("fp32", "fp32-chunk1m") : List.of("fp32", "tf32", "bf16", "fp32-chunk64m", "fp32-chunk1g", "fp32-chunk2g");
    }

    @Override public List<BenchCase> benchCases(boolean quick) {
        Size s = quick ? MEDIUM : SPEC;
        java.util.function.Supplier<McbAttention> op = BenchCase.once(() -> s.op(42));
        Size cpu = quick ? s : s.withBatchAndCells(1, s.cells()); // the peer's CPU rows' batch: see the class comment
        int hb = cpu.batch(), b = s.batch(), l = s.cells();
        String label = cpu.label() + (cpu == s ? "" : " (CPU: B=1)");
        BenchCase host = BenchCase.host("McbAttention", label, cpu.csvSize(), hb, cost("McbAttention.forward", cpu), cost("McbAttention.fwd+bwd", cpu), r -> {
            McbAttentionCpu c = new McbAttentionCpu(op.get());
            float[] q = Stats.gaussian(r, hb * s.dq()), v = Stats.gaussian(r, hb * l * s.dv()), g = Stats.gaussian(r, hb * s.answers());
            return List.of(new BenchCase.HostRun(c.backend(), () -> c.forward(q, v, hb, l), () -> {
                c.forward(q, v, hb, l);
                return c.backward(q, v, g, hb, l);
            }));
        });
        BenchCase device = BenchCase.device("McbAttention", s.label(), s.csvSize(), b, cost("McbAttention.forward", s), cost("McbAttention.fwd+bwd", s),
                variants(quick), (ctx, var, st, r) -> {
                    BenchCase.Devices d = new BenchCase.Devices(st);
                    try {
                        McbAttentionCuda cuda = d.op(new McbAttentionCuda(op.get(), ctx, precision(var), chunkBytes(var)));
                        DeviceBuffer dq = d.own(DeviceBuffer.of(ctx, Stats.gaussian(r, b * s.dq())));
                        DeviceBuffer di = d.own(DeviceBuffer.of(ctx, Stats.gaussian(r, b * l * s.dv())));
                        DeviceBuffer dg = d.own(DeviceBuffer.of(ctx, Stats.gaussian(r, b * s.answers())));
                        DeviceBuffer out = d.own(DeviceBuffer.allocateFloats(ctx, (long) b * s.answers()));
                        McbAttentionCuda.GradientBuffers gr = d.own(cuda.allocateGradients(b, l)).buffers();
                        // The attention maps are an optional output: the timed forward is the op as a model uses it.
                        return d.calls(() -> cuda.forward(dq, di, out, null, b, l, st), () -> {
                            cuda.forward(dq, di, out, null, b, l, st);
                            cuda.backward(dq, di, dg, gr, b, l, st);
                        });
                    } catch (RuntimeException e) {
                        throw d.fail(e);
                    }
                });
        return List.of(host, device);
    }
}
