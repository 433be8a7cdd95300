package io.bifuse.tools;

import static org.junit.jupiter.api.Assertions.*;

import org.junit.jupiter.api.Test;

/** The main job's pieces on the quick sizes: check passes on every available backend; bench produces rows. */
class MainTest {
    @Test void quickCheckPasses() {
        assertEquals(0, Check.run(true));
    }

    @Test void quickBenchWritesCsv() throws Exception {
        java.nio.file.Path csv = java.nio.file.Files.createTempFile("bifuse-bench", ".csv");
        Bench.run(true, csv.toString(), 2);
        var lines = java.nio.file.Files.readAllLines(csv);
        assertEquals("op,backend,size,batch,median_ms,p10_ms,p90_ms,runs,bytes,flops,gbps,gflops", lines.get(0));
        assertTrue(lines.stream().anyMatch(l -> l.startsWith("CompactBilinear.forward,bifuse-cpu,")), lines.toString());
        assertTrue(lines.stream().anyMatch(l -> l.startsWith("CompactBilinear.fwd+bwd,bifuse-cpu,")), lines.toString());
    }

    @Test void costModelCountsCompulsoryTraffic() {
        Sizes s = new Sizes(2, 3, 5, 16);
        assertEquals(4.0 * 2 * (3 + 5 + 16), Bench.cost("CompactBilinear.forward", s)[0]);
        assertEquals(4.0 * 2 * (2 * 8 + 2 * 16), Bench.cost("CompactBilinear.fwd+bwd", s)[0]);
    }
}
