package io.bifuse.cpu;

import io.bifuse.Activation;
import io.bifuse.Linear;
import io.bifuse.Normalization;

/**
 * The elementwise pieces that the float32 backends of the low-rank bilinear family (MLB, MFB/MFH,
 * MLB attention) fuse around their GEMMs: the activations and their derivatives in float, column sums
 * (bias gradients) as GEMMs with a ones vector, and the per-sample signed sqrt / l2 normalization.
 *
 * <p>Nothing here splits a sum between threads: a row is handled by one task, and a column sum is one
 * GEMM (whose order Sgemm fixes), so results do not depend on the thread count.
 */
final class MlbKernels {
    /** About this many floats per task of an elementwise pass: enough to amortize a fork, small enough to share out. */
    private static final int TASK_FLOATS = 1 << 14;

    private MlbKernels() {}

    /** Rows per task of a pass over rows of {@code cols} floats: a function of the shape only. */
    static int grain(int cols) { return Math.max(1, TASK_FLOATS / Math.max(1, cols)); }

    /** The layer's weight alone: the backends add the bias inside their fused passes. */
    static CpuLinear weightOnly(Linear l) {
        return new CpuLinear(new Linear(l.out(), l.in(), l.weight(), null));
    }

    /**
     * tanh without branches, so that a loop of it vectorizes ({@link Math#tanh} is a call per element,
     * about 10× slower here, and dominated MLB attention's pass over its B·L·J cell activations): an odd
     * degree-13 over even degree-6 rational minimax fit (the coefficients of Eigen's float tanh) evaluated
     * in double on the input clamped to ±9 (where the fit, still within 3e-8 of tanh, rounds to ±1 in float,
     * so saturated units get σ' = 0 exactly, as they do from a correctly rounded tanh). A dense scan of
     * [0, 10] against the correctly rounded tanh: at most 2.6 ulp (1.9e-7 relative) below 0.5, 1.0 ulp on
     * [0.5, 3], 0.84 ulp on [3, 10]; odd, so the same for negative inputs; NaN stays NaN.
     */
    static float tanh(float x) {
        double v = Math.max(-9.0, Math.min(9.0, (double) x));
        double v2 = v * v;
        double p = v2 * -2.76076847742355e-16 + 2.00018790482477e-13;
        p = p * v2 + -8.60467152213735e-11;
        p = p * v2 + 5.12229709037114e-08;
        p = p * v2 + 1.48572235717979e-05;
        p = p * v2 + 6.37261928875436e-04;
        p = p * v2 + 4.89352455891786e-03;
        double q = v2 * 1.19825839466702e-06 + 1.18534705686654e-04;
        q = q * v2 + 2.26843463243900e-03;
        q = q * v2 + 4.89352518554385e-03;
        return (float) (p * v / q);
    }

    /** The logistic function, rounded once from double (Math.exp is a call per element: this does not vectorize, unlike {@link #tanh}). */
    static float sigmoid(float x) {
        return (float) (1 / (1 + Math.exp(-(double) x)));
    }

    /** {@code σ'} from the activation's output {@code a}, as {@link Activation#derivativeFromOutput}. */
    static float derivative(Activation act, float a) {
        return switch (act) {
            case NONE -> 1f;
            case RELU -> a > 0f ? 1f : 0f;
            case TANH -> 1f - a * a;
            case SIGMOID -> a * (1f - a);
        };
    }

    /** {@code p[at + i] = σ(p[at + i] + bias[i])} for {@code i < n} ({@code bias} may be null). */
    static void biasActivate(Activation act, float[] p, int at, float[] bias, int n) {
        if (bias != null) for (int i = 0; i < n; i++) p[at + i] += bias[i];
        switch (act) {
            case NONE -> { }
            case RELU -> { for (int i = 0; i < n; i++) p[at + i] = p[at + i] > 0f ? p[at + i] : 0f; }
            case TANH -> { for (int i = 0; i < n; i++) p[at + i] = tanh(p[at + i]); }
            case SIGMOID -> { for (int i = 0; i < n; i++) p[at + i] = sigmoid(p[at + i]); }
        }
    }

    /** {@code d[at + i] *= σ'(a[at + i])}, the chain rule through the activation whose outputs are {@code a}. */
    static void timesDerivative(Activation act, float[] d, float[] a, int at, int n) {
        switch (act) {
            case NONE -> { }
            case RELU -> { for (int i = 0; i < n; i++) if (!(a[at + i] > 0f)) d[at + i] = 0f; }
            case TANH -> { for (int i = 0; i < n; i++) d[at + i] *= 1f - a[at + i] * a[at + i]; }
            case SIGMOID -> { for (int i = 0; i < n; i++) d[at + i] *= a[at + i] * (1f - a[at + i]); }
        }
    }

    /**
     * {@code db[c] = Σ_r d[off + r·ld + c]} for {@code c < cols} over {@code rows} rows, into a fresh array:
     * a {@code 1 × cols} GEMM with a ones vector of at least {@code rows} floats (one fixed order).
     */
    static float[] columnSums(CpuRuntime rt, int rows, int cols, float[] d, int off, int ld, float[] ones) {
        float[] db = new float[cols];
        Sgemm.gemm(rt, false, false, 1, cols, rows, 1f, ones, 0, rows, d, off, ld, 0f, db, 0, cols);
        return db;
    }

    /**
     * {@code out[oOff..+d) = normalize(z[zOff..+d))} in float, the sums of squares in double. In place
     * ({@code out == z}, same offset) is allowed.
     */
    static void normalize(Normalization n, float[] z, int zOff, int d, float[] out, int oOff) {
        double sumsq = 0;
        for (int j = 0; j < d; j++) {
            float v = z[zOff + j];
            float u = n.signedSqrt() ? Math.copySign((float) Math.sqrt(Math.abs(v)), v) : v;
            out[oOff + j] = u;
            sumsq += (double) u * u;
        }
        double s = scale(n, sumsq);
        if (s == 1) return;
        float sf = (float) s;
        for (int j = 0; j < d; j++) out[oOff + j] *= sf;
    }

    /**
     * {@code gz[gOff..+d) = ∂L/∂z} given {@code z} and {@code g = ∂L/∂normalize(z)}, the chain rule of
     * {@code NormalizationReference.backward} with float elements and double sums; {@code gz} may alias {@code g}.
     * The signed sqrt's derivative where {@code z = 0} and eps = 0 is taken as 0, as the reference does.
     */
    static void normalizeBackward(Normalization n, float[] z, int zOff, float[] g, int gOff, int d, float[] gz, int gzOff) {
        boolean ss = n.signedSqrt();
        double sumsq = 0, ug = 0;
        for (int j = 0; j < d; j++) {
            float v = z[zOff + j];
            float u = ss ? Math.copySign((float) Math.sqrt(Math.abs(v)), v) : v;
            sumsq += (double) u * u;
            ug += (double) u * g[gOff + j];
        }
        double s, ds;
        switch (n.l2()) {
            case NONE -> { s = 1; ds = 0; }
            case MAX_NORM -> {
                double norm = Math.sqrt(sumsq);
                if (norm > n.l2Eps()) { s = 1 / norm; ds = -1 / (norm * norm * norm); }
                else { s = 1 / (double) n.l2Eps(); ds = 0; }
            }
            case SUM_SQUARES -> { s = 1 / Math.sqrt(sumsq + n.l2Eps()); ds = -s * s * s; }
            default -> throw new AssertionError(n.l2());
        }
        double dsug = ds * ug;
        float eps = n.signedSqrtGradEps();
        for (int j = 0; j < d; j++) {
            float v = z[zOff + j];
            float root = ss ? (float) Math.sqrt(Math.abs(v)) : 0f;
            double u = ss ? Math.copySign(root, v) : v;
            double gu = s * g[gOff + j] + dsug * u;
            if (ss) {
                double r = (double) root + eps;
                gu = r > 0 ? gu * 0.5 / r : 0;
            }
            gz[gzOff + j] = (float) gu;
        }
    }

    private static double scale(Normalization n, double sumsq) {
        return switch (n.l2()) {
            case NONE -> 1;
            case MAX_NORM -> 1 / Math.max(Math.sqrt(sumsq), n.l2Eps());
            case SUM_SQUARES -> 1 / Math.sqrt(sumsq + n.l2Eps());
        };
    }
}
