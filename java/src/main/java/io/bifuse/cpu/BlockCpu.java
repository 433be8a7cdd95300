package io.bifuse.cpu;

import io.bifuse.Block;
import io.bifuse.CompactBilinear;
import io.bifuse.LinearGradients;
import io.bifuse.Normalization;
import java.util.ArrayList;
import java.util.List;

/**
 * {@link Block} on the CPU in float32.
 *
 * <p>How: linear0, linear1 and linear_out are GEMMs over the batch; each chunk's merge layers are GEMMs
 * that read their chunk's columns of x̃ (or ỹ) in place (offset and row stride) and write side by side
 * into one {@code B × R·M} buffer per side (chunk c at columns {@code [R·o_c, R·(o_c + s_c))}). One fused
 * pass per block of rows forms every chunk's core {@code z_c[j] = Σ_r p_c[r·s_c + j]·q_c[r·s_c + j]}
 * (r in order) and the normalization (per chunk, or over the concatenation; float elements, sums of
 * squares in double). The backward recomputes the forward and runs the same steps back, the merge layers'
 * input gradients written straight into their chunk's columns of {@code gx̃}; a shared op accumulates the
 * second side's parameter gradients onto the first's (GEMMs with beta 1, one fixed order).
 *
 * <p>Threading: the GEMMs share out tiles of their outputs and the fused passes blocks of rows, both cut
 * by shape only, no sum split between threads: bitwise the same for every thread count ({@link CpuRuntime}).
 * Intermediates come from a {@link Scratch}; a call allocates only what it returns. Immutable and
 * thread-safe; {@link #close()} frees nothing.
 */
public final class BlockCpu extends CpuBackend<Block> implements Block.Backend {
    private static final int XT = 0, YT = 1, P = 2, Q = 3, Z = 4, ZH = 5, ONES = 6, GYT = 7;

    private final CpuLinear linear0, linear1, linearOut;
    private final CpuLinear[] merge0, merge1;
    private final Scratch scratch = new Scratch();

    public BlockCpu(Block op) {
        this(op, CpuRuntime.defaults());
    }

    public BlockCpu(Block op, CpuRuntime runtime) {
        super(op, "a Block", Backends.FP32, runtime);
        linear0 = new CpuLinear(op.linear0());
        linear1 = op.isShared() ? linear0 : new CpuLinear(op.linear1());
        linearOut = new CpuLinear(op.linearOut());
        merge0 = new CpuLinear[op.chunks()];
        merge1 = new CpuLinear[op.chunks()];
        for (int c = 0; c < merge0.length; c++) {
            merge0[c] = new CpuLinear(op.merge0().get(c));
            merge1[c] = op.isShared() ? merge0[c] : new CpuLinear(op.merge1().get(c));
        }
    }

    /** {@code B × Dx}, {@code B × Dy} → {@code B × Out}. */
    @Override public float[] forward(float[] x, float[] y, int batch) {
        op.checkInputs(x, y, batch);
        checkSizes(batch);
        float[] out = new float[elements("batch: the output B × Out", batch, op.out())];
        try (Scratch.Lease l = scratch.lease()) {
            float[] zh = core(l, x, y, batch);
            linearOut.forward(runtime, batch, zh, 0, op.mmDim(), out, 0, op.out(), false);
        }
        return out;
    }

    private void checkSizes(int batch) {
        elements("batch: the projections B × mm_dim", batch, op.mmDim());
        elements("batch: the merged projections B × rank·mm_dim", batch, op.rank() * op.mmDim());
    }

    /** The forward up to ẑ, in slots XT, YT, P, Q, Z (and ZH when normalized) of {@code l}; returns ẑ. */
    private float[] core(Scratch.Lease l, float[] x, float[] y, int batch) {
        int m = op.mmDim(), rank = op.rank(), rm = rank * m, chunks = op.chunks();
        float[] xt = l.floats(XT, batch * m), yt = l.floats(YT, batch * m), p = l.floats(P, batch * rm), q = l.floats(Q, batch * rm), z = l.floats(Z, batch * m);
        Normalization norm = op.normalization();
        float[] zh = norm.isIdentity() ? z : l.floats(ZH, batch * m);
        linear0.forward(runtime, batch, x, 0, op.dx(), xt, 0, m, false);
        linear1.forward(runtime, batch, y, 0, op.dy(), yt, 0, m, false);
        for (int c = 0; c < chunks; c++) {
            int o = op.chunkOffset(c);
            merge0[c].forward(runtime, batch, xt, o, m, p, rank * o, rm, false);
            merge1[c].forward(runtime, batch, yt, o, m, q, rank * o, rm, false);
        }
        boolean after = op.position() == Block.NormPosition.AFTER_CAT;
        runtime.parallelRanges(batch, MlbKernels.grain(rm), (r0, r1) -> {
            for (int b = r0; b < r1; b++) {
                for (int c = 0; c < chunks; c++) {
                    int s = op.chunkSize(c), zo = b * m + op.chunkOffset(c), po = b * rm + rank * op.chunkOffset(c);
                    for (int j = 0; j < s; j++) z[zo + j] = p[po + j] * q[po + j];
                    for (int r = 1; r < rank; r++) {
                        int at = po + r * s;
                        for (int j = 0; j < s; j++) z[zo + j] += p[at + j] * q[at + j];
                    }
                    if (!norm.isIdentity() && !after) MlbKernels.normalize(norm, z, zo, s, zh, zo);
                }
                if (!norm.isIdentity() && after) MlbKernels.normalize(norm, z, b * m, m, zh, b * m);
            }
        });
        return zh;
    }

    /** Every gradient given {@code gradOut = ∂L/∂f} ({@code B × Out}), recomputing the forward; written, not accumulated. */
    @Override public Block.Gradients backward(float[] x, float[] y, float[] gradOut, int batch) {
        op.checkInputs(x, y, batch);
        CompactBilinear.checkLength("gradOut", gradOut, batch, op.out());
        checkSizes(batch);
        int m = op.mmDim(), rank = op.rank(), rm = rank * m, out = op.out(), dx = op.dx(), dy = op.dy(), chunks = op.chunks();
        boolean shared = op.isShared(), after = op.position() == Block.NormPosition.AFTER_CAT;
        float[] gx = new float[elements("batch: dx B × Dx", batch, dx)], gy = new float[elements("batch: dy B × Dy", batch, dy)];
        float[] gw0 = new float[m * dx], gb0 = op.linear0().hasBias() ? new float[m] : null;
        float[] gw1 = shared ? gw0 : new float[m * dy], gb1 = shared ? gb0 : op.linear1().hasBias() ? new float[m] : null;
        float[] gwo = new float[out * m], gbo = op.linearOut().hasBias() ? new float[out] : null;
        float[][] gm0 = new float[chunks][], gc0 = new float[chunks][], gm1 = new float[chunks][], gc1 = new float[chunks][];
        for (int c = 0; c < chunks; c++) {
            int s = op.chunkSize(c);
            gm0[c] = new float[rank * s * s];
            gc0[c] = op.merge0().get(c).hasBias() ? new float[rank * s] : null;
            gm1[c] = shared ? gm0[c] : new float[rank * s * s];
            gc1[c] = shared ? gc0[c] : op.merge1().get(c).hasBias() ? new float[rank * s] : null;
        }
        Normalization norm = op.normalization();
        try (Scratch.Lease l = scratch.lease()) {
            float[] zh = core(l, x, y, batch);
            float[] xt = l.floats(XT, batch * m), yt = l.floats(YT, batch * m), p = l.floats(P, batch * rm), q = l.floats(Q, batch * rm);
            float[] z = l.floats(Z, batch * m), ones = CpuLinear.ones(l, ONES, batch);
            linearOut.backwardParameters(runtime, batch, gradOut, 0, out, zh, 0, m, gwo, gbo, ones, false);
            float[] gz = zh; // gẑ over ẑ (spent), then gz in place
            linearOut.backwardInput(runtime, batch, gradOut, 0, out, gz, 0, m, false);
            runtime.parallelRanges(batch, MlbKernels.grain(rm), (r0, r1) -> {
                for (int b = r0; b < r1; b++) {
                    if (!norm.isIdentity() && after) MlbKernels.normalizeBackward(norm, z, b * m, gz, b * m, m, gz, b * m);
                    for (int c = 0; c < chunks; c++) {
                        int s = op.chunkSize(c), zo = b * m + op.chunkOffset(c), po = b * rm + rank * op.chunkOffset(c);
                        if (!norm.isIdentity() && !after) MlbKernels.normalizeBackward(norm, z, zo, gz, zo, s, gz, zo);
                        for (int r = 0; r < rank; r++) {
                            int at = po + r * s;
                            for (int j = 0; j < s; j++) {
                                float a = p[at + j], cq = q[at + j], g = gz[zo + j];
                                p[at + j] = g * cq;
                                q[at + j] = g * a;
                            }
                        }
                    }
                }
            });
            float[] gp = p, gq = q, gxt = z, gyt = l.floats(GYT, batch * m); // z is spent once gz is formed
            for (int c = 0; c < chunks; c++) {
                int o = op.chunkOffset(c);
                merge0[c].backwardParameters(runtime, batch, gp, rank * o, rm, xt, o, m, gm0[c], gc0[c], ones, false);
                merge1[c].backwardParameters(runtime, batch, gq, rank * o, rm, yt, o, m, gm1[c], gc1[c], ones, shared);
                merge0[c].backwardInput(runtime, batch, gp, rank * o, rm, gxt, o, m, false);
                merge1[c].backwardInput(runtime, batch, gq, rank * o, rm, gyt, o, m, false);
            }
            linear0.backwardParameters(runtime, batch, gxt, 0, m, x, 0, dx, gw0, gb0, ones, false);
            linear1.backwardParameters(runtime, batch, gyt, 0, m, y, 0, dy, gw1, gb1, ones, shared);
            linear0.backwardInput(runtime, batch, gxt, 0, m, gx, 0, dx, false);
            linear1.backwardInput(runtime, batch, gyt, 0, m, gy, 0, dy, false);
        }
        List<LinearGradients> m0 = new ArrayList<>(), m1 = new ArrayList<>();
        for (int c = 0; c < chunks; c++) {
            m0.add(new LinearGradients(gm0[c], gc0[c]));
            m1.add(shared ? CpuLinear.copy(m0.get(c)) : new LinearGradients(gm1[c], gc1[c]));
        }
        LinearGradients g0 = new LinearGradients(gw0, gb0);
        return new Block.Gradients(gx, gy, g0, shared ? CpuLinear.copy(g0) : new LinearGradients(gw1, gb1), m0, m1, new LinearGradients(gwo, gbo));
    }
}
