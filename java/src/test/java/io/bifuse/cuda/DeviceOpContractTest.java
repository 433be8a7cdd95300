package io.bifuse.cuda;

import static org.junit.jupiter.api.Assertions.*;

import io.bifuse.Activation;
import io.bifuse.BanAttention;
import io.bifuse.BanBlock;
import io.bifuse.BanPooling;
import io.bifuse.CompactBilinear;
import io.bifuse.FullBilinear;
import io.bifuse.LinearGradients;
import io.bifuse.Mfb;
import io.bifuse.Mlb;
import io.bifuse.MlbAttention;
import io.bifuse.Normalization;
import io.bifuse.ObjectMask;
import io.bifuse.cpu.BanAttentionCpu;
import io.bifuse.cpu.BanBlockCpu;
import io.bifuse.cpu.BanPoolingCpu;
import io.bifuse.cpu.CompactBilinearCpu;
import io.bifuse.cpu.FullBilinearCpu;
import io.bifuse.cpu.MfbCpu;
import io.bifuse.cpu.MlbAttentionCpu;
import io.bifuse.cpu.MlbCpu;
import io.bifuse.testing.Stats;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import io.bifuse.Precision;
import java.util.function.BiFunction;
import java.util.function.Function;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The contract every CUDA op keeps, one testbed instantiated for all eight (as CUTLASS's
 * {@code testbed.h} is per kernel): through the op's {@code Backend} interface, the CUDA backend and
 * the CPU backend of one descriptor get the same fresh random inputs (never zeros), and
 * <ul>
 *   <li>agree to 1e-4 relative L2 on every output and gradient (a float32 device against the float64
 *       reference rounded to float; each op's own test holds it to its stated, tighter bound);</li>
 *   <li>rerun bitwise: three calls, the same bits;</li>
 *   <li>share one op among six threads: every thread gets the single-thread bits;</li>
 *   <li>keep device memory flat: after the first call, more calls make no stream, handle, plan or
 *       allocation and leave {@code deviceBytes()} and the process's live bytes unchanged;</li>
 *   <li>free everything they made on {@code close()}, and refuse calls after it;</li>
 *   <li>name themselves: {@code cpu-...} and {@link Cuda#backendName} ({@code cuda-sim-...} on the
 *       simulated device).</li>
 * </ul>
 * Reruns, threads, flat memory and close run in every GEMM arithmetic an op offers (FP32, TF32, BF16);
 * the agreement in FP32 (the reduced modes' bounds are each op's own test).
 * On the simulated device every output and gradient buffer the host forms hand out is NaN-filled first
 * ({@link Workspaces#POISON}, as the workspaces are), so the agreement also fails on an element no kernel
 * wrote; on a GPU the poisoning is off and each op's own test does it. Foreign memory at odd offsets and
 * bad device arguments are each op's own test today. Skipped without a GPU (failed in strict mode).
 */
@Tag("gpu")
class DeviceOpContractTest {
    static CudaContext ctx;

    @BeforeAll static void open() {
        if (Cuda.isAvailable() && CublasHandle.libraryAvailable() && CufftPlan.libraryAvailable()) ctx = CudaContext.open(0);
    }

    @AfterAll static void close() {
        if (ctx != null) ctx.close();
        ctx = null;
    }

    /**
     * One op under the contract: its two backends and one call of everything the common interface
     * offers (forward and backward on fixed inputs), flattened to a list of float arrays.
     */
    record Subject(String name, boolean needsCufft, boolean gemms, BiFunction<CudaContext, Precision, AutoCloseable> cuda, AutoCloseable cpu,
                   Function<AutoCloseable, List<float[]>> call) {
        @Override public String toString() { return name; }
    }

    private static float[] gaussian(SplittableRandom r, int n) { return Stats.gaussian(r, n); }

    private static float[] rectified(SplittableRandom r, int n) {
        float[] a = Stats.gaussian(r, n);
        for (int i = 0; i < n; i++) a[i] = Math.abs(a[i]) + 0.05f; // conv-like, away from 0: no ssqrt at z ≈ 0
        return a;
    }

    /** Every tensor of {@code parts} in order: arrays, a layer's weight and bias, lists of either. */
    private static List<float[]> tensors(Object... parts) {
        List<float[]> t = new ArrayList<>();
        for (Object o : parts) add(t, o);
        return t;
    }

    private static void add(List<float[]> t, Object o) {
        switch (o) {
            case null -> { }
            case float[] f -> t.add(f);
            case LinearGradients l -> { t.add(l.weight()); add(t, l.bias()); }
            case List<?> l -> l.forEach(e -> add(t, e));
            default -> throw new IllegalArgumentException("not a tensor: " + o);
        }
    }

    static Stream<Subject> subjects() {
        SplittableRandom r = new SplittableRandom(20261201);
        List<Subject> s = new ArrayList<>();
        {
            Mlb op = Mlb.random(9, 7, 12, 5, Activation.TANH, r.nextLong());
            int b = 4;
            float[] x = gaussian(r, b * 9), y = gaussian(r, b * 7), g = gaussian(r, b * 5);
            s.add(new Subject("Mlb", false, true, (c, p) -> new MlbCuda(op, c, p), new MlbCpu(op), be -> {
                Mlb.Backend m = (Mlb.Backend) be;
                Mlb.Gradients gr = m.backward(x, y, g, b);
                return tensors(m.forward(x, y, b), gr.dx(), gr.dy(), gr.u(), gr.v(), gr.p());
            }));
        }
        {
            Mfb op = Mfb.random(10, 8, 6, 3, 2, Activation.NONE, Normalization.pytorch(), r.nextLong());
            int b = 3;
            float[] x = gaussian(r, b * 10), y = gaussian(r, b * 8), g = gaussian(r, b * op.outputWidth());
            s.add(new Subject("Mfb (MFH, 2 blocks)", false, true, (c, p) -> new MfbCuda(op, c, p), new MfbCpu(op), be -> {
                Mfb.Backend m = (Mfb.Backend) be;
                Mfb.Gradients gr = m.backward(x, y, g, b);
                return tensors(m.forward(x, y, b), gr.dx(), gr.dy(), gr.u(), gr.v());
            }));
        }
        {
            MlbAttention op = MlbAttention.random(7, 6, 8, 2, 5, Activation.TANH, r.nextLong());
            int b = 3, l = 5;
            float[] q = gaussian(r, b * 7), v = gaussian(r, b * l * 6), g = gaussian(r, b * 5);
            s.add(new Subject("MlbAttention", false, true, (c, p) -> new MlbAttentionCuda(op, c, p), new MlbAttentionCpu(op), be -> {
                MlbAttention.Backend m = (MlbAttention.Backend) be;
                MlbAttention.Result res = m.forwardWithAttention(q, v, b, l);
                List<float[]> t = tensors(res.out(), res.attention(), m.forward(q, v, b, l));
                t.addAll(m.backward(q, v, g, b, l).tensors());
                return t;
            }));
        }
        {
            CompactBilinear op = CompactBilinear.seeded(24, 20, 64, r.nextLong()).withNormalization(Normalization.pytorch());
            int b = 3;
            float[] x = gaussian(r, b * 24), y = gaussian(r, b * 20), g = gaussian(r, b * 64);
            s.add(new Subject("CompactBilinear", true, false, (c, p) -> new CompactBilinearCuda(op, c), new CompactBilinearCpu(op), be -> {
                CompactBilinear.Backend m = (CompactBilinear.Backend) be;
                io.bifuse.Gradients gr = m.backward(x, y, g, b);
                return tensors(m.forward(x, y, b), gr.dx(), gr.dy());
            }));
        }
        {
            FullBilinear op = FullBilinear.of(6, 5, true, Normalization.pytorch());
            FullBilinear homo = FullBilinear.homologous(6, false, Normalization.pytorch());
            int b = 3, l = 7;
            float[] x = rectified(r, b * l * 6), y = rectified(r, b * l * 5), g = gaussian(r, b * 30), gh = gaussian(r, b * 36);
            s.add(new Subject("FullBilinear (two inputs and homologous)", false, true, (c, p) -> new Pair(new FullBilinearCuda(op, c, p), new FullBilinearCuda(homo, c, p)),
                    new Pair(new FullBilinearCpu(op), new FullBilinearCpu(homo)), be -> {
                FullBilinear.Backend m = (FullBilinear.Backend) ((Pair) be).a, h = (FullBilinear.Backend) ((Pair) be).b;
                io.bifuse.Gradients gr = m.backward(x, y, g, b, l);
                return tensors(m.forward(x, y, b, l), gr.dx(), gr.dy(), h.forward(x, b, l), h.backward(x, gh, b, l));
            }));
        }
        {
            BanPooling op = BanPooling.of(6, 2);
            int b = 3, n = 4, m = 3;
            ObjectMask mask = ObjectMask.counts(new int[] {4, 1, 3}, n);
            float[] att = gaussian(r, b * n * m), x = gaussian(r, b * n * 6), y = gaussian(r, b * m * 6), g = gaussian(r, b * 3);
            s.add(new Subject("BanPooling", false, false, (c, p) -> new BanPoolingCuda(op, c), new BanPoolingCpu(op), be -> {
                BanPooling.Backend p = (BanPooling.Backend) be;
                List<float[]> t = tensors(p.forward(att, x, y, mask, b, n, m), p.forward(att, x, y, null, b, n, m));
                t.addAll(p.backward(att, x, y, mask, g, b, n, m).tensors());
                return t;
            }));
        }
        {
            BanAttention op = BanAttention.random(2, 8, r.nextLong());
            int b = 3, n = 5, m = 4;
            ObjectMask mask = ObjectMask.counts(new int[] {5, 2, 0}, n);
            float[] xp = gaussian(r, b * n * 8), yp = gaussian(r, b * m * 8), ga = gaussian(r, b * 2 * n * m);
            s.add(new Subject("BanAttention", false, false, (c, p) -> new BanAttentionCuda(op, c), new BanAttentionCpu(op), be -> {
                BanAttention.Backend a = (BanAttention.Backend) be;
                BanAttention.Result res = a.forward(xp, yp, mask, b, n, m);
                List<float[]> t = tensors(res.attention(), res.logits());
                t.addAll(a.backward(xp, yp, mask, ga, b, n, m).tensors());
                return t;
            }));
        }
        {
            BanBlock op = BanBlock.random(5, 4, 6, 6, 2, 3, r.nextLong());
            int b = 3, n = 4, m = 3;
            ObjectMask mask = ObjectMask.counts(new int[] {4, 2, 1}, n);
            float[] x = gaussian(r, b * n * 5), y = gaussian(r, b * m * 4), g = gaussian(r, b * 4);
            s.add(new Subject("BanBlock", false, true, (c, p) -> new BanBlockCuda(op, c, p), new BanBlockCpu(op), be -> {
                BanBlock.Backend k = (BanBlock.Backend) be;
                BanBlock.Result res = k.forwardWithAttention(x, y, mask, b, n, m);
                List<float[]> t = tensors(res.out(), res.attention());
                t.addAll(k.backward(x, y, mask, g, b, n, m).tensors());
                return t;
            }));
        }
        return s.stream();
    }

    /** Every subject in each GEMM arithmetic it offers: FP32, and TF32 and BF16 for the ops with GEMMs. */
    static Stream<Arguments> everyPrecision() {
        return subjects().flatMap(s -> (s.gemms() ? Stream.of(Precision.values()) : Stream.of(Precision.FP32)).map(p -> Arguments.of(s, p)));
    }

    /** Two backends of one op family closed together (FullBilinear's two-input and homologous forms). */
    record Pair(AutoCloseable a, AutoCloseable b) implements AutoCloseable {
        @Override public void close() throws Exception {
            try (AutoCloseable first = a; AutoCloseable second = b) { /* both closed, in reverse order */ }
        }
    }

    private static void require(Subject s) {
        if (s.needsCufft()) RequireGpu.cufft();
        else RequireGpu.cublas();
    }

    private static List<float[]> call(Subject s, AutoCloseable backend) { return s.call().apply(backend); }

    private static void assertSameBits(List<float[]> want, List<float[]> got, String what) {
        assertEquals(want.size(), got.size(), what + ": tensor count");
        for (int i = 0; i < want.size(); i++) assertArrayEquals(want.get(i), got.get(i), what + ": tensor " + i);
    }

    private static long deviceBytes(AutoCloseable cuda) {
        if (cuda instanceof Pair p) return deviceBytes(p.a()) + deviceBytes(p.b());
        return ((CudaOp<?>) cuda).deviceBytes();
    }

    private static String backendName(AutoCloseable b) {
        return ((io.bifuse.OpBackend) (b instanceof Pair p ? p.a() : b)).backend();
    }

    @ParameterizedTest(name = "{0}") @MethodSource("subjects")
    void agreesWithTheCpuBackendAndNamesItself(Subject s) throws Exception {
        require(s);
        List<float[]> cpu = call(s, s.cpu());
        assertTrue(backendName(s.cpu()).startsWith("cpu-"), backendName(s.cpu()));
        try (AutoCloseable cuda = s.cuda().apply(ctx, Precision.FP32)) {
            assertEquals(Cuda.backendName(Precision.FP32), backendName(cuda));
            List<float[]> dev = call(s, cuda);
            assertEquals(cpu.size(), dev.size(), s + ": tensor count");
            for (int i = 0; i < cpu.size(); i++) {
                double e = relativeL2(dev.get(i), cpu.get(i));
                assertTrue(e <= 1e-4, s + ": tensor " + i + " relative L2 " + e + " > 1e-4");
            }
        }
    }

    @ParameterizedTest(name = "{0} {1}") @MethodSource("everyPrecision")
    void rerunsBitwiseAndKeepsMemoryFlat(Subject s, Precision p) throws Exception {
        require(s);
        try (AutoCloseable cuda = s.cuda().apply(ctx, p)) {
            if (s.gemms()) assertEquals(Cuda.backendName(p), backendName(cuda));
            List<float[]> first = call(s, cuda);
            long bytes = deviceBytes(cuda), live = DeviceBuffer.liveBytes();
            long[] made = ResourceCounts.snapshot();
            for (int i = 0; i < 3; i++) assertSameBits(first, call(s, cuda), s + " rerun " + i);
            assertEquals("none", ResourceCounts.delta(made, ResourceCounts.snapshot()), s + ": made on repeated calls");
            assertEquals(bytes, deviceBytes(cuda), s + ": deviceBytes() after repeated calls");
            assertEquals(live, DeviceBuffer.liveBytes(), s + ": live device bytes after repeated calls");
        }
    }

    @ParameterizedTest(name = "{0} {1}") @MethodSource("everyPrecision")
    void sixThreadsShareOneOp(Subject s, Precision p) throws Exception {
        require(s);
        int threads = 6;
        ExecutorService pool = Executors.newFixedThreadPool(threads);
        try (AutoCloseable cuda = s.cuda().apply(ctx, p)) {
            List<float[]> want = call(s, cuda);
            CyclicBarrier start = new CyclicBarrier(threads);
            List<Future<List<List<float[]>>>> got = new ArrayList<>();
            for (int t = 0; t < threads; t++) {
                got.add(pool.submit(() -> {
                    start.await();
                    return List.of(call(s, cuda), call(s, cuda));
                }));
            }
            for (Future<List<List<float[]>>> f : got) for (List<float[]> run : f.get()) assertSameBits(want, run, s + " on a shared op");
        } finally {
            pool.shutdownNow();
        }
    }

    @ParameterizedTest(name = "{0} {1}") @MethodSource("everyPrecision")
    void closeFreesEverythingAndRefusesLaterCalls(Subject s, Precision p) throws Exception {
        require(s);
        long live = DeviceBuffer.liveBytes();
        AutoCloseable cuda = s.cuda().apply(ctx, p);
        call(s, cuda);
        cuda.close();
        assertEquals(live, DeviceBuffer.liveBytes(), s + ": live device bytes after close");
        assertThrows(IllegalStateException.class, () -> call(s, cuda), s + ": a call after close");
    }

    private static double relativeL2(float[] a, float[] ref) {
        assertEquals(ref.length, a.length);
        double num = 0, den = 0;
        for (int i = 0; i < a.length; i++) {
            if (a[i] == ref[i] && Float.isInfinite(ref[i])) continue; // BanAttention's −inf logits at padded objects
            double e = (double) a[i] - ref[i];
            num += e * e;
            den += (double) ref[i] * ref[i];
        }
        return den == 0 ? Math.sqrt(num) : Math.sqrt(num / den);
    }
}
