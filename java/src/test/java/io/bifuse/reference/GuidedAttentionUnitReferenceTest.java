package io.bifuse.reference;

import static io.bifuse.reference.Vectors.*;
import static org.junit.jupiter.api.Assertions.*;

import io.bifuse.LayerNorm;
import io.bifuse.ObjectMask;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/** The oracle itself: finite differences of every tensor of the unit, both LayerNorm variants, both sequences padded. */
class GuidedAttentionUnitReferenceTest {

    @ParameterizedTest @EnumSource(LayerNorm.Variant.class)
    void gradientsOfEveryTensorMatchFiniteDifferences(LayerNorm.Variant v) {
        // central differences with step 1e-6 in float64 (see Vectors); x padded in sample 1, y with no real
        // token in sample 1 (mcan-vqa's uniform attention) and padded in sample 0; Lx != Ly so a swapped
        // sequence cannot cancel
        SplittableRandom r = new SplittableRandom(21 + v.ordinal());
        int batch = 2, lx = 4, ly = 3, h = 6, f = 5, heads = 2;
        LayerNorm ln = new LayerNorm(v, v == LayerNorm.Variant.MCAN ? 1e-6 : 1e-5);
        SelfAttentionUnitReference.Params sa = SelfAttentionUnitReferenceTest.params(r, h, f, heads, ln);
        GuidedAttentionUnitReference.Params p = new GuidedAttentionUnitReference.Params(sa.attention(),
                MultiHeadAttentionReferenceTest.gaussianParams(r, h, h, h, h, h, heads, true), sa.ffnHidden(), sa.ffnOut(), sa.norm1(),
                SelfAttentionUnitReferenceTest.norm(r, h), sa.norm2(), ln);
        boolean[] xr = MultiHeadAttentionReference.real(ObjectMask.counts(new int[] {4, 2}, lx), batch, lx);
        boolean[] yr = MultiHeadAttentionReference.real(ObjectMask.counts(new int[] {2, 0}, ly), batch, ly);
        double[] x = gaussian(r, batch * lx * h), y = gaussian(r, batch * ly * h), g = gaussian(r, batch * lx * h);
        List<double[]> wrt = new ArrayList<>(List.of(x, y));
        wrt.addAll(p.tensors());
        List<double[]> an = GuidedAttentionUnitReference.backward(p, x, xr, y, yr, g, batch, lx, ly);
        assertEquals(wrt.size(), an.size());
        assertMatchesFiniteDifferences("GA " + v, wrt, an, () -> dot(g, GuidedAttentionUnitReference.forward(p, x, xr, y, yr, batch, lx, ly)));
    }
}
