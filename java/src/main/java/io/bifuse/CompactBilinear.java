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
 * the normalization cancels. Optionally an output layer follows ({@link #withOutput}):
 * {@code out = σ_out(z·Wᵀ + b)}, as block.bootstrap's {@code MCB} fusion ({@code linear_out},
 * {@code activ_output}, relu by default; {@link #fromStateDict} loads it).
 *
 * <p>Shapes, row-major: {@code x} is {@code B × Dx}, {@code y} is {@code B × Dy}, {@code z} is
 * {@code B × d} ({@code B × Out} with an output layer: {@link #outputWidth()}); backward takes
 * {@code g = ∂L/∂out} of that shape and returns {@code ∂L/∂x}, {@code ∂L/∂y} (and the output layer's
 * gradients). Any {@code Dx, Dy, d, B >= 1}.
 *
 * <p>Hashes: {@code h ∈ [0, d)}, {@code s ∈ {−1, +1}}, fixed (not learned). Either given
 * ({@link #fromHashes}, to load a trained model) or drawn by {@link #seeded} from {@link SplitMix64}
 * in the order h1[0..Dx), s1[0..Dx), h2[0..Dy), s2[0..Dy).
 *
 * <p>Backends ({@link Backend}): {@code io.bifuse.cpu.CompactBilinearCpu} (count sketch + FFT in
 * float32, multithreaded) and {@code io.bifuse.cuda.CompactBilinearCuda}; {@code io.bifuse.reference.CompactBilinearReference}
 * is the definition-based oracle both are tested against.
 */
public final class CompactBilinear implements Op<CompactBilinear.Backend>, Fusion {
    /**
     * What every backend of this op offers on host arrays ({@code CompactBilinearCpu} in io.bifuse.cpu, {@code CompactBilinearCuda}
     * in io.bifuse.cuda): {@code forward} {@code B × Dx}, {@code B × Dy} → {@code B × outputWidth}; {@code backward}
     * the gradients of the inputs (and of the output layer) given {@code gradOut = ∂L/∂out} ({@code B × outputWidth}),
     * recomputing the forward from {@code x, y}, written, not accumulated.
     */
    public interface Backend extends FusionBackend<CompactBilinear, Gradients> {}

    @Override public Class<Backend> backendType() { return Backend.class; }

    private final int dx, dy, d;
    private final int[] h1, h2;
    private final float[] s1, s2;
    private final Normalization normalization;
    private final Linear linearOut; // null: the output is z
    private final Activation outputActivation;

    private CompactBilinear(int d, int[] h1, float[] s1, int[] h2, float[] s2, Normalization normalization) {
        this(d, h1, s1, h2, s2, normalization, null, Activation.NONE);
    }

    private CompactBilinear(int d, int[] h1, float[] s1, int[] h2, float[] s2, Normalization normalization, Linear linearOut,
                            Activation outputActivation) {
        this.dx = h1.length;
        this.dy = h2.length;
        this.d = d;
        this.h1 = h1;
        this.s1 = s1;
        this.h2 = h2;
        this.s2 = s2;
        this.normalization = normalization;
        this.linearOut = linearOut;
        this.outputActivation = outputActivation;
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

    /** The same op with {@code normalization} applied to each sample's z (before the output layer, if any). */
    public CompactBilinear withNormalization(Normalization normalization) {
        if (normalization == null) throw new IllegalArgumentException("normalization: expected a Normalization (NONE for none), got null");
        return new CompactBilinear(d, h1, s1, h2, s2, normalization, linearOut, outputActivation);
    }

    /**
     * The same pooling followed by an output layer {@code linearOut} ({@code d → Out}, block.bootstrap's
     * {@code linear_out}) and {@code outputActivation} ({@code activ_output}; {@link Activation#NONE} for none).
     * {@code linearOut} null removes the output layer (then {@code outputActivation} must be NONE).
     */
    public CompactBilinear withOutput(Linear linearOut, Activation outputActivation) {
        Activation.require("outputActivation", outputActivation);
        if (linearOut == null) {
            if (outputActivation != Activation.NONE) {
                throw new IllegalArgumentException("outputActivation: expected NONE without an output layer (linearOut null), got " + outputActivation);
            }
            return new CompactBilinear(d, h1, s1, h2, s2, normalization);
        }
        Linear.require("linearOut", linearOut);
        if (linearOut.in() != d) {
            throw new IllegalArgumentException("linearOut: expected a layer " + d + " → Out (in = d), got " + linearOut.in() + " → " + linearOut.out());
        }
        return new CompactBilinear(d, h1, s1, h2, s2, normalization, linearOut, outputActivation);
    }

    /**
     * block.bootstrap's {@code MCB} fusion from its state dict (names after {@code prefix}): the sketches'
     * buffers {@code mcb.sketch1.h}, {@code mcb.sketch1.s} (x's, {@code Dx} each), {@code mcb.sketch2.h},
     * {@code mcb.sketch2.s} (y's), and {@code linear_out} ({@code mm_dim → Out}); {@code d = mm_dim} is
     * {@code linear_out}'s input width. No normalization (the module has none). {@code activOutput} is the
     * module's {@code activ_output} (its default RELU), which a state dict does not record. Dropout is
     * identity (inference).
     */
    public static CompactBilinear fromStateDict(StateDict sd, String prefix, Activation activOutput) {
        java.util.Objects.requireNonNull(sd, "sd");
        java.util.Objects.requireNonNull(prefix, "prefix");
        Activation.require("activOutput", activOutput);
        Linear out = Linear.fromStateDict(sd, prefix + "linear_out");
        int d = out.in();
        int[] h1 = hashes(sd, prefix + "mcb.sketch1.h", d), h2 = hashes(sd, prefix + "mcb.sketch2.h", d);
        float[] s1 = signs(sd, prefix + "mcb.sketch1.s", h1.length), s2 = signs(sd, prefix + "mcb.sketch2.s", h2.length);
        return new CompactBilinear(d, h1, s1, h2, s2, Normalization.NONE).withOutput(out, activOutput);
    }

    private static int[] hashes(StateDict sd, String name, int d) {
        long[] shape = sd.info(name).shape();
        if (shape.length != 1 || shape[0] < 1 || shape[0] > Integer.MAX_VALUE) {
            throw new IllegalArgumentException(sd.source() + ": '" + name + "': expected a 1-D hash vector (one entry per input feature), got shape "
                    + Arrays.toString(shape));
        }
        long[] v = sd.longs(name);
        int[] h = new int[v.length];
        for (int i = 0; i < v.length; i++) {
            if (v[i] < 0 || v[i] >= d) {
                throw new IllegalArgumentException(sd.source() + ": '" + name + "'[" + i + "]: expected a hash in [0, " + d
                        + ") (mm_dim, linear_out's columns), got " + v[i]);
            }
            h[i] = (int) v[i];
        }
        return h;
    }

    private static float[] signs(StateDict sd, String name, int n) {
        double[] v = sd.doubles(name);
        if (sd.info(name).shape().length != 1 || v.length != n) {
            throw new IllegalArgumentException(sd.source() + ": '" + name + "': expected " + n + " signs (as the sketch's h), got shape "
                    + Arrays.toString(sd.info(name).shape()));
        }
        float[] s = new float[n];
        for (int i = 0; i < n; i++) {
            if (v[i] != 1 && v[i] != -1) throw new IllegalArgumentException(sd.source() + ": '" + name + "'[" + i + "]: expected +1 or -1, got " + v[i]);
            s[i] = (float) v[i];
        }
        return s;
    }

    /**
     * The names of {@link Gradients#tensors()}: {@code input.0}, {@code input.1}, and with an output
     * layer block.bootstrap's {@code linear_out.weight}, {@code linear_out.bias} (where it has one).
     */
    public java.util.List<String> gradientNames() {
        java.util.List<String> n = new java.util.ArrayList<>(java.util.List.of("input.0", "input.1"));
        if (linearOut != null) {
            n.add("linear_out.weight");
            if (linearOut.hasBias()) n.add("linear_out.bias");
        }
        return n;
    }

    @Override public int dx() { return dx; }
    @Override public int dy() { return dy; }
    /** The sketch width (block.bootstrap's mm_dim). */
    public int d() { return d; }
    /** The output width: d, or the output layer's Out. */
    public int outputWidth() { return linearOut == null ? d : linearOut.out(); }
    /** {@link #outputWidth()}, as a {@link Fusion}. */
    @Override public int out() { return outputWidth(); }
    /** Whether an output layer follows the pooling ({@link #withOutput}). */
    public boolean hasOutput() { return linearOut != null; }
    /** The output layer ({@code d → Out}), or null without one. */
    public Linear linearOut() { return linearOut; }
    /** σ_out after the output layer ({@link Activation#NONE} without one). */
    public Activation outputActivation() { return outputActivation; }
    /** This op's pooling alone (no output layer): the input of the output layer. */
    public CompactBilinear pooling() { return linearOut == null ? this : new CompactBilinear(d, h1, s1, h2, s2, normalization); }
    public Normalization normalization() { return normalization; }
    public int[] h1() { return h1.clone(); }
    public int[] h2() { return h2.clone(); }
    public float[] s1() { return s1.clone(); }
    public float[] s2() { return s2.clone(); }

    /** Checks host inputs; every op entry point calls it before any work. */
    @Override public void checkInputs(float[] x, float[] y, int batch) {
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
                && Arrays.equals(h1, c.h1) && Arrays.equals(h2, c.h2) && Arrays.equals(s1, c.s1) && Arrays.equals(s2, c.s2)
                && java.util.Objects.equals(linearOut, c.linearOut) && outputActivation == c.outputActivation;
    }

    @Override public int hashCode() { return 31 * (31 * d + Arrays.hashCode(h1)) + Arrays.hashCode(h2); }

    @Override public String toString() {
        return "CompactBilinear[Dx=" + dx + ", Dy=" + dy + ", d=" + d + ", " + normalization + (linearOut == null ? ""
                : ", linear_out " + d + " → " + linearOut.out() + (outputActivation == Activation.NONE ? "" : " " + outputActivation)) + "]";
    }
}
