package io.bifuse;

import java.util.function.Function;

/**
 * One training step of an operator: the forward's output, and what its backward needs kept until that
 * backward runs. {@link #backward} gives, bitwise, what the backend's {@code backward(inputs…, gradOut)}
 * gives for the same inputs, without running the forward a second time where the backend keeps its
 * intermediates (the CPU path of the low-rank ops: there the forward's GEMMs are a quarter to a third
 * of a step's work). A backend that keeps nothing recomputes ({@link #recomputing}), so every backend of
 * an op that offers steps has them.
 *
 * <p>Contract, as autograd's saved tensors:
 * <ul>
 *   <li>the inputs are held by reference: leave them unchanged until the backward has run (a changed
 *       input gives the gradients of a mix of the two);</li>
 *   <li>one backward per step: a second, or one after {@link #close()}, throws
 *       {@link IllegalStateException} (take a new step); a {@code gradOut} of the wrong length is refused
 *       by name and leaves the step usable;</li>
 *   <li>the backward returns the kept intermediates to the backend's pool, so {@link #close()} matters
 *       only for a step abandoned before its backward; try-with-resources covers both;</li>
 *   <li>not thread-safe: one thread uses a step (the backend itself may serve other threads' steps meanwhile).</li>
 * </ul>
 *
 * @param <G> the op's gradients record
 */
public abstract class TrainingStep<G> implements AutoCloseable {
    private final float[] out;
    private final int rows, cols;
    private State state = State.OPEN;

    private enum State { OPEN, BACKWARD_RUN, CLOSED }

    /** {@code out}: the forward's output, {@code rows × cols} floats, the shape {@code gradOut} must have. */
    protected TrainingStep(float[] out, int rows, int cols) {
        if (out == null || out.length != (long) rows * cols) {
            throw new IllegalArgumentException("out: expected " + rows + " × " + cols + " floats, got " + (out == null ? "null" : out.length));
        }
        this.out = out;
        this.rows = rows;
        this.cols = cols;
    }

    /** The forward's output (the array itself, not a copy: it is the caller's). */
    public final float[] out() { return out; }

    /**
     * The gradients of the inputs and of every parameter given {@code gradOut = ∂L/∂out} (the shape of
     * {@link #out()}); once per step.
     */
    public final G backward(float[] gradOut) {
        if (state != State.OPEN) {
            throw new IllegalStateException("backward: this training step " + (state == State.CLOSED ? "is closed" : "has already run its backward")
                    + ": take a new step for another backward");
        }
        CompactBilinear.checkLength("gradOut", gradOut, rows, cols);
        state = State.BACKWARD_RUN;
        try {
            return gradients(gradOut);
        } finally {
            release();
        }
    }

    /** Returns the kept intermediates to the backend if the backward has not; idempotent. */
    @Override public final void close() {
        if (state == State.OPEN) {
            state = State.CLOSED;
            release();
        } else if (state == State.BACKWARD_RUN) {
            state = State.CLOSED;
        }
    }

    /** The backward itself, {@code gradOut} already checked; called once. */
    protected abstract G gradients(float[] gradOut);

    /** Gives back what the step holds; called once, after the backward or on an early close. */
    protected void release() {}

    /**
     * A step that keeps nothing but the output: its backward is {@code backward.apply(gradOut)}, the
     * backend's recomputing backward over the inputs it captured.
     */
    public static <G> TrainingStep<G> recomputing(float[] out, int rows, int cols, Function<float[], G> backward) {
        java.util.Objects.requireNonNull(backward, "backward");
        return new TrainingStep<>(out, rows, cols) {
            @Override protected G gradients(float[] gradOut) { return backward.apply(gradOut); }
        };
    }
}
