package io.bifuse;

/**
 * Gradients of a two-input operator with respect to its inputs, row-major like the inputs:
 * {@code dx} is {@code B × Dx}, {@code dy} is {@code B × Dy}.
 */
public record Gradients(float[] dx, float[] dy) {}
