package io.bifuse.cuda;

import io.bifuse.Activation;
import io.bifuse.LinearSum;
import io.bifuse.Normalization;
import io.bifuse.StateDict;
import io.bifuse.cpu.LinearSumCpu;
import io.bifuse.reference.LinearSumReference;
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

/**
 * {@code cuda/LinearSum.cu} + cuBLAS ({@link LinearSumCuda}) against the float64 reference, as
 * {@link BlockCudaTest}, every activation on both sides, and against block.bootstrap's {@code LinearSum}
 * through the fixtures. Skipped without a GPU (or the simulated one).
 */
@Tag("gpu")
class LinearSumCudaTest extends CublasOpTest {
    @TempDir Path dir;

    @ParameterizedTest(name = "B={0} Dx={1} Dy={2} M={3} Out={4} {5} {6} normalized={7}")
    @CsvSource({"1,1,1,1,1,NONE,NONE,false", "3,7,5,4,2,RELU,RELU,false", "5,9,8,6,4,TANH,SIGMOID,true", "9,301,257,129,97,SIGMOID,TANH,true",
        "4,64,48,300,33,RELU,NONE,true"})
    void matchesTheFloat64Reference(int batch, int dx, int dy, int m, int out, Activation in, Activation outAct, boolean normalized) {
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        LinearSum op = LinearSum.random(dx, dy, m, out, in, outAct, normalized ? Normalization.pytorch() : Normalization.NONE, r.nextLong());
        try (LinearSumCuda cuda = new LinearSumCuda(op, ctx)) {
            FusionCudaChecks.check(ctx, op.toString(), new LinearSumCpu(op), cuda, LinearSum.Gradients::tensors,
                    (x, y, g) -> FusionCudaChecks.joined(LinearSumReference.forward(op, x, y, batch), LinearSumReference.backward(op, x, y, g, batch)),
                    batch, Math.max(Math.max(dx, dy), Math.max(m, Math.max(out, batch))), r, seed);
        }
    }

    @ParameterizedTest(name = "{0}")
    @CsvSource({"linearsum-default,RELU,RELU", "linearsum-tanh-sigmoid-normalized,TANH,SIGMOID"})
    void matchesBlockBootstrapsModule(String stem, Activation in, Activation out) throws IOException {
        try (StateDict sd = Fixtures.open(dir, stem)) {
            LinearSum op = LinearSum.fromStateDict(sd, "", in, out, Fixtures.flag(sd, "normalize"));
            try (LinearSumCuda cuda = new LinearSumCuda(op, ctx)) {
                FusionCudaChecks.assertMatchesFixture(ctx, sd, stem, cuda, op.out());
            }
        }
    }

    @Test void refusesBadArgumentsByName() {
        try (LinearSumCuda cuda = new LinearSumCuda(LinearSum.random(6, 5, 4, 3, Activation.RELU, Activation.TANH, Normalization.NONE, 3), ctx)) {
            FusionCudaChecks.assertRefusals(ctx, cuda, 6, 5, 3);
        }
    }

    /** This op's instance of the {@link DeviceOpContractTest} testbed: LinearSum with block.bootstrap's defaults (relu in and out). */
    static DeviceOpContractTest.Subject contractSubject(SplittableRandom r) {
        LinearSum op = LinearSum.random(10, 8, 7, 5, Activation.RELU, Activation.RELU, Normalization.NONE, r.nextLong());
        return FusionCudaChecks.contractSubject("LinearSum", new LinearSumCpu(op), (c, p) -> new LinearSumCuda(op, c, p), LinearSum.Gradients::tensors,
                op.gradientNames(), r, 3);
    }
}
