package io.bifuse.cuda;

import io.bifuse.Activation;
import io.bifuse.ConcatMlp;
import io.bifuse.StateDict;
import io.bifuse.cpu.ConcatMlpCpu;
import io.bifuse.reference.ConcatMlpReference;
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
 * {@link ConcatMlpCuda} (cuBLAS and {@code cuda/Linear.cu}'s bias-activation, activation-gradient and
 * copy kernels) against the float64 reference, as {@link BlockCudaTest}, from no hidden layer to two,
 * and against block.bootstrap's {@code ConcatMLP} through the fixtures. Skipped without a GPU (or the
 * simulated one).
 */
@Tag("gpu")
class ConcatMlpCudaTest extends CublasOpTest {
    @TempDir Path dir;

    @ParameterizedTest(name = "B={0} Dx={1} Dy={2} hidden={3} Out={4} {5}")
    @CsvSource({"1,1,1,'',1,RELU", "3,7,5,4,2,TANH", "5,9,8,6 4,3,SIGMOID", "9,301,257,500 500,97,RELU", "4,240,204,50,30,NONE"})
    void matchesTheFloat64Reference(int batch, int dx, int dy, String hiddenList, int out, Activation act) {
        long seed = Stats.freshSeed();
        SplittableRandom r = new SplittableRandom(seed);
        int[] hidden = hiddenList.isBlank() ? new int[0] : java.util.Arrays.stream(hiddenList.trim().split(" ")).mapToInt(Integer::parseInt).toArray();
        ConcatMlp op = ConcatMlp.random(dx, dy, hidden, out, act, r.nextLong());
        int longest = Math.max(dx + dy, Math.max(out, batch));
        for (int h : hidden) longest = Math.max(longest, h);
        try (ConcatMlpCuda cuda = new ConcatMlpCuda(op, ctx)) {
            FusionCudaChecks.check(ctx, op.toString(), new ConcatMlpCpu(op), cuda, ConcatMlp.Gradients::tensors,
                    (x, y, g) -> FusionCudaChecks.joined(ConcatMlpReference.forward(op, x, y, batch), ConcatMlpReference.backward(op, x, y, g, batch)),
                    batch, longest, r, seed);
        }
    }

    @ParameterizedTest(name = "{0}")
    @CsvSource({"concatmlp-default,RELU", "concatmlp-tanh,TANH"})
    void matchesBlockBootstrapsModule(String stem, Activation act) throws IOException {
        try (StateDict sd = Fixtures.open(dir, stem)) {
            ConcatMlp op = ConcatMlp.fromStateDict(sd, "", 10, act);
            try (ConcatMlpCuda cuda = new ConcatMlpCuda(op, ctx)) {
                FusionCudaChecks.assertMatchesFixture(ctx, sd, stem, cuda, op.out());
            }
        }
    }

    @Test void refusesBadArgumentsByName() {
        try (ConcatMlpCuda cuda = new ConcatMlpCuda(ConcatMlp.random(6, 5, new int[] {4}, 3, Activation.RELU, 3), ctx)) {
            FusionCudaChecks.assertRefusals(ctx, cuda, 6, 5, 3);
        }
    }

    /** This op's instance of the {@link DeviceOpContractTest} testbed: ConcatMLP with two hidden layers and relu (block.bootstrap's default). */
    static DeviceOpContractTest.Subject contractSubject(SplittableRandom r) {
        io.bifuse.ConcatMlp op = io.bifuse.ConcatMlp.random(10, 8, new int[] {9, 6}, 5, io.bifuse.Activation.RELU, r.nextLong());
        return FusionCudaChecks.contractSubject("ConcatMlp", new io.bifuse.cpu.ConcatMlpCpu(op), (c, p) -> new ConcatMlpCuda(op, c, p),
                io.bifuse.ConcatMlp.Gradients::tensors, op.gradientNames(), r, 3);
    }
}
