package io.bifuse.tools;

import static org.junit.jupiter.api.Assertions.*;

import io.bifuse.Activation;
import io.bifuse.Normalization;
import java.util.List;
import org.junit.jupiter.api.Test;

/** What the PyTorch peer's comparison relies on: the bench rows' size labels and the shared cost model. */
class MfbSuiteTest {
    @Test void benchRowsCarryThePeersSizeLabels() {
        // benchmarks/python/compare.py pairs rows on the exact (op, size, batch): these are mfb_peer.py's labels.
        List<MfbSuite.Case> cases = MfbSuite.benchSizes(false);
        assertEquals(List.of("Dx=1024,Dy=2048,o=1000,k=5,blocks=1,none", "Dx=1024,Dy=2048,o=1000,k=5,blocks=2,none",
                "Dx=4800,Dy=4096,o=1000,k=5,blocks=1,bootstrap,Out=3000", "Dx=4800,Dy=4096,o=340,k=5,blocks=2,bootstrap,Out=3000"),
                cases.stream().map(MfbSuite.Case::csvSize).toList());
        for (MfbSuite.Case c : cases.subList(0, 2)) {
            assertEquals(512, c.batch());
            // The peer's model: no activation, signed sqrt + F.normalize per block.
            assertEquals(Activation.NONE, c.act());
            assertEquals(Normalization.pytorch(), c.norm());
        }
        for (MfbSuite.Case c : cases.subList(2, 4)) {
            // The peer's --bootstrap rows: block.bootstrap's VQA2 MFB / MFH (relu in and out, normalize, linear_out), B = 256.
            assertEquals(List.of(256, 3000), List.of(c.batch(), c.out()));
            assertEquals(List.of(Activation.RELU, Activation.RELU, Normalization.pytorch()), List.of(c.act(), c.outAct(), c.norm()));
        }
    }

    @Test void theOutputLayerIsInTheCostModel() {
        // B = 3, Dx = 4, Dy = 6, o = 2, k = 5, n = 2, Out = 7: I = 30, W = 200 + 7·4 = 228, O = 21, M = 600 + 3·7·4 = 684.
        MfbSuite.Case c = new MfbSuite.Case(3, 4, 6, 2, 5, 2, Activation.RELU, Normalization.NONE, 7, Activation.RELU);
        assertArrayEquals(new double[] {4 * (30 + 228 + 21), 2 * 684}, MfbSuite.cost("Mfb.forward", c));
    }

    @Test void costModelIsTheBriefs() {
        // B = 3, Dx = 4, Dy = 6, o = 2, k = 5, n = 2: I = 30, W = 2·2·5·10 = 200, O = 12, M = 3·200 = 600.
        MfbSuite.Case c = new MfbSuite.Case(3, 4, 6, 2, 5, 2, Activation.NONE, Normalization.NONE);
        assertArrayEquals(new double[] {4 * (30 + 200 + 12), 2 * 600}, MfbSuite.cost("Mfb.forward", c));
        assertArrayEquals(new double[] {4 * (3 * 30 + 3 * 200 + 2 * 12), 6 * 600}, MfbSuite.cost("Mfb.fwd+bwd", c));
    }
}
