package io.bifuse.cpu;

import io.bifuse.FullBilinear;
import io.bifuse.Gradients;
import io.bifuse.Normalization;

/**
 * {@link FullBilinear} on the CPU in float32: per sample one GEMM {@code Z_b = α·X_bᵀY_b} ({@code C1 × C2}
 * over the {@code L} positions, {@link Sgemm} with {@code transA}: the channels-last rows are read in
 * place, no transpose copy), written straight into the output, then one fused pass that applies the
 * normalization in place (signed sqrt and the l2 scale; the sample's sum of squares accumulated in double,
 * everything else in float).
 *
 * <p>Backward recomputes {@code Z_b} the same way (the same GEMM call, so the same bits as the forward),
 * turns it in place into {@code G_b = ∂L/∂Z_b} with the normalization's chain rule (again one fused pass,
 * its two sample-wide sums {@code Σu²} and {@code <u, g>} in double), and then runs two GEMMs per
 * sample: {@code ∂L/∂X_b = α·Y_b G_bᵀ} and {@code ∂L/∂Y_b = α·X_b G_b}; homologous, {@code G_b + G_bᵀ}
 * is formed once and {@code ∂L/∂X_b = α·X_b (G_b + G_bᵀ)} is one GEMM. Without normalization
 * {@code G_b} is {@code gradOut} itself and nothing is recomputed.
 *
 * <p>Threads: the samples run in parallel ({@link CpuRuntime#parallelFor}, one task per sample); each
 * sample's GEMMs run whole on the task's thread. A single sample ({@code B = 1}) runs on the calling
 * thread, where {@link Sgemm} shares the one GEMM out in its own shape-fixed tiles. Every sum has one
 * order fixed by the shapes, so results are bitwise the same for every thread count and every rerun.
 * Intermediates ({@code B·C1·C2} floats in the backward) come from a {@link Scratch}; a call allocates
 * only its results. Immutable apart from that pool, and thread-safe; {@link #close()} frees nothing.
 */
public final class FullBilinearCpu extends CpuBackend<FullBilinear> implements FullBilinear.Backend {
    private final int c1, c2;
    private final boolean homologous;
    private final Normalization normalization;
    private final Scratch scratch = new Scratch();

    public FullBilinearCpu(FullBilinear op) {
        this(op, CpuRuntime.defaults());
    }

    public FullBilinearCpu(FullBilinear op, CpuRuntime runtime) {
        super(op, "a FullBilinear", Backends.FP32, runtime);
        this.c1 = op.c1();
        this.c2 = op.c2();
        this.homologous = op.isHomologous();
        this.normalization = op.normalization();
    }

    /** {@code x (B × L × C1)}, {@code y (B × L × C2)} → {@code B × C1·C2}. Two-input ops only. */
    @Override public float[] forward(float[] x, float[] y, int batch, int positions) {
        op.checkInputs(x, y, batch, positions);
        return forwardFloat(x, y, batch, positions);
    }

    /** The homologous form: {@code x (B × L × C)} → {@code B × C·C}. */
    @Override public float[] forward(float[] x, int batch, int positions) {
        op.checkInput(x, batch, positions);
        return forwardFloat(x, x, batch, positions);
    }

    /** {@code ∂L/∂x}, {@code ∂L/∂y} given {@code gradOut = ∂L/∂out} ({@code B × C1·C2}). Two-input ops only. */
    @Override public Gradients backward(float[] x, float[] y, float[] gradOut, int batch, int positions) {
        op.checkInputs(x, y, batch, positions);
        FullBilinear.checkLength("gradOut", gradOut, batch, outputSize());
        float[] gx = new float[elements("x gradient", batch, positions, c1)], gy = new float[elements("y gradient", batch, positions, c2)];
        backwardFloat(x, y, gradOut, batch, positions, gx, gy);
        return new Gradients(gx, gy);
    }

    /** The homologous form: {@code ∂L/∂x} ({@code B × L × C}), the sum of both paths. */
    @Override public float[] backward(float[] x, float[] gradOut, int batch, int positions) {
        op.checkInput(x, batch, positions);
        FullBilinear.checkLength("gradOut", gradOut, batch, outputSize());
        float[] gx = new float[elements("x gradient", batch, positions, c1)];
        backwardFloat(x, x, gradOut, batch, positions, gx, null);
        return gx;
    }

    private int outputSize() { return c1 * c2; }

    private float[] forwardFloat(float[] x, float[] y, int batch, int positions) {
        int d = outputSize();
        float[] out = new float[elements("output", batch, d)];
        float alpha = (float) op.scale(positions);
        runtime.parallelFor(batch, b -> {
            pool(x, y, b, positions, alpha, out, b * d);
            if (!normalization.isIdentity()) normalize(out, b * d, d);
        });
        return out;
    }

    /** {@code z[zOff..] = α·X_bᵀY_b}, row-major {@code C1 × C2}. */
    private void pool(float[] x, float[] y, int b, int positions, float alpha, float[] z, int zOff) {
        Sgemm.gemm(runtime, true, false, c1, c2, positions, alpha, x, b * positions * c1, c1, y, b * positions * c2, c2, 0f, z, zOff, c2);
    }

    /** The normalization's forward in place on {@code z[off, off + d)}. */
    private void normalize(float[] z, int off, int d) {
        boolean ssqrt = normalization.signedSqrt();
        double sumsq = 0;
        for (int j = off; j < off + d; j++) {
            float u = ssqrt ? signedSqrt(z[j]) : z[j];
            z[j] = u;
            sumsq += (double) u * u;
        }
        float s = (float) l2Scale(sumsq);
        if (s != 1f) for (int j = off; j < off + d; j++) z[j] *= s;
    }

    private static float signedSqrt(float z) {
        return Math.copySign((float) Math.sqrt(Math.abs(z)), z);
    }

    private double l2Scale(double sumsq) {
        return switch (normalization.l2()) {
            case NONE -> 1;
            case MAX_NORM -> 1 / Math.max(Math.sqrt(sumsq), normalization.l2Eps());
            case SUM_SQUARES -> 1 / Math.sqrt(sumsq + normalization.l2Eps());
        };
    }

    /**
     * {@code z[off, off + d)} (the pooled sample) replaced by {@code ∂L/∂z} given {@code g} at {@code gOff}:
     * {@code o = u·s(u)}, so {@code ∂L/∂u_j = s·g_j + ds·u_j·<u, g>}, then through the signed sqrt.
     */
    private void normalizeBackward(float[] z, int off, int d, float[] g, int gOff) {
        boolean ssqrt = normalization.signedSqrt();
        double sumsq = 0, ug = 0;
        for (int j = 0; j < d; j++) {
            float u = ssqrt ? signedSqrt(z[off + j]) : z[off + j];
            sumsq += (double) u * u;
            ug += (double) u * g[gOff + j];
        }
        double s, ds;
        switch (normalization.l2()) {
            case NONE -> { s = 1; ds = 0; }
            case MAX_NORM -> {
                double norm = Math.sqrt(sumsq);
                if (norm > normalization.l2Eps()) { s = 1 / norm; ds = -1 / (norm * norm * norm); }
                else { s = 1 / (double) normalization.l2Eps(); ds = 0; }
            }
            case SUM_SQUARES -> { s = 1 / Math.sqrt(sumsq + normalization.l2Eps()); ds = -s * s * s; }
            default -> throw new AssertionError();
        }
        float sf = (float) s, cf = (float) (ds * ug), eps = normalization.signedSqrtGradEps();
        for (int j = 0; j < d; j++) {
            float zj = z[off + j], r = (float) Math.sqrt(Math.abs(zj));
            float u = ssqrt ? Math.copySign(r, zj) : zj;
            float gu = sf * g[gOff + j] + cf * u;
            if (ssqrt) {
                float den = r + eps;
                gu = den > 0 ? 0.5f * gu / den : 0f;
            }
            z[off + j] = gu;
        }
    }

    private void backwardFloat(float[] x, float[] y, float[] gradOut, int batch, int positions, float[] gx, float[] gy) {
        int d = outputSize();
        float alpha = (float) op.scale(positions);
        boolean identity = normalization.isIdentity();
        try (Scratch.Lease lease = scratch.lease()) {
            // G per sample: the normalization's chain rule needs z, the homologous form G + Gᵀ; without
            // either, gradOut is G as it stands.
            float[] gz = identity && !homologous ? gradOut : lease.floats(0, elements("pooled gradients", batch, d));
            float[] sym = homologous && !identity ? lease.floats(1, elements("symmetrized gradients", batch, d)) : null;
            runtime.parallelFor(batch, b -> {
                int go = b * d;
                float[] gs = gz;
                if (!identity) {
                    pool(x, y, b, positions, alpha, gz, go);
                    normalizeBackward(gz, go, d, gradOut, go);
                }
                if (homologous) {
                    // ∂L/∂X = α·X·(G + Gᵀ): X is the left factor of Z and the right one.
                    float[] src = identity ? gradOut : gz;
                    gs = identity ? gz : sym;
                    for (int a = 0; a < c1; a++) {
                        for (int c = 0; c < c1; c++) gs[go + a * c1 + c] = src[go + a * c1 + c] + src[go + c * c1 + a];
                    }
                    Sgemm.gemm(runtime, false, false, positions, c1, c1, alpha, x, b * positions * c1, c1, gs, go, c1, 0f, gx, b * positions * c1, c1);
                    return;
                }
                // ∂L/∂X_b = α·Y_b Gᵀ (L × C1), ∂L/∂Y_b = α·X_b G (L × C2)
                Sgemm.gemm(runtime, false, true, positions, c1, c2, alpha, y, b * positions * c2, c2, gs, go, c2, 0f, gx, b * positions * c1, c1);
                Sgemm.gemm(runtime, false, false, positions, c2, c1, alpha, x, b * positions * c1, c1, gs, go, c2, 0f, gy, b * positions * c2, c2);
            });
        }
    }
}
