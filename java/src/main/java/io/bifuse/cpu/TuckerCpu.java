package io.bifuse.cpu;

import io.bifuse.Tucker;

/** {@link Tucker} on the CPU in float32: {@link BlockTuckerCpu} on its one-chunk form. Immutable and thread-safe. */
public final class TuckerCpu extends CpuBackend<Tucker> implements Tucker.Backend {
    private final BlockTuckerCpu block;

    public TuckerCpu(Tucker op) {
        this(op, CpuRuntime.defaults());
    }

    public TuckerCpu(Tucker op, CpuRuntime runtime) {
        super(op, "a Tucker", Backends.FP32, runtime);
        block = new BlockTuckerCpu(op.asBlockTucker(), runtime);
    }

    /** {@code B × Dx}, {@code B × Dy} → {@code B × Out}. */
    @Override public float[] forward(float[] x, float[] y, int batch) { return block.forward(x, y, batch); }

    /** Every gradient given {@code gradOut} ({@code B × Out}), recomputing the forward. */
    @Override public Tucker.Gradients backward(float[] x, float[] y, float[] gradOut, int batch) {
        return Tucker.Gradients.of(block.backward(x, y, gradOut, batch));
    }
}
