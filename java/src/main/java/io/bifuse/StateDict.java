package io.bifuse;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;
import java.util.TreeMap;

/**
 * Named tensors, as a PyTorch {@code state_dict} holds them: read from a safetensors file, or built in
 * memory. The fusions' {@code fromStateDict} factories take their weights from one by the parameter names
 * of the module that trained them, checking every name and shape.
 *
 * <p>The safetensors format: an unsigned 64-bit little-endian header length {@code N}, {@code N} bytes of
 * UTF-8 JSON, then the data. The header maps each tensor name to {@code {"dtype", "shape",
 * "data_offsets": [begin, end]}} (byte offsets into the data, which is row-major and little-endian) and
 * may hold {@code "__metadata__"}, a map of strings. A file is checked whole when it is opened: the
 * header's size and syntax, every dtype, shape and offset pair (within the data, of exactly
 * {@code numel × element size} bytes), and that the tensors cover the data without gaps or overlaps, as
 * the format requires. Every refusal names the file, the tensor and what was expected.
 *
 * <p>The data is memory-mapped and read on demand: {@link #floats} and {@link #doubles} convert any
 * floating-point dtype (F64, F32, F16, BF16; F64 to float rounds to nearest, exact for values a float
 * holds). Close it to unmap; it is thread-safe until then.
 */
public final class StateDict implements AutoCloseable {
    /** The element types of the format; only the floating-point ones convert to float[] / double[]. */
    public enum DType {
        BOOL(1), U8(1), I8(1), F8_E4M3(1), F8_E5M2(1), I16(2), U16(2), F16(2), BF16(2), I32(4), U32(4), F32(4), I64(8), U64(8), F64(8);

        private final int bytes;

        DType(int bytes) { this.bytes = bytes; }

        /** Bytes per element. */
        public int bytes() { return bytes; }

        boolean floating() { return this == F16 || this == BF16 || this == F32 || this == F64; }
    }

    /** One tensor's dtype and shape ({@code shape} a copy). */
    public record Info(String name, DType dtype, long[] shape) {
        public Info {
            shape = shape.clone();
        }

        @Override public long[] shape() { return shape.clone(); }

        /** The number of elements (1 for a scalar's empty shape). */
        public long numel() {
            long n = 1;
            for (long s : shape) n = Math.multiplyExact(n, s);
            return n;
        }
    }

    /** The largest header this reader accepts (as the reference implementation does). */
    public static final long MAX_HEADER = 100_000_000L;

    private record Entry(Info info, long begin, double[] values) {}

    private final String source;
    private final Map<String, Entry> entries;
    private final Map<String, String> metadata;
    private final Arena arena;
    private final MemorySegment data;

    private StateDict(String source, Map<String, Entry> entries, Map<String, String> metadata, Arena arena, MemorySegment data) {
        this.source = source;
        this.entries = entries;
        this.metadata = metadata;
        this.arena = arena;
        this.data = data;
    }

    /**
     * An in-memory state dict: each name's values (float64, row-major) and shape, e.g. to build an op
     * from weights computed in Java. The values are copied.
     */
    public static StateDict of(Map<String, double[]> values, Map<String, long[]> shapes) {
        Objects.requireNonNull(values, "values");
        Objects.requireNonNull(shapes, "shapes");
        Map<String, Entry> e = new TreeMap<>();
        for (Map.Entry<String, double[]> v : values.entrySet()) {
            String name = v.getKey();
            long[] shape = shapes.get(name);
            if (shape == null) throw new IllegalArgumentException("shapes: no shape for '" + name + "'");
            Info info = new Info(name, DType.F64, shape);
            for (long s : shape) if (s < 0) throw new IllegalArgumentException("shapes['" + name + "']: expected sizes >= 0, got " + Arrays.toString(shape));
            if (v.getValue() == null || v.getValue().length != info.numel()) {
                throw new IllegalArgumentException("values['" + name + "']: expected " + info.numel() + " values for shape " + Arrays.toString(shape)
                        + ", got " + (v.getValue() == null ? "null" : v.getValue().length));
            }
            e.put(name, new Entry(info, 0, v.getValue().clone()));
        }
        for (String name : shapes.keySet()) if (!values.containsKey(name)) throw new IllegalArgumentException("values: no values for '" + name + "'");
        return new StateDict("the in-memory state dict", Collections.unmodifiableMap(e), Map.of(), null, null);
    }

    /** Opens and checks a safetensors file (see the class comment); the data stays mapped until {@link #close()}. */
    public static StateDict readSafetensors(Path file) throws IOException {
        Objects.requireNonNull(file, "file");
        String src = file.toString();
        Arena arena = Arena.ofShared();
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
            long size = ch.size();
            if (size < 8) throw new IllegalArgumentException(src + ": not a safetensors file (" + size + " bytes, shorter than the 8-byte header length)");
            MemorySegment all = ch.map(FileChannel.MapMode.READ_ONLY, 0, size, arena);
            long n = all.get(ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN), 0);
            if (n < 2 || n > MAX_HEADER || n > size - 8) {
                throw new IllegalArgumentException(src + ": header length " + Long.toUnsignedString(n) + " is not within 2.." + Math.min(MAX_HEADER, size - 8)
                        + " (the file has " + size + " bytes)");
            }
            byte[] header = all.asSlice(8, n).toArray(ValueLayout.JAVA_BYTE);
            MemorySegment data = all.asSlice(8 + n);
            Map<String, Entry> entries = new TreeMap<>();
            Map<String, String> meta = new LinkedHashMap<>();
            parseHeader(src, new String(header, StandardCharsets.UTF_8), data.byteSize(), entries, meta);
            return new StateDict(src, Collections.unmodifiableMap(entries), Collections.unmodifiableMap(meta), arena, data);
        } catch (IOException | RuntimeException | Error e) {
            arena.close();
            throw e;
        }
    }

    /** The tensor names, sorted. */
    public Set<String> names() { return entries.keySet(); }

    /** Whether {@code name} is here. */
    public boolean contains(String name) { return entries.containsKey(name); }

    /** The dtype and shape of {@code name}; a missing name is refused, with the nearest names. */
    public Info info(String name) { return entry(name).info; }

    /** The header's {@code __metadata__} (empty when absent). */
    public Map<String, String> metadata() { return metadata; }

    /** The values of {@code name} as floats, row-major, whatever its shape (a missing or non-floating-point tensor is refused by name). */
    public float[] floats(String name) {
        return floats(name, (long[]) null);
    }

    /**
     * The values of {@code name} as floats, row-major, after checking its shape is {@code shape}
     * (refused by name otherwise, as is a missing or non-floating-point tensor); no sizes: a scalar.
     * {@code shape} null: any shape.
     */
    public float[] floats(String name, long... shape) {
        Entry e = checked(name, shape);
        int n = (int) e.info.numel();
        float[] out = new float[n];
        if (e.values != null) {
            for (int i = 0; i < n; i++) out[i] = (float) e.values[i];
            return out;
        }
        for (int i = 0; i < n; i++) out[i] = (float) element(e, i);
        return out;
    }

    /** As {@link #floats(String)}, in double (exact from every floating-point dtype). */
    public double[] doubles(String name) {
        return doubles(name, (long[]) null);
    }

    /** As {@link #floats(String, long...)}, in double (exact from every floating-point dtype). */
    public double[] doubles(String name, long... shape) {
        Entry e = checked(name, shape);
        int n = (int) e.info.numel();
        if (e.values != null) return e.values.clone();
        double[] out = new double[n];
        for (int i = 0; i < n; i++) out[i] = element(e, i);
        return out;
    }

    /**
     * The values of an integer tensor ({@code I8, I16, I32, I64, U8, U16, U32, U64}: e.g. index buffers
     * such as block.bootstrap's MCB hashes), row-major, as longs; a floating-point tensor, a missing one or a
     * U64 value above {@code Long.MAX_VALUE} is refused by name. An in-memory state dict ({@link #of}) holds
     * doubles: they must be whole numbers.
     */
    public long[] longs(String name) {
        Entry e = entry(name);
        if (e.info.numel() > Integer.MAX_VALUE - 8) {
            throw new IllegalArgumentException(source + ": '" + name + "': " + e.info.numel() + " elements do not fit one Java array");
        }
        int n = (int) e.info.numel();
        long[] out = new long[n];
        if (e.values != null) {
            for (int i = 0; i < n; i++) {
                double v = e.values[i];
                if (v != Math.rint(v) || Math.abs(v) > 0x1p53) {
                    throw new IllegalArgumentException(source + ": '" + name + "'[" + i + "]: expected a whole number, got " + v);
                }
                out[i] = (long) v;
            }
            return out;
        }
        if (!arena.scope().isAlive()) throw new IllegalStateException(source + ": closed");
        int bytes = e.info.dtype.bytes;
        for (int i = 0; i < n; i++) {
            long at = e.begin + (long) i * bytes;
            out[i] = switch (e.info.dtype) {
                case I8 -> data.get(ValueLayout.JAVA_BYTE, at);
                case U8 -> data.get(ValueLayout.JAVA_BYTE, at) & 0xffL;
                case I16 -> data.get(I16, at);
                case U16 -> data.get(I16, at) & 0xffffL;
                case I32 -> data.get(I32, at);
                case U32 -> data.get(I32, at) & 0xffff_ffffL;
                case I64, U64 -> data.get(I64, at);
                default -> throw new IllegalArgumentException(source + ": '" + name + "': expected an integer tensor, got " + e.info.dtype);
            };
            if (e.info.dtype == DType.U64 && out[i] < 0) {
                throw new IllegalArgumentException(source + ": '" + name + "'[" + i + "]: " + Long.toUnsignedString(out[i]) + " does not fit a long");
            }
        }
        return out;
    }

    /**
     * Builds an op from layers read out of {@code sd}, so that a layer the op's factory refuses is named as
     * the state dict names it: a refusal of argument {@code arg} (or {@code arg[i]}) becomes one of tensor
     * {@code prefix + tensors.get(arg)} (its {@code %d} the index), with the source, e.g.
     * {@code mergeLinear1: expected ...} → {@code model.safetensors: 'merge_linear1.weight': expected ...}.
     */
    static <T> T loading(StateDict sd, String prefix, Map<String, String> tensors, java.util.function.Supplier<T> make) {
        try {
            return make.get();
        } catch (IllegalArgumentException e) {
            java.util.regex.Matcher m = java.util.regex.Pattern.compile("^(\\w+)(?:\\[(\\d+)\\])?: (.*)$", java.util.regex.Pattern.DOTALL)
                    .matcher(String.valueOf(e.getMessage()));
            if (!m.matches()) throw e;
            String tensor = tensors.get(m.group(2) == null ? m.group(1) : m.group(1) + "[]");
            if (tensor == null) throw e;
            String name = prefix + (m.group(2) == null ? tensor : tensor.formatted(Integer.parseInt(m.group(2))));
            throw new IllegalArgumentException(sd.source() + ": '" + name + "': " + m.group(3), e);
        }
    }

    /** Where the tensors come from (the file's path), for messages. */
    public String source() { return source; }

    /** Unmaps the file; idempotent. Reading after it throws {@link IllegalStateException}. */
    @Override public void close() {
        if (arena != null && arena.scope().isAlive()) arena.close();
    }

    @Override public String toString() { return "StateDict[" + source + ", " + entries.size() + " tensors]"; }

    private Entry entry(String name) {
        Objects.requireNonNull(name, "name");
        Entry e = entries.get(name);
        if (e == null) {
            throw new IllegalArgumentException(source + ": no tensor '" + name + "'" + nearest(name));
        }
        return e;
    }

    private String nearest(String name) {
        int dot = name.lastIndexOf('.');
        String stem = dot > 0 ? name.substring(0, dot + 1) : "";
        List<String> near = stem.isEmpty() ? List.of() : entries.keySet().stream().filter(k -> k.startsWith(stem)).limit(6).toList();
        if (!near.isEmpty()) return " (under '" + stem + "': " + String.join(", ", near) + ")";
        List<String> some = entries.keySet().stream().limit(6).toList();
        return " (" + entries.size() + " tensors" + (some.isEmpty() ? "" : ": " + String.join(", ", some) + (entries.size() > some.size() ? ", ..." : "")) + ")";
    }

    private Entry checked(String name, long[] shape) {
        Entry e = entry(name);
        if (!e.info.dtype.floating()) throw new IllegalArgumentException(source + ": '" + name + "': expected a floating-point tensor, got " + e.info.dtype);
        if (shape != null && !Arrays.equals(shape, e.info.shape)) {
            throw new IllegalArgumentException(source + ": '" + name + "': expected shape " + Arrays.toString(shape) + ", got " + Arrays.toString(e.info.shape));
        }
        if (e.info.numel() > Integer.MAX_VALUE - 8) {
            throw new IllegalArgumentException(source + ": '" + name + "': " + e.info.numel() + " elements do not fit one Java array");
        }
        if (data != null && !arena.scope().isAlive()) throw new IllegalStateException(source + ": closed");
        return e;
    }

    private static final ValueLayout.OfDouble F64 = ValueLayout.JAVA_DOUBLE_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfShort I16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfInt I32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfLong I64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private double element(Entry e, long i) {
        long at = e.begin + i * e.info.dtype.bytes;
        return switch (e.info.dtype) {
            case F64 -> data.get(F64, at);
            case F32 -> data.get(F32, at);
            case F16 -> Float.float16ToFloat(data.get(I16, at));
            case BF16 -> Float.intBitsToFloat((data.get(I16, at) & 0xffff) << 16);
            default -> throw new AssertionError(e.info.dtype);
        };
    }

    // ---- The header: a small JSON reader for exactly what the format allows (objects, arrays, strings, integers).

    private static void parseHeader(String src, String json, long dataBytes, Map<String, Entry> entries, Map<String, String> meta) {
        Json p = new Json(src, json);
        Object root = p.value();
        p.end();
        if (!(root instanceof Map<?, ?> top)) throw new IllegalArgumentException(src + ": header: expected a JSON object");
        long[][] ranges = new long[top.size()][];
        List<String> names = new ArrayList<>();
        for (Map.Entry<?, ?> kv : top.entrySet()) {
            String name = (String) kv.getKey();
            if (name.equals("__metadata__")) {
                if (!(kv.getValue() instanceof Map<?, ?> m)) throw new IllegalArgumentException(src + ": __metadata__: expected an object of strings");
                for (Map.Entry<?, ?> x : m.entrySet()) {
                    if (!(x.getValue() instanceof String s)) throw new IllegalArgumentException(src + ": __metadata__['" + x.getKey() + "']: expected a string");
                    meta.put((String) x.getKey(), s);
                }
                continue;
            }
            String what = src + ": '" + name + "'";
            if (!(kv.getValue() instanceof Map<?, ?> t)) throw new IllegalArgumentException(what + ": expected an object {dtype, shape, data_offsets}");
            for (Object k : t.keySet()) {
                if (!List.of("dtype", "shape", "data_offsets").contains(k)) throw new IllegalArgumentException(what + ": unexpected field '" + k + "'");
            }
            if (!(t.get("dtype") instanceof String ds)) throw new IllegalArgumentException(what + ": dtype: expected a string");
            DType dtype;
            try {
                dtype = DType.valueOf(ds);
            } catch (IllegalArgumentException ex) {
                throw new IllegalArgumentException(what + ": dtype: expected one of " + Arrays.toString(DType.values()) + ", got '" + ds + "'");
            }
            long[] shape = longs(what + ": shape", t.get("shape"), -1);
            for (long s : shape) if (s < 0) throw new IllegalArgumentException(what + ": shape: expected sizes >= 0, got " + Arrays.toString(shape));
            long[] off = longs(what + ": data_offsets", t.get("data_offsets"), 2);
            Info info = new Info(name, dtype, shape);
            long bytes;
            try {
                bytes = Math.multiplyExact(info.numel(), dtype.bytes);
            } catch (ArithmeticException ex) {
                throw new IllegalArgumentException(what + ": shape " + Arrays.toString(shape) + " overflows");
            }
            if (off[0] < 0 || off[1] < off[0] || off[1] > dataBytes) {
                throw new IllegalArgumentException(what + ": data_offsets " + Arrays.toString(off) + ": expected 0 <= begin <= end <= " + dataBytes + " (the data's bytes)");
            }
            if (off[1] - off[0] != bytes) {
                throw new IllegalArgumentException(what + ": data_offsets " + Arrays.toString(off) + " hold " + (off[1] - off[0]) + " bytes, expected " + bytes
                        + " (" + dtype + " " + Arrays.toString(shape) + ")");
            }
            ranges[names.size()] = new long[] {off[0], off[1]};
            names.add(name);
            entries.put(name, new Entry(info, off[0], null));
        }
        // The tensors must tile the data exactly: sorted by begin, each starts where the last ended.
        Integer[] order = new Integer[names.size()];
        for (int i = 0; i < order.length; i++) order[i] = i;
        Arrays.sort(order, (a, b) -> Long.compare(ranges[a][0], ranges[b][0]) != 0 ? Long.compare(ranges[a][0], ranges[b][0]) : Long.compare(ranges[a][1], ranges[b][1]));
        long at = 0;
        for (int i : order) {
            if (ranges[i][0] != at) {
                throw new IllegalArgumentException(src + ": '" + names.get(i) + "': data_offsets begin at " + ranges[i][0] + ", expected " + at
                        + " (the tensors must cover the data without gaps or overlaps)");
            }
            at = ranges[i][1];
        }
        if (at != dataBytes) throw new IllegalArgumentException(src + ": the tensors cover " + at + " of the data's " + dataBytes + " bytes (expected all of them)");
    }

    private static long[] longs(String what, Object v, int expected) {
        if (!(v instanceof List<?> l)) throw new IllegalArgumentException(what + ": expected an array of integers");
        if (expected >= 0 && l.size() != expected) throw new IllegalArgumentException(what + ": expected " + expected + " integers, got " + l.size());
        long[] r = new long[l.size()];
        for (int i = 0; i < r.length; i++) {
            if (!(l.get(i) instanceof Long x)) throw new IllegalArgumentException(what + ": expected integers, got " + l);
            r[i] = x;
        }
        return r;
    }

    /** Recursive descent over the JSON the header may hold; numbers must be integers (none else appears). */
    private static final class Json {
        private static final Object NULL = new Object();
        private final String src, s;
        private int i;

        Json(String src, String s) {
            this.src = src;
            this.s = s;
        }

        Object value() {
            skip();
            if (i >= s.length()) throw fail("unexpected end");
            char c = s.charAt(i);
            return switch (c) {
                case '{' -> object();
                case '[' -> array();
                case '"' -> string();
                default -> {
                    if (c == '-' || (c >= '0' && c <= '9')) yield number();
                    for (String w : List.of("true", "false", "null")) {
                        if (s.startsWith(w, i)) {
                            i += w.length();
                            yield w.equals("null") ? NULL : Boolean.valueOf(w);
                        }
                    }
                    throw fail("unexpected '" + c + "'");
                }
            };
        }

        void end() {
            skip();
            if (i != s.length()) throw fail("trailing characters");
        }

        private Map<String, Object> object() {
            Map<String, Object> m = new LinkedHashMap<>();
            i++;
            skip();
            if (peek() == '}') {
                i++;
                return m;
            }
            while (true) {
                skip();
                if (peek() != '"') throw fail("expected a string key");
                String k = string();
                skip();
                if (peek() != ':') throw fail("expected ':'");
                i++;
                if (m.put(k, value()) != null) throw fail("duplicate key '" + k + "'");
                skip();
                char c = peek();
                i++;
                if (c == '}') return m;
                if (c != ',') throw fail("expected ',' or '}'");
            }
        }

        private List<Object> array() {
            List<Object> l = new ArrayList<>();
            i++;
            skip();
            if (peek() == ']') {
                i++;
                return l;
            }
            while (true) {
                l.add(value());
                skip();
                char c = peek();
                i++;
                if (c == ']') return l;
                if (c != ',') throw fail("expected ',' or ']'");
            }
        }

        private String string() {
            StringBuilder b = new StringBuilder();
            i++;
            while (true) {
                if (i >= s.length()) throw fail("unterminated string");
                char c = s.charAt(i++);
                if (c == '"') return b.toString();
                if (c < 0x20) throw fail("control character in a string");
                if (c != '\\') {
                    b.append(c);
                    continue;
                }
                if (i >= s.length()) throw fail("unterminated escape");
                char e = s.charAt(i++);
                switch (e) {
                    case '"', '\\', '/' -> b.append(e);
                    case 'b' -> b.append('\b');
                    case 'f' -> b.append('\f');
                    case 'n' -> b.append('\n');
                    case 'r' -> b.append('\r');
                    case 't' -> b.append('\t');
                    case 'u' -> {
                        if (i + 4 > s.length()) throw fail("short \\u escape");
                        try {
                            b.append((char) Integer.parseInt(s.substring(i, i + 4), 16));
                        } catch (NumberFormatException ex) {
                            throw fail("bad \\u escape");
                        }
                        i += 4;
                    }
                    default -> throw fail("bad escape '\\" + e + "'");
                }
            }
        }

        private Long number() {
            int start = i;
            if (peek() == '-') i++;
            while (i < s.length() && Character.isDigit(s.charAt(i))) i++;
            if (i < s.length() && ".eE".indexOf(s.charAt(i)) >= 0) throw fail("expected an integer");
            try {
                return Long.parseLong(s.substring(start, i));
            } catch (NumberFormatException ex) {
                throw fail("integer '" + s.substring(start, i) + "' out of range");
            }
        }

        private char peek() {
            if (i >= s.length()) throw fail("unexpected end");
            return s.charAt(i);
        }

        private void skip() {
            while (i < s.length() && " \t\r\n".indexOf(s.charAt(i)) >= 0) i++;
        }

        private IllegalArgumentException fail(String why) {
            return new IllegalArgumentException(src + ": header: " + why + " at character " + i);
        }
    }
}
