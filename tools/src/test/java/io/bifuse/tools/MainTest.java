package io.bifuse.tools;

import io.bifuse.testing.CompactBilinearTolerance;
import io.bifuse.testing.Stats;
import static org.junit.jupiter.api.Assertions.*;

import org.junit.jupiter.api.Test;

/** The main job's pieces on the quick sizes: check passes on every available backend; bench produces rows. */
class MainTest {
    @Test void oneSuitePerOperatorFoundByItsName() {
        assertEquals(io.bifuse.Operators.names(), Suite.all().stream().map(Suite::name).toList());
        IllegalStateException e = assertThrows(IllegalStateException.class, () -> Suite.named("NoSuchOp"));
        assertTrue(e.getMessage().startsWith("operator NoSuchOp: expected its suite io.bifuse.tools.NoSuchOpSuite"), e.getMessage());
    }

    @Test void quickCheckPasses() {
        assertEquals(0, Check.run(true, null));
    }

    @Test void quickBenchWritesCsv() throws Exception {
        java.nio.file.Path csv = java.nio.file.Files.createTempFile("bifuse-bench", ".csv");
        Bench.run(true, csv.toString(), 2);
        var lines = java.nio.file.Files.readAllLines(csv);
        assertEquals("op,backend,size,batch,median_ms,p10_ms,p90_ms,runs,bytes,flops,gbps,gflops,peak_mem_bytes", lines.get(0));
        // CPU rows leave the peak device memory empty
        assertTrue(lines.stream().filter(l -> l.contains(",bifuse-cpu-")).allMatch(l -> l.endsWith(",")), lines.toString());
        assertTrue(lines.stream().anyMatch(l -> l.startsWith("CompactBilinear.forward,bifuse-cpu-fp32,")), lines.toString());
        assertTrue(lines.stream().anyMatch(l -> l.startsWith("CompactBilinear.fwd+bwd,bifuse-cpu-fp32,")), lines.toString());
    }

    @Test void conditioningBaselineStaysTightEnoughToCatchBugs() {
        // The signed-sqrt bound scales with the measured conditioning, but must stay far below the ~1
        // error of a real mistake, and equal 1e-5 where nothing amplifies the error in z.
        var r = new java.util.SplittableRandom(12);
        int b = 2, dx = 256, dy = 200, d = 1000;
        float[] x = Stats.gaussian(r, b * dx), y = Stats.gaussian(r, b * dy), g = Stats.gaussian(r, b * d);
        for (io.bifuse.Normalization n : new io.bifuse.Normalization[] {io.bifuse.Normalization.pytorch(), io.bifuse.Normalization.caffe(),
                io.bifuse.Normalization.NONE}) {
            io.bifuse.CompactBilinear op = io.bifuse.CompactBilinear.seeded(dx, dy, d, 3).withNormalization(n);
            double[][] ref = io.bifuse.reference.CompactBilinearReference.backward(op, x, y, g, b);
            double tol = CompactBilinearTolerance.backwardTolerance(op, x, y, g, b, ref, 4);
            if (n.isIdentity()) assertEquals(Check.TOLERANCE, tol);
            else assertTrue(tol >= Check.TOLERANCE && tol < 1e-2, n + ": tolerance " + tol);
        }
    }

    @Test void costModelCountsCompulsoryTraffic() {
        CompactBilinearSuite.Size s = new CompactBilinearSuite.Size(2, 3, 5, 16);
        assertEquals(4.0 * 2 * (3 + 5 + 16), CompactBilinearSuite.cost("CompactBilinear.forward", s)[0]);
        assertEquals(4.0 * 2 * (2 * 8 + 2 * 16), CompactBilinearSuite.cost("CompactBilinear.fwd+bwd", s)[0]);
    }
}
