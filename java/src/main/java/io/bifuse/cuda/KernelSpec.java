package io.bifuse.cuda;

/**
 * A kernel the Java side launches: its {@code extern "C"} name in the fatbin and its parameter list,
 * one character per parameter: {@code p} a device pointer (a {@link DeviceMemory}), {@code i} a
 * 32-bit int, {@code l} a 64-bit int, {@code f} a float. Every launch is checked against it, and a
 * test checks it against the built PTX, so a kernel and its Java caller cannot drift apart.
 */
public record KernelSpec(String name, String signature) {
    public KernelSpec {
        if (!signature.matches("[pilf]*")) throw new IllegalArgumentException("signature: only p, i, l, f allowed, got " + signature);
    }

    public int parameterCount() { return signature.length(); }

    /** What fills the gaps of a launch's argument buffer: a value read past its own bytes reads this. */
    static final byte POISON = (byte) 0xA5;

    /**
     * Converts launch arguments into the {@code kernelParams} array: every value packed into ONE buffer
     * at its natural alignment (as the driver's own parameter buffer is laid out), the gaps and an
     * 8-byte tail filled with {@link #POISON}. A kernel whose parameter is wider than what was packed
     * (a long where an int was passed) then reads the neighbour's or the poison bytes and gets a wild
     * value, on a GPU as on the simulated device, instead of the zero padding of a lone Java array.
     */
    jcuda.Pointer[] marshal(Object[] args) {
        if (args.length != signature.length()) {
            throw new IllegalArgumentException(name + ": launched with " + args.length + " arguments, the kernel takes "
                    + signature.length() + " (" + signature + ")");
        }
        int[] offsets = new int[args.length];
        int size = 0;
        for (int i = 0; i < args.length; i++) {
            int w = width(signature.charAt(i));
            size = (size + w - 1) / w * w;
            offsets[i] = size;
            size += w;
        }
        java.nio.ByteBuffer buf = java.nio.ByteBuffer.allocate((size + 7) / 8 * 8 + 8).order(java.nio.ByteOrder.nativeOrder());
        java.util.Arrays.fill(buf.array(), POISON);
        for (int i = 0; i < args.length; i++) {
            Object a = args[i];
            int o = offsets[i];
            switch (signature.charAt(i)) {
                case 'p' -> { if (a instanceof DeviceMemory m) buf.putLong(o, m.address()); else bad(i, "device memory", a); }
                case 'i' -> { if (a instanceof Integer v) buf.putInt(o, v); else bad(i, "int", a); }
                case 'l' -> { if (a instanceof Long v) buf.putLong(o, v); else bad(i, "long", a); }
                case 'f' -> { if (a instanceof Float v) buf.putFloat(o, v); else bad(i, "float", a); }
                default -> throw new AssertionError(signature.charAt(i));
            }
        }
        jcuda.Pointer[] ps = new jcuda.Pointer[args.length];
        for (int i = 0; i < args.length; i++) ps[i] = jcuda.Pointer.to(buf.array()).withByteOffset(offsets[i]);
        return ps;
    }

    private static int width(char t) { return t == 'p' || t == 'l' ? 8 : 4; }

    private jcuda.Pointer bad(int i, String expected, Object got) {
        throw new IllegalArgumentException(name + ": argument " + i + " must be " + expected + ", got "
                + (got == null ? "null" : got.getClass().getSimpleName()));
    }
}
