package io.bifuse.cuda;

import io.bifuse.Block.NormPosition;
import io.bifuse.BlockTucker;
import io.bifuse.Normalization;
import io.bifuse.StateDict;
import io.bifuse.cpu.BlockTuckerCpu;
import io.bifuse.reference.BlockTuckerReference;
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
 * {@code cuda/BlockTucker.cu} + cuBLAS ({@link BlockTuckerCuda}) against the float64 reference, as
 * {@link BlockCudaTest}, and against block.bootstrap's {@code BlockTucker} through the fixtures
 * ({@link TuckerCuda}, the one-chunk form, in {@link TuckerCudaTest}). At these sizes every chunk's outer
 * products fit one block of rows; {@code rowBlocks} forces several.
 * Skipped without a GPU (or the simulated one).
 */
@Tag("gpu")
class BlockTuckerCudaTest extends CublasOpTest {
    @TempDir Path dir;

    @ParameterizedTest(name = "B={0} Dx={1} Dy={2} M={3} chunks={4} Out={5} shared={6} {7} normalized={8}")
    @CsvSource({"1,1,1,1,1,1,false,AFTER_CAT,false", "3,7,5,11,4,2,false,AFTER_CAT,true", "5,9,9,10,7,4,true,BEFORE_CAT,true",
        "7,61,57,80,10,33,false,BEFORE_CAT,true", "6,40,30,48,1,5,false,AFTER_CAT,true"})
    void matchesTheFloat64Reference(int batch, int dx, int dy, int m, int chunks, int out, boolean shared, NormPosition pos, boolean normalized) {
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        BlockTucker op = BlockTucker.random(dx, dy, m, chunks, out, shared, normalized ? Normalization.pytorch() : Normalization.NONE, pos, r.nextLong());
        check(op, batch, r, seed);
    }

    /**
     * Several outer-product row blocks per chunk (the core's weight gradient accumulated over them, beta 0
     * then 1): MAX_OUTER lowered to 3 rows of the largest chunk, so 10 rows make 4 blocks (3, 3, 3, 1).
     */
    @Test void rowBlocks() {
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        BlockTucker op = BlockTucker.random(9, 8, 23, 3, 5, false, Normalization.pytorch(), NormPosition.BEFORE_CAT, r.nextLong());
        int saved = BlockTuckerCuda.maxOuter;
        BlockTuckerCuda.maxOuter = 3 * op.chunkSize(0) * op.chunkSize(0);
        try {
            check(op, 10, r, seed);
        } finally {
            BlockTuckerCuda.maxOuter = saved;
        }
    }

    private void check(BlockTucker op, int batch, SplittableRandom r, long seed) {
        try (BlockTuckerCuda cuda = new BlockTuckerCuda(op, ctx)) {
            FusionCudaChecks.check(ctx, op.toString(), new BlockTuckerCpu(op), cuda, BlockTucker.Gradients::tensors,
                    (x, y, g) -> FusionCudaChecks.joined(BlockTuckerReference.forward(op, x, y, batch), BlockTuckerReference.backward(op, x, y, g, batch).tensors()),
                    batch, Math.max(Math.max(op.dx(), op.dy()), Math.max(op.chunkSize(0) * op.chunkSize(0), Math.max(op.out(), batch))), r, seed);
        }
    }

    @ParameterizedTest(name = "{0}")
    @ValueSource(strings = {"blocktucker-default", "blocktucker-uneven-aftercat"})
    void matchesBlockBootstrapsModule(String stem) throws IOException {
        try (StateDict sd = Fixtures.open(dir, stem)) {
            NormPosition pos = sd.metadata().get("config").contains("\"pos_norm\": \"after_cat\"") ? NormPosition.AFTER_CAT : NormPosition.BEFORE_CAT;
            BlockTucker op = BlockTucker.fromStateDict(sd, "", Fixtures.flag(sd, "shared"), pos);
            try (BlockTuckerCuda cuda = new BlockTuckerCuda(op, ctx)) {
                FusionCudaChecks.assertMatchesFixture(ctx, sd, stem, cuda, op.out());
            }
        }
    }

    @Test void refusesBadArgumentsByName() {
        try (BlockTuckerCuda cuda = new BlockTuckerCuda(BlockTucker.random(6, 5, 8, 3, 4, false, Normalization.pytorch(), NormPosition.BEFORE_CAT, 3), ctx)) {
            FusionCudaChecks.assertRefusals(ctx, cuda, 6, 5, 4);
        }
    }

    /** This op's instance of the {@link DeviceOpContractTest} testbed: BlockTucker with uneven chunks, normalized per chunk (block.bootstrap's default). */
    static DeviceOpContractTest.Subject contractSubject(SplittableRandom r) {
        BlockTucker op = BlockTucker.random(10, 8, 11, 3, 5, false, Normalization.pytorch(), NormPosition.BEFORE_CAT, r.nextLong());
        return FusionCudaChecks.contractSubject("BlockTucker", new BlockTuckerCpu(op), (c, p) -> new BlockTuckerCuda(op, c, p), BlockTucker.Gradients::tensors,
                op.gradientNames(), r, 3);
    }
}
