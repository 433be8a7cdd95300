package io.bifuse.bench;

import io.bifuse.cpu.MfbCpu;
import io.bifuse.Activation;
import io.bifuse.Mfb;
import io.bifuse.Normalization;
import io.bifuse.Precision;
import io.bifuse.cuda.CudaContext;
import io.bifuse.cuda.CudaOp;
import io.bifuse.cuda.CudaStream;
import io.bifuse.cuda.DeviceBuffer;
import io.bifuse.cuda.MfbCuda;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.*;

/**
 * JMH benchmarks of {@link Mfb} at the spec's size (Dx = 1024, Dy = 2048, o = 1000, k = 5; {@code blocks}
 * 1 is MFB, 2 is MFH), signed sqrt + {@code F.normalize} per block and no activation by default, as the
 * PyTorch peer ({@code benchmarks/python/mfb_peer.py}) runs it. CPU: the float64 reference backend (slow
 * by design: seconds to tens of seconds per call at B = 512). GPU, in each {@link Precision}: each
 * invocation queues one call (or a forward + backward training step, every parameter gradient written) and
 * waits for the stream, so the time is the device time plus one launch-and-synchronize round trip;
 * {@code io.bifuse.tools.Main bench} reports CUDA-event times alongside. GPU benchmarks fail their trial with the
 * reason where CUDA or cuBLAS is missing.
 *
 * <pre>
 *   java --enable-native-access=ALL-UNNAMED -cp "benchmarks/target/classes:benchmarks/target/lib/*" \
 *        org.openjdk.jmh.Main MfbBenchmark -p batch=512 -p blocks=2
 * </pre>
 */
public class MfbBenchmark extends OpBenchmark {
    @Param({"64", "512"}) public int batch;
    @Param({"1", "2"}) public int blocks;
    @Param({"NONE"}) public Activation activation;

    static final int DX = 1024, DY = 2048, O = 1000, K = 5;
    Mfb op;
    MfbCpu cpu; // made once: the CPU backend of op
    float[] x, y, g;

    @Setup(Level.Trial) public void setup() {
        op = Mfb.random(DX, DY, O, K, blocks, activation, Normalization.pytorch(), 42);
        cpu = new MfbCpu(op);
        SplittableRandom r = new SplittableRandom(7);
        x = random(r, batch * DX);
        y = random(r, batch * DY);
        g = random(r, batch * op.outputWidth());
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
        MfbCuda cuda;
        DeviceBuffer x, y, g, out, gx, gy, gu, gbu, gv, gbv;
        MfbCuda.DeviceGradients grads;

        @Setup(Level.Trial) public void setup(MfbBenchmark b) {
            open(true);
            cuda = new MfbCuda(b.op, ctx, precision);
            long nw = (long) b.op.blocks() * b.op.width();
            x = own(DeviceBuffer.of(ctx, b.x));
            y = own(DeviceBuffer.of(ctx, b.y));
            g = own(DeviceBuffer.of(ctx, b.g));
            out = own(DeviceBuffer.allocateFloats(ctx, (long) b.batch * b.op.outputWidth()));
            gx = own(DeviceBuffer.allocateFloats(ctx, (long) b.batch * DX));
            gy = own(DeviceBuffer.allocateFloats(ctx, (long) b.batch * DY));
            // Stacked over the blocks (MfbCuda.backward's layout): n·o·k × Dx, n·o·k × Dy and the biases.
            gu = own(DeviceBuffer.allocateFloats(ctx, nw * DX));
            gv = own(DeviceBuffer.allocateFloats(ctx, nw * DY));
            gbu = own(DeviceBuffer.allocateFloats(ctx, nw));
            gbv = own(DeviceBuffer.allocateFloats(ctx, nw));
            grads = new MfbCuda.DeviceGradients(gx, gy, gu, gbu, gv, gbv);
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
