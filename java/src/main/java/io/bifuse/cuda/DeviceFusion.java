package io.bifuse.cuda;

import java.util.List;

/**
 * The device call forms of a block.bootstrap fusion's CUDA backend ({@link BlockCuda}, {@link MutanCuda},
 * {@link BlockTuckerCuda}, {@link TuckerCuda}, {@link LinearSumCuda}, {@link ConcatMlpCuda}): forward into
 * the caller's device memory, and every gradient into one buffer per name of {@link #gradientNames()}
 * (the module's state-dict names after {@code input.0}, {@code input.1}), of {@link #sizes} floats.
 */
public interface DeviceFusion {
    /** {@code input.0}, {@code input.1}, then each parameter's state-dict name: the order of backward's buffers. */
    List<String> gradientNames();

    /** Floats of each gradient buffer of a batch-{@code batch} call, in {@link #gradientNames()} order. */
    List<Long> sizes(int batch);

    /** {@code out (B × Out) = op(x (B × Dx), y (B × Dy))}, queued on {@code stream}; every argument checked by name first. */
    void forward(DeviceMemory x, DeviceMemory y, DeviceMemory out, int batch, CudaStream stream);

    /** Every gradient from {@code gradOut (B × Out)} written (not accumulated) into {@code grads}, queued on {@code stream}. */
    void backward(DeviceMemory x, DeviceMemory y, DeviceMemory gradOut, List<? extends DeviceMemory> grads, int batch, CudaStream stream);
}
