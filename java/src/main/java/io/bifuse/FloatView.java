package io.bifuse;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.FloatBuffer;

/**
 * A run of floats a caller already holds, as an input or an output of a backend's host forms: part of
 * a {@code float[]} ({@link #of(float[], int, int)}), a {@link FloatBuffer} (its position to its limit)
 * or a {@link MemorySegment} (all of it, floats in the platform's byte order: off-heap memory of
 * another library, a mapped file, an arena's allocation). A view is a window, not a copy: it reads and
 * writes the caller's memory, which must stay valid (and, for a segment, its arena open) while a call
 * uses it.
 *
 * <p>Where the floats are a Java array, {@link #array()} and {@link #offset()} give it, so a backend
 * can read and write it in place; otherwise a backend copies through {@link #copyTo} and
 * {@link #copyFrom}.
 */
public final class FloatView {
    private final float[] array;
    private final int offset;
    private final FloatBuffer buffer;
    private final MemorySegment segment;
    private final long length;

    private FloatView(float[] array, int offset, FloatBuffer buffer, MemorySegment segment, long length) {
        this.array = array;
        this.offset = offset;
        this.buffer = buffer;
        this.segment = segment;
        this.length = length;
    }

    /** All of {@code a}. */
    public static FloatView of(float[] a) {
        if (a == null) throw new IllegalArgumentException("array: expected a float[], got null");
        return new FloatView(a, 0, null, null, a.length);
    }

    /** {@code a[offset, offset + length)}. */
    public static FloatView of(float[] a, int offset, int length) {
        if (a == null) throw new IllegalArgumentException("array: expected a float[], got null");
        if (offset < 0 || length < 0 || (long) offset + length > a.length) {
            throw new IllegalArgumentException("offset, length: expected 0 <= offset and offset + length <= " + a.length
                    + " (the array's length), got offset " + offset + ", length " + length);
        }
        return new FloatView(a, offset, null, null, length);
    }

    /** {@code b}'s floats from its position to its limit (the buffer's position is not moved). */
    public static FloatView of(FloatBuffer b) {
        if (b == null) throw new IllegalArgumentException("buffer: expected a FloatBuffer, got null");
        if (b.hasArray()) return new FloatView(b.array(), b.arrayOffset() + b.position(), null, null, b.remaining());
        return new FloatView(null, 0, b.duplicate(), null, b.remaining());
    }

    /** {@code s} as {@code s.byteSize() / 4} floats in native byte order; its size must be a whole number of floats. */
    public static FloatView of(MemorySegment s) {
        if (s == null) throw new IllegalArgumentException("segment: expected a MemorySegment, got null");
        if (s.byteSize() % Float.BYTES != 0) {
            throw new IllegalArgumentException("segment: expected a whole number of floats, got " + s.byteSize() + " bytes");
        }
        long n = s.byteSize() / Float.BYTES;
        if (s.heapBase().orElse(null) instanceof float[] a && s.address() % Float.BYTES == 0) {
            return new FloatView(a, (int) (s.address() / Float.BYTES), null, null, n);
        }
        return new FloatView(null, 0, null, s, n);
    }

    /** How many floats. */
    public long length() { return length; }

    /** The Java array holding these floats, or null (a direct buffer or an off-heap segment). */
    public float[] array() { return array; }

    /** Where these floats start in {@link #array()} (0 when there is none). */
    public int offset() { return offset; }

    /** True when this is exactly one whole array (then a backend's {@code float[]} form takes it as it is). */
    public boolean isWholeArray() { return array != null && offset == 0 && length == array.length; }

    /** Copies {@code n} floats from the start of this view into {@code dst[dstOffset...]}. */
    public void copyTo(float[] dst, int dstOffset, int n) {
        bounds(n, dst.length, dstOffset);
        if (array != null) System.arraycopy(array, offset, dst, dstOffset, n);
        else if (buffer != null) buffer.get(buffer.position(), dst, dstOffset, n);
        else MemorySegment.copy(segment, ValueLayout.JAVA_FLOAT_UNALIGNED, 0, dst, dstOffset, n);
    }

    /** Copies {@code n} floats from {@code src[srcOffset...]} into the start of this view. */
    public void copyFrom(float[] src, int srcOffset, int n) {
        bounds(n, src.length, srcOffset);
        if (array != null) System.arraycopy(src, srcOffset, array, offset, n);
        else if (buffer != null) buffer.put(buffer.position(), src, srcOffset, n);
        else MemorySegment.copy(src, srcOffset, segment, ValueLayout.JAVA_FLOAT_UNALIGNED, 0, n);
    }

    private void bounds(int n, int arrayLength, int arrayOffset) {
        if (n < 0 || n > length || arrayOffset < 0 || (long) arrayOffset + n > arrayLength) {
            throw new IllegalArgumentException("copy of " + n + " floats: expected at most " + length + " (the view's length) and a range inside the "
                    + arrayLength + "-float array from " + arrayOffset);
        }
    }

    /**
     * The floats of input {@code name}, which must be {@code expected} long, as one array: the view's
     * own array when it is a whole one, else a copy.
     */
    public static float[] input(String name, FloatView v, long expected) {
        requireLength(name, v, expected);
        if (v.isWholeArray()) return v.array;
        float[] a = new float[(int) expected];
        v.copyTo(a, 0, (int) expected);
        return a;
    }

    /** Throws, naming {@code name}, unless {@code v} holds exactly {@code expected} floats. */
    public static void requireLength(String name, FloatView v, long expected) {
        if (v == null) throw new IllegalArgumentException(name + ": expected a FloatView of " + expected + " floats, got null");
        if (v.length != expected) throw new IllegalArgumentException(name + ": expected " + expected + " floats, got a view of " + v.length);
        if (expected > Integer.MAX_VALUE - 8) {
            throw new IllegalArgumentException(name + ": " + expected + " floats pass what one Java array holds; split the batch");
        }
    }

    @Override public String toString() {
        String where = array != null ? "float[" + array.length + "] from " + offset : buffer != null ? "direct FloatBuffer" : "MemorySegment " + segment;
        return "FloatView[" + length + " floats, " + where + "]";
    }
}
