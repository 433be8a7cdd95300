package io.bifuse.cuda;

import java.util.ArrayList;
import java.util.List;
import java.util.function.LongFunction;
import java.util.function.Supplier;

/**
 * The one protocol of every CUDA op's gradient buffers ({@code XCuda.OwnedGradients}): the op lays out
 * the record its backward writes ({@code B}); the memory is new buffers owned here and freed by
 * {@link #close()}, or views of memory that someone else keeps (the host lanes': then closing frees
 * nothing). Poison them ({@link #fill}), pass {@link #buffers()}, read them back as the op's host
 * gradients ({@link #read}).
 *
 * @param <B> the op's record of gradient buffers
 * @param <H> the op's host gradients
 */
public abstract class GradientSet<B, H> implements AutoCloseable {
    private final CudaContext context;
    private final LongFunction<DeviceMemory> external;
    private final List<DeviceBuffer> owned = new ArrayList<>();
    private B buffers;

    /** {@code external}: where the memory comes from (floats → memory), or null for new buffers owned here. */
    GradientSet(CudaContext context, LongFunction<DeviceMemory> external) {
        this.context = context;
        this.external = external;
    }

    /** Called once by the op's constructor: {@code layout} asks {@link #floats(long)} for every tensor. */
    final void layOut(Supplier<B> layout) {
        try {
            buffers = layout.get();
        } catch (RuntimeException e) {
            close();
            throw e;
        }
    }

    /** Memory for {@code count} floats: a new owned buffer, or the external memory's. */
    final DeviceMemory floats(long count) {
        if (external != null) return external.apply(count);
        DeviceBuffer b = DeviceBuffer.allocateFloats(context, count);
        owned.add(b);
        return b;
    }

    /** One tensor back to the host after the work queued on {@code stream}; null stays null. */
    final float[] read(DeviceMemory m, CudaStream stream) {
        return m == null ? null : DeviceBuffer.toHost(context, m, stream);
    }

    /** Buffers for one layer's weight and bias gradients (no bias buffer where the layer has none). */
    final MlbAttentionCuda.LayerBuffers layer(io.bifuse.Linear l) {
        return new MlbAttentionCuda.LayerBuffers(floats((long) l.out() * l.in()), l.hasBias() ? floats(l.out()) : null);
    }

    /** One layer's gradients back to the host, as {@link #read(DeviceMemory, CudaStream)}. */
    final io.bifuse.LinearGradients read(MlbAttentionCuda.LayerBuffers b, CudaStream stream) {
        return new io.bifuse.LinearGradients(read(b.weight(), stream), read(b.bias(), stream));
    }

    public final B buffers() { return buffers; }

    /** Fills every owned buffer with {@code value} (NaN before a test, so that an unwritten gradient shows). */
    public final void fill(float value) { for (DeviceBuffer b : owned) b.fill(value); }

    /** Every gradient copied to the host after the work queued on {@code stream}, as the op's host gradients. */
    public abstract H read(CudaStream stream);

    /** Frees the owned buffers (none for external memory); idempotent. */
    @Override public final void close() {
        for (int i = owned.size() - 1; i >= 0; i--) owned.get(i).close();
        owned.clear();
    }
}
