package io.bifuse.bench;

import io.bifuse.cuda.CudaOp;
import io.bifuse.tools.BenchCase;
import io.bifuse.tools.Suite;
import java.util.List;
import java.util.SplittableRandom;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;

/**
 * Every operator's JMH benchmarks, derived from the same {@link BenchCase}s that {@code bench} times
 * (each op's {@link Suite}: sizes, inputs, calls): the CPU backend's forward and training step, and
 * each GPU variant's. GPU invocations queue one call (or a forward + backward training step) and wait
 * for the stream, so the time is the device time plus one launch-and-synchronize round trip;
 * {@code bench} reports CUDA-event times alongside. GPU benchmarks fail their trial with the reason
 * where there is no GPU (the simulated device included) or the op's library is missing.
 *
 * <p>A parameter names one case, {@code op/B=batch/size/backend}: {@code cpuCase} for the CPU
 * benchmarks, {@code gpuCase} for the GPU ones. The annotations hold no case ({@link #UNSET}): {@link Jmh}, the
 * launcher, gives JMH every case of the suites unless the command line names some, e.g.
 * <pre>
 *   java --enable-native-access=ALL-UNNAMED -cp "benchmarks/target/classes:benchmarks/target/lib/*" \
 *        io.bifuse.bench.Jmh Ops.gpu -p gpuCase="Mlb/B=512/Dx=2400 Dy=2048 J=1200 Out=2000 tanh/tf32"
 * </pre>
 * so a new operator's or size's cases are benchmarked without an edit here.
 */
public class Ops extends OpBenchmark {
    /**
     * The annotations' one value (JMH wants one for a String): not a case, so a run of plain
     * {@code org.openjdk.jmh.Main} without {@code -p} fails its trial saying what to run instead.
     */
    static final String UNSET = "every-case-via-io.bifuse.bench.Jmh";

    /** The CPU backend of one case (its inputs made once per trial). */
    @State(Scope.Benchmark)
    public static class Host {
        @Param(UNSET) public String cpuCase;
        BenchCase.HostRun run;

        @Setup(Level.Trial) public void setup() {
            BenchCase c = find(cpuCase, "cpu");
            run = c.host().apply(new SplittableRandom(7)).stream().filter(h -> h.step() != null).findFirst()
                    .orElseThrow(() -> new IllegalStateException(cpuCase + ": no CPU backend with a training step"));
        }
    }

    /** One GPU variant of one case: its device inputs, outputs and op, made once per trial. */
    @State(Scope.Benchmark)
    public static class Device extends GpuState {
        @Param(UNSET) public String gpuCase;
        BenchCase.DeviceRun run;

        @Setup(Level.Trial) public void setup() {
            String variant = gpuCase.substring(gpuCase.lastIndexOf('/') + 1);
            BenchCase c = find(gpuCase, variant);
            open(false); // the op's constructor names a missing cuBLAS or cuFFT itself
            run = own(c.device().open(ctx, variant, stream, new SplittableRandom(7)));
        }

        // The run releases and closes its op itself (it is owned, closed before the stream).
        @Override CudaOp<?> op() { return null; }
    }

    @Benchmark public Object cpuForward(Host h) { return h.run.forward().get(); }

    @Benchmark public Object cpuTrainingStep(Host h) { return h.run.step().get(); }

    @Benchmark public void gpuForward(Device d) {
        d.run.forward();
        d.stream.synchronize();
    }

    @Benchmark public void gpuTrainingStep(Device d) {
        d.run.step();
        d.stream.synchronize();
    }

    /** Every case id the suites give ({@code kind} "cpu" or "gpu"), in their order. */
    static List<String> ids(String kind) {
        List<String> ids = new java.util.ArrayList<>();
        for (Suite s : Suite.all()) {
            for (BenchCase c : s.benchCases(false)) {
                if (kind.equals("cpu") && c.host() != null) ids.add(c.id("cpu"));
                if (kind.equals("gpu")) for (String v : c.variants()) ids.add(c.id(v));
            }
        }
        return ids;
    }

    static BenchCase find(String id, String last) {
        if (UNSET.equals(id)) {
            throw new IllegalArgumentException("case: none given: run io.bifuse.bench.Jmh (it passes every case), or pass -p cpuCase=ID / -p gpuCase=ID");
        }
        for (Suite s : Suite.all()) for (BenchCase c : s.benchCases(false)) if (c.id(last).equals(id)) return c;
        throw new IllegalArgumentException("case: no case " + id + " (every id: run Jmh with -lp)");
    }
}
