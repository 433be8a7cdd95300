package io.bifuse;

/**
 * Which layer normalization over the last dimension (width {@code n}) a block applies, with its eps:
 * <pre>
 *   MCAN      y = a ⊙ (x − μ) / (σ + eps) + b,   σ = sqrt(Σ (x − μ)² / (n − 1))   (unbiased std, eps outside the root)
 *   PYTORCH   y = a ⊙ (x − μ) / sqrt(v + eps) + b,  v = Σ (x − μ)² / n           (nn.LayerNorm: biased variance, eps inside)
 * </pre>
 * {@link #mcan()} is MILVLG/mcan-vqa's own {@code LayerNorm} (parameters {@code a_2}, {@code b_2}, eps 1e-6);
 * {@link #pytorch()} is {@code nn.LayerNorm} (parameters {@code weight}, {@code bias}, eps 1e-5). The MCAN
 * form needs {@code n >= 2} (an unbiased std of one value is undefined). Immutable.
 *
 * @param variant the formula
 * @param eps     the stabilizer, {@code > 0} and finite
 */
public record LayerNorm(Variant variant, double eps) {
    public enum Variant {
        /** mcan-vqa's: unbiased std, eps added to the std. */
        MCAN,
        /** nn.LayerNorm's: biased variance, eps added under the root. */
        PYTORCH;

        /** The code the kernels take ({@code 0} MCAN, {@code 1} PYTORCH). */
        public int code() { return ordinal(); }
    }

    public LayerNorm {
        if (variant == null) throw new IllegalArgumentException("variant: expected MCAN or PYTORCH, got null");
        if (!(eps > 0) || Double.isInfinite(eps)) throw new IllegalArgumentException("eps: expected a finite value > 0, got " + eps);
    }

    /** mcan-vqa's LayerNorm: unbiased std, {@code eps = 1e-6} outside the root. */
    public static LayerNorm mcan() { return new LayerNorm(Variant.MCAN, 1e-6); }

    /** {@code nn.LayerNorm}'s default: biased variance, {@code eps = 1e-5} under the root. */
    public static LayerNorm pytorch() { return new LayerNorm(Variant.PYTORCH, 1e-5); }

    /**
     * One normalization's affine parameters, {@code gain} (a) and {@code bias} (b), {@code n} floats each,
     * every value finite; copied in and out.
     */
    public record Affine(float[] gain, float[] bias) {
        public Affine {
            if (gain == null) throw new IllegalArgumentException("gain: expected the normalization's n gains (a_2 / weight), got null");
            if (bias == null || bias.length != gain.length) {
                throw new IllegalArgumentException("bias: expected " + gain.length + " floats (one per gain), got " + (bias == null ? "null" : bias.length));
            }
            for (int i = 0; i < gain.length; i++) {
                if (!Float.isFinite(gain[i])) throw new IllegalArgumentException("gain: expected finite values, got " + gain[i] + " at " + i);
                if (!Float.isFinite(bias[i])) throw new IllegalArgumentException("bias: expected finite values, got " + bias[i] + " at " + i);
            }
            gain = gain.clone();
            bias = bias.clone();
        }

        /** Gains 1 and biases 0, as both modules initialize them. */
        public static Affine identity(int n) {
            if (n < 1) throw new IllegalArgumentException("n: expected >= 1, got " + n);
            float[] g = new float[n];
            java.util.Arrays.fill(g, 1f);
            return new Affine(g, new float[n]);
        }

        public int width() { return gain.length; }
        @Override public float[] gain() { return gain.clone(); }
        @Override public float[] bias() { return bias.clone(); }
    }
}
