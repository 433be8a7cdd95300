package io.bifuse.bench;

import io.bifuse.BanBlock;
import io.bifuse.ObjectMask;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.*;

/**
 * JMH benchmarks of {@link BanBlock} (one BAN block) at the spec's layer sizes (M = 14 tokens,
 * Dx = 2048, Dy = 1280, K = 3840, G = 8 glimpses, K' = 1280, group 1), N = 36 or 100 padded objects
 * with 10..N real ones per sample. CPU only for now: the float64 reference backend, about
 * {@code N·Dx·(K + G·K')} multiply-adds per sample and forward, so a call takes seconds per sample
 * (B = 1 is the CPU row to read). The GPU benchmarks come with BanBlockCuda.
 *
 * <pre>
 *   java --enable-native-access=ALL-UNNAMED -cp "benchmarks/target/classes:benchmarks/target/lib/*" \
 *        org.openjdk.jmh.Main BanBlockBenchmark
 * </pre>
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Warmup(iterations = 1, time = 1)
@Measurement(iterations = 3, time = 1)
@Fork(value = 1, jvmArgsAppend = "--enable-native-access=ALL-UNNAMED")
@State(Scope.Benchmark)
public class BanBlockBenchmark {
    @Param({"1"}) public int batch;
    @Param({"36", "100"}) public int objects;

    static final int M = 14, DX = 2048, DY = 1280, K = 3840, G = 8, KP = 1280, GROUP = 1;
    BanBlock op;
    ObjectMask mask;
    float[] x, y, g;

    @Setup(Level.Trial) public void setup() {
        op = BanBlock.random(DX, DY, K, KP, G, GROUP, 42);
        SplittableRandom r = new SplittableRandom(7);
        int[] counts = new int[batch];
        for (int b = 0; b < batch; b++) counts[b] = r.nextInt(Math.min(10, objects), objects + 1);
        mask = ObjectMask.counts(counts, objects);
        x = MlbBenchmark.random(r, batch * objects * DX);
        y = MlbBenchmark.random(r, batch * M * DY);
        g = MlbBenchmark.random(r, batch * DY);
    }

    @Benchmark public float[] cpuForward() { return op.forward(x, y, mask, batch, objects, M); }

    @Benchmark public Object cpuTrainingStep() {
        op.forward(x, y, mask, batch, objects, M);
        return op.backward(x, y, mask, g, batch, objects, M);
    }
}
