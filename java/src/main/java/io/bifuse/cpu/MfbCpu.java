package io.bifuse.cpu;

import static io.bifuse.cpu.Floats.toFloat;

import io.bifuse.CompactBilinear;
import io.bifuse.LinearGradients;
import io.bifuse.Mfb;
import io.bifuse.reference.MfbReference;
import java.util.ArrayList;
import java.util.List;

/**
 * {@link Mfb} (and MFH) on the CPU. Today this is the float64 reference ({@code MfbReference}) rounded
 * to float: exact, not fast. Immutable and thread-safe; {@link #close()} frees nothing.
 */
public final class MfbCpu extends CpuBackend<Mfb> implements Mfb.Backend {
    public MfbCpu(Mfb op) {
        super(op, "an Mfb", Backends.REFERENCE);
    }

    /** {@code B × Dx}, {@code B × Dy} → {@code B × blocks·o}. */
    @Override public float[] forward(float[] x, float[] y, int batch) {
        op.checkInputs(x, y, batch);
        return toFloat(MfbReference.forward(op, x, y, batch));
    }

    /** Every gradient given {@code gradOut = ∂L/∂out} ({@code B × blocks·o}); written, not accumulated. */
    @Override public Mfb.Gradients backward(float[] x, float[] y, float[] gradOut, int batch) {
        op.checkInputs(x, y, batch);
        CompactBilinear.checkLength("gradOut", gradOut, batch, op.outputWidth());
        MfbReference.Grads g = MfbReference.backward(op, x, y, gradOut, batch);
        List<LinearGradients> gu = new ArrayList<>(), gv = new ArrayList<>();
        for (int i = 0; i < op.blocks(); i++) {
            gu.add(new LinearGradients(toFloat(g.du()[i]), op.u(i).hasBias() ? toFloat(g.dbu()[i]) : null));
            gv.add(new LinearGradients(toFloat(g.dv()[i]), op.v(i).hasBias() ? toFloat(g.dbv()[i]) : null));
        }
        return new Mfb.Gradients(toFloat(g.dx()), toFloat(g.dy()), List.copyOf(gu), List.copyOf(gv));
    }
}
