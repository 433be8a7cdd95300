package io.bifuse.reference;

import static io.bifuse.reference.Vectors.*;
import static org.junit.jupiter.api.Assertions.*;

import io.bifuse.LayerNorm;
import io.bifuse.McanEncoderDecoder;
import io.bifuse.ObjectMask;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/** The oracle itself: finite differences of every tensor of a two-layer model with both sequences padded. */
class McanEncoderDecoderReferenceTest {

    @Test void gradientsOfEveryTensorMatchFiniteDifferences() {
        // Richardson-extrapolated central differences in float64 (see richardson); 2 layers, H = 6 over 2 heads, F = 5, M = 3,
        // G = 2 glimpses, O = 3; the question of sample 1 without any real token, the image padded in both samples
        SplittableRandom r = new SplittableRandom(31);
        int batch = 2, lq = 3, lv = 4, h = 6;
        McanEncoderDecoder op = McanEncoderDecoder.random(2, h, 2, 5, 3, 2, 3, LayerNorm.mcan(), 78);
        McanEncoderDecoderReference.Params p = McanEncoderDecoderReference.params(op);
        boolean[] qr = MultiHeadAttentionReference.real(ObjectMask.counts(new int[] {2, 0}, lq), batch, lq);
        boolean[] vr = MultiHeadAttentionReference.real(ObjectMask.counts(new int[] {4, 3}, lv), batch, lv);
        double[] q = gaussian(r, batch * lq * h), v = gaussian(r, batch * lv * h), g = gaussian(r, batch * 3);
        List<double[]> wrt = new ArrayList<>(List.of(q, v));
        wrt.addAll(p.tensors());
        List<double[]> an = McanEncoderDecoderReference.backward(p, q, qr, v, vr, g, batch, lq, lv);
        assertEquals(op.gradientNames().size(), an.size());
        assertEquals(wrt.size(), an.size());
        java.util.function.DoubleSupplier loss = () -> dot(g, McanEncoderDecoderReference.forward(p, q, qr, v, vr, batch, lq, lv));
        for (int t = 0; t < wrt.size(); t++) {
            double[] fd = richardson(wrt.get(t), loss), a = an.get(t);
            if (norm(fd) < 1e-9) {
                assertTrue(norm(a) < 1e-9, "tensor " + op.gradientNames().get(t) + ": finite differences " + norm(fd) + " but analytic " + norm(a));
            } else {
                double e = relErr(a, fd);
                assertTrue(e < 1e-7, "tensor " + op.gradientNames().get(t) + ": relative error " + e);
            }
        }
    }

    /**
     * Richardson-extrapolated central differences, {@code (4 D(h/2) − D(h)) / 3} with {@code h = 1e-3}: the plain
     * central difference's h² term cancels, leaving ~h⁴ f⁽⁵⁾ truncation and ~1e-16/h rounding. Twelve post-norm units
     * deep, the plain step-1e-6 difference of {@link Vectors} leaves ~2e-6 relative truncation error here, above its
     * 1e-6 rule; this one resolves 1e-7 (seen: 1.4e-8 at most).
     */
    static double[] richardson(double[] v, java.util.function.DoubleSupplier loss) {
        double[] d1 = centralDifferences(v, 1e-3, loss), d2 = centralDifferences(v, 5e-4, loss), r = new double[v.length];
        for (int i = 0; i < v.length; i++) r[i] = (4 * d2[i] - d1[i]) / 3;
        return r;
    }
}
