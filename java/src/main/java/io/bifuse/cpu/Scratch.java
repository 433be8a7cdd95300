package io.bifuse.cpu;

import java.util.concurrent.ConcurrentLinkedDeque;

/**
 * A CPU backend's reusable intermediate arrays, so a call allocates nothing but what it returns.
 * A call takes one {@link Lease} ({@link #lease()}, try-with-resources) and asks it for arrays by slot;
 * leases are pooled, one per concurrent caller, so a backend stays thread-safe. An array from
 * {@link Lease#floats} may be longer than asked and holds whatever the last call left there: callers
 * pass explicit lengths and strides, and write before they read.
 *
 * <p>The backend holds its arrays (the largest each slot has needed) until it is garbage.
 */
final class Scratch {
    private final ConcurrentLinkedDeque<Lease> free = new ConcurrentLinkedDeque<>();

    /** A lease for one call: return it with {@link Lease#close()}. */
    Lease lease() {
        Lease l = free.pollFirst();
        return l != null ? l : new Lease(this);
    }

    /** One caller's arrays. Not thread-safe: one call at a time (the call's workers may share its arrays). */
    static final class Lease implements AutoCloseable {
        private final Scratch owner;
        private float[][] floats = new float[8][];
        private double[][] doubles = new double[2][];
        private int[][] ints = new int[2][];

        private Lease(Scratch owner) {
            this.owner = owner;
        }

        /** At least {@code n} floats in {@code slot} (contents undefined). */
        float[] floats(int slot, int n) {
            if (slot >= floats.length) floats = java.util.Arrays.copyOf(floats, slot + 8);
            float[] a = floats[slot];
            if (a == null || a.length < n) floats[slot] = a = new float[n];
            return a;
        }

        /** At least {@code n} doubles in {@code slot} (contents undefined). */
        double[] doubles(int slot, int n) {
            if (slot >= doubles.length) doubles = java.util.Arrays.copyOf(doubles, slot + 4);
            double[] a = doubles[slot];
            if (a == null || a.length < n) doubles[slot] = a = new double[n];
            return a;
        }

        /** At least {@code n} ints in {@code slot} (contents undefined). */
        int[] ints(int slot, int n) {
            if (slot >= ints.length) ints = java.util.Arrays.copyOf(ints, slot + 4);
            int[] a = ints[slot];
            if (a == null || a.length < n) ints[slot] = a = new int[n];
            return a;
        }

        @Override public void close() { owner.free.addFirst(this); }
    }
}
