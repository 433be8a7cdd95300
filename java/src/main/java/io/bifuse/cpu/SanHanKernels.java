package io.bifuse.cpu;

/**
 * The float32 tanh of the attention-pooling backends ({@link StackedAttentionCpu},
 * {@link HierarchicalAttentionCpu}): {@code Math.tanh} is a scalar call of some 20 ns (the image and item
 * projections of SAN and HAN take millions per call, as much time as their GEMMs), while this rational
 * approximation is plain float arithmetic in a counted loop, which HotSpot's superword pass vectorizes.
 *
 * <p>{@code tanh(x) ≈ x·P(x²)/Q(x²)}, {@code P} of degree 6 and {@code Q} of degree 3 in {@code x²}, on
 * {@code x} clamped to ±7.9053 (beyond which float tanh is within 3·10⁻⁷ of ±1): the minimax
 * coefficients of Eigen's {@code generic_fast_tanh_float}, divided through by {@code Q(0)} so that
 * {@code P(0) ≈ 1} and a tiny or subnormal {@code x} keeps its precision. Largest relative error against
 * {@code Math.tanh} over all floats 3.7·10⁻⁷ (about 3 ulp; SanHanKernelsTest), odd, and {@code |tanh| <= 1}.
 * No state: deterministic and thread-safe.
 */
final class SanHanKernels {
    private SanHanKernels() {}

    static final float CLAMP = 7.90531110763549805f;

    static float tanh(float v) {
        float x = Math.max(-CLAMP, Math.min(CLAMP, v));
        float x2 = x * x;
        float p = x2 * -5.6416761589012446e-14f + 4.0874172102522977e-11f;
        p = x2 * p + -1.7583788647357323e-08f;
        p = x2 * p + 1.0467499123478774e-05f;
        p = x2 * p + 0.0030360983218997717f;
        p = x2 * p + 0.1302255392074585f;
        p = x2 * p + 0.9999998807907104f;
        float q = x2 * 0.000244866096181795f + 0.024222763255238533f;
        q = x2 * q + 0.4635583758354187f;
        q = x2 * q + 1.0f;
        return x * p / q;
    }

    /** {@code a[off, off + n) = tanh(a[off, off + n))}. */
    static void tanhInPlace(float[] a, int off, int n) {
        for (int j = 0; j < n; j++) a[off + j] = tanh(a[off + j]);
    }

    /** {@code out[oo + j] = tanh(a[ao + j] + b[bo + j])} for {@code j < n}. */
    static void tanhOfSum(float[] a, int ao, float[] b, int bo, float[] out, int oo, int n) {
        for (int j = 0; j < n; j++) out[oo + j] = tanh(a[ao + j] + b[bo + j]);
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
