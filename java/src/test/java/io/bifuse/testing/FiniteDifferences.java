package io.bifuse.testing;

import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Central finite differences in float64 that state their own error: the derivative from steps h and
 * h/2, their Richardson combination {@code (4·D(h/2) − D(h))/3}, and the bound
 * {@code 1e-6·(1 + |D|) + 4·|D(h) − D(h/2)|}. The second term is the differences' own disagreement: it
 * widens the bound only where the function bends sharply within the step (a signed sqrt next to z = 0,
 * where a fixed h fails for any fixed tolerance), and stays far below an indexing or chain-rule mistake,
 * which is of the gradient's own size and does not shrink with h.
 */
public final class FiniteDifferences {
    private FiniteDifferences() {}

    /** The loss with one parameter moved by about {@code delta}: {@code {the actual move, the loss}} (a float parameter moves by what float allows). */
    public interface Probe {
        double[] at(double delta);
    }

    /** The derivative the probe's differences give, with its error bound (see the class comment). */
    public record Estimate(double value, double bound) {}

    public static Estimate estimate(Probe p, double h) {
        double d1 = central(p, h), d2 = central(p, h / 2);
        double r = (4 * d2 - d1) / 3;
        return new Estimate(r, 1e-6 * (1 + Math.abs(r)) + 4 * Math.abs(d1 - d2));
    }

    /** Asserts that {@code analytic} is within the estimate's bound of the probe's derivative. */
    public static void assertDerivative(Probe p, double h, double analytic, String what) {
        Estimate e = estimate(p, h);
        assertTrue(Math.abs(analytic - e.value) <= e.bound, what + ": analytic " + analytic + ", finite differences " + e.value + " ± " + e.bound);
    }

    /** Every element of {@code a} (an input, moved exactly) against {@code analytic}, {@code loss} evaluated after each move. */
    public static void assertInputGradient(double[] a, double[] analytic, java.util.function.DoubleSupplier loss, double h, String what) {
        for (int i = 0; i < a.length; i++) {
            int k = i;
            double keep = a[i];
            assertDerivative(d -> {
                a[k] = keep + d;
                double l = loss.getAsDouble();
                a[k] = keep;
                return new double[] {d, l};
            }, h, analytic[i], what + "[" + i + "]");
        }
    }

    private static double central(Probe p, double h) {
        double[] up = p.at(h), down = p.at(-h);
        return (up[1] - down[1]) / (up[0] - down[0]);
    }
}
