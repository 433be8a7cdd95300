package io.bifuse;

import java.util.Arrays;

/**
 * Which objects of each sample are real and which are padding, for the bilinear attention operators
 * ({@link io.bifuse.reference} and the CUDA paths read the same compact form). Object detectors give a
 * variable number of boxes per image; batches pad them to {@code N} rows, and a padded object must get
 * no attention.
 *
 * <p>Three ways to say it: {@link #zeroRows} (ban-vqa's rule: an object whose input row is all zeros is
 * padding, wherever it sits), {@link #counts} (the first {@code count[b]} objects of sample {@code b} are
 * real, the rest padding) and {@link #all} (nothing is padding).
 *
 * <p>A sample may have no real object at all. The attention operators then give a documented result
 * instead of the reference's NaN (a softmax over nothing but {@code −inf}): the sample's attention map is
 * all zeros, so everything pooled from it is zero and its gradients are zero. {@link #emptySamples()}
 * counts such samples for callers who would rather reject them.
 *
 * <p>Immutable. The compact form used by kernels: {@link #counts()} (real objects per sample) and
 * {@link #indices()} ({@code B × N}: row {@code b} lists the real objects of sample {@code b} in
 * ascending order, then {@code −1} for the unused tail), so that padded objects cost no work.
 */
public final class ObjectMask {
    private final int batch, objects;
    private final int[] counts, indices;

    private ObjectMask(int batch, int objects, boolean[] real) {
        this.batch = batch;
        this.objects = objects;
        this.counts = new int[batch];
        this.indices = new int[Math.multiplyExact(batch, objects)];
        Arrays.fill(indices, -1);
        for (int b = 0; b < batch; b++) {
            int c = 0;
            for (int i = 0; i < objects; i++) if (real[b * objects + i]) indices[b * objects + c++] = i;
            counts[b] = c;
        }
    }

    /** Every object of every sample is real. */
    public static ObjectMask all(int batch, int objects) {
        dims(batch, objects);
        boolean[] real = new boolean[Math.multiplyExact(batch, objects)];
        Arrays.fill(real, true);
        return new ObjectMask(batch, objects, real);
    }

    /**
     * Sample {@code b} has {@code counts[b]} real objects, the first ones; the rest are padding.
     *
     * @param counts  {@code B} counts, each in {@code [0, objects]}
     * @param objects {@code N}, the padded number of objects per sample
     */
    public static ObjectMask counts(int[] counts, int objects) {
        if (counts == null) throw new IllegalArgumentException("counts: expected one object count per sample, got null");
        dims(counts.length, objects);
        boolean[] real = new boolean[Math.multiplyExact(counts.length, objects)];
        for (int b = 0; b < counts.length; b++) {
            if (counts[b] < 0 || counts[b] > objects) {
                throw new IllegalArgumentException("counts[" + b + "]: expected 0.." + objects + " objects (N = " + objects
                        + "), got " + counts[b]);
            }
            Arrays.fill(real, b * objects, b * objects + counts[b], true);
        }
        return new ObjectMask(counts.length, objects, real);
    }

    /**
     * ban-vqa's rule: object {@code i} of sample {@code b} is padding exactly when its input row
     * {@code x[b, i, :]} is all zeros ({@code ±0}); a row with any nonzero or NaN entry is real.
     *
     * @param x {@code batch × objects × dim} floats, row-major
     */
    public static ObjectMask zeroRows(float[] x, int batch, int objects, int dim) {
        dims(batch, objects);
        if (dim < 1) throw new IllegalArgumentException("dim: expected >= 1 features per object, got " + dim);
        CompactBilinear.checkLength("x", x, Math.multiplyExact(batch, objects), dim);
        boolean[] real = new boolean[batch * objects];
        for (int r = 0; r < real.length; r++) {
            // NaN != 0 holds, so a NaN row is real, as ban-vqa's 0 == |x|.sum() is false for it
            for (int d = 0, base = r * dim; d < dim && !real[r]; d++) real[r] = x[base + d] != 0;
        }
        return new ObjectMask(batch, objects, real);
    }

    /** An explicit per-object flag: {@code real[b·N + i]} says whether object {@code i} of sample {@code b} is real. */
    public static ObjectMask of(boolean[] real, int batch, int objects) {
        dims(batch, objects);
        if (real == null || real.length != (long) batch * objects) {
            throw new IllegalArgumentException("real: expected " + batch + " × " + objects + " flags, got "
                    + (real == null ? "null" : real.length));
        }
        return new ObjectMask(batch, objects, real.clone());
    }

    private static void dims(int batch, int objects) {
        if (batch < 1) throw new IllegalArgumentException("batch: expected >= 1 samples, got " + batch);
        if (objects < 1) throw new IllegalArgumentException("objects: expected N >= 1 objects per sample, got " + objects);
        if ((long) batch * objects > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("batch, objects: expected batch·objects <= " + Integer.MAX_VALUE + ", got " + (long) batch * objects);
        }
    }

    public int batch() { return batch; }
    /** N, the padded number of objects per sample. */
    public int objects() { return objects; }
    /** Whether object {@code i} of sample {@code b} is real. */
    public boolean isReal(int b, int i) {
        int n = counts[b];
        for (int c = 0; c < n; c++) if (indices[b * objects + c] == i) return true;
        return false;
    }
    /** The number of real objects of sample {@code b}. */
    public int count(int b) { return counts[b]; }
    /** A copy of the per-sample counts ({@code B}). */
    public int[] counts() { return counts.clone(); }
    /** A copy of the compact index lists ({@code B × N}; see the class comment). */
    public int[] indices() { return indices.clone(); }
    /** The number of samples without any real object (their attention is all zeros). */
    public int emptySamples() {
        int e = 0;
        for (int c : counts) if (c == 0) e++;
        return e;
    }

    /** Checks that this mask is for {@code batch × objects}; {@code name} names it in the message. */
    public ObjectMask requireShape(String name, int batch, int objects) {
        if (this.batch != batch || this.objects != objects) {
            throw new IllegalArgumentException(name + ": expected a mask for " + batch + " samples × " + objects + " objects, got "
                    + this.batch + " × " + this.objects);
        }
        return this;
    }

    @Override public boolean equals(Object o) {
        return o instanceof ObjectMask m && batch == m.batch && objects == m.objects && Arrays.equals(indices, m.indices);
    }

    @Override public int hashCode() { return 31 * batch + Arrays.hashCode(indices); }

    @Override public String toString() {
        return "ObjectMask[" + batch + " × " + objects + ", " + Arrays.stream(counts).sum() + " real, " + emptySamples() + " empty samples]";
    }
}
