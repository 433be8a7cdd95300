package io.bifuse.cuda;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * A kernel the Java side launches: its {@code extern "C"} name in the fatbin and its parameter list,
 * one character per parameter: {@code p} a device pointer (a {@link DeviceMemory}), {@code i} a
 * 32-bit int, {@code l} a 64-bit int, {@code f} a float. Braces group the fields of ONE parameter that
 * is a struct passed by value: {@code "{ppif}"} is {@code struct { T* a; T* b; int c; float d; }},
 * laid out by C rules (each field at its alignment, the struct aligned to its widest field and its
 * size rounded up to that). Launches still pass every field as its own argument, flat and in order;
 * the spec groups them. {@code argumentNames} (optional, space-separated, one per argument or field)
 * are what the type checks name. Every launch is checked against the spec, and a test checks it
 * against the built PTX, so a kernel and its Java caller cannot drift apart.
 */
public record KernelSpec(String name, String signature, String argumentNames) {
    public KernelSpec {
        java.util.Objects.requireNonNull(argumentNames, "argumentNames: \"\" for none");
        if (!signature.matches("([pilf]|\\{[pilf]+\\})*")) {
            throw new IllegalArgumentException("signature: p, i, l, f, and {...} of them for a struct parameter (not nested, not empty), got "
                    + signature);
        }
        int n = signature.replaceAll("[{}]", "").length(), named = argumentNames.isBlank() ? 0 : argumentNames.trim().split("\\s+").length;
        if (named != 0 && named != n) {
            throw new IllegalArgumentException(name + ": argumentNames has " + named + " names, the signature " + signature + " has " + n
                    + " arguments");
        }
    }

    /** A spec whose type errors name arguments by index only. */
    public KernelSpec(String name, String signature) { this(name, signature, ""); }

    /** The kernel's C parameters: a struct counts once. */
    public int parameterCount() { return layout().size(); }

    /** The arguments a launch passes: a struct's fields each count. */
    public int argumentCount() { return signature.replaceAll("[{}]", "").length(); }

    /**
     * One C parameter: its field types (one char for a scalar), whether it is a struct, its alignment and
     * size, and each field's offset inside it (0 for a scalar).
     */
    record Parameter(String types, boolean struct, int align, int size, int[] offsets) {}

    /** The parameters with their C layout. */
    List<Parameter> layout() {
        List<Parameter> out = new ArrayList<>();
        for (int i = 0; i < signature.length(); i++) {
            char c = signature.charAt(i);
            if (c != '{') {
                out.add(new Parameter(String.valueOf(c), false, width(c), width(c), new int[] {0}));
                continue;
            }
            int end = signature.indexOf('}', i);
            String types = signature.substring(i + 1, end);
            int[] offsets = new int[types.length()];
            int size = 0, align = 1;
            for (int f = 0; f < types.length(); f++) {
                int w = width(types.charAt(f));
                size = roundUp(size, w);
                offsets[f] = size;
                size += w;
                align = Math.max(align, w);
            }
            out.add(new Parameter(types, true, align, roundUp(size, align), offsets));
            i = end;
        }
        return out;
    }

    /** What fills the gaps of a launch's argument buffer: a value read past its own bytes reads this. */
    static final byte POISON = (byte) 0xA5;

    /**
     * Converts launch arguments into the {@code kernelParams} array: every parameter packed into ONE buffer
     * at its alignment (as the driver's own parameter buffer is laid out), a struct's fields at their C
     * offsets inside its region, the gaps (a struct's padding included) and an 8-byte tail filled with
     * {@link #POISON}. A kernel whose parameter (or field) is wider than what was packed (a long where an
     * int was passed) then reads the neighbour's or the poison bytes and gets a wild value, on a GPU as
     * on the simulated device, instead of the zero padding of a lone Java array. One pointer per C
     * parameter: a struct's points at its first byte.
     */
    jcuda.Pointer[] marshal(Object[] args) {
        Packed packed = pack(args);
        jcuda.Pointer[] ps = new jcuda.Pointer[packed.starts().length];
        for (int p = 0; p < ps.length; p++) ps[p] = jcuda.Pointer.to(packed.bytes()).withByteOffset(packed.starts()[p]);
        return ps;
    }

    /** The argument buffer {@link #marshal} hands the driver, and where each C parameter starts in it. */
    record Packed(byte[] bytes, int[] starts) {}

    Packed pack(Object[] args) {
        List<Parameter> params = layout();
        if (args.length != argumentCount()) {
            throw new IllegalArgumentException(name + ": launched with " + args.length + " arguments, the kernel takes " + argumentCount()
                    + " (" + signature + (params.size() != argumentCount() ? "; braces: the fields of one struct parameter" : "") + ")");
        }
        int[] starts = new int[params.size()];
        int size = 0;
        for (int p = 0; p < params.size(); p++) {
            size = roundUp(size, params.get(p).align());
            starts[p] = size;
            size += params.get(p).size();
        }
        java.nio.ByteBuffer buf = java.nio.ByteBuffer.allocate(roundUp(size, 8) + 8).order(java.nio.ByteOrder.nativeOrder());
        Arrays.fill(buf.array(), POISON);
        String[] names = argumentNames.isBlank() ? null : argumentNames.trim().split("\\s+");
        int a = 0;
        for (int p = 0; p < params.size(); p++) {
            Parameter param = params.get(p);
            for (int f = 0; f < param.types().length(); f++, a++) {
                Object v = args[a];
                int o = starts[p] + param.offsets()[f];
                switch (param.types().charAt(f)) {
                    case 'p' -> { if (v instanceof DeviceMemory m) buf.putLong(o, m.address()); else bad(a, names, param, p, f, "device memory", v); }
                    case 'i' -> { if (v instanceof Integer x) buf.putInt(o, x); else bad(a, names, param, p, f, "int", v); }
                    case 'l' -> { if (v instanceof Long x) buf.putLong(o, x); else bad(a, names, param, p, f, "long", v); }
                    case 'f' -> { if (v instanceof Float x) buf.putFloat(o, x); else bad(a, names, param, p, f, "float", v); }
                    default -> throw new AssertionError(param.types().charAt(f));
                }
            }
        }
        return new Packed(buf.array(), starts);
    }

    private static int width(char t) { return t == 'p' || t == 'l' ? 8 : 4; }

    private static int roundUp(int n, int to) { return (n + to - 1) / to * to; }

    private void bad(int arg, String[] names, Parameter param, int p, int field, String expected, Object got) {
        String what = names == null ? "" : " '" + names[arg] + "'";
        if (param.struct()) what += " (field " + field + " of struct parameter " + p + ")";
        throw new IllegalArgumentException(name + ": argument " + arg + what + " must be " + expected + ", got "
                + (got == null ? "null" : got.getClass().getSimpleName()));
    }
}
