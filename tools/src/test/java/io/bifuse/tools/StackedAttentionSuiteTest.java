package io.bifuse.tools;

import static org.junit.jupiter.api.Assertions.*;

import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/** StackedAttention's check and bench rows at their own sizes, and what the PyTorch peer relies on. */
class StackedAttentionSuiteTest {
    @Test void quickCheckPassesOnTheCpu() {
        Check.Report report = new Check.Report();
        new StackedAttentionSuite().check(true, null, new SplittableRandom(3), report);
        assertEquals(0, report.failed());
        assertEquals(2 * StackedAttentionSuite.sizes(true).size(), report.passed());
    }

    @Test void quickBenchGivesCpuRows() {
        Bench.Session session = new Bench.Session(new SplittableRandom(4), null, 1);
        StackedAttentionSuite suite = new StackedAttentionSuite();
        session.time(suite, suite.benchCases(true));
        assertEquals(List.of("StackedAttention.forward", "StackedAttention.fwd+bwd"), session.results().stream().map(Bench.Result::op).toList());
        assertTrue(session.results().stream().allMatch(r -> r.backend().equals("bifuse-cpu-fp32")));
    }

    @Test void benchSizesCarryThePeersLabels() {
        // benchmarks/python/compare.py pairs rows on the exact (op, size, batch): these are stacked_attention_peer.py's
        // defaults (its rows at B = 64); bifuse's CPU and CUDA rows are at B = 64 too.
        assertEquals("L=196,d=1024,k=512,K=2,paper", StackedAttentionSuite.SPEC.csvSize());
        assertEquals(64, StackedAttentionSuite.SPEC.batch());
        List<BenchCase> full = new StackedAttentionSuite().benchCases(false);
        assertEquals(64, full.get(0).batch());
        assertEquals(StackedAttentionSuite.SPEC.csvSize(), full.get(0).csvSize());
        assertEquals(64, full.get(1).batch());
        assertEquals("L=49,d=128,k=64,K=2,paper", StackedAttentionSuite.MEDIUM.csvSize());
    }

    @Test void costModelIsThePeers() {
        // stacked_attention_peer.py at B=2, L=3, d=5, k=4, K=2: I = 10 + 30 = 40, W = 2·(40 + 12 + 1) = 106, O = 10,
        // M = 2·(120 + 40 + 24 + 30) = 428; gemm_cost: forward {4(I + W + O), 2M}, fwd+bwd {4(3I + 3W + 2O), 6M}.
        StackedAttentionSuite.Size s = new StackedAttentionSuite.Size(2, 3, 5, 4, 2, io.bifuse.StackedAttention.Placement.PAPER);
        assertArrayEquals(new double[] {624, 856}, StackedAttentionSuite.cost("StackedAttention.forward", s), 1e-9);
        assertArrayEquals(new double[] {1832, 2568}, StackedAttentionSuite.cost("StackedAttention.fwd+bwd", s), 1e-9);
    }
}
