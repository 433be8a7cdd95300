package io.bifuse.cuda;

import static org.junit.jupiter.api.Assertions.*;

import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;

/**
 * Without a GPU: every kernel the Java side launches ({@link Kernels#all()}, which
 * {@link CudaContext#launch} enforces) exists in the built PTX with exactly the parameters it is
 * launched with, and its name is in the fatbin. Skipped only when the jar was built without nvcc.
 */
class KernelCatalogTest {
    private static final Pattern ENTRY = Pattern.compile("\\.entry\\s+(\\w+)\\s*\\(([^)]*)\\)", Pattern.DOTALL);
    private static final Pattern PARAM = Pattern.compile("\\.param\\s+\\.(\\w+)\\s+\\w+");

    @Test void everyLaunchedKernelIsInThePtxWithItsSignature() {
        String ptx = Kernels.ptx();
        RequireGpu.that(ptx != null, () -> "the CUDA kernels were not built (no nvcc at build time): nothing to check");
        Map<String, String> entries = new HashMap<>();
        Matcher m = ENTRY.matcher(ptx);
        while (m.find()) {
            StringBuilder sig = new StringBuilder();
            Matcher p = PARAM.matcher(m.group(2));
            while (p.find()) {
                sig.append(switch (p.group(1)) {
                    case "u64", "b64", "s64" -> 'P'; // pointer or 64-bit integer: both 8 bytes
                    case "u32", "s32", "b32" -> 'i';
                    case "f32" -> 'f';
                    default -> '?';
                });
            }
            entries.put(m.group(1), sig.toString());
        }
        List<KernelSpec> all = Kernels.all();
        assertFalse(all.isEmpty());
        for (KernelSpec k : all) {
            assertTrue(entries.containsKey(k.name()), k.name() + " is launched from Java but is not in bifuse.ptx; entries: " + entries.keySet());
            String expected = k.signature().replace('p', 'P').replace('l', 'P');
            assertEquals(expected, entries.get(k.name()), k.name() + ": Java launches it with (" + k.signature() + ")");
        }
    }

    @Test void everyLaunchedKernelIsInTheFatbin() {
        byte[] fatbin = Kernels.builtFatbin(); // not the simulator's module image, which is no fatbin
        RequireGpu.that(fatbin != null, () -> "the CUDA kernels were not built (no nvcc at build time): nothing to check");
        String text = new String(fatbin, StandardCharsets.ISO_8859_1); // built uncompressed: names are plain bytes
        for (KernelSpec k : Kernels.all()) {
            assertTrue(text.contains(k.name() + "\0"), k.name() + " missing from bifuse.fatbin");
        }
        assertTrue(text.contains(".target sm_90"), "the fatbin should carry compute_90 PTX for newer GPUs");
    }

    @Test void kernelNamesAreUnique() {
        assertEquals(Kernels.all().size(), Kernels.all().stream().map(KernelSpec::name).distinct().count());
    }

    @Test void launchArgumentsAreCheckedAgainstTheSignature() {
        KernelSpec k = new KernelSpec("k", "pif");
        var e = assertThrows(IllegalArgumentException.class, () -> k.marshal(new Object[] {DeviceMemory.wrap(256, 4), 1}));
        assertTrue(e.getMessage().contains("launched with 2 arguments, the kernel takes 3"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> k.marshal(new Object[] {DeviceMemory.wrap(256, 4), 1, 2.0}));
        assertTrue(e.getMessage().contains("argument 2 must be float, got Double"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> k.marshal(new Object[] {256L, 1, 2f}));
        assertTrue(e.getMessage().contains("argument 0 must be device memory"), e.getMessage());
        assertEquals(3, k.marshal(new Object[] {DeviceMemory.wrap(256, 4), 1, 2f}).length);
    }
}
