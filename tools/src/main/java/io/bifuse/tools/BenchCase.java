package io.bifuse.tools;

import io.bifuse.cuda.CudaContext;
import io.bifuse.cuda.CudaOp;
import io.bifuse.cuda.CudaStream;
import java.util.List;
import java.util.SplittableRandom;
import java.util.function.Function;
import java.util.function.Supplier;

/**
 * One size of one operator as {@code bench} and the JMH benchmarks time it, declared once by the op's
 * {@link Suite}: its labels, the bytes and FLOPs a call must at least move and do (the cost model the
 * PyTorch peer shares), and how to make the timed calls on the CPU backends and on each GPU variant.
 * Inputs and device memory are made only when a row is run ({@code host}, {@code device}), from the
 * random source the runner gives (bench: its printed seed; JMH: a fixed one).
 *
 * @param op        the operator's name ({@code "Mlb"}); rows are {@code op.forward} and {@code op.fwd+bwd}
 * @param label     the size as a person reads it
 * @param csvSize   the size as the PyTorch peer's CSV spells it (compare.py joins on it)
 * @param host      the CPU rows at this size (null: none)
 * @param variants  the GPU variants at this size ({@code "fp32"}, {@code "tf32"}, {@code "bf16"},
 *                  {@code "fp32-atomic"}); empty: no GPU rows
 * @param device    opens one variant on a stream: device inputs, outputs and the op, ready to time
 */
public record BenchCase(String op, String label, String csvSize, int batch, double[] forwardCost, double[] stepCost,
                 Function<SplittableRandom, List<HostRun>> host, List<String> variants, DeviceFactory device) {

    /** A CPU backend's timed calls: {@code step} is forward then backward, null where only the forward is timed. */
    public record HostRun(String backend, Supplier<Object> forward, Supplier<Object> step) {}

    /** Opens a GPU variant: uploads inputs and allocates outputs on {@code ctx}; the calls queue on {@code stream}. */
    public interface DeviceFactory {
        DeviceRun open(CudaContext ctx, String variant, CudaStream stream, SplittableRandom random);
    }

    /** A GPU variant ready to time: the op, its device memory, and its two calls, queued on the stream it was opened on. */
    public interface DeviceRun extends AutoCloseable {
        CudaOp<?> op();
        void forward();
        void step();
        /** Frees the device memory and the op (after releasing the op's workspaces for the stream). */
        @Override void close();
    }

    /**
     * The usual {@link DeviceRun}: what a factory makes, in order (the op, then its memory), each
     * registered as it is made, so that a failure half way frees what exists ({@link #fail}), and a run
     * closes in reverse: the op's workspaces for the stream, the memory, the op.
     */
    static final class Devices implements DeviceRun {
        private final CudaStream stream;
        private final java.util.ArrayList<AutoCloseable> owned = new java.util.ArrayList<>();
        private CudaOp<?> op;
        private Runnable forward, step;

        Devices(CudaStream stream) { this.stream = stream; }

        <T extends CudaOp<?>> T op(T o) {
            op = o;
            return o;
        }

        <T extends AutoCloseable> T own(T r) {
            owned.add(r);
            return r;
        }

        /** The two timed calls: this run, complete. */
        DeviceRun calls(Runnable forward, Runnable step) {
            this.forward = forward;
            this.step = step;
            return this;
        }

        /** Frees what was made so far and rethrows. */
        RuntimeException fail(RuntimeException e) {
            close();
            return e;
        }

        @Override public CudaOp<?> op() { return op; }
        @Override public void forward() { forward.run(); }
        @Override public void step() { step.run(); }

        @Override public void close() {
            if (op != null) op.release(stream);
            for (int i = owned.size() - 1; i >= 0; i--) {
                try {
                    owned.get(i).close();
                } catch (Exception e) {
                    throw new IllegalStateException("freeing a benchmark's device memory", e);
                }
            }
            if (op != null) op.close();
        }
    }

    /** A case with CPU rows only. */
    static BenchCase host(String op, String label, String csvSize, int batch, double[] fwd, double[] step,
                          Function<SplittableRandom, List<HostRun>> host) {
        return new BenchCase(op, label, csvSize, batch, fwd, step, host, List.of(), null);
    }

    /** A case with GPU rows only. */
    static BenchCase device(String op, String label, String csvSize, int batch, double[] fwd, double[] step, List<String> variants,
                            DeviceFactory device) {
        return new BenchCase(op, label, csvSize, batch, fwd, step, null, variants, device);
    }

    /** The JMH parameter naming one timed configuration: op, batch, the peer's size, and the backend or variant (no commas: JMH splits on them). */
    public String id(String backendOrVariant) { return op + "/B=" + batch + "/" + csvSize.replace(',', ' ') + "/" + backendOrVariant; }

    /** {@code make}'s value, made on first use and kept: an op whose random weights are large is drawn only when a row runs. */
    static <T> Supplier<T> once(Supplier<T> make) {
        return new Supplier<>() {
            private T value;

            @Override public synchronized T get() {
                if (value == null) value = make.get();
                return value;
            }
        };
    }

    /** The GEMM precisions as variants, for the ops that offer all three. */
    static final List<String> PRECISIONS = List.of("fp32", "tf32", "bf16");

    static io.bifuse.Precision precision(String variant) { return io.bifuse.Precision.valueOf(variant.toUpperCase()); }
}
