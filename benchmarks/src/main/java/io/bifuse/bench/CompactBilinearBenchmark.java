package io.bifuse.bench;

import io.bifuse.cpu.CompactBilinearCpu;
import io.bifuse.CompactBilinear;
import io.bifuse.Normalization;
import io.bifuse.cuda.CompactBilinearCuda;
import io.bifuse.cuda.CudaContext;
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
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(value = 1, jvmArgsAppend = "--enable-native-access=ALL-UNNAMED")
@State(Scope.Benchmark)
public class CompactBilinearBenchmark {
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

    static float[] random(SplittableRandom r, int n) {
        float[] a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float) r.nextGaussian();
        return a;
    }

    @Benchmark public float[] cpuForward() { return cpu.forward(x, y, batch); }

    @Benchmark public Object cpuBackward() { return cpu.backward(x, y, g, batch); }

    /** Device-resident state for the GPU benchmarks. */
    @State(Scope.Benchmark)
    public static class Gpu {
        CudaContext ctx;
        CudaStream stream;
        CompactBilinearCuda cuda;
        DeviceBuffer x, y, z, g, gx, gy;

        @Setup(Level.Trial) public void setup(CompactBilinearBenchmark b) {
            GpuTrial.require(false);
            ctx = CudaContext.open(0);
            stream = CudaStream.create(ctx);
            cuda = new CompactBilinearCuda(b.op, ctx);
            x = DeviceBuffer.of(ctx, b.x);
            y = DeviceBuffer.of(ctx, b.y);
            g = DeviceBuffer.of(ctx, b.g);
            z = DeviceBuffer.allocateFloats(ctx, (long) b.batch * b.d);
            gx = DeviceBuffer.allocateFloats(ctx, (long) b.batch * DX);
            gy = DeviceBuffer.allocateFloats(ctx, (long) b.batch * DY);
        }

        @TearDown(Level.Trial) public void tearDown() {
            if (ctx == null) return;
            for (DeviceBuffer buf : new DeviceBuffer[] {x, y, z, g, gx, gy}) buf.close();
            cuda.close();
            stream.close();
            ctx.close();
        }
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
