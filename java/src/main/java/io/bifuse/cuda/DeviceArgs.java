package io.bifuse.cuda;

import io.bifuse.Linear;

/** The argument checks every CUDA op runs before it queues anything: each message starts with the argument's name. */
final class DeviceArgs {
    private DeviceArgs() {}

    static void batch(int batch) {
        if (batch < 1) throw new IllegalArgumentException("batch: expected >= 1, got " + batch);
    }

    static void stream(CudaStream stream) {
        if (stream == null) throw new IllegalArgumentException("stream: expected a CudaStream (CudaStream.LEGACY_DEFAULT for the default), got null");
    }

    /** {@code m} holds at least {@code rows × cols} floats, is open and 4-byte aligned. */
    static void memory(String name, DeviceMemory m, long rows, long cols) {
        if (m == null) throw new IllegalArgumentException(name + ": expected device memory for " + rows + " × " + cols + " floats, got null");
        if (!m.isOpen()) throw new IllegalArgumentException(name + ": the device buffer is closed");
        long need = 4L * rows * cols;
        if (m.byteSize() < need) {
            throw new IllegalArgumentException(name + ": expected at least " + rows + " × " + cols + " floats (" + need
                    + " bytes), got " + m.byteSize() + " bytes");
        }
        if (m.address() % 4 != 0) throw new IllegalArgumentException(name + ": expected a 4-byte aligned address, got 0x" + Long.toHexString(m.address()));
    }

    /**
     * {@code m} is a {@code rows × cols} matrix (any row stride; its memory spans every element, which
     * {@link DeviceMatrix} checked) whose memory is open and 4-byte aligned. Returns it.
     */
    static DeviceMatrix matrix(String name, DeviceMatrix m, long rows, long cols) {
        if (m == null) throw new IllegalArgumentException(name + ": expected a DeviceMatrix of " + rows + " × " + cols + ", got null");
        if (m.rows() != rows || m.cols() != cols) {
            throw new IllegalArgumentException(name + ": expected " + rows + " × " + cols + ", got " + m.rows() + " × " + m.cols());
        }
        DeviceMemory mem = m.memory();
        if (!mem.isOpen()) throw new IllegalArgumentException(name + ": the device buffer is closed");
        if (mem.address() % 4 != 0) throw new IllegalArgumentException(name + ": expected a 4-byte aligned address, got 0x" + Long.toHexString(mem.address()));
        return m;
    }

    /** A layer's gradient buffers: the weight's {@code out × in}, the bias's {@code out}, the bias null exactly when the layer has none. */
    static void layer(String wName, String bName, DeviceMemory w, DeviceMemory b, Linear l) {
        memory(wName, w, l.out(), l.in());
        if (l.hasBias()) memory(bName, b, 1, l.out());
        else if (b != null) throw new IllegalArgumentException(bName + ": expected null (the layer has no bias), got device memory");
    }

    /**
     * At most this many blocks per grid-stride launch when positive. At the sizes tests can afford, a
     * full grid covers the work in one trip, so the loops' second trips (the index arithmetic past
     * {@code gridDim.x * blockDim.x}) would never run; the grid-stride tests set a cap of a block or two.
     * Starts from the system property {@code bifuse.cuda.gridCap} (0: no cap).
     */
    static volatile int gridCap = Integer.getInteger("bifuse.cuda.gridCap", 0);

    /** Blocks for a grid-stride kernel: enough to fill the GPU, never more than the work. */
    /** Checks the (B, L) of an attention call: both at least 1, their product an int. */
    static void batchCells(int batch, int cells) {
        if (batch < 1) throw new IllegalArgumentException("batch: expected >= 1, got " + batch);
        if (cells < 1) throw new IllegalArgumentException("cells: expected >= 1, got " + cells);
        if ((long) batch * cells > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("batch, cells: expected batch·cells <= " + Integer.MAX_VALUE + ", got " + (long) batch * cells);
        }
    }

    /** Kernels that loop over work units (one block each): one block per unit up to 64 per multiprocessor (and {@link #gridCap}). */
    static int units(CudaContext context, long n) {
        long full = 64L * context.multiprocessorCount(), cap = gridCap;
        return (int) Math.max(1, Math.min(n, cap > 0 ? Math.min(full, cap) : full));
    }

    /** {@code m} from float {@code offsetFloats} on. */
    static DeviceMemory from(DeviceMemory m, long offsetFloats) {
        return m.slice(4 * offsetFloats, m.byteSize() - 4 * offsetFloats);
    }

    /** One block per row (sample) up to 65535 and {@link #gridCap}: the kernels that stride over rows by {@code gridDim.x}. */
    static int rowGrid(int rows) {
        int cap = gridCap > 0 ? gridCap : 65535;
        return Math.max(1, Math.min(rows, Math.min(cap, 65535)));
    }

    static int grid(CudaContext context, long threads, int block) {
        long blocks = (threads + block - 1) / block;
        long full = 32L * context.multiprocessorCount() * (2048 / block), cap = gridCap;
        return (int) Math.max(1, Math.min(blocks, cap > 0 ? Math.min(full, cap) : full));
    }
}
