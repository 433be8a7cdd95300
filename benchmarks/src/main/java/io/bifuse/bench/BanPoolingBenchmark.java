package io.bifuse.bench;

import io.bifuse.cpu.BanPoolingCpu;
import io.bifuse.BanPooling;
import io.bifuse.ObjectMask;
import io.bifuse.cuda.DeviceMatrix;
import io.bifuse.cuda.BanPoolingCuda;
import io.bifuse.cuda.CudaContext;
import io.bifuse.cuda.CudaOp;
import io.bifuse.cuda.CudaStream;
import io.bifuse.cuda.DeviceBuffer;
import io.bifuse.cuda.DeviceObjectMask;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.*;

/**
 * JMH benchmarks of {@link BanPooling} (bilinear attention pooling) at the spec's sizes: B = 256,
 * N ∈ {36, 100} objects (each sample 10..N real, the rest padding), M = 14 tokens, K' = 1280 with group 1
 * (a BAN glimpse) or K' = 3840 with group 3. Attention maps are a softmax over each sample's real entries,
 * the projections ReLU outputs. CPU: the float64 reference backend (about 4·B·N·M·K' multiply-adds per
 * training step; seconds a call at B = 256). GPU (FP32 kernels, no cuBLAS): each invocation queues one
 * call (or a forward + backward training step) and waits for the stream; {@code io.bifuse.tools.Main
 * bench} reports CUDA-event times alongside. GPU benchmarks fail their trial with the reason where CUDA
 * is missing.
 *
 * <pre>
 *   java --enable-native-access=ALL-UNNAMED -cp "benchmarks/target/classes:benchmarks/target/lib/*" \
 *        org.openjdk.jmh.Main BanPoolingBenchmark
 * </pre>
 */
public class BanPoolingBenchmark extends OpBenchmark {
    @Param({"36", "100"}) public int objects;
    /** "1280:1" (a BAN glimpse) or "3840:3" (a BCNet with k = 3): width K' and group k. */
    @Param({"1280:1", "3840:3"}) public String widthGroup;

    static final int B = 256, M = 14;
    BanPooling op;
    BanPoolingCpu cpu; // made once: the CPU backend of op
    ObjectMask mask;
    float[] att, x, y, g;

    @Setup(Level.Trial) public void setup() {
        String[] wg = widthGroup.split(":");
        op = BanPooling.of(Integer.parseInt(wg[0]), Integer.parseInt(wg[1]));
        cpu = new BanPoolingCpu(op);
        SplittableRandom r = new SplittableRandom(7);
        int n = objects, w = op.width();
        int[] counts = new int[B];
        for (int b = 0; b < B; b++) counts[b] = 10 + r.nextInt(n - 10 + 1);
        mask = ObjectMask.counts(counts, n);
        att = new float[B * n * M];
        for (int b = 0; b < B; b++) {
            double sum = 0;
            for (int e = 0; e < counts[b] * M; e++) sum += att[b * n * M + e] = (float) Math.exp(r.nextGaussian());
            for (int e = 0; e < counts[b] * M; e++) att[b * n * M + e] /= (float) sum;
        }
        x = FullBilinearBenchmark.relu(random(r, B * n * w));
        y = FullBilinearBenchmark.relu(random(r, B * M * w));
        g = random(r, B * op.outWidth());
    }

    @Benchmark public float[] cpuForward() { return cpu.forward(att, x, y, mask, B, objects, M); }

    @Benchmark public Object cpuTrainingStep() {
        cpu.forward(att, x, y, mask, B, objects, M);
        return cpu.backward(att, x, y, mask, g, B, objects, M);
    }

    /** Device-resident state for the GPU benchmarks. */
    @State(Scope.Benchmark)
    public static class Gpu extends GpuState {
        BanPoolingCuda cuda;
        DeviceObjectMask mask;
        DeviceBuffer g, out;
        DeviceMatrix att, x, y, ga, gx, gy;
        int n, w;

        @Setup(Level.Trial) public void setup(BanPoolingBenchmark b) {
            open(false);
            cuda = new BanPoolingCuda(b.op, ctx);
            n = b.objects;
            w = b.op.width();
            mask = own(DeviceObjectMask.upload(ctx, b.mask));
            att = DeviceMatrix.of("attention", own(DeviceBuffer.of(ctx, b.att)), B, n * M);
            x = DeviceMatrix.of("x", own(DeviceBuffer.of(ctx, b.x)), B * n, w);
            y = DeviceMatrix.of("y", own(DeviceBuffer.of(ctx, b.y)), B * M, w);
            g = own(DeviceBuffer.of(ctx, b.g));
            out = own(DeviceBuffer.allocateFloats(ctx, (long) B * b.op.outWidth()));
            ga = DeviceMatrix.of("gradAttention", own(DeviceBuffer.allocateFloats(ctx, b.att.length)), B, n * M);
            gx = DeviceMatrix.of("gradX", own(DeviceBuffer.allocateFloats(ctx, b.x.length)), B * n, w);
            gy = DeviceMatrix.of("gradY", own(DeviceBuffer.allocateFloats(ctx, b.y.length)), B * M, w);
        }

        void forward() { cuda.forward(att, x, y, mask, B, n, M, out, stream); }

        void backward() { cuda.backward(att, x, y, mask, B, n, M, g, ga, gx, gy, false, stream); }

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
