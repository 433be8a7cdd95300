package io.bifuse.reference;

/**
 * The soft attention over the {@code L} cells of one sample that MLB attention and MCB attention share,
 * in double: per glimpse {@code g}, {@code α_g = softmax over the cells of the logits}, and the attended
 * vector {@code v̂_g = Σ_s α_{g,s}·v_s}; and its backward. Cell {@code s} of sample {@code b} is at
 * {@code (b·L + s)·Dv}. Every sum runs in one fixed order.
 */
final class CellAttention {
    private CellAttention() {}

    /** {@code α[g][s] = exp(logit[g][s] − max_t logit[g][t]) / Σ_t exp(...)}: a new {@code G × L} array. */
    static double[][] softmax(double[][] logit) {
        double[][] alpha = new double[logit.length][];
        for (int g = 0; g < logit.length; g++) {
            int cells = logit[g].length;
            alpha[g] = new double[cells];
            double m = Double.NEGATIVE_INFINITY, sum = 0;
            for (int t = 0; t < cells; t++) m = Math.max(m, logit[g][t]);
            for (int t = 0; t < cells; t++) sum += alpha[g][t] = Math.exp(logit[g][t] - m);
            for (int t = 0; t < cells; t++) alpha[g][t] /= sum;
        }
        return alpha;
    }

    /** {@code v̂[g] = Σ_s α[g][s]·v_s} over the cells of sample {@code b}: {@code G × Dv}. */
    static double[][] pool(double[][] alpha, double[] v, int b, int cells, int dv) {
        double[][] vhat = new double[alpha.length][dv];
        for (int g = 0; g < alpha.length; g++) {
            for (int t = 0; t < cells; t++) {
                int off = (b * cells + t) * dv;
                for (int d = 0; d < dv; d++) vhat[g][d] += alpha[g][t] * v[off + d];
            }
        }
        return vhat;
    }

    /**
     * The backward of {@link #pool} and {@link #softmax} given {@code dvhat[g] = ∂L/∂v̂_g}: adds
     * {@code Σ_g α_{g,s}·dv̂_g} to the cells' gradient {@code gv} (cell layout as {@code v}) and writes the
     * logits' gradient {@code da[(b·L + s)·G + g] = α_{g,s}·(dα_{g,s} − Σ_t α_{g,t}·dα_{g,t})}, where
     * {@code dα_{g,s} = dv̂_g · v_s} (the softmax Jacobian).
     */
    static void backward(double[][] alpha, double[][] dvhat, double[] v, int b, int cells, int dv, double[] gv, double[] da) {
        int gs = alpha.length;
        for (int g = 0; g < gs; g++) {
            double[] dalpha = new double[cells];
            double c = 0;
            for (int t = 0; t < cells; t++) {
                int off = (b * cells + t) * dv;
                double acc = 0;
                for (int d = 0; d < dv; d++) {
                    acc += dvhat[g][d] * v[off + d];
                    gv[off + d] += alpha[g][t] * dvhat[g][d];
                }
                dalpha[t] = acc;
                c += alpha[g][t] * acc;
            }
            for (int t = 0; t < cells; t++) da[(b * cells + t) * gs + g] = alpha[g][t] * (dalpha[t] - c);
        }
    }
}
