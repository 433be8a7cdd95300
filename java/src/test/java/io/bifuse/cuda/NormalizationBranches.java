package io.bifuse.cuda;

import io.bifuse.Normalization;
import io.bifuse.reference.NormalizationReference;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * The normalizations whose kernel branches the presets ({@link Normalization#NONE}, {@code pytorch()},
 * {@code caffe()}) leave out, as the retired replay harnesses (native-build/emu, removed in d14f9eb)
 * ran them: l2 alone in both modes, the signed sqrt alone with Caffe's gradient eps and with the exact
 * derivative, and {@code F.normalize}'s clamp {@code ‖u‖ <= eps} (the scale becomes the constant
 * {@code 1/eps} and the projection term vanishes). Also the float64 normalization of a given pooled
 * {@code z}, for the checks at the device's own z.
 */
final class NormalizationBranches {
    private NormalizationBranches() {}

    static final Normalization L2_MAX = new Normalization(false, 0f, Normalization.L2.MAX_NORM, 1e-12f);
    static final Normalization L2_SUM_SQUARES = new Normalization(false, 0f, Normalization.L2.SUM_SQUARES, 1e-7f);
    static final Normalization SSQRT_ONLY = new Normalization(true, 0.03f, Normalization.L2.NONE, 0f);
    static final Normalization SSQRT_EXACT = new Normalization(true, 0f, Normalization.L2.NONE, 0f);

    /**
     * Every non-identity normalization a case runs: the two presets, the four above and the clamp of
     * {@link #clampBetweenRows} for this {@code z} ({@code rows × d}, before normalization).
     */
    static List<Normalization> all(double[] z, int rows, int d) {
        List<Normalization> l = new ArrayList<>(List.of(Normalization.pytorch(), Normalization.caffe(), L2_MAX, L2_SUM_SQUARES, SSQRT_ONLY, SSQRT_EXACT));
        l.add(clampBetweenRows(z, rows, d));
        return l;
    }

    /**
     * {@code F.normalize} (no signed sqrt) with its eps between the rows' l2 norms, at the geometric mean
     * of the two neighbours with the largest ratio: rows below it take the clamp branch, rows above the
     * usual one, so one launch runs both and a row on the wrong branch is off by O(1). The ratio is
     * required to be at least 1.1 (float32 norms are within ~1e-6 of the reference's, so no row can land
     * on the other side). With one row, or rows too alike for that margin, eps is 4× the largest norm:
     * the clamp branch alone.
     */
    static Normalization clampBetweenRows(double[] z, int rows, int d) {
        double[] norms = new double[rows];
        for (int r = 0; r < rows; r++) {
            double ss = 0;
            for (int j = 0; j < d; j++) ss += z[r * d + j] * z[r * d + j];
            norms[r] = Math.sqrt(ss);
        }
        Arrays.sort(norms);
        double eps = 4 * norms[rows - 1], best = 0;
        for (int r = 0; r + 1 < rows; r++) {
            double ratio = norms[r + 1] / norms[r];
            if (norms[r] > 0 && ratio > best) { best = ratio; eps = Math.sqrt(norms[r] * norms[r + 1]); }
        }
        if (!(best >= 1.1)) eps = 4 * norms[rows - 1];
        return new Normalization(false, 0f, Normalization.L2.MAX_NORM, (float) eps);
    }

    /** A short name for the failure message. */
    static String describe(Normalization n) {
        if (n.isIdentity()) return "none";
        if (n.equals(Normalization.pytorch())) return "pytorch";
        if (n.equals(Normalization.caffe())) return "caffe";
        if (n.equals(L2_MAX)) return "l2max";
        if (n.equals(L2_SUM_SQUARES)) return "l2sumsq";
        if (n.equals(SSQRT_ONLY)) return "ssqrt-only";
        if (n.equals(SSQRT_EXACT)) return "ssqrt-exact";
        return "l2max-clamp(eps " + n.l2Eps() + ")";
    }

    /** The float64 normalization of every row of a given {@code z} ({@code rows × d}). */
    static double[] forwardAt(Normalization n, double[] z, int rows, int d) {
        double[] out = new double[z.length];
        for (int r = 0; r < rows; r++) NormalizationReference.forward(n, z, r * d, d, out);
        return out;
    }

    static double[] toDouble(float[] a) {
        double[] r = new double[a.length];
        for (int i = 0; i < a.length; i++) r[i] = a[i];
        return r;
    }

    static boolean allFinite(float[] a) {
        for (float v : a) if (!Float.isFinite(v)) return false;
        return true;
    }
}
