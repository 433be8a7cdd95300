package io.bifuse.cpu;

import io.bifuse.CompactBilinear;
import io.bifuse.Gradients;
import io.bifuse.reference.NormalizationReference;
import java.util.stream.IntStream;

/**
 * The CPU backend of {@link CompactBilinear}: the FFT route (count sketch, FFT, spectral product,
 * inverse FFT), in double precision, rows in parallel. Independent of the definition-based reference
 * it is checked against: it never forms the outer product.
 *
 * <p>Both sketches go through one complex FFT: with {@code p = Ψx + i·Ψy},
 * {@code X[k] = (P[k] + conj(P[d−k]))/2} and {@code Y[k] = (P[k] − conj(P[d−k]))/(2i)}.
 */
public final class CompactBilinearCpu extends CpuBackend<CompactBilinear> implements CompactBilinear.Backend {
    public CompactBilinearCpu(CompactBilinear op) {
        super(op, "a CompactBilinear", Backends.DOUBLE);
    }

    /** {@code B × Dx}, {@code B × Dy} → {@code B × d}. */
    @Override public float[] forward(float[] x, float[] y, int batch) {
        op.checkInputs(x, y, batch);
        return forward(op, x, y, batch);
    }

    /** Gradients for {@code x} and {@code y} given {@code gradOut = ∂L/∂z} ({@code B × d}). */
    @Override public Gradients backward(float[] x, float[] y, float[] gradOut, int batch) {
        op.checkInputs(x, y, batch);
        CompactBilinear.checkLength("gradOut", gradOut, batch, op.d());
        return backward(op, x, y, gradOut, batch);
    }


    private static float[] forward(CompactBilinear op, float[] x, float[] y, int batch) {
        int d = op.d();
        float[] out = new float[batch * d];
        int[] h1 = op.h1(), h2 = op.h2();
        float[] s1 = op.s1(), s2 = op.s2();
        IntStream.range(0, batch).parallel().forEach(b -> {
            double[][] spectra = spectra(op, x, y, b, h1, s1, h2, s2);
            double[] z = convolve(spectra, d);
            if (!op.normalization().isIdentity()) NormalizationReference.forward(op.normalization(), z, 0, d, z);
            for (int j = 0; j < d; j++) out[b * d + j] = (float) z[j];
        });
        return out;
    }

    private static Gradients backward(CompactBilinear op, float[] x, float[] y, float[] gradOut, int batch) {
        int d = op.d(), dx = op.dx(), dy = op.dy();
        int[] h1 = op.h1(), h2 = op.h2();
        float[] s1 = op.s1(), s2 = op.s2();
        float[] gx = new float[batch * dx], gy = new float[batch * dy];
        Fft fft = Fft.of(d);
        IntStream.range(0, batch).parallel().forEach(b -> {
            double[][] s = spectra(op, x, y, b, h1, s1, h2, s2); // {Xre, Xim, Yre, Yim}
            double[] g = new double[d];
            for (int j = 0; j < d; j++) g[j] = gradOut[b * d + j];
            if (!op.normalization().isIdentity()) {
                double[] z = convolve(s, d);
                double[] gz = new double[d];
                NormalizationReference.backward(op.normalization(), z, g, 0, d, gz);
                g = gz;
            }
            double[] gre = g, gim = new double[d];
            fft.forward(gre, gim);
            // dΨx = IDFT(G·conj(Y))/d and dΨy = IDFT(G·conj(X))/d: both real, so one inverse FFT of
            // A + i·B returns dΨx in the real part and dΨy in the imaginary part.
            double[] re = new double[d], im = new double[d];
            for (int k = 0; k < d; k++) {
                double ar = gre[k] * s[2][k] + gim[k] * s[3][k], ai = gim[k] * s[2][k] - gre[k] * s[3][k];
                double br = gre[k] * s[0][k] + gim[k] * s[1][k], bi = gim[k] * s[0][k] - gre[k] * s[1][k];
                re[k] = ar - bi;
                im[k] = ai + br;
            }
            fft.inverse(re, im);
            for (int a = 0; a < dx; a++) gx[b * dx + a] = (float) (s1[a] * re[h1[a]] / d);
            for (int c = 0; c < dy; c++) gy[b * dy + c] = (float) (s2[c] * im[h2[c]] / d);
        });
        return new Gradients(gx, gy);
    }

    /** {Xre, Xim, Yre, Yim}: the full DFTs of row b's two count sketches. */
    private static double[][] spectra(CompactBilinear op, float[] x, float[] y, int b,
                                      int[] h1, float[] s1, int[] h2, float[] s2) {
        int d = op.d(), dx = op.dx(), dy = op.dy();
        double[] pr = new double[d], pi = new double[d];
        for (int a = 0; a < dx; a++) pr[h1[a]] += s1[a] * x[b * dx + a];
        for (int c = 0; c < dy; c++) pi[h2[c]] += s2[c] * y[b * dy + c];
        Fft.of(d).forward(pr, pi);
        double[] xr = new double[d], xi = new double[d], yr = new double[d], yi = new double[d];
        for (int k = 0; k < d; k++) {
            int m = k == 0 ? 0 : d - k;
            xr[k] = 0.5 * (pr[k] + pr[m]);
            xi[k] = 0.5 * (pi[k] - pi[m]);
            yr[k] = 0.5 * (pi[k] + pi[m]);
            yi[k] = -0.5 * (pr[k] - pr[m]);
        }
        return new double[][] {xr, xi, yr, yi};
    }

    /** z = IDFT(X·Y)/d, real. */
    private static double[] convolve(double[][] s, int d) {
        double[] re = new double[d], im = new double[d];
        for (int k = 0; k < d; k++) {
            re[k] = s[0][k] * s[2][k] - s[1][k] * s[3][k];
            im[k] = s[0][k] * s[3][k] + s[1][k] * s[2][k];
        }
        Fft.of(d).inverse(re, im);
        for (int j = 0; j < d; j++) re[j] /= d;
        return re;
    }
}
