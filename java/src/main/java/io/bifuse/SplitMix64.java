package io.bifuse;

/**
 * The documented generator behind every seeded parameter in bifuse, chosen because it is a few lines in
 * any language (the PyTorch peer reproduces it exactly): SplitMix64 over unsigned 64-bit arithmetic.
 * <pre>
 *   state += 0x9E3779B97F4A7C15
 *   z = state
 *   z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9
 *   z = (z ^ (z >>> 27)) * 0x94D049BB133111EB
 *   return z ^ (z >>> 31)
 * </pre>
 * {@link #nextBelow(int) nextBelow(n)} is the unsigned remainder {@code next() mod n} (its bias,
 * below n/2^64, is far under anything measurable); {@link #nextSign()} is {@code +1} when the top bit
 * of {@code next()} is 0, else {@code -1}.
 */
public final class SplitMix64 {
    private long state;

    public SplitMix64(long seed) { this.state = seed; }

    public long next() {
        long z = (state += 0x9E3779B97F4A7C15L);
        z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
        z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
        return z ^ (z >>> 31);
    }

    public int nextBelow(int n) {
        if (n < 1) throw new IllegalArgumentException("n: expected >= 1, got " + n);
        return (int) Long.remainderUnsigned(next(), n);
    }

    public float nextSign() { return (next() >>> 63) == 0 ? 1f : -1f; }
}
