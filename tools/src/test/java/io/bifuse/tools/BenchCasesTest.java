package io.bifuse.tools;

import static org.junit.jupiter.api.Assertions.*;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.bifuse.cuda.Cuda;
import io.bifuse.cuda.CudaContext;
import io.bifuse.cuda.CudaStream;
import io.bifuse.cuda.DeviceBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.stream.Stream;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Every quick {@link BenchCase} of every suite runs: each CPU row once, and each GPU variant opened,
 * called (forward and training step) and closed. {@code bench} times no GPU row on the simulated
 * device and the JMH benchmarks refuse it, so without this the device half of the cases would first
 * run on a GPU host; here it runs wherever the GPU tests do (the simulated device in CI), and must
 * leave no device memory behind.
 */
@Tag("gpu")
class BenchCasesTest {
    static Stream<Suite> suites() { return Suite.all().stream(); }

    @ParameterizedTest(name = "{0}") @MethodSource("suites")
    void everyQuickCaseRunsOnEachBackend(Suite suite) throws Exception {
        List<BenchCase> cases = suite.benchCases(true);
        assertFalse(cases.isEmpty(), suite.name() + " has no bench case");
        SplittableRandom r = new SplittableRandom(11);
        int hostRows = 0, deviceRows = 0;
        for (BenchCase c : cases) {
            assertEquals(suite.name(), c.op(), "a case's op is its suite's name");
            if (c.host() == null) continue;
            for (BenchCase.HostRun h : c.host().apply(r)) {
                assertNotNull(h.forward().get(), c.label() + " " + h.backend() + " forward");
                if (h.step() != null) assertNotNull(h.step().get(), c.label() + " " + h.backend() + " step");
                hostRows++;
            }
        }
        assertTrue(hostRows > 0, suite.name() + ": no CPU row");
        assumeTrue(Cuda.isAvailable(), "no CUDA device: " + Cuda.status().reason());
        try (CudaContext ctx = CudaContext.open(0)) {
            String no = suite.gpuUnavailableReason();
            assumeTrue(no == null, no);
            long before = DeviceBuffer.liveBytes();
            for (BenchCase c : cases) {
                for (String v : c.variants()) {
                    try (CudaStream st = CudaStream.create(ctx); BenchCase.DeviceRun d = c.device().open(ctx, v, st, r)) {
                        assertNotNull(d.op(), c.label() + " " + v + ": the run names its op");
                        d.forward();
                        d.step();
                        st.synchronize();
                    }
                    deviceRows++;
                }
            }
            assertTrue(deviceRows > 0, suite.name() + ": no GPU variant in its quick cases");
            assertEquals(before, DeviceBuffer.liveBytes(), suite.name() + ": device memory left behind by the bench cases");
        }
    }
}
