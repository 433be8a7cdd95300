package io.bifuse.reference;

import static io.bifuse.reference.Vectors.*;
import static org.junit.jupiter.api.Assertions.*;

import io.bifuse.LayerNorm;
import io.bifuse.ObjectMask;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/** The oracle itself: the two LayerNorm variants by hand, and finite differences of every tensor of the unit. */
class SelfAttentionUnitReferenceTest {

    @Test void layerNormVariantsByHand() {
        // x = (1, 2, 3, 6): μ = 3, Σ(x − μ)² = 14; MCAN σ = sqrt(14/3), PyTorch sqrt(14/4 + eps)
        double[] x = {1, 2, 3, 6};
        SelfAttentionUnitReference.Norm id = new SelfAttentionUnitReference.Norm(new double[] {1, 1, 1, 1}, new double[4]);
        double sm = Math.sqrt(14 / 3.0) + 1e-6, sp = Math.sqrt(3.5 + 1e-5);
        double[] m = SelfAttentionUnitReference.normForward(LayerNorm.mcan(), id, x, 1, 4);
        double[] p = SelfAttentionUnitReference.normForward(LayerNorm.pytorch(), id, x, 1, 4);
        for (int c = 0; c < 4; c++) {
            assertEquals((x[c] - 3) / sm, m[c], 1e-15);
            assertEquals((x[c] - 3) / sp, p[c], 1e-15);
        }
    }

    @ParameterizedTest @EnumSource(LayerNorm.Variant.class)
    void layerNormGradientsMatchFiniteDifferences(LayerNorm.Variant v) {
        SplittableRandom r = new SplittableRandom(3 + v.ordinal());
        int rows = 3, n = 5;
        LayerNorm ln = new LayerNorm(v, 1e-3);
        SelfAttentionUnitReference.Norm a = new SelfAttentionUnitReference.Norm(gaussian(r, n), gaussian(r, n));
        double[] x = gaussian(r, rows * n), g = gaussian(r, rows * n), dg = new double[n], db = new double[n];
        double[] dx = SelfAttentionUnitReference.normBackward(ln, a, x, g, rows, n, dg, db);
        assertMatchesFiniteDifferences("LN " + v, List.of(x, a.gain(), a.bias()), List.of(dx, dg, db),
                () -> dot(g, SelfAttentionUnitReference.normForward(ln, a, x, rows, n)));
    }

    @ParameterizedTest @EnumSource(LayerNorm.Variant.class)
    void gradientsOfEveryTensorMatchFiniteDifferences(LayerNorm.Variant v) {
        // Every entry of every input and parameter tensor, central differences with step 1e-6 in float64
        // (see Vectors). Padded keys, one sample with none; H = 6 over 2 heads, F = 7.
        SplittableRandom r = new SplittableRandom(11 + v.ordinal());
        int batch = 2, tokens = 4, h = 6, f = 7;
        SelfAttentionUnitReference.Params p = params(r, h, f, 2, new LayerNorm(v, v == LayerNorm.Variant.MCAN ? 1e-6 : 1e-5));
        boolean[] real = MultiHeadAttentionReference.real(ObjectMask.counts(new int[] {3, 0}, tokens), batch, tokens);
        double[] x = gaussian(r, batch * tokens * h), g = gaussian(r, batch * tokens * h);
        List<double[]> wrt = new ArrayList<>(List.of(x));
        wrt.addAll(p.tensors());
        assertMatchesFiniteDifferences("SA " + v, wrt, SelfAttentionUnitReference.backward(p, x, real, g, batch, tokens),
                () -> dot(g, SelfAttentionUnitReference.forward(p, x, real, batch, tokens)));
    }

    static SelfAttentionUnitReference.Params params(SplittableRandom r, int h, int f, int heads, LayerNorm ln) {
        MultiHeadAttentionReference.Params a = MultiHeadAttentionReferenceTest.gaussianParams(r, h, h, h, h, h, heads, true);
        return new SelfAttentionUnitReference.Params(a, MlbAttentionReferenceTest.layer(r, f, h, true), MlbAttentionReferenceTest.layer(r, h, f, true),
                norm(r, h), norm(r, h), ln);
    }

    static SelfAttentionUnitReference.Norm norm(SplittableRandom r, int h) {
        double[] g = gaussian(r, h), b = gaussian(r, h);
        for (int i = 0; i < h; i++) g[i] = 1 + 0.3 * g[i];
        return new SelfAttentionUnitReference.Norm(g, b);
    }
}
