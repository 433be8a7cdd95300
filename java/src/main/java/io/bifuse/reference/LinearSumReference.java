package io.bifuse.reference;

import io.bifuse.Activation;
import io.bifuse.LinearSum;
import java.util.ArrayList;
import java.util.List;

/** The oracle for {@link LinearSum}: its definition in double, every sum in one fixed order. */
public final class LinearSumReference {
    private LinearSumReference() {}

    public static double[] forward(LinearSum op, float[] x, float[] y, int batch) {
        op.checkInputs(x, y, batch);
        return forward(op, MlbReference.toDouble(x), MlbReference.toDouble(y), batch);
    }

    /** {@code f} given float64 inputs: B × Out. */
    public static double[] forward(LinearSum op, double[] x, double[] y, int batch) {
        return activated(op.outputActivation(), BlockReference.affineRows(hidden(op, x, y, batch), batch, op.mmDim(), op.linearOut(), op.out()));
    }

    /** ẑ: the normalized sum of both activated sides (B × M). */
    private static double[] hidden(LinearSum op, double[] x, double[] y, int batch) {
        int m = op.mmDim();
        double[] a = activated(op.inputActivation(), BlockReference.affineRows(x, batch, op.dx(), op.linear0(), m));
        double[] c = activated(op.inputActivation(), BlockReference.affineRows(y, batch, op.dy(), op.linear1(), m));
        double[] z = new double[batch * m], zh = new double[batch * m];
        for (int i = 0; i < z.length; i++) z[i] = a[i] + c[i];
        for (int b = 0; b < batch; b++) NormalizationReference.forward(op.normalization(), z, b * m, m, zh);
        return zh;
    }

    public static List<double[]> backward(LinearSum op, float[] x, float[] y, float[] gradOut, int batch) {
        op.checkInputs(x, y, batch);
        io.bifuse.CompactBilinear.checkLength("gradOut", gradOut, batch, op.out());
        return backward(op, MlbReference.toDouble(x), MlbReference.toDouble(y), MlbReference.toDouble(gradOut), batch);
    }

    /** Every gradient given {@code g = ∂L/∂f}, in the order and layout of {@link LinearSum#gradientNames()}. */
    public static List<double[]> backward(LinearSum op, double[] x, double[] y, double[] g, int batch) {
        int m = op.mmDim(), out = op.out(), dx = op.dx(), dy = op.dy();
        double[] a = activated(op.inputActivation(), BlockReference.affineRows(x, batch, dx, op.linear0(), m));
        double[] c = activated(op.inputActivation(), BlockReference.affineRows(y, batch, dy, op.linear1(), m));
        double[] z = new double[batch * m], zh = new double[batch * m];
        for (int i = 0; i < z.length; i++) z[i] = a[i] + c[i];
        for (int b = 0; b < batch; b++) NormalizationReference.forward(op.normalization(), z, b * m, m, zh);
        double[] f = activated(op.outputActivation(), BlockReference.affineRows(zh, batch, m, op.linearOut(), out));
        double[] go = new double[batch * out];
        for (int i = 0; i < go.length; i++) go[i] = g[i] * op.outputActivation().derivativeFromOutput(f[i]);
        double[] gzh = BlockReference.inputGradient(go, batch, out, op.linearOut(), m), gz = new double[batch * m];
        for (int b = 0; b < batch; b++) {
            double[] zb = java.util.Arrays.copyOfRange(z, b * m, (b + 1) * m), gb = java.util.Arrays.copyOfRange(gzh, b * m, (b + 1) * m), r = new double[m];
            NormalizationReference.backward(op.normalization(), zb, gb, 0, m, r);
            System.arraycopy(r, 0, gz, b * m, m);
        }
        double[] ga = new double[batch * m], gc = new double[batch * m];
        for (int i = 0; i < ga.length; i++) {
            ga[i] = gz[i] * op.inputActivation().derivativeFromOutput(a[i]);
            gc[i] = gz[i] * op.inputActivation().derivativeFromOutput(c[i]);
        }
        List<double[]> t = new ArrayList<>(List.of(BlockReference.inputGradient(ga, batch, m, op.linear0(), dx), BlockReference.inputGradient(gc, batch, m, op.linear1(), dy)));
        t.add(MlbReference.outerSum(ga, x, batch, m, dx));
        if (op.linear0().hasBias()) t.add(MlbReference.columnSums(ga, batch, m));
        t.add(MlbReference.outerSum(gc, y, batch, m, dy));
        if (op.linear1().hasBias()) t.add(MlbReference.columnSums(gc, batch, m));
        t.add(MlbReference.outerSum(go, zh, batch, out, m));
        if (op.linearOut().hasBias()) t.add(MlbReference.columnSums(go, batch, out));
        return List.copyOf(t);
    }

    private static double[] activated(Activation act, double[] p) {
        for (int i = 0; i < p.length; i++) p[i] = act.apply(p[i]);
        return p;
    }
}
