package io.bifuse.cuda;

import io.bifuse.Block;
import io.bifuse.Block.NormPosition;
import io.bifuse.Linear;
import io.bifuse.Normalization;
import io.bifuse.StateDict;
import io.bifuse.cpu.BlockCpu;
import io.bifuse.reference.BlockReference;
import io.bifuse.testing.Fixtures;
import io.bifuse.testing.Stats;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * {@code cuda/Block.cu} + {@code cuda/Normalization.cu} + cuBLAS ({@link BlockCuda}) against the float64
 * reference on fresh random inputs (the seed is in every message), output and gradients NaN-poisoned,
 * at {@link FusionCudaChecks}' bound (a multiple of the float32 CPU path's own error); and against
 * block.bootstrap's module through the safetensors fixtures. Skipped without a GPU (or the simulated one).
 */
@Tag("gpu")
class BlockCudaTest extends CublasOpTest {
    @TempDir Path dir;

    @ParameterizedTest(name = "B={0} Dx={1} Dy={2} M={3} C={4} R={5} Out={6} shared={7} norm={8} {9}")
    @CsvSource({"1,1,1,1,1,1,1,false,false,BEFORE_CAT", "3,7,5,10,3,2,4,false,true,BEFORE_CAT", "5,9,9,11,4,3,6,true,true,AFTER_CAT",
        "4,30,20,23,5,4,7,false,true,AFTER_CAT", "6,40,40,64,7,3,33,true,false,BEFORE_CAT", "2,300,257,100,20,15,129,false,true,BEFORE_CAT"})
    void matchesTheFloat64Reference(int batch, int dx, int dy, int m, int chunks, int rank, int out, boolean shared, boolean normalized, NormPosition pos) {
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        Block op = Block.random(dx, dy, m, chunks, rank, out, shared, normalized ? Normalization.pytorch() : Normalization.NONE, pos, r.nextLong());
        check(op, batch, r, seed);
    }

    /** Layers without biases: no bias gradient is named or written, the kernels read the uploaded zeros. */
    @Test void layersWithoutBias() {
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        int m = 12, chunks = 3, rank = 2;
        List<Linear> m0 = new ArrayList<>(), m1 = new ArrayList<>();
        for (int s : Block.chunkSizes(m, chunks)) {
            m0.add(Linear.random(rank * s, s, false, r.nextLong()));
            m1.add(Linear.random(rank * s, s, true, r.nextLong()));
        }
        Block op = Block.of(Linear.random(m, 9, false, r.nextLong()), Linear.random(m, 8, true, r.nextLong()), m0, m1, Linear.random(5, m, false, r.nextLong()),
                rank, Normalization.pytorch(), NormPosition.BEFORE_CAT);
        check(op, 4, r, seed);
    }

    private void check(Block op, int batch, SplittableRandom r, long seed) {
        try (BlockCuda cuda = new BlockCuda(op, ctx)) {
            FusionCudaChecks.check(ctx, op.toString(), new BlockCpu(op), cuda, Block.Gradients::tensors,
                    (x, y, g) -> FusionCudaChecks.joined(BlockReference.forward(op, x, y, batch), BlockReference.backward(op, x, y, g, batch).tensors()),
                    batch, Math.max(Math.max(op.dx(), op.dy()), Math.max(op.rank() * op.mmDim(), Math.max(op.out(), batch))), r, seed);
        }
    }

    @ParameterizedTest(name = "{0}")
    @ValueSource(strings = {"block-default", "block-uneven-aftercat-shared"})
    void matchesBlockBootstrapsModule(String stem) throws IOException {
        try (StateDict sd = Fixtures.open(dir, stem)) {
            NormPosition pos = sd.metadata().get("config").contains("\"pos_norm\": \"after_cat\"") ? NormPosition.AFTER_CAT : NormPosition.BEFORE_CAT;
            Block op = Block.fromStateDict(sd, "", Fixtures.flag(sd, "shared"), pos);
            try (BlockCuda cuda = new BlockCuda(op, ctx)) {
                FusionCudaChecks.assertMatchesFixture(ctx, sd, stem, cuda, op.out());
            }
        }
    }

    @Test void refusesBadArgumentsByName() {
        Block op = Block.random(6, 5, 8, 3, 2, 4, false, Normalization.pytorch(), NormPosition.BEFORE_CAT, 3);
        try (BlockCuda cuda = new BlockCuda(op, ctx)) {
            FusionCudaChecks.assertRefusals(ctx, cuda, 6, 5, 4);
        }
    }

    /** This op's instance of the {@link DeviceOpContractTest} testbed: BLOCK with uneven chunks, normalized per chunk (block.bootstrap's default). */
    static DeviceOpContractTest.Subject contractSubject(SplittableRandom r) {
        io.bifuse.Block op = io.bifuse.Block.random(10, 8, 11, 3, 2, 5, false, io.bifuse.Normalization.pytorch(), io.bifuse.Block.NormPosition.BEFORE_CAT, r.nextLong());
        return FusionCudaChecks.contractSubject("Block", new io.bifuse.cpu.BlockCpu(op), (c, p) -> new BlockCuda(op, c, p), io.bifuse.Block.Gradients::tensors,
                op.gradientNames(), r, 3);
    }
}
