package io.bifuse.cuda;

import static jcuda.driver.JCudaDriver.*;
import static org.junit.jupiter.api.Assertions.*;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import jcuda.Pointer;
import jcuda.driver.CUresult;
import jcuda.driver.CUstream;
import jcuda.driver.CUfunction;
import jcuda.driver.CUfunction_attribute;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

/**
 * What the simulated device (native-build/sim) promises beyond "the ops' tests pass on it": that it
 * says it is simulated, and that it fails where a GPU fails, so that the GPU tests running on it can
 * fail for the reasons they would fail on a GPU (memory accounting, NaN-filled allocations, overruns,
 * launch limits, asynchronous streams). Runs only on the simulated device (skipped, with the reason,
 * on a GPU and without either).
 */
@Tag("gpu")
class SimulatedDeviceTest {
    private CudaContext ctx;

    @BeforeEach void open() {
        assumeTrue(Cuda.isSimulated(), "only on the simulated device (BIFUSE_DEVICE=sim)");
        RequireGpu.that(Cuda.isAvailable(), () -> "simulated device unavailable: " + Cuda.status().reason());
        ctx = CudaContext.open(0);
    }

    @AfterEach void close() {
        if (ctx != null) ctx.close();
    }

    @Test void namesItselfSimulatedEverywhere() {
        assertTrue(ctx.isSimulated());
        assertTrue(ctx.deviceName().contains("simulated"), ctx.deviceName());
        assertTrue(ctx.toString().startsWith("simulated"), ctx.toString());
        assertEquals(90, ctx.computeCapability());
        assertEquals(132, ctx.multiprocessorCount());
        assertTrue(Cuda.status().simulated());
        assertTrue(Cuda.status().reason().contains("simulated"), Cuda.status().reason());
        assertEquals("cuda-sim", Cuda.backend());
        assertEquals("cuda-sim-fp32", Cuda.label("cuda-fp32"));
        assertEquals("bifuse-cuda-sim-tf32", Cuda.label("bifuse-cuda-tf32"));
        assertEquals("cpu", Cuda.label("cpu"));
        // The stand-ins come from the folder the driver was loaded from (build/sim, or BIFUSE_SIM_DIR / bifuse.sim.dir).
        String dir = SimulatedDevice.directory().toString();
        assertTrue(CublasHandle.describeLibrary().startsWith(dir + "/libcublas.so."), CublasHandle::describeLibrary);
        assertTrue(CufftPlan.describeLibrary().startsWith(dir + "/libcufft.so."), CufftPlan::describeLibrary);
    }

    @Test void freshMemoryIsNaNAndAccountingIsExact() {
        long free0 = ctx.memoryInfo()[0];
        try (DeviceBuffer b = DeviceBuffer.allocateFloats(ctx, 1 << 18)) {
            assertEquals(free0 - (1L << 20), ctx.memoryInfo()[0], "1 MiB allocated");
            float[] v = new float[1 << 18];
            b.read(v);
            for (float f : v) assertTrue(Float.isNaN(f), "an allocation reads NaN until written");
        }
        assertEquals(free0, ctx.memoryInfo()[0]);
        for (int i = 0; i < 10_000; i++) DeviceBuffer.allocate(ctx, 1000 + i % 7).close();
        assertEquals(free0, ctx.memoryInfo()[0], "device memory is flat after 10^4 allocations");
    }

    @Test void freeingWhatIsNotAnAllocationFails() {
        ctx.makeCurrent();
        assertEquals(CUresult.CUDA_ERROR_INVALID_VALUE, cuMemFree(DeviceBuffer.devicePointer(0x12345600L)));
        DeviceBuffer b = DeviceBuffer.allocate(ctx, 64);
        long a = b.address();
        b.close();
        assertEquals(CUresult.CUDA_ERROR_INVALID_VALUE, cuMemFree(DeviceBuffer.devicePointer(a)), "a double free");
    }

    /** lin_bias_rows(out, bias, rows, cols, ld): out[r, c] = bias[c]. */
    private static final KernelSpec FILL = new KernelSpec("lin_bias_rows", "ppiii");

    @Test void anOverrunIsAnIllegalAddressAndTheContextStaysFaulted() {
        int rows = 8, cols = 32;
        try (DeviceBuffer bias = DeviceBuffer.of(ctx, new float[cols]); DeviceBuffer out = DeviceBuffer.allocateFloats(ctx, (long) rows * cols - 1)) {
            ctx.launch(FILL, 1, 1, 256, 0, CudaStream.LEGACY_DEFAULT, out, bias, rows, cols, cols); // one float past the end
            CudaException e = assertThrows(CudaException.class, ctx::synchronize);
            assertEquals(CUresult.CUDA_ERROR_ILLEGAL_ADDRESS, e.code(), e.getMessage());
            e = assertThrows(CudaException.class, () -> DeviceBuffer.allocate(ctx, 4), "sticky, as on a GPU");
            assertEquals(CUresult.CUDA_ERROR_ILLEGAL_ADDRESS, e.code());
        } catch (CudaException closing) {
            assertEquals(CUresult.CUDA_ERROR_ILLEGAL_ADDRESS, closing.code(), "freeing in a faulted context reports the fault");
        }
        ctx.close();
        ctx = CudaContext.open(0); // the last reference went: the primary context is made anew, without the fault
        DeviceBuffer.allocate(ctx, 4).close();
    }

    @Test void aReadPastTheEndReadsNaN() {
        // lin_bias_grad(g, db, rows, cols, ld): db[c] = sum_r g[r, c]. Told of one row more than g holds,
        // it reads the guard zone after g, whose pattern is NaN as a float: the sums come out NaN, not
        // quietly almost right.
        int rows = 4, cols = 8;
        float[] g = new float[(rows - 1) * cols];
        java.util.Arrays.fill(g, 1f);
        try (DeviceBuffer dg = DeviceBuffer.of(ctx, g); DeviceBuffer db = DeviceBuffer.allocateFloats(ctx, cols)) {
            ctx.launch(new KernelSpec("lin_bias_grad", "ppiii"), 1, 1, 32, 0, CudaStream.LEGACY_DEFAULT, dg, db, rows, cols, cols);
            float[] got = new float[cols];
            db.read(got);
            for (float v : got) assertTrue(Float.isNaN(v), "a sum over memory past the buffer's end: " + v);
        }
    }

    @Test void aWildAddressIsAnIllegalAddressNotACrash() {
        // A kernel handed an address nobody allocated faults on the host; the simulator turns that into
        // the context's CUDA_ERROR_ILLEGAL_ADDRESS, as a GPU would, and the JVM lives on.
        try (DeviceBuffer bias = DeviceBuffer.of(ctx, new float[64])) {
            ctx.launch(FILL, 1, 1, 64, 0, CudaStream.LEGACY_DEFAULT, DeviceMemory.wrap(0x1000, 1 << 20), bias, 64, 64, 64);
            CudaException e = assertThrows(CudaException.class, ctx::synchronize);
            assertEquals(CUresult.CUDA_ERROR_ILLEGAL_ADDRESS, e.code(), e.getMessage());
        } catch (CudaException closing) {
            assertEquals(CUresult.CUDA_ERROR_ILLEGAL_ADDRESS, closing.code());
        }
        ctx.close();
        ctx = CudaContext.open(0);
        try (DeviceBuffer bias = DeviceBuffer.of(ctx, new float[] {5}); DeviceBuffer out = DeviceBuffer.allocateFloats(ctx, 1)) {
            ctx.launch(FILL, 1, 1, 32, 0, CudaStream.LEGACY_DEFAULT, out, bias, 1, 1, 1); // the kernel library recovered
            float[] got = new float[1];
            out.read(got);
            assertEquals(5f, got[0]);
        }
    }

    @Test void launchLimitsAreTheH200s() throws Exception {
        ctx.makeCurrent();
        try (DeviceBuffer bias = DeviceBuffer.of(ctx, new float[4]); DeviceBuffer out = DeviceBuffer.allocateFloats(ctx, 4)) {
            ctx.launch(FILL, 1, 1, 32, 0, CudaStream.LEGACY_DEFAULT, out, bias, 1, 4, 4);
            ctx.synchronize();
            CUfunction f = function(FILL);
            Pointer params = Pointer.to(FILL.marshal(new Object[] {out, bias, 1, 4, 4}));
            int[] stat = new int[1];
            assertEquals(0, cuFuncGetAttribute(stat, CUfunction_attribute.CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES, f));
            int over = 48 * 1024 - stat[0] + 1;
            assertEquals(CUresult.CUDA_ERROR_INVALID_VALUE, cuLaunchKernel(f, 1, 1, 1, 32, 1, 1, over, null, params, null),
                    "more than 48 KiB of shared memory without the opt-in");
            assertEquals(0, cuFuncSetAttribute(f, CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, over));
            assertEquals(0, cuLaunchKernel(f, 1, 1, 1, 32, 1, 1, over, null, params, null), "allowed once raised");
            assertEquals(CUresult.CUDA_ERROR_INVALID_VALUE,
                    cuFuncSetAttribute(f, CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, 227 * 1024 + 1));
            assertEquals(CUresult.CUDA_ERROR_INVALID_VALUE, cuLaunchKernel(f, 1, 1, 1, 1025, 1, 1, 0, null, params, null), "1025 threads");
            assertEquals(CUresult.CUDA_ERROR_INVALID_VALUE, cuLaunchKernel(f, 1, 65536, 1, 32, 1, 1, 0, null, params, null), "grid y 65536");
            assertEquals(CUresult.CUDA_ERROR_INVALID_VALUE, cuLaunchKernel(f, 0, 1, 1, 32, 1, 1, 0, null, params, null), "empty grid");
            ctx.synchronize();
        }
    }

    private CUfunction function(KernelSpec k) throws Exception {
        var m = CudaContext.class.getDeclaredMethod("function", KernelSpec.class);
        m.setAccessible(true);
        return (CUfunction) m.invoke(ctx, k);
    }

    @Test void theKernelReadsItsParametersByItsOwnTypes() throws Exception {
        // bnb_wn_grad(dw, w, int64_t n, dg, g, scale, dv): dv = scale (dw - (dg / g) w) over n elements.
        // Its n passed as an int: the kernel reads 8 bytes, the int and the poison after it in the
        // packed argument buffer, a negative n, and writes nothing (dv stays NaN) instead of by luck
        // reading the zero padding of a lone Java int[].
        KernelSpec right = BanBlockCuda.WN_GRAD, wrong = new KernelSpec("bnb_wn_grad", "ppipffp");
        int n = 1000;
        float[] dw = new float[n], w = new float[n];
        for (int i = 0; i < n; i++) { dw[i] = i; w[i] = 1; }
        try (DeviceBuffer ddw = DeviceBuffer.of(ctx, dw); DeviceBuffer dwt = DeviceBuffer.of(ctx, w);
             DeviceBuffer dg = DeviceBuffer.of(ctx, new float[] {2f}); DeviceBuffer dv = DeviceBuffer.allocateFloats(ctx, n)) {
            ctx.launch(right, 4, 1, 256, 0, CudaStream.LEGACY_DEFAULT, ddw, dwt, (long) n, dg, 2f, 0.5f, dv);
            float[] got = new float[n];
            dv.read(got);
            for (int i = 0; i < n; i++) assertEquals(0.5f * (i - 1f), got[i], 0f, "element " + i);
            dv.fill(Float.NaN);
            Pointer params = Pointer.to(wrong.marshal(new Object[] {ddw, dwt, n, dg, 2f, 0.5f, dv}));
            ctx.makeCurrent();
            assertEquals(0, cuLaunchKernel(function(right), 4, 1, 1, 256, 1, 1, 0, null, params, null));
            dv.read(got);
            for (float v : got) assertTrue(Float.isNaN(v), "an int read as a long must not come out right");
        }
    }

    @Test void aStructParameterIsOneKernelParamsEntry() throws Exception {
        // mfb_forward(MfbForwardParams): the driver copies sizeof(struct) bytes from the ONE entry, and the
        // kernel reads its fields at their C offsets. One row, o = 1 unit of k = 2, no normalization:
        // out = (P0 + bu0)(Q0 + bv0) + (P1 + bu1)(Q1 + bv1) = 1.5 * 3 + 2 * 5.
        KernelSpec k = MfbCuda.FORWARD;
        assertEquals(1, k.parameterCount());
        try (DeviceBuffer p = DeviceBuffer.of(ctx, new float[] {1, 2}); DeviceBuffer q = DeviceBuffer.of(ctx, new float[] {3, 4});
             DeviceBuffer bu = DeviceBuffer.of(ctx, new float[] {0.5f, 0}); DeviceBuffer bv = DeviceBuffer.of(ctx, new float[] {0, 1});
             DeviceBuffer out = DeviceBuffer.allocateFloats(ctx, 1)) {
            Object[] args = {p, q, bu, bv, out, 1, 1, 1, 2, 0, 0, 0, 1e-12f};
            jcuda.Pointer[] entries = k.marshal(args);
            assertEquals(1, entries.length);
            ctx.makeCurrent();
            assertEquals(0, cuLaunchKernel(function(k), 1, 1, 1, 256, 1, 1, 0, null, Pointer.to(entries), null));
            float[] got = new float[1];
            out.read(got);
            assertEquals(14.5f, got[0]);
            out.fill(Float.NaN);
            ctx.launch(k, 1, 1, 256, 0, CudaStream.LEGACY_DEFAULT, args); // the same through CudaContext
            out.read(got);
            assertEquals(14.5f, got[0]);
        }
    }

    @Test void streamsRunBehindTheHostsBack() {
        int rows = 2048, cols = 1024; // a kernel that takes the simulator milliseconds
        float[] bias = new float[cols];
        for (int c = 0; c < cols; c++) bias[c] = c;
        try (CudaStream a = CudaStream.create(ctx); CudaStream b = CudaStream.create(ctx); CudaEvent done = new CudaEvent(ctx);
             DeviceBuffer db = DeviceBuffer.of(ctx, bias); DeviceBuffer out = DeviceBuffer.allocateFloats(ctx, (long) rows * cols)) {
            float[] got = new float[rows * cols];
            // Read on stream b with nothing ordering it after the kernel on stream a: it sees unwritten (NaN) memory.
            ctx.launch(FILL, 64, 1, 256, 0, a, out, db, rows, cols, cols);
            out.read(got, b);
            int unwritten = 0;
            for (float v : got) if (Float.isNaN(v)) unwritten++;
            assertTrue(unwritten > 0, "a read not ordered after the kernel saw its result: the stream did not run asynchronously");
            // Ordered through an event: the full result.
            ctx.launch(FILL, 64, 1, 256, 0, a, out, db, rows, cols, cols);
            done.record(a);
            ctx.makeCurrent();
            Driver.check("cuStreamWaitEvent", cuStreamWaitEvent(b.jcuda(), eventOf(done), 0));
            out.read(got, b);
            for (int i = 0; i < got.length; i++) assertEquals(i % cols, got[i], 0f, "element " + i);
        }
    }

    private static jcuda.driver.CUevent eventOf(CudaEvent e) {
        try {
            var f = CudaEvent.class.getDeclaredField("event");
            f.setAccessible(true);
            return (jcuda.driver.CUevent) f.get(e);
        } catch (ReflectiveOperationException x) {
            throw new AssertionError(x);
        }
    }

    @Test void theLegacyStreamWaitsForBlockingStreams() {
        int rows = 2048, cols = 1024;
        try (CudaStream a = CudaStream.create(ctx); DeviceBuffer db = DeviceBuffer.of(ctx, new float[cols]);
             DeviceBuffer out = DeviceBuffer.allocateFloats(ctx, (long) rows * cols)) {
            ctx.launch(FILL, 64, 1, 256, 0, a, out, db, rows, cols, cols);
            float[] got = new float[rows * cols];
            out.read(got); // the legacy default stream: ordered after a's kernel by the driver's rules
            for (float v : got) assertEquals(0f, v);
        }
    }

    @Test void unknownHandlesAreErrorsNotCrashes() {
        ctx.makeCurrent();
        CUstream bogus = new CUstream();
        assertNotEquals(CUresult.CUDA_SUCCESS, cuStreamSynchronize(CudaStream.wrap(0xdead0).jcuda()));
        assertEquals(CUresult.CUDA_SUCCESS, cuStreamSynchronize(bogus), "a null CUstream is the legacy default stream");
    }
}
