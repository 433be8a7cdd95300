package io.bifuse.cpu;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.bifuse.GuidedAttentionUnit;
import io.bifuse.McanEncoderDecoder;
import io.bifuse.ObjectMask;
import io.bifuse.Precision;
import io.bifuse.SelfAttentionUnit;
import io.bifuse.reference.GuidedAttentionUnitReference;
import io.bifuse.reference.McanEncoderDecoderReference;
import io.bifuse.reference.MultiHeadAttentionReference;
import io.bifuse.reference.SelfAttentionUnitReference;
import io.bifuse.testing.Conditioning;
import io.bifuse.testing.Stats;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.function.BiFunction;

/**
 * What the tests of MCAN's float32 CPU units share: the 1e-5 bound with {@link Conditioning}'s FP32 rule
 * where a tensor exceeds it, the perturbed references that rule needs, masks, and bitwise comparisons.
 *
 * <p>Why Conditioning: the units' feed-forward (and AttFlat's MLP) has a ReLU over {@code B·L·F}
 * pre-activations; one whose value lies within float32's rounding of zero flips, and the gradients of the
 * layers behind it then differ from the float64 reference by that unit's whole contribution, which no
 * float32 implementation avoids. There, and only there, the bound becomes {@code max(1e-5, 2·base)}, base the
 * reference's own change when every operand moves by {@code 1 ± 2⁻²⁴·sqrt(n)} (n the longest GEMM sum).
 */
final class McanCpuChecks {
    /** The float32 bound: GEMM sums of at most a few thousand products (~sqrt(k)·2⁻²⁴ ≈ 4e-6 at k = 2048 in the worst case here). */
    static final double TOL = 1e-5;

    private McanCpuChecks() {}

    /** Per tensor: within TOL, or within Conditioning's bound; the worst relative L2 returned. */
    static double assertConditioned(int longestSum, long seed, List<String> names, List<float[]> got, List<double[]> ref,
            BiFunction<SplittableRandom, Double, List<double[]>> perturbed, String what) {
        Conditioning cond = new Conditioning(Conditioning.step(Precision.FP32, longestSum), seed, (r, step) -> {
            List<double[]> m = perturbed.apply(r, step);
            double[] e = new double[m.size()];
            for (int i = 0; i < e.length; i++) e[i] = Stats.relativeL2(m.get(i), ref.get(i));
            return e;
        });
        assertEquals(names.size(), got.size(), what + ": tensor count");
        assertEquals(ref.size(), got.size(), what + ": reference tensor count");
        double worst = 0;
        String worstName = "";
        for (int i = 0; i < names.size(); i++) {
            double e = Stats.relativeL2(got.get(i), ref.get(i)), bound = cond.bound(i, TOL, e);
            assertTrue(e <= bound, what + ": " + names.get(i) + " relative L2 " + e + " > " + bound + " (" + cond.draws() + " conditioning draws)");
            if (e > worst) {
                worst = e;
                worstName = names.get(i);
            }
        }
        System.out.println(what + ": worst relative L2 " + worst + " (" + worstName + "), " + cond.draws() + " conditioning draws");
        return worst;
    }

    static double[] moved(SplittableRandom r, double[] a, double step) {
        double[] d = new double[a.length];
        for (int i = 0; i < a.length; i++) d[i] = a[i] * (r.nextBoolean() ? 1 + step : 1 - step);
        return d;
    }

    static double[] moved(SplittableRandom r, float[] a, double step) {
        double[] d = new double[a.length];
        for (int i = 0; i < a.length; i++) d[i] = a[i] * (r.nextBoolean() ? 1 + step : 1 - step);
        return d;
    }

    static void move(SplittableRandom r, List<double[]> tensors, double step) {
        for (double[] t : tensors) System.arraycopy(moved(r, t, step), 0, t, 0, t.length);
    }

    /** The SA reference's output and gradients with every operand moved by {@code 1 ± step}. */
    static List<double[]> perturbed(SplittableRandom r, double step, SelfAttentionUnit op, float[] x, ObjectMask mask, float[] g, int batch, int tokens) {
        SelfAttentionUnitReference.Params pp = SelfAttentionUnitReference.params(op);
        move(r, pp.tensors(), step);
        double[] xs = moved(r, x, step), gs = moved(r, g, step);
        boolean[] real = MultiHeadAttentionReference.real(mask, batch, tokens);
        List<double[]> out = new ArrayList<>(List.of(SelfAttentionUnitReference.forward(pp, xs, real, batch, tokens)));
        out.addAll(SelfAttentionUnitReference.backward(pp, xs, real, gs, batch, tokens));
        return out;
    }

    /** The GA reference's, likewise. */
    static List<double[]> perturbed(SplittableRandom r, double step, GuidedAttentionUnit op, float[] x, ObjectMask xm, float[] y, ObjectMask ym, float[] g,
            int batch, int lx, int ly) {
        GuidedAttentionUnitReference.Params pp = GuidedAttentionUnitReference.params(op);
        move(r, pp.tensors(), step);
        double[] xs = moved(r, x, step), ys = moved(r, y, step), gs = moved(r, g, step);
        boolean[] xr = MultiHeadAttentionReference.real(xm, batch, lx), yr = MultiHeadAttentionReference.real(ym, batch, ly);
        List<double[]> out = new ArrayList<>(List.of(GuidedAttentionUnitReference.forward(pp, xs, xr, ys, yr, batch, lx, ly)));
        out.addAll(GuidedAttentionUnitReference.backward(pp, xs, xr, ys, yr, gs, batch, lx, ly));
        return out;
    }

    /** MCAN's reference's, likewise. */
    static List<double[]> perturbed(SplittableRandom r, double step, McanEncoderDecoder op, float[] q, ObjectMask qm, float[] v, ObjectMask vm, float[] g,
            int batch, int lq, int lv) {
        McanEncoderDecoderReference.Params pp = McanEncoderDecoderReference.params(op);
        move(r, pp.tensors(), step);
        double[] qs = moved(r, q, step), vs = moved(r, v, step), gs = moved(r, g, step);
        boolean[] qr = MultiHeadAttentionReference.real(qm, batch, lq), vr = MultiHeadAttentionReference.real(vm, batch, lv);
        List<double[]> out = new ArrayList<>(List.of(McanEncoderDecoderReference.forward(pp, qs, qr, vs, vr, batch, lq, lv)));
        out.addAll(McanEncoderDecoderReference.backward(pp, qs, qr, vs, vr, gs, batch, lq, lv));
        return out;
    }

    /** [out, tensors...] */
    static List<float[]> with(float[] out, List<float[]> tensors) {
        List<float[]> t = new ArrayList<>(List.of(out));
        t.addAll(tensors);
        return t;
    }

    static List<double[]> withRef(double[] out, List<double[]> tensors) {
        List<double[]> t = new ArrayList<>(List.of(out));
        t.addAll(tensors);
        return t;
    }

    static List<String> names(List<String> gradients) {
        List<String> n = new ArrayList<>(List.of("out"));
        n.addAll(gradients);
        return n;
    }

    static void assertSameBits(List<float[]> a, List<float[]> b, List<String> names, String what) {
        assertEquals(a.size(), b.size(), what);
        for (int i = 0; i < a.size(); i++) assertArrayEquals(a.get(i), b.get(i), what + ": " + names.get(i));
    }

    /**
     * Padding of {@code len} rows per sample: NONE (null mask), TAIL (sample b keeps len − b mod 3, at least
     * one), EMPTY (as TAIL but sample 0 has none), HOLES (random rows padded, the first kept).
     */
    enum Pad { NONE, TAIL, EMPTY, HOLES }

    static ObjectMask mask(Pad pad, int batch, int len, SplittableRandom r) {
        if (pad == Pad.NONE) return null;
        boolean[] real = new boolean[batch * len];
        for (int b = 0; b < batch; b++) {
            for (int j = 0; j < len; j++) {
                real[b * len + j] = switch (pad) {
                    case TAIL -> j < Math.max(1, len - b % 3);
                    case EMPTY -> b != 0 && j < Math.max(1, len - b % 3);
                    default -> j == 0 || r.nextInt(3) != 0;
                };
            }
        }
        return ObjectMask.of(real, batch, len);
    }
}
