package io.bifuse.tools;

import static org.junit.jupiter.api.Assertions.*;

import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/** HierarchicalAttention's check and bench rows at their own sizes, and what the PyTorch peer relies on. */
class HierarchicalAttentionSuiteTest {
    @Test void quickCheckPassesOnTheCpu() {
        Check.Report report = new Check.Report();
        new HierarchicalAttentionSuite().check(true, null, new SplittableRandom(3), report);
        assertEquals(0, report.failed());
        assertEquals(2 * HierarchicalAttentionSuite.sizes(true).size(), report.passed());
    }

    @Test void quickBenchGivesCpuRows() {
        Bench.Session session = new Bench.Session(new SplittableRandom(4), null, 1);
        HierarchicalAttentionSuite suite = new HierarchicalAttentionSuite();
        session.time(suite, suite.benchCases(true));
        assertEquals(List.of("HierarchicalAttention.forward", "HierarchicalAttention.fwd+bwd"), session.results().stream().map(Bench.Result::op).toList());
        assertTrue(session.results().stream().allMatch(r -> r.backend().equals("bifuse-cpu-fp32")));
    }

    @Test void benchSizesCarryThePeersLabels() {
        // benchmarks/python/compare.py pairs rows on the exact (op, size, batch): these are hierarchical_attention_peer.py's
        // defaults (its rows at B = 64); bifuse's CPU and CUDA rows are at B = 64 too.
        assertEquals("S=20,W=15,d=512,k=256", HierarchicalAttentionSuite.SPEC.csvSize());
        assertEquals(64, HierarchicalAttentionSuite.SPEC.batch());
        List<BenchCase> full = new HierarchicalAttentionSuite().benchCases(false);
        assertEquals(64, full.get(0).batch());
        assertEquals(HierarchicalAttentionSuite.SPEC.csvSize(), full.get(0).csvSize());
        assertEquals(64, full.get(1).batch());
        assertEquals("S=6,W=9,d=128,k=64", HierarchicalAttentionSuite.MEDIUM.csvSize());
    }

    @Test void theLayoutVariesTheSentencesAroundTheirMean() {
        // B = 2 documents of S = 2 sentences, W = 4: sentences j = 0..3 of 3, 4, 5, 3 words (the peer's sentence_lengths)
        HierarchicalAttentionSuite.Size s = new HierarchicalAttentionSuite.Size(2, 2, 4, 5, 3);
        assertArrayEquals(new int[][] {{0, 3, 7, 12, 15}, {0, 2, 4}}, s.offsets());
        assertEquals(15, s.items());
    }

    @Test void costModelIsThePeers() {
        // hierarchical_attention_peer.py at B=2, S=2, W=4, d=5, k=3: N = 15, I = 75, W = 2·(15 + 6 + 1) = 44, O = 10,
        // M = (15 + 4)·(15 + 3 + 5) = 437; gemm_cost: forward {4(I + W + O), 2M}, fwd+bwd {4(3I + 3W + 2O), 6M}.
        HierarchicalAttentionSuite.Size s = new HierarchicalAttentionSuite.Size(2, 2, 4, 5, 3);
        assertArrayEquals(new double[] {516, 874}, HierarchicalAttentionSuite.cost("HierarchicalAttention.forward", s), 1e-9);
        assertArrayEquals(new double[] {1508, 2622}, HierarchicalAttentionSuite.cost("HierarchicalAttention.fwd+bwd", s), 1e-9);
    }
}
