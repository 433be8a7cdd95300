package io.bifuse.cuda;

/**
 * The sizes the GPU tests use on the simulated device ({@code BIFUSE_DEVICE=sim}, native-build/sim),
 * which runs the real kernels with each block's threads as fibers on one CPU core, thousands of times
 * slower than a GPU. There, so that all GPU test classes together stay within CI's budget (about 8
 * minutes on two cores), the cases at the spec's sizes run at a small batch (and, where a kernel's cost
 * grows with it, a small L or N) and repetition loops run fewer times; every other width of such a
 * case, every odd small size, every precision, the NaN poisoning and every check stay as they are. On
 * a GPU ({@link #SIMULATED} false) every function here returns the spec's size unchanged.
 */
final class SimSizes {
    private SimSizes() {}

    /** Whether the GPU tests run on the simulated device (decided before anything is loaded). */
    static final boolean SIMULATED = Cuda.isSimulated();

    /** Batches above this are the spec's (or near it) and shrink on the simulated device. */
    static final int SMALL_BATCH = 8;

    /** {@code gpu} on a GPU, {@code sim} on the simulated device: a size with its own reason to be smaller there. */
    static int pick(int gpu, int sim) { return SIMULATED ? sim : gpu; }

    /**
     * A case's batch: the spec's {@code B} on a GPU; on the simulated device 3 where {@code B} is above
     * {@link #SMALL_BATCH} (odd, and enough for an empty and a single-object sample beside a full one).
     * Small batches (the odd sizes) are kept.
     */
    static int batch(int spec) { return SIMULATED && spec > SMALL_BATCH ? 3 : spec; }

    /**
     * A spatial extent (MLB attention's L cells, full bilinear's L positions, BAN's N objects): the
     * spec's on a GPU; on the simulated device {@code sim} where the spec's is larger.
     */
    static int extent(int spec, int sim) { return SIMULATED ? Math.min(spec, sim) : spec; }

    /** A repetition count (e.g. "memory stays flat over n calls"): {@code n} on a GPU, a twentieth of it (at least 3) simulated. */
    static int repeats(int n) { return SIMULATED ? Math.max(3, n / 20) : n; }
}
