package io.bifuse.cpu;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.bifuse.Activation;
import io.bifuse.Linear;
import io.bifuse.MlbAttention;
import io.bifuse.Precision;
import io.bifuse.reference.MlbAttentionReference;
import io.bifuse.testing.Conditioning;
import io.bifuse.testing.Stats;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * The float32 MLB attention backend against the float64 reference, on fresh random inputs (the seed is
 * in every failure message; {@code -Dbifuse.seed=N} replays it).
 *
 * <p>Tolerance: 1e-5 relative L2 on the output, the attention maps and each gradient tensor: float32
 * GEMM sums of at most max(Dq, Dv, G·J, Out, B·L) terms (2400 here: ~3e-6 at worst, ~1e-7 typical) and
 * float32 elementwise steps, with the softmax's sums in double. Where a tensor exceeds it, the bound
 * becomes {@link Conditioning}'s {@code max(1e-5, 2·base)} (a ReLU pre-activation within float32
 * rounding of 0 flips its derivative: no float32 implementation can avoid that). Gradients zero in exact
 * arithmetic ({@code logits.bias} always, {@code cells.bias} with σ = identity) must be exact zeros, as
 * the descriptor says and the reference returns them; a {@code cells.bias} gradient that the reference
 * leaves at its float64 cancellation residue ({@link Stats#cancelled}: under ReLU, a unit active in
 * every cell of each sample, its gradient a softmax gradient's sum) is held to float32's residue of that
 * sum ({@link Stats#CANCELLED_DEVICE}), as the GPU tests do.
 */
class MlbAttentionCpuTest {
    static final double TOL = 1e-5;

    @ParameterizedTest(name = "B={0} L={1} Dq={2} Dv={3} J={4} G={5} Out={6} {7}")
    @CsvSource({"1,1,1,1,1,1,1,TANH", "1,5,3,4,7,1,2,RELU", "2,3,4,5,6,2,3,TANH", "3,7,5,3,4,3,2,RELU", "2,5,6,4,3,1,4,NONE",
        "2,49,24,20,12,2,10,TANH", "3,196,240,204,120,2,200,TANH", "5,37,301,257,129,3,97,RELU", "2,13,33,17,9,4,5,NONE",
        "2,14,2400,2048,1200,2,2000,TANH"})
    void matchesTheFloat64Reference(int batch, int cells, int dq, int dv, int j, int g, int out, Activation act) {
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        MlbAttention op = MlbAttention.random(dq, dv, j, g, out, act, r.nextLong());
        float[] q = Stats.gaussian(r, batch * dq), v = Stats.gaussian(r, batch * cells * dv), go = Stats.gaussian(r, batch * out);
        MlbAttentionCpu cpu = new MlbAttentionCpu(op);
        MlbAttention.Result got = cpu.forwardWithAttention(q, v, batch, cells);
        assertArrayEquals(got.out(), cpu.forward(q, v, batch, cells), "forward and forwardWithAttention differ");
        List<float[]> gotT = new ArrayList<>(List.of(got.out(), got.attention()));
        gotT.addAll(cpu.backward(q, v, go, batch, cells).tensors());
        MlbAttentionReference.Result fRef = MlbAttentionReference.forward(op, q, v, batch, cells);
        MlbAttentionReference.Grads gRef = MlbAttentionReference.backward(op, q, v, go, batch, cells);
        List<double[]> refT = new ArrayList<>(List.of(fRef.out(), fRef.attention()));
        refT.addAll(gRef.tensors());
        List<String> names = new ArrayList<>(List.of("forward", "attention"));
        names.addAll(op.gradientNames());
        StringBuilder errors = new StringBuilder();
        for (int t = 0; t < gotT.size(); t++) errors.append(' ').append(names.get(t)).append(String.format("=%.2e", Stats.relativeL2(gotT.get(t), refT.get(t))));
        System.out.println("MlbAttentionCpu B=" + batch + " L=" + cells + " " + op + ":" + errors);
        Conditioning cond = conditioning(op, q, v, go, batch, cells, refT, seed);
        assertEquals(refT.size(), gotT.size());
        String what = op + " B=" + batch + " L=" + cells + ", seed " + seed + ": ";
        for (int t = 0; t < gotT.size(); t++) {
            float[] a = gotT.get(t);
            double[] ref = refT.get(t);
            if (isZero(ref)) {
                assertArrayEquals(new float[a.length], a, what + names.get(t) + " must be exact zeros");
            } else if (Stats.cancelled(ref)) {
                assertTrue(Stats.norm(a) <= Stats.CANCELLED_DEVICE, what + names.get(t) + ": the reference cancels to " + Stats.norm(ref)
                        + ", float32 left " + Stats.norm(a));
            } else {
                double e = Stats.relativeL2(a, ref), bound = cond.bound(t, TOL, e);
                assertTrue(e <= bound, what + names.get(t) + ": relative L2 " + e + " > " + bound + " (" + cond.draws() + " draws)");
            }
        }
    }

    private static boolean isZero(double[] a) {
        for (double x : a) if (x != 0) return false;
        return true;
    }

    /** The reference's change when every operand moves by the float32 step (tensors: output, maps, then the gradients). */
    static Conditioning conditioning(MlbAttention op, float[] q, float[] v, float[] go, int batch, int cells, List<double[]> ref, long seed) {
        int longest = Math.max(Math.max(Math.max(op.dq(), op.dv()), Math.max(op.glimpses() * op.joint(), op.out())), batch * cells);
        return new Conditioning(Conditioning.step(Precision.FP32, longest), seed, (r, e) -> {
            MlbAttention.Weights w = op.weights();
            List<Linear> glimpses = new ArrayList<>();
            for (Linear l : w.glimpses()) glimpses.add(Conditioning.perturb(l, e, r));
            MlbAttention moved = MlbAttention.of(new MlbAttention.Weights(Conditioning.perturb(w.question(), e, r), Conditioning.perturb(w.cells(), e, r),
                    Conditioning.perturb(w.logits(), e, r), glimpses, Conditioning.perturb(w.questionFusion(), e, r),
                    Conditioning.perturb(w.answer(), e, r)), op.activation());
            float[] pq = Conditioning.perturb(q, e, r), pv = Conditioning.perturb(v, e, r);
            MlbAttentionReference.Result f = MlbAttentionReference.forward(moved, pq, pv, batch, cells);
            List<double[]> got = new ArrayList<>(List.of(f.out(), f.attention()));
            got.addAll(MlbAttentionReference.backward(moved, pq, pv, Conditioning.perturb(go, e, r), batch, cells).tensors());
            return Conditioning.errors(got, ref);
        });
    }

    @Test void bitwiseTheSameOnRerunsAndForEveryThreadCount() {
        // Large enough for several GEMM tiles (B·L = 300 rows, J = 300 columns) and several row blocks in the fused passes.
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        int batch = 5, cells = 60, dq = 270, dv = 260, j = 300, g = 2, out = 70;
        for (Activation act : Activation.values()) {
            MlbAttention op = MlbAttention.random(dq, dv, j, g, out, act, r.nextLong());
            float[] q = Stats.gaussian(r, batch * dq), v = Stats.gaussian(r, batch * cells * dv), go = Stats.gaussian(r, batch * out);
            MlbAttentionCpu one = new MlbAttentionCpu(op, CpuRuntime.withThreads(1));
            List<float[]> want = run(one, q, v, go, batch, cells), again = run(one, q, v, go, batch, cells);
            for (int t = 0; t < want.size(); t++) assertArrayEquals(want.get(t), again.get(t), act + " tensor " + t + " rerun, seed " + seed);
            for (int threads : new int[] {2, 3}) {
                List<float[]> got = run(new MlbAttentionCpu(op, CpuRuntime.withThreads(threads)), q, v, go, batch, cells);
                for (int t = 0; t < want.size(); t++) {
                    assertArrayEquals(want.get(t), got.get(t), act + " tensor " + t + ", " + threads + " threads, seed " + seed);
                }
            }
        }
    }

    private static List<float[]> run(MlbAttentionCpu cpu, float[] q, float[] v, float[] go, int batch, int cells) {
        MlbAttention.Result f = cpu.forwardWithAttention(q, v, batch, cells);
        List<float[]> t = new ArrayList<>(List.of(f.out(), f.attention()));
        t.addAll(cpu.backward(q, v, go, batch, cells).tensors());
        return t;
    }

    @Test void aBatchWhoseIntermediatesPassAJavaArrayIsRejectedByName() {
        // One sample of 65536 one-feature cells passes every input check; its 65536 × 65536 cell projections cannot exist.
        MlbAttention op = MlbAttention.random(1, 1, 65536, 1, 1, Activation.TANH, 3);
        MlbAttentionCpu cpu = new MlbAttentionCpu(op);
        float[] q = new float[1], v = new float[65536], g = new float[1];
        for (var call : List.<org.junit.jupiter.api.function.Executable>of(() -> cpu.forward(q, v, 1, 65536),
                () -> cpu.forwardWithAttention(q, v, 1, 65536), () -> cpu.backward(q, v, g, 1, 65536))) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, call);
            assertTrue(e.getMessage().startsWith("batch, cells: the cell projections B·L × J: 65536 × 65536 floats pass"), e.getMessage());
        }
    }

    @Test void namesItself() {
        MlbAttention op = MlbAttention.random(3, 4, 5, 2, 2, Activation.TANH, 1);
        assertEquals("cpu-fp32", new MlbAttentionCpu(op).backend());
        assertEquals(3, new MlbAttentionCpu(op, CpuRuntime.withThreads(3)).runtime().threads());
        assertThrows(IllegalArgumentException.class, () -> new MlbAttentionCpu(op, null));
    }
}
