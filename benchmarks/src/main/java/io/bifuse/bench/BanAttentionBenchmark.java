package io.bifuse.bench;

import io.bifuse.cpu.BanAttentionCpu;
import io.bifuse.BanAttention;
import io.bifuse.ObjectMask;
import io.bifuse.cuda.DeviceMatrix;
import io.bifuse.cuda.BanAttentionCuda;
import io.bifuse.cuda.CudaContext;
import io.bifuse.cuda.CudaOp;
import io.bifuse.cuda.CudaStream;
import io.bifuse.cuda.DeviceBuffer;
import io.bifuse.cuda.DeviceObjectMask;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.*;

/**
 * JMH benchmarks of {@link BanAttention} (the BAN attention maps) at the spec's sizes: N ∈ {36, 100}
 * objects padded (10..N real per sample, as ban-vqa's detector gives), M = 14 tokens, K = 3840, G = 8.
 * CPU: the float64 reference backend, about {@code 5·B·G·N·M·K} multiply-adds per training step, so
 * B = 256 takes seconds a call there (B = 8 is the CPU row to read). GPU: each invocation queues one
 * forward (the maps only, as a model runs it) or a forward + backward training step and waits for the
 * stream; {@code io.bifuse.tools.Main bench} reports CUDA-event times alongside. GPU benchmarks fail
 * their trial with the reason where CUDA or the kernels are missing (no cuBLAS needed).
 *
 * <pre>
 *   java --enable-native-access=ALL-UNNAMED -cp "benchmarks/target/classes:benchmarks/target/lib/*" \
 *        org.openjdk.jmh.Main BanAttentionBenchmark
 * </pre>
 */
public class BanAttentionBenchmark extends OpBenchmark {
    @Param({"8", "256"}) public int batch;
    @Param({"36", "100"}) public int objects;

    static final int M = 14, K = 3840, G = 8;
    BanAttention op;
    BanAttentionCpu cpu; // made once: the CPU backend of op
    float[] xp, yp, ga;
    ObjectMask mask;

    @Setup(Level.Trial) public void setup() {
        op = BanAttention.random(G, K, 42);
        cpu = new BanAttentionCpu(op);
        SplittableRandom r = new SplittableRandom(7);
        xp = random(r, batch * objects * K);
        yp = random(r, batch * M * K);
        ga = random(r, batch * G * objects * M);
        int[] counts = new int[batch];
        for (int b = 0; b < batch; b++) counts[b] = 10 + r.nextInt(objects - 9);
        mask = ObjectMask.counts(counts, objects);
    }

    @Benchmark public Object cpuForward() { return cpu.forward(xp, yp, mask, batch, objects, M); }

    @Benchmark public Object cpuTrainingStep() {
        cpu.forward(xp, yp, mask, batch, objects, M);
        return cpu.backward(xp, yp, mask, ga, batch, objects, M);
    }

    /** Device-resident state for the GPU benchmarks. */
    @State(Scope.Benchmark)
    public static class Gpu extends GpuState {
        BanAttentionCuda cuda;
        DeviceBuffer ga, att, gw, gb;
        DeviceMatrix xp, yp, gx, gy;
        DeviceObjectMask mask;

        @Setup(Level.Trial) public void setup(BanAttentionBenchmark b) {
            open(false);
            cuda = new BanAttentionCuda(b.op, ctx);
            xp = DeviceMatrix.of("xp", own(DeviceBuffer.of(ctx, b.xp)), b.batch * b.objects, K);
            yp = DeviceMatrix.of("yp", own(DeviceBuffer.of(ctx, b.yp)), b.batch * M, K);
            ga = own(DeviceBuffer.of(ctx, b.ga));
            mask = own(DeviceObjectMask.upload(ctx, b.mask));
            att = own(DeviceBuffer.allocateFloats(ctx, b.ga.length));
            gx = DeviceMatrix.of("gradXp", own(DeviceBuffer.allocateFloats(ctx, b.xp.length)), b.batch * b.objects, K);
            gy = DeviceMatrix.of("gradYp", own(DeviceBuffer.allocateFloats(ctx, b.yp.length)), b.batch * M, K);
            gw = own(DeviceBuffer.allocateFloats(ctx, (long) G * K));
            gb = own(DeviceBuffer.allocateFloats(ctx, G));
        }

        @Override CudaOp<?> op() { return cuda; }
    }

    /** The forward as a model runs it: the maps only (the logits are an optional output). */
    @Benchmark public void gpuForward(Gpu s) {
        s.cuda.forward(s.xp, s.yp, s.mask, batch, objects, M, s.att, null, s.stream);
        s.stream.synchronize();
    }

    @Benchmark public void gpuTrainingStep(Gpu s) {
        s.cuda.forward(s.xp, s.yp, s.mask, batch, objects, M, s.att, null, s.stream);
        s.cuda.backward(s.xp, s.yp, s.mask, batch, objects, M, s.att, s.ga, s.gx, s.gy, s.gw, s.gb, false, s.stream);
        s.stream.synchronize();
    }
}
