package io.bifuse.cuda;

import io.bifuse.Mutan;
import io.bifuse.Precision;
import java.util.List;

/**
 * {@link Mutan} on one GPU: {@link BlockCuda} on its one-chunk form ({@link Mutan#asBlock()}), whose
 * gradients are MUTAN's in the same order under MUTAN's names ({@link #gradientNames()}).
 */
public final class MutanCuda extends CudaOp<Mutan> implements Mutan.Backend, DeviceFusion {
    static final List<KernelSpec> KERNELS = List.of(); // BlockCuda's

    private final BlockCuda block;
    private final Workspaces<Integer, Workspaces.Workspace> none = new Workspaces<>("MutanCuda", 1);

    public MutanCuda(Mutan op, CudaContext context) {
        this(op, context, Precision.FP32);
    }

    public MutanCuda(Mutan op, CudaContext context, Precision precision) {
        super("a Mutan", op, context, precision, Needs.CUBLAS, 1);
        try {
            block = own(new BlockCuda(op.asBlock(), context, precision));
        } catch (RuntimeException e) {
            throw failed(e);
        }
    }

    @Override Workspaces<?, ?> workspaces() { return none; }

    /** input.0, input.1, then the state-dict names: the order of {@link #backward(DeviceMemory, DeviceMemory, DeviceMemory, List, int, CudaStream)}'s buffers. */
    @Override public List<String> gradientNames() { return op.gradientNames(); }

    /** As {@link BlockCuda#forward(DeviceMemory, DeviceMemory, DeviceMemory, int, CudaStream)}. */
    @Override public void forward(DeviceMemory x, DeviceMemory y, DeviceMemory out, int batch, CudaStream stream) { block.forward(x, y, out, batch, stream); }

    /** As {@link FusionCuda#backward(DeviceMemory, DeviceMemory, DeviceMemory, List, int, CudaStream)}, one buffer per {@link #gradientNames()}. */
    @Override public void backward(DeviceMemory x, DeviceMemory y, DeviceMemory gradOut, List<? extends DeviceMemory> grads, int batch, CudaStream stream) {
        DeviceArgs.batch(batch);
        FusionCuda.checkGradients(gradientNames(), sizes(batch), grads); // under this op's names; the delegate checks the rest
        block.backward(x, y, gradOut, grads, batch, stream);
    }

    @Override public List<Long> sizes(int batch) { return block.sizes(batch); }

    @Override public float[] forward(float[] x, float[] y, int batch) { return block.forward(x, y, batch); }

    @Override public Mutan.Gradients backward(float[] x, float[] y, float[] gradOut, int batch) { return Mutan.Gradients.of(block.backward(x, y, gradOut, batch)); }
}
