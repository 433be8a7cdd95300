package io.bifuse.reference;

import io.bifuse.Tucker;
import java.util.List;

/** The oracle for {@link Tucker}: {@link BlockTuckerReference} on its one-chunk form (the same tensors, in the order of {@link Tucker#gradientNames()}). */
public final class TuckerReference {
    private TuckerReference() {}

    public static double[] forward(Tucker op, float[] x, float[] y, int batch) { return BlockTuckerReference.forward(op.asBlockTucker(), x, y, batch); }

    public static double[] forward(Tucker op, double[] x, double[] y, int batch) { return BlockTuckerReference.forward(op.asBlockTucker(), x, y, batch); }

    public static List<double[]> backward(Tucker op, float[] x, float[] y, float[] gradOut, int batch) {
        return BlockTuckerReference.backward(op.asBlockTucker(), x, y, gradOut, batch).tensors();
    }

    public static List<double[]> backward(Tucker op, double[] x, double[] y, double[] gradOut, int batch) {
        return BlockTuckerReference.backward(op.asBlockTucker(), x, y, gradOut, batch).tensors();
    }
}
