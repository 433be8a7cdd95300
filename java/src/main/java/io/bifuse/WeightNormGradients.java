package io.bifuse;

/**
 * Gradients of a loss with respect to one {@link WeightNormLinear} layer's stored parameters, in the
 * same layout as its state dict: {@code weightV} ({@code out × in} row-major, {@code weight_v}),
 * {@code g} (the scalar {@code weight_g}) and {@code bias} ({@code out} entries; null when the layer has
 * no bias).
 */
public record WeightNormGradients(float[] weightV, float g, float[] bias) {
    /** {@code g} as a one-element array, for lists of gradient tensors. */
    public float[] gArray() { return new float[] {g}; }
}
