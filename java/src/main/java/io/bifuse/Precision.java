package io.bifuse;

/**
 * The arithmetic of the GEMMs (the projections) in the low-rank bilinear operators on the GPU. Inputs,
 * outputs and accumulation are always float32; the reduced modes let cuBLAS round the GEMM OPERANDS to
 * a shorter significand and use tensor cores. Never chosen silently: {@link #FP32} is the default and
 * the others are explicit options. The elementwise kernels (bias, activation, Hadamard, pooling,
 * normalization) always run in float32 or better.
 *
 * <p>Error bounds, relative L2 against the float64 reference ({@link #bound()}): FP32 {@code 1e-5};
 * TF32 (10 explicit significand bits, unit roundoff {@code u = 2^-11 ≈ 4.9e-4}) {@code 4u ≈ 2e-3};
 * BF16 (7 explicit bits, {@code u = 2^-8 ≈ 3.9e-3}) {@code 4u ≈ 1.6e-2}. Why {@code 4u}: rounding each
 * operand of a product by at most {@code u} gives a relative error of at most {@code 2u} per term, and
 * random-sign sums do not amplify it; the tests measure the emulated rounding ({@link #round}) at the
 * spec's sizes and find about {@code 0.5u–1.5u}, so {@code 4u} leaves room for truncation instead of
 * round-to-nearest and for the activations' slopes. Reduced modes are for inference and for users who
 * accept that error in training; they are not checked against 1e-5.
 *
 * <p>What {@code 4u} does not cover: a ReLU whose input moves across zero under the rounding is wrong by
 * its full size, not by O(u), so gradients through ReLU (and cancelling sums such as a weight-norm
 * gain's gradient) can exceed the bound while the forward stays well within it. The BAN block's emulation
 * measures 6–12× the bound on such gradients; its tests hold them to twice a float64 conditioning
 * baseline instead ({@link io.bifuse.reference.BanBlockReference#perturbationBaseline}). The other ops'
 * ReLU configurations in TF32/BF16 have not been measured on a GPU.
 *
 * <p>On cuBLAS these are the compute types {@code CUBLAS_COMPUTE_32F}, {@code _32F_FAST_TF32} and
 * {@code _32F_FAST_16BF} (the mapping lives with the binding, {@code CublasHandle}). Note that the
 * environment variable {@code NVIDIA_TF32_OVERRIDE=1} can make cuBLAS use TF32 even in FP32 mode;
 * bifuse does not set it.
 */
public enum Precision {
    FP32(1e-5),
    TF32(4 * 0x1p-11),
    BF16(4 * 0x1p-8);

    private final double bound;

    Precision(double bound) {
        this.bound = bound;
    }

    /** The documented bound on the relative L2 error of an op's outputs in this mode (see the class comment). */
    public double bound() { return bound; }

    /**
     * {@code v} rounded as this mode rounds a GEMM operand, round-to-nearest-even on the significand:
     * the CPU emulation the tests use to measure what the mode costs. FP32 returns {@code v}.
     */
    public float round(float v) {
        if (this == FP32 || !Float.isFinite(v)) return v;
        int drop = this == TF32 ? 13 : 16; // float32 has 23 explicit significand bits; TF32 keeps 10, BF16 7
        int bits = Float.floatToRawIntBits(v);
        int half = 1 << (drop - 1), lsb = (bits >>> drop) & 1;
        bits = (bits + half - 1 + lsb) & (-1 << drop);
        return Float.intBitsToFloat(bits);
    }

    /** A copy of {@code a} with every element {@link #round rounded}. */
    public float[] round(float[] a) {
        float[] r = new float[a.length];
        for (int i = 0; i < a.length; i++) r[i] = round(a[i]);
        return r;
    }

    static Precision require(String name, Precision p) {
        if (p == null) throw new IllegalArgumentException(name + ": expected FP32, TF32 or BF16, got null");
        return p;
    }
}
