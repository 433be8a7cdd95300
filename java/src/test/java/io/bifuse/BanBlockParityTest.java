package io.bifuse;

import io.bifuse.cpu.BanBlockCpu;
import static org.junit.jupiter.api.Assertions.*;

import io.bifuse.reference.BanBlockReference;
import io.bifuse.testing.Stats;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Parity with jnhwkim/ban-vqa: fixtures written by {@code benchmarks/python/ban_fixture.py}, a tiny
 * BAN block built the way ban-vqa builds it (weight_norm(nn.Linear, dim=None) FCNets, BCNet attention
 * with h_mat weight-normed as one tensor, BCNet b_nets through forward_with_weights, q_prj residuals),
 * run in float64 by PyTorch: inputs, the state dict, the output, the attention maps and every gradient
 * of {@code (out·R).sum()}. The block is built here from the state-dict tensors as they are, with the
 * padded objects given as zero rows (ban-vqa's rule: mask null).
 *
 * <p>Tolerances. The reference against PyTorch float64: 1e-10 relative L2. Both evaluate the same
 * float64 formulas on the same float32-exact numbers and differ only in summation order and in the
 * last bits of exp and sqrt: ~1e-15 relative for these well-conditioned tiny sizes, so 1e-10 leaves
 * five orders of margin and any formula difference (a missed ReLU, one gain per row instead of per
 * matrix, pooling the wrong units) shows as ≥ 1e-3. The h_bias gradient is zero in exact arithmetic
 * (softmax shift invariance): PyTorch holds ~1e-17 rounding noise there, the reference an exact 0, so
 * it is compared by absolute value against 1e-12 (the CPU backend writes exact zeros there too). The
 * float32 CPU backend to 1e-5 relative, the float32 backends' bound: at these tiny sizes nothing cancels
 * enough to need BanBlockTest's conditioning baseline (measured below 1e-6).
 */
class BanBlockParityTest {
    static final double REF_TOL = 1e-10, ZERO_TOL = 1e-12, CPU_TOL = 1e-5;
    static final int B = 3, N = 5, M = 4;

    record Tensor(int[] shape, double[] values) {
        float[] floats() {
            float[] f = new float[values.length];
            for (int i = 0; i < f.length; i++) {
                f[i] = (float) values[i];
                if (f[i] != values[i]) throw new IllegalStateException("not a float32 value: " + values[i]);
            }
            return f;
        }
    }

    @ParameterizedTest @ValueSource(strings = {"ban_parity.txt", "ban_parity_group3.txt"})
    void referenceAndCpuMatchBanVqa(String fixture) throws IOException {
        Map<String, Tensor> t = load(fixture);
        int gs = t.get("v_att.logits.h_bias").values().length;
        List<WeightNormLinear> go = new ArrayList<>(), gt = new ArrayList<>(), res = new ArrayList<>();
        for (int g = 0; g < gs; g++) {
            go.add(layer(t, "b_net." + g + ".v_net.main.0."));
            gt.add(layer(t, "b_net." + g + ".q_net.main.0."));
            res.add(layer(t, "q_prj." + g + ".main.0."));
        }
        Tensor hv = t.get("v_att.logits.h_mat_v");
        assertArrayEquals(new int[] {1, gs, 1, hv.values().length / gs}, hv.shape());
        WeightNormLinear logits = new WeightNormLinear(gs, hv.shape()[3], hv.floats(), scalar(t, "v_att.logits.h_mat_g"),
                t.get("v_att.logits.h_bias").floats());
        BanBlock.Weights w = new BanBlock.Weights(layer(t, "v_att.logits.v_net.main.0."), layer(t, "v_att.logits.q_net.main.0."), logits, go, gt, res);
        BanBlock op = BanBlock.of(w, w.glimpseObjects().get(0).out() / w.residuals().get(0).in());
        assertEquals(fixture.contains("group3") ? 3 : 1, op.group());

        float[] x = t.get("x").floats(), y = t.get("y").floats(), r = t.get("R").floats();
        ObjectMask mask = ObjectMask.zeroRows(x, B, N, op.dx());
        double[] counts = t.get("object_counts").values();
        for (int b = 0; b < B; b++) assertEquals(counts[b], mask.count(b), "object count of sample " + b);
        assertEquals(1, mask.count(1), "the fixture has a single-object sample");

        BanBlockReference.Result ref = BanBlockReference.forward(op, x, y, null, B, N, M);
        assertBelow("out", Stats.relativeL2(ref.out(), t.get("out").values()), REF_TOL);
        assertBelow("attention", Stats.relativeL2(ref.attention(), t.get("attention").values()), REF_TOL);
        BanBlock.Result cpu = new BanBlockCpu(op).forwardWithAttention(x, y, null, B, N, M);
        assertBelow("cpu out", Stats.relativeL2(cpu.out(), t.get("out").values()), CPU_TOL);
        assertBelow("cpu attention", Stats.relativeL2(cpu.attention(), t.get("attention").values()), CPU_TOL);

        List<String> torchNames = torchGradientNames(gs);
        List<String> names = op.gradientNames();
        assertEquals(names.size(), torchNames.size());
        List<double[]> refGrads = BanBlockReference.backward(op, x, y, null, r, B, N, M).tensors();
        List<float[]> cpuGrads = new BanBlockCpu(op).backward(x, y, null, r, B, N, M).tensors();
        for (int i = 0; i < names.size(); i++) {
            double[] want = t.get(torchNames.get(i)).values();
            String what = names.get(i) + " vs " + torchNames.get(i);
            if (names.get(i).equals("logits.bias")) {
                assertBelow(what + " (absolute: zero in exact arithmetic)", norm(refGrads.get(i)), ZERO_TOL);
                assertBelow(what + " (torch's rounding noise)", norm(want), ZERO_TOL);
                assertBelow(what + " cpu", norm(toDouble(cpuGrads.get(i))), ZERO_TOL);
                continue;
            }
            assertBelow(what, Stats.relativeL2(refGrads.get(i), want), REF_TOL);
            assertBelow(what + " cpu", Stats.relativeL2(cpuGrads.get(i), want), CPU_TOL);
        }
    }

    /** The PyTorch names of BanBlock's gradient tensors, in the order of {@link BanBlock#gradientNames()}. */
    static List<String> torchGradientNames(int gs) {
        List<String> n = new ArrayList<>(List.of("grad.x", "grad.y"));
        addLayer(n, "v_att.logits.v_net.main.0.");
        addLayer(n, "v_att.logits.q_net.main.0.");
        n.addAll(List.of("grad.v_att.logits.h_mat_v", "grad.v_att.logits.h_mat_g", "grad.v_att.logits.h_bias"));
        for (int g = 0; g < gs; g++) addLayer(n, "b_net." + g + ".v_net.main.0.");
        for (int g = 0; g < gs; g++) addLayer(n, "b_net." + g + ".q_net.main.0.");
        for (int g = 0; g < gs; g++) addLayer(n, "q_prj." + g + ".main.0.");
        return n;
    }

    private static void addLayer(List<String> n, String prefix) {
        n.addAll(List.of("grad." + prefix + "weight_v", "grad." + prefix + "weight_g", "grad." + prefix + "bias"));
    }

    static WeightNormLinear layer(Map<String, Tensor> t, String prefix) {
        Tensor v = t.get(prefix + "weight_v");
        assertNotNull(v, prefix + "weight_v");
        assertEquals(2, v.shape().length, prefix + "weight_v is out × in");
        return new WeightNormLinear(v.shape()[0], v.shape()[1], v.floats(), scalar(t, prefix + "weight_g"), t.get(prefix + "bias").floats());
    }

    static float scalar(Map<String, Tensor> t, String name) {
        Tensor s = t.get(name);
        assertNotNull(s, name);
        assertEquals(0, s.shape().length, name + " is a 0-dim tensor (weight_norm with dim=None: one gain)");
        return s.floats()[0];
    }

    static Map<String, Tensor> load(String fixture) throws IOException {
        Map<String, Tensor> t = new LinkedHashMap<>();
        try (InputStream in = BanBlockParityTest.class.getResourceAsStream(fixture)) {
            assertNotNull(in, "missing fixture " + fixture + " (benchmarks/python/ban_fixture.py writes it)");
            BufferedReader r = new BufferedReader(new InputStreamReader(in, StandardCharsets.UTF_8));
            for (String line = r.readLine(); line != null; line = r.readLine()) {
                if (line.isBlank() || line.startsWith("#")) continue;
                String[] f = line.trim().split(" +");
                int[] shape = f[1].equals("scalar") ? new int[0] : java.util.Arrays.stream(f[1].split("x")).mapToInt(Integer::parseInt).toArray();
                double[] v = new double[f.length - 2];
                for (int i = 0; i < v.length; i++) v[i] = Double.parseDouble(f[i + 2]);
                long size = 1;
                for (int d : shape) size *= d;
                assertEquals(size, v.length, f[0] + ": values vs shape " + f[1]);
                t.put(f[0], new Tensor(shape, v));
            }
        }
        return t;
    }

    private static void assertBelow(String what, double e, double tol) {
        assertTrue(e <= tol, what + ": " + e + " > " + tol);
    }

    private static double[] toDouble(float[] a) {
        double[] r = new double[a.length];
        for (int i = 0; i < a.length; i++) r[i] = a[i];
        return r;
    }

    private static double norm(double[] a) {
        double s = 0;
        for (double v : a) s += v * v;
        return Math.sqrt(s);
    }
}
