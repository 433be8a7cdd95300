package io.bifuse.cpu;

import io.bifuse.Activation;
import io.bifuse.CompactBilinear;
import io.bifuse.LinearGradients;
import io.bifuse.LinearSum;
import io.bifuse.Normalization;

/**
 * {@link LinearSum} on the CPU in float32: three GEMMs ({@link CpuLinear}, the input layers without their
 * bias, which the fused pass adds), one fused pass per block of rows between them (bias, σ_in on both
 * sides, the sum, the normalization with double sums), σ_out after the last. The backward recomputes the
 * forward and runs the chain rule back through the same GEMMs. Bitwise the same for every thread count;
 * a call allocates only what it returns. Immutable and thread-safe.
 */
public final class LinearSumCpu extends CpuBackend<LinearSum> implements LinearSum.Backend {
    private static final int A = 0, C = 1, Z = 2, ZH = 3, ONES = 4, GO = 5;

    private final CpuLinear linear0, linear1, linearOut;
    private final float[] b0, b1;
    private final Scratch scratch = new Scratch();

    public LinearSumCpu(LinearSum op) {
        this(op, CpuRuntime.defaults());
    }

    public LinearSumCpu(LinearSum op, CpuRuntime runtime) {
        super(op, "a LinearSum", Backends.FP32, runtime);
        linear0 = MlbKernels.weightOnly(op.linear0());
        linear1 = MlbKernels.weightOnly(op.linear1());
        linearOut = new CpuLinear(op.linearOut());
        b0 = op.linear0().bias();
        b1 = op.linear1().bias();
    }

    @Override public float[] forward(float[] x, float[] y, int batch) {
        op.checkInputs(x, y, batch);
        elements("batch: the projections B × mm_dim", batch, op.mmDim());
        float[] out = new float[elements("batch: the output B × Out", batch, op.out())];
        try (Scratch.Lease l = scratch.lease()) {
            linearOut.forward(runtime, batch, hidden(l, x, y, batch), 0, op.mmDim(), out, 0, op.out(), false);
        }
        activate(op.outputActivation(), out, batch, op.out());
        return out;
    }

    private void activate(Activation act, float[] a, int rows, int cols) {
        if (act == Activation.NONE) return;
        runtime.parallelRanges(rows, MlbKernels.grain(cols), (r0, r1) -> {
            for (int r = r0; r < r1; r++) MlbKernels.biasActivate(act, a, r * cols, null, cols);
        });
    }

    /** σ_in of both sides (slots A, C), their sum z (Z) and ẑ (ZH when normalized); returns ẑ. */
    private float[] hidden(Scratch.Lease l, float[] x, float[] y, int batch) {
        int m = op.mmDim();
        float[] a = l.floats(A, batch * m), c = l.floats(C, batch * m), z = l.floats(Z, batch * m);
        Normalization norm = op.normalization();
        float[] zh = norm.isIdentity() ? z : l.floats(ZH, batch * m);
        Activation act = op.inputActivation();
        linear0.forward(runtime, batch, x, 0, op.dx(), a, 0, m, false);
        linear1.forward(runtime, batch, y, 0, op.dy(), c, 0, m, false);
        runtime.parallelRanges(batch, MlbKernels.grain(m), (r0, r1) -> {
            for (int b = r0; b < r1; b++) {
                int at = b * m;
                MlbKernels.biasActivate(act, a, at, b0, m);
                MlbKernels.biasActivate(act, c, at, b1, m);
                for (int j = 0; j < m; j++) z[at + j] = a[at + j] + c[at + j];
                if (!norm.isIdentity()) MlbKernels.normalize(norm, z, at, m, zh, at);
            }
        });
        return zh;
    }

    @Override public LinearSum.Gradients backward(float[] x, float[] y, float[] gradOut, int batch) {
        op.checkInputs(x, y, batch);
        CompactBilinear.checkLength("gradOut", gradOut, batch, op.out());
        int m = elements("batch: the projections B × mm_dim", batch, op.mmDim()) / batch, out = op.out(), dx = op.dx(), dy = op.dy();
        float[] gx = new float[elements("batch: dx B × Dx", batch, dx)], gy = new float[elements("batch: dy B × Dy", batch, dy)];
        float[] gw0 = new float[m * dx], gw1 = new float[m * dy], gwo = new float[out * m];
        float[] gb0 = b0 == null ? null : new float[m], gb1 = b1 == null ? null : new float[m], gbo = op.linearOut().hasBias() ? new float[out] : null;
        Normalization norm = op.normalization();
        Activation in = op.inputActivation(), outAct = op.outputActivation();
        try (Scratch.Lease l = scratch.lease()) {
            float[] zh = hidden(l, x, y, batch), ones = CpuLinear.ones(l, ONES, batch);
            float[] a = l.floats(A, batch * m), c = l.floats(C, batch * m), z = l.floats(Z, batch * m);
            float[] go = l.floats(GO, batch * out); // f, then σ_out'(f) ⊙ g: the output layer's gradient
            linearOut.forward(runtime, batch, zh, 0, m, go, 0, out, false);
            activate(outAct, go, batch, out);
            runtime.parallelRanges(batch, MlbKernels.grain(out), (r0, r1) -> {
                for (int i = r0 * out; i < r1 * out; i++) go[i] = gradOut[i] * MlbKernels.derivative(outAct, go[i]);
            });
            linearOut.backwardParameters(runtime, batch, go, 0, out, zh, 0, m, gwo, gbo, ones, false);
            float[] gz = zh;
            linearOut.backwardInput(runtime, batch, go, 0, out, gz, 0, m, false);
            runtime.parallelRanges(batch, MlbKernels.grain(m), (r0, r1) -> {
                for (int b = r0; b < r1; b++) {
                    int at = b * m;
                    if (!norm.isIdentity()) MlbKernels.normalizeBackward(norm, z, at, gz, at, m, gz, at);
                    for (int j = at; j < at + m; j++) {
                        a[j] = gz[j] * MlbKernels.derivative(in, a[j]);
                        c[j] = gz[j] * MlbKernels.derivative(in, c[j]);
                    }
                }
            });
            linear0.backwardParameters(runtime, batch, a, 0, m, x, 0, dx, gw0, null, ones, false);
            linear1.backwardParameters(runtime, batch, c, 0, m, y, 0, dy, gw1, null, ones, false);
            if (gb0 != null) System.arraycopy(MlbKernels.columnSums(runtime, batch, m, a, 0, m, ones), 0, gb0, 0, m);
            if (gb1 != null) System.arraycopy(MlbKernels.columnSums(runtime, batch, m, c, 0, m, ones), 0, gb1, 0, m);
            linear0.backwardInput(runtime, batch, a, 0, m, gx, 0, dx, false);
            linear1.backwardInput(runtime, batch, c, 0, m, gy, 0, dy, false);
        }
        return new LinearSum.Gradients(gx, gy, new LinearGradients(gw0, gb0), new LinearGradients(gw1, gb1), new LinearGradients(gwo, gbo));
    }
}
