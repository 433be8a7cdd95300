package io.bifuse.cuda;

import static org.junit.jupiter.api.Assertions.*;

import org.junit.jupiter.api.Test;

/** The shape checks of {@link DeviceMatrix}; no device needed (wrapped addresses are never dereferenced). */
class DeviceMatrixTest {
    static final long BASE = 0x7f00_0000_0000L;

    static DeviceMemory floats(long n) { return DeviceMemory.wrap(BASE, n * Float.BYTES); }

    static String message(Runnable r) { return assertThrows(IllegalArgumentException.class, r::run).getMessage(); }

    @Test void needsEveryElementItNamesAndNoMore() {
        // 3 rows of 4 with stride 6: the last row's padding is not needed, 2·6 + 4 = 16 floats.
        DeviceMatrix m = new DeviceMatrix("x", floats(16), 3, 4, 6);
        assertFalse(m.isDense());
        assertEquals(BASE, m.address());
        assertTrue(message(() -> new DeviceMatrix("x", floats(15), 3, 4, 6)).startsWith("x: 3 × 4 floats with row stride 6 need 64 bytes, the memory has 60"));
        assertTrue(DeviceMatrix.of("y", floats(12), 3, 4).isDense());
        assertEquals(0, new DeviceMatrix("e", floats(0), 0, 4, 4).rows(), "no rows need no memory");
    }

    @Test void badShapesAreNamed() {
        assertEquals("x: row stride 3 is below its 4 columns", message(() -> new DeviceMatrix("x", floats(100), 2, 4, 3)));
        assertEquals("x: expected rows >= 0, got -1", message(() -> new DeviceMatrix("x", floats(100), -1, 4, 4)));
        assertEquals("x: expected cols >= 1, got 0", message(() -> new DeviceMatrix("x", floats(100), 2, 0, 4)));
        assertEquals("x: expected device memory, got null", message(() -> new DeviceMatrix("x", null, 2, 4, 4)));
        assertTrue(message(() -> new DeviceMatrix(null, floats(8), 2, 4, 4)).startsWith("name:"));
        // (rows - 1)·ld overflows an int; the check is in long.
        assertTrue(message(() -> new DeviceMatrix("x", floats(8), 1 << 20, 1 << 12, 1 << 12)).contains("need 17179869184 bytes"));
    }

    @Test void columnAndRowBlocksKeepTheStride() {
        DeviceMatrix m = DeviceMatrix.of("cat", floats(5 * 10), 5, 10);
        DeviceMatrix right = m.columns(6, 4);
        assertEquals(BASE + 6 * 4, right.address());
        assertEquals(5, right.rows());
        assertEquals(4, right.cols());
        assertEquals(10, right.ld());
        assertEquals("cat[:, 6:10]", right.name());
        DeviceMatrix tail = m.rows(3, 2);
        assertEquals(BASE + 3 * 10 * 4, tail.address());
        assertEquals(2, tail.rows());
        assertEquals(0, m.rows(5, 0).rows());
        assertTrue(message(() -> m.columns(7, 4)).startsWith("cat: columns [7, 11) are outside its 10"));
        assertTrue(message(() -> m.rows(4, 2)).startsWith("cat: rows [4, 6) are outside its 5"));
        assertTrue(message(() -> m.columns(-1, 2)).contains("outside"));
    }

    @Test void requireNamesTheArgument() {
        DeviceMatrix m = DeviceMatrix.of("grads.dx", floats(12), 3, 4);
        assertSame(m, m.require(3, 4));
        assertEquals("grads.dx: expected 3 × 5, got 3 × 4", message(() -> m.require(3, 5)));
        assertEquals("grads.dx: expected 5 columns, got 4", message(() -> m.requireCols(5)));
    }
}
