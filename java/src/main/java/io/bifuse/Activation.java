package io.bifuse;

/**
 * The activation applied to a projection in the low-rank bilinear operators (MLB, MFB, MFH, MLB
 * attention). MLB uses {@link #TANH} (Kim et al.); the original MFB uses {@link #NONE};
 * block.bootstrap.pytorch's MFB/MFH default to {@link #RELU}.
 *
 * <p>Every derivative is written in terms of the activation's OUTPUT {@code a = σ(p)}, so that a
 * backward pass may keep {@code a} (or recompute it) and never needs {@code p}:
 * {@code tanh' = 1 − a²}, {@code relu' = [a > 0]} (0 at the kink, as PyTorch), {@code none' = 1},
 * {@code sigmoid' = a·(1 − a)}. {@link #SIGMOID} is block.bootstrap's other activation name
 * ({@code activ_input} / {@code activ_output} = {@code 'sigmoid'}).
 */
public enum Activation {
    NONE, RELU, TANH, SIGMOID;

    /** The code the CUDA kernels take ({@code 0 none, 1 relu, 2 tanh, 3 sigmoid}). */
    public int code() { return ordinal(); }

    public double apply(double p) {
        return switch (this) {
            case NONE -> p;
            case RELU -> p > 0 ? p : 0;
            case TANH -> Math.tanh(p);
            case SIGMOID -> 1 / (1 + Math.exp(-p));
        };
    }

    /** {@code dσ/dp} at the point whose activation output is {@code a}. */
    public double derivativeFromOutput(double a) {
        return switch (this) {
            case NONE -> 1;
            case RELU -> a > 0 ? 1 : 0;
            case TANH -> 1 - a * a;
            case SIGMOID -> a * (1 - a);
        };
    }

    static Activation require(String name, Activation a) {
        if (a == null) throw new IllegalArgumentException(name + ": expected one of NONE, RELU, TANH, SIGMOID, got null");
        return a;
    }
}
