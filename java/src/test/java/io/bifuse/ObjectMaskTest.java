package io.bifuse;

import static org.junit.jupiter.api.Assertions.*;

import org.junit.jupiter.api.Test;

class ObjectMaskTest {
    @Test void zeroRowsMarksOnlyAllZeroRowsAsPadding() {
        // 2 samples × 3 objects × 2 features: padding in the middle, -0.0 counts as zero, NaN is real
        float[] x = {1, 0, 0, 0, 0, 2,
                     0, -0f, Float.NaN, 0, 0, 0};
        ObjectMask m = ObjectMask.zeroRows(x, 2, 3, 2);
        assertArrayEquals(new int[] {2, 1}, m.counts());
        assertArrayEquals(new int[] {0, 2, -1, 1, -1, -1}, m.indices());
        assertTrue(m.isReal(0, 2));
        assertFalse(m.isReal(0, 1));
        assertFalse(m.isReal(1, 0));
        assertEquals(0, m.emptySamples());
    }

    @Test void countsKeepTheFirstObjectsAndCountEmptySamples() {
        ObjectMask m = ObjectMask.counts(new int[] {3, 0, 1}, 3);
        assertArrayEquals(new int[] {0, 1, 2, -1, -1, -1, 0, -1, -1}, m.indices());
        assertEquals(1, m.emptySamples());
        assertEquals(m, ObjectMask.of(new boolean[] {true, true, true, false, false, false, true, false, false}, 3, 3));
        assertEquals(ObjectMask.all(2, 4), ObjectMask.counts(new int[] {4, 4}, 4));
    }

    @Test void badInputNamesTheArgument() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> ObjectMask.counts(new int[] {2, 5}, 4));
        assertTrue(e.getMessage().startsWith("counts[1]: expected 0..4"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> ObjectMask.counts(new int[] {-1}, 4));
        assertTrue(e.getMessage().startsWith("counts[0]"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> ObjectMask.zeroRows(new float[5], 1, 3, 2));
        assertTrue(e.getMessage().startsWith("x: expected 3 × 2"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> ObjectMask.all(2, 0));
        assertTrue(e.getMessage().startsWith("objects:"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> ObjectMask.all(2, 3).requireShape("mask", 2, 4));
        assertTrue(e.getMessage().startsWith("mask: expected a mask for 2 samples × 4 objects"), e.getMessage());
    }
}
