package io.bifuse.cpu;

/**
 * The float passes of the attention-pooling backends ({@link StackedAttentionCpu},
 * {@link HierarchicalAttentionCpu}). Their tanh is {@link MlbKernels#tanh}, the one branch-free tanh of
 * the CPU backends: {@code Math.tanh} is a scalar call of some 20 ns, and the image and item projections
 * of SAN and HAN take millions per call, as much time as their GEMMs. No state: deterministic and
 * thread-safe.
 */
final class SanHanKernels {
    private SanHanKernels() {}

    static float tanh(float v) { return MlbKernels.tanh(v); }

    /** {@code a[off, off + n) = tanh(a[off, off + n))}. */
    static void tanhInPlace(float[] a, int off, int n) {
        for (int j = 0; j < n; j++) a[off + j] = tanh(a[off + j]);
    }

    /**
     * {@code out[oo + j] = tanh(a[ao + j] + b[bo + j])} for {@code j < n}. Two loops: HotSpot 25 does not
     * vectorize a loop that writes one array at one offset and reads another at a different one (they
     * might alias), but does the in-place tanh; measured 3.5 ns an element this way, 9 in one loop.
     */
    static void tanhOfSum(float[] a, int ao, float[] b, int bo, float[] out, int oo, int n) {
        for (int j = 0; j < n; j++) out[oo + j] = a[ao + j] + b[bo + j];
        tanhInPlace(out, oo, n);
    }

    /** {@code Σ_j w[j]·x[xo + j]} in double, in order. */
    static double dotDouble(float[] w, float[] x, int xo, int n) {
        double s = 0;
        for (int j = 0; j < n; j++) s += (double) w[j] * x[xo + j];
        return s;
    }

    /** {@code Σ_j w[j]·x[xo + j]}, in order. */
    static float dot(float[] w, float[] x, int xo, int n) {
        float s = 0f;
        for (int j = 0; j < n; j++) s += w[j] * x[xo + j];
        return s;
    }
}
