package io.bifuse.cuda;

import static org.junit.jupiter.api.Assertions.*;

import org.junit.jupiter.api.Test;

/** The host half of the on-chip FFT plan (no device): radices, the digit-reversal table, the twiddles. */
class SharedMemoryFftTest {

    @Test void radicesMultiplyToDAndFoursComeFirst() {
        assertArrayEquals(new int[] {4, 4, 4, 2, 5, 5, 5}, SharedMemoryFft.of(16000).radices);
        assertArrayEquals(new int[] {3, 3, 7, 7, 7}, SharedMemoryFft.of(3087).radices);
        assertArrayEquals(new int[] {2}, SharedMemoryFft.of(2).radices);
        for (int d : new int[] {1, 11, 15838, 16001, 2 * 11}) assertFalse(SharedMemoryFft.supports(d), "d = " + d);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> SharedMemoryFft.of(15999));
        assertTrue(e.getMessage().startsWith("d: expected a length whose prime factors are all <= 7"), e.getMessage());
        assertTrue(e.getMessage().endsWith("got 15999 = 3·5333"), e.getMessage());
    }

    /** perm is a bijection of [0, d) and puts the digits of k, least significant first, at the strides L_s. */
    @Test void permIsTheMixedRadixDigitReversal() {
        for (int d : new int[] {2, 6, 12, 60, 4725, 16000}) {
            int[] perm = SharedMemoryFft.of(d).perm();
            boolean[] seen = new boolean[d];
            for (int k = 0; k < d; k++) {
                assertFalse(seen[perm[k]], "d = " + d + ": position " + perm[k] + " twice");
                seen[perm[k]] = true;
            }
            assertEquals(0, perm[0]);
        }
        // d = 12 = 4·3: k = p0 + 4 p1, pos = 3 p0 + p1.
        int[] perm = SharedMemoryFft.of(12).perm();
        for (int k = 0; k < 12; k++) assertEquals(3 * (k % 4) + k / 4, perm[k], "k = " + k);
    }

    @Test void twiddlesAreTheRootsOfUnity() {
        float[] tw = SharedMemoryFft.of(16000).twiddles();
        assertEquals(1f, tw[0]);
        assertEquals(0f, tw[1], 0f);
        assertEquals(0f, tw[2 * 4000], 1e-7f);  // exp(-i pi/2) = -i
        assertEquals(-1f, tw[2 * 4000 + 1], 1e-7f);
        for (int k = 0; k < 16000; k += 997) assertEquals(1.0, Math.hypot(tw[2 * k], tw[2 * k + 1]), 1e-7);
    }
}
