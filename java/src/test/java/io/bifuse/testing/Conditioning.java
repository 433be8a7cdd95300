package io.bifuse.testing;

import io.bifuse.Linear;
import io.bifuse.Precision;
import java.util.List;
import java.util.SplittableRandom;
import java.util.function.BiFunction;

/**
 * The conditioning baseline of the GPU tests' and {@code check}'s bounds: the rule {@link Precision}
 * documents for reduced-precision gradients, applied to every precision and to outputs as well as
 * gradients.
 *
 * <p>A fixed bound (1e-5 in FP32, {@link Precision#bound()} = 4u in TF32 / BF16) holds where errors
 * average over long sums of well-conditioned terms, but some inputs are ill-conditioned at the
 * precision's own error level, and no implementation in that precision can match the float64 reference
 * there: a ReLU whose input lies within that error of zero flips and makes its gradient wrong by its full
 * size (frequent in TF32 / BF16; in FP32 a rare single flip, e.g. one of ~10⁶ pre-activations of the BAN
 * block at the spec's widths, measured at 2.7e-3 on that layer's gradient and 4e-5 on everything
 * upstream); at the smallest widths an output is one product of a few rounded operands, or a sum
 * {@code x·u + b} that cancels, with nothing to average.
 *
 * <p>So where a tensor's error exceeds the fixed bound, the bound becomes {@code max(bound, 2·base)},
 * {@code base} the float64 reference's own largest relative change of that tensor when the inputs,
 * gradOut and every parameter are multiplied elementwise by {@code 1 ± step} (random signs): what the
 * math does when every operand moves as far as the precision moves it. {@link #step}: 2u in TF32 / BF16
 * (operand rounding), {@code 2⁻²⁴·sqrt(n)} in FP32 with n the longest sum of the op's GEMMs (the typical
 * error of a float32 sum of n products accumulated in sequence, as a GEMM accumulates each output). The
 * draws are made only when needed and stop as soon as one explains the error, at most {@link #MAX_DRAWS}
 * (a flip shows in about half the draws: its sign must be right). An indexing mistake (~1), an unwritten
 * element (NaN) or a mode rounding more than asked stays above the bound.
 */
public final class Conditioning {
    /** At most this many perturbation draws per case. */
    public static final int MAX_DRAWS = 8;
    /** The bound is this multiple of the baseline (where that exceeds the fixed bound). */
    public static final double FACTOR = 2;

    private final double step;
    private final SplittableRandom random;
    private final BiFunction<SplittableRandom, Double, double[]> perturbed;
    private double[] base;
    private int draws;

    /**
     * {@code perturbed}: given the random source and the step, the relative errors (one per tensor, in
     * the caller's order) of the reference's results for the op and inputs moved by {@code 1 ± step}
     * against the unperturbed reference.
     */
    public Conditioning(double step, long seed, BiFunction<SplittableRandom, Double, double[]> perturbed) {
        this.step = step;
        this.random = new SplittableRandom(seed);
        this.perturbed = perturbed;
    }

    /** 2u in TF32 / BF16 ({@link Precision#bound()} is 4u); {@code 2⁻²⁴·sqrt(longestSum)} in FP32. */
    public static double step(Precision p, int longestSum) {
        return p == Precision.FP32 ? 0x1p-24 * Math.sqrt(longestSum) : p.bound() / 2;
    }

    /**
     * The bound for tensor {@code t} whose error is {@code err}: {@code tol} where that holds it (or
     * where err is NaN: an unwritten element is never conditioning), else {@code max(tol, 2·base_t)}
     * after as many draws as it takes to explain {@code err}, at most {@link #MAX_DRAWS}.
     */
    public double bound(int t, double tol, double err) {
        if (err <= tol || Double.isNaN(err)) return tol;
        while (draws < MAX_DRAWS && !(err <= Math.max(tol, FACTOR * base(t)))) draw();
        return Math.max(tol, FACTOR * base(t));
    }

    /**
     * Above this baseline a tensor is not comparable in float32 at all: moving every operand by float32's
     * step moves the float64 result itself by more than 1% (a signed sqrt's exact derivative next to
     * z = 0, summed over many units), so no float32 implementation resolves it (FullBilinear's check rows
     * use the same cut).
     */
    public static final double NOT_COMPARABLE = 1e-2;

    /**
     * Whether tensor {@code t} is comparable after {@link #bound} ran for it: its baseline (from the draws
     * made, none where the fixed bound held) is at most {@link #NOT_COMPARABLE}. Where it is not, a test
     * asks for finite values only, and says so.
     */
    public boolean comparable(int t) { return base(t) <= NOT_COMPARABLE; }

    /** How many draws were made (for the failure message). */
    public int draws() { return draws; }

    private double base(int t) { return base == null ? 0 : base[t]; }

    private void draw() {
        double[] e = perturbed.apply(random, step);
        if (base == null) base = new double[e.length];
        for (int t = 0; t < e.length; t++) if (e[t] > base[t]) base[t] = e[t];
        draws++;
    }

    /** {@code relativeL2(got[t], ref[t])} per tensor; 0 where either is null (a layer without bias). */
    public static double[] errors(List<double[]> got, List<double[]> ref) {
        double[] e = new double[ref.size()];
        for (int t = 0; t < e.length; t++) {
            if (got.get(t) != null && ref.get(t) != null) e[t] = Stats.relativeL2(got.get(t), ref.get(t));
        }
        return e;
    }

    /** A copy of {@code a}, each element times {@code 1 ± relative} (random signs); null stays null. */
    public static float[] perturb(float[] a, double relative, SplittableRandom r) {
        if (a == null) return null;
        float[] b = new float[a.length];
        for (int i = 0; i < a.length; i++) b[i] = (float) (a[i] * (r.nextBoolean() ? 1 + relative : 1 - relative));
        return b;
    }

    /** The layer with its weight and bias perturbed as {@link #perturb(float[], double, SplittableRandom)}. */
    public static Linear perturb(Linear l, double relative, SplittableRandom r) {
        return new Linear(l.out(), l.in(), perturb(l.weight(), relative, r), perturb(l.bias(), relative, r));
    }
}
