package io.bifuse.cpu;

import static io.bifuse.cpu.Floats.toFloat;

import io.bifuse.BanPooling;
import io.bifuse.CompactBilinear;
import io.bifuse.ObjectMask;
import io.bifuse.reference.BanPoolingReference;

/**
 * {@link BanPooling} on the CPU. Today this is the float64 reference ({@code BanPoolingReference})
 * rounded to float: exact, not fast. Immutable and thread-safe; {@link #close()} frees nothing.
 */
public final class BanPoolingCpu extends CpuBackend<BanPooling> implements BanPooling.Backend {
    public BanPoolingCpu(BanPooling op) {
        super(op, "a BanPooling", Backends.REFERENCE);
    }

    /**
     * {@code attention (B × N × M)}, {@code x (B × N × K')}, {@code y (B × M × K')} → {@code B × K'/k}.
     * {@code mask} null means every object is real.
     */
    @Override public float[] forward(float[] attention, float[] x, float[] y, ObjectMask mask, int batch, int objects, int tokens) {
        op.checkInputs(attention, x, y, mask, batch, objects, tokens);
        return toFloat(BanPoolingReference.forward(op, attention, x, y, mask, batch, objects, tokens));
    }

    /** The gradients of the three inputs given {@code gradOut = ∂L/∂f} ({@code B × K'/k}). */
    @Override public BanPooling.Gradients backward(float[] attention, float[] x, float[] y, ObjectMask mask, float[] gradOut, int batch,
                                                   int objects, int tokens) {
        op.checkInputs(attention, x, y, mask, batch, objects, tokens);
        CompactBilinear.checkLength("gradOut", gradOut, batch, op.outWidth());
        BanPoolingReference.Grads g = BanPoolingReference.backward(op, attention, x, y, mask, gradOut, batch, objects, tokens);
        return new BanPooling.Gradients(toFloat(g.da()), toFloat(g.dx()), toFloat(g.dy()));
    }
}
