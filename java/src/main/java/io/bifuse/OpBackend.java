package io.bifuse;

/**
 * What every operator's backend is, whatever the op: named and closeable. Each descriptor's
 * {@code Backend} interface (e.g. {@link Mlb.Backend}) extends it with the op's host-array forms;
 * {@code io.bifuse.cpu} and {@code io.bifuse.cuda} implement them.
 */
public interface OpBackend extends AutoCloseable {
    /**
     * Which backend this is: {@code cpu-fp32} (bifuse's float32 CPU path), {@code cuda-fp32}, {@code cuda-tf32},
     * {@code cuda-bf16}, and {@code cuda-sim-...} on the simulated device.
     */
    String backend();

    /** Frees what the backend holds (device weights, workspaces, streams); nothing on the CPU. */
    @Override void close();
}
