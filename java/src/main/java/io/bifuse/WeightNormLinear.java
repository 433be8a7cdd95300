package io.bifuse;

import java.util.Arrays;

/**
 * One weight-normalized linear layer, as PyTorch's {@code weight_norm(nn.Linear(in, out), dim=None)}
 * stores it (the form of every projection of the bilinear attention networks, BAN): the direction
 * {@code weight_v} ({@code out × in}, row-major), ONE scalar gain {@code weight_g} for the whole matrix,
 * and the bias ({@code out} floats, or absent). The layer computes {@code y = x·Wᵀ + b} with the
 * effective weight
 * <pre>
 *   W = g · V / ‖V‖_F          (‖V‖_F over all out·in entries: dim=None)
 * </pre>
 * A trained model's state dict loads as it is: {@code new WeightNormLinear(out, in, weight_v.flatten(),
 * weight_g.item(), bias)}. {@link #effective()} gives the plain {@link Linear} the ops run with.
 *
 * <p>Gradients: given {@code dW = ∂L/∂W} (what a plain linear layer's backward gives),
 * {@link #backward} returns the gradients of the stored parameters,
 * <pre>
 *   dg = ⟨dW, V⟩ / ‖V‖,        dV = (g / ‖V‖) · (dW − (dg / ‖V‖) · V)
 * </pre>
 * (the bias gradient is unchanged). Since {@code V/‖V‖ = W/g}, the same values follow from W alone:
 * {@code dg = ⟨dW, W⟩ / g}, {@code dV = (g/‖V‖)(dW − (dg/g)·W)}, which is what a device needs (W, g, ‖V‖).
 *
 * <p>Immutable: the arrays are copied in, accessors return copies. g = 0 (W = 0 whatever V: the layer
 * would be dead and {@code dV} zero) and an all-zero V (W undefined) are rejected, as are non-finite
 * values.
 */
public final class WeightNormLinear {
    private final int out, in;
    private final float[] weightV, bias;
    private final float g;
    private final double norm;

    /**
     * @param out     output features (rows of {@code weightV})
     * @param in      input features (columns of {@code weightV})
     * @param weightV {@code out × in} floats, row-major ({@code weight_v}); finite, not all zero
     * @param g       the scalar gain ({@code weight_g}); finite, nonzero
     * @param bias    {@code out} floats, or null for no bias
     */
    public WeightNormLinear(int out, int in, float[] weightV, float g, float[] bias) {
        if (out < 1) throw new IllegalArgumentException("out: expected >= 1 output features, got " + out);
        if (in < 1) throw new IllegalArgumentException("in: expected >= 1 input features, got " + in);
        if (weightV == null) {
            throw new IllegalArgumentException("weightV: expected " + out + " × " + in + " floats (out × in, as weight_v), got null");
        }
        if (weightV.length != (long) out * in) {
            throw new IllegalArgumentException("weightV: expected " + out + " × " + in + " = " + (long) out * in
                    + " floats (out × in, as weight_v), got " + weightV.length);
        }
        requireFinite("weightV", weightV);
        if (!Float.isFinite(g)) throw new IllegalArgumentException("g: expected a finite gain (weight_g), got " + g);
        if (g == 0) throw new IllegalArgumentException("g: expected a nonzero gain (weight_g): g = 0 makes W = 0 and the layer dead, got " + g);
        if (bias != null && bias.length != out) {
            throw new IllegalArgumentException("bias: expected " + out + " floats (one per output feature), got " + bias.length);
        }
        if (bias != null) requireFinite("bias", bias);
        double s = 0;
        for (float v : weightV) s += (double) v * v;
        if (s == 0) {
            throw new IllegalArgumentException("weightV: expected a nonzero tensor (W = g·V/‖V‖ needs ‖V‖ > 0), got all " + out + " × " + in
                    + " entries zero");
        }
        this.out = out;
        this.in = in;
        this.weightV = weightV.clone();
        this.g = g;
        this.bias = bias == null ? null : bias.clone();
        this.norm = Math.sqrt(s);
    }

    /**
     * A freshly wrapped {@code weight_norm(nn.Linear(in, out), dim=None)}: V and the bias as
     * {@link Linear#random(int, int, boolean, long)} draws them (nn.Linear's initialization), and
     * {@code g = ‖V‖} (what weight_norm sets at wrapping time), so that W = V up to rounding.
     */
    public static WeightNormLinear random(int out, int in, boolean bias, long seed) {
        if (out < 1 || in < 1) throw new IllegalArgumentException("out, in: expected >= 1, got " + out + ", " + in);
        Linear l = Linear.random(out, in, bias, seed);
        float[] v = l.weight();
        double s = 0;
        for (float x : v) s += (double) x * x;
        return new WeightNormLinear(out, in, v, (float) Math.sqrt(s), l.hasBias() ? l.bias() : null);
    }

    static WeightNormLinear require(String name, WeightNormLinear l) {
        if (l == null) throw new IllegalArgumentException(name + ": expected a WeightNormLinear layer, got null");
        return l;
    }

    /** Checks that this layer maps {@code in} features to {@code out}; {@code name} names it in the message. */
    public WeightNormLinear requireShape(String name, int out, int in) {
        if (this.out != out || this.in != in) {
            throw new IllegalArgumentException(name + ": expected a layer " + in + " → " + out + " (weight_v " + out + " × " + in
                    + "), got " + this.in + " → " + this.out + " (weight_v " + this.out + " × " + this.in + ")");
        }
        return this;
    }

    public int out() { return out; }
    public int in() { return in; }
    public boolean hasBias() { return bias != null; }
    /** The gain {@code weight_g}. */
    public float g() { return g; }
    /** {@code ‖V‖_F}, computed in double. */
    public double norm() { return norm; }
    /** A copy of {@code weight_v}. */
    public float[] weightV() { return weightV.clone(); }
    /** A copy of the bias, or null when the layer has none. */
    public float[] bias() { return bias == null ? null : bias.clone(); }
    /** {@code weight_v} itself (no copy): callers must not modify it. */
    public float[] weightVArray() { return weightV; }
    /** The number of parameter floats in state-dict form: {@code out·in} (V) + 1 (g) + {@code out} (bias, if any). */
    public long parameterCount() { return (long) out * in + 1 + (bias == null ? 0 : out); }

    /** The effective weight {@code g·V/‖V‖} in double (before rounding), row-major {@code out × in}. */
    public double[] effectiveWeight() {
        double[] w = new double[weightV.length];
        double scale = g / norm;
        for (int i = 0; i < w.length; i++) w[i] = scale * weightV[i];
        return w;
    }

    /** The plain layer this one computes: weight {@code g·V/‖V‖} (in double, then rounded to float), the same bias. */
    public Linear effective() {
        double[] w = effectiveWeight();
        float[] f = new float[w.length];
        for (int i = 0; i < w.length; i++) f[i] = (float) w[i];
        return new Linear(out, in, f, bias);
    }

    /**
     * The gradients of the stored parameters (V, g, bias) given those of the effective layer:
     * {@code dW} ({@code out × in}) and {@code dBias} ({@code out}; ignored, and the result's bias null,
     * when the layer has no bias). Computed in double, rounded once.
     */
    public WeightNormGradients backward(double[] dW, double[] dBias) {
        if (dW == null || dW.length != weightV.length) {
            throw new IllegalArgumentException("dW: expected " + out + " × " + in + " = " + weightV.length + " values, got "
                    + (dW == null ? "null" : dW.length));
        }
        if (bias != null && (dBias == null || dBias.length != out)) {
            throw new IllegalArgumentException("dBias: expected " + out + " values, got " + (dBias == null ? "null" : dBias.length));
        }
        double dg = 0;
        for (int i = 0; i < dW.length; i++) dg += dW[i] * weightV[i];
        dg /= norm;
        double scale = g / norm, along = dg / norm;
        float[] dv = new float[dW.length];
        for (int i = 0; i < dW.length; i++) dv[i] = (float) (scale * (dW[i] - along * weightV[i]));
        float[] db = null;
        if (bias != null) {
            db = new float[out];
            for (int o = 0; o < out; o++) db[o] = (float) dBias[o];
        }
        return new WeightNormGradients(dv, (float) dg, db);
    }

    /** {@link #backward(double[], double[])} for the float gradients of the effective layer. */
    public WeightNormGradients backward(LinearGradients effective) {
        if (effective == null) throw new IllegalArgumentException("effective: expected the effective layer's gradients, got null");
        return backward(toDouble("dW", effective.weight()), effective.bias() == null ? null : toDouble("dBias", effective.bias()));
    }

    private static double[] toDouble(String name, float[] a) {
        if (a == null) throw new IllegalArgumentException(name + ": expected values, got null");
        double[] r = new double[a.length];
        for (int i = 0; i < a.length; i++) r[i] = a[i];
        return r;
    }

    private static void requireFinite(String name, float[] a) {
        for (int i = 0; i < a.length; i++) {
            if (!Float.isFinite(a[i])) throw new IllegalArgumentException(name + "[" + i + "]: expected a finite value, got " + a[i]);
        }
    }

    @Override public boolean equals(Object o) {
        return o instanceof WeightNormLinear l && out == l.out && in == l.in && Float.compare(g, l.g) == 0 && Arrays.equals(weightV, l.weightV)
                && Arrays.equals(bias, l.bias);
    }

    @Override public int hashCode() { return 31 * (31 * (31 * out + in) + Float.hashCode(g)) + Arrays.hashCode(weightV); }

    @Override public String toString() {
        return "WeightNormLinear[" + in + " → " + out + ", g=" + g + (bias == null ? ", no bias]" : "]");
    }
}
