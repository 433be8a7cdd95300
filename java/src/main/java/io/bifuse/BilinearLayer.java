package io.bifuse;

import java.util.Arrays;
import java.util.SplittableRandom;

/**
 * An {@code nn.Bilinear} layer: {@code z_k = Σ_{i,j} x1_i · A[k, i, j] · x2_j + b_k}, weight
 * {@code out × in1 × in2} (row-major, as PyTorch stores it), bias {@code out} or none. Immutable; the
 * Tucker fusions' cores.
 */
public final class BilinearLayer {
    private final int out, in1, in2;
    private final float[] weight, bias;

    /** {@code weight}: {@code out × in1 × in2} finite floats; {@code bias}: {@code out} floats or null. */
    public BilinearLayer(int out, int in1, int in2, float[] weight, float[] bias) {
        this("weight", out, in1, in2, weight, bias);
    }

    private BilinearLayer(String name, int out, int in1, int in2, float[] weight, float[] bias) {
        if (out < 1 || in1 < 1 || in2 < 1) throw new IllegalArgumentException(name + ": expected out, in1, in2 >= 1, got " + out + ", " + in1 + ", " + in2);
        long n = (long) out * in1 * in2;
        if (weight == null || weight.length != n) {
            throw new IllegalArgumentException(name + ": expected " + out + " × " + in1 + " × " + in2 + " = " + n + " floats (out × in1 × in2, as nn.Bilinear.weight), got "
                    + (weight == null ? "null" : weight.length));
        }
        if (bias != null && bias.length != out) throw new IllegalArgumentException(name + " bias: expected " + out + " floats, got " + bias.length);
        for (float v : weight) if (!Float.isFinite(v)) throw new IllegalArgumentException(name + ": expected finite values, got " + v);
        if (bias != null) for (float v : bias) if (!Float.isFinite(v)) throw new IllegalArgumentException(name + " bias: expected finite values, got " + v);
        this.out = out;
        this.in1 = in1;
        this.in2 = in2;
        this.weight = weight.clone();
        this.bias = bias == null ? null : bias.clone();
    }

    /** Initialized as {@code nn.Bilinear} does (weight and bias uniform in ±1/sqrt(in1)), from {@code SplittableRandom(seed)}. */
    public static BilinearLayer random(int out, int in1, int in2, boolean bias, long seed) {
        if (out < 1 || in1 < 1 || in2 < 1) throw new IllegalArgumentException("out, in1, in2: expected >= 1, got " + out + ", " + in1 + ", " + in2);
        SplittableRandom r = new SplittableRandom(seed);
        double bound = 1 / Math.sqrt(in1);
        float[] w = new float[Math.multiplyExact(Math.multiplyExact(out, in1), in2)];
        for (int i = 0; i < w.length; i++) w[i] = (float) r.nextDouble(-bound, bound);
        float[] b = null;
        if (bias) {
            b = new float[out];
            for (int i = 0; i < out; i++) b[i] = (float) r.nextDouble(-bound, bound);
        }
        return new BilinearLayer(out, in1, in2, w, b);
    }

    /** The layer {@code name + ".weight"} (3-D) and, if present, {@code name + ".bias"} in {@code sd}; refused by name otherwise. */
    public static BilinearLayer fromStateDict(StateDict sd, String name) {
        long[] s = sd.info(name + ".weight").shape();
        if (s.length != 3 || s[0] < 1 || s[1] < 1 || s[2] < 1 || s[0] * s[1] * s[2] > Integer.MAX_VALUE) {
            throw new IllegalArgumentException(sd.source() + ": '" + name + ".weight': expected a 3-D out × in1 × in2 weight, got shape " + Arrays.toString(s));
        }
        int out = (int) s[0];
        float[] bias = sd.contains(name + ".bias") ? sd.floats(name + ".bias", out) : null;
        return new BilinearLayer(name, out, (int) s[1], (int) s[2], sd.floats(name + ".weight", s), bias);
    }

    /** Checks the shape; {@code name} names the layer in the message. */
    public BilinearLayer requireShape(String name, int out, int in1, int in2) {
        if (this.out != out || this.in1 != in1 || this.in2 != in2) {
            throw new IllegalArgumentException(name + ": expected a bilinear layer " + in1 + " × " + in2 + " → " + out + ", got " + this.in1 + " × " + this.in2 + " → " + this.out);
        }
        return this;
    }

    public int out() { return out; }
    public int in1() { return in1; }
    public int in2() { return in2; }
    public boolean hasBias() { return bias != null; }
    public float[] weight() { return weight.clone(); }
    public float[] bias() { return bias == null ? null : bias.clone(); }
    public double[] weightAsDouble() {
        double[] d = new double[weight.length];
        for (int i = 0; i < d.length; i++) d[i] = weight[i];
        return d;
    }
    /** The bias in double, zeros where the layer has none. */
    public double[] biasAsDouble() {
        double[] d = new double[out];
        if (bias != null) for (int i = 0; i < out; i++) d[i] = bias[i];
        return d;
    }

    @Override public boolean equals(Object o) {
        return o instanceof BilinearLayer l && out == l.out && in1 == l.in1 && in2 == l.in2 && Arrays.equals(weight, l.weight) && Arrays.equals(bias, l.bias);
    }

    @Override public int hashCode() { return 31 * (31 * (31 * out + in1) + in2) + Arrays.hashCode(weight); }

    @Override public String toString() { return "BilinearLayer[" + in1 + " × " + in2 + " → " + out + (bias == null ? ", no bias]" : "]"); }
}
