package io.bifuse.cpu;

import static io.bifuse.cpu.Floats.toFloat;

import io.bifuse.McanEncoderDecoder;
import io.bifuse.ObjectMask;
import io.bifuse.reference.McanEncoderDecoderReference;
import java.util.ArrayList;
import java.util.List;

/**
 * {@link McanEncoderDecoder} on the CPU: the float64 reference ({@code McanEncoderDecoderReference}) rounded to
 * float: exact, not fast. Immutable and thread-safe; {@link #close()} frees nothing.
 */
public final class McanEncoderDecoderCpu extends CpuBackend<McanEncoderDecoder> implements McanEncoderDecoder.Backend {
    public McanEncoderDecoderCpu(McanEncoderDecoder op) {
        super(op, "a McanEncoderDecoder", Backends.REFERENCE);
    }

    @Override public float[] forward(float[] q, ObjectMask qMask, float[] v, ObjectMask vMask, int batch, int qTokens, int vTokens) {
        op.checkInputs(q, qMask, v, vMask, batch, qTokens, vTokens);
        return toFloat(McanEncoderDecoderReference.forward(op, q, qMask, v, vMask, batch, qTokens, vTokens));
    }

    @Override public McanEncoderDecoder.Gradients backward(float[] q, ObjectMask qMask, float[] v, ObjectMask vMask, float[] gradOut, int batch,
                                                           int qTokens, int vTokens) {
        op.checkInputs(q, qMask, v, vMask, batch, qTokens, vTokens);
        io.bifuse.CompactBilinear.checkLength("gradOut", gradOut, batch, op.out());
        List<double[]> t = McanEncoderDecoderReference.backward(op, q, qMask, v, vMask, gradOut, batch, qTokens, vTokens);
        List<float[]> par = new ArrayList<>();
        for (double[] d : t.subList(2, t.size())) par.add(toFloat(d));
        return new McanEncoderDecoder.Gradients(toFloat(t.get(0)), toFloat(t.get(1)), par);
    }
}
