package io.bifuse;

/**
 * The usual post-processing of a bilinear-pooled sample {@code z}: an optional signed square root
 * {@code u = sign(z)·sqrt(|z|)}, then an optional l2 normalization of {@code u} over the sample.
 *
 * <p>Forward is exact. The derivative of the signed square root is {@code 0.5/sqrt(|z|)}, infinite at
 * {@code z = 0}; {@code signedSqrtGradEps} replaces it by {@code 0.5/(sqrt(|z|) + eps)} as the Caffe
 * MCB layer does ({@code eps = 0.03}). With {@code eps = 0} the exact derivative is used and entries
 * with {@code z = 0} get gradient 0.
 *
 * @param signedSqrt        apply {@code sign(z)·sqrt(|z|)}
 * @param signedSqrtGradEps {@code eps >= 0} in the signed-sqrt backward (see above)
 * @param l2                which l2 normalization, if any
 * @param l2Eps             {@code eps >= 0} of the l2 normalization
 */
public record Normalization(boolean signedSqrt, float signedSqrtGradEps, L2 l2, float l2Eps) {

    /** l2 normalization variants found in the public implementations. */
    public enum L2 {
        /** No l2 normalization. */
        NONE,
        /** {@code u / max(‖u‖₂, eps)}: PyTorch {@code F.normalize} (default eps 1e-12). */
        MAX_NORM,
        /** {@code u · (Σu² + eps)^(-1/2)}: the Caffe MCB layer (eps 1e-7). */
        SUM_SQUARES;

        /** The code the kernels take. */
        public int code() { return ordinal(); }
    }

    /** No post-processing: the raw pooled vector. */
    public static final Normalization NONE = new Normalization(false, 0f, L2.NONE, 0f);

    public Normalization {
        if (l2 == null) throw new IllegalArgumentException("l2: expected one of " + java.util.Arrays.toString(L2.values()) + ", got null");
        if (!(signedSqrtGradEps >= 0f) || Float.isInfinite(signedSqrtGradEps)) {
            throw new IllegalArgumentException("signedSqrtGradEps: expected a finite value >= 0, got " + signedSqrtGradEps);
        }
        if (!(l2Eps >= 0f) || Float.isInfinite(l2Eps)) throw new IllegalArgumentException("l2Eps: expected a finite value >= 0, got " + l2Eps);
        if (l2 == L2.SUM_SQUARES && l2Eps == 0f) {
            // (Σu² + 0)^(-1/2) divides by zero for an all-zero sample; the variant exists for its eps.
            throw new IllegalArgumentException("l2Eps: SUM_SQUARES needs eps > 0, got 0");
        }
    }

    /** Signed sqrt (exact derivative) then {@code F.normalize(u, dim=1, eps=1e-12)}, as the PyTorch ports do. */
    public static Normalization pytorch() { return new Normalization(true, 0f, L2.MAX_NORM, 1e-12f); }

    /** Signed sqrt (gradient eps 0.03) then {@code u·(Σu² + 1e-7)^(-1/2)}, as the Caffe MCB layer does. */
    public static Normalization caffe() { return new Normalization(true, 0.03f, L2.SUM_SQUARES, 1e-7f); }

    /** Whether this does anything at all. */
    public boolean isIdentity() { return !signedSqrt && l2 == L2.NONE; }
}
