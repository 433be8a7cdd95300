package io.bifuse.cpu;

import static io.bifuse.cpu.Floats.toFloat;

import io.bifuse.BanBlock;
import io.bifuse.CompactBilinear;
import io.bifuse.ObjectMask;
import io.bifuse.WeightNormGradients;
import io.bifuse.WeightNormLinear;
import io.bifuse.reference.BanBlockReference;
import java.util.ArrayList;
import java.util.List;

/**
 * {@link BanBlock} on the CPU. Today this is the float64 reference ({@code BanBlockReference}) rounded
 * to float: exact, not fast. Immutable and thread-safe; {@link #close()} frees nothing.
 */
public final class BanBlockCpu extends CpuBackend<BanBlock> implements BanBlock.Backend {
    public BanBlockCpu(BanBlock op) {
        super(op, "a BanBlock", Backends.REFERENCE);
    }

    /** {@code x (B × N × Dx)}, {@code y (B × M × Dy)} → {@code B × Dy}; {@code mask} null: zero rows of x are padding. */
    @Override public float[] forward(float[] x, float[] y, ObjectMask mask, int batch, int objects, int tokens) {
        return forwardWithAttention(x, y, mask, batch, objects, tokens).out();
    }

    /** The forward, also returning the attention maps ({@code B × G × N × M}, zero at padded objects). */
    @Override public BanBlock.Result forwardWithAttention(float[] x, float[] y, ObjectMask mask, int batch, int objects, int tokens) {
        op.checkInputs(x, y, mask, batch, objects, tokens);
        BanBlockReference.Result r = BanBlockReference.forward(op, x, y, mask, batch, objects, tokens);
        return new BanBlock.Result(toFloat(r.out()), toFloat(r.attention()));
    }

    /** Every gradient given {@code gradOut = ∂L/∂out} ({@code B × Dy}). */
    @Override public BanBlock.Gradients backward(float[] x, float[] y, ObjectMask mask, float[] gradOut, int batch, int objects, int tokens) {
        op.checkInputs(x, y, mask, batch, objects, tokens);
        CompactBilinear.checkLength("gradOut", gradOut, batch, op.dy());
        List<double[]> t = BanBlockReference.backward(op, x, y, mask, gradOut, batch, objects, tokens).tensors();
        BanBlock.Weights w = op.weights();
        int[] next = {0};
        float[] dx = toFloat(t.get(next[0]++)), dy = toFloat(t.get(next[0]++));
        WeightNormGradients obj = layer(w.objects(), t, next), tok = layer(w.tokens(), t, next), log = layer(w.logits(), t, next);
        List<WeightNormGradients> go = new ArrayList<>(), gt = new ArrayList<>(), res = new ArrayList<>();
        for (WeightNormLinear l : w.glimpseObjects()) go.add(layer(l, t, next));
        for (WeightNormLinear l : w.glimpseTokens()) gt.add(layer(l, t, next));
        for (WeightNormLinear l : w.residuals()) res.add(layer(l, t, next));
        return new BanBlock.Gradients(dx, dy, obj, tok, log, go, gt, res);
    }

    private static WeightNormGradients layer(WeightNormLinear l, List<double[]> t, int[] next) {
        float[] v = toFloat(t.get(next[0]++));
        float g = (float) t.get(next[0]++)[0];
        float[] b = l.hasBias() ? toFloat(t.get(next[0]++)) : null;
        return new WeightNormGradients(v, g, b);
    }
}
