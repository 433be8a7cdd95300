package io.bifuse.cuda;


import io.bifuse.Linear;
import java.util.ArrayList;
import java.util.List;

/**
 * Loading parameters that already live on the device into an op's own device buffers: the tensors of a
 * PyTorch state dict that another library keeps on the GPU (a training loop, a model loaded by ONNX
 * Runtime), wrapped with {@link DeviceMemory#wrap}, each {@code nn.Linear} weight {@code out × in}
 * row-major and its bias {@code out}. Every tensor is checked by name (present, open, 4-byte aligned,
 * EXACTLY the layer's size: a size mismatch means the wrong tensor) before the first copy is queued;
 * then one device-to-device copy per tensor on the caller's stream, so no host round trip and no
 * reshuffle (stacked layouts are contiguous slices of the op's buffers).
 *
 * <p>The copies are ordered on the stream like the op's calls: a forward queued after
 * {@code loadWeights} on the same stream sees the new weights. The op's host descriptor keeps the
 * weights it was made with: the CPU backend does not see device-loaded weights.
 */
public final class DeviceWeights {
    private DeviceWeights() {}

    /** One tensor to load: its name in error messages, the op's own destination, the caller's source. */
    record Entry(String name, DeviceMemory destination) {}

    /** A layer's entries in state-dict order: {@code <layer>.weight}, then {@code <layer>.bias} when it has one. */
    static void add(List<Entry> entries, String layer, Linear l, DeviceMemory weight, DeviceMemory bias) {
        entries.add(new Entry(layer + ".weight", weight.slice(0, 4L * l.out() * l.in())));
        if (l.hasBias()) entries.add(new Entry(layer + ".bias", bias.slice(0, 4L * l.out())));
    }

    /** The names of {@code entries}, in order: what {@code loadWeights} of each op expects. */
    static List<String> names(List<Entry> entries) {
        List<String> n = new ArrayList<>();
        for (Entry e : entries) n.add(e.name());
        return List.copyOf(n);
    }

    /** Checks every source against its entry, then queues the copies on {@code stream}. */
    static void load(CudaContext context, List<Entry> entries, List<? extends DeviceMemory> sources, CudaStream stream) {
        check(entries, sources);
        if (stream == null) throw new IllegalArgumentException("stream: expected a CudaStream (CudaStream.LEGACY_DEFAULT for the default), got null");
        context.makeCurrent();
        for (int i = 0; i < entries.size(); i++) {
            DeviceMemory dst = entries.get(i).destination(), src = sources.get(i);
            DeviceBuffer.copyAsync(dst, src, dst.byteSize(), stream);
        }
    }

    /** The argument checks of {@link #load}, without a device: every message names the tensor. */
    static void check(List<Entry> entries, List<? extends DeviceMemory> sources) {
        List<String> names = names(entries);
        if (sources == null) throw new IllegalArgumentException("tensors: expected " + names.size() + " device tensors " + names + ", got null");
        if (sources.size() != entries.size()) {
            throw new IllegalArgumentException("tensors: expected " + names.size() + " device tensors " + names + ", got " + sources.size());
        }
        for (int i = 0; i < entries.size(); i++) {
            String name = entries.get(i).name();
            DeviceMemory src = sources.get(i);
            long need = entries.get(i).destination().byteSize();
            if (src == null) throw new IllegalArgumentException(name + ": expected device memory of " + need + " bytes, got null");
            if (!src.isOpen()) throw new IllegalArgumentException(name + ": the device buffer is closed");
            if (src.byteSize() != need) {
                throw new IllegalArgumentException(name + ": expected exactly " + need / 4 + " floats (" + need + " bytes), got " + src.byteSize()
                        + " bytes (slice a larger buffer with DeviceMemory.slice)");
            }
            if (src.address() % 4 != 0) throw new IllegalArgumentException(name + ": expected a 4-byte aligned address, got 0x" + Long.toHexString(src.address()));
        }
    }
}
