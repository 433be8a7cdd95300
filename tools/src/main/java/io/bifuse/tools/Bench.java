package io.bifuse.tools;

import io.bifuse.testing.Stats;
import io.bifuse.cuda.Cuda;
import io.bifuse.cuda.CudaContext;
import io.bifuse.cuda.DeviceBuffer;
import io.bifuse.cuda.CudaEvent;
import io.bifuse.cuda.CudaStream;
import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

/**
 * Median time per op, backend and size, with the bytes and FLOPs each call must at least move and do
 * (the cost model below, the same one the PyTorch peer uses), as GB/s and GFLOP/s and, on a known GPU,
 * as a fraction of its ceilings. GPU times come from CUDA events around each call on a warm stream;
 * CPU times from System.nanoTime. Ops: {@code forward}, and {@code fwd+bwd} (a training step:
 * forward, then backward), named so because the PyTorch peer's autograd step is exactly that.
 */
final class Bench {
    private Bench() {}

    /** {@code peakBytes}: the device memory bifuse held at most during the timed calls (inputs, weights, workspaces), −1 for CPU rows. */
    record Result(String op, String backend, String label, String csvSize, int batch, double[] ms, double bytes, double flops, long peakBytes) {
        double median() { return Stats.quantile(ms, 0.5); }
        double gbps() { return bytes / median() / 1e6; }
        double gflops() { return flops / median() / 1e6; }
    }

    /** Peak HBM GB/s and FP32 (non-tensor) GFLOP/s of GPUs we know, from the vendors' data sheets. */
    static double[] ceiling(String device) {
        String n = device.toUpperCase();
        if (n.contains("H200")) return new double[] {4800, 66900};
        if (n.contains("H100") && n.contains("PCIE")) return new double[] {2000, 51200};
        if (n.contains("H100")) return new double[] {3350, 66900};
        if (n.contains("A100")) return new double[] {n.contains("80GB") ? 2039 : 1555, 19500};
        return null;
    }

    static void run(boolean quick, String csv, int runsOverride) { run(quick, csv, runsOverride, 2.0); }

    /** {@code budgetSeconds}: how long a CPU row may keep adding runs after its first five. */
    static void run(boolean quick, String csv, int runsOverride, double budgetSeconds) {
        long seed = System.nanoTime();
        System.out.printf("%nbench: median of many runs per row; GB/s and GFLOP/s from each op's cost model; seed %d%n", seed);
        // A simulated device's timings measure the simulator, not a kernel: none are printed or recorded.
        CudaContext ctx = Cuda.isAvailable() && !Cuda.isSimulated() ? CudaContext.open(0) : null;
        Session session = new Session(new SplittableRandom(seed), ctx, runsOverride, budgetSeconds);
        if (ctx == null) System.out.println("(GPU backends not benchmarked: " + (Cuda.isSimulated()
                ? "the device is the simulated one (cuda-sim): its timings are not performance" : Cuda.status().reason()) + ")");
        else System.out.println("GPU: " + ctx + (session.peak == null ? ", ceilings unknown"
                : String.format(", ceilings %.0f GB/s, %.1f TFLOP/s fp32", session.peak[0], session.peak[1] / 1e3)));
        header(session.peak != null);
        try {
            for (Suite suite : Suite.all()) session.time(suite, suite.benchCases(quick));
        } finally {
            if (ctx != null) ctx.close();
        }
        if (csv != null) write(Path.of(csv), session.results);
    }

    /** What a suite's bench needs: inputs' randomness, the GPU (or null), and the timers that print and record rows. */
    static final class Session {
        private final SplittableRandom random;
        private final CudaContext gpu;
        private final double[] peak;
        private final int runsOverride;
        private final double budgetSeconds;
        private final List<Result> results = new ArrayList<>();

        Session(SplittableRandom random, CudaContext gpu, int runsOverride) {
            this(random, gpu, runsOverride, 2.0);
        }

        Session(SplittableRandom random, CudaContext gpu, int runsOverride, double budgetSeconds) {
            this.random = random;
            this.gpu = gpu;
            this.peak = gpu == null ? null : ceiling(gpu.deviceName());
            this.runsOverride = runsOverride;
            this.budgetSeconds = budgetSeconds;
        }

        SplittableRandom random() { return random; }
        /** The GPU, or null when there is none (the suite then times its CPU backends only). */
        CudaContext gpu() { return gpu; }
        List<Result> results() { return results; }

        /**
         * Every row of {@code cases}: each CPU backend's forward and training step, then each GPU
         * variant's (on a stream of its own, the op's workspaces released after), unless the suite says
         * its GPU path cannot run here (said once).
         */
        void time(Suite suite, List<BenchCase> cases) {
            String noGpu = gpu == null ? null : suite.gpuUnavailableReason();
            boolean said = false;
            for (BenchCase c : cases) {
                for (BenchCase.HostRun h : c.host() == null ? List.<BenchCase.HostRun>of() : c.host().apply(random)) {
                    cpu(c.op() + ".forward", "bifuse-" + h.backend(), c.label(), c.csvSize(), c.batch(), c.forwardCost(), h.forward()::get);
                    if (h.step() != null) cpu(c.op() + ".fwd+bwd", "bifuse-" + h.backend(), c.label(), c.csvSize(), c.batch(), c.stepCost(), h.step()::get);
                }
                if (gpu == null || c.variants().isEmpty()) continue;
                if (noGpu != null) {
                    if (!said) skipped(c.op(), noGpu);
                    said = true;
                    continue;
                }
                for (String v : c.variants()) {
                    try (CudaStream st = CudaStream.create(gpu); BenchCase.DeviceRun d = c.device().open(gpu, v, st, random)) {
                        gpu(c.op() + ".forward", "bifuse-cuda-" + v, c.label(), c.csvSize(), c.batch(), c.forwardCost(), st, d::forward);
                        gpu(c.op() + ".fwd+bwd", "bifuse-cuda-" + v, c.label(), c.csvSize(), c.batch(), c.stepCost(), st, d::step);
                    }
                }
            }
        }

        /** A GPU part of a suite that cannot run here, said once. */
        void skipped(String what, String why) { System.out.println("(" + what + " not benchmarked on the GPU: " + why + ")"); }

        /** Times {@code call} with System.nanoTime: at least 5 runs, up to 50 or the session's budget (2 s; main's 0.5 s). {@code cost} = {bytes, flops}. */
        void cpu(String op, String backend, String label, String csvSize, int batch, double[] cost, Runnable call) {
            call.run(); // warm-up: JIT, FFT plans
            List<Double> ms = new ArrayList<>();
            long start = System.nanoTime();
            int min = runsOverride > 0 ? runsOverride : 5;
            while (ms.size() < min || (runsOverride == 0 && System.nanoTime() - start < budgetSeconds * 1e9 && ms.size() < 50)) {
                long t0 = System.nanoTime();
                call.run();
                ms.add((System.nanoTime() - t0) / 1e6);
            }
            add(new Result(op, backend, label, csvSize, batch, ms.stream().mapToDouble(Double::doubleValue).toArray(), cost[0], cost[1], -1));
        }

        /** Times {@code call} (which queues work on {@code stream}) with CUDA events: 10 warm-up runs, then 200. */
        void gpu(String op, String backend, String label, String csvSize, int batch, double[] cost, CudaStream stream, Runnable call) {
            int runs = runsOverride > 0 ? runsOverride : 200;
            try (CudaEvent a = new CudaEvent(gpu); CudaEvent b = new CudaEvent(gpu)) {
                stream.synchronize();
                DeviceBuffer.resetPeak(); // from the inputs, weights and outputs already allocated, as torch's max_memory_allocated
                for (int i = 0; i < 10; i++) call.run(); // plans, workspaces, module load, clocks
                stream.synchronize();
                double[] ms = new double[runs];
                for (int i = 0; i < runs; i++) {
                    a.record(stream);
                    call.run();
                    b.record(stream);
                    b.synchronize();
                    ms[i] = CudaEvent.elapsedMillis(a, b);
                }
                add(new Result(op, backend, label, csvSize, batch, ms, cost[0], cost[1], DeviceBuffer.peakBytes()));
            }
        }

        private void add(Result r) {
            results.add(r);
            String ceil = peak != null && r.backend().contains("cuda")
                    ? String.format("  %5.1f%% %5.1f%%", 100 * r.gbps() / peak[0], 100 * r.gflops() / peak[1]) : "";
            System.out.printf("%-24s %-20s %-32s %5d %11.4f %5.3f-%-5.3f %10.1f %10.1f%s%n", r.op(), r.backend(), r.label(), r.ms().length,
                    r.median(), Stats.quantile(r.ms(), 0.1), Stats.quantile(r.ms(), 0.9), r.gbps(), r.gflops(), ceil);
        }
    }

    private static void header(boolean ceilings) {
        System.out.printf("%-24s %-20s %-32s %5s %11s %11s %10s %10s%s%n", "op", "backend", "size", "runs", "median ms", "p10-p90 ms",
                "GB/s", "GFLOP/s", ceilings ? "   %HBM  %FP32" : "");
    }

    private static void write(Path path, List<Result> results) {
        try {
            if (path.getParent() != null) Files.createDirectories(path.getParent());
            try (PrintWriter w = new PrintWriter(Files.newBufferedWriter(path))) {
                w.println("op,backend,size,batch,median_ms,p10_ms,p90_ms,runs,bytes,flops,gbps,gflops,peak_mem_bytes");
                for (Result r : results) {
                    w.printf("%s,%s,\"%s\",%d,%.6f,%.6f,%.6f,%d,%.0f,%.0f,%.2f,%.2f,%s%n", r.op(), r.backend(), r.csvSize(), r.batch(),
                            r.median(), Stats.quantile(r.ms(), 0.1), Stats.quantile(r.ms(), 0.9), r.ms().length, r.bytes(), r.flops(), r.gbps(), r.gflops(),
                            r.peakBytes() < 0 ? "" : Long.toString(r.peakBytes()));
                }
            }
            System.out.println("bench: wrote " + path);
        } catch (IOException e) {
            throw new java.io.UncheckedIOException("writing " + path, e);
        }
    }
}
