package io.bifuse.reference;

import static io.bifuse.reference.Vectors.*;
import static org.junit.jupiter.api.Assertions.*;

import io.bifuse.BanPooling;
import io.bifuse.ObjectMask;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/** The oracle itself: its gradients of every input against central finite differences of its own forward. */
class BanPoolingReferenceTest {

    /**
     * Every entry of {@code a}, {@code x} and {@code y}, central differences in float64 with step 1e-6
     * of the scalar loss {@code <g, f>}. The forward is linear in each input separately, so the central
     * difference has no truncation error at all; what remains is rounding, ~1e-16/1e-6 relative, so a
     * bound of 1e-7 on every entry (relative to the gradient's largest entry) separates it from any real
     * error. Masked cases include an empty sample and a single-object sample, and a mask with a hole.
     */
    @ParameterizedTest(name = "B={0} N={1} M={2} K'={3} k={4} mask={5}")
    @CsvSource({"2,3,4,6,1,none", "2,3,4,6,3,none", "3,4,3,6,1,counts", "3,4,3,9,3,counts", "2,5,2,6,3,holes", "1,1,1,3,3,none"})
    void gradientsMatchFiniteDifferences(int batch, int objects, int tokens, int width, int group, String maskKind) {
        SplittableRandom r = new SplittableRandom(batch * 7919L + objects * 131L + width * 17L + group);
        BanPooling op = BanPooling.of(width, group);
        double[] a = gaussian(r, batch * objects * tokens), x = gaussian(r, batch * objects * width), y = gaussian(r, batch * tokens * width);
        double[] g = gaussian(r, batch * op.outWidth());
        ObjectMask mask = switch (maskKind) {
            case "none" -> null;
            case "counts" -> ObjectMask.counts(countsWithEmptyAndSingle(batch, objects), objects);
            default -> holes(batch, objects);
        };
        BanPoolingReference.Grads grads = BanPoolingReference.backward(op, a, x, y, mask, g, batch, objects, tokens);
        double[][] inputs = {a, x, y}, analytic = {grads.da(), grads.dx(), grads.dy()};
        String[] names = {"da", "dx", "dy"};
        double h = 1e-6;
        for (int t = 0; t < 3; t++) {
            double[] in = inputs[t], an = analytic[t];
            double scale = 0;
            for (double v : an) scale = Math.max(scale, Math.abs(v));
            assertTrue(scale > 0, names[t] + " is not all zero");
            for (int e = 0; e < in.length; e++) {
                double keep = in[e];
                in[e] = keep + h;
                double up = loss(op, a, x, y, mask, g, batch, objects, tokens);
                in[e] = keep - h;
                double down = loss(op, a, x, y, mask, g, batch, objects, tokens);
                in[e] = keep;
                double fd = (up - down) / (2 * h);
                assertEquals(fd, an[e], 1e-7 * scale, names[t] + "[" + e + "] " + maskKind);
            }
        }
        if (mask != null) {
            // Padded objects: their rows of da and dx are exactly zero, not merely small.
            int kw = op.width();
            for (int b = 0; b < batch; b++) {
                for (int i = 0; i < objects; i++) {
                    if (mask.isReal(b, i)) continue;
                    for (int j = 0; j < tokens; j++) assertEquals(0.0, grads.da()[(b * objects + i) * tokens + j]);
                    for (int c = 0; c < kw; c++) assertEquals(0.0, grads.dx()[(b * objects + i) * kw + c]);
                }
            }
        }
    }

    @Test void groupOfTheWholeWidthIsTheTotal() {
        SplittableRandom r = new SplittableRandom(5);
        int batch = 2, objects = 3, tokens = 2, width = 6;
        double[] a = gaussian(r, batch * objects * tokens), x = gaussian(r, batch * objects * width), y = gaussian(r, batch * tokens * width);
        double[] full = BanPoolingReference.forward(BanPooling.of(width, 1), a, x, y, null, batch, objects, tokens);
        double[] total = BanPoolingReference.forward(BanPooling.of(width, width), a, x, y, null, batch, objects, tokens);
        for (int b = 0; b < batch; b++) {
            double s = 0;
            for (int c = 0; c < width; c++) s += full[b * width + c];
            assertEquals(s, total[b], 1e-12);
        }
    }

    @Test void uniformAttentionIsTheMeanOuterProductDiagonal() {
        // A = 1/(N·M) everywhere: F[c] = mean_i X[i,c] · mean_j Y[j,c], computed independently.
        SplittableRandom r = new SplittableRandom(6);
        int objects = 4, tokens = 3, width = 5;
        double[] a = new double[objects * tokens];
        java.util.Arrays.fill(a, 1.0 / (objects * tokens));
        double[] x = gaussian(r, objects * width), y = gaussian(r, tokens * width);
        double[] f = BanPoolingReference.forward(BanPooling.of(width, 1), a, x, y, null, 1, objects, tokens);
        for (int c = 0; c < width; c++) {
            double mx = 0, my = 0;
            for (int i = 0; i < objects; i++) mx += x[i * width + c] / objects;
            for (int j = 0; j < tokens; j++) my += y[j * width + c] / tokens;
            assertEquals(mx * my, f[c], 1e-14);
        }
    }

    private static double loss(BanPooling op, double[] a, double[] x, double[] y, ObjectMask mask, double[] g, int batch, int objects, int tokens) {
        double[] f = BanPoolingReference.forward(op, a, x, y, mask, batch, objects, tokens);
        double s = 0;
        for (int i = 0; i < f.length; i++) s += f[i] * g[i];
        return s;
    }

    /** Sample 0 empty, sample 1 a single object, the rest full. */
    private static int[] countsWithEmptyAndSingle(int batch, int objects) {
        int[] c = new int[batch];
        java.util.Arrays.fill(c, objects);
        c[0] = 0;
        if (batch > 1) c[1] = 1;
        return c;
    }

    /** Every other object of sample 0 padded, the last object of the other samples. */
    private static ObjectMask holes(int batch, int objects) {
        boolean[] real = new boolean[batch * objects];
        for (int b = 0; b < batch; b++) for (int i = 0; i < objects; i++) real[b * objects + i] = b == 0 ? i % 2 == 0 : i < objects - 1;
        return ObjectMask.of(real, batch, objects);
    }
}
