package io.bifuse.cpu;

import static io.bifuse.cpu.Floats.toFloat;

import io.bifuse.CompactBilinear;
import io.bifuse.LinearGradients;
import io.bifuse.Mlb;
import io.bifuse.reference.MlbReference;

/**
 * {@link Mlb} on the CPU. Today this is the float64 reference ({@code MlbReference}) rounded to float:
 * exact, not fast. Immutable and thread-safe; {@link #close()} frees nothing.
 */
public final class MlbCpu extends CpuBackend<Mlb> implements Mlb.Backend {
    public MlbCpu(Mlb op) {
        super(op, "an Mlb", Backends.REFERENCE);
    }

    /** {@code B × Dx}, {@code B × Dy} → {@code B × Out}. */
    @Override public float[] forward(float[] x, float[] y, int batch) {
        op.checkInputs(x, y, batch);
        return toFloat(MlbReference.forward(op, x, y, batch));
    }

    /**
     * The gradients of the inputs and of every parameter given {@code gradOut = ∂L/∂f}
     * ({@code B × Out}), recomputing the forward from {@code x, y}.
     */
    @Override public Mlb.Gradients backward(float[] x, float[] y, float[] gradOut, int batch) {
        op.checkInputs(x, y, batch);
        CompactBilinear.checkLength("gradOut", gradOut, batch, op.out());
        MlbReference.Grads g = MlbReference.backward(op, x, y, gradOut, batch);
        return new Mlb.Gradients(toFloat(g.dx()), toFloat(g.dy()),
                new LinearGradients(toFloat(g.u()), op.u().hasBias() ? toFloat(g.bu()) : null),
                new LinearGradients(toFloat(g.v()), op.v().hasBias() ? toFloat(g.bv()) : null),
                new LinearGradients(toFloat(g.p()), op.p().hasBias() ? toFloat(g.bp()) : null));
    }
}
