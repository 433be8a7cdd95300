package io.bifuse;

import java.util.ArrayList;
import java.util.List;

/**
 * Gradients of a two-input operator with respect to its inputs, row-major like the inputs:
 * {@code dx} is {@code B × Dx}, {@code dy} is {@code B × Dy}; and, for an op that ends in an output layer
 * (block.bootstrap's {@code MCB}: {@link CompactBilinear#withOutput}), that layer's ({@code null} otherwise).
 */
public record Gradients(float[] dx, float[] dy, LinearGradients linearOut) {
    /** An op without parameters: the inputs' gradients only. */
    public Gradients(float[] dx, float[] dy) {
        this(dx, dy, null);
    }

    /** dx, dy, then the output layer's weight and bias (where there are ones), in the order of the op's gradient names. */
    public List<float[]> tensors() {
        List<float[]> t = new ArrayList<>(List.of(dx, dy));
        if (linearOut != null) {
            t.add(linearOut.weight());
            if (linearOut.bias() != null) t.add(linearOut.bias());
        }
        return t;
    }
}
