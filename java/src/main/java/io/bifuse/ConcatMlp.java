package io.bifuse;

import java.util.ArrayList;
import java.util.List;
import java.util.Objects;

/**
 * The concatenation + MLP fusion baseline, as block.bootstrap's {@code fusions.ConcatMLP} computes it on
 * two 2-D inputs: an immutable op descriptor.
 * <pre>
 *   h₀ = [x, y]                                   (B × (Dx + Dy))
 *   h_{i+1} = σ(h_i·W_iᵀ + b_i)   for i < n − 1    (B × d_i)        mlp.linears.i
 *   f = h_{n−1}·W_{n−1}ᵀ + b_{n−1}                 (B × Out)        the last layer, no activation
 * </pre>
 * block.bootstrap's defaults: hidden widths [500, 500], relu; dropout between layers is identity
 * (inference), training-time dropout not provided. Its 3-D broadcast (one input per region, the other
 * repeated) is not provided: inputs are {@code B × Dx} and {@code B × Dy}.
 * Backends: {@code io.bifuse.cpu.ConcatMlpCpu}, {@code io.bifuse.reference.ConcatMlpReference}; {@code io.bifuse.cuda.ConcatMlpCuda}
 * (CUDA; simulated-device-tested only).
 */
public final class ConcatMlp implements Op<ConcatMlp.Backend>, Fusion {
    /** Every backend of this op: the {@link FusionBackend} contract. */
    public interface Backend extends FusionBackend<ConcatMlp, Gradients> {}

    @Override public Class<Backend> backendType() { return Backend.class; }

    private final int dx;
    private final List<Linear> layers;
    private final Activation activation;

    private ConcatMlp(int dx, List<Linear> layers, Activation activation) {
        this.dx = dx;
        this.layers = List.copyOf(layers);
        this.activation = activation;
    }

    /** The MLP {@code layers} (the first reading {@code Dx + Dy} features, each the next's input width) over {@code [x, y]} with {@code x} {@code dx} wide. */
    public static ConcatMlp of(int dx, List<Linear> layers, Activation activation) {
        Activation.require("activation", activation);
        if (layers == null || layers.isEmpty()) throw new IllegalArgumentException("layers: expected at least one layer, got " + (layers == null ? "null" : "none"));
        for (int i = 0; i < layers.size(); i++) {
            Linear.require("layers[" + i + "]", layers.get(i));
            if (i > 0) layers.get(i).requireShape("layers[" + i + "]", layers.get(i).out(), layers.get(i - 1).out());
        }
        int in = layers.get(0).in();
        if (dx < 1 || dx >= in) throw new IllegalArgumentException("dx: expected 1 <= dx < " + in + " (layers[0] reads Dx + Dy = " + in + " features), got " + dx);
        return new ConcatMlp(dx, layers, activation);
    }

    /**
     * A trained block.bootstrap {@code ConcatMLP} from its state dict ({@code mlp.linears.i} after
     * {@code prefix}, as many as there are); {@code dx} is {@code input_dims[0]} (the state dict holds only
     * Dx + Dy), {@code activation} the module's argument.
     */
    public static ConcatMlp fromStateDict(StateDict sd, String prefix, int dx, Activation activation) {
        Objects.requireNonNull(sd, "sd");
        Objects.requireNonNull(prefix, "prefix");
        List<Linear> l = new ArrayList<>();
        while (sd.contains(prefix + "mlp.linears." + l.size() + ".weight")) l.add(Linear.fromStateDict(sd, prefix + "mlp.linears." + l.size()));
        if (l.isEmpty()) throw new IllegalArgumentException(sd.source() + ": no tensor '" + prefix + "mlp.linears.0.weight' (a ConcatMLP has at least one layer)");
        // A layer after a gap (or a bias without its weight) would be dropped silently: refuse it.
        String under = prefix + "mlp.linears.";
        for (String name : sd.names()) {
            if (!name.startsWith(under)) continue;
            String rest = name.substring(under.length());
            int dot = rest.indexOf('.');
            if (dot > 0 && rest.substring(0, dot).chars().allMatch(Character::isDigit) && Integer.parseInt(rest.substring(0, dot)) >= l.size()) {
                throw new IllegalArgumentException(sd.source() + ": no tensor '" + under + l.size() + ".weight' (found '" + name
                        + "': the layers are numbered 0, 1, ... without a gap)");
            }
        }
        for (int i = 1; i < l.size(); i++) {
            if (l.get(i).in() != l.get(i - 1).out()) {
                throw new IllegalArgumentException(sd.source() + ": '" + prefix + "mlp.linears." + i + ".weight': expected " + l.get(i - 1).out()
                        + " input features (mlp.linears." + (i - 1) + "'s outputs), got " + l.get(i).in());
            }
        }
        return StateDict.loading(sd, prefix, java.util.Map.of("layers[]", "mlp.linears.%d.weight"), () -> of(dx, l, activation));
    }

    /** With layers {@code Dx + Dy → hidden[0] → ... → out}, biased and initialized as {@code nn.Linear} does, from {@code seed}. */
    public static ConcatMlp random(int dx, int dy, int[] hidden, int out, Activation activation, long seed) {
        if (dx < 1 || dy < 1 || out < 1) throw new IllegalArgumentException("dx, dy, out: expected >= 1, got " + dx + ", " + dy + ", " + out);
        if (hidden == null) throw new IllegalArgumentException("hidden: expected the hidden layers' widths (empty for none), got null");
        for (int i = 0; i < hidden.length; i++) {
            if (hidden[i] < 1) throw new IllegalArgumentException("hidden[" + i + "]: expected >= 1, got " + hidden[i]);
        }
        List<Linear> l = new ArrayList<>();
        int in = dx + dy;
        for (int i = 0; i <= hidden.length; i++) {
            int o = i < hidden.length ? hidden[i] : out;
            l.add(Linear.random(o, in, true, seed + i));
            in = o;
        }
        return of(dx, l, activation);
    }

    public List<Linear> layers() { return layers; }
    public Activation activation() { return activation; }
    @Override public int dx() { return dx; }
    @Override public int dy() { return layers.get(0).in() - dx; }
    @Override public int out() { return layers.get(layers.size() - 1).out(); }

    /** Gradients: dx, dy and each layer's, in order. */
    public record Gradients(float[] dx, float[] dy, List<LinearGradients> layers) {
        public Gradients {
            layers = List.copyOf(layers);
        }

        /** The tensors in the order of {@link ConcatMlp#gradientNames()}. */
        public List<float[]> tensors() {
            List<float[]> t = new ArrayList<>(List.of(dx, dy));
            for (LinearGradients l : layers) {
                t.add(l.weight());
                if (l.bias() != null) t.add(l.bias());
            }
            return t;
        }
    }

    /** input.0, input.1, then mlp.linears.i.weight and .bias. */
    public List<String> gradientNames() {
        List<String> n = new ArrayList<>(List.of("input.0", "input.1"));
        for (int i = 0; i < layers.size(); i++) {
            n.add("mlp.linears." + i + ".weight");
            if (layers.get(i).hasBias()) n.add("mlp.linears." + i + ".bias");
        }
        return n;
    }

    @Override public boolean equals(Object o) {
        return o instanceof ConcatMlp c && dx == c.dx && activation == c.activation && layers.equals(c.layers);
    }

    @Override public int hashCode() { return Objects.hash(dx, layers, activation); }

    @Override public String toString() {
        StringBuilder b = new StringBuilder("ConcatMlp[Dx=" + dx + ", Dy=" + dy() + ", widths=");
        for (int i = 0; i < layers.size(); i++) b.append(layers.get(i).out()).append(i == layers.size() - 1 ? "" : "→");
        return b.append(", ").append(activation).append("]").toString();
    }
}
