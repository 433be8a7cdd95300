package io.bifuse.tools;

import static org.junit.jupiter.api.Assertions.*;

import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/** The suite alone: its quick check passes on the CPU, its bench rows carry the peer's size labels, the cost model is the brief's. */
class BanPoolingSuiteTest {
    @Test void quickCheckPassesOnTheCpu() {
        Check.Report report = new Check.Report();
        new BanPoolingSuite().check(true, null, new SplittableRandom(1), report);
        assertTrue(report.passed() >= 8, "rows: " + report.passed());
        assertEquals(0, report.failed());
    }

    @Test void benchRowsCarryThePeersSizeLabels() {
        // benchmarks/python/compare.py pairs rows on the exact (op, size, batch): these are ban_pooling_peer.py's labels.
        assertEquals(List.of("N=36,M=14,K'=1280,k=1", "N=100,M=14,K'=1280,k=1", "N=36,M=14,K'=3840,k=3", "N=100,M=14,K'=3840,k=3"),
                BanPoolingSuite.SPEC.stream().map(BanPoolingSuite.Size::csvSize).toList());
        for (BanPoolingSuite.Size s : BanPoolingSuite.SPEC) assertEquals(256, s.batch());
        Bench.Session session = new Bench.Session(new SplittableRandom(2), null, 1);
        BanPoolingSuite suite = new BanPoolingSuite();
        session.time(suite, suite.benchCases(true));
        assertEquals(List.of("BanPooling.forward", "BanPooling.fwd+bwd"), session.results().stream().map(Bench.Result::op).toList());
    }

    @Test void costModelIsTheBriefs() {
        // B = 2, N = 3, M = 4, K' = 6, k = 3: I = 2·12 + 2·7·6 = 108, W = 0, O = 4, Mac = 2·3·6·5 = 180.
        BanPoolingSuite.Size s = new BanPoolingSuite.Size(2, 3, 4, 6, 3);
        assertArrayEquals(new double[] {4 * (108 + 4), 2 * 180}, BanPoolingSuite.cost("BanPooling.forward", s));
        assertArrayEquals(new double[] {4 * (3 * 108 + 2 * 4), 6 * 180}, BanPoolingSuite.cost("BanPooling.fwd+bwd", s));
    }
}
