package io.bifuse.cuda;

import io.bifuse.Normalization;

/**
 * The error scale of a float32 backward through an l2 normalization, for the ops whose reference has no
 * {@code backwardScale} of its own (full and compact bilinear; {@code MfbReference.backwardScale} is
 * the same rule). The l2 backward {@code ∂L/∂u = s·(g − s²⟨u, g⟩u)} is a difference of two terms of
 * size {@code ~s·|g|}; the kernels evaluate it in float32, so they are off by ~2⁻²⁴ of those terms, and
 * where the terms cancel the gradient itself can be far smaller: with one entry per sample (d = 1) the
 * Caffe normalization's exact gradient is {@code s·g·eps/(u² + eps)}, ~1e-6 of the terms, and a float32
 * result is off by ~0.6·|z| of it (measured: 5% and 18% relative on the d = 1 rows). So a backward is
 * measured as {@code ‖got − ref‖ / max(‖ref‖, ‖scale‖)}, {@code scale} the same backward with the
 * projection term left out ({@code ∂L/∂u = s·g}; the signed sqrt and everything after unchanged): the
 * relative L2 error wherever the terms do not cancel (at d ≥ 2 the projection removes ~1/d of g), the
 * error against the terms' size where they do, while a missing or wrong projection term still shows as
 * O(1).
 */
final class L2Terms {
    private L2Terms() {}

    /** The same normalization without its l2 step (the signed sqrt and its gradient eps kept). */
    static Normalization withoutL2(Normalization n) {
        return new Normalization(n.signedSqrt(), n.signedSqrtGradEps(), Normalization.L2.NONE, 0f);
    }

    /**
     * {@code g} with each sample's row ({@code d} entries) times its l2 scale {@code s} at the pooled
     * {@code z} (rows of {@code d}): the gradOut that, fed to the backward {@link #withoutL2}, gives the
     * scale backward. {@code g} itself where the normalization has no l2 step.
     */
    static float[] scaledGradOut(Normalization n, double[] z, float[] g, int batch, int d) {
        if (n.l2() == Normalization.L2.NONE) return g;
        float[] out = new float[g.length];
        for (int b = 0; b < batch; b++) {
            double sumsq = 0;
            for (int j = 0; j < d; j++) {
                double v = z[b * d + j];
                double u = n.signedSqrt() ? Math.signum(v) * Math.sqrt(Math.abs(v)) : v;
                sumsq += u * u;
            }
            double s = n.l2() == Normalization.L2.MAX_NORM ? 1 / Math.max(Math.sqrt(sumsq), n.l2Eps()) : 1 / Math.sqrt(sumsq + n.l2Eps());
            for (int j = 0; j < d; j++) out[b * d + j] = (float) (g[b * d + j] * s);
        }
        return out;
    }

    /** {@code ‖got − ref‖ / max(‖ref‖, ‖scale‖)}; NaN in {@code got} (an unwritten element) stays NaN. */
    static double error(float[] got, double[] ref, double[] scale) {
        double num = 0, den = 0, sc = 0;
        for (int i = 0; i < ref.length; i++) {
            num += (got[i] - ref[i]) * (got[i] - ref[i]);
            den += ref[i] * ref[i];
            sc += scale[i] * scale[i];
        }
        double d = Math.max(den, sc);
        return d == 0 ? Math.sqrt(num) : Math.sqrt(num / d);
    }
}
