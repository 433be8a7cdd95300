package io.bifuse.bench;

import io.bifuse.cpu.MlbAttentionCpu;
import io.bifuse.Activation;
import io.bifuse.MlbAttention;
import io.bifuse.Precision;
import io.bifuse.cuda.CudaContext;
import io.bifuse.cuda.CudaOp;
import io.bifuse.cuda.CudaStream;
import io.bifuse.cuda.DeviceBuffer;
import io.bifuse.cuda.MlbAttentionCuda;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.*;

/**
 * JMH benchmarks of {@link MlbAttention} at the spec's layer sizes (L = 196 cells, Dq = 2400,
 * Dv = 2048, J = 1200, G = 2 glimpses, Out = 2000, tanh). CPU: the float64 reference backend, about
 * {@code B·L·J·Dv} multiply-adds per forward, so B = 64 takes tens of seconds a call there (B = 4 is
 * the CPU row to read). GPU, in each {@link Precision}: each invocation queues one call (or a
 * forward + backward training step) and waits for the stream; {@code io.bifuse.tools.Main bench}
 * reports CUDA-event times alongside. GPU benchmarks fail their trial with the reason where CUDA or
 * cuBLAS is missing.
 *
 * <pre>
 *   java --enable-native-access=ALL-UNNAMED -cp "benchmarks/target/classes:benchmarks/target/lib/*" \
 *        org.openjdk.jmh.Main MlbAttentionBenchmark
 * </pre>
 */
public class MlbAttentionBenchmark extends OpBenchmark {
    @Param({"4", "64"}) public int batch;

    static final int L = 196, DQ = 2400, DV = 2048, J = 1200, G = 2, OUT = 2000;
    MlbAttention op;
    MlbAttentionCpu cpu; // made once: the CPU backend of op
    float[] q, v, g;

    @Setup(Level.Trial) public void setup() {
        op = MlbAttention.random(DQ, DV, J, G, OUT, Activation.TANH, 42);
        cpu = new MlbAttentionCpu(op);
        SplittableRandom r = new SplittableRandom(7);
        q = random(r, batch * DQ);
        v = random(r, batch * L * DV);
        g = random(r, batch * OUT);
    }

    @Benchmark public float[] cpuForward() { return cpu.forward(q, v, batch, L); }

    @Benchmark public Object cpuTrainingStep() {
        cpu.forward(q, v, batch, L);
        return cpu.backward(q, v, g, batch, L);
    }

    /** Device-resident state for the GPU benchmarks; the GEMM precision is a parameter of the GPU rows only. */
    @State(Scope.Benchmark)
    public static class Gpu extends GpuState {
        @Param({"FP32", "TF32", "BF16"}) public Precision precision;
        MlbAttentionCuda cuda;
        DeviceBuffer q, v, g, out;
        MlbAttentionCuda.OwnedGradients grads;

        @Setup(Level.Trial) public void setup(MlbAttentionBenchmark b) {
            open(true);
            cuda = new MlbAttentionCuda(b.op, ctx, precision);
            q = own(DeviceBuffer.of(ctx, b.q));
            v = own(DeviceBuffer.of(ctx, b.v));
            g = own(DeviceBuffer.of(ctx, b.g));
            out = own(DeviceBuffer.allocateFloats(ctx, (long) b.batch * OUT));
            grads = own(cuda.allocateGradients(b.batch, L));
        }

        @Override CudaOp<?> op() { return cuda; }
    }

    /** The forward as a model runs it: the attention maps (an optional output) are not written. */
    @Benchmark public void gpuForward(Gpu s) {
        s.cuda.forward(s.q, s.v, s.out, null, batch, L, s.stream);
        s.stream.synchronize();
    }

    @Benchmark public void gpuTrainingStep(Gpu s) {
        s.cuda.forward(s.q, s.v, s.out, null, batch, L, s.stream);
        s.cuda.backward(s.q, s.v, s.g, s.grads.buffers(), batch, L, s.stream);
        s.stream.synchronize();
    }
}
