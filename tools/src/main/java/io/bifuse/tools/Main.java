package io.bifuse.tools;

import io.bifuse.cuda.CublasHandle;
import io.bifuse.cuda.Cuda;
import io.bifuse.cuda.CufftPlan;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * bifuse's command line: {@code check} runs every implemented op on every available backend against
 * the reference at the spec's sizes (non-zero exit on any failure); {@code bench} reports median times
 * with GB/s and GFLOP/s; {@code main} runs both; {@code env} says what was found.
 *
 * <pre>
 *   check [--quick] [--seed S]      --quick: small sizes only (seconds, for smoke tests);
 *                                   --seed: the inputs of an earlier run (its header prints the seed)
 *   bench [--quick] [--csv FILE] [--runs N]
 *   main  [--full] [--seed S]       check, then bench: at the quick sizes, bench rows capped at 0.5 s
 *                                   (under a minute on 2 cores, build included); --full: at the spec's sizes (minutes)
 * </pre>
 */
public final class Main {
    private Main() {}

    public static void main(String[] args) {
        if (args.length == 0) {
            System.err.println("usage: bifuse (check|bench|main|env) [--quick] [--full] [--seed S] [--csv FILE] [--runs N]");
            System.exit(2);
        }
        List<String> rest = new ArrayList<>(Arrays.asList(args).subList(1, args.length));
        boolean quick = rest.remove("--quick");
        boolean full = rest.remove("--full");
        String csv = option(rest, "--csv");
        String runs = option(rest, "--runs");
        Long seed = seed(option(rest, "--seed"));
        if (!rest.isEmpty()) {
            System.err.println("bifuse: unknown arguments " + rest);
            System.exit(2);
        }
        int rc = 0;
        switch (args[0]) {
            case "env" -> environment();
            case "check" -> { environment(); rc = Check.run(quick, seed); }
            case "bench" -> { environment(); Bench.run(quick, csv, runs == null ? 0 : Integer.parseInt(runs), 2.0); }
            case "main" -> {
                environment();
                long t0 = System.nanoTime();
                rc = Check.run(!full, seed);
                if (!full) System.out.println("(main: check at the quick sizes, every op on every backend here; `main --full` checks the spec's sizes)");
                Bench.run(!full, csv, runs == null ? 0 : Integer.parseInt(runs), full ? 2.0 : 0.5);
                System.out.printf("main: check and bench took %.1f s%n", (System.nanoTime() - t0) / 1e9);
                if (rc != 0) System.out.println("\ncheck FAILED (see the table above)");
            }
            default -> { System.err.println("bifuse: unknown command " + args[0]); rc = 2; }
        }
        System.exit(rc);
    }

    private static Long seed(String s) {
        if (s == null) return null;
        try {
            return Long.parseLong(s);
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("--seed: expected a long integer (the seed a check header printed), got " + s);
        }
    }

    private static String option(List<String> args, String name) {
        int i = args.indexOf(name);
        if (i < 0) return null;
        if (i + 1 >= args.size()) throw new IllegalArgumentException(name + " needs a value");
        String v = args.get(i + 1);
        args.remove(i + 1);
        args.remove(i);
        return v;
    }

    static void environment() {
        Runtime rt = Runtime.getRuntime();
        System.out.printf("bifuse on Java %s (%s), %d CPU threads%n", Runtime.version(), System.getProperty("java.vm.vendor"),
                rt.availableProcessors());
        System.out.println("CPU: " + io.bifuse.cpu.CpuRuntime.defaults().describe());
        Cuda.Status s = Cuda.status();
        if (s.available()) {
            System.out.printf("CUDA: %d device(s), driver %s; cuFFT: %s; cuBLAS: %s%n", s.deviceCount(), s.driver(), CufftPlan.describeLibrary(),
                    CublasHandle.describeLibrary());
        } else {
            System.out.println("CUDA: no GPU backend: " + s.reason() + ". Running on the CPU only.");
        }
    }
}
