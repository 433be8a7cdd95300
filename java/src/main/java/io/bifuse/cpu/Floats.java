package io.bifuse.cpu;

/** The CPU backends' one conversion: a float64 reference's result rounded to float. */
final class Floats {
    private Floats() {}

    static float[] toFloat(double[] a) {
        float[] r = new float[a.length];
        for (int i = 0; i < a.length; i++) r[i] = (float) a[i];
        return r;
    }
}
