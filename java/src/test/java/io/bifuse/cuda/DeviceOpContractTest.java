package io.bifuse.cuda;

import static org.junit.jupiter.api.Assertions.*;

import io.bifuse.Linear;
import io.bifuse.LinearGradients;
import io.bifuse.ObjectMask;
import io.bifuse.Operators;
import io.bifuse.WeightNormLinear;
import io.bifuse.testing.Stats;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.lang.reflect.Modifier;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
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
 * The contract every CUDA op keeps, one testbed instantiated per operator (as CUTLASS's
 * {@code testbed.h} is per kernel): one {@link Subject} for each {@link Operators#all()} entry, which
 * that operator's {@code <Name>CudaTest} builds in {@code contractSubject} (found here by the operator's
 * name), so a new operator adds its subject in its own test file and this one is not edited. Through
 * the op's {@code Backend} interface, the CUDA backend and the CPU backend of one descriptor get the
 * same fresh random inputs (never zeros), and
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
 * wrote; on a GPU the poisoning is off and each op's own test does it.
 *
 * <p>Through the op's DEVICE forms (the calls on {@link DeviceMemory} and a {@link CudaStream}), described
 * once per op by a {@link DeviceForm} (its calls, every tensor by the name the op's checks give it, its
 * size arguments, its mask; where the op takes a {@link DeviceMatrix}, the tensor's memory as a matrix
 * of its shape), in FP32:
 * <ul>
 *   <li>foreign memory at odd offsets: every input, output, gradient and mask array is a view at an odd
 *       float offset of one allocation the test owns, between guards holding a sentinel, outputs
 *       NaN-poisoned; after the forward and backward the guards and inputs are bit for bit as uploaded,
 *       no output holds a NaN (every element written), and every output has the bits of the same calls
 *       on exactly sized buffers of their own;</li>
 *   <li>bad arguments refused before any launch: for every call and every tensor it takes, null (where
 *       required), one float short, closed, and 2 bytes off alignment; memory for a bias the layer does
 *       not have; each size 0 and −1; a null stream; masks of the wrong batch, of the wrong
 *       object count, and closed; and each op's malformed arguments (gradient records: null, glimpse
 *       lists of the wrong length; matrices of the wrong shape). Each throws {@link IllegalArgumentException} whose message starts with the
 *       argument's name, and launches no kernel ({@link ResourceCounts#LAUNCHES}; cuBLAS and cuFFT are
 *       not counted there), makes no stream, handle, plan or allocation, and leaves every byte of the
 *       allocation (guards, inputs, poisoned outputs) as it was; then the same calls with the good
 *       arguments run and write every output, so the refusals were the bad argument's.</li>
 * </ul>
 * Skipped without a GPU (failed in strict mode).
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
                   Function<AutoCloseable, List<float[]>> call, DeviceForm device) {
        @Override public String toString() { return name; }
    }

    static float[] gaussian(SplittableRandom r, int n) { return Stats.gaussian(r, n); }

    static float[] rectified(SplittableRandom r, int n) {
        float[] a = Stats.gaussian(r, n);
        for (int i = 0; i < n; i++) a[i] = Math.abs(a[i]) + 0.05f; // conv-like, away from 0: no ssqrt at z ≈ 0
        return a;
    }

    /** Every tensor of {@code parts} in order: arrays, a layer's weight and bias, lists of either. */
    static List<float[]> tensors(Object... parts) {
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

    /** The forward and backward calls' names: one spelling for every operator's device form. */
    static final String F = "forward", B = "backward";

    /**
     * The tensor {@code key} as a dense {@code rows × cols} matrix, or null where the case passes no
     * memory (so that the op's own null check answers). Memory too small for the shape is refused by
     * {@link DeviceMatrix} itself, by the same name, before any call.
     */
    static DeviceMatrix mat(Args a, String key, int rows, int cols) {
        DeviceMemory m = a.m(key);
        return m == null ? null : DeviceMatrix.of(key, m, rows, cols);
    }

    /**
     * One subject per {@link Operators#all()} entry, in its order, each from that operator's own CUDA test:
     * the registration is the list, so a new operator brings its instance of this testbed in its own test
     * file and a missing one fails here instead of going untested.
     */
    static Stream<Subject> subjects() {
        return Operators.names().stream().map(DeviceOpContractTest::contractSubject);
    }

    /**
     * {@code io.bifuse.cuda.<name>CudaTest.contractSubject}, on a seed of the operator's own: one shared
     * random stream would change every later op's inputs whenever an operator is added or reordered.
     */
    private static Subject contractSubject(String name) {
        String test = "io.bifuse.cuda." + name + "CudaTest";
        Method m;
        try {
            m = Class.forName(test).getDeclaredMethod("contractSubject", SplittableRandom.class);
        } catch (ClassNotFoundException | NoSuchMethodException e) {
            throw noSubject(name, test, e);
        }
        if (!Modifier.isStatic(m.getModifiers()) || m.getReturnType() != Subject.class) throw noSubject(name, test, null);
        m.setAccessible(true);
        try {
            return (Subject) m.invoke(null, new SplittableRandom(20261201L ^ name.hashCode()));
        } catch (InvocationTargetException e) {
            // the subject's own failure (a bad size, a descriptor refusing its arguments), not the reflection's
            switch (e.getCause()) {
                case RuntimeException x -> throw x;
                case Error x -> throw x;
                case null, default -> throw new IllegalStateException("operator " + name + ": " + test + ".contractSubject failed", e.getCause());
            }
        } catch (IllegalAccessException e) {
            throw noSubject(name, test, e);
        }
    }

    private static IllegalStateException noSubject(String name, String test, Exception cause) {
        return new IllegalStateException("operator " + name + ": expected " + test
                + " with static Subject contractSubject(SplittableRandom), its instance of the contract testbed", cause);
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

    // ---- The device forms: one description per op, two contracts written once ----

    /** One call of an op's device form, on {@code a}'s memory, sizes, mask and stream; {@code op} is what {@link Subject#cuda} made. */
    @FunctionalInterface interface Invoke { void run(Object op, Args a); }

    /**
     * One tensor of an op's device form: {@code key} names it in the test, {@code arg} in the op's
     * messages (the key after its last '/'); {@code data} is null for an output; {@code calls} are those
     * that take it.
     */
    record Tensor(String key, String arg, int floats, float[] data, boolean optional, Set<String> calls) {
        boolean output() { return data == null; }
    }

    /** An int argument (a size, a stride) of the calls that take it. */
    record Size(String name, int value, Set<String> calls) {}

    /** A bad call the generic cases cannot build (a gradient record of the wrong shape), refused naming {@code arg}. */
    record Extra(String arg, String call, Invoke body) {}

    /**
     * An op's device form: its calls in the order they run (a forward before the backward that may read
     * its outputs), every tensor they take, their size and stride arguments, the mask if the op takes
     * one, and its malformed gradient records. Tensors named for a layer's bias that the layer does not
     * have are {@code absent}: passed as null, and refused when given memory.
     */
    static final class DeviceForm {
        final Map<String, Invoke> calls = new LinkedHashMap<>();
        final List<Tensor> tensors = new ArrayList<>(), absent = new ArrayList<>();
        final List<Size> sizes = new ArrayList<>();
        final List<Extra> extras = new ArrayList<>();
        ObjectMask mask;
        String maskName = "mask";

        DeviceForm call(String name, Invoke body) { calls.put(name, body); return this; }

        DeviceForm in(String key, float[] data, String... calls) { return add(tensors, key, data.length, data, false, calls); }

        /**
         * An int32 input (group offsets, indices), carried as its bit patterns in a float array: the arena
         * and the exact buffers copy words, so the op reads the ints as given (no entry may be a NaN
         * pattern, which no offset or index below 2^31 − 2^23 is).
         */
        DeviceForm ints(String key, int[] data, String... calls) {
            float[] words = new float[data.length];
            for (int i = 0; i < data.length; i++) words[i] = Float.intBitsToFloat(data[i]);
            return in(key, words, calls);
        }

        DeviceForm out(String key, int floats, String... calls) { return add(tensors, key, floats, null, false, calls); }

        /** An output the op accepts null for (then it is not written). */
        DeviceForm optionalOut(String key, int floats, String... calls) { return add(tensors, key, floats, null, true, calls); }

        /** A layer's weight ({@code out × in}) and bias ({@code out}) gradients; the bias absent when the layer has none. */
        DeviceForm linear(String weight, String bias, Linear l, String... calls) {
            add(tensors, weight, l.out() * l.in(), null, false, calls);
            return add(l.hasBias() ? tensors : absent, bias, l.out(), null, false, calls);
        }

        /** {@code linear(key + ".weight", key + ".bias", ...)}. */
        DeviceForm linear(String key, Linear l, String... calls) { return linear(key + ".weight", key + ".bias", l, calls); }

        /** A weight-normed layer's {@code weightV}, {@code weightG} (one float) and bias gradients. */
        DeviceForm weightNorm(String key, WeightNormLinear l, String... calls) {
            add(tensors, key + ".weightV", l.out() * l.in(), null, false, calls);
            add(tensors, key + ".weightG", 1, null, false, calls);
            return add(l.hasBias() ? tensors : absent, key + ".bias", l.out(), null, false, calls);
        }

        /** A size or stride taken by {@code calls} (every call when none is named). */
        DeviceForm size(String name, int value, String... calls) {
            sizes.add(new Size(name, value, callSet(calls.length == 0 ? this.calls.keySet().toArray(String[]::new) : calls)));
            return this;
        }

        DeviceForm mask(ObjectMask m) { mask = m; return this; }

        /** The mask, under the name the op's messages give it (an op with two, e.g. {@code xMask}). */
        DeviceForm mask(ObjectMask m, String name) { mask = m; maskName = name; return this; }

        DeviceForm extra(String arg, String call, Invoke body) {
            callSet(call);
            extras.add(new Extra(arg, call, body));
            return this;
        }

        private DeviceForm add(List<Tensor> to, String key, int floats, float[] data, boolean optional, String... calls) {
            if (floats < 1) throw new IllegalArgumentException(key + ": an empty tensor proves nothing");
            to.add(new Tensor(key, key.substring(key.lastIndexOf('/') + 1), floats, data, optional, callSet(calls)));
            return this;
        }

        private Set<String> callSet(String... names) {
            for (String c : names) if (!calls.containsKey(c)) throw new IllegalArgumentException("no call " + c + ": declare the calls first");
            return new LinkedHashSet<>(Arrays.asList(names));
        }

        /** Every call in order. */
        void run(Object op, Args a) { calls.values().forEach(c -> c.run(op, a)); }
    }

    /** What a call gets: memory by tensor key (null for an absent bias), sizes by name, the mask, the stream. */
    static final class Args {
        private final Map<String, DeviceMemory> memory;
        private final Map<String, Integer> sizes;
        private final DeviceObjectMask mask;
        private final CudaStream stream;

        Args(Map<String, DeviceMemory> memory, Map<String, Integer> sizes, DeviceObjectMask mask, CudaStream stream) {
            this.memory = memory;
            this.sizes = sizes;
            this.mask = mask;
            this.stream = stream;
        }

        DeviceMemory m(String key) {
            if (!memory.containsKey(key)) throw new AssertionError("the device form has no tensor " + key);
            return memory.get(key);
        }

        int n(String name) {
            Integer v = sizes.get(name);
            if (v == null) throw new AssertionError("the device form has no size " + name);
            return v;
        }

        DeviceObjectMask mask() { return mask; }

        CudaStream stream() { return stream; }

        Args with(String key, DeviceMemory m) {
            Map<String, DeviceMemory> c = new LinkedHashMap<>(memory);
            c.put(key, m);
            return new Args(c, sizes, mask, stream);
        }

        Args withSize(String name, int v) {
            Map<String, Integer> c = new LinkedHashMap<>(sizes);
            c.put(name, v);
            return new Args(memory, c, mask, stream);
        }

        Args withMask(DeviceObjectMask m) { return new Args(memory, sizes, m, stream); }

        Args withStream(CudaStream s) { return new Args(memory, sizes, mask, s); }
    }

    private static Map<String, Integer> sizes(DeviceForm f) {
        Map<String, Integer> n = new LinkedHashMap<>();
        for (Size z : f.sizes) n.put(z.name(), z.value());
        return n;
    }

    /**
     * Every tensor of a device form (and the mask's two int arrays) carved out of one allocation, each
     * at an odd float offset (4 bytes off every 8-byte boundary) between guards of {@value #GUARD} or
     * more words holding {@link #SENTINEL}: inputs hold their data, outputs and absent biases
     * {@link Float#NaN}.
     */
    static final class Arena implements AutoCloseable {
        static final int GUARD = 5, SENTINEL = 0x4B1DF00D, POISON = Float.floatToRawIntBits(Float.NaN);
        private enum Kind { GUARD, INPUT, OUTPUT, UNUSED }

        final DeviceBuffer memory;
        final int[] image;
        private final Kind[] kind;
        private final Map<String, int[]> spans = new LinkedHashMap<>(); // key → {offset, length} in words
        private final Map<String, String> names = new LinkedHashMap<>(); // key → the argument name in the messages
        final DeviceObjectMask mask;

        Arena(CudaContext ctx, DeviceForm f, CudaStream stream) {
            List<Object[]> regions = new ArrayList<>(); // {key, words, bits or null, kind}
            for (Tensor t : f.tensors) regions.add(new Object[] {t.key(), t.floats(), t.output() ? null : bits(t.data()), t.output() ? Kind.OUTPUT : Kind.INPUT});
            for (Tensor t : f.absent) regions.add(new Object[] {t.key(), t.floats(), null, Kind.UNUSED});
            if (f.mask != null) {
                regions.add(new Object[] {"mask.counts", f.mask.batch(), f.mask.counts(), Kind.INPUT});
                regions.add(new Object[] {"mask.indices", f.mask.batch() * f.mask.objects(), f.mask.indices(), Kind.INPUT});
            }
            int at = 0;
            for (Object[] g : regions) {
                at += GUARD;
                if (at % 2 == 0) at++;
                spans.put((String) g[0], new int[] {at, (Integer) g[1]});
                at += (Integer) g[1];
            }
            int words = at + GUARD + 1;
            image = new int[words];
            kind = new Kind[words];
            Arrays.fill(image, SENTINEL);
            Arrays.fill(kind, Kind.GUARD);
            for (Object[] g : regions) {
                int[] sp = spans.get((String) g[0]);
                Kind k = (Kind) g[3];
                for (int i = 0; i < sp[1]; i++) {
                    image[sp[0] + i] = g[2] == null ? POISON : ((int[]) g[2])[i];
                    kind[sp[0] + i] = k;
                }
            }
            for (Tensor t : f.tensors) names.put(t.key(), t.arg());
            for (Tensor t : f.absent) names.put(t.key(), t.arg());
            memory = DeviceBuffer.allocate(ctx, 4L * words);
            try {
                memory.write(image, stream);
                mask = f.mask == null ? null : DeviceObjectMask.uploadInto(ctx, f.mask, view("mask.counts"), view("mask.indices"), stream);
            } catch (RuntimeException e) {
                memory.close();
                throw e;
            }
        }

        private static int[] bits(float[] a) {
            int[] b = new int[a.length];
            for (int i = 0; i < a.length; i++) b[i] = Float.floatToRawIntBits(a[i]);
            return b;
        }

        /** The tensor's memory: a view at its odd offset, exactly its size. */
        DeviceMemory view(String key) { return memory.slice(4L * spans.get(key)[0], 4L * spans.get(key)[1]); }

        /** The tensor's view, {@code trimBytes} shorter and {@code shiftBytes} further on. */
        DeviceMemory view(String key, int shiftBytes, int trimBytes) {
            int[] sp = spans.get(key);
            return memory.slice(4L * sp[0] + shiftBytes, 4L * sp[1] - trimBytes);
        }

        /** The good arguments: every tensor its view, absent biases null. */
        Args args(DeviceForm f, CudaStream stream) {
            Map<String, DeviceMemory> m = new LinkedHashMap<>();
            for (Tensor t : f.tensors) m.put(t.key(), view(t.key()));
            for (Tensor t : f.absent) m.put(t.key(), null);
            return new Args(m, sizes(f), mask, stream);
        }

        int[] read(CudaStream stream) {
            int[] now = new int[image.length];
            memory.read(now, stream);
            return now;
        }

        int[] tensor(int[] now, String key) {
            int[] sp = spans.get(key);
            return Arrays.copyOfRange(now, sp[0], sp[0] + sp[1]);
        }

        /** Guards, inputs and what no call was given are bit for bit as uploaded; every output element was written (no NaN left). */
        void assertKeptAndWritten(int[] now, String what) {
            for (int i = 0; i < now.length; i++) {
                int j = i;
                switch (kind[i]) {
                    case GUARD -> assertEquals(SENTINEL, now[i], () -> what + ": " + where(j) + " overwritten");
                    case INPUT, UNUSED -> assertEquals(image[i], now[i], () -> what + ": " + where(j) + " changed");
                    case OUTPUT -> assertFalse(Float.isNaN(Float.intBitsToFloat(now[i])), () -> what + ": " + where(j) + " not written (NaN)");
                }
            }
        }

        /** Every word as uploaded: nothing written anywhere. */
        void assertUntouched(int[] now, String what) {
            for (int i = 0; i < now.length; i++) {
                int j = i;
                assertEquals(image[i], now[i], () -> what + ": " + where(j) + " written");
            }
        }

        /** Word {@code i} by the tensor it belongs to, or the guard it is in. */
        private String where(int i) {
            String before = "the start";
            for (Map.Entry<String, int[]> e : spans.entrySet()) {
                int[] sp = e.getValue();
                if (i < sp[0]) return "guard word " + i + " (after " + before + ", before " + e.getKey() + ")";
                if (i < sp[0] + sp[1]) return e.getKey() + "[" + (i - sp[0]) + "]";
                before = e.getKey();
            }
            return "guard word " + i + " (after " + before + ", the end)";
        }

        @Override public void close() { memory.close(); }
    }

    /** Frees the workspaces {@code op} keeps for {@code stream} (before the test closes that stream). */
    private static void release(Object op, CudaStream stream) {
        if (op instanceof Pair p) {
            release(p.a(), stream);
            release(p.b(), stream);
        } else {
            ((CudaOp<?>) op).release(stream);
        }
    }

    /** The calls again on exactly sized buffers of their own (outputs NaN-filled): every output's bits by key. */
    private static Map<String, int[]> onExactBuffers(Object op, DeviceForm f, CudaStream stream) {
        List<AutoCloseable> made = new ArrayList<>();
        try {
            Map<String, DeviceMemory> m = new LinkedHashMap<>();
            for (Tensor t : f.tensors) {
                DeviceBuffer b = t.output() ? DeviceBuffer.allocateFloats(ctx, t.floats()) : DeviceBuffer.of(ctx, t.data());
                made.add(b);
                if (t.output()) b.fill(Float.NaN);
                m.put(t.key(), b);
            }
            for (Tensor t : f.absent) m.put(t.key(), null);
            DeviceObjectMask mask = f.mask == null ? null : DeviceObjectMask.upload(ctx, f.mask);
            if (mask != null) made.add(mask);
            f.run(op, new Args(m, sizes(f), mask, stream));
            Map<String, int[]> out = new LinkedHashMap<>();
            for (Tensor t : f.tensors) {
                if (!t.output()) continue;
                int[] bits = new int[t.floats()];
                ((DeviceBuffer) m.get(t.key())).read(bits, stream);
                out.put(t.key(), bits);
            }
            return out;
        } finally {
            stream.synchronize();
            for (int i = made.size() - 1; i >= 0; i--) {
                try { made.get(i).close(); } catch (Exception e) { throw new IllegalStateException(e); }
            }
        }
    }

    @ParameterizedTest(name = "{0}") @MethodSource("subjects")
    void deviceFormsRunOnForeignMemoryAtOddOffsets(Subject s) throws Exception {
        require(s);
        DeviceForm f = s.device();
        try (AutoCloseable op = s.cuda().apply(ctx, Precision.FP32); CudaStream stream = CudaStream.create(ctx); Arena arena = new Arena(ctx, f, stream)) {
            try {
                long launches = ResourceCounts.LAUNCHES.sum();
                f.run(op, arena.args(f, stream));
                int[] now = arena.read(stream);
                assertTrue(ResourceCounts.LAUNCHES.sum() > launches, s + ": no kernel launch counted");
                arena.assertKeptAndWritten(now, s + " at odd offsets");
                Map<String, int[]> exact = onExactBuffers(op, f, stream);
                for (Map.Entry<String, int[]> e : exact.entrySet()) {
                    assertArrayEquals(e.getValue(), arena.tensor(now, e.getKey()), s + ": " + e.getKey() + " at an odd offset vs on its own buffer");
                }
            } finally {
                release(op, stream);
            }
        }
    }

    /** A call that must be refused naming {@code arg}; {@code what} says how it is bad. */
    record Bad(String call, String what, String arg, Invoke body, Args args) {
        @Override public String toString() { return call + " with " + what; }
    }

    /** The generic bad calls of a device form (see the class comment), then its own malformed records. */
    private static List<Bad> badCalls(DeviceForm f, Arena arena, Args good, DeviceMemory closed, List<DeviceObjectMask> badMasks) {
        List<Bad> bad = new ArrayList<>();
        for (Map.Entry<String, Invoke> c : f.calls.entrySet()) {
            String call = c.getKey();
            Invoke body = c.getValue();
            for (Tensor t : f.tensors) {
                if (!t.calls().contains(call)) continue;
                String k = t.key(), a = t.arg();
                if (!t.optional()) bad.add(new Bad(call, k + " null", a, body, good.with(k, null)));
                bad.add(new Bad(call, k + " one float short", a, body, good.with(k, arena.view(k, 0, 4))));
                bad.add(new Bad(call, k + " closed", a, body, good.with(k, closed)));
                bad.add(new Bad(call, k + " 2 bytes off alignment", a, body, good.with(k, arena.view(k, 2, 0))));
            }
            for (Tensor t : f.absent) {
                if (t.calls().contains(call)) bad.add(new Bad(call, t.key() + " given for a layer without bias", t.arg(), body, good.with(t.key(), arena.view(t.key()))));
            }
            for (Size z : f.sizes) {
                if (!z.calls().contains(call)) continue;
                for (int v : new int[] {0, -1}) bad.add(new Bad(call, z.name() + " = " + v, z.name(), body, good.withSize(z.name(), v)));
            }
            bad.add(new Bad(call, "a null stream", "stream", body, good.withStream(null)));
            for (DeviceObjectMask m : badMasks) bad.add(new Bad(call, f.maskName + " " + m + (m.isOpen() ? "" : " (closed)"), f.maskName, body, good.withMask(m)));
        }
        for (Extra e : f.extras) bad.add(new Bad(e.call(), "a malformed " + e.arg(), e.arg(), e.body(), good));
        return bad;
    }

    @ParameterizedTest(name = "{0}") @MethodSource("subjects")
    void badDeviceArgumentsAreRefusedBeforeAnyLaunch(Subject s) throws Exception {
        require(s);
        DeviceForm f = s.device();
        List<AutoCloseable> made = new ArrayList<>();
        try (AutoCloseable op = s.cuda().apply(ctx, Precision.FP32); CudaStream stream = CudaStream.create(ctx); Arena arena = new Arena(ctx, f, stream)) {
            try {
                // room for any tensor, so that being closed is all that is wrong with it
                int most = f.tensors.stream().mapToInt(Tensor::floats).max().orElseThrow();
                DeviceBuffer closed = DeviceBuffer.allocateFloats(ctx, most);
                closed.close();
                List<DeviceObjectMask> masks = new ArrayList<>();
                if (f.mask != null) {
                    int b = f.mask.batch(), n = f.mask.objects();
                    masks.add(DeviceObjectMask.upload(ctx, ObjectMask.all(b + 1, n)));
                    masks.add(DeviceObjectMask.upload(ctx, ObjectMask.all(b, n + 1)));
                    masks.add(DeviceObjectMask.upload(ctx, f.mask));
                    made.addAll(masks);
                    masks.get(2).close();
                }
                Args good = arena.args(f, stream);
                List<Bad> bad = badCalls(f, arena, good, closed, masks);
                for (Bad b : bad) {
                    String what = s + ": " + b;
                    long launches = ResourceCounts.LAUNCHES.sum();
                    long[] before = ResourceCounts.snapshot();
                    IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> b.body().run(op, b.args()), what);
                    String msg = String.valueOf(e.getMessage());
                    assertEquals(0, ResourceCounts.LAUNCHES.sum() - launches, () -> what + ": kernels launched before the refusal (" + msg + ")");
                    assertEquals("none", ResourceCounts.delta(before, ResourceCounts.snapshot()), () -> what + ": made before the refusal (" + msg + ")");
                    arena.assertUntouched(arena.read(stream), what + " (" + msg + ")");
                    assertTrue(msg.startsWith(b.arg() + ":"), () -> what + ": the message does not start with \"" + b.arg() + ":\": " + msg);
                }
                // the same calls with nothing bad run and write everything: each refusal was its bad argument's
                long launches = ResourceCounts.LAUNCHES.sum();
                f.run(op, good);
                int[] now = arena.read(stream);
                assertTrue(ResourceCounts.LAUNCHES.sum() > launches, s + ": the good calls launched nothing");
                arena.assertKeptAndWritten(now, s + " after " + bad.size() + " refused calls");
            } finally {
                release(op, stream);
                for (int i = made.size() - 1; i >= 0; i--) made.get(i).close();
            }
        }
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
