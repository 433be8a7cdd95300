package io.bifuse;

/**
 * What every backend of a {@link Fusion} offers on host arrays: {@code forward} {@code B × Dx},
 * {@code B × Dy} → {@code B × Out}; {@code backward} the gradients of the inputs and of every parameter
 * given {@code gradOut = ∂L/∂out} ({@code B × Out}), recomputing the forward, written, not accumulated;
 * a forward into the caller's memory; and training steps.
 *
 * @param <O> the op's descriptor
 * @param <G> the op's gradients record
 */
public interface FusionBackend<O extends Fusion, G> extends OpBackend {
    float[] forward(float[] x, float[] y, int batch);

    G backward(float[] x, float[] y, float[] gradOut, int batch);

    /** The descriptor this backend runs. */
    O op();

    /**
     * The forward over views of the caller's memory ({@link FloatView}: part of a float[], a
     * FloatBuffer, a MemorySegment), {@code out} written, nothing returned. Every length is checked, by
     * name, before anything runs; inputs that are not one whole array are copied once, and the result is
     * copied into {@code out}.
     */
    default void forward(FloatView x, FloatView y, FloatView out, int batch) {
        FloatView.requireLength("out", out, (long) batch * op().out());
        float[] r = forward(FloatView.input("x", x, (long) batch * op().dx()), FloatView.input("y", y, (long) batch * op().dy()), batch);
        out.copyFrom(r, 0, r.length);
    }

    /**
     * A training step: the forward of {@code x, y}, and its backward for a {@code gradOut} to come
     * ({@link TrainingStep}: bitwise {@link #backward}'s gradients; x and y held by reference until then).
     * Backends that keep their forward's intermediates override it; this default recomputes.
     */
    default TrainingStep<G> trainingStep(float[] x, float[] y, int batch) {
        float[] out = forward(x, y, batch);
        return TrainingStep.recomputing(out, batch, op().out(), g -> backward(x, y, g, batch));
    }
}
