package io.bifuse;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The safetensors reader: values of every floating-point dtype read back exactly, a file written by the
 * Python converter ({@code tools/python/to_safetensors.py}, the fixture in the test resources) read as
 * PyTorch wrote it, and every malformed file or request refused by name.
 */
class StateDictTest {
    @TempDir Path dir;

    /** One tensor for {@link #write}: its dtype, shape and raw little-endian bytes. */
    record T(String name, String dtype, long[] shape, byte[] bytes) {}

    static T f64(String name, long[] shape, double... v) {
        ByteBuffer b = ByteBuffer.allocate(8 * v.length).order(ByteOrder.LITTLE_ENDIAN);
        for (double x : v) b.putDouble(x);
        return new T(name, "F64", shape, b.array());
    }

    static T f32(String name, long[] shape, float... v) {
        ByteBuffer b = ByteBuffer.allocate(4 * v.length).order(ByteOrder.LITTLE_ENDIAN);
        for (float x : v) b.putFloat(x);
        return new T(name, "F32", shape, b.array());
    }

    static T half(String name, String dtype, long[] shape, short... bits) {
        ByteBuffer b = ByteBuffer.allocate(2 * bits.length).order(ByteOrder.LITTLE_ENDIAN);
        for (short x : bits) b.putShort(x);
        return new T(name, dtype, shape, b.array());
    }

    /** A well-formed file: the tensors packed in the given order, {@code extraHeader} spliced into the JSON. */
    Path write(String file, String extraHeader, T... tensors) throws IOException {
        StringBuilder h = new StringBuilder("{");
        ByteArrayOutputStream data = new ByteArrayOutputStream();
        for (T t : tensors) {
            if (h.length() > 1) h.append(',');
            long begin = data.size();
            data.write(t.bytes);
            h.append('"').append(t.name).append("\":{\"dtype\":\"").append(t.dtype).append("\",\"shape\":").append(java.util.Arrays.toString(t.shape).replace(" ", ""))
                    .append(",\"data_offsets\":[").append(begin).append(',').append(data.size()).append("]}");
        }
        if (!extraHeader.isEmpty()) h.append(h.length() > 1 ? "," : "").append(extraHeader);
        h.append('}');
        return raw(file, h.toString(), data.toByteArray());
    }

    Path raw(String file, String header, byte[] data) throws IOException {
        byte[] hb = header.getBytes(StandardCharsets.UTF_8);
        ByteBuffer b = ByteBuffer.allocate(8 + hb.length + data.length).order(ByteOrder.LITTLE_ENDIAN);
        b.putLong(hb.length).put(hb).put(data);
        Path p = dir.resolve(file);
        Files.write(p, b.array());
        return p;
    }

    @Test void readsEveryFloatingPointDtypeExactly() throws IOException {
        double[] w = {1.5, -2.25, Math.PI, 1e-300, -0.0, 7};
        Path p = write("ok.safetensors", "\"__metadata__\":{\"format\":\"pt\",\"note\":\"a \\\"quoted\\\" \\u00e9\"}",
                f64("linear0.weight", new long[] {2, 3}, w),
                f32("linear0.bias", new long[] {2}, 0.1f, -3e38f),
                half("h", "F16", new long[] {3}, (short) 0x3c00, (short) 0xc000, (short) 0x7bff),   // 1, -2, 65504
                half("b", "BF16", new long[] {2}, (short) 0x3f80, (short) 0xc0a0),                 // 1, -5
                f64("scalar", new long[] {}, 42),
                f64("empty", new long[] {0, 4}));
        try (StateDict sd = StateDict.readSafetensors(p)) {
            assertEquals(Set.of("linear0.weight", "linear0.bias", "h", "b", "scalar", "empty"), sd.names());
            assertArrayEquals(w, sd.doubles("linear0.weight", 2, 3));
            float[] wf = sd.floats("linear0.weight", 2, 3);
            for (int i = 0; i < w.length; i++) assertEquals((float) w[i], wf[i]);
            assertArrayEquals(new float[] {0.1f, -3e38f}, sd.floats("linear0.bias", 2));
            assertArrayEquals(new double[] {(double) 0.1f, (double) -3e38f}, sd.doubles("linear0.bias", 2));
            assertArrayEquals(new float[] {1, -2, 65504}, sd.floats("h", 3));
            assertArrayEquals(new float[] {1, -5}, sd.floats("b", 2));
            assertArrayEquals(new double[] {42}, sd.doubles("scalar"));
            assertEquals(0, sd.floats("empty", 0, 4).length);
            assertEquals(StateDict.DType.F16, sd.info("h").dtype());
            assertArrayEquals(new long[] {2, 3}, sd.info("linear0.weight").shape());
            assertEquals(Map.of("format", "pt", "note", "a \"quoted\" é"), sd.metadata());
        }
    }

    @Test void refusesWrongRequestsByName() throws IOException {
        Path p = write("req.safetensors", "", f64("merge_linears0.0.weight", new long[] {2, 2}, 1, 2, 3, 4), f64("merge_linears0.0.bias", new long[] {2}, 1, 2),
                new T("steps", "I64", new long[] {1}, new byte[8]));
        try (StateDict sd = StateDict.readSafetensors(p)) {
            expect(p + ": no tensor 'merge_linears0.0.wieght' (under 'merge_linears0.0.': merge_linears0.0.bias, merge_linears0.0.weight)",
                    () -> sd.floats("merge_linears0.0.wieght", 2, 2));
            expect(p + ": no tensor 'linear_out.bias' (3 tensors: merge_linears0.0.bias, merge_linears0.0.weight, steps)", () -> sd.info("linear_out.bias"));
            expect(p + ": 'merge_linears0.0.weight': expected shape [2, 3], got [2, 2]", () -> sd.floats("merge_linears0.0.weight", 2, 3));
            expect(p + ": 'merge_linears0.0.bias': expected shape [1, 2], got [2]", () -> sd.doubles("merge_linears0.0.bias", 1, 2));
            expect(p + ": 'steps': expected a floating-point tensor, got I64", () -> sd.floats("steps", 1));
            sd.close();
            sd.close(); // idempotent
            IllegalStateException e = assertThrows(IllegalStateException.class, () -> sd.floats("merge_linears0.0.bias", 2));
            assertEquals(p + ": closed", e.getMessage());
        }
    }

    @Test void refusesMalformedFilesByName() throws IOException {
        byte[] eight = new byte[16];
        String ok = "\"a\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[0,16]}";
        Path p;
        p = dir.resolve("short.safetensors");
        Files.write(p, new byte[5]);
        opening(p, p + ": not a safetensors file (5 bytes, shorter than the 8-byte header length)");
        p = dir.resolve("huge.safetensors");
        Files.write(p, ByteBuffer.allocate(12).order(ByteOrder.LITTLE_ENDIAN).putLong(1L << 40).array());
        opening(p, p + ": header length 1099511627776 is not within 2..4 (the file has 12 bytes)");
        opening(raw("trailing.safetensors", "{" + ok + ",}", eight), "header: expected a string key at character");
        opening(raw("dup.safetensors", "{" + ok + "," + ok + "}", eight), "header: duplicate key 'a'");
        opening(raw("notobj.safetensors", "[1,2]", new byte[0]), "header: expected a JSON object");
        opening(raw("float.safetensors", "{\"a\":{\"dtype\":\"F64\",\"shape\":[2.0],\"data_offsets\":[0,16]}}", eight), "header: expected an integer");
        opening(raw("dtype.safetensors", "{\"a\":{\"dtype\":\"F128\",\"shape\":[2],\"data_offsets\":[0,16]}}", eight), "'a': dtype: expected one of [BOOL,");
        opening(raw("field.safetensors", "{\"a\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[0,16],\"stride\":[1]}}", eight), "'a': unexpected field 'stride'");
        opening(raw("size.safetensors", "{\"a\":{\"dtype\":\"F64\",\"shape\":[3],\"data_offsets\":[0,16]}}", eight),
                "'a': data_offsets [0, 16] hold 16 bytes, expected 24 (F64 [3])");
        opening(raw("beyond.safetensors", "{\"a\":{\"dtype\":\"F64\",\"shape\":[3],\"data_offsets\":[0,24]}}", eight),
                "'a': data_offsets [0, 24]: expected 0 <= begin <= end <= 16 (the data's bytes)");
        opening(raw("gap.safetensors", "{\"a\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[8,16]}}", eight),
                "'a': data_offsets begin at 8, expected 0 (the tensors must cover the data without gaps or overlaps)");
        opening(raw("overlap.safetensors", "{\"a\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[0,16]},\"b\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[8,16]}}",
                eight), "'b': data_offsets begin at 8, expected 16");
        opening(raw("tail.safetensors", "{\"a\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]}}", eight),
                "the tensors cover 8 of the data's 16 bytes (expected all of them)");
        opening(raw("neg.safetensors", "{\"a\":{\"dtype\":\"F64\",\"shape\":[-2],\"data_offsets\":[0,16]}}", eight), "'a': shape: expected sizes >= 0, got [-2]");
        opening(raw("meta.safetensors", "{\"__metadata__\":{\"n\":3}}", new byte[0]), "__metadata__['n']: expected a string");
    }

    /** The fixture the Python converter wrote (see the resource's sidecar .py for how): PyTorch's values, read back. */
    @Test void readsWhatThePythonConverterWrote() throws IOException {
        Path p = dir.resolve("fixture.safetensors");
        try (InputStream in = StateDictTest.class.getResourceAsStream("statedict-fixture.safetensors")) {
            assertTrue(in != null, "the fixture resource io/bifuse/statedict-fixture.safetensors");
            Files.copy(in, p);
        }
        try (StateDict sd = StateDict.readSafetensors(p)) {
            // torch.arange(6, dtype=float64).reshape(2, 3) / 8 - 0.25, then each dtype's conversion of it
            double[] want = new double[6];
            for (int i = 0; i < 6; i++) want[i] = i / 8.0 - 0.25;
            assertArrayEquals(want, sd.doubles("linear0.weight", 2, 3));
            for (String n : List.of("as_float32", "as_float16", "as_bfloat16")) assertArrayEquals(want, sd.doubles(n, 2, 3), n);
            assertArrayEquals(new double[] {1.0 / 3}, sd.doubles("third", 1));
            assertEquals(StateDict.DType.I64, sd.info("num_batches_tracked").dtype());
            assertEquals("pt", sd.metadata().get("format"));
        }
    }

    @Test void inMemoryStateDicts() {
        Map<String, double[]> v = new LinkedHashMap<>();
        Map<String, long[]> s = new LinkedHashMap<>();
        v.put("w", new double[] {1, 2, 3, 4});
        s.put("w", new long[] {2, 2});
        try (StateDict sd = StateDict.of(v, s)) {
            v.get("w")[0] = 9; // copied
            assertArrayEquals(new double[] {1, 2, 3, 4}, sd.doubles("w", 2, 2));
            assertArrayEquals(new float[] {1, 2, 3, 4}, sd.floats("w", 2, 2));
        }
        s.put("w", new long[] {3});
        expect("values['w']: expected 3 values for shape [3], got 4", () -> StateDict.of(v, s));
        s.put("x", new long[] {1});
        s.put("w", new long[] {4});
        expect("values: no values for 'x'", () -> StateDict.of(v, s));
    }

    private void opening(Path p, String message) {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> StateDict.readSafetensors(p).close());
        assertTrue(e.getMessage().contains(message) && e.getMessage().startsWith(p.toString()), e.getMessage());
    }

    private static void expect(String message, Runnable call) {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, call::run);
        assertEquals(message, e.getMessage());
    }
}
