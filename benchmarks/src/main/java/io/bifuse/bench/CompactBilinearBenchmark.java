package io.bifuse.bench;

import io.bifuse.cpu.CompactBilinearCpu;
import io.bifuse.CompactBilinear;
import io.bifuse.Normalization;
import io.bifuse.cuda.CompactBilinearCuda;
import io.bifuse.cuda.CudaContext;
import io.bifuse.cuda.CudaOp;
import io.bifuse.cuda.CudaStream;
import io.bifuse.cuda.DeviceBuffer;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.*;

/**
 * JMH benchmarks of {@link CompactBilinear} at the spec's sizes (Dx = Dy = 2048, d = 16000).
 * CPU: the FFT backend. GPU: each invocation queues one call and waits for the stream, so the time
 * measured is the device time plus one launch-and-synchronize round trip; {@code io.bifuse.tools.Main
 * bench} reports the CUDA-event time of back-to-back calls alongside. GPU benchmarks are skipped
 * (the trial fails with the reason) where CUDA is unavailable.
 *
 * <pre>
 *   java --enable-native-access=ALL-UNNAMED -cp "benchmarks/target/classes:benchmarks/target/lib/*" \
 *        org.openjdk.jmh.Main CompactBilinearBenchmark
 * </pre>
 */
public class CompactBilinearBenchmark extends OpBenchmark {
    @Param({"1", "64", "512"}) public int batch;
    @Param({"16000"}) public int d;
    @Param({"false"}) public boolean normalize;

    static final int DX = 2048, DY = 2048;
    CompactBilinear op;
    CompactBilinearCpu cpu; // made once: the CPU backend of op
    float[] x, y, g;

    @Setup(Level.Trial) public void setup() {
        op = CompactBilinear.seeded(DX, DY, d, 42).withNormalization(normalize ? Normalization.pytorch() : Normalization.NONE);
        cpu = new CompactBilinearCpu(op);
        SplittableRandom r = new SplittableRandom(7);
        x = random(r, batch * DX);
        y = random(r, batch * DY);
        g = random(r, batch * d);
    }

    @Benchmark public float[] cpuForward() { return cpu.forward(x, y, batch); }

    @Benchmark public Object cpuBackward() { return cpu.backward(x, y, g, batch); }

    /** Device-resident state for the GPU benchmarks. */
    @State(Scope.Benchmark)
    public static class Gpu extends GpuState {
        CompactBilinearCuda cuda;
        DeviceBuffer x, y, z, g, gx, gy;

        @Setup(Level.Trial) public void setup(CompactBilinearBenchmark b) {
            open(false);
            cuda = new CompactBilinearCuda(b.op, ctx);
            x = own(DeviceBuffer.of(ctx, b.x));
            y = own(DeviceBuffer.of(ctx, b.y));
            g = own(DeviceBuffer.of(ctx, b.g));
            z = own(DeviceBuffer.allocateFloats(ctx, (long) b.batch * b.d));
            gx = own(DeviceBuffer.allocateFloats(ctx, (long) b.batch * DX));
            gy = own(DeviceBuffer.allocateFloats(ctx, (long) b.batch * DY));
        }

        @Override CudaOp<?> op() { return cuda; }
    }

    @Benchmark public void gpuForward(Gpu s) {
        s.cuda.forward(s.x, s.y, s.z, batch, s.stream);
        s.stream.synchronize();
    }

    @Benchmark public void gpuBackward(Gpu s) {
        s.cuda.backward(s.x, s.y, s.g, s.gx, s.gy, batch, s.stream);
        s.stream.synchronize();
    }
}
