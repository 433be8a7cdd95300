package io.bifuse.cuda;

import io.bifuse.ObjectMask;

/**
 * An {@link ObjectMask} on a GPU, in its compact form: {@code counts} ({@code B} int32, the real objects
 * of each sample) and {@code indices} ({@code B × N} int32: row {@code b} lists the real objects of
 * sample {@code b} in ascending order; entries past {@code counts[b]} are unspecified). Kernels loop over
 * {@code indices[b, 0..counts[b])} only, so padded objects cost no work, and a sample with
 * {@code counts[b] == 0} gets the documented all-zero attention.
 *
 * <p>Built from a host mask ({@link #upload}) or on the device from the zero rows of the objects' input
 * (no host round trip). Owns its two buffers, unless it is a view of memory an op keeps (the host
 * conveniences' masks); close it when the work that reads it has finished.
 */
public final class DeviceObjectMask implements AutoCloseable {
    private final CudaContext context;
    private final int batch, objects;
    private final DeviceMemory counts, indices;
    private final boolean owned;

    private DeviceObjectMask(CudaContext context, int batch, int objects, DeviceMemory counts, DeviceMemory indices, boolean owned) {
        this.context = context;
        this.batch = batch;
        this.objects = objects;
        this.counts = counts;
        this.indices = indices;
        this.owned = owned;
    }

    /**
     * {@code mask} copied into memory that someone else owns and frees ({@code counts}: {@code B} int32,
     * {@code indices}: {@code B × N} int32, both in {@code context}), after the work queued on
     * {@code stream}; done when this returns. Closing the result frees nothing.
     */
    static DeviceObjectMask uploadInto(CudaContext context, ObjectMask mask, DeviceMemory counts, DeviceMemory indices, CudaStream stream) {
        DeviceBuffer.copyIn(context, counts, jcuda.Pointer.to(mask.counts()), 4L * mask.batch(), stream);
        DeviceBuffer.copyIn(context, indices, jcuda.Pointer.to(mask.indices()), 4L * mask.batch() * mask.objects(), stream);
        return new DeviceObjectMask(context, mask.batch(), mask.objects(), counts, indices, false);
    }

    /** Allocates an unfilled mask for {@code batch × objects} (for the device-side builders). */
    static DeviceObjectMask allocate(CudaContext context, int batch, int objects) {
        DeviceBuffer c = DeviceBuffer.allocate(context, 4L * batch);
        try {
            return new DeviceObjectMask(context, batch, objects, c, DeviceBuffer.allocate(context, 4L * batch * objects), true);
        } catch (RuntimeException e) {
            c.close();
            throw e;
        }
    }

    /** Copies a host mask to the device (synchronously). */
    public static DeviceObjectMask upload(CudaContext context, ObjectMask mask) {
        if (context == null) throw new IllegalArgumentException("context: expected an open CudaContext, got null");
        if (mask == null) throw new IllegalArgumentException("mask: expected an ObjectMask, got null");
        DeviceObjectMask m = allocate(context, mask.batch(), mask.objects());
        try {
            ((DeviceBuffer) m.counts).write(mask.counts());
            ((DeviceBuffer) m.indices).write(mask.indices());
            return m;
        } catch (RuntimeException e) {
            m.close();
            throw e;
        }
    }

    /**
     * ban-vqa's rule on the device, as {@link ObjectMask#zeroRows}: object {@code i} of sample {@code b}
     * is padding exactly when its row {@code x[b·N + i, 0..dim)} is all zeros ({@code ±0}; a NaN makes
     * it real). {@code x}: {@code batch·objects × dim}, any row stride (e.g. the raw object features, or a
     * column block of a wider matrix). The buffers are allocated now; the
     * kernel ({@code ban_att_zero_rows}, one block per sample) is queued on {@code stream}, so the mask is
     * ready for work queued after it on that stream.
     */
    public static DeviceObjectMask fromZeroRows(CudaContext context, DeviceMatrix x, int batch, int objects, CudaStream stream) {
        if (context == null) throw new IllegalArgumentException("context: expected an open CudaContext, got null");
        if (batch < 1) throw new IllegalArgumentException("batch: expected >= 1 samples, got " + batch);
        if (objects < 1) throw new IllegalArgumentException("objects: expected N >= 1 objects per sample, got " + objects);
        if ((long) batch * objects > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("batch, objects: expected batch·objects <= " + Integer.MAX_VALUE + ", got " + (long) batch * objects);
        }
        if (x == null) throw new IllegalArgumentException("x: expected a DeviceMatrix of batch·objects = " + (long) batch * objects + " rows, got null");
        DeviceArgs.matrix("x", x, (long) batch * objects, x.cols());
        DeviceArgs.stream(stream);
        DeviceObjectMask m = allocate(context, batch, objects);
        try {
            fillFromZeroRows(context, m, x, stream);
            return m;
        } catch (RuntimeException e) {
            m.close();
            throw e;
        }
    }

    /** Queues the zero-row rule into an existing mask of the right shape (arguments already checked): ops reuse one per workspace. */
    static void fillFromZeroRows(CudaContext context, DeviceObjectMask m, DeviceMatrix x, CudaStream stream) {
        context.makeCurrent();
        int grid = (int) Math.min(m.batch, 64L * context.multiprocessorCount());
        context.launch(BanAttentionCuda.ZERO_ROWS, grid, 1, BanAttentionCuda.MASK_BLOCK, 0, stream, x.memory(), x.ld(), m.batch, m.objects, x.cols(),
                m.counts, m.indices);
    }

    public int batch() { return batch; }
    /** N, the padded number of objects per sample. */
    public int objects() { return objects; }
    /** {@code B} int32 counts. */
    public DeviceMemory counts() { return counts; }
    /** {@code B × N} int32 index lists. */
    public DeviceMemory indices() { return indices; }
    public boolean isOpen() { return counts.isOpen() && indices.isOpen(); }

    /** Reads the mask back (after the work queued on {@code stream}): for tests and debugging. */
    public ObjectMask download(CudaStream stream) {
        int[] c = new int[batch], idx = new int[batch * objects];
        DeviceBuffer.copyOut(context, counts, jcuda.Pointer.to(c), 4L * c.length, stream);
        DeviceBuffer.copyOut(context, indices, jcuda.Pointer.to(idx), 4L * idx.length, stream);
        boolean[] real = new boolean[batch * objects];
        for (int b = 0; b < batch; b++) {
            for (int k = 0; k < c[b]; k++) real[b * objects + idx[b * objects + k]] = true;
        }
        return ObjectMask.of(real, batch, objects);
    }

    /**
     * Checks, by name, that this mask is open and covers {@code batch} samples of {@code objects}
     * objects; a null mask is accepted when {@code optional} (then every object is real).
     */
    static void check(String name, DeviceObjectMask m, int batch, int objects, boolean optional) {
        if (m == null) {
            if (optional) return;
            throw new IllegalArgumentException(name + ": expected a DeviceObjectMask for " + batch + " × " + objects + " objects, got null");
        }
        if (!m.isOpen()) throw new IllegalArgumentException(name + ": the mask is closed");
        if (m.batch != batch || m.objects != objects) {
            throw new IllegalArgumentException(name + ": expected a mask for " + batch + " samples × " + objects + " objects, got "
                    + m.batch + " × " + m.objects);
        }
    }

    @Override public void close() {
        if (!owned) return;
        ((DeviceBuffer) counts).close();
        ((DeviceBuffer) indices).close();
    }

    @Override public String toString() { return "DeviceObjectMask[" + batch + " × " + objects + "]"; }
}
