package io.bifuse.bench;

import java.util.ArrayList;
import java.util.List;

/**
 * JMH's command line ({@code org.openjdk.jmh.Main}, every option as JMH documents it), with the
 * suites' cases as the values of {@link Ops}' parameters {@code cpuCase} and {@code gpuCase} where the
 * command line gives none ({@code -p gpuCase=ID[,ID...]} picks cases). JMH reads annotation values at
 * compile time, but the cases are data of the suites: this is how every case of every operator is
 * benchmarked without a list to keep in step. {@code -lp} lists every benchmark with its cases.
 */
public final class Jmh {
    private Jmh() {}

    public static void main(String[] args) throws Exception {
        org.openjdk.jmh.Main.main(withCases(args));
    }

    /** {@code args} plus {@code -p cpuCase=...} and {@code -p gpuCase=...} (every case) for each not given there. */
    static String[] withCases(String[] args) {
        List<String> a = new ArrayList<>(List.of(args));
        addUnlessGiven(a, "cpuCase", Ops.ids("cpu"));
        addUnlessGiven(a, "gpuCase", Ops.ids("gpu"));
        return a.toArray(String[]::new);
    }

    private static void addUnlessGiven(List<String> args, String name, List<String> ids) {
        for (int i = 0; i < args.size(); i++) {
            String s = args.get(i);
            if (s.startsWith("-p" + name + "=") || s.equals("-p") && i + 1 < args.size() && args.get(i + 1).startsWith(name + "=")) return;
        }
        for (String id : ids) {
            // JMH splits a -p value at commas.
            if (id.contains(",")) throw new IllegalStateException(name + ": the case id '" + id + "' contains a comma, which JMH's -p splits at");
        }
        args.add("-p");
        args.add(name + "=" + String.join(",", ids));
    }
}
