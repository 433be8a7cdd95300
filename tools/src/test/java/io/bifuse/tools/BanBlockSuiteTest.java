package io.bifuse.tools;

import static org.junit.jupiter.api.Assertions.*;

import io.bifuse.ObjectMask;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/** BanBlock's check and bench rows at their own sizes, and what the peer relies on. */
class BanBlockSuiteTest {
    @Test void quickCheckPassesOnTheCpu() {
        Check.Report report = new Check.Report();
        new BanBlockSuite().check(true, null, new SplittableRandom(3), report);
        assertEquals(0, report.failed());
        assertEquals(2 * BanBlockSuite.sizes(true).size(), report.passed());
    }

    @Test void quickBenchGivesCpuRows() {
        Bench.Session session = new Bench.Session(new SplittableRandom(4), null, 1);
        BanBlockSuite suite = new BanBlockSuite();
        session.time(suite, suite.benchCases(true));
        assertEquals(List.of("BanBlock.forward", "BanBlock.fwd+bwd"), session.results().stream().map(Bench.Result::op).toList());
        assertTrue(session.results().stream().allMatch(r -> r.backend().equals("bifuse-cpu-fp32")));
    }

    @Test void benchSizesCarryThePeersLabels() {
        // benchmarks/python/compare.py pairs rows on the exact (op, size, batch): these are ban_block_peer.py's labels.
        assertEquals("N=36,M=14,Dx=2048,Dy=1280,K=3840,G=8,Kp=1280,group=1", BanBlockSuite.SPEC36.csvSize());
        assertEquals("N=100,M=14,Dx=2048,Dy=1280,K=3840,G=8,Kp=1280,group=1", BanBlockSuite.SPEC100.csvSize());
        assertEquals(256, BanBlockSuite.SPEC36.batch());
    }

    @Test void costModelIsTheDesigns() {
        // B = 2, N = 3, M = 4, Dx = 5, Dy = 6, K = 6, G = 2, K' = 6, group 3 (pooled 2):
        // I = 2·3·5 + 2·4·6 = 78; W = the op's state-dict floats; O = 12;
        // Mac = 30·(6+12) + 48·(6+12) + 2·2·3·4·6 + 2·2·3·6·5 + 2·2·6·2 = 540 + 864 + 288 + 360 + 48 = 2100.
        BanBlockSuite.Size s = new BanBlockSuite.Size(2, 3, 4, 5, 6, 6, 2, 6, 3);
        double w = s.op(1).parameterCount();
        assertEquals(w, s.parameters());
        assertArrayEquals(new double[] {4 * (78 + w + 12), 2 * 2100}, BanBlockSuite.cost("BanBlock.forward", s));
        assertArrayEquals(new double[] {4 * (3 * 78 + 3 * w + 2 * 12), 6 * 2100}, BanBlockSuite.cost("BanBlock.fwd+bwd", s));
        assertEquals(BanBlockSuite.SPEC36.op(1).parameterCount(), BanBlockSuite.SPEC36.parameters());
    }

    @Test void masksHaveTheDocumentedShapes() {
        SplittableRandom r = new SplittableRandom(5);
        ObjectMask small = BanBlockSuite.mask(r, new BanBlockSuite.Size(4, 7, 5, 13, 11, 9, 3, 6, 1));
        assertEquals(0, small.count(0));
        assertEquals(1, small.count(1));
        ObjectMask spec = BanBlockSuite.mask(r, BanBlockSuite.SPEC100);
        for (int b = 0; b < 256; b++) assertTrue(spec.count(b) >= 10 && spec.count(b) <= 100);
        assertEquals(0, spec.emptySamples());
    }
}
