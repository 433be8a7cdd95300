package io.bifuse;

/**
 * Gradients of a loss with respect to one {@link Linear} layer's parameters, in the same layout:
 * {@code weight} is {@code out × in} row-major, {@code bias} has {@code out} entries (null when the
 * layer has no bias).
 */
public record LinearGradients(float[] weight, float[] bias) {}
