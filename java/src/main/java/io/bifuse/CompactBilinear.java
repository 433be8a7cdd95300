package io.bifuse;

import java.util.Arrays;

/**
 * Compact bilinear pooling (MCB, Fukui et al. 2016; Gao et al. 2016): an immutable op descriptor.
 *
 * <p>Math. With count sketches {@code Ψ(x; h, s)[j] = Σ_{i : h[i] = j} s[i]·x[i]}:
 * <pre>
 *   z = irfft( rfft(Ψ(x; h1, s1)) ⊙ rfft(Ψ(y; h2, s2)), n = d )     (irfft includes 1/d)
 *     = the count sketch of x ⊗ y:  z[(h1[a] + h2[b]) mod d] += s1[a]·s2[b]·x[a]·y[b]
 * </pre>
 * then the optional {@link Normalization} (signed sqrt, l2). This matches the PyTorch ports
 * (gdlg/pytorch_compact_bilinear_pooling, block.bootstrap.pytorch); the Caffe layer omits 1/d, which
 * the normalization cancels.
 *
 * <p>Shapes, row-major: {@code x} is {@code B × Dx}, {@code y} is {@code B × Dy}, {@code z} is
 * {@code B × d}; backward takes {@code g = ∂L/∂z} ({@code B × d}) and returns {@code ∂L/∂x},
 * {@code ∂L/∂y}. Any {@code Dx, Dy, d, B >= 1}.
 *
 * <p>Hashes: {@code h ∈ [0, d)}, {@code s ∈ {−1, +1}}, fixed (not learned). Either given
 * ({@link #fromHashes}, to load a trained model) or drawn by {@link #seeded} from {@link SplitMix64}
 * in the order h1[0..Dx), s1[0..Dx), h2[0..Dy), s2[0..Dy).
 *
 * <p>Backends ({@link Backend}): {@code io.bifuse.cpu.CompactBilinearCpu} (count sketch + FFT in
 * double) and {@code io.bifuse.cuda.CompactBilinearCuda}; {@code io.bifuse.reference.CompactBilinearReference}
 * is the definition-based oracle both are tested against.
 */
public final class CompactBilinear implements Op<CompactBilinear.Backend> {
    /**
     * What every backend of this op offers on host arrays ({@code CompactBilinearCpu} in io.bifuse.cpu, {@code CompactBilinearCuda}
     * in io.bifuse.cuda): {@code forward} {@code B × Dx}, {@code B × Dy} → {@code B × d}; {@code backward}
     * the gradients of the inputs given {@code gradOut = ∂L/∂z} ({@code B × d}),
     * recomputing the forward from {@code x, y}, written, not accumulated.
     */
    public interface Backend extends OpBackend {
        float[] forward(float[] x, float[] y, int batch);
        Gradients backward(float[] x, float[] y, float[] gradOut, int batch);

        /** The descriptor this backend runs. */
        CompactBilinear op();

        /**
         * The forward over views of the caller's memory ({@link FloatView}: part of a float[], a
         * FloatBuffer, a MemorySegment): x (B × Dx), y (B × Dy) → out (B × d), {@code out} written, nothing returned. Every length is
         * checked, by name, before anything runs; inputs that are not one whole array are copied once,
         * and the result is copied into {@code out}.
         */
        default void forward(FloatView x, FloatView y, FloatView out, int batch) {
            FloatView.requireLength("out", out, (long) batch * op().d());
            float[] r = forward(FloatView.input("x", x, (long) batch * op().dx()), FloatView.input("y", y, (long) batch * op().dy()), batch);
            out.copyFrom(r, 0, r.length);
        }
    }

    @Override public Class<Backend> backendType() { return Backend.class; }

    private final int dx, dy, d;
    private final int[] h1, h2;
    private final float[] s1, s2;
    private final Normalization normalization;

    private CompactBilinear(int d, int[] h1, float[] s1, int[] h2, float[] s2, Normalization normalization) {
        this.dx = h1.length;
        this.dy = h2.length;
        this.d = d;
        this.h1 = h1;
        this.s1 = s1;
        this.h2 = h2;
        this.s2 = s2;
        this.normalization = normalization;
    }

    /** Hashes drawn from {@code new SplitMix64(seed)}: h1, s1 (Dx each), then h2, s2 (Dy each). */
    public static CompactBilinear seeded(int dx, int dy, int d, long seed) {
        positive("dx", dx);
        positive("dy", dy);
        positive("d", d);
        SplitMix64 r = new SplitMix64(seed);
        int[] h1 = new int[dx], h2 = new int[dy];
        float[] s1 = new float[dx], s2 = new float[dy];
        for (int i = 0; i < dx; i++) h1[i] = r.nextBelow(d);
        for (int i = 0; i < dx; i++) s1[i] = r.nextSign();
        for (int i = 0; i < dy; i++) h2[i] = r.nextBelow(d);
        for (int i = 0; i < dy; i++) s2[i] = r.nextSign();
        return new CompactBilinear(d, h1, s1, h2, s2, Normalization.NONE);
    }

    /**
     * Explicit hashes (copied), e.g. from a model trained elsewhere: {@code Dx = h1.length},
     * {@code Dy = h2.length}, every {@code h} in {@code [0, d)}, every {@code s} exactly ±1.
     */
    public static CompactBilinear fromHashes(int d, int[] h1, float[] s1, int[] h2, float[] s2) {
        positive("d", d);
        checkHash("h1", "s1", h1, s1, d);
        checkHash("h2", "s2", h2, s2, d);
        return new CompactBilinear(d, h1.clone(), s1.clone(), h2.clone(), s2.clone(), Normalization.NONE);
    }

    /** The same op with {@code normalization} applied to each output sample. */
    public CompactBilinear withNormalization(Normalization normalization) {
        if (normalization == null) throw new IllegalArgumentException("normalization: expected a Normalization (NONE for none), got null");
        return new CompactBilinear(d, h1, s1, h2, s2, normalization);
    }

    public int dx() { return dx; }
    public int dy() { return dy; }
    public int d() { return d; }
    public Normalization normalization() { return normalization; }
    public int[] h1() { return h1.clone(); }
    public int[] h2() { return h2.clone(); }
    public float[] s1() { return s1.clone(); }
    public float[] s2() { return s2.clone(); }

    /** Checks host inputs; every op entry point calls it before any work. */
    public void checkInputs(float[] x, float[] y, int batch) {
        positive("batch", batch);
        checkLength("x", x, batch, dx);
        checkLength("y", y, batch, dy);
    }

    /** Throws unless {@code a} holds exactly {@code rows × cols} values. */
    public static void checkLength(String name, float[] a, int rows, int cols) {
        if (a == null) throw new IllegalArgumentException(name + ": expected " + rows + " × " + cols + " floats, got null");
        if (a.length != (long) rows * cols) {
            throw new IllegalArgumentException(name + ": expected " + rows + " × " + cols + " = " + (long) rows * cols
                    + " floats, got " + a.length);
        }
    }

    private static void positive(String name, int v) {
        if (v < 1) throw new IllegalArgumentException(name + ": expected >= 1, got " + v);
    }

    private static void checkHash(String hName, String sName, int[] h, float[] s, int d) {
        if (h == null) throw new IllegalArgumentException(hName + ": expected an int array of hash values in [0, d), got null");
        if (s == null) throw new IllegalArgumentException(sName + ": expected a float array of ±1 signs, got null");
        if (h.length == 0) throw new IllegalArgumentException(hName + ": expected at least one entry (the input dimension), got 0");
        if (s.length != h.length) {
            throw new IllegalArgumentException(sName + ": expected " + h.length + " signs (the length of " + hName + "), got " + s.length);
        }
        for (int i = 0; i < h.length; i++) {
            if (h[i] < 0 || h[i] >= d) throw new IllegalArgumentException(hName + "[" + i + "]: expected a value in [0, " + d + "), got " + h[i]);
            if (s[i] != 1f && s[i] != -1f) throw new IllegalArgumentException(sName + "[" + i + "]: expected +1 or -1, got " + s[i]);
        }
    }

    @Override public boolean equals(Object o) {
        return o instanceof CompactBilinear c && d == c.d && normalization.equals(c.normalization)
                && Arrays.equals(h1, c.h1) && Arrays.equals(h2, c.h2) && Arrays.equals(s1, c.s1) && Arrays.equals(s2, c.s2);
    }

    @Override public int hashCode() { return 31 * (31 * d + Arrays.hashCode(h1)) + Arrays.hashCode(h2); }

    @Override public String toString() {
        return "CompactBilinear[Dx=" + dx + ", Dy=" + dy + ", d=" + d + ", " + normalization + "]";
    }
}
