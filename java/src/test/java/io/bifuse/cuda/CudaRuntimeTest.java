package io.bifuse.cuda;

import static org.junit.jupiter.api.Assertions.*;

import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

/** The runtime's behaviour with and without a GPU. */
class CudaRuntimeTest {

    @Test void statusNeverThrowsAndExplainsItself() {
        Cuda.Status s = assertDoesNotThrow(Cuda::status);
        assertNotNull(s.reason());
        assertFalse(s.reason().isBlank());
        assertFalse(s.reason().contains("\n"), "the reason is one line: " + s.reason());
        if (!s.available()) {
            var e = assertThrows(IllegalStateException.class, () -> CudaContext.open(0));
            assertTrue(e.getMessage().contains(s.reason()));
        }
    }

    @Test void aMissingDriverIsToldApartFromJCudasOwnLibrary() {
        // What the JVM reports in each case (JCuda wraps the loader's message).
        assertEquals("no NVIDIA driver: libcuda.so.1 could not be loaded", Cuda.linkFailure(new UnsatisfiedLinkError(
                "Error while loading native library \"JCudaDriver-12.6.0-linux-x86_64\"\nlibcuda.so.1: cannot open shared object file")));
        String jcuda = Cuda.linkFailure(new NoClassDefFoundError("Could not initialize class jcuda.driver.JCudaDriver"));
        assertTrue(jcuda.startsWith("JCuda's native driver library could not load (NoClassDefFoundError: Could not initialize"), jcuda);
        assertTrue(Cuda.linkFailure(new UnsatisfiedLinkError("no JCudaDriver-12.6.0-linux-x86_64 in java.library.path")).startsWith("JCuda's"));
    }

    @Test void libraryProbesNeverThrow() {
        assertNotNull(assertDoesNotThrow(CufftPlan::describeLibrary));
        assertNotNull(assertDoesNotThrow(CublasHandle::describeLibrary));
    }

    @Test void findsCudaLibrariesInsidePythonWheels(@org.junit.jupiter.api.io.TempDir java.nio.file.Path root) throws Exception {
        // The layout NVIDIA's pip wheels use: <root>/python3.12/site-packages/nvidia/cu13/lib/libcufft.so.12
        var lib = java.nio.file.Files.createDirectories(root.resolve("python3.12/site-packages/nvidia/cu13/lib"));
        java.nio.file.Files.createDirectories(root.resolve("python3.12/site-packages/nvidia/nolib"));
        var old = java.nio.file.Files.createDirectories(root.resolve("python3.10/dist-packages/nvidia/cufft/lib"));
        var found = NativeLibrary.pythonWheelLibDirs(java.util.List.of(root, root.resolve("missing")));
        assertEquals(java.util.Set.of(lib, old), java.util.Set.copyOf(found));
    }

    @Test void findsTheVirtualEnvironmentOfPython3OnPath(@org.junit.jupiter.api.io.TempDir java.nio.file.Path root) throws Exception {
        // PyTorch's venv on the GPU hosts: python3 on PATH is <venv>/bin/python3 and VIRTUAL_ENV is not exported.
        var venv = root.resolve("venv");
        var bin = java.nio.file.Files.createDirectories(venv.resolve("bin"));
        java.nio.file.Files.createFile(bin.resolve("python3"));
        var lib = java.nio.file.Files.createDirectories(venv.resolve("lib/python3.12/site-packages/nvidia/cu13/lib"));
        var empty = java.nio.file.Files.createDirectories(root.resolve("other/bin"));
        String path = empty + java.io.File.pathSeparator + bin + java.io.File.pathSeparator + java.io.File.pathSeparator + bin;
        assertEquals(java.util.List.of(venv), NativeLibrary.pythonPrefixesOnPath(path));
        assertEquals(java.util.List.of(lib), NativeLibrary.pythonWheelLibDirs(java.util.List.of(venv.resolve("lib"))));
        assertTrue(NativeLibrary.pythonPrefixesOnPath(null).isEmpty());
    }

    @Test void wrappedMemoryAndSlicesCheckTheirArguments() {
        DeviceMemory m = DeviceMemory.wrap(0x1000, 64);
        assertEquals(0x1000 + 16, m.slice(16, 32).address());
        assertThrows(IllegalArgumentException.class, () -> m.slice(48, 32));
        var e = assertThrows(IllegalArgumentException.class, () -> DeviceMemory.wrap(0, 4));
        assertTrue(e.getMessage().startsWith("address:"));
        e = assertThrows(IllegalArgumentException.class, () -> DeviceMemory.wrap(16, -1));
        assertTrue(e.getMessage().startsWith("byteSize:"));
        // offset + size overflows to a negative number: still outside, not a wild address
        e = assertThrows(IllegalArgumentException.class, () -> m.slice(Long.MAX_VALUE, 1));
        assertTrue(e.getMessage().startsWith("slice:"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> m.slice(65, 0));
        assertEquals(0, m.slice(64, 0).byteSize());
        // a null context is named before any driver call, whether or not there is a GPU
        e = assertThrows(IllegalArgumentException.class, () -> DeviceBuffer.allocate(null, 16));
        assertTrue(e.getMessage().startsWith("context:"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> DeviceBuffer.of(null, (float[]) null));
        assertTrue(e.getMessage().startsWith("data:") || e.getMessage().startsWith("context:"), e.getMessage());
    }

    @Test void cufftResultsAreNamedAsTheLoadedMajorNumbersThem() {
        assertEquals("CUFFT_INVALID_SIZE", Cufft.resultName(8, 12));
        assertEquals("CUFFT_PARSE_ERROR", Cufft.resultName(10, 12));
        assertEquals("CUFFT_INCOMPLETE_PARAMETER_LIST", Cufft.resultName(10, 11));
        assertEquals("CUFFT_LICENSE_ERROR", Cufft.resultName(12, 12));
        assertEquals("CUFFT_PARSE_ERROR", Cufft.resultName(12, 11));
        assertEquals("CUFFT_INCOMPLETE_PARAMETER_LIST", Cufft.resultName(-42, 12));
        assertEquals("CUFFT_NVJITLINK_FAILURE", Cufft.resultName(19, 12));
        assertEquals("cufftResult 19", Cufft.resultName(19, 11));
        assertEquals("CUFFT_NOT_SUPPORTED", Cufft.resultName(16, 11));
    }

    @Test void cudaExceptionNamesCallAndCode() {
        CudaException e = new CudaException("cuLaunchKernel", 1, "CUDA_ERROR_INVALID_VALUE");
        assertEquals("cuLaunchKernel failed: CUDA_ERROR_INVALID_VALUE (1)", e.getMessage());
        assertEquals(1, e.code());
        assertEquals("cuLaunchKernel", e.call());
    }

    @Tag("gpu") @Test void writesAndFillsAreOrderedOnTheirStream() {
        // On the simulated device copies run beside kernels and a queued memset only happens in its
        // stream's turn: a fill or write that was not ordered on the stream would read as the other value.
        RequireGpu.device();
        float[] data = io.bifuse.testing.Stats.gaussian(new java.util.SplittableRandom(9), 1000), back = new float[1000];
        try (CudaContext ctx = CudaContext.open(0); CudaStream st = CudaStream.create(ctx); DeviceBuffer b = DeviceBuffer.allocateFloats(ctx, 1000)) {
            b.write(data, st);
            b.fill(Float.NaN, st);
            b.read(back, st);
            for (float v : back) assertTrue(Float.isNaN(v));
            b.write(data, st);
            b.read(back, st);
            assertArrayEquals(data, back);
            b.fill(2f);
            b.read(back);
            for (float v : back) assertEquals(2f, v);
            var e = assertThrows(IllegalArgumentException.class, () -> b.fill(0f, null));
            assertTrue(e.getMessage().startsWith("stream:"), e.getMessage());
            e = assertThrows(IllegalArgumentException.class, () -> b.write(data, null));
            assertTrue(e.getMessage().startsWith("stream:"), e.getMessage());
        }
    }

    @Tag("gpu") @Test void inputsWrittenByAnOpAreCaught() {
        // DeviceRuns.unchanged is what makes every DeviceRuns run (tests and check) fail when an op
        // writes into its inputs: it must see a single changed element, even by one ulp.
        RequireGpu.device();
        float[] host = io.bifuse.testing.Stats.gaussian(new java.util.SplittableRandom(5), 300);
        try (CudaContext ctx = CudaContext.open(0); CudaStream st = CudaStream.create(ctx);
             DeviceBuffer same = DeviceBuffer.of(ctx, host); DeviceBuffer changed = DeviceBuffer.of(ctx, host)) {
            assertDoesNotThrow(() -> io.bifuse.testing.DeviceRuns.unchanged(st, "x", same, host));
            float[] moved = host.clone();
            moved[299] = Math.nextUp(moved[299]); // one ulp in the last element
            changed.write(moved);
            var e = assertThrows(IllegalStateException.class, () -> io.bifuse.testing.DeviceRuns.unchanged(st, "x", same, host, "gradOut", changed, host));
            assertTrue(e.getMessage().startsWith("gradOut: the op wrote into this input (element 299 of 300"), e.getMessage());
        }
    }

    @Tag("gpu") @Test void deviceBuffersRoundTripAndFailLoudly() {
        RequireGpu.device();
        try (CudaContext ctx = CudaContext.open(0)) {
            float[] data = {1, 2, 3, Float.NaN};
            try (DeviceBuffer b = DeviceBuffer.of(ctx, data)) {
                float[] back = new float[4];
                b.read(back);
                assertArrayEquals(data, back);
                b.fill(Float.NaN);
                b.read(back);
                for (float v : back) assertTrue(Float.isNaN(v));
            }
            DeviceBuffer closed = DeviceBuffer.allocateFloats(ctx, 4);
            closed.close();
            assertThrows(IllegalStateException.class, closed::address);
            // bench's peak device memory: bifuse's own buffers, counted on allocation and on close (once)
            long live = DeviceBuffer.liveBytes();
            DeviceBuffer.resetPeak();
            DeviceBuffer big = DeviceBuffer.allocate(ctx, 1 << 20);
            assertEquals(live + (1 << 20), DeviceBuffer.liveBytes());
            big.close();
            big.close();
            assertEquals(live, DeviceBuffer.liveBytes());
            assertTrue(DeviceBuffer.peakBytes() >= live + (1 << 20), "peak " + DeviceBuffer.peakBytes());
            CudaException oom = assertThrows(CudaException.class, () -> DeviceBuffer.allocate(ctx, 1L << 52));
            assertTrue(oom.getMessage().startsWith("cuMemAlloc"), oom.getMessage());
            assertTrue(oom.getMessage().contains("CUDA_ERROR_OUT_OF_MEMORY"), oom.getMessage());
        }
    }

    @Tag("gpu") @Test void cublasRowMajorSgemmMatchesTheCpu() {
        RequireGpu.cublas();
        int m = 37, n = 23, k = 19;
        var r = new java.util.SplittableRandom(1);
        float[] a = new float[m * k], b = new float[k * n];
        for (int i = 0; i < a.length; i++) a[i] = (float) r.nextGaussian();
        for (int i = 0; i < b.length; i++) b[i] = (float) r.nextGaussian();
        try (CudaContext ctx = CudaContext.open(0); CudaStream s = CudaStream.create(ctx); CublasHandle h = new CublasHandle(ctx, s);
             DeviceBuffer da = DeviceBuffer.of(ctx, a); DeviceBuffer db = DeviceBuffer.of(ctx, b);
             DeviceBuffer dc = DeviceBuffer.allocateFloats(ctx, (long) m * n)) {
            dc.fill(Float.NaN);
            h.sgemm(false, false, m, n, k, 1f, da, db, 0f, dc);
            float[] c = new float[m * n];
            dc.read(c, s);
            double num = 0, den = 0;
            for (int i = 0; i < m; i++) for (int j = 0; j < n; j++) {
                double ref = 0;
                for (int t = 0; t < k; t++) ref += (double) a[i * k + t] * b[t * n + j];
                num += (c[i * n + j] - ref) * (c[i * n + j] - ref);
                den += ref * ref;
            }
            assertTrue(Math.sqrt(num / den) < 1e-5, "relative L2 " + Math.sqrt(num / den));
        }
    }
}
