package io.bifuse.cuda;

import io.bifuse.Normalization;
import io.bifuse.StateDict;
import io.bifuse.Tucker;
import io.bifuse.cpu.TuckerCpu;
import io.bifuse.reference.TuckerReference;
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
 * {@link TuckerCuda} (block.bootstrap's {@code Tucker}: {@code cuda/BlockTucker.cu} on the one-chunk form,
 * {@link Tucker#asBlockTucker()}) against the float64 reference, as {@link BlockCudaTest}, and against
 * block.bootstrap's {@code Tucker} through the fixtures. Skipped without a GPU (or the simulated one).
 */
@Tag("gpu")
class TuckerCudaTest extends CublasOpTest {
    @TempDir Path dir;

    @ParameterizedTest(name = "B={0} Dx={1} Dy={2} M={3} Out={4} normalized={5}")
    @CsvSource({"1,1,1,1,1,false", "4,9,7,12,5,true", "3,30,20,17,9,false", "6,64,48,33,40,true"})
    void matchesItsReference(int batch, int dx, int dy, int m, int out, boolean normalized) {
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        Tucker op = Tucker.random(dx, dy, m, out, normalized ? Normalization.pytorch() : Normalization.NONE, r.nextLong());
        try (TuckerCuda cuda = new TuckerCuda(op, ctx)) {
            FusionCudaChecks.check(ctx, op.toString(), new TuckerCpu(op), cuda, Tucker.Gradients::tensors,
                    (x, y, g) -> FusionCudaChecks.joined(TuckerReference.forward(op, x, y, batch), TuckerReference.backward(op, x, y, g, batch)),
                    batch, Math.max(Math.max(dx, dy), Math.max(m * m, Math.max(out, batch))), r, seed);
        }
    }

    @ParameterizedTest(name = "{0}")
    @ValueSource(strings = {"tucker-default", "tucker-normalized"})
    void matchesBlockBootstrapsModule(String stem) throws IOException {
        try (StateDict sd = Fixtures.open(dir, stem)) {
            Tucker op = Tucker.fromStateDict(sd, "", Fixtures.flag(sd, "normalize"));
            try (TuckerCuda cuda = new TuckerCuda(op, ctx)) {
                FusionCudaChecks.assertMatchesFixture(ctx, sd, stem, cuda, op.out());
            }
        }
    }

    @Test void refusesBadArgumentsByName() {
        try (TuckerCuda tucker = new TuckerCuda(Tucker.random(6, 5, 4, 3, Normalization.NONE, 4), ctx)) {
            FusionCudaChecks.assertRefusals(ctx, tucker, 6, 5, 3);
        }
    }

    /** This op's instance of the {@link DeviceOpContractTest} testbed: Tucker at odd small sizes. */
    static DeviceOpContractTest.Subject contractSubject(SplittableRandom r) {
        Tucker op = Tucker.random(10, 8, 6, 5, Normalization.NONE, r.nextLong());
        return FusionCudaChecks.contractSubject("Tucker", new TuckerCpu(op), (c, p) -> new TuckerCuda(op, c, p), Tucker.Gradients::tensors,
                op.gradientNames(), r, 3);
    }
}
