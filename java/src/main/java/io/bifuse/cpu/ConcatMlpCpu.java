package io.bifuse.cpu;

import io.bifuse.Activation;
import io.bifuse.CompactBilinear;
import io.bifuse.ConcatMlp;
import io.bifuse.LinearGradients;
import java.util.ArrayList;
import java.util.List;

/**
 * {@link ConcatMlp} on the CPU in float32: {@code [x, y]} packed once into a {@code B × (Dx + Dy)} buffer
 * (a copy, small beside the first GEMM), then one GEMM per layer ({@link CpuLinear}) and σ between them
 * in passes over blocks of rows; the backward recomputes the forward and walks the layers back. Bitwise
 * the same for every thread count; a call allocates only what it returns. Immutable and thread-safe.
 */
public final class ConcatMlpCpu extends CpuBackend<ConcatMlp> implements ConcatMlp.Backend {
    private final CpuLinear[] layers;
    private final Scratch scratch = new Scratch();

    public ConcatMlpCpu(ConcatMlp op) {
        this(op, CpuRuntime.defaults());
    }

    public ConcatMlpCpu(ConcatMlp op, CpuRuntime runtime) {
        super(op, "a ConcatMlp", Backends.FP32, runtime);
        layers = new CpuLinear[op.layers().size()];
        for (int i = 0; i < layers.length; i++) layers[i] = new CpuLinear(op.layers().get(i));
    }

    @Override public float[] forward(float[] x, float[] y, int batch) {
        op.checkInputs(x, y, batch);
        checkSizes(batch);
        float[] out = new float[elements("batch: the output B × Out", batch, op.out())];
        try (Scratch.Lease l = scratch.lease()) {
            run(l, x, y, batch, out);
        }
        return out;
    }

    private void checkSizes(int batch) {
        elements("batch: the concatenated inputs B × (Dx + Dy)", batch, op.dx() + op.dy());
        for (int i = 0; i < layers.length - 1; i++) elements("batch: layer " + i + "'s outputs B × d", batch, layers[i].out);
    }

    /** The forward: h_0 in slot 0, layer i's activated output in slot i + 1 (the last one into {@code out}). */
    private void run(Scratch.Lease l, float[] x, float[] y, int batch, float[] out) {
        int dx = op.dx(), dy = op.dy(), in = dx + dy;
        float[] h = l.floats(0, batch * in);
        for (int b = 0; b < batch; b++) {
            System.arraycopy(x, b * dx, h, b * in, dx);
            System.arraycopy(y, b * dy, h, b * in + dx, dy);
        }
        Activation act = op.activation();
        for (int i = 0; i < layers.length; i++) {
            CpuLinear c = layers[i];
            boolean last = i == layers.length - 1;
            float[] next = last ? out : l.floats(i + 1, batch * c.out);
            c.forward(runtime, batch, h, 0, c.in, next, 0, c.out, false);
            if (!last && act != Activation.NONE) {
                runtime.parallelRanges(batch, MlbKernels.grain(c.out), (r0, r1) -> {
                    for (int r = r0; r < r1; r++) MlbKernels.biasActivate(act, next, r * c.out, null, c.out);
                });
            }
            h = next;
        }
    }

    @Override public ConcatMlp.Gradients backward(float[] x, float[] y, float[] gradOut, int batch) {
        op.checkInputs(x, y, batch);
        CompactBilinear.checkLength("gradOut", gradOut, batch, op.out());
        checkSizes(batch);
        int n = layers.length, dx = op.dx(), dy = op.dy(), in = dx + dy;
        float[] gx = new float[elements("batch: dx B × Dx", batch, dx)], gy = new float[elements("batch: dy B × Dy", batch, dy)];
        List<LinearGradients> grads = new ArrayList<>();
        for (int i = 0; i < n; i++) grads.add(new LinearGradients(new float[layers[i].out * layers[i].in], layers[i].bias == null ? null : new float[layers[i].out]));
        Activation act = op.activation();
        try (Scratch.Lease l = scratch.lease()) {
            float[] last = l.floats(n + 1, batch * op.out()); // the recomputed output (its values are not needed, only the intermediates)
            run(l, x, y, batch, last);
            float[] ones = CpuLinear.ones(l, n + 2, batch);
            float[] g = gradOut;
            for (int i = n - 1; i >= 0; i--) {
                CpuLinear c = layers[i];
                float[] hin = l.floats(i, batch * c.in); // layer i's input: h_0, or layer i − 1's activated output
                c.backwardParameters(runtime, batch, g, 0, c.out, hin, 0, c.in, grads.get(i).weight(), grads.get(i).bias(), ones, false);
                float[] gin = l.floats(n + 3 + (i & 1), batch * c.in);
                c.backwardInput(runtime, batch, g, 0, c.out, gin, 0, c.in, false);
                if (i > 0 && act != Activation.NONE) {
                    runtime.parallelRanges(batch, MlbKernels.grain(c.in), (r0, r1) -> {
                        for (int r = r0; r < r1; r++) MlbKernels.timesDerivative(act, gin, hin, r * c.in, c.in);
                    });
                }
                g = gin;
            }
            for (int b = 0; b < batch; b++) {
                System.arraycopy(g, b * in, gx, b * dx, dx);
                System.arraycopy(g, b * in + dx, gy, b * dy, dy);
            }
        }
        return new ConcatMlp.Gradients(gx, gy, grads);
    }
}
