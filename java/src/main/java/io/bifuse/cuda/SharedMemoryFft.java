package io.bifuse.cuda;

import java.util.ArrayList;
import java.util.List;

/**
 * The plan of the in-block FFTs of {@code cuda/bifuse_fft.cuh} for one length {@code d}: the radices,
 * the digit-reversed positions {@code perm[k] = pos(k)}, and the twiddle table
 * {@code tw[k] = exp(-2πik/d)} (in double, rounded to float), uploaded once ({@link Tables}).
 *
 * <p>Lengths: every {@code d >= 2} whose prime factors are all at most 7 ({@link #supports}); the kernels
 * then keep a whole sample's length-{@code d} complex sequence (8 d bytes) on chip, which bounds {@code d}
 * by the device's shared memory ({@link CudaContext#maxDynamicSharedBytes}); the ops check that.
 */
final class SharedMemoryFft {
    /** bifuse_fft.cuh's BF_FFT_MAX_STAGES. */
    static final int MAX_STAGES = 16;

    final int d;
    final int[] radices;

    private SharedMemoryFft(int d, int[] radices) {
        this.d = d;
        this.radices = radices;
    }

    /** Whether {@code d} factors into 2, 3, 4, 5 and 7 within {@value #MAX_STAGES} stages. */
    static boolean supports(int d) {
        return radicesOf(d) != null;
    }

    /** The plan for {@code d}; throws naming {@code d} when a prime factor exceeds 7. */
    static SharedMemoryFft of(int d) {
        int[] r = radicesOf(d);
        if (r == null) {
            throw new IllegalArgumentException("d: expected a length whose prime factors are all <= 7 for the on-chip FFT, got " + d
                    + " = " + factorization(d));
        }
        return new SharedMemoryFft(d, r);
    }

    /** Fours first, then a two, threes, fives, sevens; null unless d >= 2 is 7-smooth. */
    private static int[] radicesOf(int d) {
        if (d < 2) return null;
        List<Integer> r = new ArrayList<>();
        int n = d;
        while (n % 4 == 0) { r.add(4); n /= 4; }
        for (int p : new int[] {2, 3, 5, 7}) {
            while (n % p == 0) { r.add(p); n /= p; }
        }
        if (n != 1 || r.size() > MAX_STAGES) return null;
        return r.stream().mapToInt(Integer::intValue).toArray();
    }

    static String factorization(int d) {
        StringBuilder s = new StringBuilder();
        int n = d;
        for (int p = 2; (long) p * p <= n; p++) {
            while (n % p == 0) { s.append(s.isEmpty() ? "" : "·").append(p); n /= p; }
        }
        if (n > 1 || s.isEmpty()) s.append(s.isEmpty() ? "" : "·").append(n);
        return s.toString();
    }

    /**
     * {@code perm[k] = Σ_s p_s L_s}: where the decimation-in-frequency transform leaves {@code X[k]}, and
     * where the decimation-in-time transform wants {@code x[k]} ({@code p_s} the mixed-radix digits of
     * {@code k}, least significant first in radix order; {@code L_s = r_{s+1}···r_{m-1}}).
     */
    int[] perm() {
        int m = radices.length;
        int[] span = new int[m];
        int l = 1;
        for (int s = m - 1; s >= 0; s--) { span[s] = l; l *= radices[s]; }
        int[] perm = new int[d];
        for (int k = 0; k < d; k++) {
            int rest = k, pos = 0;
            for (int s = 0; s < m; s++) {
                pos += (rest % radices[s]) * span[s];
                rest /= radices[s];
            }
            perm[k] = pos;
        }
        return perm;
    }

    /** {@code tw[2k], tw[2k+1]} = cos, sin of {@code -2πk/d}, from double. */
    float[] twiddles() {
        float[] tw = new float[2 * d];
        for (int k = 0; k < d; k++) {
            double a = -2 * Math.PI * k / d;
            tw[2 * k] = (float) Math.cos(a);
            tw[2 * k + 1] = (float) Math.sin(a);
        }
        return tw;
    }

    /** The plan's tables on one device: {@code radix} ({@code stages} ints), {@code perm}, {@code tw}. */
    Tables upload(CudaContext context) {
        return new Tables(context, this);
    }

    static final class Tables implements AutoCloseable {
        final int d, stages;
        final int[] perm;
        final DeviceBuffer radix, permutation, twiddles;

        private Tables(CudaContext context, SharedMemoryFft plan) {
            d = plan.d;
            stages = plan.radices.length;
            perm = plan.perm();
            List<DeviceBuffer> made = new ArrayList<>();
            try {
                made.add(DeviceBuffer.of(context, plan.radices));
                made.add(DeviceBuffer.of(context, perm));
                made.add(DeviceBuffer.of(context, plan.twiddles()));
            } catch (RuntimeException e) {
                made.forEach(DeviceBuffer::close);
                throw e;
            }
            radix = made.get(0);
            permutation = made.get(1);
            twiddles = made.get(2);
        }

        /** {@code perm[h[i]]} for a hash {@code h}: where the kernels find bin {@code h[i]} of the pooled spectrum's inverse. */
        int[] permuted(int[] h) {
            int[] p = new int[h.length];
            for (int i = 0; i < h.length; i++) p[i] = perm[h[i]];
            return p;
        }

        long bytes() { return radix.byteSize() + permutation.byteSize() + twiddles.byteSize(); }

        @Override public void close() {
            radix.close();
            permutation.close();
            twiddles.close();
        }
    }
}
