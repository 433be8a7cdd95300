package io.bifuse.bench;

import static org.junit.jupiter.api.Assertions.*;

import java.util.List;
import org.junit.jupiter.api.Test;
import org.openjdk.jmh.annotations.Param;

/**
 * The JMH benchmarks time exactly what {@code bench} times: {@link Ops}' parameters carry no case of
 * their own (one placeholder, as JMH requires a value), and {@link Jmh} passes every case of the suites unless the command
 * line picks some.
 */
class OpsTest {
    @Test void theParametersComeFromTheSuitesAtRunTime() throws Exception {
        for (var field : List.of(Ops.Host.class.getField("cpuCase"), Ops.Device.class.getField("gpuCase"))) {
            assertArrayEquals(new String[] {Ops.UNSET}, field.getAnnotation(Param.class).value(), field + ": the values belong to the suites");
        }
        List<String> args = List.of(Jmh.withCases(new String[] {"Ops.cpu", "-f", "1"}));
        assertEquals(List.of("Ops.cpu", "-f", "1", "-p", "cpuCase=" + String.join(",", Ops.ids("cpu")), "-p", "gpuCase=" + String.join(",", Ops.ids("gpu"))),
                args);
        assertTrue(Ops.ids("cpu").size() >= 8 && Ops.ids("gpu").size() >= Ops.ids("cpu").size(), "a case per operator at least");
        assertEquals(Ops.ids("gpu").size(), Ops.ids("gpu").stream().distinct().count(), "case ids are unique");
    }

    @Test void aCaseTheCommandLineNamesIsKept() {
        String id = Ops.ids("gpu").get(0);
        List<String> args = List.of(Jmh.withCases(new String[] {"Ops.gpu", "-p", "gpuCase=" + id}));
        assertEquals(List.of("Ops.gpu", "-p", "gpuCase=" + id, "-p", "cpuCase=" + String.join(",", Ops.ids("cpu"))), args);
        assertEquals(List.of("-pgpuCase=" + id, "-p", "cpuCase=" + String.join(",", Ops.ids("cpu"))),
                List.of(Jmh.withCases(new String[] {"-pgpuCase=" + id})));
    }

    @Test void everyIdFindsItsCaseAndNamesAnUnknownOne() {
        for (String id : Ops.ids("gpu")) assertEquals(id, Ops.find(id, id.substring(id.lastIndexOf('/') + 1)).id(id.substring(id.lastIndexOf('/') + 1)));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Ops.find("Mlb/B=1/nothing/fp32", "fp32"));
        assertTrue(e.getMessage().startsWith("case: no case Mlb/B=1/nothing/fp32"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> Ops.find(Ops.UNSET, "cpu"));
        assertTrue(e.getMessage().startsWith("case: none given: run io.bifuse.bench.Jmh"), e.getMessage());
    }

    @Test void aCpuTrialRunsAtTheSmallestCase() {
        // The CPU state end to end, at a small case.
        Ops.Host h = new Ops.Host();
        h.cpuCase = Ops.ids("cpu").stream().filter(id -> id.startsWith("FullBilinear/B=4/")).findFirst().orElseThrow();
        h.setup();
        assertNotNull(h.run.forward().get());
        assertNotNull(h.run.step().get());
    }
}
