package io.bifuse.bench;

import io.bifuse.cpu.BanBlockCpu;
import io.bifuse.BanBlock;
import io.bifuse.ObjectMask;
import io.bifuse.Precision;
import io.bifuse.cuda.BanBlockCuda;
import io.bifuse.cuda.CudaContext;
import io.bifuse.cuda.CudaOp;
import io.bifuse.cuda.CudaStream;
import io.bifuse.cuda.DeviceBuffer;
import io.bifuse.cuda.DeviceObjectMask;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.*;

/**
 * JMH benchmarks of {@link BanBlock} (one BAN block) at the spec's layer sizes (M = 14 tokens,
 * Dx = 2048, Dy = 1280, K = 3840, G = 8 glimpses, K' = 1280, group 1), N = 36 or 100 padded objects
 * with 10..N real ones per sample. The CPU backend is the float64 reference, about
 * {@code N·Dx·(K + G·K')} multiply-adds per sample and forward, so a call takes seconds per sample
 * (B = 1); the GPU rows ({@link BanBlockCuda}, FP32 / TF32 / BF16 projections) run at the spec's
 * B = 256 ({@code gpuBatch}).
 *
 * <pre>
 *   java --enable-native-access=ALL-UNNAMED -cp "benchmarks/target/classes:benchmarks/target/lib/*" \
 *        org.openjdk.jmh.Main BanBlockBenchmark
 * </pre>
 */
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Warmup(iterations = 1, time = 1)
@Measurement(iterations = 3, time = 1)
public class BanBlockBenchmark extends OpBenchmark {
    @Param({"1"}) public int batch;
    @Param({"36", "100"}) public int objects;

    static final int M = 14, DX = 2048, DY = 1280, K = 3840, G = 8, KP = 1280, GROUP = 1;
    BanBlock op;
    BanBlockCpu cpu; // made once: the CPU backend of op
    ObjectMask mask;
    float[] x, y, g;

    @Setup(Level.Trial) public void setup() {
        op = BanBlock.random(DX, DY, K, KP, G, GROUP, 42);
        cpu = new BanBlockCpu(op);
        SplittableRandom r = new SplittableRandom(7);
        int[] counts = new int[batch];
        for (int b = 0; b < batch; b++) counts[b] = r.nextInt(Math.min(10, objects), objects + 1);
        mask = ObjectMask.counts(counts, objects);
        x = random(r, batch * objects * DX);
        y = random(r, batch * M * DY);
        g = random(r, batch * DY);
    }

    @Benchmark public float[] cpuForward() { return cpu.forward(x, y, mask, batch, objects, M); }

    @Benchmark public Object cpuTrainingStep() {
        cpu.forward(x, y, mask, batch, objects, M);
        return cpu.backward(x, y, mask, g, batch, objects, M);
    }

    /** Device-resident state for the GPU benchmarks; the GEMM precision is a parameter of the GPU rows only. */
    @State(Scope.Benchmark)
    public static class Gpu extends GpuState {
        @Param({"FP32", "TF32", "BF16"}) public Precision precision;
        /** The GPU rows' own batch: the CPU rows' B = 1 would only time launch overhead. */
        @Param({"256"}) public int gpuBatch;
        int objects;
        BanBlockCuda cuda;
        DeviceBuffer x, y, g, out;
        DeviceObjectMask mask;
        BanBlockCuda.OwnedGradients grads;

        @Setup(Level.Trial) public void setup(BanBlockBenchmark b) {
            open(true);
            objects = b.objects;
            cuda = new BanBlockCuda(b.op, ctx, precision);
            SplittableRandom r = new SplittableRandom(11);
            int[] counts = new int[gpuBatch];
            for (int i = 0; i < gpuBatch; i++) counts[i] = r.nextInt(Math.min(10, objects), objects + 1);
            x = own(DeviceBuffer.of(ctx, random(r, gpuBatch * objects * DX)));
            y = own(DeviceBuffer.of(ctx, random(r, gpuBatch * M * DY)));
            g = own(DeviceBuffer.of(ctx, random(r, gpuBatch * DY)));
            mask = own(DeviceObjectMask.upload(ctx, ObjectMask.counts(counts, objects)));
            out = own(DeviceBuffer.allocateFloats(ctx, (long) gpuBatch * DY));
            grads = own(cuda.allocateGradients(gpuBatch, objects, M));
        }

        @Override CudaOp<?> op() { return cuda; }
    }

    /** The forward as a model runs it: the attention maps (an optional output) are not copied out. */
    @Benchmark public void gpuForward(Gpu s) {
        s.cuda.forward(s.x, s.y, s.mask, s.gpuBatch, s.objects, M, s.out, null, s.stream);
        s.stream.synchronize();
    }

    @Benchmark public void gpuTrainingStep(Gpu s) {
        s.cuda.forward(s.x, s.y, s.mask, s.gpuBatch, s.objects, M, s.out, null, s.stream);
        s.cuda.backward(s.x, s.y, s.mask, s.gpuBatch, s.objects, M, s.g, s.grads.buffers(), s.stream);
        s.stream.synchronize();
    }
}
