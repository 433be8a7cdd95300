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
 * <p>A parameter names one case: {@code op/B=batch/size/backend}, e.g.
 * <pre>
 *   java --enable-native-access=ALL-UNNAMED -cp "benchmarks/target/classes:benchmarks/target/lib/*" \
 *        org.openjdk.jmh.Main Ops.gpu -p problem="Mlb/B=512/Dx=2400 Dy=2048 J=1200 Out=2000 tanh/tf32"
 * </pre>
 * The lists below are what JMH needs at compile time; {@code OpsTest} holds them equal to the suites'
 * cases, so a new operator or size shows up here as a failing test that prints the line to add.
 */
public class Ops extends OpBenchmark {

    /** The CPU backend of one case (its inputs made once per trial). */
    @State(Scope.Benchmark)
    public static class Host {
        @Param({
            "CompactBilinear/B=1/Dx=2048 Dy=2048 d=16000/cpu",
            "CompactBilinear/B=64/Dx=2048 Dy=2048 d=16000/cpu",
            "CompactBilinear/B=512/Dx=2048 Dy=2048 d=16000/cpu",
            "CompactBilinear/B=64/Dx=2048 Dy=2048 d=15999/cpu",
            "CompactBilinear/B=64/Dx=2048 Dy=2048 d=15838/cpu",
            "Mlb/B=512/Dx=2400 Dy=2048 J=1200 Out=2000 tanh/cpu",
            "Mfb/B=8/Dx=1024 Dy=2048 o=1000 k=5 blocks=1 none/cpu",
            "Mfb/B=8/Dx=1024 Dy=2048 o=1000 k=5 blocks=2 none/cpu",
            "MlbAttention/B=4/L=196 Dq=2400 Dv=2048 J=1200 G=2 Out=2000 tanh/cpu",
            "FullBilinear/B=32/L=784 C1=512 C2=512 homologous/cpu",
            "FullBilinear/B=32/L=784 C1=512 C2=256/cpu",
            "FullBilinear/B=4/L=196 C1=100 C2=77/cpu",
            "BanAttention/B=8/N=100 M=14 K=3840 G=8/cpu",
            "BanPooling/B=16/N=36 M=14 K'=1280 k=1/cpu",
            "BanPooling/B=16/N=100 M=14 K'=1280 k=1/cpu",
            "BanPooling/B=16/N=36 M=14 K'=3840 k=3/cpu",
            "BanPooling/B=16/N=100 M=14 K'=3840 k=3/cpu",
            "BanBlock/B=1/N=36 M=14 Dx=2048 Dy=1280 K=3840 G=8 Kp=1280 group=1/cpu"
        })
        public String problem;
        BenchCase.HostRun run;

        @Setup(Level.Trial) public void setup() {
            BenchCase c = find(problem, "cpu");
            run = c.host().apply(new SplittableRandom(7)).stream().filter(h -> h.step() != null).findFirst()
                    .orElseThrow(() -> new IllegalStateException(problem + ": no CPU backend with a training step"));
        }
    }

    /** One GPU variant of one case: its device inputs, outputs and op, made once per trial. */
    @State(Scope.Benchmark)
    public static class Device extends GpuState {
        @Param({
            "CompactBilinear/B=1/Dx=2048 Dy=2048 d=16000/fp32",
            "CompactBilinear/B=1/Dx=2048 Dy=2048 d=16000/fp32-atomic",
            "CompactBilinear/B=64/Dx=2048 Dy=2048 d=16000/fp32",
            "CompactBilinear/B=64/Dx=2048 Dy=2048 d=16000/fp32-atomic",
            "CompactBilinear/B=512/Dx=2048 Dy=2048 d=16000/fp32",
            "CompactBilinear/B=512/Dx=2048 Dy=2048 d=16000/fp32-atomic",
            "CompactBilinear/B=64/Dx=2048 Dy=2048 d=15999/fp32",
            "CompactBilinear/B=64/Dx=2048 Dy=2048 d=15999/fp32-atomic",
            "CompactBilinear/B=64/Dx=2048 Dy=2048 d=15838/fp32",
            "CompactBilinear/B=64/Dx=2048 Dy=2048 d=15838/fp32-atomic",
            "Mlb/B=512/Dx=2400 Dy=2048 J=1200 Out=2000 tanh/fp32",
            "Mlb/B=512/Dx=2400 Dy=2048 J=1200 Out=2000 tanh/tf32",
            "Mlb/B=512/Dx=2400 Dy=2048 J=1200 Out=2000 tanh/bf16",
            "Mfb/B=512/Dx=1024 Dy=2048 o=1000 k=5 blocks=1 none/fp32",
            "Mfb/B=512/Dx=1024 Dy=2048 o=1000 k=5 blocks=1 none/tf32",
            "Mfb/B=512/Dx=1024 Dy=2048 o=1000 k=5 blocks=1 none/bf16",
            "Mfb/B=512/Dx=1024 Dy=2048 o=1000 k=5 blocks=2 none/fp32",
            "Mfb/B=512/Dx=1024 Dy=2048 o=1000 k=5 blocks=2 none/tf32",
            "Mfb/B=512/Dx=1024 Dy=2048 o=1000 k=5 blocks=2 none/bf16",
            "MlbAttention/B=64/L=196 Dq=2400 Dv=2048 J=1200 G=2 Out=2000 tanh/fp32",
            "MlbAttention/B=64/L=196 Dq=2400 Dv=2048 J=1200 G=2 Out=2000 tanh/tf32",
            "MlbAttention/B=64/L=196 Dq=2400 Dv=2048 J=1200 G=2 Out=2000 tanh/bf16",
            "FullBilinear/B=32/L=784 C1=512 C2=512 homologous/fp32",
            "FullBilinear/B=32/L=784 C1=512 C2=512 homologous/tf32",
            "FullBilinear/B=32/L=784 C1=512 C2=512 homologous/bf16",
            "FullBilinear/B=32/L=784 C1=512 C2=256/fp32",
            "FullBilinear/B=32/L=784 C1=512 C2=256/tf32",
            "FullBilinear/B=32/L=784 C1=512 C2=256/bf16",
            "FullBilinear/B=4/L=196 C1=100 C2=77/fp32",
            "FullBilinear/B=4/L=196 C1=100 C2=77/tf32",
            "FullBilinear/B=4/L=196 C1=100 C2=77/bf16",
            "BanAttention/B=256/N=36 M=14 K=3840 G=8/fp32",
            "BanAttention/B=256/N=100 M=14 K=3840 G=8/fp32",
            "BanPooling/B=256/N=36 M=14 K'=1280 k=1/fp32",
            "BanPooling/B=256/N=100 M=14 K'=1280 k=1/fp32",
            "BanPooling/B=256/N=36 M=14 K'=3840 k=3/fp32",
            "BanPooling/B=256/N=100 M=14 K'=3840 k=3/fp32",
            "BanBlock/B=256/N=36 M=14 Dx=2048 Dy=1280 K=3840 G=8 Kp=1280 group=1/fp32",
            "BanBlock/B=256/N=36 M=14 Dx=2048 Dy=1280 K=3840 G=8 Kp=1280 group=1/tf32",
            "BanBlock/B=256/N=36 M=14 Dx=2048 Dy=1280 K=3840 G=8 Kp=1280 group=1/bf16",
            "BanBlock/B=256/N=100 M=14 Dx=2048 Dy=1280 K=3840 G=8 Kp=1280 group=1/fp32",
            "BanBlock/B=256/N=100 M=14 Dx=2048 Dy=1280 K=3840 G=8 Kp=1280 group=1/tf32",
            "BanBlock/B=256/N=100 M=14 Dx=2048 Dy=1280 K=3840 G=8 Kp=1280 group=1/bf16"
        })
        public String problem;
        BenchCase.DeviceRun run;

        @Setup(Level.Trial) public void setup() {
            String variant = problem.substring(problem.lastIndexOf('/') + 1);
            BenchCase c = find(problem, variant);
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
        for (Suite s : Suite.all()) for (BenchCase c : s.benchCases(false)) if (c.id(last).equals(id)) return c;
        throw new IllegalArgumentException("problem: no case " + id + " (ids: Ops.ids, or run with -l -v EXTRA)");
    }
}
