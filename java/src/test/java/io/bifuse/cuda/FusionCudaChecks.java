package io.bifuse.cuda;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.bifuse.Fusion;
import io.bifuse.FusionBackend;
import io.bifuse.Precision;
import io.bifuse.StateDict;
import io.bifuse.testing.Conditioning;
import io.bifuse.testing.FusionChecks;
import io.bifuse.testing.Stats;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.function.BiFunction;
import java.util.function.Function;

/**
 * The checks the block.bootstrap fusions' CUDA tests share ({@link DeviceFusion}): a run through the
 * device call forms with the output and every gradient buffer NaN-poisoned first (an element the kernels
 * never write fails), the comparison with the float64 reference, and the refusals.
 *
 * <p>Tolerance: each tensor's relative L2 error against the float64 reference must be at most
 * {@code max(1e-5, 4·e_cpu)}, {@code e_cpu} the float32 CPU path's error on the same inputs (the
 * same-precision baseline, as flash-attention bounds its kernels): both do the same float32 sums in
 * different orders, so a correct kernel lands within a small multiple of the CPU path's error, and an
 * indexing mistake at ~1. Where the CPU path happens to land closer than the device path (a signed
 * sqrt's slope on a near-zero core amplifies either's rounding, by chance more or less), the bound is
 * raised to {@link Conditioning}'s {@code 2·base}: the reference's own change when x, y and gradOut move
 * by float32's step. A tensor either baseline puts above {@code 1e-2} is held to finite values only, and
 * said so.
 */
final class FusionCudaChecks {
    private FusionCudaChecks() {}

    static final double TOL = 1e-5;

    /** The output then every gradient, in {@code gradientNames()} order, NaN-poisoned first ({@link io.bifuse.testing.DeviceRuns#fusion}). */
    static List<float[]> run(CudaContext ctx, DeviceFusion op, int out, float[] x, float[] y, float[] g, int batch) {
        return io.bifuse.testing.DeviceRuns.fusion(ctx, op, out, x, y, g, batch);
    }

    /**
     * A block.bootstrap fusion's instance of the {@link DeviceOpContractTest} testbed: the CUDA backend
     * {@code cuda} and the CPU backend {@code cpu} of one op through the common interface, and its device
     * form ({@link DeviceFusion}: forward, then backward into one buffer per gradient name, each named
     * {@code grads[i] (name)} as the op's refusals name it; sizes from the CPU backend's gradients).
     */
    static <G> DeviceOpContractTest.Subject contractSubject(String name, FusionBackend<?, G> cpu, BiFunction<CudaContext, Precision, AutoCloseable> cuda,
                                                           Function<G, List<float[]>> tensors, List<String> gradientNames, SplittableRandom r, int batch) {
        Fusion op = cpu.op();
        float[] x = Stats.gaussian(r, batch * op.dx()), y = Stats.gaussian(r, batch * op.dy()), g = Stats.gaussian(r, batch * op.out());
        List<float[]> shapes = tensors.apply(cpu.backward(x, y, g, batch));
        List<String> keys = new ArrayList<>();
        for (int i = 0; i < gradientNames.size(); i++) keys.add("grads[" + i + "] (" + gradientNames.get(i) + ")");
        String F = DeviceOpContractTest.F, B = DeviceOpContractTest.B;
        DeviceOpContractTest.DeviceForm dev = new DeviceOpContractTest.DeviceForm()
                .call(F, (o, a) -> ((DeviceFusion) o).forward(a.m("x"), a.m("y"), a.m("out"), a.n("batch"), a.stream()))
                .call(B, (o, a) -> {
                    List<DeviceMemory> gr = new ArrayList<>();
                    for (String k : keys) gr.add(a.m(k));
                    ((DeviceFusion) o).backward(a.m("x"), a.m("y"), a.m("gradOut"), gr, a.n("batch"), a.stream());
                })
                .size("batch", batch).in("x", x, F, B).in("y", y, F, B).in("gradOut", g, B).out("out", batch * op.out(), F);
        for (int i = 0; i < keys.size(); i++) dev.out(keys.get(i), shapes.get(i).length, B);
        dev.extra("grads", B, (o, a) -> ((DeviceFusion) o).backward(a.m("x"), a.m("y"), a.m("gradOut"), null, a.n("batch"), a.stream()));
        return new DeviceOpContractTest.Subject(name, false, true, cuda, cpu, be -> {
            @SuppressWarnings("unchecked") FusionBackend<?, G> m = (FusionBackend<?, G>) be;
            List<float[]> t = new ArrayList<>(List.of(m.forward(x, y, batch)));
            t.addAll(tensors.apply(m.backward(x, y, g, batch)));
            return t;
        }, dev);
    }

    /** The float64 reference's output then gradients for inputs {@code x, y} and {@code gradOut = g}. */
    interface Reference {
        List<double[]> tensors(float[] x, float[] y, float[] g);
    }

    /**
     * {@code got} (the device's) against {@code want} (the reference on x, y, g) per tensor at
     * {@code max(TOL, 4·e_cpu)}, raised where needed to {@link Conditioning}'s {@code 2·base} with
     * x, y and g moved by float32's step over {@code longestSum} terms (see the class comment).
     */
    static void assertMatches(String what, List<float[]> got, List<float[]> cpu, List<double[]> want, List<String> gradientNames, Reference ref,
                              float[] x, float[] y, float[] g, int longestSum, long seed) {
        List<String> names = new ArrayList<>(List.of("forward"));
        names.addAll(gradientNames);
        assertEquals(want.size(), got.size(), what + ": tensor count");
        assertEquals(want.size(), cpu.size(), what + ": the CPU path's tensor count");
        Conditioning cond = new Conditioning(Conditioning.step(Precision.FP32, longestSum), seed, (r, step) -> Conditioning.errors(
                ref.tensors(Conditioning.perturb(x, step, r), Conditioning.perturb(y, step, r), Conditioning.perturb(g, step, r)), want));
        for (int t = 0; t < got.size(); t++) {
            double base = Stats.relativeL2(cpu.get(t), want.get(t)), e = Stats.relativeL2(got.get(t), want.get(t));
            double fixed = Math.max(TOL, 4 * base), bound = cond.bound(t, fixed, e);
            if (base > Conditioning.NOT_COMPARABLE || !cond.comparable(t)) {
                for (float v : got.get(t)) assertTrue(Float.isFinite(v), what + " " + names.get(t) + ": not finite");
                System.out.println(what + " " + names.get(t) + ": not comparable in float32 (CPU baseline " + base + ", device " + e + ")");
                continue;
            }
            assertTrue(e <= bound, what + " " + names.get(t) + ": relative L2 " + e + " > " + bound + " (the float32 CPU path: " + base + ", "
                    + cond.draws() + " conditioning draws)");
        }
    }

    /**
     * The whole check of one op on fresh inputs: the device path ({@code cuda}, NaN-poisoned buffers)
     * against the reference at the bound of {@link #assertMatches}, the float32 CPU path ({@code cpu}) as
     * the baseline, then the host conveniences and a rerun bitwise equal to the device path.
     */
    static <G, C extends DeviceFusion & FusionBackend<?, G>> void check(CudaContext ctx, String what, FusionBackend<?, G> cpu, C cuda,
                                                                        Function<G, List<float[]>> tensors, Reference ref, int batch, int longestSum,
                                                                        SplittableRandom r, long seed) {
        Fusion op = cpu.op();
        float[] x = Stats.gaussian(r, batch * op.dx()), y = Stats.gaussian(r, batch * op.dy()), g = Stats.gaussian(r, batch * op.out());
        List<double[]> want = ref.tensors(x, y, g);
        List<float[]> base = new ArrayList<>(List.of(cpu.forward(x, y, batch)));
        base.addAll(tensors.apply(cpu.backward(x, y, g, batch)));
        String at = what + " B=" + batch + ", seed " + seed;
        assertMatches(at, run(ctx, cuda, op.out(), x, y, g, batch), base, want, cuda.gradientNames(), ref, x, y, g, longestSum, seed);
        List<float[]> host = new ArrayList<>(List.of(cuda.forward(x, y, batch)));
        host.addAll(tensors.apply(cuda.backward(x, y, g, batch)));
        assertHostCallsAndRerunsBitwise(cuda, op.out(), host, ctx, x, y, g, batch);
    }

    /** The output then every gradient of {@code forward} and {@code backward}'s results. */
    static List<double[]> joined(double[] forward, List<double[]> gradients) {
        List<double[]> t = new ArrayList<>(List.of(forward));
        t.addAll(gradients);
        return t;
    }

    /** The device path on a fixture's inputs against the fixture's float64 results (block.bootstrap's module), at {@link #TOL}. */
    static void assertMatchesFixture(CudaContext ctx, StateDict sd, String stem, DeviceFusion op, int out) {
        int batch = FusionChecks.batch(sd);
        List<float[]> t = run(ctx, op, out, sd.floats("input.0"), sd.floats("input.1"), sd.floats("grad_out"), batch);
        FusionChecks.assertMatchesFixture(sd, stem + " (device)", t.get(0), t.subList(1, t.size()), op.gradientNames(), TOL);
    }

    /** The host conveniences give the device path's bits, and a rerun gives the same bits. */
    static void assertHostCallsAndRerunsBitwise(DeviceFusion op, int out, List<float[]> host, CudaContext ctx, float[] x, float[] y, float[] g, int batch) {
        List<float[]> dev = run(ctx, op, out, x, y, g, batch), again = run(ctx, op, out, x, y, g, batch);
        assertEquals(dev.size(), host.size());
        for (int t = 0; t < dev.size(); t++) {
            assertArrayEquals(dev.get(t), again.get(t), "rerun, tensor " + t);
            assertArrayEquals(dev.get(t), host.get(t), "host call, tensor " + t);
        }
    }

    /** Wrong gradient lists and short buffers are refused by name before anything runs. */
    static void assertRefusals(CudaContext ctx, DeviceFusion op, int dx, int dy, int out) {
        int batch = 2;
        List<Long> sizes = op.sizes(batch);
        List<DeviceBuffer> grads = new ArrayList<>();
        try (DeviceBuffer x = DeviceBuffer.allocateFloats(ctx, (long) batch * dx); DeviceBuffer y = DeviceBuffer.allocateFloats(ctx, (long) batch * dy);
             DeviceBuffer g = DeviceBuffer.allocateFloats(ctx, (long) batch * out)) {
            for (long n : sizes) grads.add(DeviceBuffer.allocateFloats(ctx, n));
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> op.forward(x, y, g, batch + 1, CudaStream.LEGACY_DEFAULT));
            assertTrue(e.getMessage().startsWith("x: expected at least 3 × " + dx), e.getMessage());
            e = assertThrows(IllegalArgumentException.class, () -> op.backward(x, y, g, grads.subList(1, grads.size()), batch, CudaStream.LEGACY_DEFAULT));
            assertTrue(e.getMessage().startsWith("grads: expected " + sizes.size() + " device buffers (input.0, input.1, "), e.getMessage());
            List<DeviceMemory> shortLast = new ArrayList<>(grads);
            int last = grads.size() - 1;
            shortLast.set(last, grads.get(last).slice(0, 4 * (sizes.get(last) - 1)));
            e = assertThrows(IllegalArgumentException.class, () -> op.backward(x, y, g, shortLast, batch, CudaStream.LEGACY_DEFAULT));
            assertTrue(e.getMessage().startsWith("grads[" + last + "] (" + op.gradientNames().get(last) + "): expected at least 1 × " + sizes.get(last)), e.getMessage());
            e = assertThrows(IllegalArgumentException.class, () -> op.backward(x, y, g, grads, batch, null));
            assertTrue(e.getMessage().startsWith("stream:"), e.getMessage());
        } finally {
            for (DeviceBuffer b : grads) b.close();
        }
    }
}
