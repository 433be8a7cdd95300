package io.bifuse;

import java.util.ArrayList;
import java.util.List;
import java.util.Objects;

/**
 * The linear-sum fusion baseline, as block.bootstrap's {@code fusions.LinearSum} computes it: an
 * immutable op descriptor.
 * <pre>
 *   a = σ_in(x·W₀ᵀ + b₀),   c = σ_in(y·W₁ᵀ + b₁)     (B × M)    linear0, linear1, activ_input
 *   z = a + c,   ẑ = normalize(z)  (optional)          (B × M)
 *   f = σ_out(ẑ·W_outᵀ + b_out)                         (B × Out)  linear_out, activ_output
 * </pre>
 * block.bootstrap's defaults are relu for both activations and no normalization; dropout is identity
 * (inference), training-time dropout not provided. Backward: {@code go = g ⊙ σ_out'}, {@code gẑ = go·W_out},
 * the normalization's backward, then each side's {@code gz ⊙ σ_in'} through its layer.
 * Backends: {@code io.bifuse.cpu.LinearSumCpu}, {@code io.bifuse.reference.LinearSumReference}; {@code io.bifuse.cuda.LinearSumCuda}
 * (CUDA; simulated-device-tested only).
 */
public final class LinearSum implements Op<LinearSum.Backend>, Fusion {
    /** Every backend of this op: the {@link FusionBackend} contract. */
    public interface Backend extends FusionBackend<LinearSum, Gradients> {}

    @Override public Class<Backend> backendType() { return Backend.class; }

    private final Linear linear0, linear1, linearOut;
    private final Activation inputActivation, outputActivation;
    private final Normalization normalization;

    private LinearSum(Linear linear0, Linear linear1, Linear linearOut, Activation in, Activation out, Normalization normalization) {
        this.linear0 = linear0;
        this.linear1 = linear1;
        this.linearOut = linearOut;
        this.inputActivation = in;
        this.outputActivation = out;
        this.normalization = normalization;
    }

    /** linear0 Dx → M, linear1 Dy → M, linearOut M → Out (each may lack its bias), the two activations and the normalization. */
    public static LinearSum of(Linear linear0, Linear linear1, Linear linearOut, Activation inputActivation, Activation outputActivation,
                               Normalization normalization) {
        Linear.require("linear0", linear0);
        Linear.require("linear1", linear1);
        Linear.require("linearOut", linearOut);
        Activation.require("inputActivation", inputActivation);
        Activation.require("outputActivation", outputActivation);
        if (normalization == null) throw new IllegalArgumentException("normalization: expected a Normalization (NONE for none), got null");
        int m = linear0.out();
        linear1.requireShape("linear1", m, linear1.in());
        linearOut.requireShape("linearOut", linearOut.out(), m);
        return new LinearSum(linear0, linear1, linearOut, inputActivation, outputActivation, normalization);
    }

    /** A trained block.bootstrap {@code LinearSum} (linear0, linear1, linear_out after {@code prefix}) with its constructor's activ_input, activ_output and normalize. */
    public static LinearSum fromStateDict(StateDict sd, String prefix, Activation inputActivation, Activation outputActivation, boolean normalize) {
        Objects.requireNonNull(sd, "sd");
        Objects.requireNonNull(prefix, "prefix");
        Linear l0 = Linear.fromStateDict(sd, prefix + "linear0"), l1 = Linear.fromStateDict(sd, prefix + "linear1"), lo = Linear.fromStateDict(sd, prefix + "linear_out");
        return StateDict.loading(sd, prefix, java.util.Map.of("linear0", "linear0.weight", "linear1", "linear1.weight", "linearOut", "linear_out.weight"),
                () -> of(l0, l1, lo, inputActivation, outputActivation, normalize ? Normalization.pytorch() : Normalization.NONE));
    }

    /** With every layer biased and initialized as {@code nn.Linear} does, from {@code seed}. */
    public static LinearSum random(int dx, int dy, int mmDim, int out, Activation in, Activation outAct, Normalization normalization, long seed) {
        if (dx < 1 || dy < 1 || mmDim < 1 || out < 1) throw new IllegalArgumentException("dx, dy, mmDim, out: expected >= 1, got " + dx + ", " + dy + ", " + mmDim + ", " + out);
        return of(Linear.random(mmDim, dx, true, seed), Linear.random(mmDim, dy, true, seed + 1), Linear.random(out, mmDim, true, seed + 2), in, outAct, normalization);
    }

    public Linear linear0() { return linear0; }
    public Linear linear1() { return linear1; }
    public Linear linearOut() { return linearOut; }
    public Activation inputActivation() { return inputActivation; }
    public Activation outputActivation() { return outputActivation; }
    public Normalization normalization() { return normalization; }
    @Override public int dx() { return linear0.in(); }
    @Override public int dy() { return linear1.in(); }
    public int mmDim() { return linear0.out(); }
    @Override public int out() { return linearOut.out(); }

    /** Gradients: dx, dy and each layer's (bias null where it has none). */
    public record Gradients(float[] dx, float[] dy, LinearGradients linear0, LinearGradients linear1, LinearGradients linearOut) {
        /** The tensors in the order of {@link LinearSum#gradientNames()}. */
        public List<float[]> tensors() {
            List<float[]> t = new ArrayList<>(List.of(dx, dy));
            for (LinearGradients l : List.of(linear0, linear1, linearOut)) {
                t.add(l.weight());
                if (l.bias() != null) t.add(l.bias());
            }
            return t;
        }
    }

    /** input.0, input.1, then linear0, linear1, linear_out (weight, then bias). */
    public List<String> gradientNames() {
        List<String> n = new ArrayList<>(List.of("input.0", "input.1"));
        String[] names = {"linear0", "linear1", "linear_out"};
        Linear[] layers = {linear0, linear1, linearOut};
        for (int i = 0; i < 3; i++) {
            n.add(names[i] + ".weight");
            if (layers[i].hasBias()) n.add(names[i] + ".bias");
        }
        return n;
    }

    @Override public boolean equals(Object o) {
        return o instanceof LinearSum l && inputActivation == l.inputActivation && outputActivation == l.outputActivation && normalization.equals(l.normalization)
                && linear0.equals(l.linear0) && linear1.equals(l.linear1) && linearOut.equals(l.linearOut);
    }

    @Override public int hashCode() { return Objects.hash(linear0, linear1, linearOut, inputActivation, outputActivation, normalization); }

    @Override public String toString() {
        return "LinearSum[Dx=" + dx() + ", Dy=" + dy() + ", mm_dim=" + mmDim() + ", Out=" + out() + ", in " + inputActivation + ", out " + outputActivation
                + (normalization.isIdentity() ? "" : ", " + normalization) + "]";
    }
}
