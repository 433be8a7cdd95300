// The simulated device's private interface between its parts: what the driver stand-in
// (libcuda.so.1, native-build/sim/driver.cpp) exports besides NVIDIA's cu* API, for the cuBLAS and
// cuFFT stand-ins (libcublas.so.13, libcufft.so.12) and for the kernel library it loads
// (libbifuse_simkernels.so, native-build/sim/kernels.cpp). Nothing outside the simulator uses it.
//
// Device memory in the simulator is host memory: a CUdeviceptr is a real address that host code
// (kernels compiled for the host, the cuBLAS and cuFFT stand-ins) dereferences directly, but only on
// a stream worker, inside work queued with bifuse_sim_enqueue (as a GPU touches memory only inside
// queued work).
#pragma once
#include <cuda.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// ---- driver -> stand-ins ------------------------------------------------------------------------------

// Work a library queues on a stream: run(arg) executes on that stream's worker thread, in stream
// order, after everything queued before it (and after the legacy default stream's work, by the
// driver's ordering rules). It returns CUDA_SUCCESS or the error the GPU would raise (normally
// CUDA_ERROR_ILLEGAL_ADDRESS for a bad operand range); a non-success result becomes the context's
// sticky error, reported by the next synchronizing call, as on a GPU. run owns arg and frees it.
// `what` names the work in messages ("cublasGemmEx", "cufftExecR2C").
// Returns CUDA_SUCCESS, CUDA_ERROR_INVALID_CONTEXT (no current context), CUDA_ERROR_INVALID_HANDLE
// (not a stream of the current context), or the context's sticky error (then run is not queued and
// arg is freed by the caller).
// Once queued, run is called exactly once, so it can free arg: to execute, or, when the context faulted
// before the work's turn came, with bifuse_sim_discarding() nonzero, to free arg and touch nothing else.
typedef CUresult (*bifuse_sim_work_fn)(void* arg);
CUresult bifuse_sim_enqueue(CUstream stream, const char* what, bifuse_sim_work_fn run, void* arg);
int bifuse_sim_discarding(void);

// Whether [address, address + bytes) lies inside one live device allocation (bytes 0: whether the
// address is inside one). Safe from any thread. For the stand-ins to check each operand before they
// touch it, on the worker: a range outside every allocation must return CUDA_ERROR_ILLEGAL_ADDRESS
// from run (and print one line naming the operand), never be dereferenced.
int bifuse_sim_is_device_range(CUdeviceptr address, size_t bytes);

// Prints one line "[cuda-sim] <text>" to stderr (serialized with the driver's own messages).
void bifuse_sim_log(const char* text);

// ---- kernel library -> driver -----------------------------------------------------------------------

// One __global__ function of cuda/*.cu compiled for the host. The parameter list is deduced from the
// C++ function type (never from bifuse's Java KernelSpec), so a marshalling mismatch shows. A by-value
// struct parameter is one parameter: its size and alignment are the struct's.
typedef struct bifuse_sim_kernel {
    const char* name;               // the extern "C" name, as cuModuleGetFunction looks it up
    int param_count;
    const unsigned* param_sizes;    // sizeof each parameter's C++ type
    const char* signature;          // the parameter types as C++ spells them, for messages
    int registers;                  // per thread for sm_90, from ptxas at build time; -1 unknown
    int static_shared_bytes;        // __shared__ bytes for sm_90, from ptxas; -1 unknown
    // Runs the whole grid on the calling thread (blocks one after another, each block's threads as
    // fibers with real barriers); params as cuLaunchKernel's kernelParams (params[i] points at the
    // i-th argument's bytes). Returns 0, or non-zero with bifuse_sim_kernels_error() saying why
    // (divergent __syncthreads, a shared-memory race in racecheck mode, ...).
    int (*launch)(void** params, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz);
    // alignof each parameter's C++ type: 8 for a pointer, 4 for an int, a by-value struct's its widest
    // member's (where cuLaunchKernel's `extra` buffer puts it). Last, so the fields above keep their offsets.
    const unsigned* param_aligns;
    // launch with the launch's dynamic shared memory (cuLaunchKernel's sharedMemBytes): the area a
    // BF_DYNAMIC_SHARED array points at, NaN-filled before each block. Null in a library without it.
    int (*launch_dynamic)(void** params, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                          unsigned shared_bytes);
} bifuse_sim_kernel;

// The table of every kernel in the library (exported by libbifuse_simkernels.so).
const bifuse_sim_kernel* bifuse_sim_kernel_table(int* count);
// Why the last launch on the calling thread failed (one line), or "" .
const char* bifuse_sim_kernels_error(void);
// A description of how the library was built (compiler, whether ptxas resource data was available).
const char* bifuse_sim_kernels_build_info(void);

#ifdef __cplusplus
}
#endif
