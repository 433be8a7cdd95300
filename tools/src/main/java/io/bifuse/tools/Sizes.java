package io.bifuse.tools;

import java.util.List;

/** The sizes of spec §5 that check and bench run (and a quick subset). */
record Sizes(int batch, int dx, int dy, int d) {
    /** MCB: B ∈ {1, 64, 512} at d = 16000; odd d and a d with a prime factor > 7 at B = 64. */
    static List<Sizes> compactBilinear(boolean quick) {
        if (quick) return List.of(new Sizes(1, 2048, 2048, 16000), new Sizes(4, 256, 300, 999), new Sizes(3, 100, 80, 2 * 7919));
        return List.of(new Sizes(1, 2048, 2048, 16000), new Sizes(64, 2048, 2048, 16000), new Sizes(512, 2048, 2048, 16000),
                new Sizes(64, 2048, 2048, 15999), new Sizes(64, 2048, 2048, 2 * 7919));
    }

    String label() { return "B=" + batch + " Dx=" + dx + " Dy=" + dy + " d=" + d; }

    String csvSize() { return "Dx=" + dx + ",Dy=" + dy + ",d=" + d; }
}
