package io.bifuse.testing;

import io.bifuse.Mfb;
import io.bifuse.Normalization;
import io.bifuse.Precision;
import io.bifuse.reference.MfbReference;
import java.util.List;

/**
 * The tolerance rule of {@link Mfb} (MFB, and MFH with several blocks), shared by {@code check} and the
 * GPU tests.
 *
 * <p>Tolerances. Forward: 1e-5 in FP32 (and on the CPU), {@link Precision#bound()} in TF32/BF16; through
 * the signed sqrt on the GPU at least 10× the same conditioning baseline on the forward ({@link #forwardTolerance}).
 * Backward (largest over dx, dy and every block's weight and bias gradients of
 * {@link MfbReference#maxScaledError}: relative L2, against the l2 backward's terms where they cancel): the signed
 * sqrt's derivative {@code 0.5/sqrt|z|} amplifies the float error of the pooled z where {@code z ≈ 0}
 * (a sum of k products has a continuous density at 0, so such entries always exist), so, as
 * {@link CompactBilinearTolerance} explains for MCB, the bound is {@code max(base, 10 × conditioning baseline)}: the float64
 * backward evaluated with z perturbed by {@code noise·rms(z)} per entry (the largest of three draws), noise
 * {@link #noise} ({@code 2⁻²⁴·sqrt(max(Dx, Dy))}, float32 GEMM accumulation, base 1e-5) in FP32 and the
 * mode's unit roundoff {@code bound/4} (base {@code bound}) in TF32/BF16. Where a GPU row still exceeds
 * that, its bound becomes {@link Conditioning}'s {@code max(bound, 2·base)} (the tests' rule), which also
 * covers ReLU pre-activations flipped by the operand rounding.
 * The float32 CPU backend is held to the FP32 rule (check's rows and {@code MfbCpuTest}).
 */
public final class MfbTolerance {
    static final double BASELINE_FACTOR = 10;

    private MfbTolerance() {}

    /** The backward bound for {@code p} (see the class comment). */
    public static double backwardTolerance(Mfb op, Precision p, float[] x, float[] y, float[] g, int batch, MfbReference.Grads ref, MfbReference.Grads scale,
                                    long seed) {
        double base = p == Precision.FP32 ? CompactBilinearTolerance.TOLERANCE : p.bound();
        double noise = noise(op, p), e = 0;
        for (int d = 0; d < 3; d++) e = Math.max(e, MfbReference.conditioningBaseline(op, x, y, g, batch, ref, scale, noise, seed + d));
        return Math.max(base, BASELINE_FACTOR * e);
    }

    /**
     * The relative noise of z in the baselines: in FP32 {@code 2⁻²⁴·sqrt(max(Dx, Dy))}, the typical error
     * of a float32 GEMM output accumulated in sequence over that many products (the simulated device,
     * whose cuBLAS sums in k order, measures z's error at 8e-7 at the spec's widths; the former fixed 1e-7
     * sat below it, and a row failed at 1.4× its bound); in TF32/BF16 the mode's unit roundoff.
     */
    public static double noise(Mfb op, Precision p) {
        return p == Precision.FP32 ? 0x1p-24 * Math.sqrt(Math.max(op.dx(), op.dy())) : p.bound() / 4;
    }

    /**
     * The forward bound for {@code p}: the base ({@code 1e-5}, or {@code bound} in TF32/BF16), and through
     * the signed sqrt {@code max(base, 10 × baseline)}, the baseline the relative change of the float64
     * forward when z carries the backward's noise: the sqrt amplifies an error δ of an entry near 0 to
     * ~sqrt(δ) (TF32 measured 2.04e-3 against the bound 1.95e-3 at the quick MFH size on the simulated device).
     */
    public static double forwardTolerance(Mfb op, Precision p, float[] x, float[] y, int batch, double[] zRef, long seed) {
        double base = p == Precision.FP32 ? CompactBilinearTolerance.TOLERANCE : p.bound();
        Normalization n = op.normalization();
        if (!n.signedSqrt()) return base;
        MfbReference.Params w = MfbReference.Params.of(op);
        double[] z = MfbReference.noisyPooled(op, w, MfbReference.toDouble(x), MfbReference.toDouble(y), batch, noise(op, p), seed);
        return Math.max(base, BASELINE_FACTOR * Stats.relativeL2(MfbReference.forwardFromPooled(op, w, z, batch), zRef));
    }

    /**
     * The tests' {@link Conditioning} rule for MFB (tensors: the output, then the gradients as
     * {@link MfbReference#maxScaledError}): the float64 reference with inputs, gradOut and every weight
     * moved by {@code 1 ± step}. What the z-noise baselines above do not model: a ReLU pre-activation
     * that the precision's operand rounding flips across 0 (BF16 at the quick MFH size: about one of its
     * 800, measured 12.2 against the z-noise bound 3 on the simulated device).
     */
    public static Conditioning conditioning(Mfb op, Precision p, float[] x, float[] y, float[] g, int batch, double[] zRef, MfbReference.Grads ref,
                                     MfbReference.Grads scale, long seed) {
        return new Conditioning(Conditioning.step(p, Math.max(Math.max(op.dx(), op.dy()), batch)), seed, (r, e) -> {
            List<io.bifuse.Linear> us = new java.util.ArrayList<>(), vs = new java.util.ArrayList<>();
            for (int i = 0; i < op.blocks(); i++) {
                us.add(Conditioning.perturb(op.u(i), e, r));
                vs.add(Conditioning.perturb(op.v(i), e, r));
            }
            Mfb moved = Mfb.mfh(us, vs, op.k(), op.activation(), op.normalization())
                    .withOutput(op.hasOutput() ? Conditioning.perturb(op.linearOut(), e, r) : null, op.outputActivation());
            float[] px = Conditioning.perturb(x, e, r), py = Conditioning.perturb(y, e, r);
            MfbReference.Grads m = MfbReference.backward(moved, px, py, Conditioning.perturb(g, e, r), batch);
            return new double[] {Stats.relativeL2(MfbReference.forward(moved, px, py, batch), zRef),
                    MfbReference.maxScaledError(op, asFloats(op, m), ref, scale)};
        });
    }

    /** The reference's gradients as an op's float result (biases only where the layer has one). */
    public static Mfb.Gradients asFloats(Mfb op, MfbReference.Grads m) {
        List<io.bifuse.LinearGradients> u = new java.util.ArrayList<>(), v = new java.util.ArrayList<>();
        for (int i = 0; i < op.blocks(); i++) {
            u.add(new io.bifuse.LinearGradients(toFloat(m.du()[i]), op.u(i).hasBias() ? toFloat(m.dbu()[i]) : null));
            v.add(new io.bifuse.LinearGradients(toFloat(m.dv()[i]), op.v(i).hasBias() ? toFloat(m.dbv()[i]) : null));
        }
        io.bifuse.LinearGradients out = op.hasOutput()
                ? new io.bifuse.LinearGradients(toFloat(m.dout()), op.linearOut().hasBias() ? toFloat(m.dbout()) : null) : null;
        return new Mfb.Gradients(toFloat(m.dx()), toFloat(m.dy()), u, v, out);
    }

    private static float[] toFloat(double[] a) {
        float[] f = new float[a.length];
        for (int i = 0; i < a.length; i++) f[i] = (float) a[i];
        return f;
    }
}
