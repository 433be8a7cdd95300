package io.bifuse.tools;

import io.bifuse.cuda.CudaContext;
import java.util.List;
import java.util.SplittableRandom;

/**
 * One operator's specification for the tools: its rows of {@code check} against its reference on every
 * backend that can run, and the sizes {@code bench} and the JMH benchmarks time ({@link #benchCases}:
 * the labels, cost model, inputs and calls written once for both). {@link #all()} lists every operator:
 * the one place a new operator is registered with the tools and the benchmarks.
 */
public interface Suite {
    /**
     * Adds rows to {@code report}: each backend against the float64 reference on fresh inputs from
     * {@code rnd}, GPU outputs NaN-poisoned first. {@code gpu} is null without a usable driver/device;
     * a suite whose GPU path needs more (cuFFT, cuBLAS, kernels) says so with {@link Check.Report#skipped}.
     */
    void check(boolean quick, CudaContext gpu, SplittableRandom rnd, Check.Report report);

    /** What {@code bench} times ({@code quick}: small sizes, seconds) and, with {@code quick} false, the JMH benchmarks. */
    List<BenchCase> benchCases(boolean quick);

    /** The operator's name, as its rows spell it. */
    default String name() { return getClass().getSimpleName().replace("Suite", ""); }

    /** Null when the op's CUDA path can run with {@code ctx} open, else why not (kernels, cuBLAS, cuFFT). */
    String gpuUnavailableReason();

    public static List<Suite> all() {
        return List.of(new CompactBilinearSuite(), new MlbSuite(), new MfbSuite(), new MlbAttentionSuite(), new FullBilinearSuite(),
                new BanAttentionSuite(), new BanPoolingSuite(), new BanBlockSuite());
    }
}
