package io.bifuse;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;

/**
 * The package graph of the library's sources, read from the files themselves (an import, or a fully
 * qualified name in code; comments and strings left out), against the intended layering: descriptors
 * ({@code io.bifuse}) at the bottom, the float64 references on them, the CPU and CUDA backends on both,
 * the facade that chooses between them ({@code io.bifuse.backends}) on top (the tools are another
 * module, over the library: Maven refuses a dependency back). An edge that points
 * up a layer, or across between the two backends, closes a circle (everything above depends on the
 * descriptors), so there must be none: the descriptors name their backends only in comments, and
 * choose none.
 */
class ImportCirclesTest {
    private static final Map<String, Integer> LAYER = Map.of(
            "io.bifuse", 0, "io.bifuse.reference", 1, "io.bifuse.cpu", 2, "io.bifuse.cuda", 2, "io.bifuse.backends", 3);

    /** Upward edges that exist today: none (keep it so). */
    private static final Set<String> KNOWN = Set.of();

    private static final Pattern PACKAGE = Pattern.compile("^package ([\\w.]+);", Pattern.MULTILINE);
    // A reference to a class of a bifuse package: io.bifuse.Foo or io.bifuse.sub.Foo (class names start upper case).
    private static final Pattern REFERENCE = Pattern.compile("\\bio\\.bifuse((?:\\.[a-z]\\w*)*)\\.[A-Z]");

    @Test void upwardPackageEdgesOnlyShrink() throws IOException {
        Path src = Path.of("src/main/java");
        assumeTrue(Files.isDirectory(src.resolve("io/bifuse")), "the library's sources are not here (" + src.toAbsolutePath() + ")");
        Map<String, Set<String>> deps = new TreeMap<>();
        try (Stream<Path> files = Files.walk(src)) {
            for (Path f : (Iterable<Path>) files.filter(p -> p.toString().endsWith(".java"))::iterator) {
                String code = stripCommentsAndStrings(Files.readString(f));
                Matcher pm = PACKAGE.matcher(code);
                if (!pm.find()) continue; // module-info
                String pkg = pm.group(1);
                Set<String> to = deps.computeIfAbsent(pkg, k -> new TreeSet<>());
                Matcher m = REFERENCE.matcher(code);
                while (m.find()) {
                    String target = "io.bifuse" + m.group(1);
                    if (!target.equals(pkg)) to.add(target);
                }
            }
        }
        Set<String> upward = new TreeSet<>();
        for (var e : deps.entrySet()) {
            Integer from = LAYER.get(e.getKey());
            assertNotNull(from, "package " + e.getKey() + " has no layer: add it to LAYER");
            for (String to : e.getValue()) {
                Integer at = LAYER.get(to);
                assertNotNull(at, "package " + to + " has no layer: add it to LAYER");
                if (at > from || (at.equals(from) && !to.equals(e.getKey()))) upward.add(e.getKey() + " -> " + to);
            }
        }
        assertEquals(new TreeSet<>(KNOWN), upward, "upward package edges (KNOWN lists today's; the package graph is " + deps + ")");
    }

    /** The code with comments, string and char literals blanked, so that only real references count. */
    static String stripCommentsAndStrings(String s) {
        StringBuilder out = new StringBuilder(s.length());
        int i = 0, n = s.length();
        while (i < n) {
            char c = s.charAt(i);
            if (s.startsWith("//", i)) {
                while (i < n && s.charAt(i) != '\n') i++;
            } else if (s.startsWith("/*", i)) {
                int end = s.indexOf("*/", i + 2);
                i = end < 0 ? n : end + 2;
                out.append(' ');
            } else if (s.startsWith("\"\"\"", i)) {
                int end = s.indexOf("\"\"\"", i + 3);
                i = end < 0 ? n : end + 3;
                out.append("\"\"");
            } else if (c == '"' || c == '\'') {
                i++;
                while (i < n && s.charAt(i) != c) i += s.charAt(i) == '\\' ? 2 : 1;
                i++;
                out.append(c).append(c);
            } else {
                out.append(c);
                i++;
            }
        }
        return out.toString();
    }
}
