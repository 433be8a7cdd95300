package io.bifuse;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.bifuse.cpu.HierarchicalAttentionCpu;
import io.bifuse.cpu.MlbCpu;
import io.bifuse.cpu.MultiHeadAttentionCpu;
import io.bifuse.testing.Stats;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.FloatBuffer;
import java.util.Arrays;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/** The host forms over {@link FloatView}s: every kind of memory gives the float[] form's result, bitwise, and only the out window is written. */
class FloatViewTest {
    private final SplittableRandom rnd = new SplittableRandom(11);

    @Test void arraysBuffersAndSegmentsReadAndWriteTheSameFloats() {
        float[] data = Stats.gaussian(rnd, 10);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment nativeSeg = arena.allocate(40, 4);
            MemorySegment.copy(data, 0, nativeSeg, ValueLayout.JAVA_FLOAT, 0, 10);
            FloatBuffer direct = ByteBuffer.allocateDirect(48).order(ByteOrder.nativeOrder()).asFloatBuffer().position(2);
            direct.put(2, data, 0, 10);
            float[] padded = new float[13];
            System.arraycopy(data, 0, padded, 3, 10);
            FloatView[] views = {FloatView.of(data), FloatView.of(padded, 3, 10), FloatView.of(FloatBuffer.wrap(padded, 3, 10).slice()),
                FloatView.of(direct), FloatView.of(nativeSeg), FloatView.of(MemorySegment.ofArray(padded).asSlice(12, 40))};
            for (FloatView v : views) {
                assertEquals(10, v.length(), v.toString());
                float[] got = new float[10];
                v.copyTo(got, 0, 10);
                assertArrayEquals(data, got, v.toString());
            }
            assertTrue(views[0].isWholeArray());
            assertSame(padded, views[1].array());
            assertSame(padded, views[5].array(), "a heap segment over a float[] is read in place");
            assertEquals(3, views[5].offset());
            assertNull(views[3].array());
            assertEquals(2, direct.position(), "the buffer's position is not moved");
            float[] back = Stats.gaussian(rnd, 10);
            views[4].copyFrom(back, 0, 10);
            float[] read = new float[10];
            MemorySegment.copy(nativeSeg, ValueLayout.JAVA_FLOAT, 0, read, 0, 10);
            assertArrayEquals(back, read);
        }
    }

    @Test void badViewsAreNamed() {
        assertThrows(IllegalArgumentException.class, () -> FloatView.of(new float[4], 3, 2));
        var e = assertThrows(IllegalArgumentException.class, () -> FloatView.of(MemorySegment.ofArray(new byte[6])));
        assertTrue(e.getMessage().startsWith("segment: expected a whole number of floats"), e.getMessage());
        // An unaligned slice of a float[] is still correct, through copies.
        float[] a = {1, 2, 3};
        FloatView v = FloatView.of(MemorySegment.ofArray(new byte[12]).asSlice(0, 8));
        assertNull(v.array());
        v.copyFrom(a, 0, 2);
    }

    @Test void mlbForwardIntoAWindowOfTheCallersArray() {
        int b = 3;
        Mlb op = Mlb.random(7, 5, 6, 4, Activation.TANH, 3);
        float[] x = Stats.gaussian(rnd, b * 7), y = Stats.gaussian(rnd, b * 5);
        try (MlbCpu cpu = new MlbCpu(op); Arena arena = Arena.ofConfined()) {
            float[] want = cpu.forward(x, y, b);
            float[] big = new float[b * 4 + 5];
            Arrays.fill(big, Float.NaN);
            MemorySegment xs = arena.allocateFrom(ValueLayout.JAVA_FLOAT, x);
            float[] yPadded = new float[y.length + 2];
            System.arraycopy(y, 0, yPadded, 2, y.length);
            cpu.forward(FloatView.of(xs), FloatView.of(yPadded, 2, y.length), FloatView.of(big, 2, b * 4), b);
            assertArrayEquals(want, Arrays.copyOfRange(big, 2, 2 + b * 4));
            for (int i : new int[] {0, 1, 2 + b * 4, 3 + b * 4, 4 + b * 4}) assertTrue(Float.isNaN(big[i]), "wrote outside out at " + i);
            var e = assertThrows(IllegalArgumentException.class,
                    () -> cpu.forward(FloatView.of(x), FloatView.of(y), FloatView.of(new float[b * 4 - 1]), b));
            assertTrue(e.getMessage().startsWith("out: expected 12 floats"), e.getMessage());
            e = assertThrows(IllegalArgumentException.class,
                    () -> cpu.forward(FloatView.of(x, 0, 20), FloatView.of(y), FloatView.of(new float[b * 4]), b));
            assertTrue(e.getMessage().startsWith("x: expected 21 floats"), e.getMessage());
        }
    }

    @Test void attentionAndHierarchicalForms() {
        int b = 2, lq = 3, lk = 4;
        MultiHeadAttention mha = MultiHeadAttention.random(8, 8, 2, 5);
        float[] q = Stats.gaussian(rnd, b * lq * 8), k = Stats.gaussian(rnd, b * lk * 8), v = Stats.gaussian(rnd, b * lk * 8);
        ObjectMask mask = ObjectMask.counts(new int[] {4, 2}, lk);
        try (MultiHeadAttentionCpu cpu = new MultiHeadAttentionCpu(mha)) {
            float[] want = cpu.forward(q, k, v, mask, b, lq, lk);
            FloatBuffer out = ByteBuffer.allocateDirect(4 * want.length).order(ByteOrder.nativeOrder()).asFloatBuffer();
            cpu.forward(FloatView.of(FloatBuffer.wrap(q)), FloatView.of(k), FloatView.of(v), mask, FloatView.of(out), b, lq, lk);
            float[] got = new float[want.length];
            out.get(0, got);
            assertArrayEquals(want, got);
        }
        HierarchicalAttention han = HierarchicalAttention.random(6, 5, 2, 9);
        int[][] offsets = {{0, 2, 2, 5}, {0, 1, 3}};
        float[] x = Stats.gaussian(rnd, 5 * 6);
        try (HierarchicalAttentionCpu cpu = new HierarchicalAttentionCpu(han)) {
            float[] want = cpu.forward(x, 5, offsets);
            float[] got = new float[2 * 6];
            cpu.forward(FloatView.of(x), FloatView.of(got), 5, offsets);
            assertArrayEquals(want, got);
            var e = assertThrows(IllegalArgumentException.class, () -> cpu.forward(FloatView.of(x), FloatView.of(got), 5, new int[][] {{0, 5}, {0, 2}}));
            assertTrue(e.getMessage().startsWith("offsets[1][1]: expected 1"), e.getMessage());
        }
    }
}
