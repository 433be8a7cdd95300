package io.bifuse;

import static org.junit.jupiter.api.Assertions.*;

import io.bifuse.cpu.HierarchicalAttentionCpu;
import io.bifuse.reference.HierarchicalAttentionReference;
import io.bifuse.testing.Stats;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The CPU backend against the reference, and the API's argument checks. The CPU backend computes in
 * float32 (see HierarchicalAttentionCpu): 1e-5 relative L2 holds its ~1e-7 and catches any wiring
 * mistake (wrong tensor, wrong order, wrong level), which shows as O(1). Where d or k < 8 (most
 * cases here) a projection bias's gradient sums a group's few rows and cancels (the softmax Jacobian
 * sums to zero per group): there the gradients get HierarchicalAttentionTolerance's FP32 bound, 1e-4
 * (HierarchicalAttentionCpuTest adds the conditioning baseline on fresh inputs).
 */
class HierarchicalAttentionTest {
    static final double TOL = 1e-5, SMALL_WIDTH_TOL = 1e-4;

    /** {d, k, offsets per level}: one level, two, three; empty groups, groups of one, a group longer than the rest. */
    static List<Object[]> cases() {
        return List.of(new Object[] {1, 1, new int[][] {{0, 1}}}, new Object[] {4, 5, new int[][] {{0, 3, 3, 7}}},
                new Object[] {6, 3, new int[][] {{0, 2, 2, 9, 10}, {0, 3, 4}}},
                new Object[] {5, 7, new int[][] {{0, 4, 6, 6, 12, 13, 20}, {0, 2, 2, 6}, {0, 3}}},
                new Object[] {24, 12, new int[][] {{0, 49, 50, 80}, {0, 3}}});
    }

    @ParameterizedTest @MethodSource("cases")
    void cpuMatchesReference(int d, int k, int[][] offsets) {
        SplittableRandom r = new SplittableRandom(d * 131L + offsets.length);
        HierarchicalAttention op = HierarchicalAttention.random(d, k, offsets.length, r.nextLong());
        int items = offsets[0][offsets[0].length - 1], out = offsets[offsets.length - 1].length - 1;
        float[] x = Stats.gaussian(r, items * d), go = Stats.gaussian(r, out * d);
        HierarchicalAttentionReference.Result ref = HierarchicalAttentionReference.forward(op, x, items, offsets);
        HierarchicalAttention.Result got = new HierarchicalAttentionCpu(op).forwardWithAttention(x, items, offsets);
        assertTrue(Stats.relativeL2(got.out(), ref.out()) < TOL, "forward " + Stats.relativeL2(got.out(), ref.out()));
        assertEquals(offsets.length, got.attention().size());
        for (int l = 0; l < offsets.length; l++) assertTrue(Stats.relativeL2(got.attention().get(l), ref.attention().get(l)) < TOL, "attention " + l);
        assertArrayEquals(got.out(), new HierarchicalAttentionCpu(op).forward(x, items, offsets));
        List<float[]> gt = new HierarchicalAttentionCpu(op).backward(x, go, items, offsets).tensors();
        List<double[]> rt = HierarchicalAttentionReference.backward(op, x, go, items, offsets).tensors();
        Stats.assertEachBelow(op.gradientNames(), gt, rt, Math.min(d, k) < 8 ? SMALL_WIDTH_TOL : TOL);
    }

    @Test void attentionWeightsAreDistributionsOverEachGroupAndEmptyGroupsPoolToZero() {
        SplittableRandom r = new SplittableRandom(5);
        int d = 6;
        int[][] off = {{0, 3, 3, 8, 9}, {0, 2, 4}};
        HierarchicalAttention op = HierarchicalAttention.random(d, 5, 2, 8);
        HierarchicalAttention.Result res = new HierarchicalAttentionCpu(op).forwardWithAttention(Stats.gaussian(r, 9 * d), 9, off);
        assertEquals(2 * d, res.out().length);
        for (int l = 0; l < 2; l++) {
            float[] a = res.attention().get(l);
            assertEquals(off[l][off[l].length - 1], a.length);
            for (int g = 0; g + 1 < off[l].length; g++) {
                double s = 0;
                for (int i = off[l][g]; i < off[l][g + 1]; i++) {
                    assertTrue(a[i] > 0);
                    s += a[i];
                }
                if (off[l][g + 1] > off[l][g]) assertEquals(1, s, 1e-6, "level " + l + " group " + g);
            }
        }
        for (float v : res.out()) assertFalse(Float.isNaN(v));
    }

    @Test void gradientsHaveTheLevelsShapesAndNames() {
        SplittableRandom r = new SplittableRandom(6);
        List<HierarchicalAttention.Level> ls = List.of(new HierarchicalAttention.Level(Linear.random(5, 4, true, 1), Linear.random(1, 5, true, 2)),
                new HierarchicalAttention.Level(Linear.random(3, 4, false, 3), Linear.random(1, 3, false, 4)));
        HierarchicalAttention op = HierarchicalAttention.of(new HierarchicalAttention.Weights(ls));
        HierarchicalAttention.Gradients gr = new HierarchicalAttentionCpu(op).backward(Stats.gaussian(r, 7 * 4), Stats.gaussian(r, 4), 7,
                new int[][] {{0, 3, 7}, {0, 2}});
        assertEquals(7 * 4, gr.dx().length);
        assertEquals(2, gr.levels().size());
        assertEquals(5 * 4, gr.levels().get(0).projection().weight().length);
        assertEquals(3 * 4, gr.levels().get(1).projection().weight().length);
        assertEquals(3, gr.levels().get(1).logits().weight().length);
        assertNull(gr.levels().get(1).projection().bias());
        assertNull(gr.levels().get(1).logits().bias());
        assertArrayEquals(new float[1], gr.levels().get(0).logits().bias(), "the logits bias: an exact zero");
        assertEquals(List.of("dx", "levels[0].projection.weight", "levels[0].projection.bias", "levels[0].logits.weight", "levels[0].logits.bias",
                "levels[1].projection.weight", "levels[1].logits.weight"), op.gradientNames());
        assertEquals(op.gradientNames().size(), gr.tensors().size());
        assertEquals("HierarchicalAttention[d=4, k=5,3, L=2]", op.toString());
        assertEquals(5, op.width(0));
        assertEquals(3, op.width(1));
    }

    @Test void weightsAreValidatedByName() {
        HierarchicalAttention.Level good = new HierarchicalAttention.Level(Linear.random(5, 3, true, 1), Linear.random(1, 5, true, 2));
        assertNotNull(new HierarchicalAttention.Weights(List.of(good, good)));
        expect("levels: expected a list of L >= 1 attention levels, got null", () -> new HierarchicalAttention.Weights(null));
        expect("levels: expected L >= 1 attention levels, got 0", () -> new HierarchicalAttention.Weights(List.of()));
        List<HierarchicalAttention.Level> withNull = new ArrayList<>(List.of(good));
        withNull.add(null);
        expect("levels[1]: expected a HierarchicalAttention.Level, got null", () -> new HierarchicalAttention.Weights(withNull));
        expect("levels[0].projection: expected a Linear layer, got null",
                () -> new HierarchicalAttention.Weights(List.of(new HierarchicalAttention.Level(null, good.logits()))));
        expect("levels[1].projection: expected a layer 3 → 5 (weight 5 × 3), got 4 → 5", () -> new HierarchicalAttention.Weights(List.of(good,
                new HierarchicalAttention.Level(Linear.random(5, 4, true, 1), good.logits()))));
        expect("levels[0].logits: expected a Linear layer, got null",
                () -> new HierarchicalAttention.Weights(List.of(new HierarchicalAttention.Level(good.projection(), null))));
        expect("levels[1].logits: expected a layer 6 → 1 (weight 1 × 6), got 5 → 1", () -> new HierarchicalAttention.Weights(List.of(good,
                new HierarchicalAttention.Level(Linear.random(6, 3, true, 1), good.logits()))));
        expect("levels[0].logits: expected a layer 5 → 1 (weight 1 × 5), got 5 → 2", () -> new HierarchicalAttention.Weights(List.of(
                new HierarchicalAttention.Level(good.projection(), Linear.random(2, 5, true, 1)))));
        expect("weights: expected HierarchicalAttention.Weights, got null", () -> HierarchicalAttention.of(null));
        expect("levels: expected >= 1, got 0", () -> HierarchicalAttention.random(3, 4, 0, 1));
        expect("width: expected >= 1, got 0", () -> HierarchicalAttention.random(3, 0, 2, 1));
        expect("d: expected >= 1, got -1", () -> HierarchicalAttention.random(-1, 4, 2, 1));
    }

    @Test void inputsAndOffsetsAreValidatedByNameBeforeAnyWork() {
        HierarchicalAttention op = HierarchicalAttention.random(3, 5, 2, 1);
        int[][] off = {{0, 2, 2, 7}, {0, 1, 3}};
        float[] x = new float[7 * 3], g = new float[2 * 3];
        HierarchicalAttentionCpu cpu = new HierarchicalAttentionCpu(op);
        assertNotNull(cpu.backward(x, g, 7, off));
        expect("items: expected >= 1, got 0", () -> cpu.forward(new float[0], 0, off));
        expect("x: expected 7 × 3 = 21 floats, got 20", () -> cpu.forward(new float[20], 7, off));
        expect("x: expected 7 × 3 floats, got null", () -> cpu.forwardWithAttention(null, 7, off));
        expect("offsets: expected 2 levels' group offsets, got null", () -> cpu.forward(x, 7, null));
        expect("offsets: expected 2 levels' group offsets, got 1", () -> cpu.forward(x, 7, new int[][] {off[0]}));
        expect("offsets[1]: expected G + 1 >= 2 group offsets, got null", () -> cpu.forward(x, 7, new int[][] {off[0], null}));
        expect("offsets[0]: expected G + 1 >= 2 group offsets (at least one group), got 1", () -> cpu.forward(x, 7, new int[][] {{7}, off[1]}));
        expect("offsets[0][0]: expected 0 (the first group starts at item 0), got 1", () -> cpu.forward(x, 7, new int[][] {{1, 2, 2, 7}, off[1]}));
        expect("offsets[0][2]: expected >= offsets[0][1] = 4 (offsets are non-decreasing), got 3",
                () -> cpu.forward(x, 7, new int[][] {{0, 4, 3, 7}, off[1]}));
        expect("offsets[0][3]: expected 7 (level 0's items), got 6", () -> cpu.forward(x, 7, new int[][] {{0, 2, 2, 6}, off[1]}));
        expect("offsets[1][2]: expected 3 (level 1's items, the groups of level 0), got 4", () -> cpu.forward(x, 7, new int[][] {off[0], {0, 1, 4}}));
        expect("offsets[1][1]: expected >= offsets[1][0] = 0 (offsets are non-decreasing), got -1",
                () -> cpu.backward(x, g, 7, new int[][] {off[0], {0, -1, 3}}));
        expect("gradOut: expected 2 × 3 = 6 floats, got 3", () -> cpu.backward(x, new float[3], 7, off));
        expect("gradOut: expected 2 × 3 floats, got null", () -> cpu.backward(x, null, 7, off));
        expect("op: expected a HierarchicalAttention, got null", () -> new HierarchicalAttentionCpu(null));
        assertArrayEquals(new int[] {3, 2}, op.groupCounts(7, off));
        assertArrayEquals(new int[] {0, 2, 2, 7, 0, 1, 3}, HierarchicalAttention.flatOffsets(off));
    }

    @Test void randomIsReproducibleAndMatchesLinearRandom() {
        HierarchicalAttention a = HierarchicalAttention.random(3, 4, 2, 42), b = HierarchicalAttention.random(3, 4, 2, 42);
        assertEquals(a.weights(), b.weights());
        assertEquals(Linear.random(4, 3, true, 42), a.weights().levels().get(0).projection());
        assertEquals(Linear.random(1, 4, true, 42 + 3), a.weights().levels().get(1).logits());
        assertEquals(3, a.dim());
        assertEquals(2, a.levels());
    }

    private static void expect(String message, Runnable call) {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, call::run);
        assertTrue(e.getMessage().startsWith(message), "'" + e.getMessage() + "' does not start with '" + message + "'");
    }
}
