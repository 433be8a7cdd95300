package io.bifuse.cpu;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.bifuse.Activation;
import io.bifuse.Linear;
import io.bifuse.Mfb;
import io.bifuse.Normalization;
import io.bifuse.Precision;
import io.bifuse.reference.MfbReference;
import io.bifuse.testing.Conditioning;
import io.bifuse.testing.MfbTolerance;
import io.bifuse.testing.Stats;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * The float32 MFB / MFH backend against the float64 reference, on fresh random inputs (the seed is in
 * every failure message; {@code -Dbifuse.seed=N} replays it), for each normalization (none, PyTorch's,
 * Caffe's).
 *
 * <p>Tolerances: {@link MfbTolerance}'s FP32 rule, the one check and the GPU tests apply. Forward: 1e-5
 * relative L2 (float32 GEMM sums of at most max(Dx, Dy) = 2048 products, ~3e-6 relative at worst), and
 * through the signed sqrt {@code max(1e-5, 10 × baseline)}: sqrt amplifies an error δ of a pooled entry
 * near 0 to ~sqrt(δ), and such entries always exist. Backward: each gradient (dx, dy, every block's
 * weights and biases) measured as {@link MfbReference#maxScaledError}, i.e. relative L2, but against the
 * size of the l2 backward's two terms where they cancel (with o = 1, F.normalize's gradient is exactly
 * 0 and float32 leaves ~1e-7 of those terms), bound {@code max(1e-5, 10 × conditioning baseline)} (the
 * signed sqrt's derivative {@code 0.5/sqrt|z|} amplifies z's float error); and where a tensor still
 * exceeds it, {@link Conditioning}'s rule (a ReLU pre-activation flipped by float32 rounding).
 */
class MfbCpuTest {
    static final Normalization[] NORMS = {Normalization.NONE, Normalization.pytorch(), Normalization.caffe()};

    @ParameterizedTest(name = "B={0} Dx={1} Dy={2} o={3} k={4} blocks={5} {6}")
    @CsvSource({"1,1,1,1,1,1,NONE", "1,5,7,4,2,1,RELU", "3,9,4,5,3,2,TANH", "4,16,12,10,5,2,RELU", "2,33,17,7,3,3,NONE", "5,64,48,20,5,2,RELU",
        "1,8,8,3,7,4,TANH", "7,130,97,41,5,1,NONE"})
    void matchesTheFloat64Reference(int batch, int dx, int dy, int o, int k, int blocks, Activation act) {
        for (Normalization n : NORMS) check(batch, dx, dy, o, k, blocks, act, n);
    }

    @Test void matchesTheFloat64ReferenceAtTheSpecWidths() {
        // The spec's Dx, Dy, o, k (B <= 2 keeps the float64 reference to seconds): MFH as block.bootstrap.pytorch
        // (ReLU; its first block is MFB) with l2 alone, held to the flat 1e-5. Through the signed sqrt, the
        // backward's bound at these widths is MfbTolerance's baseline, set by the sample's pooled value
        // nearest 0 (the derivative's derivative, -1/(4·sqrt|z|³) in PyTorch's exact form, grows without
        // bound; seen: baselines of 2e-3 to 1.9 at B = 2 and 3, errors 4e-5 to 1e-3 under them), a bound
        // that measures the input, not the implementation; the small cases above hold it, and here only the
        // forward (the original MFB's: no activation) is checked with PyTorch's normalization.
        check(1, 1024, 2048, 1000, 5, 2, Activation.RELU, new Normalization(false, 0f, Normalization.L2.MAX_NORM, 1e-12f));
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        Mfb op = Mfb.random(1024, 2048, 1000, 5, 1, Activation.NONE, Normalization.pytorch(), r.nextLong());
        int batch = 2;
        float[] x = Stats.gaussian(r, batch * 1024), y = Stats.gaussian(r, batch * 2048);
        double[] zRef = MfbReference.forward(op, x, y, batch);
        double ef = Stats.relativeL2(new MfbCpu(op).forward(x, y, batch), zRef);
        double tf = ef <= 1e-5 ? 1e-5 : MfbTolerance.forwardTolerance(op, Precision.FP32, x, y, batch, zRef, r.nextLong());
        System.out.printf("MfbCpu %s B=%d forward: %.2e (bound %.2e)%n", op, batch, ef, tf);
        assertTrue(ef <= tf, op + " forward relative L2 " + ef + " > " + tf + ", seed " + seed);
    }

    static void check(int batch, int dx, int dy, int o, int k, int blocks, Activation act, Normalization norm) {
        check(batch, dx, dy, o, k, blocks, act, norm, 0, Activation.NONE);
    }

    /** {@code outWidth > 0}: with an output layer ({@code blocks·o → outWidth}, σ_out {@code outAct}), as block.bootstrap's modules. */
    static void check(int batch, int dx, int dy, int o, int k, int blocks, Activation act, Normalization norm, int outWidth, Activation outAct) {
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        Mfb op = Mfb.random(dx, dy, o, k, blocks, act, norm, r.nextLong());
        if (outWidth > 0) op = op.withOutput(Linear.random(outWidth, blocks * o, true, r.nextLong()), outAct);
        float[] x = Stats.gaussian(r, batch * dx), y = Stats.gaussian(r, batch * dy), g = Stats.gaussian(r, batch * op.outputWidth());
        MfbCpu cpu = new MfbCpu(op);
        float[] out = cpu.forward(x, y, batch);
        Mfb.Gradients got = cpu.backward(x, y, g, batch);
        double[] zRef = MfbReference.forward(op, x, y, batch);
        MfbReference.Grads ref = MfbReference.backward(op, x, y, g, batch);
        // Without normalization the scale is the gradient itself (MfbReference.backwardScale says so): not recomputed.
        MfbReference.Grads scale = norm.isIdentity() ? ref : MfbReference.backwardScale(op, x, y, g, batch);
        String what = op + " B=" + batch + ", seed " + seed;
        long baselineSeed = r.nextLong();
        double ef = Stats.relativeL2(out, zRef), eb = MfbReference.maxScaledError(op, got, ref, scale);
        System.out.println("MfbCpu " + what + ": forward=" + String.format("%.2e", ef) + perTensor(op, got, ref, scale));
        double tf = ef <= 1e-5 ? 1e-5 : MfbTolerance.forwardTolerance(op, Precision.FP32, x, y, batch, zRef, baselineSeed);
        double tb = eb <= 1e-5 ? 1e-5 : MfbTolerance.backwardTolerance(op, Precision.FP32, x, y, g, batch, ref, scale, baselineSeed);
        if (ef > tf || eb > tb) {
            Conditioning cond = MfbTolerance.conditioning(op, Precision.FP32, x, y, g, batch, zRef, ref, scale, baselineSeed);
            tf = cond.bound(0, tf, ef);
            tb = cond.bound(1, tb, eb);
        }
        System.out.printf("  bounds: forward %.2e, backward %.2e%n", tf, tb);
        assertTrue(ef <= tf, what + ": forward relative L2 " + ef + " > " + tf);
        assertTrue(eb <= tb, what + ": backward scaled error " + eb + " > " + tb + perTensor(op, got, ref, scale));
        assertEquals(blocks, got.u().size());
        assertEquals(o * k * dy, got.v().get(blocks - 1).weight().length);
        assertEquals(op.gradientNames().size(), got.tensors().size());
        if (outWidth > 0) {
            Mfb fop = op;
            TrainingStepTest.checkContract(new TrainingStepTest.Case<>(what, () -> cpu.forward(x, y, batch), gr -> cpu.backward(x, y, gr, batch),
                    () -> cpu.trainingStep(x, y, batch), Mfb.Gradients::tensors, Stats.gaussian(r, batch * fop.outputWidth()),
                    Stats.gaussian(r, batch * fop.outputWidth())));
        }
    }

    /** block.bootstrap's output layer (linear_out, activ_output) after MFB and MFH, each normalization. */
    @ParameterizedTest(name = "B={0} Dx={1} Dy={2} o={3} k={4} blocks={5} {6} out={7} {8}")
    @CsvSource({"1,5,7,4,2,1,RELU,3,RELU", "3,9,4,5,3,2,TANH,6,SIGMOID", "4,16,12,10,5,2,RELU,7,TANH", "2,33,17,7,3,1,NONE,40,NONE"})
    void withBlockBootstrapsOutputLayer(int batch, int dx, int dy, int o, int k, int blocks, Activation act, int out, Activation outAct) {
        for (Normalization n : NORMS) check(batch, dx, dy, o, k, blocks, act, n, out, outAct);
    }

    /** block.bootstrap's MFB and MFH modules through the safetensors fixtures: float32 against their float64 results. */
    @ParameterizedTest(name = "{0}")
    @CsvSource({"mfb-default,RELU,RELU", "mfb-factor3-normalized,TANH,TANH", "mfh-default,RELU,RELU", "mfh-normalized,TANH,SIGMOID"})
    void matchesBlockBootstrapsModuleToFloat32(String stem, Activation in, Activation outAct, @org.junit.jupiter.api.io.TempDir java.nio.file.Path dir)
            throws java.io.IOException {
        try (io.bifuse.StateDict sd = io.bifuse.testing.Fixtures.open(dir, stem)) {
            Mfb op = Mfb.fromStateDict(sd, "", in, outAct, io.bifuse.testing.Fixtures.flag(sd, "normalize"));
            int batch = io.bifuse.testing.FusionChecks.batch(sd);
            MfbCpu cpu = new MfbCpu(op);
            float[] x = sd.floats("input.0"), y = sd.floats("input.1"), g = sd.floats("grad_out");
            // 1e-5: float32 sums of at most 12 products per GEMM entry at these sizes, a few ulps relative.
            io.bifuse.testing.FusionChecks.assertMatchesFixture(sd, stem, cpu.forward(x, y, batch), cpu.backward(x, y, g, batch).tensors(),
                    op.gradientNames(), 1e-5);
        }
    }

    /** Each gradient's error as {@link MfbReference#maxScaledError} measures it, for the report. */
    static String perTensor(Mfb op, Mfb.Gradients got, MfbReference.Grads ref, MfbReference.Grads scale) {
        StringBuilder s = new StringBuilder();
        s.append(String.format(" dx=%.2e dy=%.2e", scaled(got.dx(), ref.dx(), scale.dx()), scaled(got.dy(), ref.dy(), scale.dy())));
        for (int i = 0; i < op.blocks(); i++) {
            s.append(String.format(" u%d.weight=%.2e v%d.weight=%.2e", i, scaled(got.u().get(i).weight(), ref.du()[i], scale.du()[i]), i,
                    scaled(got.v().get(i).weight(), ref.dv()[i], scale.dv()[i])));
            s.append(String.format(" u%d.bias=%.2e v%d.bias=%.2e", i, scaled(got.u().get(i).bias(), ref.dbu()[i], scale.dbu()[i]), i,
                    scaled(got.v().get(i).bias(), ref.dbv()[i], scale.dbv()[i])));
        }
        if (op.hasOutput()) {
            s.append(String.format(" linear_out.weight=%.2e", scaled(got.linearOut().weight(), ref.dout(), scale.dout())));
            if (op.linearOut().hasBias()) s.append(String.format(" linear_out.bias=%.2e", scaled(got.linearOut().bias(), ref.dbout(), scale.dbout())));
        }
        return s.toString();
    }

    private static double scaled(float[] a, double[] ref, double[] scale) {
        double num = 0, den = 0, sden = 0;
        for (int i = 0; i < a.length; i++) {
            num += (a[i] - ref[i]) * (a[i] - ref[i]);
            den += ref[i] * ref[i];
            sden += scale[i] * scale[i];
        }
        den = Math.max(den, sden);
        return den == 0 ? Math.sqrt(num) : Math.sqrt(num / den);
    }

    @Test void bitwiseTheSameOnRerunsAndForEveryThreadCount() {
        // Several GEMM tiles (width 3·320 = 960 > 256, Dx > 256) and several sample blocks in the fused passes (B·960 > 2^14).
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        int batch = 41, dx = 300, dy = 257;
        for (Normalization n : NORMS) {
            Mfb op = Mfb.random(dx, dy, 64, 5, 3, Activation.RELU, n, r.nextLong());
            // With PyTorch's normalization, block.bootstrap's output layer too (its GEMMs tiled as well: 3·64 → 300).
            if (n.equals(Normalization.pytorch())) op = op.withOutput(Linear.random(300, 3 * 64, true, r.nextLong()), Activation.RELU);
            float[] x = Stats.gaussian(r, batch * dx), y = Stats.gaussian(r, batch * dy), g = Stats.gaussian(r, batch * op.outputWidth());
            MfbCpu one = new MfbCpu(op, CpuRuntime.withThreads(1));
            List<float[]> want = tensors(one.forward(x, y, batch), one.backward(x, y, g, batch));
            List<float[]> again = tensors(one.forward(x, y, batch), one.backward(x, y, g, batch));
            for (int t = 0; t < want.size(); t++) assertArrayEquals(want.get(t), again.get(t), n + " tensor " + t + " rerun, seed " + seed);
            for (int threads : new int[] {2, 3}) {
                MfbCpu many = new MfbCpu(op, CpuRuntime.withThreads(threads));
                List<float[]> got = tensors(many.forward(x, y, batch), many.backward(x, y, g, batch));
                for (int t = 0; t < want.size(); t++) {
                    assertArrayEquals(want.get(t), got.get(t), n + " tensor " + t + ", " + threads + " threads, seed " + seed);
                }
            }
        }
    }

    static List<float[]> tensors(float[] out, Mfb.Gradients g) {
        List<float[]> t = new ArrayList<>(List.of(out, g.dx(), g.dy()));
        for (int i = 0; i < g.u().size(); i++) {
            t.add(g.u().get(i).weight());
            t.add(g.u().get(i).bias());
            t.add(g.v().get(i).weight());
            t.add(g.v().get(i).bias());
        }
        if (g.linearOut() != null) {
            t.add(g.linearOut().weight());
            t.add(g.linearOut().bias());
        }
        return t;
    }

    @Test void layersWithoutBiasGetNoBiasGradientAndBehaveAsZeroBias() {
        SplittableRandom r = new SplittableRandom(Stats.freshSeed());
        Linear u1 = Linear.random(12, 5, false, 1), v1 = Linear.random(12, 4, true, 2), u2 = Linear.random(12, 5, true, 3), v2 = Linear.random(12, 4, false, 4);
        Mfb op = Mfb.mfh(List.of(u1, u2), List.of(v1, v2), 4, Activation.TANH, Normalization.caffe());
        Mfb zeros = Mfb.mfh(List.of(new Linear(12, 5, u1.weight(), new float[12]), u2), List.of(v1, new Linear(12, 4, v2.weight(), new float[12])), 4,
                Activation.TANH, Normalization.caffe());
        float[] x = Stats.gaussian(r, 10), y = Stats.gaussian(r, 8), g = Stats.gaussian(r, 12);
        Mfb.Gradients a = new MfbCpu(op).backward(x, y, g, 2), b = new MfbCpu(zeros).backward(x, y, g, 2);
        assertNull(a.u().get(0).bias());
        assertNull(a.v().get(1).bias());
        assertArrayEquals(new MfbCpu(zeros).forward(x, y, 2), new MfbCpu(op).forward(x, y, 2));
        assertArrayEquals(b.dx(), a.dx());
        assertArrayEquals(b.u().get(0).weight(), a.u().get(0).weight());
    }

    @Test void aBatchWhoseIntermediatesPassAJavaArrayIsRejectedByName() {
        // 65536 one-feature samples pooled to one output each pass every input check; their 65536 × 65536
        // projections (o = 1, k = 65536) cannot exist.
        Mfb op = Mfb.random(1, 1, 1, 65536, 1, Activation.NONE, Normalization.pytorch(), 3);
        MfbCpu cpu = new MfbCpu(op);
        float[] x = new float[65536], y = new float[65536], g = new float[65536];
        IllegalArgumentException f = assertThrows(IllegalArgumentException.class, () -> cpu.forward(x, y, 65536));
        assertTrue(f.getMessage().startsWith("batch: the projections B × blocks·o·k: 65536 × 65536 floats pass"), f.getMessage());
        IllegalArgumentException b = assertThrows(IllegalArgumentException.class, () -> cpu.backward(x, y, g, 65536));
        assertTrue(b.getMessage().startsWith("batch: the projections B × blocks·o·k: 65536 × 65536 floats pass"), b.getMessage());
    }

    @Test void namesItself() {
        Mfb op = Mfb.random(3, 2, 2, 2, 2, Activation.RELU, Normalization.pytorch(), 1);
        assertEquals("cpu-fp32", new MfbCpu(op).backend());
        assertEquals(2, new MfbCpu(op, CpuRuntime.withThreads(2)).runtime().threads());
        assertThrows(IllegalArgumentException.class, () -> new MfbCpu(op, null));
    }
}
