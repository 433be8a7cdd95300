package io.bifuse.cpu;

import io.bifuse.Activation;
import io.bifuse.Linear;
import io.bifuse.LinearGradients;

/**
 * block.bootstrap's output layer after a fusion's pooled vector {@code n} ({@code B × In}):
 * {@code out = σ_out(n·Wᵀ + b)} ({@code B × Out}; its {@code linear_out} and {@code activ_output}), and its
 * backward {@code gpre = ∂L/∂out ⊙ σ_out'(out)}, {@code ∂W = gpreᵀ·n}, {@code ∂b = Σ_rows gpre},
 * {@code ∂n = gpre·W}, in float32 through {@link CpuLinear} (GEMM order: bitwise the same for every thread
 * count). Shared by the backends whose op may end in one ({@code MfbCpu}, {@code CompactBilinearCpu}).
 */
final class OutputLayer {
    private final CpuLinear linear;
    private final boolean hasBias;
    private final Activation act;

    OutputLayer(Linear layer, Activation act) {
        this.linear = new CpuLinear(layer);
        this.hasBias = layer.hasBias();
        this.act = act;
    }

    int in() { return linear.in; }
    int out() { return linear.out; }

    /** {@code out = σ_out(n·Wᵀ + b)} for {@code batch} rows. */
    void forward(CpuRuntime rt, int batch, float[] n, float[] out) {
        int ow = linear.out;
        linear.forward(rt, batch, n, 0, linear.in, out, 0, ow, false);
        if (act == Activation.NONE) return;
        rt.parallelRanges(batch, MlbKernels.grain(ow), (r0, r1) -> {
            for (int r = r0; r < r1; r++) MlbKernels.biasActivate(act, out, r * ow, null, ow);
        });
    }

    /**
     * The layer's gradients from {@code gradOut} ({@code B × Out}) at the forward's input {@code n}, and
     * {@code gn = ∂L/∂n} ({@code B × In}, written). Uses slot {@code fSlot} of {@code l} for σ_out's
     * recomputed output (not with NONE) and {@code ones} (at least B ones) for the bias sum.
     */
    LinearGradients backward(CpuRuntime rt, Scratch.Lease l, int fSlot, float[] ones, int batch, float[] n, float[] gradOut, float[] gn) {
        int ow = linear.out, in = linear.in;
        float[] gpre = gradOut;
        if (act != Activation.NONE) { // gpre = g ⊙ σ_out'(f), f recomputed
            float[] f = l.floats(fSlot, CpuBackend.elements("batch: the output B × Out", batch, ow));
            forward(rt, batch, n, f);
            rt.parallelRanges(batch, MlbKernels.grain(ow), (r0, r1) -> {
                for (int i = r0 * ow; i < r1 * ow; i++) f[i] = gradOut[i] * MlbKernels.derivative(act, f[i]);
            });
            gpre = f;
        }
        float[] gw = new float[ow * in], gb = hasBias ? new float[ow] : null;
        linear.backwardParameters(rt, batch, gpre, 0, ow, n, 0, in, gw, gb, ones, false);
        linear.backwardInput(rt, batch, gpre, 0, ow, gn, 0, in, false);
        return new LinearGradients(gw, gb);
    }
}
