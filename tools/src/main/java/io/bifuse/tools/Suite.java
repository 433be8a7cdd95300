package io.bifuse.tools;

import io.bifuse.cuda.CudaContext;
import java.util.List;
import java.util.SplittableRandom;

/**
 * One operator's part of {@code check} and {@code bench}: its rows against its reference on every
 * backend that can run, and its timed rows at the spec's sizes. {@link #all()} lists every operator.
 */
interface Suite {
    /**
     * Adds rows to {@code report}: each backend against the float64 reference on fresh inputs from
     * {@code rnd}, GPU outputs NaN-poisoned first. {@code gpu} is null without a usable driver/device;
     * a suite whose GPU path needs more (cuFFT, cuBLAS, kernels) says so with {@link Check.Report#skipped}.
     */
    void check(boolean quick, CudaContext gpu, SplittableRandom rnd, Check.Report report);

    /** Times the operator on every backend at the spec's sizes ({@code quick}: small sizes, seconds). */
    void bench(boolean quick, Bench.Session session);

    static List<Suite> all() {
        return List.of(new CompactBilinearSuite(), new MlbSuite(), new MfbSuite(), new MlbAttentionSuite(), new FullBilinearSuite(),
                new BanAttentionSuite(), new BanPoolingSuite(), new BanBlockSuite());
    }
}
