package io.bifuse.cpu;

import io.bifuse.BilinearLayer;
import io.bifuse.Block;
import io.bifuse.BlockTucker;
import io.bifuse.CompactBilinear;
import io.bifuse.Linear;
import io.bifuse.LinearGradients;
import io.bifuse.Normalization;
import java.util.ArrayList;
import java.util.List;

/**
 * {@link BlockTucker} (and {@link io.bifuse.Tucker}, its one-chunk form: {@code TuckerCpu}) on the CPU in float32.
 *
 * <p>How: a bilinear layer {@code s × s → s} is a linear layer over the outer product: with
 * {@code U = x̃_c ⊗ ỹ_c} ({@code s²} per sample), {@code z_c = U·A_cᵀ + a_c} where {@code A_c} is the
 * weight seen as {@code s × s²}. So each chunk is one GEMM ({@link CpuLinear}) over U, built per block of
 * at most {@value #MAX_OUTER} floats of rows (the block cut depends on the shapes only), and the backward
 * is that layer's GEMMs ({@code ∂A_c = gzᵀ·U} accumulated over the blocks in order, {@code gU = gz·A_c})
 * followed by the contractions {@code gx̃_i = Σ_j gU_ij ỹ_j}, {@code gỹ_j = Σ_i gU_ij x̃_i}. The linear
 * layers and the normalization are as {@link BlockCpu}'s. Results are bitwise the same for every thread
 * count; a call allocates only what it returns. Immutable and thread-safe.
 */
public final class BlockTuckerCpu extends CpuBackend<BlockTucker> implements BlockTucker.Backend {
    /** At most this many floats of outer products per GEMM block. */
    static final int MAX_OUTER = 1 << 22;
    private static final int XT = 0, YT = 1, Z = 2, ZH = 3, U = 4, GU = 5, ONES = 6, GYT = 7, GXT = 8;

    private final CpuLinear linear0, linear1, linearOut;
    private final CpuLinear[] cores;

    public BlockTuckerCpu(BlockTucker op) {
        this(op, CpuRuntime.defaults());
    }

    public BlockTuckerCpu(BlockTucker op, CpuRuntime runtime) {
        super(op, "a BlockTucker", Backends.FP32, runtime);
        linear0 = new CpuLinear(op.linear0());
        linear1 = op.isShared() ? linear0 : new CpuLinear(op.linear1());
        linearOut = new CpuLinear(op.linearOut());
        cores = new CpuLinear[op.chunks()];
        for (int c = 0; c < cores.length; c++) {
            BilinearLayer b = op.bilinears().get(c);
            cores[c] = new CpuLinear(new Linear(b.out(), b.in1() * b.in2(), b.weight(), b.bias()));
        }
    }

    private final Scratch scratch = new Scratch();

    /** {@code B × Dx}, {@code B × Dy} → {@code B × Out}. */
    @Override public float[] forward(float[] x, float[] y, int batch) {
        op.checkInputs(x, y, batch);
        elements("batch: the projections B × mm_dim", batch, op.mmDim());
        float[] out = new float[elements("batch: the output B × Out", batch, op.out())];
        try (Scratch.Lease l = scratch.lease()) {
            linearOut.forward(runtime, batch, core(l, x, y, batch), 0, op.mmDim(), out, 0, op.out(), false);
        }
        return out;
    }

    /** Rows per outer-product block of chunk c. */
    private int rowsPerBlock(int c, int batch) {
        int s2 = op.chunkSize(c) * op.chunkSize(c);
        return Math.max(1, Math.min(batch, MAX_OUTER / s2));
    }

    /** Fills {@code u} with the outer products of rows {@code [r0, r0 + n)} of chunk c: {@code u[r·s² + i·s + j] = x̃_i·ỹ_j}. */
    private void outer(float[] xt, float[] yt, float[] u, int c, int r0, int n) {
        int m = op.mmDim(), s = op.chunkSize(c), o = op.chunkOffset(c), s2 = s * s;
        runtime.parallelRanges(n, Math.max(1, 4096 / s2), (a, b) -> {
            for (int r = a; r < b; r++) {
                int xo = (r0 + r) * m + o, uo = r * s2;
                for (int i = 0; i < s; i++) {
                    float xi = xt[xo + i];
                    int at = uo + i * s;
                    for (int j = 0; j < s; j++) u[at + j] = xi * yt[xo + j];
                }
            }
        });
    }

    /** The forward up to ẑ (slots XT, YT, Z, ZH, U); returns ẑ. */
    private float[] core(Scratch.Lease l, float[] x, float[] y, int batch) {
        int m = op.mmDim();
        float[] xt = l.floats(XT, batch * m), yt = l.floats(YT, batch * m), z = l.floats(Z, batch * m);
        Normalization norm = op.normalization();
        float[] zh = norm.isIdentity() ? z : l.floats(ZH, batch * m);
        linear0.forward(runtime, batch, x, 0, op.dx(), xt, 0, m, false);
        linear1.forward(runtime, batch, y, 0, op.dy(), yt, 0, m, false);
        for (int c = 0; c < cores.length; c++) {
            int s2 = op.chunkSize(c) * op.chunkSize(c), per = rowsPerBlock(c, batch);
            float[] u = l.floats(U, per * s2);
            for (int r0 = 0; r0 < batch; r0 += per) {
                int n = Math.min(per, batch - r0);
                outer(xt, yt, u, c, r0, n);
                cores[c].forward(runtime, n, u, 0, s2, z, r0 * m + op.chunkOffset(c), m, false);
            }
        }
        if (!norm.isIdentity()) {
            boolean after = op.position() == Block.NormPosition.AFTER_CAT;
            runtime.parallelRanges(batch, MlbKernels.grain(m), (r0, r1) -> {
                for (int b = r0; b < r1; b++) {
                    if (after) MlbKernels.normalize(norm, z, b * m, m, zh, b * m);
                    else for (int c = 0; c < cores.length; c++) MlbKernels.normalize(norm, z, b * m + op.chunkOffset(c), op.chunkSize(c), zh, b * m + op.chunkOffset(c));
                }
            });
        }
        return zh;
    }

    /** Every gradient given {@code gradOut = ∂L/∂f} ({@code B × Out}), recomputing the forward; written, not accumulated. */
    @Override public BlockTucker.Gradients backward(float[] x, float[] y, float[] gradOut, int batch) {
        op.checkInputs(x, y, batch);
        CompactBilinear.checkLength("gradOut", gradOut, batch, op.out());
        int m = elements("batch: the projections B × mm_dim", batch, op.mmDim()) / batch, out = op.out(), dx = op.dx(), dy = op.dy();
        boolean shared = op.isShared(), after = op.position() == Block.NormPosition.AFTER_CAT;
        float[] gx = new float[elements("batch: dx B × Dx", batch, dx)], gy = new float[elements("batch: dy B × Dy", batch, dy)];
        float[] gw0 = new float[m * dx], gb0 = op.linear0().hasBias() ? new float[m] : null;
        float[] gw1 = shared ? gw0 : new float[m * dy], gb1 = shared ? gb0 : op.linear1().hasBias() ? new float[m] : null;
        float[] gwo = new float[out * m], gbo = op.linearOut().hasBias() ? new float[out] : null;
        List<BlockTucker.BilinearGradients> gcores = new ArrayList<>();
        Normalization norm = op.normalization();
        try (Scratch.Lease l = scratch.lease()) {
            float[] zh = core(l, x, y, batch);
            float[] xt = l.floats(XT, batch * m), yt = l.floats(YT, batch * m), z = l.floats(Z, batch * m), ones = CpuLinear.ones(l, ONES, batch);
            linearOut.backwardParameters(runtime, batch, gradOut, 0, out, zh, 0, m, gwo, gbo, ones, false);
            float[] gz = zh;
            linearOut.backwardInput(runtime, batch, gradOut, 0, out, gz, 0, m, false);
            if (!norm.isIdentity()) {
                runtime.parallelRanges(batch, MlbKernels.grain(m), (r0, r1) -> {
                    for (int b = r0; b < r1; b++) {
                        if (after) MlbKernels.normalizeBackward(norm, z, b * m, gz, b * m, m, gz, b * m);
                        else for (int c = 0; c < cores.length; c++) {
                            int zo = b * m + op.chunkOffset(c);
                            MlbKernels.normalizeBackward(norm, z, zo, gz, zo, op.chunkSize(c), gz, zo);
                        }
                    }
                });
            }
            float[] gxt = l.floats(GXT, batch * m), gyt = l.floats(GYT, batch * m);
            for (int c = 0; c < cores.length; c++) {
                int s = op.chunkSize(c), s2 = s * s, o = op.chunkOffset(c), per = rowsPerBlock(c, batch);
                float[] u = l.floats(U, per * s2), gu = l.floats(GU, per * s2);
                float[] ga = new float[s * s2], gab = op.bilinears().get(c).hasBias() ? new float[s] : null;
                for (int r0 = 0; r0 < batch; r0 += per) {
                    int n = Math.min(per, batch - r0), row0 = r0;
                    outer(xt, yt, u, c, r0, n);
                    cores[c].backwardParameters(runtime, n, gz, r0 * m + o, m, u, 0, s2, ga, gab, ones, r0 > 0);
                    cores[c].backwardInput(runtime, n, gz, r0 * m + o, m, gu, 0, s2, false);
                    runtime.parallelRanges(n, Math.max(1, 4096 / s2), (a, b) -> {
                        for (int r = a; r < b; r++) {
                            int xo = (row0 + r) * m + o, uo = r * s2;
                            for (int i = 0; i < s; i++) {
                                float acc = 0f;
                                for (int j = 0; j < s; j++) acc += gu[uo + i * s + j] * yt[xo + j];
                                gxt[xo + i] = acc;
                            }
                            for (int j = 0; j < s; j++) {
                                float acc = 0f;
                                for (int i = 0; i < s; i++) acc += gu[uo + i * s + j] * xt[xo + i];
                                gyt[xo + j] = acc;
                            }
                        }
                    });
                }
                gcores.add(new BlockTucker.BilinearGradients(ga, gab));
            }
            linear0.backwardParameters(runtime, batch, gxt, 0, m, x, 0, dx, gw0, gb0, ones, false);
            linear1.backwardParameters(runtime, batch, gyt, 0, m, y, 0, dy, gw1, gb1, ones, shared);
            linear0.backwardInput(runtime, batch, gxt, 0, m, gx, 0, dx, false);
            linear1.backwardInput(runtime, batch, gyt, 0, m, gy, 0, dy, false);
        }
        LinearGradients g0 = new LinearGradients(gw0, gb0);
        LinearGradients g1 = shared ? CpuLinear.copy(g0) : new LinearGradients(gw1, gb1);
        return new BlockTucker.Gradients(gx, gy, g0, g1, gcores, new LinearGradients(gwo, gbo));
    }
}
