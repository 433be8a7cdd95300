package io.bifuse.tools;

import static org.junit.jupiter.api.Assertions.*;

import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/** The suite's own pieces: the cost model shared with the PyTorch peer, its size labels, and its quick check on the CPU. */
class BanAttentionSuiteTest {
    @Test void costModelIsBanMds() {
        // B = 2, N = 3, M = 4, K = 5, G = 6: I = 2·7·5 = 70, W = 30 + 6 = 36, O = 2·6·12 = 144, Mac = 144·5 = 720.
        BanAttentionSuite.Size s = new BanAttentionSuite.Size(2, 3, 4, 5, 6);
        assertArrayEquals(new double[] {4 * (70 + 36 + 144), 2 * 720}, BanAttentionSuite.cost("BanAttention.forward", s));
        assertArrayEquals(new double[] {4 * (3 * 70 + 3 * 36 + 2 * 144), 6 * 720}, BanAttentionSuite.cost("BanAttention.fwd+bwd", s));
    }

    @Test void sizeLabelsAreThePeers() {
        // benchmarks/python/compare.py pairs rows on the exact (op, size, batch): ban_attention_peer.py's labels.
        assertEquals("N=100,M=14,K=3840,G=8", BanAttentionSuite.SPEC_100.csvSize());
        assertEquals("N=36,M=14,K=3840,G=8", BanAttentionSuite.SPEC_36.csvSize());
        assertEquals(256, BanAttentionSuite.SPEC_100.batch());
    }

    @Test void quickCheckPassesOnTheCpu() {
        Check.Report report = new Check.Report();
        new BanAttentionSuite().check(true, null, new SplittableRandom(1), report);
        assertEquals(2 * BanAttentionSuite.sizes(true).size(), report.passed());
        assertEquals(0, report.failed());
    }

    @Test void logitsErrorIsInfiniteWhenTheMaskDiffers() {
        double ninf = Double.NEGATIVE_INFINITY;
        assertEquals(0, BanAttentionSuite.logitsError(new float[] {1, Float.NEGATIVE_INFINITY}, new double[] {1, ninf}));
        assertEquals(Double.POSITIVE_INFINITY, BanAttentionSuite.logitsError(new float[] {1, 2}, new double[] {1, ninf}));
        assertEquals(Double.POSITIVE_INFINITY, BanAttentionSuite.logitsError(new float[] {Float.NEGATIVE_INFINITY, 2}, new double[] {1, 2}));
    }
}
