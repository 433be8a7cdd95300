package io.bifuse.bench;

import static org.junit.jupiter.api.Assertions.*;

import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.openjdk.jmh.annotations.Param;

/**
 * JMH reads its parameters from the annotations at compile time; the cases come from the suites at
 * run time. This holds the two equal, so the JMH benchmarks time exactly what {@code bench} times.
 */
class OpsTest {
    private static List<String> declared(Class<?> state) throws NoSuchFieldException {
        return Arrays.asList(state.getField("problem").getAnnotation(Param.class).value());
    }

    private static void same(List<String> want, List<String> got, String state) {
        if (want.equals(got)) return;
        StringBuilder b = new StringBuilder("Ops." + state + "'s @Param is not the suites' cases; it should read:\n");
        for (String id : want) b.append("            \"").append(id).append("\",\n");
        fail(b.toString());
    }

    @Test void theParametersAreTheSuitesCases() throws Exception {
        same(Ops.ids("cpu"), declared(Ops.Host.class), "Host");
        same(Ops.ids("gpu"), declared(Ops.Device.class), "Device");
    }

    @Test void everyIdFindsItsCaseAndNamesAnUnknownOne() {
        for (String id : Ops.ids("gpu")) assertEquals(id, Ops.find(id, id.substring(id.lastIndexOf('/') + 1)).id(id.substring(id.lastIndexOf('/') + 1)));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Ops.find("Mlb/B=1/nothing/fp32", "fp32"));
        assertTrue(e.getMessage().startsWith("problem: no case Mlb/B=1/nothing/fp32"), e.getMessage());
    }

    @Test void aCpuTrialRunsAtTheSmallestCase() {
        // The CPU state end to end, at a small case.
        Ops.Host h = new Ops.Host();
        h.problem = Ops.ids("cpu").stream().filter(id -> id.startsWith("FullBilinear/B=4/")).findFirst().orElseThrow();
        h.setup();
        assertNotNull(h.run.forward().get());
        assertNotNull(h.run.step().get());
    }
}
