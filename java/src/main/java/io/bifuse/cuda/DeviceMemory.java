package io.bifuse.cuda;

/**
 * A range of device memory that an op reads or writes: either a {@link DeviceBuffer} that bifuse
 * allocated, a slice of one, or a {@link #wrap wrapped} raw address that another library in the same
 * process allocated (PyTorch through a JVM bridge, ONNX Runtime, another JCuda program): ops use such
 * memory in place, with no copy.
 */
public sealed interface DeviceMemory permits DeviceBuffer, DeviceMemory.View {

    /** The device address; throws {@link IllegalStateException} if the owning buffer is closed. */
    long address();

    /** Size in bytes. */
    long byteSize();

    /** Whether the memory may still be used (a wrapped address is always considered open). */
    boolean isOpen();

    /**
     * Device memory that bifuse does not own: {@code address} must be a device (or managed) address
     * valid in the context the op runs in, with at least {@code byteSize} bytes. Closing nothing,
     * freeing nothing: the caller keeps ownership.
     */
    static DeviceMemory wrap(long address, long byteSize) {
        if (address == 0) throw new IllegalArgumentException("address: expected a non-null device address, got 0");
        if (byteSize < 0) throw new IllegalArgumentException("byteSize: expected >= 0, got " + byteSize);
        return new View(null, address, byteSize);
    }

    /** A sub-range of this memory: {@code [byteOffset, byteOffset + byteSize)}. */
    default DeviceMemory slice(long byteOffset, long byteSize) {
        // byteOffset + byteSize can overflow (slice(Long.MAX_VALUE, 1)): compare against what is left instead.
        if (byteOffset < 0 || byteSize < 0 || byteOffset > byteSize() || byteSize > byteSize() - byteOffset) {
            throw new IllegalArgumentException("slice: offset " + byteOffset + " and size " + byteSize
                    + " bytes are outside the " + byteSize() + " bytes of this memory");
        }
        return new View(this, byteOffset, byteSize);
    }

    /** A view: a wrapped raw address (parent null) or a slice of a parent. */
    record View(DeviceMemory parent, long offsetOrAddress, long byteSize) implements DeviceMemory {
        @Override public long address() {
            return parent == null ? offsetOrAddress : parent.address() + offsetOrAddress;
        }
        @Override public boolean isOpen() { return parent == null || parent.isOpen(); }
    }
}
