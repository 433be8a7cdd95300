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

    /** Converts launch arguments into the 8-byte/4-byte values the kernel reads, checking each. */
    jcuda.Pointer[] marshal(Object[] args) {
        if (args.length != signature.length()) {
            throw new IllegalArgumentException(name + ": launched with " + args.length + " arguments, the kernel takes "
                    + signature.length() + " (" + signature + ")");
        }
        jcuda.Pointer[] ps = new jcuda.Pointer[args.length];
        for (int i = 0; i < args.length; i++) {
            Object a = args[i];
            char t = signature.charAt(i);
            ps[i] = switch (t) {
                case 'p' -> a instanceof DeviceMemory m ? jcuda.Pointer.to(new long[] {m.address()}) : bad(i, "device memory", a);
                case 'i' -> a instanceof Integer v ? jcuda.Pointer.to(new int[] {v}) : bad(i, "int", a);
                case 'l' -> a instanceof Long v ? jcuda.Pointer.to(new long[] {v}) : bad(i, "long", a);
                case 'f' -> a instanceof Float v ? jcuda.Pointer.to(new float[] {v}) : bad(i, "float", a);
                default -> throw new AssertionError(t);
            };
        }
        return ps;
    }

    private jcuda.Pointer bad(int i, String expected, Object got) {
        throw new IllegalArgumentException(name + ": argument " + i + " must be " + expected + ", got "
                + (got == null ? "null" : got.getClass().getSimpleName()));
    }
}
