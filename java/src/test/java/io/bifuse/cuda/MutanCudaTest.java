package io.bifuse.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;

import io.bifuse.Mutan;
import io.bifuse.Normalization;
import io.bifuse.StateDict;
import io.bifuse.cpu.MutanCpu;
import io.bifuse.reference.MutanReference;
import io.bifuse.testing.Fixtures;
import io.bifuse.testing.Stats;
import java.io.IOException;
import java.nio.file.Path;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * {@link MutanCuda} (BLOCK's kernels on MUTAN's one-chunk form) against the float64 MUTAN reference, as
 * {@link BlockCudaTest} (fresh seeds, NaN-poisoned buffers, {@link FusionCudaChecks}' bound), and against
 * block.bootstrap's {@code Mutan} through the fixtures. Skipped without a GPU (or the simulated one).
 */
@Tag("gpu")
class MutanCudaTest extends CublasOpTest {
    @TempDir Path dir;

    @ParameterizedTest(name = "B={0} Dx={1} Dy={2} M={3} R={4} Out={5} shared={6} normalized={7}")
    @CsvSource({"1,1,1,1,1,1,false,false", "3,7,5,4,3,2,false,true", "5,9,9,6,2,4,true,false", "4,9,9,6,5,3,true,true", "9,301,257,64,5,97,false,true"})
    void matchesTheFloat64Reference(int batch, int dx, int dy, int m, int rank, int out, boolean shared, boolean normalized) {
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        Mutan op = Mutan.random(dx, dy, m, rank, out, shared, normalized ? Normalization.pytorch() : Normalization.NONE, r.nextLong());
        try (MutanCuda cuda = new MutanCuda(op, ctx)) {
            assertEquals(op.gradientNames(), cuda.gradientNames());
            FusionCudaChecks.check(ctx, op.toString(), new MutanCpu(op), cuda, Mutan.Gradients::tensors,
                    (x, y, g) -> FusionCudaChecks.joined(MutanReference.forward(op, x, y, batch), MutanReference.backward(op, x, y, g, batch).tensors()),
                    batch, Math.max(Math.max(dx, dy), Math.max(rank * m, Math.max(out, batch))), r, seed);
        }
    }

    @ParameterizedTest(name = "{0}")
    @ValueSource(strings = {"mutan-default", "mutan-shared-normalized"})
    void matchesBlockBootstrapsModule(String stem) throws IOException {
        try (StateDict sd = Fixtures.open(dir, stem)) {
            Mutan op = Mutan.fromStateDict(sd, "", Fixtures.flag(sd, "shared"), Fixtures.flag(sd, "normalize"));
            try (MutanCuda cuda = new MutanCuda(op, ctx)) {
                FusionCudaChecks.assertMatchesFixture(ctx, sd, stem, cuda, op.out());
            }
        }
    }

    @Test void refusesBadArgumentsByName() {
        try (MutanCuda cuda = new MutanCuda(Mutan.random(6, 5, 4, 3, 7, false, Normalization.pytorch(), 3), ctx)) {
            FusionCudaChecks.assertRefusals(ctx, cuda, 6, 5, 7);
        }
    }

    /** This op's instance of the {@link DeviceOpContractTest} testbed: MUTAN at odd small sizes, block.bootstrap's defaults. */
    static DeviceOpContractTest.Subject contractSubject(SplittableRandom r) {
        io.bifuse.Mutan op = io.bifuse.Mutan.random(10, 8, 7, 3, 5, false, io.bifuse.Normalization.NONE, r.nextLong());
        return FusionCudaChecks.contractSubject("Mutan", new io.bifuse.cpu.MutanCpu(op), (c, p) -> new MutanCuda(op, c, p), io.bifuse.Mutan.Gradients::tensors,
                op.gradientNames(), r, 3);
    }
}
