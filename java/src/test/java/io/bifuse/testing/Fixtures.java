package io.bifuse.testing;

import static org.junit.jupiter.api.Assertions.assertTrue;

import io.bifuse.StateDict;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * The block.bootstrap fusion fixtures ({@code io/bifuse/fusions/*.safetensors}, written by the
 * {@code make_fixtures.py} beside them from block.bootstrap's own modules): opening one, and reading its
 * constructor arguments.
 */
public final class Fixtures {
    private Fixtures() {}

    /** The fixture {@code stem}, copied into {@code dir} (a resource inside a jar cannot be mapped) and opened. */
    public static StateDict open(Path dir, String stem) throws IOException {
        Path p = dir.resolve(stem + ".safetensors");
        try (InputStream in = Fixtures.class.getResourceAsStream("/io/bifuse/fusions/" + stem + ".safetensors")) {
            assertTrue(in != null, "the fixture io/bifuse/fusions/" + stem + ".safetensors (make_fixtures.py writes it)");
            Files.copy(in, p);
        }
        return StateDict.readSafetensors(p);
    }

    /** Whether the fixture's constructor arguments (metadata "config", Python's json.dumps) set {@code key} true. */
    public static boolean flag(StateDict sd, String key) {
        String c = sd.metadata().get("config");
        assertTrue(c != null, sd + ": no config in the metadata");
        return c.contains("\"" + key + "\": true");
    }
}
