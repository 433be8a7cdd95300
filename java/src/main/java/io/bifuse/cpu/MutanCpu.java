package io.bifuse.cpu;

import io.bifuse.CompactBilinear;
import io.bifuse.LinearGradients;
import io.bifuse.Mutan;
import io.bifuse.Normalization;

/**
 * {@link Mutan} on the CPU in float32.
 *
 * <p>How: the five layers are GEMMs ({@link Sgemm} through {@link CpuLinear}s prepared once); between
 * the merge layers and linear_out one fused pass per block of rows forms the core
 * {@code z_j = Σ_r p[r·M + j]·q[r·M + j]} (r in order) and the normalization (float elements, sums of
 * squares in double). Backward recomputes the forward, then {@code gẑ = g·W_out}, the normalization's
 * backward, one fused pass for both sides' {@code gp = gz ⊙ q}, {@code gq = gz ⊙ p} (written over p and q),
 * and GEMMs for every parameter and input gradient. A shared op runs both sides through its one pair of
 * layers and accumulates the second side's parameter gradients onto the first's (a GEMM with beta 1, in
 * a fixed order). Intermediates come from a {@link Scratch}: a call allocates only what it returns.
 *
 * <p>Threading: the GEMMs share out tiles of their outputs and the fused passes blocks of rows, both cut
 * by shape only, no sum split between threads: results are bitwise the same for every thread count
 * ({@link CpuRuntime}). Immutable and thread-safe; {@link #close()} frees nothing.
 */
public final class MutanCpu extends CpuBackend<Mutan> implements Mutan.Backend {
    private static final int XT = 0, YT = 1, P = 2, Q = 3, Z = 4, ZH = 5, ONES = 6, GYT = 7;

    private final CpuLinear linear0, linear1, merge0, merge1, linearOut;
    private final Scratch scratch = new Scratch();

    public MutanCpu(Mutan op) {
        this(op, CpuRuntime.defaults());
    }

    public MutanCpu(Mutan op, CpuRuntime runtime) {
        super(op, "a Mutan", Backends.FP32, runtime);
        linear0 = new CpuLinear(op.linear0());
        linear1 = op.isShared() ? linear0 : new CpuLinear(op.linear1());
        merge0 = new CpuLinear(op.mergeLinear0());
        merge1 = op.isShared() ? merge0 : new CpuLinear(op.mergeLinear1());
        linearOut = new CpuLinear(op.linearOut());
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

    /** Every intermediate's size, by name, before anything is allocated. */
    private void checkSizes(int batch) {
        elements("batch: the projections B × mm_dim", batch, op.mmDim());
        elements("batch: the merged projections B × rank·mm_dim", batch, op.rank() * op.mmDim());
    }

    /** The forward up to ẑ (slots XT, YT, P, Q, Z and ZH of {@code l}); returns ẑ. */
    private float[] core(Scratch.Lease l, float[] x, float[] y, int batch) {
        int m = op.mmDim(), rank = op.rank(), rm = Math.multiplyExact(rank, m);
        int side = elements("batch: the projections B × mm_dim", batch, m), merged = elements("batch: the merged projections B × rank·mm_dim", batch, rm);
        float[] xt = l.floats(XT, side), yt = l.floats(YT, side), p = l.floats(P, merged), q = l.floats(Q, merged), z = l.floats(Z, side);
        Normalization norm = op.normalization();
        float[] zh = norm.isIdentity() ? z : l.floats(ZH, side);
        linear0.forward(runtime, batch, x, 0, op.dx(), xt, 0, m, false);
        linear1.forward(runtime, batch, y, 0, op.dy(), yt, 0, m, false);
        merge0.forward(runtime, batch, xt, 0, m, p, 0, rm, false);
        merge1.forward(runtime, batch, yt, 0, m, q, 0, rm, false);
        runtime.parallelRanges(batch, MlbKernels.grain(rm), (r0, r1) -> {
            for (int b = r0; b < r1; b++) {
                int zo = b * m, po = b * rm;
                for (int j = 0; j < m; j++) z[zo + j] = p[po + j] * q[po + j];
                for (int r = 1; r < rank; r++) {
                    int at = po + r * m;
                    for (int j = 0; j < m; j++) z[zo + j] += p[at + j] * q[at + j];
                }
                if (!norm.isIdentity()) MlbKernels.normalize(norm, z, zo, m, zh, zo);
            }
        });
        return zh;
    }

    /** Every gradient given {@code gradOut = ∂L/∂f} ({@code B × Out}), recomputing the forward; written, not accumulated. */
    @Override public Mutan.Gradients backward(float[] x, float[] y, float[] gradOut, int batch) {
        op.checkInputs(x, y, batch);
        CompactBilinear.checkLength("gradOut", gradOut, batch, op.out());
        checkSizes(batch);
        int m = op.mmDim(), rank = op.rank(), rm = rank * m, out = op.out(), dx = op.dx(), dy = op.dy();
        boolean shared = op.isShared();
        float[] gx = new float[elements("batch: dx B × Dx", batch, dx)], gy = new float[elements("batch: dy B × Dy", batch, dy)];
        float[] gw0 = new float[m * dx], gb0 = op.linear0().hasBias() ? new float[m] : null;
        float[] gw1 = shared ? gw0 : new float[m * dy], gb1 = shared ? gb0 : op.linear1().hasBias() ? new float[m] : null;
        float[] gm0 = new float[rm * m], gc0 = op.mergeLinear0().hasBias() ? new float[rm] : null;
        float[] gm1 = shared ? gm0 : new float[rm * m], gc1 = shared ? gc0 : op.mergeLinear1().hasBias() ? new float[rm] : null;
        float[] gwo = new float[out * m], gbo = op.linearOut().hasBias() ? new float[out] : null;
        Normalization norm = op.normalization();
        try (Scratch.Lease l = scratch.lease()) {
            float[] zh = core(l, x, y, batch);
            float[] xt = l.floats(XT, batch * m), yt = l.floats(YT, batch * m), p = l.floats(P, batch * rm), q = l.floats(Q, batch * rm);
            float[] z = l.floats(Z, batch * m), ones = CpuLinear.ones(l, ONES, batch);
            linearOut.backwardParameters(runtime, batch, gradOut, 0, out, zh, 0, m, gwo, gbo, ones, false);
            // gẑ over ẑ (spent), then gz: over z when normalized (z is read first, element by element), else gz = gẑ = z's slot
            float[] gz = zh;
            linearOut.backwardInput(runtime, batch, gradOut, 0, out, gz, 0, m, false);
            runtime.parallelRanges(batch, MlbKernels.grain(rm), (r0, r1) -> {
                for (int b = r0; b < r1; b++) {
                    int zo = b * m, po = b * rm;
                    if (!norm.isIdentity()) MlbKernels.normalizeBackward(norm, z, zo, gz, zo, m, gz, zo);
                    for (int r = 0; r < rank; r++) {
                        int at = po + r * m;
                        for (int j = 0; j < m; j++) {
                            float a = p[at + j], c = q[at + j], g = gz[zo + j];
                            p[at + j] = g * c;
                            q[at + j] = g * a;
                        }
                    }
                }
            });
            float[] gp = p, gq = q, gxt = z, gyt = l.floats(GYT, batch * m); // z is spent once gz is formed
            merge0.backwardParameters(runtime, batch, gp, 0, rm, xt, 0, m, gm0, gc0, ones, false);
            merge1.backwardParameters(runtime, batch, gq, 0, rm, yt, 0, m, gm1, gc1, ones, shared);
            merge0.backwardInput(runtime, batch, gp, 0, rm, gxt, 0, m, false);
            merge1.backwardInput(runtime, batch, gq, 0, rm, gyt, 0, m, false);
            linear0.backwardParameters(runtime, batch, gxt, 0, m, x, 0, dx, gw0, gb0, ones, false);
            linear1.backwardParameters(runtime, batch, gyt, 0, m, y, 0, dy, gw1, gb1, ones, shared);
            linear0.backwardInput(runtime, batch, gxt, 0, m, gx, 0, dx, false);
            linear1.backwardInput(runtime, batch, gyt, 0, m, gy, 0, dy, false);
        }
        LinearGradients g0 = new LinearGradients(gw0, gb0), m0 = new LinearGradients(gm0, gc0);
        LinearGradients g1 = shared ? CpuLinear.copy(g0) : new LinearGradients(gw1, gb1), m1 = shared ? CpuLinear.copy(m0) : new LinearGradients(gm1, gc1);
        return new Mutan.Gradients(gx, gy, g0, g1, m0, m1, new LinearGradients(gwo, gbo));
    }
}
