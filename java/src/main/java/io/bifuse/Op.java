package io.bifuse;

/**
 * An operator descriptor: immutable math, shapes and parameters, no backend code. {@code B} is the
 * interface every backend of the op implements ({@link #backendType()}).
 *
 * <p>An operator {@code io.bifuse.X} is listed once, in {@link Operators#all()}; every other place
 * finds its parts by their names, one name per operator throughout: the backends
 * {@code io.bifuse.cpu.XCpu} (constructor {@code (X)}) and {@code io.bifuse.cuda.XCuda} (constructor
 * {@code (X, CudaContext)}, its kernels in a static {@code List<KernelSpec> KERNELS}), the float64
 * reference {@code io.bifuse.reference.XReference}, the kernels' source {@code cuda/X.cu}, the tools'
 * suite {@code io.bifuse.tools.XSuite} and the PyTorch peer {@code benchmarks/python/x_peer.py}
 * (X in snake case). {@code OperatorsTest} holds every listed operator to this.
 *
 * @param <B> the op's backend interface (e.g. {@link Mlb.Backend})
 */
public interface Op<B extends OpBackend> {
    /** The interface every backend of this op implements, e.g. {@code Mlb.Backend.class}. */
    Class<B> backendType();
}
