package io.bifuse.reference;

import io.bifuse.ConcatMlp;
import io.bifuse.Linear;
import java.util.ArrayList;
import java.util.List;

/** The oracle for {@link ConcatMlp}: its definition in double, every sum in one fixed order. */
public final class ConcatMlpReference {
    private ConcatMlpReference() {}

    public static double[] forward(ConcatMlp op, float[] x, float[] y, int batch) {
        op.checkInputs(x, y, batch);
        return forward(op, MlbReference.toDouble(x), MlbReference.toDouble(y), batch);
    }

    public static double[] forward(ConcatMlp op, double[] x, double[] y, int batch) {
        List<double[]> h = activations(op, x, y, batch);
        return h.get(h.size() - 1);
    }

    /** h_0 = [x, y], then every layer's output (activated but for the last). */
    private static List<double[]> activations(ConcatMlp op, double[] x, double[] y, int batch) {
        int dx = op.dx(), dy = op.dy(), in = dx + dy;
        double[] h = new double[batch * in];
        for (int b = 0; b < batch; b++) {
            System.arraycopy(x, b * dx, h, b * in, dx);
            System.arraycopy(y, b * dy, h, b * in + dx, dy);
        }
        List<double[]> hs = new ArrayList<>(List.of(h));
        for (int i = 0; i < op.layers().size(); i++) {
            Linear l = op.layers().get(i);
            double[] o = BlockReference.affineRows(hs.get(i), batch, l.in(), l, l.out());
            if (i < op.layers().size() - 1) for (int k = 0; k < o.length; k++) o[k] = op.activation().apply(o[k]);
            hs.add(o);
        }
        return hs;
    }

    public static List<double[]> backward(ConcatMlp op, float[] x, float[] y, float[] gradOut, int batch) {
        op.checkInputs(x, y, batch);
        io.bifuse.CompactBilinear.checkLength("gradOut", gradOut, batch, op.out());
        return backward(op, MlbReference.toDouble(x), MlbReference.toDouble(y), MlbReference.toDouble(gradOut), batch);
    }

    /** Every gradient given {@code g = ∂L/∂f}, in the order and layout of {@link ConcatMlp#gradientNames()}. */
    public static List<double[]> backward(ConcatMlp op, double[] x, double[] y, double[] g, int batch) {
        List<double[]> hs = activations(op, x, y, batch);
        int n = op.layers().size();
        double[][] gw = new double[n][], gb = new double[n][];
        double[] gcur = g.clone();
        for (int i = n - 1; i >= 0; i--) {
            Linear l = op.layers().get(i);
            gw[i] = MlbReference.outerSum(gcur, hs.get(i), batch, l.out(), l.in());
            gb[i] = MlbReference.columnSums(gcur, batch, l.out());
            double[] gin = BlockReference.inputGradient(gcur, batch, l.out(), l, l.in());
            if (i > 0) for (int k = 0; k < gin.length; k++) gin[k] *= op.activation().derivativeFromOutput(hs.get(i)[k]);
            gcur = gin;
        }
        int dx = op.dx(), dy = op.dy(), in = dx + dy;
        double[] gx = new double[batch * dx], gy = new double[batch * dy];
        for (int b = 0; b < batch; b++) {
            System.arraycopy(gcur, b * in, gx, b * dx, dx);
            System.arraycopy(gcur, b * in + dx, gy, b * dy, dy);
        }
        List<double[]> t = new ArrayList<>(List.of(gx, gy));
        for (int i = 0; i < n; i++) {
            t.add(gw[i]);
            if (op.layers().get(i).hasBias()) t.add(gb[i]);
        }
        return List.copyOf(t);
    }
}
