package io.bifuse.bench;

import io.bifuse.cpu.FullBilinearCpu;
import io.bifuse.FullBilinear;
import io.bifuse.Normalization;
import io.bifuse.Precision;
import io.bifuse.cuda.CudaContext;
import io.bifuse.cuda.CudaOp;
import io.bifuse.cuda.CudaStream;
import io.bifuse.cuda.DeviceBuffer;
import io.bifuse.cuda.FullBilinearCuda;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.*;

/**
 * JMH benchmarks of {@link FullBilinear} (bilinear CNN pooling) at the spec's sizes: B = 32 samples of
 * L = 784 positions (VGG conv5 at 448 px), C1 = 512, and C2 = 512 homologous (x = y) or C2 = 256;
 * signed square root and l2 as the PyTorch ports do. Inputs are rectified, as conv5 features are. CPU:
 * the float64 reference backend. GPU, in each {@link Precision}: each invocation queues one call (or
 * a forward + backward training step) and waits for the stream; {@code io.bifuse.tools.Main bench}
 * reports CUDA-event times alongside. GPU benchmarks fail their trial with the reason where CUDA or
 * cuBLAS is missing.
 *
 * <pre>
 *   java --enable-native-access=ALL-UNNAMED -cp "benchmarks/target/classes:benchmarks/target/lib/*" \
 *        org.openjdk.jmh.Main FullBilinearBenchmark
 * </pre>
 */
public class FullBilinearBenchmark extends OpBenchmark {
    /** 512 with {@code homologous}: the symmetric bilinear CNN; 256: two streams. */
    @Param({"512", "256"}) public int c2;

    static final int B = 32, L = 784, C1 = 512;
    FullBilinear op;
    FullBilinearCpu cpu; // made once: the CPU backend of op
    float[] x, y, g;

    boolean homologous() { return c2 == C1; }

    @Setup(Level.Trial) public void setup() {
        op = homologous() ? FullBilinear.homologous(C1, false, Normalization.pytorch()) : FullBilinear.of(C1, c2, false, Normalization.pytorch());
        cpu = new FullBilinearCpu(op);
        SplittableRandom r = new SplittableRandom(7);
        x = relu(random(r, B * L * C1));
        y = homologous() ? null : relu(random(r, B * L * c2));
        g = random(r, B * op.outputSize());
    }

    static float[] relu(float[] a) {
        for (int i = 0; i < a.length; i++) a[i] = Math.max(0f, a[i]);
        return a;
    }

    @Benchmark public float[] cpuForward() { return homologous() ? cpu.forward(x, B, L) : cpu.forward(x, y, B, L); }

    @Benchmark public Object cpuTrainingStep() {
        if (homologous()) {
            cpu.forward(x, B, L);
            return cpu.backward(x, g, B, L);
        }
        cpu.forward(x, y, B, L);
        return cpu.backward(x, y, g, B, L);
    }

    /** Device-resident state for the GPU benchmarks; the GEMM precision is a parameter of the GPU rows only. */
    @State(Scope.Benchmark)
    public static class Gpu extends GpuState {
        @Param({"FP32", "TF32", "BF16"}) public Precision precision;
        FullBilinearCuda cuda;
        DeviceBuffer x, y, g, out, gx, gy;

        @Setup(Level.Trial) public void setup(FullBilinearBenchmark b) {
            open(true);
            cuda = new FullBilinearCuda(b.op, ctx, precision);
            x = own(DeviceBuffer.of(ctx, b.x));
            gx = own(DeviceBuffer.allocateFloats(ctx, b.x.length));
            if (!b.homologous()) {
                y = own(DeviceBuffer.of(ctx, b.y));
                gy = own(DeviceBuffer.allocateFloats(ctx, b.y.length));
            }
            g = own(DeviceBuffer.of(ctx, b.g));
            out = own(DeviceBuffer.allocateFloats(ctx, (long) B * b.op.outputSize()));
        }

        void forward() {
            if (y == null) cuda.forward(x, out, B, L, stream);
            else cuda.forward(x, y, out, B, L, stream);
        }

        void backward() {
            if (y == null) cuda.backward(x, g, gx, B, L, stream);
            else cuda.backward(x, y, g, gx, gy, B, L, stream);
        }

        @Override CudaOp<?> op() { return cuda; }
    }

    @Benchmark public void gpuForward(Gpu s) {
        s.forward();
        s.stream.synchronize();
    }

    @Benchmark public void gpuTrainingStep(Gpu s) {
        s.forward();
        s.backward();
        s.stream.synchronize();
    }
}
