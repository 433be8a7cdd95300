package io.bifuse.cuda;

import io.bifuse.Precision;
import java.util.ArrayList;
import java.util.List;

/**
 * The skeleton every CUDA op shares, written once: the checks of the constructor's common arguments
 * (each by name, before anything is allocated), the library the op needs, what it owns for its life
 * (device weights, nested ops) and frees in reverse order, its workspaces and host-call lanes, its
 * name, its byte count, and the order of {@link #close()}: host lanes, then workspaces (each after the
 * work queued on its stream), then the weights. An op's class adds its math: the kernels, the GEMMs
 * and its call forms.
 *
 * <p>Only this package extends it: its constructor is package-private (which closes the hierarchy as a
 * {@code sealed ... permits} list would, without a shared list that every new operator must edit).
 *
 * @param <O> the op's descriptor
 */
public abstract class CudaOp<O> implements AutoCloseable {

    /** The library an op's construction requires, checked with the library's own explanation. */
    enum Needs { NOTHING, CUBLAS, CUFFT }

    final O op;
    final CudaContext context;
    final Precision precision;
    final HostCalls host;
    private final String name;
    private final List<AutoCloseable> owned = new ArrayList<>();

    /**
     * {@code what}: the descriptor with its article for the null-argument message ("an Mlb");
     * {@code lanes}: how many host-call lanes to keep (the op's workspace count).
     */
    CudaOp(String what, O op, CudaContext context, Precision precision, Needs needs, int lanes) {
        if (op == null) throw new IllegalArgumentException("op: expected " + what + ", got null");
        if (precision == null) throw new IllegalArgumentException("precision: expected FP32, TF32 or BF16, got null");
        if (context == null) throw new IllegalArgumentException("context: expected an open CudaContext, got null");
        this.name = what.substring(what.indexOf(' ') + 1);
        if (needs == Needs.CUBLAS && !CublasHandle.libraryAvailable()) {
            throw new LibraryUnavailableException(name, "cuBLAS", CublasHandle.describeLibrary());
        }
        if (needs == Needs.CUFFT && !CufftPlan.libraryAvailable()) {
            throw new LibraryUnavailableException(name, "cuFFT", CufftPlan.describeLibrary());
        }
        this.op = op;
        this.context = context;
        this.precision = precision;
        this.host = new HostCalls(context, lanes, this::release);
    }

    /** The op's workspace cache (made by the op's class: it knows the call shape and the workspace). */
    abstract Workspaces<?, ?> workspaces();

    /** Registers {@code r} as held for the op's life: freed by {@link #close()}, counted by {@link #deviceBytes()}. */
    final <T extends AutoCloseable> T own(T r) {
        owned.add(r);
        return r;
    }

    /** For a constructor that fails part way: frees what it owned so far and gives back {@code e} to rethrow. */
    final RuntimeException failed(RuntimeException e) {
        try { freeOwned(); } catch (RuntimeException suppressed) { e.addSuppressed(suppressed); }
        return e;
    }

    public final O op() { return op; }

    /** The GEMM arithmetic (FP32 for the ops without GEMMs). */
    public final Precision precision() { return precision; }

    /** {@code cuda-fp32}, {@code cuda-tf32} or {@code cuda-bf16}; {@code cuda-sim-...} on the simulated device. */
    public final String backend() { return Cuda.backendName(precision); }

    /**
     * Frees the workspaces that belong to {@code stream} (e.g. a short-lived stream about to be destroyed),
     * this op's and those of the ops it is made of (a unit's attention op).
     */
    public final void release(CudaStream stream) {
        workspaces().release(stream);
        for (AutoCloseable r : owned) if (r instanceof CudaOp<?> nested) nested.release(stream);
    }

    /**
     * Frees what the {@code float[]} conveniences keep between calls (their private streams, those
     * streams' workspaces, and input/output buffers grown to the largest call so far), e.g. after a
     * one-off large call; the next such call makes them again. Calls in flight keep theirs.
     */
    public final void releaseHostLanes() { host.trim(); }

    /** Bytes of device memory this op holds now: weights and nested ops, workspaces, host-call lanes. */
    public final long deviceBytes() {
        long b = workspaces().bytes() + host.bytes();
        for (AutoCloseable r : owned) {
            b += switch (r) {
                case DeviceBuffer d -> d.byteSize();
                case LinearCuda l -> l.deviceBytes();
                case NormalizationCuda n -> n.deviceBytes();
                case CudaOp<?> c -> c.deviceBytes();
                case CompactBilinearCuda.HashTable t -> t.bytes();
                case SharedMemoryFft.Tables t -> t.bytes();
                default -> 0; // a resource without device memory of its own
            };
        }
        return b;
    }

    /**
     * Frees everything; idempotent. Work queued on other streams that uses this op must have finished;
     * the op's own workspaces wait for their streams.
     */
    @Override public final void close() {
        host.close();
        if (!workspaces().close()) return;
        freeOwned();
    }

    private void freeOwned() {
        RuntimeException first = null;
        for (int i = owned.size() - 1; i >= 0; i--) {
            try { owned.get(i).close(); } catch (Exception e) { if (first == null) first = e instanceof RuntimeException re ? re : new IllegalStateException(e); }
        }
        owned.clear();
        if (first != null) throw first;
    }

    @Override public String toString() { return name + "Cuda[" + op + (precision == Precision.FP32 ? "" : ", " + precision) + "]"; }
}
