package io.bifuse.bench;

import io.bifuse.cpu.MlbCpu;
import io.bifuse.Activation;
import io.bifuse.Mlb;
import io.bifuse.Precision;
import io.bifuse.cuda.CudaContext;
import io.bifuse.cuda.CudaOp;
import io.bifuse.cuda.CudaStream;
import io.bifuse.cuda.DeviceBuffer;
import io.bifuse.cuda.MlbCuda;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.*;

/**
 * JMH benchmarks of {@link Mlb} at the spec's size (Dx = 2400, Dy = 2048, J = 1200, Out = 2000,
 * tanh). CPU: the float64 reference backend (slow by design). GPU, in each {@link Precision}: each invocation queues one call
 * (or a forward + backward training step) and waits for the stream, so the time is the device time
 * plus one launch-and-synchronize round trip; {@code io.bifuse.tools.Main bench} reports CUDA-event
 * times alongside. GPU benchmarks fail their trial with the reason where CUDA or cuBLAS is missing.
 *
 * <pre>
 *   java --enable-native-access=ALL-UNNAMED -cp "benchmarks/target/classes:benchmarks/target/lib/*" \
 *        org.openjdk.jmh.Main MlbBenchmark
 * </pre>
 */
public class MlbBenchmark extends OpBenchmark {
    @Param({"64", "512"}) public int batch;

    static final int DX = 2400, DY = 2048, J = 1200, OUT = 2000;
    Mlb op;
    MlbCpu cpu; // made once: the CPU backend of op
    float[] x, y, g;

    @Setup(Level.Trial) public void setup() {
        op = Mlb.random(DX, DY, J, OUT, Activation.TANH, 42);
        cpu = new MlbCpu(op);
        SplittableRandom r = new SplittableRandom(7);
        x = random(r, batch * DX);
        y = random(r, batch * DY);
        g = random(r, batch * OUT);
    }

    @Benchmark public float[] cpuForward() { return cpu.forward(x, y, batch); }

    @Benchmark public Object cpuTrainingStep() {
        cpu.forward(x, y, batch);
        return cpu.backward(x, y, g, batch);
    }

    /** Device-resident state for the GPU benchmarks; the GEMM precision is a parameter of the GPU rows only. */
    @State(Scope.Benchmark)
    public static class Gpu extends GpuState {
        @Param({"FP32", "TF32", "BF16"}) public Precision precision;
        MlbCuda cuda;
        DeviceBuffer x, y, g, out;
        MlbCuda.DeviceGradients grads;

        @Setup(Level.Trial) public void setup(MlbBenchmark b) {
            open(true);
            cuda = new MlbCuda(b.op, ctx, precision);
            x = own(DeviceBuffer.of(ctx, b.x));
            y = own(DeviceBuffer.of(ctx, b.y));
            g = own(DeviceBuffer.of(ctx, b.g));
            out = own(DeviceBuffer.allocateFloats(ctx, (long) b.batch * OUT));
            grads = own(cuda.allocateGradients(b.batch)).buffers();
        }

        @Override CudaOp<?> op() { return cuda; }
    }

    @Benchmark public void gpuForward(Gpu s) {
        s.cuda.forward(s.x, s.y, s.out, batch, s.stream);
        s.stream.synchronize();
    }

    @Benchmark public void gpuTrainingStep(Gpu s) {
        s.cuda.forward(s.x, s.y, s.out, batch, s.stream);
        s.cuda.backward(s.x, s.y, s.g, s.grads, batch, s.stream);
        s.stream.synchronize();
    }
}
