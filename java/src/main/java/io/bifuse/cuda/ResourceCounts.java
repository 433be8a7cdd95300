package io.bifuse.cuda;

import java.util.concurrent.atomic.LongAdder;

/**
 * How many of the expensive device resources bifuse has made in this process: streams, cuBLAS handles,
 * cuFFT plans and device allocations (each costs from microseconds to milliseconds, and a
 * {@code cuMemFree} waits for the whole device). The tests read them to show that repeated calls make
 * none; nothing else depends on them.
 */
final class ResourceCounts {
    static final LongAdder STREAMS = new LongAdder(), CUBLAS_HANDLES = new LongAdder(), CUFFT_PLANS = new LongAdder(),
            ALLOCATIONS = new LongAdder();

    /**
     * Kernels {@link CudaContext#launch} was asked to launch (cuBLAS's and cuFFT's own kernels are not
     * counted): the tests show that a call with a bad argument launches none. Not part of
     * {@link #snapshot()}, since every call launches.
     */
    static final LongAdder LAUNCHES = new LongAdder();

    private ResourceCounts() {}

    /** The four counts now, for a before/after comparison. */
    static long[] snapshot() {
        return new long[] {STREAMS.sum(), CUBLAS_HANDLES.sum(), CUFFT_PLANS.sum(), ALLOCATIONS.sum()};
    }

    /** What changed between two snapshots, named, e.g. "streams +1, cuBLAS handles +1". */
    static String delta(long[] before, long[] after) {
        String[] names = {"streams", "cuBLAS handles", "cuFFT plans", "device allocations"};
        StringBuilder s = new StringBuilder();
        for (int i = 0; i < names.length; i++) {
            if (after[i] != before[i]) s.append(s.isEmpty() ? "" : ", ").append(names[i]).append(" +").append(after[i] - before[i]);
        }
        return s.isEmpty() ? "none" : s.toString();
    }
}
