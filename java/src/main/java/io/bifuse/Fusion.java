package io.bifuse;

/**
 * A two-input fusion's shape: {@code x} ({@code B × Dx}) and {@code y} ({@code B × Dy}) to one
 * {@code B × Out} output, as block.bootstrap's fusions take {@code [x0, x1]}. Its backends are
 * {@link FusionBackend}s.
 */
public interface Fusion {
    int dx();
    int dy();
    int out();

    /** Checks host inputs by name ({@code batch >= 1}, {@code x} and {@code y} of their lengths); every entry point calls it before any work. */
    default void checkInputs(float[] x, float[] y, int batch) {
        if (batch < 1) throw new IllegalArgumentException("batch: expected >= 1, got " + batch);
        CompactBilinear.checkLength("x", x, batch, dx());
        CompactBilinear.checkLength("y", y, batch, dy());
    }
}
