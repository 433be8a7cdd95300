package io.bifuse;

import java.util.Arrays;
import java.util.SplittableRandom;

/**
 * The parameters of one linear layer {@code y = x·Wᵀ + b} in the layout of a PyTorch {@code nn.Linear}
 * state dict: {@code weight} is {@code out × in}, row-major ({@code weight[o·in + i]}), {@code bias}
 * has {@code out} entries or is absent ({@code nn.Linear(bias=False)}). A trained model's tensors load
 * as they are: {@code new Linear(out, in, w.flatten(), b)}.
 *
 * <p>Immutable: the arrays are copied in, and nothing hands out the arrays themselves. Backends read
 * the parameters through the copying accessors or copy them straight into their own layouts
 * ({@link #copyWeightTo}, {@link #copyBiasTo}, {@link #weightAsDouble}).
 */
public final class Linear {
    private final int out, in;
    private final float[] weight, bias;

    /**
     * @param out    output features (rows of {@code weight})
     * @param in     input features (columns of {@code weight})
     * @param weight {@code out × in} floats, row-major; every value finite
     * @param bias   {@code out} floats, or null for no bias
     */
    public Linear(int out, int in, float[] weight, float[] bias) {
        this("weight", out, in, weight, bias);
    }

    /** The public constructor with {@code name} (a layer's name) in its messages instead of "weight". */
    static Linear named(String name, int out, int in, float[] weight, float[] bias) {
        return new Linear(name, out, in, weight, bias);
    }

    private Linear(String name, int out, int in, float[] weight, float[] bias) {
        if (out < 1) throw new IllegalArgumentException(name + ": expected out >= 1 output features, got " + out);
        if (in < 1) throw new IllegalArgumentException(name + ": expected in >= 1 input features, got " + in);
        if (weight == null) throw new IllegalArgumentException(name + ": expected " + out + " × " + in + " floats (out × in, as nn.Linear.weight), got null");
        if (weight.length != (long) out * in) {
            throw new IllegalArgumentException(name + ": expected " + out + " × " + in + " = " + (long) out * in
                    + " floats (out × in, as nn.Linear.weight), got " + weight.length);
        }
        if (bias != null && bias.length != out) {
            throw new IllegalArgumentException(name + " bias: expected " + out + " floats (one per output feature), got " + bias.length);
        }
        requireFinite(name, weight);
        if (bias != null) requireFinite(name + " bias", bias);
        this.out = out;
        this.in = in;
        this.weight = weight.clone();
        this.bias = bias == null ? null : bias.clone();
    }

    /**
     * A layer initialized as {@code nn.Linear} does (weight and bias uniform in ±1/sqrt(in)), from
     * {@code SplittableRandom(seed)}: for tests, benchmarks and examples.
     */
    public static Linear random(int out, int in, boolean bias, long seed) {
        if (out < 1 || in < 1) throw new IllegalArgumentException("out, in: expected >= 1, got " + out + ", " + in);
        SplittableRandom r = new SplittableRandom(seed);
        double bound = 1 / Math.sqrt(in);
        float[] w = new float[Math.multiplyExact(out, in)];
        for (int i = 0; i < w.length; i++) w[i] = (float) r.nextDouble(-bound, bound);
        float[] b = null;
        if (bias) {
            b = new float[out];
            for (int i = 0; i < out; i++) b[i] = (float) r.nextDouble(-bound, bound);
        }
        return new Linear(out, in, w, b);
    }

    /**
     * The {@code nn.Linear} whose parameters are {@code name + ".weight"} ({@code out × in}) and, if present,
     * {@code name + ".bias"} ({@code out}) in {@code sd} (block.bootstrap's {@code linear0}, or
     * {@code merge_linears0.3}); a missing weight, a weight that is not 2-D or a misshapen bias is refused
     * by name. Values are rounded to float.
     */
    public static Linear fromStateDict(StateDict sd, String name) {
        java.util.Objects.requireNonNull(sd, "sd");
        StateDict.Info w = sd.info(name + ".weight");
        long[] shape = w.shape();
        if (shape.length != 2 || shape[0] < 1 || shape[1] < 1 || shape[0] > Integer.MAX_VALUE || shape[1] > Integer.MAX_VALUE) {
            throw new IllegalArgumentException(sd.source() + ": '" + name + ".weight': expected a 2-D out × in weight, got shape " + Arrays.toString(shape));
        }
        int out = (int) shape[0], in = (int) shape[1];
        float[] bias = sd.contains(name + ".bias") ? sd.floats(name + ".bias", out) : null;
        return named(name, out, in, sd.floats(name + ".weight", out, in), bias);
    }

    /** Checks that this layer maps {@code in} features to {@code out}; {@code name} names it in the message. */
    public Linear requireShape(String name, int out, int in) {
        if (this.out != out || this.in != in) {
            throw new IllegalArgumentException(name + ": expected a layer " + in + " → " + out + " (weight " + out + " × " + in
                    + "), got " + this.in + " → " + this.out + " (weight " + this.out + " × " + this.in + ")");
        }
        return this;
    }

    static Linear require(String name, Linear l) {
        if (l == null) throw new IllegalArgumentException(name + ": expected a Linear layer, got null");
        return l;
    }

    public int out() { return out; }
    public int in() { return in; }
    public boolean hasBias() { return bias != null; }
    public float[] weight() { return weight.clone(); }
    /** A copy of the bias, or null when the layer has none. */
    public float[] bias() { return bias == null ? null : bias.clone(); }

    /** A copy of the bias, or {@code out} zeros when the layer has none (what a fused bias add needs). */
    public float[] biasOrZeros() { return bias == null ? new float[out] : bias.clone(); }

    /** Copies the {@code out × in} weight into {@code dst} from {@code offset} (a stacked or concatenated layout). */
    public void copyWeightTo(float[] dst, int offset) { System.arraycopy(weight, 0, dst, offset, weight.length); }

    /** Copies the bias (zeros when the layer has none) into {@code dst} from {@code offset}. */
    public void copyBiasTo(float[] dst, int offset) {
        if (bias != null) System.arraycopy(bias, 0, dst, offset, out);
        else java.util.Arrays.fill(dst, offset, offset + out, 0f);
    }

    /** The weight widened to double (one new array: what the float64 references compute with). */
    public double[] weightAsDouble() { return widen(weight); }

    /** The bias widened to double, or {@code out} zeros when the layer has none. */
    public double[] biasAsDouble() { return bias == null ? new double[out] : widen(bias); }

    private static double[] widen(float[] a) {
        double[] d = new double[a.length];
        for (int i = 0; i < a.length; i++) d[i] = a[i];
        return d;
    }

    private static void requireFinite(String name, float[] a) {
        for (int i = 0; i < a.length; i++) {
            if (!Float.isFinite(a[i])) throw new IllegalArgumentException(name + "[" + i + "]: expected a finite value, got " + a[i]);
        }
    }

    @Override public boolean equals(Object o) {
        return o instanceof Linear l && out == l.out && in == l.in && Arrays.equals(weight, l.weight) && Arrays.equals(bias, l.bias);
    }

    @Override public int hashCode() { return 31 * (31 * out + in) + Arrays.hashCode(weight); }

    @Override public String toString() { return "Linear[" + in + " → " + out + (bias == null ? ", no bias]" : "]"); }
}
