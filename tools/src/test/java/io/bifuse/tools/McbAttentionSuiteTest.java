package io.bifuse.tools;

import static org.junit.jupiter.api.Assertions.*;

import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/** McbAttention's check and bench rows at their own sizes, and what the PyTorch peer relies on. */
class McbAttentionSuiteTest {
    @Test void quickCheckPassesOnTheCpu() {
        Check.Report report = new Check.Report();
        new McbAttentionSuite().check(true, null, new SplittableRandom(3), report);
        assertEquals(0, report.failed());
        assertEquals(2 * McbAttentionSuite.sizes(true).size(), report.passed());
    }

    @Test void quickBenchGivesCpuRows() {
        Bench.Session session = new Bench.Session(new SplittableRandom(4), null, 1);
        McbAttentionSuite suite = new McbAttentionSuite();
        session.time(suite, suite.benchCases(true));
        assertEquals(List.of("McbAttention.forward", "McbAttention.fwd+bwd"), session.results().stream().map(Bench.Result::op).toList());
        assertTrue(session.results().stream().allMatch(r -> r.backend().equals("bifuse-cpu-fp32")));
    }

    @Test void benchSizesCarryThePeersLabels() {
        // benchmarks/python/compare.py pairs rows on the exact (op, size, batch): these are mcb_attention_peer.py's
        // (its CUDA rows at B = 64, its CPU rows, like bifuse's CPU row, at B = 1).
        assertEquals("L=196,Dq=2048,Dv=2048,d1=16000,H=512,G=2,d2=16000,A=3000,map", McbAttentionSuite.SPEC.csvSize());
        assertEquals(64, McbAttentionSuite.SPEC.batch());
        List<BenchCase> full = new McbAttentionSuite().benchCases(false);
        assertEquals(1, full.get(0).batch());
        assertEquals(McbAttentionSuite.SPEC.csvSize(), full.get(0).csvSize());
        assertEquals(64, full.get(1).batch());
        assertEquals("L=49,Dq=256,Dv=256,d1=2000,H=64,G=2,d2=2000,A=300,map", McbAttentionSuite.MEDIUM.csvSize());
    }

    @Test void costModelIsThePeers() {
        // mcb_attention_peer.work_model(op, B=2, L=3, Dq=5, Dv=4, d1=16, H=3, G=2, d2=8, A=3), fft(16) = 160, fft(8) = 60:
        // I = 34, W = 86, O = 6; forward flops 340 + 2292 + 840 + 472; backward 350 + 4560 + 1680 + 798.
        McbAttentionSuite.Size s = new McbAttentionSuite.Size(2, 3, 5, 4, 16, 3, 2, 8, 3, McbAttentionSuite.MAP);
        assertArrayEquals(new double[] {504, 3944}, McbAttentionSuite.cost("McbAttention.forward", s), 1e-9);
        assertArrayEquals(new double[] {1488, 11332}, McbAttentionSuite.cost("McbAttention.fwd+bwd", s), 1e-9);
        // The spec's sizes, as the peer prints them.
        assertArrayEquals(new double[] {328838888, 226608988484.41904}, McbAttentionSuite.cost("McbAttention.forward", McbAttentionSuite.SPEC), 1);
        assertArrayEquals(new double[] {985748664, 679729246237.7196}, McbAttentionSuite.cost("McbAttention.fwd+bwd", McbAttentionSuite.SPEC), 1);
    }

    @Test void variantsNameAPrecisionAndAChunkBudget() {
        assertEquals(io.bifuse.cuda.McbAttentionCuda.DEFAULT_CHUNK_BYTES, McbAttentionSuite.chunkBytes("tf32"));
        assertEquals(64L << 20, McbAttentionSuite.chunkBytes("fp32-chunk64m"));
        assertEquals(2L << 30, McbAttentionSuite.chunkBytes("fp32-chunk2g"));
        assertEquals(io.bifuse.Precision.BF16, McbAttentionSuite.precision("bf16"));
        assertEquals(io.bifuse.Precision.FP32, McbAttentionSuite.precision("fp32-chunk1g"));
        for (String v : McbAttentionSuite.variants(false)) assertFalse(v.contains(",") || v.contains("/"), v + ": JMH ids split on both");
        // The 2 GiB budget holds every cell row of the spec's B·L = 12,544 (one chunk, as the peer).
        assertTrue(McbAttentionSuite.chunkBytes("fp32-chunk2g") / McbAttentionSuite.SPEC.rowBytes() >= 64 * 196);
    }

    @Test void checkSizesKeepEveryBinFilledAndD1SevenSmooth() {
        for (McbAttentionSuite.Size s : McbAttentionSuite.sizes(false)) {
            assertTrue((long) s.dq() * s.dv() >= 12L * s.d1(), s.label());
            assertTrue((long) s.glimpses() * s.dv() * s.dq() >= 12L * s.d2(), s.label());
            int d = s.d1();
            for (int p : new int[] {2, 3, 5, 7}) while (d % p == 0) d /= p;
            assertEquals(1, d, s.label() + ": d1 with a prime factor above 7");
        }
    }
}
