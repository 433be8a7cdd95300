package io.bifuse.cuda;

import io.bifuse.Normalization;
import java.util.List;

/**
 * One op's {@link Normalization} over segments of its rows on a GPU ({@code cuda/Normalization.cu}): the
 * whole row as one segment, or each chunk of a block-superdiagonal fusion as its own. Holds the segment
 * offsets on the device (uploaded once); shared by the block.bootstrap fusions' CUDA backends.
 */
final class NormalizationCuda implements AutoCloseable {
    static final KernelSpec FORWARD = new KernelSpec("nseg_forward", "pppiiiif");
    static final KernelSpec BACKWARD = new KernelSpec("nseg_backward", "ppppiiifif");
    static final List<KernelSpec> KERNELS = List.of(FORWARD, BACKWARD);
    private static final int BLOCK = 256; // NSEG_BLOCK

    private final CudaContext context;
    private final Normalization norm;
    private final int width, segments;
    private final DeviceBuffer offsets;

    /** {@code offsets}: the segments' starts and the row width at the end ({@code [0, ..., width]}, increasing). */
    NormalizationCuda(CudaContext context, Normalization norm, int[] offsets) {
        if (offsets.length < 2 || offsets[0] != 0) throw new IllegalArgumentException("offsets: expected [0, ..., width], got " + java.util.Arrays.toString(offsets));
        for (int i = 1; i < offsets.length; i++) {
            if (offsets[i] <= offsets[i - 1]) throw new IllegalArgumentException("offsets: expected increasing values, got " + java.util.Arrays.toString(offsets));
        }
        this.context = context;
        this.norm = norm;
        this.width = offsets[offsets.length - 1];
        this.segments = offsets.length - 1;
        this.offsets = DeviceBuffer.of(context, offsets);
    }

    /** {@code [0, width]}: the whole row as one segment. */
    static int[] wholeRow(int width) { return new int[] {0, width}; }

    /** {@code [0, s_0, s_0 + s_1, ..., width]} from the segments' sizes. */
    static int[] ofSizes(int[] sizes) {
        int[] o = new int[sizes.length + 1];
        for (int c = 0; c < sizes.length; c++) o[c + 1] = o[c] + sizes[c];
        return o;
    }

    /** {@code out = normalize(z)} per segment, {@code rows × width} dense; {@code out} may be {@code z}. */
    void forward(DeviceMemory z, DeviceMemory out, int rows, CudaStream stream) {
        context.launch(FORWARD, segments, DeviceArgs.rowGrid(rows), BLOCK, 0, stream, z, out, offsets, rows, width, norm.signedSqrt() ? 1 : 0,
                norm.l2().code(), norm.l2Eps());
    }

    /** {@code gz = ∂L/∂z} given {@code g = ∂L/∂normalize(z)}; {@code gz} may be {@code g}. */
    void backward(DeviceMemory z, DeviceMemory g, DeviceMemory gz, int rows, CudaStream stream) {
        context.launch(BACKWARD, segments, DeviceArgs.rowGrid(rows), BLOCK, 0, stream, z, g, gz, offsets, rows, width, norm.signedSqrt() ? 1 : 0,
                norm.signedSqrtGradEps(), norm.l2().code(), norm.l2Eps());
    }

    long deviceBytes() { return offsets.byteSize(); }

    @Override public void close() { offsets.close(); }
}
