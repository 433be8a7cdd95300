package io.bifuse.bench;

import io.bifuse.cuda.CudaContext;
import io.bifuse.cuda.CudaOp;
import io.bifuse.cuda.CudaStream;
import java.util.ArrayList;
import java.util.List;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.TearDown;

/**
 * What every GPU benchmark's state shares: the trial's checks ({@link GpuTrial}), its context and
 * stream, the device memory it owns, and the teardown order (the op's workspaces for the stream, the
 * owned memory in reverse, the op, the stream, the context).
 */
public abstract class GpuState {
    CudaContext ctx;
    CudaStream stream;
    private final List<AutoCloseable> owned = new ArrayList<>();

    /** Refuses the trial with the reason unless a real GPU (and cuBLAS where {@code cublas}) can run it; then opens the context and stream. */
    final void open(boolean cublas) {
        GpuTrial.require(cublas);
        ctx = CudaContext.open(0);
        stream = CudaStream.create(ctx);
    }

    /** {@code r} (null allowed: a buffer a configuration does not need), closed by the teardown. */
    final <T extends AutoCloseable> T own(T r) {
        if (r != null) owned.add(r);
        return r;
    }

    /** The op under test (closed last before the stream). */
    abstract CudaOp<?> op();

    @TearDown(Level.Trial) public void tearDown() throws Exception {
        if (ctx == null) return;
        CudaOp<?> op = op();
        if (op != null) op.release(stream);
        for (int i = owned.size() - 1; i >= 0; i--) owned.get(i).close();
        if (op != null) op.close();
        stream.close();
        ctx.close();
    }
}
