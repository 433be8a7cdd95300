package io.bifuse.backends;

import static org.junit.jupiter.api.Assertions.*;

import io.bifuse.Activation;
import io.bifuse.BanPooling;
import io.bifuse.CompactBilinear;
import io.bifuse.Mlb;
import io.bifuse.cpu.MlbCpu;
import io.bifuse.cuda.Cuda;
import io.bifuse.cuda.CudaContext;
import io.bifuse.testing.Stats;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

/** The facade chooses by what is there and says why; both choices compute the op. */
class BackendsTest {
    @Test void withoutAContextItIsTheCpuAndSaysSo() {
        Mlb op = Mlb.random(5, 4, 3, 2, Activation.TANH, 1);
        try (Backends.Choice<Mlb.Backend> c = Backends.of(op, null)) {
            assertInstanceOf(MlbCpu.class, c.backend());
            assertEquals("cpu-fp32: no CUDA context given", c.reason());
        }
        try (Backends.Choice<CompactBilinear.Backend> c = Backends.of(CompactBilinear.seeded(4, 3, 8, 2), null)) {
            assertEquals("cpu-fp32: no CUDA context given", c.reason());
        }
    }

    @Tag("gpu") @Test void withAUsableDeviceItIsCudaAndAgrees() {
        Assumptions.assumeTrue(Cuda.isAvailable(), () -> "no GPU: " + Cuda.status().reason());
        SplittableRandom r = new SplittableRandom(3);
        Mlb op = Mlb.random(6, 5, 4, 3, Activation.TANH, 2);
        float[] x = Stats.gaussian(r, 2 * 6), y = Stats.gaussian(r, 2 * 5);
        try (CudaContext gpu = CudaContext.open(0); Backends.Choice<Mlb.Backend> c = Backends.of(op, gpu);
             Backends.Choice<BanPooling.Backend> p = Backends.of(BanPooling.of(4, 2), gpu)) {
            assertEquals(Cuda.backendName(io.bifuse.Precision.FP32), c.backend().backend());
            assertTrue(c.reason().startsWith(c.backend().backend() + ": "), c.reason());
            if (Cuda.isSimulated()) assertTrue(c.reason().contains("simulated device (not a GPU)"), c.reason());
            assertTrue(p.reason().startsWith("cuda"), p.reason());
            float[] want = new MlbCpu(op).forward(x, y, 2), got = c.backend().forward(x, y, 2);
            for (int i = 0; i < want.length; i++) assertEquals(want[i], got[i], 1e-5, "element " + i);
        }
    }
}
