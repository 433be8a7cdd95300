package io.bifuse.reference;

import io.bifuse.Normalization;

/**
 * {@link Normalization} on one sample in double precision, forward and backward written out from the
 * definitions (the chain rule through {@code sign(z)·sqrt|z|} and through the l2 scaling).
 */
public final class NormalizationReference {
    private NormalizationReference() {}

    /** {@code out[off..off+d) = normalize(z[off..off+d))}. */
    public static void forward(Normalization n, double[] z, int off, int d, double[] out) {
        double[] u = new double[d];
        double sumsq = 0;
        for (int j = 0; j < d; j++) {
            u[j] = n.signedSqrt() ? Math.signum(z[off + j]) * Math.sqrt(Math.abs(z[off + j])) : z[off + j];
            sumsq += u[j] * u[j];
        }
        double scale = switch (n.l2()) {
            case NONE -> 1;
            case MAX_NORM -> 1 / Math.max(Math.sqrt(sumsq), n.l2Eps());
            case SUM_SQUARES -> 1 / Math.sqrt(sumsq + n.l2Eps());
        };
        for (int j = 0; j < d; j++) out[off + j] = u[j] * scale;
    }

    /** {@code gz[off..off+d) = ∂L/∂z} given {@code g = ∂L/∂normalize(z)} on the same range. */
    public static void backward(Normalization n, double[] z, double[] g, int off, int d, double[] gz) {
        double[] u = new double[d];
        double sumsq = 0, ug = 0;
        for (int j = 0; j < d; j++) {
            u[j] = n.signedSqrt() ? Math.signum(z[off + j]) * Math.sqrt(Math.abs(z[off + j])) : z[off + j];
            sumsq += u[j] * u[j];
            ug += u[j] * g[off + j];
        }
        // o = u·s(u):  ∂o_j/∂u_k = s·δ_jk + u_j·∂s/∂u_k.
        //   MAX_NORM, ‖u‖ > eps: s = 1/‖u‖,            ∂s/∂u_k = -u_k/‖u‖³
        //   MAX_NORM, ‖u‖ <= eps: s = 1/eps (constant)
        //   SUM_SQUARES: s = (Σu² + eps)^-1/2,        ∂s/∂u_k = -u_k·s³
        double s, ds; // gu_k = s·g_k + ds·u_k·<u, g>
        switch (n.l2()) {
            case NONE -> { s = 1; ds = 0; }
            case MAX_NORM -> {
                double norm = Math.sqrt(sumsq);
                if (norm > n.l2Eps()) { s = 1 / norm; ds = -1 / (norm * norm * norm); }
                else { s = 1 / (double) n.l2Eps(); ds = 0; }
            }
            case SUM_SQUARES -> { s = 1 / Math.sqrt(sumsq + n.l2Eps()); ds = -s * s * s; }
            default -> throw new AssertionError();
        }
        for (int j = 0; j < d; j++) {
            double gu = s * g[off + j] + ds * u[j] * ug;
            if (n.signedSqrt()) {
                double r = Math.sqrt(Math.abs(z[off + j])) + n.signedSqrtGradEps();
                gu = r > 0 ? gu * 0.5 / r : 0;
            }
            gz[off + j] = gu;
        }
    }
}
