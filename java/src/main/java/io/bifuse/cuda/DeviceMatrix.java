package io.bifuse.cuda;

/**
 * A row-major float matrix in device memory: {@code rows × cols} elements, element {@code (r, c)} at
 * float {@code r·ld + c} of {@code memory}. The shape travels with the address, so an op checks every
 * matrix it is given against its own shapes (by the argument's name) before anything is queued, and a
 * column block of a wider matrix (a projection written into part of a concatenated buffer, a sub-range
 * of a caller's activations) is a matrix of its own, not an address plus a loose stride.
 *
 * <p>Construction checks that the memory holds every element it names: {@code (rows - 1)·ld + cols}
 * floats (none when {@code rows} is 0).
 *
 * @param name   what the matrix is, for error messages ({@code "x"}, {@code "grads.dx"})
 * @param memory the device memory (a buffer, a slice, or a wrapped address)
 * @param rows   >= 0
 * @param cols   >= 1
 * @param ld     the row stride in floats, >= cols
 */
public record DeviceMatrix(String name, DeviceMemory memory, int rows, int cols, int ld) {
    public DeviceMatrix {
        if (name == null || name.isEmpty()) throw new IllegalArgumentException("name: expected the argument's name, got " + name);
        if (memory == null) throw new IllegalArgumentException(name + ": expected device memory, got null");
        if (rows < 0) throw new IllegalArgumentException(name + ": expected rows >= 0, got " + rows);
        if (cols < 1) throw new IllegalArgumentException(name + ": expected cols >= 1, got " + cols);
        if (ld < cols) throw new IllegalArgumentException(name + ": row stride " + ld + " is below its " + cols + " columns");
        long need = floatsSpanned(rows, cols, ld) * Float.BYTES;
        if (memory.byteSize() < need) {
            throw new IllegalArgumentException(name + ": " + rows + " × " + cols + " floats with row stride " + ld + " need " + need
                    + " bytes, the memory has " + memory.byteSize());
        }
    }

    /** A dense matrix (row stride = cols). */
    public static DeviceMatrix of(String name, DeviceMemory memory, int rows, int cols) {
        return new DeviceMatrix(name, memory, rows, cols, cols);
    }

    /** Floats from the first element to one past the last: {@code (rows - 1)·ld + cols}, 0 for no rows. */
    static long floatsSpanned(long rows, long cols, long ld) { return rows == 0 ? 0 : (rows - 1) * ld + cols; }

    /** Whether the rows follow each other with no gap (a GEMM may then treat it as one vector). */
    public boolean isDense() { return ld == cols; }

    /** The device address of element (0, 0). */
    public long address() { return memory.address(); }

    /** Columns {@code [from, from + count)} of every row: the same rows and stride, {@code count} columns. */
    public DeviceMatrix columns(int from, int count) {
        if (from < 0 || count < 1 || from > cols - count) {
            throw new IllegalArgumentException(name + ": columns [" + from + ", " + ((long) from + count) + ") are outside its " + cols);
        }
        return new DeviceMatrix(name + "[:, " + from + ":" + (from + count) + "]", tail((long) from * Float.BYTES), rows, count, ld);
    }

    /** Rows {@code [from, from + count)}: the same columns and stride. */
    public DeviceMatrix rows(int from, int count) {
        if (from < 0 || count < 0 || from > rows - count) {
            throw new IllegalArgumentException(name + ": rows [" + from + ", " + ((long) from + count) + ") are outside its " + rows);
        }
        return new DeviceMatrix(name + "[" + from + ":" + (from + count) + "]", tail((long) from * ld * Float.BYTES), count, cols, ld);
    }

    /** The memory from {@code byteOffset} on (empty past the end: an empty sub-matrix has nothing to read). */
    private DeviceMemory tail(long byteOffset) {
        long n = memory.byteSize();
        return byteOffset >= n ? memory.slice(n, 0) : memory.slice(byteOffset, n - byteOffset);
    }

    /** Throws, naming this matrix, unless it is {@code rows × cols}; returns it. */
    public DeviceMatrix require(int rows, int cols) {
        if (this.rows != rows || this.cols != cols) {
            throw new IllegalArgumentException(name + ": expected " + rows + " × " + cols + ", got " + this.rows + " × " + this.cols);
        }
        return this;
    }

    /** Throws, naming this matrix, unless it has {@code cols} columns; returns it. */
    public DeviceMatrix requireCols(int cols) {
        if (this.cols != cols) throw new IllegalArgumentException(name + ": expected " + cols + " columns, got " + this.cols);
        return this;
    }

    @Override public String toString() {
        return name + " (" + rows + " × " + cols + (isDense() ? "" : ", row stride " + ld) + ")";
    }
}
