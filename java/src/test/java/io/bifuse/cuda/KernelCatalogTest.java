package io.bifuse.cuda;

import static org.junit.jupiter.api.Assertions.*;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;

/**
 * Without a GPU: every kernel the Java side launches ({@link Kernels#all()}, which
 * {@link CudaContext#launch} enforces) exists in the built PTX with exactly the parameters it is
 * launched with, and its name is in the fatbin. A by-value struct parameter ({@code {...}} in a
 * {@link KernelSpec}) must have the PTX's alignment and size, and its fields the offsets, widths and
 * kinds of the kernel's loads from it. Skipped only when the jar was built without nvcc.
 */
class KernelCatalogTest {
    // An entry, its parameter declarations and its body (which ends at the first "}" in column 0).
    private static final Pattern ENTRY = Pattern.compile("\\.entry\\s+(\\w+)\\s*\\(([^)]*)\\)[^{]*\\{(.*?)\\n\\}", Pattern.DOTALL);
    private static final Pattern SCALAR = Pattern.compile("\\.param\\s+\\.(\\w+)\\s+(\\w+)");
    // A by-value struct: .param .align A .b8 NAME[SIZE]
    private static final Pattern STRUCT = Pattern.compile("\\.param\\s+\\.align\\s+(\\d+)\\s+\\.b8\\s+(\\w+)\\[(\\d+)\\]");
    // ld.param[.v2|.v4].TYPE DEST, [NAME+OFFSET]
    private static final Pattern LOAD = Pattern.compile("ld\\.param(?:\\.v([24]))?\\.(\\w+)\\s+[^\\[;]*\\[(%?\\w+)(?:\\+(\\d+))?\\]");
    // The parameter's address in a register (mov.b64 %rd7, NAME;), which ld.param then reads through
    private static final Pattern ADDRESS = Pattern.compile("mov\\.[bu]64\\s+(%\\w+)\\s*,\\s*(\\w+)\\s*;");

    /** One parameter as the PTX declares it: 'P', 'i', 'f', or {align=A size=S}; and a struct's PTX name. */
    private record Declared(String code, String structName) {}

    private static List<Declared> declarations(String kernel, String list) {
        List<Declared> out = new ArrayList<>();
        if (list.isBlank()) return out;
        for (String d : list.split(",")) {
            d = d.trim();
            Matcher st = STRUCT.matcher(d), sc = SCALAR.matcher(d);
            if (st.matches()) {
                out.add(new Declared("{align=" + st.group(1) + " size=" + st.group(3) + "}", st.group(2)));
            } else if (sc.matches()) {
                out.add(new Declared(switch (sc.group(1)) {
                    case "u64", "b64", "s64" -> "P"; // pointer or 64-bit integer: both 8 bytes
                    case "u32", "s32", "b32" -> "i";
                    case "f32" -> "f";
                    default -> fail(kernel + ": parameter of a type no KernelSpec describes: " + d);
                }, null));
            } else {
                fail(kernel + ": a parameter declaration this test does not know: " + d);
            }
        }
        return out;
    }

    private static String expected(KernelSpec.Parameter p) {
        if (p.struct()) return "{align=" + p.align() + " size=" + p.size() + "}";
        return switch (p.types().charAt(0)) {
            case 'p', 'l' -> "P";
            default -> String.valueOf(p.types().charAt(0));
        };
    }

    @Test void everyLaunchedKernelIsInThePtxWithItsSignature() {
        String ptx = Kernels.ptx();
        RequireGpu.that(ptx != null, () -> "the CUDA kernels were not built (no nvcc at build time): nothing to check");
        Map<String, List<Declared>> entries = new HashMap<>();
        Map<String, String> bodies = new HashMap<>();
        Matcher m = ENTRY.matcher(ptx);
        while (m.find()) {
            entries.put(m.group(1), declarations(m.group(1), m.group(2)));
            bodies.put(m.group(1), m.group(3));
        }
        List<KernelSpec> all = Kernels.all();
        assertFalse(all.isEmpty());
        int structs = 0;
        for (KernelSpec k : all) {
            assertTrue(entries.containsKey(k.name()), k.name() + " is launched from Java but is not in bifuse.ptx; entries: " + entries.keySet());
            List<Declared> declared = entries.get(k.name());
            List<KernelSpec.Parameter> layout = k.layout();
            assertEquals(layout.stream().map(KernelCatalogTest::expected).toList(), declared.stream().map(Declared::code).toList(),
                    k.name() + ": Java launches it with (" + k.signature() + "), " + layout.size() + " parameters");
            for (int p = 0; p < layout.size(); p++) {
                if (!layout.get(p).struct()) continue;
                structFieldsMatchTheLoads(k, p, layout.get(p), declared.get(p).structName(), bodies.get(k.name()));
                structs++;
            }
        }
        // At least today's 9 struct parameters (BanAttention 3, BanPooling 3, Mfb 2, MlbAttention 1) had
        // their fields matched against the loads: the field check cannot go quiet, and a new op's structs
        // need no edit here.
        assertTrue(structs >= 9, "struct parameters checked: " + structs);
    }

    /**
     * Size and alignment say little about a struct's inside, but the kernel loads each field it uses from
     * the parameter space at the field's offset with the field's width: every such load must hit a
     * field of the Java layout exactly (the same offset, width and kind), every field must be loaded, and
     * the struct may be referred to in no other way (no address taken, no copy the loads would bypass).
     */
    private static void structFieldsMatchTheLoads(KernelSpec k, int p, KernelSpec.Parameter layout, String ptxName, String body) {
        String where = k.name() + " parameter " + p + " {" + layout.types() + "}";
        Map<Integer, Integer> fieldAt = new HashMap<>();
        for (int f = 0; f < layout.offsets().length; f++) fieldAt.put(layout.offsets()[f], f);
        boolean[] loaded = new boolean[layout.types().length()];
        java.util.Set<String> names = new java.util.HashSet<>(List.of(ptxName));
        int movs = 0;
        for (Matcher a = ADDRESS.matcher(body); a.find(); ) {
            if (a.group(2).equals(ptxName)) { names.add(a.group(1)); movs++; }
        }
        Map<String, Integer> loadsThrough = new HashMap<>();
        Matcher ld = LOAD.matcher(body);
        while (ld.find()) {
            if (!names.contains(ld.group(3))) continue;
            loadsThrough.merge(ld.group(3), 1, Integer::sum);
            int lanes = ld.group(1) == null ? 1 : Integer.parseInt(ld.group(1));
            int base = ld.group(4) == null ? 0 : Integer.parseInt(ld.group(4));
            String type = ld.group(2);
            int width = switch (type) {
                case "u64", "s64", "b64" -> 8;
                case "u32", "s32", "b32", "f32" -> 4;
                default -> fail(where + ": a " + type + " load (" + ld.group() + "): no field is that wide");
            };
            for (int lane = 0; lane < lanes; lane++) {
                int offset = base + lane * width;
                Integer f = fieldAt.get(offset);
                assertNotNull(f, where + ": the kernel loads " + width + " bytes at offset " + offset + " (" + ld.group()
                        + "), where no field of the Java layout " + offsetsOf(layout) + " starts");
                char t = layout.types().charAt(f);
                boolean kind = switch (type) {
                    case "f32" -> t == 'f';
                    case "u32", "s32" -> t == 'i';
                    case "b32" -> t == 'i' || t == 'f';
                    default -> t == 'p' || t == 'l';
                };
                assertTrue(kind, where + ": field " + f + " at offset " + offset + " is '" + t + "' in Java, the kernel loads it as ." + type
                        + " (" + ld.group() + ")");
                loaded[f] = true;
            }
        }
        for (int f = 0; f < loaded.length; f++) {
            assertTrue(loaded[f], where + ": field " + f + " ('" + layout.types().charAt(f) + "' at offset " + layout.offsets()[f]
                    + ") is never loaded by the kernel: the Java layout " + offsetsOf(layout) + " does not match its struct");
        }
        // Nothing else may touch the struct: no arithmetic on its address, no copy that the loads would bypass.
        for (String n : names) {
            int mentions = 0;
            for (Matcher u = Pattern.compile((n.startsWith("%") ? "" : "\\b") + Pattern.quote(n) + "\\b").matcher(body); u.find(); ) mentions++;
            int expected = loadsThrough.getOrDefault(n, 0) + (n.equals(ptxName) ? movs : 1);
            assertEquals(expected, mentions, where + ": " + n + (n.equals(ptxName) ? "" : " (its address)")
                    + " is used other than by ld.param at constant offsets");
        }
    }

    private static String offsetsOf(KernelSpec.Parameter p) {
        StringBuilder s = new StringBuilder("{");
        for (int f = 0; f < p.offsets().length; f++) s.append(f == 0 ? "" : " ").append(p.types().charAt(f)).append('@').append(p.offsets()[f]);
        return s.append("} size ").append(p.size()).toString();
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
    @Test void aStructParameterIsPackedInCLayoutBehindOnePointer() {
        // p, then struct { T* b; int c; T* d; float e; int64_t g; }, then int: the struct at 8, aligned 8,
        // its fields at 0, 8, 16, 24, 32 (4 bytes of padding after c and after e), 40 bytes; the int at 48.
        KernelSpec k = new KernelSpec("k", "p{pipfl}i", "a b c d e g h");
        assertEquals(3, k.parameterCount());
        assertEquals(7, k.argumentCount());
        KernelSpec.Parameter st = k.layout().get(1);
        assertTrue(st.struct());
        assertArrayEquals(new int[] {0, 8, 16, 24, 32}, st.offsets());
        assertEquals(8, st.align());
        assertEquals(40, st.size());
        KernelSpec.Packed packed = k.pack(new Object[] {DeviceMemory.wrap(0x100, 4), DeviceMemory.wrap(0x200, 4), 7, DeviceMemory.wrap(0x300, 4),
                1.5f, 1L << 40, 9});
        assertArrayEquals(new int[] {0, 8, 48}, packed.starts());
        var b = java.nio.ByteBuffer.wrap(packed.bytes()).order(java.nio.ByteOrder.nativeOrder());
        assertEquals(0x200, b.getLong(8));
        assertEquals(7, b.getInt(16));
        assertEquals(0x300, b.getLong(24));
        assertEquals(1.5f, b.getFloat(32));
        assertEquals(1L << 40, b.getLong(40));
        assertEquals(9, b.getInt(48));
        for (int gap : new int[] {20, 21, 22, 23, 36, 37, 38, 39, 52, 53, 54, 55, 56, 63}) {
            assertEquals(KernelSpec.POISON, packed.bytes()[gap], "byte " + gap + ": the struct's padding and the tail are poison");
        }
        assertEquals(64, packed.bytes().length);
        assertEquals(3, k.marshal(new Object[] {DeviceMemory.wrap(0x100, 4), DeviceMemory.wrap(0x200, 4), 7, DeviceMemory.wrap(0x300, 4),
                1.5f, 1L << 40, 9}).length, "one kernelParams entry per C parameter");
    }

    @Test void aStructIsAlignedToItsWidestFieldAndSizedToThat() {
        KernelSpec ints = new KernelSpec("k", "i{ifi}");
        assertEquals(4, ints.layout().get(1).align());
        assertEquals(12, ints.layout().get(1).size());
        assertArrayEquals(new int[] {0, 4}, ints.pack(new Object[] {1, 2, 3f, 4}).starts(), "a 4-aligned struct right after an int");
        KernelSpec tail = new KernelSpec("k", "{li}i");
        assertEquals(16, tail.layout().get(0).size(), "the size rounded up to the alignment: an array of it stays aligned");
        assertArrayEquals(new int[] {0, 16}, tail.pack(new Object[] {1L, 2, 3}).starts());
        assertEquals(KernelSpec.POISON, tail.pack(new Object[] {1L, 2, 3}).bytes()[12], "the struct's tail padding");
    }

    @Test void structArgumentsAreCheckedFieldByField() {
        KernelSpec k = new KernelSpec("k", "{pif}", "data count scale");
        var e = assertThrows(IllegalArgumentException.class, () -> k.marshal(new Object[] {DeviceMemory.wrap(256, 4), 1}));
        assertTrue(e.getMessage().contains("launched with 2 arguments, the kernel takes 3 ({pif}; braces: the fields of one struct parameter)"),
                e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> k.marshal(new Object[] {DeviceMemory.wrap(256, 4), 1L, 2f}));
        assertTrue(e.getMessage().contains("argument 1 'count' (field 1 of struct parameter 0) must be int, got Long"), e.getMessage());
        KernelSpec unnamed = new KernelSpec("k", "p{pf}");
        e = assertThrows(IllegalArgumentException.class, () -> unnamed.marshal(new Object[] {DeviceMemory.wrap(256, 4), DeviceMemory.wrap(256, 4), 2.0}));
        assertTrue(e.getMessage().contains("argument 2 (field 1 of struct parameter 1) must be float, got Double"), e.getMessage());
        for (String bad : new String[] {"{}", "{p{i}}", "{pi", "pi}", "{px}"}) {
            e = assertThrows(IllegalArgumentException.class, () -> new KernelSpec("k", bad), bad);
            assertTrue(e.getMessage().startsWith("signature:"), e.getMessage());
        }
        e = assertThrows(IllegalArgumentException.class, () -> new KernelSpec("k", "{pi}", "data"));
        assertTrue(e.getMessage().contains("argumentNames has 1 names, the signature {pi} has 2 arguments"), e.getMessage());
    }
}
