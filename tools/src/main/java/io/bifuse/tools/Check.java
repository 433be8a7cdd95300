package io.bifuse.tools;

import io.bifuse.Gradients;
import io.bifuse.cuda.Cuda;
import io.bifuse.cuda.CudaContext;
import io.bifuse.testing.CompactBilinearTolerance;
import io.bifuse.testing.Conditioning;
import io.bifuse.testing.MfbTolerance;
import io.bifuse.testing.Stats;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

/**
 * Every implemented op on every available backend against its reference, on fresh random inputs
 * (seed printed), GPU outputs NaN-poisoned before each run. Each row states its tolerance: relative L2
 * error <= 1e-5 unless the op's tolerance rule (in {@code io.bifuse.testing}, shared with the GPU
 * tests: {@link CompactBilinearTolerance}, {@link MfbTolerance}, {@link Conditioning}) says why a row
 * needs more, and then the table prints the bound it got.
 */
final class Check {
    /** The flat bound of a float32 row (see {@link CompactBilinearTolerance#TOLERANCE}). */
    static final double TOLERANCE = CompactBilinearTolerance.TOLERANCE;
    static final double BASELINE_FACTOR = CompactBilinearTolerance.BASELINE_FACTOR;

    private Check() {}

    record Row(String op, String backend, String size, double error, double tolerance, boolean pass) {}

    /** {@code seed}: the inputs' seed, null for a fresh one (printed either way, so a failing run can be repeated). */
    static int run(boolean quick, Long seed) {
        long s = seed != null ? seed : System.nanoTime();
        System.out.printf("%ncheck: relative L2 error vs the float64 reference, tolerance %.0e unless the row says otherwise, input seed %d"
                + " (repeat with --seed %d)%n", TOLERANCE, s, s);
        SplittableRandom rnd = new SplittableRandom(s);
        Report report = new Report();
        if (Cuda.requireGpu()) System.out.println("(strict GPU mode, BIFUSE_REQUIRE_GPU: a GPU part that cannot run is a failure)");
        CudaContext ctx = Cuda.isAvailable() ? CudaContext.open(0) : null;
        if (ctx == null) report.skipped("every op", Cuda.status().reason());
        else if (ctx.isSimulated()) System.out.println("(GPU rows run on the SIMULATED device, labelled cuda-sim: they check the host code, "
                + "marshalling and kernels' logic, not a GPU; " + io.bifuse.cuda.SimulatedDevice.describe() + ")");
        try {
            if (ctx != null && ctx.isSimulated() && !quick) {
                // The simulator runs kernels on one CPU core: the CPU rows at every size first, then
                // the simulated GPU rows (and the CPU rows again) at the quick sizes.
                for (Suite suite : Suite.all()) checkWithProgress(suite, false, null, rnd, report);
                System.out.println("(GPU rows on the simulated device: at the --quick sizes)");
                for (Suite suite : Suite.all()) suite.check(true, ctx, rnd, report);
            } else {
                for (Suite suite : Suite.all()) checkWithProgress(suite, quick, ctx, rnd, report);
            }
        } finally {
            if (ctx != null) ctx.close();
        }
        System.out.printf("check: %d passed, %d failed%n", report.passed, report.failed);
        return report.failed == 0 ? 0 : 1;
    }

    /** At the spec's sizes a suite's float64 references take seconds to minutes: a line says which op is being checked. */
    private static void checkWithProgress(Suite suite, boolean quick, CudaContext ctx, SplittableRandom rnd, Report report) {
        long t0 = System.nanoTime();
        if (!quick) System.out.printf("(check %s: its float64 references at every size, the spec's included ...)%n", suite.name());
        suite.check(quick, ctx, rnd, report);
        if (!quick) System.out.printf("(check %s: %.1f s)%n", suite.name(), (System.nanoTime() - t0) / 1e9);
    }

    /** Collects and prints rows as they come (a slow reference should not hide the rows before it). */
    static final class Report {
        private int passed, failed;
        private boolean header;

        void add(Row r) {
            r = new Row(r.op(), Cuda.label(r.backend()), r.size(), r.error(), r.tolerance(), r.pass()); // cuda-sim, never cuda, when simulated
            if (!header) {
                System.out.printf("%-26s %-18s %-48s %10s %8s  %s%n", "op", "backend", "size", "rel. L2", "tol", "result");
                header = true;
            }
            System.out.printf("%-26s %-18s %-48s %10.2e %8.0e  %s%n", r.op(), r.backend(), r.size(), r.error(), r.tolerance(),
                    r.pass() ? "pass" : "FAIL");
            if (r.pass()) passed++; else failed++;
        }

        /** Adds the row {@code relativeL2(got, ref) <= tol}. */
        void add(String op, String backend, String size, float[] got, double[] ref, double tol) { add(row(op, backend, size, got, ref, tol)); }

        /** A GPU part of a suite that cannot run: said once, not counted; in strict GPU mode a failure. */
        void skipped(String what, String why) {
            if (Cuda.requireGpu()) {
                System.out.println("FAIL (strict GPU mode): " + what + " not checked on the GPU: " + why);
                failed++;
            } else {
                System.out.println("(" + what + " not checked on the GPU: " + why + ")");
            }
        }

        /** A row that ran but whose comparison means nothing at this precision: said, not counted. */
        void notCompared(String what, String why) { System.out.println("(" + what + " not compared: " + why + ")"); }

        int passed() { return passed; }
        int failed() { return failed; }
    }


    static Row row(String op, String backend, String size, float[] got, double[] ref, double tol) {
        double e = Stats.relativeL2(got, ref);
        return new Row(op, backend, size, e, tol, e <= tol);
    }

    static Row row(String op, String backend, String size, Gradients got, double[][] ref, double tol) {
        double e = Math.max(Stats.relativeL2(got.dx(), ref[0]), Stats.relativeL2(got.dy(), ref[1]));
        return new Row(op, backend, size, e, tol, e <= tol);
    }
}
