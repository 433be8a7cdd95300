// The simulated device's driver: a stand-in for NVIDIA's libcuda.so.1 (soname libcuda.so.1), so that
// JCuda's JNI library and bifuse's Java code run unchanged on a machine without a GPU. Compiled against
// the toolkit's own cuda.h (with __CUDA_API_VERSION_INTERNAL, as the driver itself is, so every
// versioned entry point is declared under its real symbol name): a definition whose parameters differ
// from NVIDIA's declaration does not compile.
//
// What it simulates (each rule cites the CUDA Driver API documentation, "CUDA Driver API" below, or
// its section "API synchronization behavior"):
//   * one device, an H200-like sm_90 part with 132 SMs, whose name says it is simulated;
//   * the primary context, retained and released by reference count, current per host thread
//     (cuCtxSetCurrent / Push / Pop); released to zero it is destroyed with everything in it;
//   * device memory as host memory: 256-byte aligned, NaN-filled (0xFF bytes) when allocated, with
//     pattern-filled guard zones checked after every launch and at free, and PROT_NONE pages beyond;
//     an overrun becomes the context's sticky CUDA_ERROR_ILLEGAL_ADDRESS, as a fault on a GPU does;
//     cuMemGetInfo reports a simulated capacity with exact accounting;
//   * streams that run asynchronously: each has a worker thread executing its work in order, behind
//     the caller's back; the legacy default stream and blocking streams wait for each other, as the
//     driver documents; events; every host-blocking call waits exactly as documented and no more;
//   * kernels: cuModuleLoadData accepts the real fatbin (or PTX/cubin), cuModuleGetFunction finds the
//     kernel by its extern "C" name in the host-compiled kernel library (libbifuse_simkernels.so) and
//     in the image, and cuLaunchKernel unpacks kernelParams by the kernel's own C++ parameter types;
//     launch limits as an H200 enforces them (block and grid, 48 KiB of shared memory unless raised
//     through CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES up to 227 KiB, registers x threads);
//   * every other entry point JCuda imports exists and returns CUDA_ERROR_NOT_SUPPORTED
//     (driver_stubs.gen.cpp, generated at build time), so JCuda's library loads.
// Only one kernel or library call executes at a time (one core's worth of device), so the simulation
// never competes with the test JVM for more than one CPU; copies and memsets run beside it, as a
// GPU's copy engines do, so a copy that is not ordered after a kernel can read what it has not written.
//
// Configuration (environment, read at cuInit): BIFUSE_SIM_KERNELS (the kernel library; default
// libbifuse_simkernels.so next to this file), BIFUSE_SIM_MEMORY_BYTES (capacity, default 8 GiB),
// BIFUSE_SIM_LAUNCH_LATENCY_US (the delay before a stream starts a queued item, default 20 us: a
// missing synchronization then reads stale data rather than racing to a lucky result),
// BIFUSE_SIM_VERBOSE=1 (one line per API error).
#define __CUDA_API_VERSION_INTERNAL 1
#include <cuda.h>

#include <dlfcn.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "sim_ext.h"

#define SIM_API extern "C" __attribute__((visibility("default")))

namespace {

using Clock = std::chrono::steady_clock;

// ---- H200-like device description --------------------------------------------------------------------
constexpr const char* kDeviceName = "cuda-sim: simulated NVIDIA H200 (not a GPU)";
constexpr int kSmCount = 132;
constexpr int kMaxThreadsPerBlock = 1024;
constexpr int kMaxBlockDimXY = 1024, kMaxBlockDimZ = 64;
constexpr unsigned kMaxGridX = 2147483647u, kMaxGridYZ = 65535u;
constexpr int kSharedPerBlock = 48 * 1024;             // without opt-in
constexpr int kSharedPerBlockOptin = 227 * 1024;       // sm_90 opt-in maximum (232448 bytes)
constexpr int kSharedPerSm = 228 * 1024;
constexpr int kRegistersPerBlock = 65536;
constexpr int kDriverVersion = 13000;

int device_attribute(CUdevice_attribute a, bool* known) {
    *known = true;
    switch (a) {
        case CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK: return kMaxThreadsPerBlock;
        case CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_X: return kMaxBlockDimXY;
        case CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Y: return kMaxBlockDimXY;
        case CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Z: return kMaxBlockDimZ;
        case CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_X: return (int)kMaxGridX;
        case CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Y: return (int)kMaxGridYZ;
        case CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Z: return (int)kMaxGridYZ;
        case CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK: return kSharedPerBlock;
        case CU_DEVICE_ATTRIBUTE_TOTAL_CONSTANT_MEMORY: return 65536;
        case CU_DEVICE_ATTRIBUTE_WARP_SIZE: return 32;
        case CU_DEVICE_ATTRIBUTE_MAX_PITCH: return 2147483647;
        case CU_DEVICE_ATTRIBUTE_MAX_REGISTERS_PER_BLOCK: return kRegistersPerBlock;
        case CU_DEVICE_ATTRIBUTE_CLOCK_RATE: return 1980000;
        case CU_DEVICE_ATTRIBUTE_TEXTURE_ALIGNMENT: return 512;
        case CU_DEVICE_ATTRIBUTE_GPU_OVERLAP: return 1;
        case CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT: return kSmCount;
        case CU_DEVICE_ATTRIBUTE_KERNEL_EXEC_TIMEOUT: return 0;
        case CU_DEVICE_ATTRIBUTE_INTEGRATED: return 0;
        case CU_DEVICE_ATTRIBUTE_CAN_MAP_HOST_MEMORY: return 1;
        case CU_DEVICE_ATTRIBUTE_COMPUTE_MODE: return CU_COMPUTEMODE_DEFAULT;
        case CU_DEVICE_ATTRIBUTE_CONCURRENT_KERNELS: return 1;
        case CU_DEVICE_ATTRIBUTE_ECC_ENABLED: return 1;
        case CU_DEVICE_ATTRIBUTE_PCI_BUS_ID: return 0x1b;
        case CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID: return 0;
        case CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID: return 0;
        case CU_DEVICE_ATTRIBUTE_TCC_DRIVER: return 0;
        case CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE: return 3201000;
        case CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH: return 6144;
        case CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE: return 50 * 1024 * 1024;
        case CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_MULTIPROCESSOR: return 2048;
        case CU_DEVICE_ATTRIBUTE_ASYNC_ENGINE_COUNT: return 3;
        case CU_DEVICE_ATTRIBUTE_UNIFIED_ADDRESSING: return 1;
        case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR: return 9;
        case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR: return 0;
        case CU_DEVICE_ATTRIBUTE_STREAM_PRIORITIES_SUPPORTED: return 1;
        case CU_DEVICE_ATTRIBUTE_GLOBAL_L1_CACHE_SUPPORTED: return 1;
        case CU_DEVICE_ATTRIBUTE_LOCAL_L1_CACHE_SUPPORTED: return 1;
        case CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_MULTIPROCESSOR: return kSharedPerSm;
        case CU_DEVICE_ATTRIBUTE_MAX_REGISTERS_PER_MULTIPROCESSOR: return 65536;
        case CU_DEVICE_ATTRIBUTE_MANAGED_MEMORY: return 1;
        case CU_DEVICE_ATTRIBUTE_MULTI_GPU_BOARD: return 0;
        case CU_DEVICE_ATTRIBUTE_SINGLE_TO_DOUBLE_PRECISION_PERF_RATIO: return 2;
        case CU_DEVICE_ATTRIBUTE_PAGEABLE_MEMORY_ACCESS: return 0;
        case CU_DEVICE_ATTRIBUTE_CONCURRENT_MANAGED_ACCESS: return 1;
        case CU_DEVICE_ATTRIBUTE_COMPUTE_PREEMPTION_SUPPORTED: return 1;
        case CU_DEVICE_ATTRIBUTE_COOPERATIVE_LAUNCH: return 1;
        case CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN: return kSharedPerBlockOptin;
        case CU_DEVICE_ATTRIBUTE_MAX_BLOCKS_PER_MULTIPROCESSOR: return 32;
        case CU_DEVICE_ATTRIBUTE_RESERVED_SHARED_MEMORY_PER_BLOCK: return 1024;
        case CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED: return 0;
        case CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED: return 0;
        default: break;
    }
    *known = false;
    return 0;
}

// ---- state -------------------------------------------------------------------------------------------
std::atomic<bool> g_initialized{false};
// The driver's state is never destroyed: stream workers may still wait on it while the process exits
// (a JVM exits without releasing its contexts), and a destructor run under them would hang or crash.
std::mutex& g_mu = *new std::mutex;               // every piece of driver state below, and the streams' queues
std::condition_variable& g_cv = *new std::condition_variable;  // any stream progress, any enqueue
std::mutex& g_exec_mu = *new std::mutex;          // one kernel or library call at a time
std::mutex& g_log_mu = *new std::mutex;
bool g_verbose = false;
size_t g_capacity = size_t(8) << 30;
std::chrono::microseconds g_latency{20};

void logf(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void logf(const char* fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    std::lock_guard<std::mutex> lk(g_log_mu);
    fprintf(stderr, "[cuda-sim] %s\n", buf);
    fflush(stderr);
}

struct Stream;
struct Event;
struct Module;
struct Function;

}  // namespace

// The opaque handle types of cuda.h, defined here as the simulator's objects.
struct CUctx_st {
    int refcount = 0;                  // primary-context retains
    bool active = false;
    unsigned flags = 0;
    CUresult sticky = CUDA_SUCCESS;    // the first fault; every later call in the context returns it
    std::shared_ptr<Stream> legacy;    // the legacy default stream (handle 0 or CU_STREAM_LEGACY)
    std::set<Stream*> streams;         // created streams (not legacy, not per-thread)
    std::map<std::thread::id, std::shared_ptr<Stream>> per_thread;  // CU_STREAM_PER_THREAD, lazily
    std::set<CUevent> events;
    std::set<CUmodule> modules;
    size_t used = 0;                   // bytes of device memory allocated
    uint64_t generation = 0;           // bumped when the context is destroyed and made anew
};

namespace {

thread_local bool t_discarding = false;  // the worker runs library work of a faulted context only to free it

struct Work {
    std::function<CUresult()> run;     // executes on the stream's worker
    bool compute = false;              // kernels and library calls hold g_exec_mu; copies run beside them
    bool run_to_discard = false;       // library work: run even in a faulted context, told to only free its argument
    std::string what;
    std::vector<std::pair<std::shared_ptr<Stream>, uint64_t>> deps;  // (stream, sequence) to finish first
    uint64_t seq = 0;
    Clock::time_point not_before;
};

struct Stream {
    CUctx_st* ctx = nullptr;
    unsigned flags = 0;                // CU_STREAM_DEFAULT (blocking) or CU_STREAM_NON_BLOCKING
    bool legacy = false, per_thread = false;
    int priority = 0;
    std::deque<Work> queue;
    uint64_t enqueued = 0, completed = 0;
    bool stopping = false;
    std::thread worker;
    std::weak_ptr<Stream> self;        // the worker thread holds the owning reference until it exits
    bool blocking() const { return legacy || !(flags & CU_STREAM_NON_BLOCKING); }
};

}  // namespace

struct CUstream_st { std::shared_ptr<Stream> s; };

struct CUevent_st {
    CUctx_st* ctx;
    unsigned flags;
    std::shared_ptr<Stream> stream;    // where it was last recorded; null if never
    uint64_t seq = 0;
    bool done_time_valid = false;
    Clock::time_point when;
};

struct CUfunc_st {
    const bifuse_sim_kernel* kernel;
    CUmodule module;
    int max_dynamic_shared;            // CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
};

struct CUmod_st {
    CUctx_st* ctx;
    std::vector<unsigned char> image;
    std::map<std::string, std::unique_ptr<CUfunc_st>> functions;
};

namespace {

CUctx_st& g_primary = *new CUctx_st;   // device 0's primary context
thread_local std::vector<CUctx_st*> t_ctx_stack;

// ---- the kernel library --------------------------------------------------------------------------------
struct KernelLib {
    void* handle = nullptr;
    const bifuse_sim_kernel* table = nullptr;
    int count = 0;
    const char* (*error)() = nullptr;
    std::string path, why;
};
KernelLib& g_kernels = *new KernelLib;

std::string own_dir() {
    Dl_info info;
    if (dladdr((void*)&own_dir, &info) && info.dli_fname) {
        std::string p = info.dli_fname;
        size_t slash = p.rfind('/');
        if (slash != std::string::npos) return p.substr(0, slash);
    }
    return ".";
}

void load_kernels() {
    const char* env = getenv("BIFUSE_SIM_KERNELS");
    std::string path = env && *env ? env : own_dir() + "/libbifuse_simkernels.so";
    g_kernels.path = path;
    g_kernels.handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!g_kernels.handle) {
        const char* e = dlerror();
        g_kernels.why = std::string("cannot load the kernel library ") + path + ": " + (e ? e : "?");
        logf("%s", g_kernels.why.c_str());
        return;
    }
    auto table = (const bifuse_sim_kernel* (*)(int*))dlsym(g_kernels.handle, "bifuse_sim_kernel_table");
    g_kernels.error = (const char* (*)())dlsym(g_kernels.handle, "bifuse_sim_kernels_error");
    if (!table || !g_kernels.error) {
        g_kernels.why = path + " is not a simulated-device kernel library (no bifuse_sim_kernel_table)";
        logf("%s", g_kernels.why.c_str());
        return;
    }
    g_kernels.table = table(&g_kernels.count);
}

const bifuse_sim_kernel* find_kernel(const char* name) {
    for (int i = 0; i < g_kernels.count; ++i)
        if (strcmp(g_kernels.table[i].name, name) == 0) return &g_kernels.table[i];
    return nullptr;
}

// ---- errors --------------------------------------------------------------------------------------------
struct ErrorName { CUresult code; const char* name; const char* text; };
const ErrorName kErrors[] = {
    {CUDA_SUCCESS, "CUDA_SUCCESS", "no error"},
    {CUDA_ERROR_INVALID_VALUE, "CUDA_ERROR_INVALID_VALUE", "invalid argument"},
    {CUDA_ERROR_OUT_OF_MEMORY, "CUDA_ERROR_OUT_OF_MEMORY", "out of memory"},
    {CUDA_ERROR_NOT_INITIALIZED, "CUDA_ERROR_NOT_INITIALIZED", "initialization error"},
    {CUDA_ERROR_DEINITIALIZED, "CUDA_ERROR_DEINITIALIZED", "driver shutting down"},
    {CUDA_ERROR_PROFILER_DISABLED, "CUDA_ERROR_PROFILER_DISABLED", "profiler disabled while using a system profiler"},
    {CUDA_ERROR_STUB_LIBRARY, "CUDA_ERROR_STUB_LIBRARY", "CUDA driver is a stub library"},
    {CUDA_ERROR_NO_DEVICE, "CUDA_ERROR_NO_DEVICE", "no CUDA-capable device is detected"},
    {CUDA_ERROR_INVALID_DEVICE, "CUDA_ERROR_INVALID_DEVICE", "invalid device ordinal"},
    {CUDA_ERROR_INVALID_IMAGE, "CUDA_ERROR_INVALID_IMAGE", "device kernel image is invalid"},
    {CUDA_ERROR_INVALID_CONTEXT, "CUDA_ERROR_INVALID_CONTEXT", "invalid device context"},
    {CUDA_ERROR_MAP_FAILED, "CUDA_ERROR_MAP_FAILED", "mapping of buffer object failed"},
    {CUDA_ERROR_NO_BINARY_FOR_GPU, "CUDA_ERROR_NO_BINARY_FOR_GPU", "no kernel image is available for execution on the device"},
    {CUDA_ERROR_NOT_MAPPED, "CUDA_ERROR_NOT_MAPPED", "resource not mapped"},
    {CUDA_ERROR_INVALID_SOURCE, "CUDA_ERROR_INVALID_SOURCE", "device kernel image is invalid"},
    {CUDA_ERROR_FILE_NOT_FOUND, "CUDA_ERROR_FILE_NOT_FOUND", "file not found"},
    {CUDA_ERROR_INVALID_HANDLE, "CUDA_ERROR_INVALID_HANDLE", "invalid resource handle"},
    {CUDA_ERROR_NOT_FOUND, "CUDA_ERROR_NOT_FOUND", "named symbol not found"},
    {CUDA_ERROR_NOT_READY, "CUDA_ERROR_NOT_READY", "device not ready"},
    {CUDA_ERROR_ILLEGAL_ADDRESS, "CUDA_ERROR_ILLEGAL_ADDRESS", "an illegal memory access was encountered"},
    {CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES, "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES", "too many resources requested for launch"},
    {CUDA_ERROR_LAUNCH_TIMEOUT, "CUDA_ERROR_LAUNCH_TIMEOUT", "the launch timed out and was terminated"},
    {CUDA_ERROR_PRIMARY_CONTEXT_ACTIVE, "CUDA_ERROR_PRIMARY_CONTEXT_ACTIVE", "primary context active"},
    {CUDA_ERROR_CONTEXT_IS_DESTROYED, "CUDA_ERROR_CONTEXT_IS_DESTROYED", "context is destroyed"},
    {CUDA_ERROR_ASSERT, "CUDA_ERROR_ASSERT", "device-side assert triggered"},
    {CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED, "CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED", "part or all of the requested memory range is already mapped"},
    {CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED, "CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED", "pointer does not correspond to a registered memory region"},
    {CUDA_ERROR_LAUNCH_FAILED, "CUDA_ERROR_LAUNCH_FAILED", "unspecified launch failure"},
    {CUDA_ERROR_NOT_PERMITTED, "CUDA_ERROR_NOT_PERMITTED", "operation not permitted"},
    {CUDA_ERROR_NOT_SUPPORTED, "CUDA_ERROR_NOT_SUPPORTED", "operation not supported"},
    {CUDA_ERROR_UNKNOWN, "CUDA_ERROR_UNKNOWN", "unknown error"},
};

CUresult fail(CUresult r, const char* call, const char* why) {
    if (g_verbose && r != CUDA_SUCCESS) logf("%s: %s", call, why);
    return r;
}

// ---- current context -------------------------------------------------------------------------------------
CUctx_st* current() { return t_ctx_stack.empty() ? nullptr : t_ctx_stack.back(); }

// The context an API call works in: the current one, active and without a sticky error.
CUresult need_ctx(CUctx_st** out, bool sticky_ok = false) {
    if (!g_initialized) return CUDA_ERROR_NOT_INITIALIZED;
    CUctx_st* c = current();
    if (!c) return CUDA_ERROR_INVALID_CONTEXT;
    if (!c->active) return CUDA_ERROR_CONTEXT_IS_DESTROYED;
    if (!sticky_ok && c->sticky != CUDA_SUCCESS) return c->sticky;
    *out = c;
    return CUDA_SUCCESS;
}

// ---- device memory -------------------------------------------------------------------------------------
// Layout of one allocation: [PROT_NONE page][head pattern page][data, rounded up to pages][tail pattern
// (the rest of the last data page plus one page)][PROT_NONE page]. An overrun of less than a page
// changes the pattern (found after the launch); a wild one faults on the guard pages.
constexpr size_t kPage = 4096;
// The guard pattern, by absolute address: the 32-bit word 0xFFF5A5A5 is a NaN as a float, two of them a
// NaN as a double, and a large negative int, so a READ past the end poisons what it feeds (a tiny finite
// value would pass unseen); and it is a value no kernel writes by accident, so a write shows.
constexpr uint32_t kPatternWord = 0xFFF5A5A5u;
inline unsigned char pattern_at(const void* p) { return (unsigned char)(kPatternWord >> (8 * ((uintptr_t)p & 3))); }
void fill_pattern(unsigned char* p, size_t n) { for (size_t i = 0; i < n; ++i) p[i] = pattern_at(p + i); }
constexpr size_t kCheckNear = 512;  // pattern bytes checked next to the data after every launch

struct Alloc {
    CUctx_st* ctx;
    uintptr_t data;
    size_t size;
    char* base;       // the mapping
    size_t mapped;
    bool host;        // page-locked host memory (cuMemAllocHost / cuMemHostAlloc), not device memory
};
std::map<uintptr_t, Alloc>& g_allocs = *new std::map<uintptr_t, Alloc>;        // by data address; guarded by g_mu
std::map<uintptr_t, size_t>& g_registered = *new std::map<uintptr_t, size_t>;   // cuMemHostRegister'ed host ranges, guarded by g_mu

size_t round_up(size_t v, size_t to) { return (v + to - 1) / to * to; }

bool make_alloc(size_t size, Alloc* a) {
    size_t data_pages = round_up(size, kPage);
    size_t mapped = kPage + kPage + data_pages + kPage + kPage;
    void* p = mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return false;
    char* base = (char*)p;
    mprotect(base, kPage, PROT_NONE);
    mprotect(base + mapped - kPage, kPage, PROT_NONE);
    char* data = base + 2 * kPage;
    fill_pattern((unsigned char*)base + kPage, kPage);
    memset(data, 0xFF, size);  // NaN in every float and double: reading what nobody wrote shows
    fill_pattern((unsigned char*)data + size, (data_pages - size) + kPage);
    a->base = base;
    a->mapped = mapped;
    a->data = (uintptr_t)data;
    a->size = size;
    return true;
}

// The first byte of a guard zone that is not the pattern, as an offset from the data (negative before it).
bool guard_intact(const Alloc& a, size_t near, long* where) {
    const unsigned char* d = (const unsigned char*)a.data;
    size_t head = std::min(near, kPage);
    for (size_t i = 1; i <= head; ++i)
        if (d[-(long)i] != pattern_at(d - i)) { *where = -(long)i; return false; }
    size_t tail = round_up(a.size, kPage) - a.size + kPage;
    tail = std::min(tail, near);
    for (size_t i = 0; i < tail; ++i)
        if (d[a.size + i] != pattern_at(d + a.size + i)) { *where = (long)(a.size + i); return false; }
    return true;
}

// After every launch: every allocation of the context still has its guards. Called with g_mu held.
bool check_guards(CUctx_st* ctx, const std::string& what) {
    for (auto& [addr, a] : g_allocs) {
        if (a.ctx != ctx || a.host) continue;
        long where;
        if (!guard_intact(a, kCheckNear, &where)) {
            logf("%s wrote outside an allocation: byte %ld of the %zu-byte buffer at 0x%lx (%s its end): "
                 "CUDA_ERROR_ILLEGAL_ADDRESS", what.c_str(), where, a.size, (unsigned long)addr, where < 0 ? "before" : "past");
            // Restore the pattern so the same overrun is reported once.
            unsigned char* d = (unsigned char*)a.data;
            fill_pattern(d - kPage, kPage);
            fill_pattern(d + a.size, round_up(a.size, kPage) - a.size + kPage);
            return false;
        }
    }
    return true;
}

// The allocation that holds [p, p + bytes), or null. Called with g_mu held.
const Alloc* find_alloc(uintptr_t p, size_t bytes) {
    auto it = g_allocs.upper_bound(p);
    if (it == g_allocs.begin()) return nullptr;
    --it;
    const Alloc& a = it->second;
    if (p < a.data || p > a.data + a.size) return nullptr;
    if (bytes == 0 ? p >= a.data + a.size && a.size > 0 : p + bytes > a.data + a.size) return nullptr;
    return &a;
}

bool is_pinned_host(const void* p, size_t bytes) {
    uintptr_t u = (uintptr_t)p;
    const Alloc* a = find_alloc(u, bytes);
    if (a && a->host) return true;
    auto it = g_registered.upper_bound(u);
    if (it == g_registered.begin()) return false;
    --it;
    return u >= it->first && u + bytes <= it->first + it->second;
}

bool is_device(CUdeviceptr p, size_t bytes) {
    const Alloc* a = find_alloc((uintptr_t)p, bytes);
    return a && !a->host;
}

// ---- faults inside device work -----------------------------------------------------------------------------
// A kernel that computes a wild address faults on the host. On a GPU that is an illegal address in
// the context, not the end of the process: a SIGSEGV/SIGBUS raised while a stream worker executes
// device work jumps back to the worker, which makes CUDA_ERROR_ILLEGAL_ADDRESS the context's sticky
// error. Every other fault goes to the handler that was installed before (the JVM's, which needs
// SIGSEGV for its own null checks and safepoints). initial-exec TLS: read from a signal handler.
__attribute__((tls_model("initial-exec"))) thread_local sigjmp_buf* t_fault_jump = nullptr;
__attribute__((tls_model("initial-exec"))) thread_local void* t_fault_address = nullptr;
struct sigaction g_old_segv, g_old_bus;

void on_fault(int sig, siginfo_t* info, void* uc) {
    if (sigjmp_buf* j = t_fault_jump) {
        t_fault_jump = nullptr;
        t_fault_address = info ? info->si_addr : nullptr;
        siglongjmp(*j, 1);
    }
    struct sigaction* old = sig == SIGBUS ? &g_old_bus : &g_old_segv;
    if (old->sa_flags & SA_SIGINFO) {
        if (old->sa_sigaction) { old->sa_sigaction(sig, info, uc); return; }
    } else if (old->sa_handler != SIG_DFL && old->sa_handler != SIG_IGN) {
        old->sa_handler(sig);
        return;
    }
    signal(sig, SIG_DFL);  // no handler before ours: fault again and end as the process would have
}

void install_fault_handler() {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &g_old_segv);
    sigaction(SIGBUS, &sa, &g_old_bus);
}

// Runs one piece of device work with faults turned into CUDA_ERROR_ILLEGAL_ADDRESS.
CUresult run_guarded(Work& w) {
    sigjmp_buf jump;
    if (sigsetjmp(jump, 1) != 0) {
        logf("%s faulted at host address %p (a wild device address): CUDA_ERROR_ILLEGAL_ADDRESS", w.what.c_str(), t_fault_address);
        // The kernel library was interrupted mid-block: let it drop its launch state.
        if (g_kernels.handle) {
            if (auto abort_fn = (void (*)())dlsym(g_kernels.handle, "bifuse_sim_kernels_abort")) abort_fn();
        }
        return CUDA_ERROR_ILLEGAL_ADDRESS;
    }
    t_fault_jump = &jump;
    CUresult r = w.run();
    t_fault_jump = nullptr;
    return r;
}

// ---- streams -------------------------------------------------------------------------------------------
void worker_loop(std::shared_ptr<Stream> s);

std::shared_ptr<Stream> new_stream(CUctx_st* ctx, unsigned flags, bool legacy, bool per_thread) {
    auto s = std::make_shared<Stream>();
    s->ctx = ctx;
    s->flags = flags;
    s->legacy = legacy;
    s->per_thread = per_thread;
    s->self = s;
    s->worker = std::thread(worker_loop, s);
    return s;
}

bool deps_done(const Work& w) {
    for (auto& [s, seq] : w.deps)
        if (s->completed < seq) return false;
    return true;
}

void worker_loop(std::shared_ptr<Stream> s) {
    // An alternate signal stack, so that a fault on an exhausted fiber stack can still be handled.
    static thread_local std::vector<char> altstack(1 << 16);
    stack_t ss;
    memset(&ss, 0, sizeof ss);
    ss.ss_sp = altstack.data();
    ss.ss_size = altstack.size();
    sigaltstack(&ss, nullptr);
    std::unique_lock<std::mutex> lk(g_mu);
    for (;;) {
        if (s->queue.empty()) {
            if (s->stopping) break;
            g_cv.wait(lk);
            continue;
        }
        Work& front = s->queue.front();
        if (!deps_done(front)) { g_cv.wait(lk); continue; }
        if (Clock::now() < front.not_before) { g_cv.wait_until(lk, front.not_before); continue; }
        Work w = std::move(front);
        s->queue.pop_front();
        CUctx_st* ctx = s->ctx;
        bool skip = ctx->sticky != CUDA_SUCCESS;  // a faulted context runs nothing more, as on a GPU
        lk.unlock();
        CUresult r = CUDA_SUCCESS;
        if (skip && w.run_to_discard) {
            t_discarding = true;  // bifuse_sim_discarding(): the stand-in frees what it owns and does nothing
            w.run();
            t_discarding = false;
        } else if (!skip && w.compute) {
            std::lock_guard<std::mutex> ex(g_exec_mu);
            r = run_guarded(w);
        } else if (!skip) {
            r = run_guarded(w);  // a copy engine: concurrent with the kernels of other streams, as on a GPU
        }
        lk.lock();
        if (r != CUDA_SUCCESS && ctx->sticky == CUDA_SUCCESS) ctx->sticky = r;
        s->completed = w.seq;
        g_cv.notify_all();
    }
    // s (this thread's reference) goes when the thread ends: a destroyed stream lives until it drained.
}

std::vector<std::thread>& g_finished_workers = *new std::vector<std::thread>;  // threads of destroyed streams, joined later; under g_mu
std::set<CUstream>& g_stream_handles = *new std::set<CUstream>;          // live handles from cuStreamCreate; under g_mu

// Resolves a stream handle in ctx (0 / CU_STREAM_LEGACY / CU_STREAM_PER_THREAD / created). g_mu held.
CUresult resolve(CUctx_st* ctx, CUstream h, std::shared_ptr<Stream>* out) {
    if (h == nullptr || h == CU_STREAM_LEGACY) { *out = ctx->legacy; return CUDA_SUCCESS; }
    if (h == CU_STREAM_PER_THREAD) {
        auto& s = ctx->per_thread[std::this_thread::get_id()];
        if (!s) s = new_stream(ctx, CU_STREAM_DEFAULT, false, true);
        *out = s;
        return CUDA_SUCCESS;
    }
    // A handle is looked up before it is dereferenced: a stale or wild one is an error, not a crash.
    if (!g_stream_handles.count(h) || !ctx->streams.count(h->s.get())) return CUDA_ERROR_INVALID_HANDLE;
    *out = h->s;
    return CUDA_SUCCESS;
}

// Queues w on s with the legacy-stream ordering rules ("Stream synchronization behavior", CUDA Driver
// API): work on the legacy default stream waits for all prior work on the context's blocking streams,
// and work on a blocking stream waits for prior work on the legacy stream. g_mu held.
uint64_t enqueue_locked(const std::shared_ptr<Stream>& s, Work w) {
    CUctx_st* ctx = s->ctx;
    if (s->legacy) {
        for (Stream* o : ctx->streams)
            if (o->blocking() && o->enqueued > o->completed) w.deps.emplace_back(o->self.lock(), o->enqueued);
        for (auto& [id, o] : ctx->per_thread)
            if (o->enqueued > o->completed) w.deps.emplace_back(o, o->enqueued);
    } else if (s->blocking()) {
        auto& l = ctx->legacy;
        if (l->enqueued > l->completed) w.deps.emplace_back(l, l->enqueued);
    }
    w.seq = ++s->enqueued;
    w.not_before = Clock::now() + g_latency;
    s->queue.push_back(std::move(w));
    g_cv.notify_all();
    return s->enqueued;
}

// Blocks until s has completed sequence seq. g_mu held through lk.
void wait_for(std::unique_lock<std::mutex>& lk, Stream* s, uint64_t seq) {
    g_cv.wait(lk, [&] { return s->completed >= seq; });
}

CUresult enqueue(CUstream h, const char* what, std::function<CUresult()> run, bool wait, const char* call, bool compute = false,
                 bool run_to_discard = false) {
    CUctx_st* ctx;
    std::unique_lock<std::mutex> lk(g_mu);
    if (CUresult r = need_ctx(&ctx)) return fail(r, call, "no usable current context");
    std::shared_ptr<Stream> s;
    if (CUresult r = resolve(ctx, h, &s)) return fail(r, call, "not a stream of the current context");
    Work w;
    w.run = std::move(run);
    w.what = what;
    w.compute = compute;
    w.run_to_discard = run_to_discard;
    uint64_t seq = enqueue_locked(s, std::move(w));
    if (wait) {
        wait_for(lk, s.get(), seq);
        return ctx->sticky;
    }
    return CUDA_SUCCESS;
}

// Drains every stream of the context (the work queued so far). g_mu held through lk.
void drain(std::unique_lock<std::mutex>& lk, CUctx_st* ctx) {
    std::vector<std::pair<std::shared_ptr<Stream>, uint64_t>> targets;
    targets.emplace_back(ctx->legacy, ctx->legacy->enqueued);
    for (Stream* o : ctx->streams) targets.emplace_back(o->self.lock(), o->enqueued);
    for (auto& [id, o] : ctx->per_thread) targets.emplace_back(o, o->enqueued);
    for (auto& [s, seq] : targets) wait_for(lk, s.get(), seq);
}

void stop_stream(std::unique_lock<std::mutex>& lk, std::shared_ptr<Stream> s, bool join) {
    s->stopping = true;
    g_cv.notify_all();
    if (join) {
        lk.unlock();
        if (s->worker.joinable()) s->worker.join();
        lk.lock();
    } else {
        g_finished_workers.push_back(std::move(s->worker));
    }
}

void reap_workers(std::unique_lock<std::mutex>& lk) {
    // Join threads of destroyed streams that have drained, outside the lock.
    std::vector<std::thread> done;
    done.swap(g_finished_workers);
    lk.unlock();
    for (auto& t : done) if (t.joinable()) t.join();
    lk.lock();
}

// ---- context lifetime ---------------------------------------------------------------------------------
void activate(CUctx_st* c) {
    c->active = true;
    c->sticky = CUDA_SUCCESS;
    c->used = 0;
    c->legacy = new_stream(c, CU_STREAM_DEFAULT, true, false);
}

// Destroys everything in the context: what a GPU does when the primary context's last reference goes.
void destroy_ctx(std::unique_lock<std::mutex>& lk, CUctx_st* c) {
    drain(lk, c);
    for (Stream* o : std::vector<Stream*>(c->streams.begin(), c->streams.end())) {
        auto keep = o->self.lock();
        c->streams.erase(o);
        stop_stream(lk, keep, true);
    }
    for (auto it = g_stream_handles.begin(); it != g_stream_handles.end();) {
        if ((*it)->s->ctx == c) { delete *it; it = g_stream_handles.erase(it); } else { ++it; }
    }
    for (auto& [id, o] : c->per_thread) stop_stream(lk, o, true);
    c->per_thread.clear();
    stop_stream(lk, c->legacy, true);
    c->legacy.reset();
    for (CUevent e : c->events) delete e;
    c->events.clear();
    for (CUmodule m : c->modules) delete m;
    c->modules.clear();
    for (auto it = g_allocs.begin(); it != g_allocs.end();) {
        if (it->second.ctx == c) {
            munmap(it->second.base, it->second.mapped);
            it = g_allocs.erase(it);
        } else {
            ++it;
        }
    }
    c->used = 0;
    c->active = false;
    c->generation++;
}

// ---- host-side copies ------------------------------------------------------------------------------------
// A copy's device operand must lie in one allocation; checked when it executes, as the DMA engine faults.
CUresult check_device_operand(const char* call, const char* which, CUdeviceptr p, size_t bytes) {
    std::lock_guard<std::mutex> lk(g_mu);
    if (is_device(p, bytes)) return CUDA_SUCCESS;
    logf("%s: the %s range [0x%llx, +%zu) is not inside one device allocation: CUDA_ERROR_ILLEGAL_ADDRESS", call, which,
         (unsigned long long)p, bytes);
    return CUDA_ERROR_ILLEGAL_ADDRESS;
}

bool pinned(const void* p, size_t bytes) {
    std::lock_guard<std::mutex> lk(g_mu);
    return is_pinned_host(p, bytes);
}

// Host to device. From pageable memory the data is staged when the call is made, so the caller may
// reuse its buffer on return while the device write is still queued; from pinned memory the copy
// reads the host buffer when it executes ("API synchronization behavior").
CUresult copy_htod(CUdeviceptr dst, const void* src, size_t bytes, CUstream s, const char* call) {
    if (bytes == 0) return CUDA_SUCCESS;
    if (!src) return fail(CUDA_ERROR_INVALID_VALUE, call, "null host pointer");
    std::function<CUresult()> run;
    if (pinned(src, bytes)) {
        run = [=] {
            if (CUresult r = check_device_operand(call, "destination", dst, bytes)) return r;
            memcpy((void*)dst, src, bytes);
            return CUDA_SUCCESS;
        };
    } else {
        auto staged = std::make_shared<std::vector<unsigned char>>((const unsigned char*)src, (const unsigned char*)src + bytes);
        run = [=] {
            if (CUresult r = check_device_operand(call, "destination", dst, bytes)) return r;
            memcpy((void*)dst, staged->data(), bytes);
            return CUDA_SUCCESS;
        };
    }
    return enqueue(s, call, std::move(run), false, call);
}

// Device to host: to pageable memory the call returns only once the copy has completed; to pinned
// memory an async copy returns at once and a synchronous one waits ("API synchronization behavior").
CUresult copy_dtoh(void* dst, CUdeviceptr src, size_t bytes, CUstream s, bool async, const char* call) {
    if (bytes == 0) return CUDA_SUCCESS;
    if (!dst) return fail(CUDA_ERROR_INVALID_VALUE, call, "null host pointer");
    bool wait = !async || !pinned(dst, bytes);
    return enqueue(s, call, [=] {
        if (CUresult r = check_device_operand(call, "source", src, bytes)) return r;
        memcpy(dst, (const void*)src, bytes);
        return CUDA_SUCCESS;
    }, wait, call);
}

CUresult copy_dtod(CUdeviceptr dst, CUdeviceptr src, size_t bytes, CUstream s, const char* call) {
    if (bytes == 0) return CUDA_SUCCESS;
    return enqueue(s, call, [=] {
        if (CUresult r = check_device_operand(call, "source", src, bytes)) return r;
        if (CUresult r = check_device_operand(call, "destination", dst, bytes)) return r;
        memmove((void*)dst, (const void*)src, bytes);
        return CUDA_SUCCESS;
    }, false, call);
}

template <class T>
CUresult memset_n(CUdeviceptr dst, T value, size_t n, CUstream s, const char* call) {
    if (n == 0) return CUDA_SUCCESS;
    if (dst % sizeof(T) != 0) return fail(CUDA_ERROR_INVALID_VALUE, call, "destination not aligned to the element size");
    return enqueue(s, call, [=] {
        if (CUresult r = check_device_operand(call, "destination", dst, n * sizeof(T))) return r;
        T* p = (T*)dst;
        for (size_t i = 0; i < n; ++i) p[i] = value;
        return CUDA_SUCCESS;
    }, false, call);
}

enum class Space { Device, PinnedHost, Pageable };
Space space_of(uintptr_t p) {
    std::lock_guard<std::mutex> lk(g_mu);
    const Alloc* a = find_alloc(p, 0);
    if (a) return a->host ? Space::PinnedHost : Space::Device;
    return is_pinned_host((const void*)p, 1) ? Space::PinnedHost : Space::Pageable;
}

// cuMemcpy / cuMemcpyAsync: with unified addressing the direction follows from the addresses.
CUresult copy_any(CUdeviceptr dst, CUdeviceptr src, size_t bytes, CUstream s, bool async, const char* call) {
    Space ds = space_of(dst), ss = space_of(src);
    if (ds == Space::Device && ss == Space::Device) return copy_dtod(dst, src, bytes, s, call);
    if (ds == Space::Device) return copy_htod(dst, (const void*)src, bytes, s, call);
    if (ss == Space::Device) return copy_dtoh((void*)dst, src, bytes, s, async, call);
    return enqueue(s, call, [=] { memmove((void*)dst, (const void*)src, bytes); return CUDA_SUCCESS; }, !async, call);
}

// ---- launches -----------------------------------------------------------------------------------------
bool plausible_image(const void* image) {
    const unsigned char* p = (const unsigned char*)image;
    uint32_t magic;
    memcpy(&magic, p, 4);
    if (magic == 0xBA55ED50u || magic == 0x466243B1u) return true;  // fatbin container / fatbin wrapper
    if (p[0] == 0x7f && p[1] == 'E' && p[2] == 'L' && p[3] == 'F') return true;  // cubin
    if (memcmp(p, "BIFUSE-SIM-MODULE", 17) == 0) return true;  // the sim's own image, built without nvcc
    return strstr((const char*)p, ".version") != nullptr && strstr((const char*)p, ".target") != nullptr;  // PTX text
}

size_t image_size(const void* image) {
    const unsigned char* p = (const unsigned char*)image;
    uint32_t magic;
    memcpy(&magic, p, 4);
    if (magic == 0xBA55ED50u) {  // fatbin header: magic, version (2), header size (2), fat size (8)
        uint16_t header;
        uint64_t body;
        memcpy(&header, p + 6, 2);
        memcpy(&body, p + 8, 8);
        return header + body;
    }
    if (p[0] == 0x7f && p[1] == 'E') {  // ELF64: section headers end the file
        uint64_t shoff;
        uint16_t shentsize, shnum;
        memcpy(&shoff, p + 0x28, 8);
        memcpy(&shentsize, p + 0x3a, 2);
        memcpy(&shnum, p + 0x3c, 2);
        return shoff + (size_t)shentsize * shnum;
    }
    return strlen((const char*)p) + 1;
}

bool image_names(const std::vector<unsigned char>& img, const char* name) {
    size_t n = strlen(name);
    auto it = std::search(img.begin(), img.end(), name, name + n);
    while (it != img.end()) {
        // the name as a whole symbol: not a prefix of a longer identifier
        auto after = it + n;
        if (after == img.end() || !(isalnum(*after) || *after == '_')) return true;
        it = std::search(it + 1, img.end(), name, name + n);
    }
    return false;
}

}  // namespace

// =========================================================================================================
// The driver API. Each entry point follows its section of the CUDA Driver API reference (module named).
// =========================================================================================================

// -- Initialization, Version Management --
SIM_API CUresult CUDAAPI cuInit(unsigned int flags) {
    if (flags != 0) return CUDA_ERROR_INVALID_VALUE;
    std::lock_guard<std::mutex> lk(g_mu);
    if (g_initialized) return CUDA_SUCCESS;
    g_verbose = getenv("BIFUSE_SIM_VERBOSE") && strcmp(getenv("BIFUSE_SIM_VERBOSE"), "1") == 0;
    if (const char* m = getenv("BIFUSE_SIM_MEMORY_BYTES")) g_capacity = strtoull(m, nullptr, 10);
    if (const char* l = getenv("BIFUSE_SIM_LAUNCH_LATENCY_US")) g_latency = std::chrono::microseconds(atol(l));
    load_kernels();
    if (!getenv("BIFUSE_SIM_NO_FAULT_HANDLER")) install_fault_handler();
    g_initialized = true;
    return CUDA_SUCCESS;
}

SIM_API CUresult CUDAAPI cuDriverGetVersion(int* v) {
    if (!v) return CUDA_ERROR_INVALID_VALUE;
    *v = kDriverVersion;
    return CUDA_SUCCESS;
}

// -- Error Handling --
SIM_API CUresult CUDAAPI cuGetErrorName(CUresult error, const char** pStr) {
    if (!pStr) return CUDA_ERROR_INVALID_VALUE;
    for (const ErrorName& e : kErrors) if (e.code == error) { *pStr = e.name; return CUDA_SUCCESS; }
    *pStr = nullptr;
    return CUDA_ERROR_INVALID_VALUE;
}

SIM_API CUresult CUDAAPI cuGetErrorString(CUresult error, const char** pStr) {
    if (!pStr) return CUDA_ERROR_INVALID_VALUE;
    for (const ErrorName& e : kErrors) if (e.code == error) { *pStr = e.text; return CUDA_SUCCESS; }
    *pStr = nullptr;
    return CUDA_ERROR_INVALID_VALUE;
}

// -- Device Management --
SIM_API CUresult CUDAAPI cuDeviceGetCount(int* count) {
    if (!g_initialized) return CUDA_ERROR_NOT_INITIALIZED;
    if (!count) return CUDA_ERROR_INVALID_VALUE;
    *count = 1;
    return CUDA_SUCCESS;
}

SIM_API CUresult CUDAAPI cuDeviceGet(CUdevice* device, int ordinal) {
    if (!g_initialized) return CUDA_ERROR_NOT_INITIALIZED;
    if (!device) return CUDA_ERROR_INVALID_VALUE;
    if (ordinal != 0) return CUDA_ERROR_INVALID_DEVICE;
    *device = 0;
    return CUDA_SUCCESS;
}

SIM_API CUresult CUDAAPI cuDeviceGetName(char* name, int len, CUdevice dev) {
    if (!g_initialized) return CUDA_ERROR_NOT_INITIALIZED;
    if (dev != 0) return CUDA_ERROR_INVALID_DEVICE;
    if (!name || len <= 0) return CUDA_ERROR_INVALID_VALUE;
    snprintf(name, (size_t)len, "%s", kDeviceName);
    return CUDA_SUCCESS;
}

SIM_API CUresult CUDAAPI cuDeviceGetAttribute(int* pi, CUdevice_attribute attrib, CUdevice dev) {
    if (!g_initialized) return CUDA_ERROR_NOT_INITIALIZED;
    if (dev != 0) return CUDA_ERROR_INVALID_DEVICE;
    if (!pi || attrib < 1 || attrib >= CU_DEVICE_ATTRIBUTE_MAX) return CUDA_ERROR_INVALID_VALUE;
    bool known;
    *pi = device_attribute(attrib, &known);  // attributes not modelled read 0 ("not supported")
    return CUDA_SUCCESS;
}

SIM_API CUresult CUDAAPI cuDeviceTotalMem_v2(size_t* bytes, CUdevice dev) {
    if (!g_initialized) return CUDA_ERROR_NOT_INITIALIZED;
    if (dev != 0) return CUDA_ERROR_INVALID_DEVICE;
    if (!bytes) return CUDA_ERROR_INVALID_VALUE;
    *bytes = g_capacity;
    return CUDA_SUCCESS;
}

SIM_API CUresult CUDAAPI cuDeviceGetUuid_v2(CUuuid* uuid, CUdevice dev) {
    if (!g_initialized) return CUDA_ERROR_NOT_INITIALIZED;
    if (dev != 0) return CUDA_ERROR_INVALID_DEVICE;
    if (!uuid) return CUDA_ERROR_INVALID_VALUE;
    memcpy(uuid->bytes, "bifuse-cuda-sim0", 16);
    return CUDA_SUCCESS;
}

SIM_API CUresult CUDAAPI cuDeviceGetUuid(CUuuid* uuid, CUdevice dev) { return cuDeviceGetUuid_v2(uuid, dev); }

SIM_API CUresult CUDAAPI cuDeviceComputeCapability(int* major, int* minor, CUdevice dev) {
    if (!g_initialized) return CUDA_ERROR_NOT_INITIALIZED;
    if (dev != 0) return CUDA_ERROR_INVALID_DEVICE;
    if (!major || !minor) return CUDA_ERROR_INVALID_VALUE;
    *major = 9;
    *minor = 0;
    return CUDA_SUCCESS;
}

SIM_API CUresult CUDAAPI cuDeviceGetPCIBusId(char* pciBusId, int len, CUdevice dev) {
    if (!g_initialized) return CUDA_ERROR_NOT_INITIALIZED;
    if (dev != 0) return CUDA_ERROR_INVALID_DEVICE;
    if (!pciBusId || len <= 0) return CUDA_ERROR_INVALID_VALUE;
    snprintf(pciBusId, (size_t)len, "0000:1b:00.0");
    return CUDA_SUCCESS;
}

// -- Primary Context Management --
SIM_API CUresult CUDAAPI cuDevicePrimaryCtxRetain(CUcontext* pctx, CUdevice dev) {
    if (!g_initialized) return CUDA_ERROR_NOT_INITIALIZED;
    if (dev != 0) return CUDA_ERROR_INVALID_DEVICE;
    if (!pctx) return CUDA_ERROR_INVALID_VALUE;
    std::lock_guard<std::mutex> lk(g_mu);
    if (!g_primary.active) activate(&g_primary);
    g_primary.refcount++;
    *pctx = &g_primary;
    return CUDA_SUCCESS;
}

SIM_API CUresult CUDAAPI cuDevicePrimaryCtxRelease_v2(CUdevice dev) {
    if (!g_initialized) return CUDA_ERROR_NOT_INITIALIZED;
    if (dev != 0) return CUDA_ERROR_INVALID_DEVICE;
    std::unique_lock<std::mutex> lk(g_mu);
    if (g_primary.refcount <= 0) return CUDA_ERROR_INVALID_CONTEXT;
    if (--g_primary.refcount == 0) destroy_ctx(lk, &g_primary);
    reap_workers(lk);
    return CUDA_SUCCESS;
}

SIM_API CUresult CUDAAPI cuDevicePrimaryCtxRelease(CUdevice dev) { return cuDevicePrimaryCtxRelease_v2(dev); }

SIM_API CUresult CUDAAPI cuDevicePrimaryCtxReset_v2(CUdevice dev) {
    if (!g_initialized) return CUDA_ERROR_NOT_INITIALIZED;
    if (dev != 0) return CUDA_ERROR_INVALID_DEVICE;
    std::unique_lock<std::mutex> lk(g_mu);
    if (g_primary.active) {
        int refs = g_primary.refcount;
        destroy_ctx(lk, &g_primary);
        g_primary.refcount = refs;
        if (refs > 0) activate(&g_primary);
    }
    reap_workers(lk);
    return CUDA_SUCCESS;
}

SIM_API CUresult CUDAAPI cuDevicePrimaryCtxReset(CUdevice dev) { return cuDevicePrimaryCtxReset_v2(dev); }

SIM_API CUresult CUDAAPI cuDevicePrimaryCtxGetState(CUdevice dev, unsigned int* flags, int* active) {
    if (!g_initialized) return CUDA_ERROR_NOT_INITIALIZED;
    if (dev != 0) return CUDA_ERROR_INVALID_DEVICE;
    if (!flags || !active) return CUDA_ERROR_INVALID_VALUE;
    std::lock_guard<std::mutex> lk(g_mu);
    *flags = g_primary.flags;
    *active = g_primary.active ? 1 : 0;
    return CUDA_SUCCESS;
}

SIM_API CUresult CUDAAPI cuDevicePrimaryCtxSetFlags_v2(CUdevice dev, unsigned int flags) {
    if (!g_initialized) return CUDA_ERROR_NOT_INITIALIZED;
    if (dev != 0) return CUDA_ERROR_INVALID_DEVICE;
    std::lock_guard<std::mutex> lk(g_mu);
    g_primary.flags = flags;
    return CUDA_SUCCESS;
}

SIM_API CUresult CUDAAPI cuDevicePrimaryCtxSetFlags(CUdevice dev, unsigned int flags) { return cuDevicePrimaryCtxSetFlags_v2(dev, flags); }

// -- Context Management --
SIM_API CUresult CUDAAPI cuCtxSetCurrent(CUcontext ctx) {
    if (!g_initialized) return CUDA_ERROR_NOT_INITIALIZED;
    if (ctx && ctx != &g_primary) return CUDA_ERROR_INVALID_CONTEXT;
    if (ctx && !ctx->active) return CUDA_ERROR_CONTEXT_IS_DESTROYED;
    if (t_ctx_stack.empty()) {
        if (ctx) t_ctx_stack.push_back(ctx);
    } else if (ctx) {
        t_ctx_stack.back() = ctx;
    } else {
        t_ctx_stack.pop_back();
    }
    return CUDA_SUCCESS;
}

SIM_API CUresult CUDAAPI cuCtxGetCurrent(CUcontext* pctx) {
    if (!g_initialized) return CUDA_ERROR_NOT_INITIALIZED;
    if (!pctx) return CUDA_ERROR_INVALID_VALUE;
    *pctx = current();
    return CUDA_SUCCESS;
}

SIM_API CUresult CUDAAPI cuCtxPushCurrent_v2(CUcontext ctx) {
    if (!g_initialized) return CUDA_ERROR_NOT_INITIALIZED;
    if (ctx != &g_primary) return CUDA_ERROR_INVALID_CONTEXT;
    if (!ctx->active) return CUDA_ERROR_CONTEXT_IS_DESTROYED;
    t_ctx_stack.push_back(ctx);
    return CUDA_SUCCESS;
}

SIM_API CUresult CUDAAPI cuCtxPopCurrent_v2(CUcontext* pctx) {
    if (!g_initialized) return CUDA_ERROR_NOT_INITIALIZED;
    if (t_ctx_stack.empty()) return CUDA_ERROR_INVALID_CONTEXT;
    if (pctx) *pctx = t_ctx_stack.back();
    t_ctx_stack.pop_back();
    return CUDA_SUCCESS;
}

SIM_API CUresult CUDAAPI cuCtxGetDevice(CUdevice* device) {
    CUctx_st* c;
    if (CUresult r = need_ctx(&c, true)) return r;
    if (!device) return CUDA_ERROR_INVALID_VALUE;
    *device = 0;
    return CUDA_SUCCESS;
}

SIM_API CUresult CUDAAPI cuCtxGetFlags(unsigned int* flags) {
    CUctx_st* c;
    if (CUresult r = need_ctx(&c, true)) return r;
    if (!flags) return CUDA_ERROR_INVALID_VALUE;
    *flags = c->flags;
    return CUDA_SUCCESS;
}

SIM_API CUresult CUDAAPI cuCtxGetApiVersion(CUcontext ctx, unsigned int* version) {
    if (!g_initialized) return CUDA_ERROR_NOT_INITIALIZED;
    if (!version) return CUDA_ERROR_INVALID_VALUE;
    if (ctx && ctx != &g_primary) return CUDA_ERROR_INVALID_CONTEXT;
    *version = 13000;
    return CUDA_SUCCESS;
}

// Blocks until the context has completed all preceding work; returns the error of a failed one.
SIM_API CUresult CUDAAPI cuCtxSynchronize(void) {
    CUctx_st* c;
    std::unique_lock<std::mutex> lk(g_mu);
    if (CUresult r = need_ctx(&c, true)) return r;
    drain(lk, c);
    return c->sticky;
}

SIM_API CUresult CUDAAPI cuCtxGetLimit(size_t* pvalue, CUlimit limit) {
    CUctx_st* c;
    if (CUresult r = need_ctx(&c, true)) return r;
    if (!pvalue) return CUDA_ERROR_INVALID_VALUE;
    switch (limit) {
        case CU_LIMIT_STACK_SIZE: *pvalue = 1024; return CUDA_SUCCESS;
        case CU_LIMIT_PRINTF_FIFO_SIZE: *pvalue = 1 << 20; return CUDA_SUCCESS;
        case CU_LIMIT_MALLOC_HEAP_SIZE: *pvalue = 8 << 20; return CUDA_SUCCESS;
        default: return CUDA_ERROR_UNSUPPORTED_LIMIT;
    }
}

SIM_API CUresult CUDAAPI cuCtxGetStreamPriorityRange(int* least, int* greatest) {
    CUctx_st* c;
    if (CUresult r = need_ctx(&c, true)) return r;
    if (least) *least = 0;
    if (greatest) *greatest = -5;
    return CUDA_SUCCESS;
}

SIM_API CUresult CUDAAPI cuCtxGetCacheConfig(CUfunc_cache* config) {
    CUctx_st* c;
    if (CUresult r = need_ctx(&c, true)) return r;
    if (!config) return CUDA_ERROR_INVALID_VALUE;
    *config = CU_FUNC_CACHE_PREFER_NONE;
    return CUDA_SUCCESS;
}

SIM_API CUresult CUDAAPI cuCtxSetCacheConfig(CUfunc_cache config) {
    CUctx_st* c;
    if (CUresult r = need_ctx(&c, true)) return r;
    (void)config;
    return CUDA_SUCCESS;
}

// -- Memory Management --
SIM_API CUresult CUDAAPI cuMemGetInfo_v2(size_t* free, size_t* total) {
    CUctx_st* c;
    std::lock_guard<std::mutex> lk(g_mu);
    if (CUresult r = need_ctx(&c, true)) return r;
    if (!free || !total) return CUDA_ERROR_INVALID_VALUE;
    *total = g_capacity;
    *free = g_capacity - std::min(g_capacity, c->used);
    return CUDA_SUCCESS;
}

// Device memory is accounted at the granularity the driver rounds allocations to (512 bytes here).
size_t accounted(size_t bytes) { return round_up(bytes, 512); }

SIM_API CUresult CUDAAPI cuMemAlloc_v2(CUdeviceptr* dptr, size_t bytesize) {
    CUctx_st* c;
    std::lock_guard<std::mutex> lk(g_mu);
    if (CUresult r = need_ctx(&c)) return fail(r, "cuMemAlloc", "no usable context");
    if (!dptr) return CUDA_ERROR_INVALID_VALUE;
    if (bytesize == 0) return fail(CUDA_ERROR_INVALID_VALUE, "cuMemAlloc", "bytesize 0");
    if (bytesize > g_capacity || c->used + accounted(bytesize) > g_capacity) {
        return fail(CUDA_ERROR_OUT_OF_MEMORY, "cuMemAlloc", "simulated capacity exhausted");
    }
    Alloc a;
    if (!make_alloc(bytesize, &a)) return fail(CUDA_ERROR_OUT_OF_MEMORY, "cuMemAlloc", "host mmap failed");
    a.ctx = c;
    a.host = false;
    g_allocs[a.data] = a;
    c->used += accounted(bytesize);
    *dptr = (CUdeviceptr)a.data;
    return CUDA_SUCCESS;
}

CUresult free_alloc(uintptr_t p, bool host, const char* call) {
    CUctx_st* c;
    std::unique_lock<std::mutex> lk(g_mu);
    if (CUresult r = need_ctx(&c, true)) return r;
    if (p == 0) return CUDA_SUCCESS;
    auto it = g_allocs.find(p);
    if (it == g_allocs.end() || it->second.host != host || it->second.ctx != c) {
        return fail(CUDA_ERROR_INVALID_VALUE, call, "not the start of a live allocation (unknown or already freed)");
    }
    // Freeing synchronizes: work already queued that uses the memory finishes first.
    drain(lk, c);
    it = g_allocs.find(p);
    if (it == g_allocs.end()) return fail(CUDA_ERROR_INVALID_VALUE, call, "freed concurrently");
    Alloc a = it->second;
    long where;
    CUresult result = c->sticky;
    if (!host && !guard_intact(a, kPage, &where)) {
        logf("%s: the %zu-byte buffer at 0x%lx was overrun (byte %ld %s its end): CUDA_ERROR_ILLEGAL_ADDRESS", call, a.size,
             (unsigned long)p, where, where < 0 ? "before" : "past");
        if (c->sticky == CUDA_SUCCESS) c->sticky = CUDA_ERROR_ILLEGAL_ADDRESS;
        result = CUDA_ERROR_ILLEGAL_ADDRESS;
    }
    munmap(a.base, a.mapped);
    g_allocs.erase(it);
    if (!host) c->used -= accounted(a.size);
    return result;
}

SIM_API CUresult CUDAAPI cuMemFree_v2(CUdeviceptr dptr) { return free_alloc((uintptr_t)dptr, false, "cuMemFree"); }

SIM_API CUresult CUDAAPI cuMemAllocHost_v2(void** pp, size_t bytesize) {
    CUctx_st* c;
    std::lock_guard<std::mutex> lk(g_mu);
    if (CUresult r = need_ctx(&c)) return r;
    if (!pp || bytesize == 0) return CUDA_ERROR_INVALID_VALUE;
    Alloc a;
    if (!make_alloc(bytesize, &a)) return CUDA_ERROR_OUT_OF_MEMORY;
    a.ctx = c;
    a.host = true;
    g_allocs[a.data] = a;
    *pp = (void*)a.data;
    return CUDA_SUCCESS;
}

SIM_API CUresult CUDAAPI cuMemHostAlloc(void** pp, size_t bytesize, unsigned int flags) {
    (void)flags;
    return cuMemAllocHost_v2(pp, bytesize);
}

SIM_API CUresult CUDAAPI cuMemFreeHost(void* p) { return free_alloc((uintptr_t)p, true, "cuMemFreeHost"); }

SIM_API CUresult CUDAAPI cuMemHostGetDevicePointer_v2(CUdeviceptr* pdptr, void* p, unsigned int flags) {
    CUctx_st* c;
    if (CUresult r = need_ctx(&c)) return r;
    if (!pdptr || flags != 0) return CUDA_ERROR_INVALID_VALUE;
    if (!pinned(p, 1)) return CUDA_ERROR_INVALID_VALUE;
    *pdptr = (CUdeviceptr)p;  // unified addressing: the host address is the device address
    return CUDA_SUCCESS;
}

SIM_API CUresult CUDAAPI cuMemHostRegister_v2(void* p, size_t bytesize, unsigned int flags) {
    CUctx_st* c;
    std::lock_guard<std::mutex> lk(g_mu);
    if (CUresult r = need_ctx(&c)) return r;
    (void)flags;
    if (!p || bytesize == 0) return CUDA_ERROR_INVALID_VALUE;
    if (is_pinned_host(p, 1)) return CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED;
    g_registered[(uintptr_t)p] = bytesize;
    return CUDA_SUCCESS;
}

SIM_API CUresult CUDAAPI cuMemHostUnregister(void* p) {
    CUctx_st* c;
    std::lock_guard<std::mutex> lk(g_mu);
    if (CUresult r = need_ctx(&c)) return r;
    if (!g_registered.erase((uintptr_t)p)) return CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED;
    return CUDA_SUCCESS;
}

SIM_API CUresult CUDAAPI cuMemGetAddressRange_v2(CUdeviceptr* pbase, size_t* psize, CUdeviceptr dptr) {
    CUctx_st* c;
    std::lock_guard<std::mutex> lk(g_mu);
    if (CUresult r = need_ctx(&c)) return r;
    const Alloc* a = find_alloc((uintptr_t)dptr, 0);
    if (!a || a->host) return CUDA_ERROR_NOT_FOUND;
    if (pbase) *pbase = (CUdeviceptr)a->data;
    if (psize) *psize = a->size;
    return CUDA_SUCCESS;
}

SIM_API CUresult CUDAAPI cuPointerGetAttribute(void* data, CUpointer_attribute attribute, CUdeviceptr ptr) {
    CUctx_st* c;
    std::lock_guard<std::mutex> lk(g_mu);
    if (CUresult r = need_ctx(&c)) return r;
    if (!data) return CUDA_ERROR_INVALID_VALUE;
    const Alloc* a = find_alloc((uintptr_t)ptr, 0);
    if (!a) return CUDA_ERROR_INVALID_VALUE;
    switch (attribute) {
        case CU_POINTER_ATTRIBUTE_CONTEXT: *(CUcontext*)data = a->ctx; return CUDA_SUCCESS;
        case CU_POINTER_ATTRIBUTE_MEMORY_TYPE:
            *(unsigned*)data = a->host ? CU_MEMORYTYPE_HOST : CU_MEMORYTYPE_DEVICE;
            return CUDA_SUCCESS;
        case CU_POINTER_ATTRIBUTE_DEVICE_POINTER: *(CUdeviceptr*)data = ptr; return CUDA_SUCCESS;
        case CU_POINTER_ATTRIBUTE_HOST_POINTER:
            if (!a->host) return CUDA_ERROR_INVALID_VALUE;
            *(void**)data = (void*)ptr;
            return CUDA_SUCCESS;
        case CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL: *(int*)data = 0; return CUDA_SUCCESS;
        case CU_POINTER_ATTRIBUTE_RANGE_START_ADDR: *(CUdeviceptr*)data = (CUdeviceptr)a->data; return CUDA_SUCCESS;
        case CU_POINTER_ATTRIBUTE_RANGE_SIZE: *(size_t*)data = a->size; return CUDA_SUCCESS;
        case CU_POINTER_ATTRIBUTE_IS_MANAGED: *(unsigned*)data = 0; return CUDA_SUCCESS;
        default: return CUDA_ERROR_INVALID_VALUE;
    }
}

// Synchronous copies and memsets go through the legacy default stream; the host-side waiting of each
// follows "API synchronization behavior".
SIM_API CUresult CUDAAPI cuMemcpyHtoD_v2(CUdeviceptr dst, const void* src, size_t n) { return copy_htod(dst, src, n, nullptr, "cuMemcpyHtoD"); }
SIM_API CUresult CUDAAPI cuMemcpyDtoH_v2(void* dst, CUdeviceptr src, size_t n) { return copy_dtoh(dst, src, n, nullptr, false, "cuMemcpyDtoH"); }
SIM_API CUresult CUDAAPI cuMemcpyDtoD_v2(CUdeviceptr dst, CUdeviceptr src, size_t n) { return copy_dtod(dst, src, n, nullptr, "cuMemcpyDtoD"); }
SIM_API CUresult CUDAAPI cuMemcpy(CUdeviceptr dst, CUdeviceptr src, size_t n) { return copy_any(dst, src, n, nullptr, false, "cuMemcpy"); }
SIM_API CUresult CUDAAPI cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void* src, size_t n, CUstream s) { return copy_htod(dst, src, n, s, "cuMemcpyHtoDAsync"); }
SIM_API CUresult CUDAAPI cuMemcpyDtoHAsync_v2(void* dst, CUdeviceptr src, size_t n, CUstream s) { return copy_dtoh(dst, src, n, s, true, "cuMemcpyDtoHAsync"); }
SIM_API CUresult CUDAAPI cuMemcpyDtoDAsync_v2(CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream s) { return copy_dtod(dst, src, n, s, "cuMemcpyDtoDAsync"); }
SIM_API CUresult CUDAAPI cuMemcpyAsync(CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream s) { return copy_any(dst, src, n, s, true, "cuMemcpyAsync"); }
SIM_API CUresult CUDAAPI cuMemsetD8_v2(CUdeviceptr d, unsigned char v, size_t n) { return memset_n<unsigned char>(d, v, n, nullptr, "cuMemsetD8"); }
SIM_API CUresult CUDAAPI cuMemsetD16_v2(CUdeviceptr d, unsigned short v, size_t n) { return memset_n<unsigned short>(d, v, n, nullptr, "cuMemsetD16"); }
SIM_API CUresult CUDAAPI cuMemsetD32_v2(CUdeviceptr d, unsigned int v, size_t n) { return memset_n<unsigned int>(d, v, n, nullptr, "cuMemsetD32"); }
SIM_API CUresult CUDAAPI cuMemsetD8Async(CUdeviceptr d, unsigned char v, size_t n, CUstream s) { return memset_n<unsigned char>(d, v, n, s, "cuMemsetD8Async"); }
SIM_API CUresult CUDAAPI cuMemsetD16Async(CUdeviceptr d, unsigned short v, size_t n, CUstream s) { return memset_n<unsigned short>(d, v, n, s, "cuMemsetD16Async"); }
SIM_API CUresult CUDAAPI cuMemsetD32Async(CUdeviceptr d, unsigned int v, size_t n, CUstream s) { return memset_n<unsigned int>(d, v, n, s, "cuMemsetD32Async"); }

// -- Stream Management --
SIM_API CUresult CUDAAPI cuStreamCreate(CUstream* phStream, unsigned int flags) {
    CUctx_st* c;
    std::lock_guard<std::mutex> lk(g_mu);
    if (CUresult r = need_ctx(&c)) return r;
    if (!phStream || (flags & ~CU_STREAM_NON_BLOCKING)) return CUDA_ERROR_INVALID_VALUE;
    auto s = new_stream(c, flags, false, false);
    c->streams.insert(s.get());
    *phStream = new CUstream_st{s};
    g_stream_handles.insert(*phStream);
    return CUDA_SUCCESS;
}

SIM_API CUresult CUDAAPI cuStreamCreateWithPriority(CUstream* phStream, unsigned int flags, int priority) {
    CUresult r = cuStreamCreate(phStream, flags);
    if (r == CUDA_SUCCESS) (*phStream)->s->priority = std::clamp(priority, -5, 0);
    return r;
}

// "In case the device is still doing work in the stream hStream when cuStreamDestroy() is called, the
// function will return immediately and the resources associated with hStream will be released
// automatically once the device has completed all work in hStream."
SIM_API CUresult CUDAAPI cuStreamDestroy_v2(CUstream h) {
    CUctx_st* c;
    std::unique_lock<std::mutex> lk(g_mu);
    if (CUresult r = need_ctx(&c, true)) return r;
    if (!g_stream_handles.count(h) || !c->streams.count(h->s.get())) return CUDA_ERROR_INVALID_HANDLE;
    std::shared_ptr<Stream> s = h->s;
    c->streams.erase(s.get());
    g_stream_handles.erase(h);
    delete h;
    stop_stream(lk, s, false);
    return CUDA_SUCCESS;
}

SIM_API CUresult CUDAAPI cuStreamSynchronize(CUstream h) {
    CUctx_st* c;
    std::unique_lock<std::mutex> lk(g_mu);
    if (CUresult r = need_ctx(&c, true)) return r;
    std::shared_ptr<Stream> s;
    if (CUresult r = resolve(c, h, &s)) return r;
    wait_for(lk, s.get(), s->enqueued);
    CUresult sticky = c->sticky;
    reap_workers(lk);
    return sticky;
}

SIM_API CUresult CUDAAPI cuStreamQuery(CUstream h) {
    CUctx_st* c;
    std::lock_guard<std::mutex> lk(g_mu);
    if (CUresult r = need_ctx(&c, true)) return r;
    std::shared_ptr<Stream> s;
    if (CUresult r = resolve(c, h, &s)) return r;
    if (c->sticky) return c->sticky;
    return s->completed >= s->enqueued ? CUDA_SUCCESS : CUDA_ERROR_NOT_READY;
}

SIM_API CUresult CUDAAPI cuStreamGetFlags(CUstream h, unsigned int* flags) {
    CUctx_st* c;
    std::lock_guard<std::mutex> lk(g_mu);
    if (CUresult r = need_ctx(&c, true)) return r;
    std::shared_ptr<Stream> s;
    if (CUresult r = resolve(c, h, &s)) return r;
    if (!flags) return CUDA_ERROR_INVALID_VALUE;
    *flags = s->flags;
    return CUDA_SUCCESS;
}

SIM_API CUresult CUDAAPI cuStreamGetPriority(CUstream h, int* priority) {
    CUctx_st* c;
    std::lock_guard<std::mutex> lk(g_mu);
    if (CUresult r = need_ctx(&c, true)) return r;
    std::shared_ptr<Stream> s;
    if (CUresult r = resolve(c, h, &s)) return r;
    if (!priority) return CUDA_ERROR_INVALID_VALUE;
    *priority = s->priority;
    return CUDA_SUCCESS;
}

SIM_API CUresult CUDAAPI cuStreamGetCtx(CUstream h, CUcontext* pctx) {
    CUctx_st* c;
    std::lock_guard<std::mutex> lk(g_mu);
    if (CUresult r = need_ctx(&c, true)) return r;
    std::shared_ptr<Stream> s;
    if (CUresult r = resolve(c, h, &s)) return r;
    if (!pctx) return CUDA_ERROR_INVALID_VALUE;
    *pctx = s->ctx;
    return CUDA_SUCCESS;
}

SIM_API CUresult CUDAAPI cuLaunchHostFunc(CUstream h, CUhostFn fn, void* userData) {
    if (!fn) return CUDA_ERROR_INVALID_VALUE;
    return enqueue(h, "cuLaunchHostFunc", [=] { fn(userData); return CUDA_SUCCESS; }, false, "cuLaunchHostFunc");
}

SIM_API CUresult CUDAAPI cuStreamAddCallback(CUstream h, CUstreamCallback cb, void* userData, unsigned int flags) {
    if (!cb || flags != 0) return CUDA_ERROR_INVALID_VALUE;
    return enqueue(h, "cuStreamAddCallback", [=] { cb(h, CUDA_SUCCESS, userData); return CUDA_SUCCESS; }, false, "cuStreamAddCallback");
}

// -- Event Management --
SIM_API CUresult CUDAAPI cuEventCreate(CUevent* ph, unsigned int flags) {
    CUctx_st* c;
    std::lock_guard<std::mutex> lk(g_mu);
    if (CUresult r = need_ctx(&c)) return r;
    if (!ph || (flags & ~(CU_EVENT_BLOCKING_SYNC | CU_EVENT_DISABLE_TIMING | CU_EVENT_INTERPROCESS))) return CUDA_ERROR_INVALID_VALUE;
    CUevent e = new CUevent_st{c, flags, nullptr, 0, false, {}};
    c->events.insert(e);
    *ph = e;
    return CUDA_SUCCESS;
}

SIM_API CUresult CUDAAPI cuEventRecord(CUevent e, CUstream h) {
    CUctx_st* c;
    std::lock_guard<std::mutex> lk(g_mu);
    if (CUresult r = need_ctx(&c)) return r;
    if (!c->events.count(e)) return CUDA_ERROR_INVALID_HANDLE;
    std::shared_ptr<Stream> s;
    if (CUresult r = resolve(c, h, &s)) return r;
    Work w;
    w.what = "cuEventRecord";
    w.run = [e] {
        e->when = Clock::now();
        e->done_time_valid = true;
        return CUDA_SUCCESS;
    };
    e->done_time_valid = false;
    e->stream = s;
    e->seq = enqueue_locked(s, std::move(w));
    return CUDA_SUCCESS;
}

SIM_API CUresult CUDAAPI cuEventRecordWithFlags(CUevent e, CUstream h, unsigned int flags) {
    if (flags != 0) return CUDA_ERROR_NOT_SUPPORTED;
    return cuEventRecord(e, h);
}

SIM_API CUresult CUDAAPI cuEventQuery(CUevent e) {
    CUctx_st* c;
    std::lock_guard<std::mutex> lk(g_mu);
    if (CUresult r = need_ctx(&c, true)) return r;
    if (!c->events.count(e)) return CUDA_ERROR_INVALID_HANDLE;
    if (!e->stream) return CUDA_SUCCESS;
    return e->stream->completed >= e->seq ? CUDA_SUCCESS : CUDA_ERROR_NOT_READY;
}

SIM_API CUresult CUDAAPI cuEventSynchronize(CUevent e) {
    CUctx_st* c;
    std::unique_lock<std::mutex> lk(g_mu);
    if (CUresult r = need_ctx(&c, true)) return r;
    if (!c->events.count(e)) return CUDA_ERROR_INVALID_HANDLE;
    if (e->stream) wait_for(lk, e->stream.get(), e->seq);
    return c->sticky;
}

// Milliseconds between two completed events, both recorded with timing enabled.
SIM_API CUresult CUDAAPI cuEventElapsedTime_v2(float* ms, CUevent start, CUevent end) {
    CUctx_st* c;
    std::lock_guard<std::mutex> lk(g_mu);
    if (CUresult r = need_ctx(&c, true)) return r;
    if (!ms) return CUDA_ERROR_INVALID_VALUE;
    if (!c->events.count(start) || !c->events.count(end)) return CUDA_ERROR_INVALID_HANDLE;
    if ((start->flags | end->flags) & CU_EVENT_DISABLE_TIMING) return CUDA_ERROR_INVALID_HANDLE;
    if (!start->stream || !end->stream) return CUDA_ERROR_INVALID_HANDLE;
    if (!start->done_time_valid || !end->done_time_valid) return CUDA_ERROR_NOT_READY;
    *ms = std::chrono::duration<float, std::milli>(end->when - start->when).count();
    return CUDA_SUCCESS;
}

SIM_API CUresult CUDAAPI cuEventElapsedTime(float* ms, CUevent start, CUevent end) { return cuEventElapsedTime_v2(ms, start, end); }

SIM_API CUresult CUDAAPI cuEventDestroy_v2(CUevent e) {
    CUctx_st* c;
    std::lock_guard<std::mutex> lk(g_mu);
    if (CUresult r = need_ctx(&c, true)) return r;
    if (!c->events.erase(e)) return CUDA_ERROR_INVALID_HANDLE;
    // A pending record still refers to it: keep the object (a few bytes) rather than free under it.
    if (e->stream && e->stream->completed < e->seq) return CUDA_SUCCESS;
    delete e;
    return CUDA_SUCCESS;
}

SIM_API CUresult CUDAAPI cuStreamWaitEvent(CUstream h, CUevent e, unsigned int flags) {
    CUctx_st* c;
    std::lock_guard<std::mutex> lk(g_mu);
    if (CUresult r = need_ctx(&c)) return r;
    if (!c->events.count(e)) return CUDA_ERROR_INVALID_HANDLE;
    std::shared_ptr<Stream> s;
    if (CUresult r = resolve(c, h, &s)) return r;
    (void)flags;
    Work w;
    w.what = "cuStreamWaitEvent";
    w.run = [] { return CUDA_SUCCESS; };
    if (e->stream) w.deps.emplace_back(e->stream, e->seq);
    enqueue_locked(s, std::move(w));
    return CUDA_SUCCESS;
}

// -- Module Management --
CUresult load_module(CUmodule* module, const void* image, const char* call) {
    CUctx_st* c;
    std::lock_guard<std::mutex> lk(g_mu);
    if (CUresult r = need_ctx(&c)) return r;
    if (!module || !image) return CUDA_ERROR_INVALID_VALUE;
    // A fatbin's and an ELF cubin's headers hold 8-byte fields read in place: an image that is only
    // 4-byte aligned (a Java array's payload under compact object headers) is refused here, so that
    // bifuse's copy into an aligned native buffer is what every test runs.
    if (reinterpret_cast<uintptr_t>(image) % 8 != 0 && static_cast<const char*>(image)[0] != '.' && static_cast<const char*>(image)[0] != '/')
        return fail(CUDA_ERROR_INVALID_IMAGE, call, "the image is not 8-byte aligned");
    if (!plausible_image(image)) return fail(CUDA_ERROR_INVALID_IMAGE, call, "not a fatbin, cubin or PTX image");
    if (!g_kernels.table) {
        logf("%s: %s", call, g_kernels.why.c_str());
        return CUDA_ERROR_NO_BINARY_FOR_GPU;
    }
    auto m = new CUmod_st;
    m->ctx = c;
    const unsigned char* p = (const unsigned char*)image;
    m->image.assign(p, p + image_size(image));
    c->modules.insert(m);
    *module = m;
    return CUDA_SUCCESS;
}

SIM_API CUresult CUDAAPI cuModuleLoadData(CUmodule* module, const void* image) { return load_module(module, image, "cuModuleLoadData"); }

SIM_API CUresult CUDAAPI cuModuleLoadDataEx(CUmodule* module, const void* image, unsigned int n, CUjit_option* o, void** v) {
    (void)n; (void)o; (void)v;
    return load_module(module, image, "cuModuleLoadDataEx");
}

SIM_API CUresult CUDAAPI cuModuleLoadFatBinary(CUmodule* module, const void* fatCubin) { return load_module(module, fatCubin, "cuModuleLoadFatBinary"); }

SIM_API CUresult CUDAAPI cuModuleLoad(CUmodule* module, const char* fname) {
    if (!fname) return CUDA_ERROR_INVALID_VALUE;
    FILE* f = fopen(fname, "rb");
    if (!f) return CUDA_ERROR_FILE_NOT_FOUND;
    std::vector<unsigned char> bytes;
    unsigned char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) bytes.insert(bytes.end(), buf, buf + n);
    fclose(f);
    bytes.push_back(0);
    return load_module(module, bytes.data(), "cuModuleLoad");
}

SIM_API CUresult CUDAAPI cuModuleUnload(CUmodule m) {
    CUctx_st* c;
    std::unique_lock<std::mutex> lk(g_mu);
    if (CUresult r = need_ctx(&c, true)) return r;
    if (!c->modules.count(m)) return CUDA_ERROR_INVALID_HANDLE;
    drain(lk, c);  // launches of its functions may still be queued
    c->modules.erase(m);
    delete m;
    return CUDA_SUCCESS;
}

SIM_API CUresult CUDAAPI cuModuleGetFunction(CUfunction* hfunc, CUmodule m, const char* name) {
    CUctx_st* c;
    std::lock_guard<std::mutex> lk(g_mu);
    if (CUresult r = need_ctx(&c)) return r;
    if (!hfunc || !name) return CUDA_ERROR_INVALID_VALUE;
    if (!c->modules.count(m)) return CUDA_ERROR_INVALID_HANDLE;
    auto it = m->functions.find(name);
    if (it == m->functions.end()) {
        const bifuse_sim_kernel* k = find_kernel(name);
        if (!k) return fail(CUDA_ERROR_NOT_FOUND, "cuModuleGetFunction", "no such kernel in the kernel library");
        if (!image_names(m->image, name)) return fail(CUDA_ERROR_NOT_FOUND, "cuModuleGetFunction", "the module image does not contain it");
        int stat = std::max(0, k->static_shared_bytes);
        auto f = std::make_unique<CUfunc_st>(CUfunc_st{k, m, kSharedPerBlock - stat});
        it = m->functions.emplace(name, std::move(f)).first;
    }
    *hfunc = it->second.get();
    return CUDA_SUCCESS;
}

SIM_API CUresult CUDAAPI cuModuleGetGlobal_v2(CUdeviceptr* dptr, size_t* bytes, CUmodule m, const char* name) {
    (void)dptr; (void)bytes; (void)m; (void)name;
    return CUDA_ERROR_NOT_FOUND;  // cuda/*.cu has no __device__ globals
}

// -- Execution Control --
bool valid_function(CUfunction f) {
    if (!f) return false;
    for (CUmodule m : g_primary.modules)
        for (auto& [n, fn] : m->functions)
            if (fn.get() == f) return true;
    return false;
}

// Threads per block the registers allow: registers are allocated per warp in units of 256.
int max_threads_for(const bifuse_sim_kernel* k) {
    if (k->registers <= 0) return kMaxThreadsPerBlock;
    int per_warp = (int)round_up((size_t)round_up((size_t)k->registers, 8) * 32, 256);
    int warps = kRegistersPerBlock / per_warp;
    return std::min(kMaxThreadsPerBlock, warps * 32);
}

SIM_API CUresult CUDAAPI cuFuncGetAttribute(int* pi, CUfunction_attribute attrib, CUfunction f) {
    CUctx_st* c;
    std::lock_guard<std::mutex> lk(g_mu);
    if (CUresult r = need_ctx(&c, true)) return r;
    if (!pi) return CUDA_ERROR_INVALID_VALUE;
    if (!valid_function(f)) return CUDA_ERROR_INVALID_HANDLE;
    const bifuse_sim_kernel* k = f->kernel;
    switch (attrib) {
        case CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK: *pi = max_threads_for(k); return CUDA_SUCCESS;
        case CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES: *pi = std::max(0, k->static_shared_bytes); return CUDA_SUCCESS;
        case CU_FUNC_ATTRIBUTE_CONST_SIZE_BYTES: *pi = 0; return CUDA_SUCCESS;
        case CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES: *pi = 0; return CUDA_SUCCESS;
        case CU_FUNC_ATTRIBUTE_NUM_REGS: *pi = std::max(0, k->registers); return CUDA_SUCCESS;
        case CU_FUNC_ATTRIBUTE_PTX_VERSION: *pi = 90; return CUDA_SUCCESS;
        case CU_FUNC_ATTRIBUTE_BINARY_VERSION: *pi = 90; return CUDA_SUCCESS;
        case CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES: *pi = f->max_dynamic_shared; return CUDA_SUCCESS;
        default: *pi = 0; return CUDA_SUCCESS;
    }
}

SIM_API CUresult CUDAAPI cuFuncSetAttribute(CUfunction f, CUfunction_attribute attrib, int value) {
    CUctx_st* c;
    std::lock_guard<std::mutex> lk(g_mu);
    if (CUresult r = need_ctx(&c, true)) return r;
    if (!valid_function(f)) return CUDA_ERROR_INVALID_HANDLE;
    if (attrib == CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES) {
        int stat = std::max(0, f->kernel->static_shared_bytes);
        if (value < 0 || value + stat > kSharedPerBlockOptin) return CUDA_ERROR_INVALID_VALUE;
        f->max_dynamic_shared = value;
        return CUDA_SUCCESS;
    }
    if (attrib == CU_FUNC_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT) return CUDA_SUCCESS;
    return CUDA_ERROR_INVALID_VALUE;
}

SIM_API CUresult CUDAAPI cuFuncSetCacheConfig(CUfunction f, CUfunc_cache config) {
    (void)config;
    std::lock_guard<std::mutex> lk(g_mu);
    return valid_function(f) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
}

// cuLaunchKernel: checks the launch as an H200 does, captures the arguments by the kernel's own
// parameter sizes (the driver copies them at launch), and queues the grid on the stream.
SIM_API CUresult CUDAAPI cuLaunchKernel(CUfunction f, unsigned int gx, unsigned int gy, unsigned int gz, unsigned int bx,
                                        unsigned int by, unsigned int bz, unsigned int sharedMemBytes, CUstream h,
                                        void** kernelParams, void** extra) {
    const bifuse_sim_kernel* k;
    int max_dynamic;
    {
        CUctx_st* c;
        std::lock_guard<std::mutex> lk(g_mu);
        if (CUresult r = need_ctx(&c)) return r;
        if (!valid_function(f)) return fail(CUDA_ERROR_INVALID_HANDLE, "cuLaunchKernel", "not a function of a loaded module");
        k = f->kernel;
        max_dynamic = f->max_dynamic_shared;
    }
    char why[256];
    if (gx < 1 || gy < 1 || gz < 1 || gx > kMaxGridX || gy > kMaxGridYZ || gz > kMaxGridYZ) {
        snprintf(why, sizeof why, "%s: grid (%u, %u, %u) outside (1..%u, 1..%u, 1..%u)", k->name, gx, gy, gz, kMaxGridX, kMaxGridYZ, kMaxGridYZ);
        return fail(CUDA_ERROR_INVALID_VALUE, "cuLaunchKernel", why);
    }
    unsigned long threads = (unsigned long)bx * by * bz;
    if (bx < 1 || by < 1 || bz < 1 || bx > (unsigned)kMaxBlockDimXY || by > (unsigned)kMaxBlockDimXY || bz > (unsigned)kMaxBlockDimZ ||
        threads > (unsigned long)kMaxThreadsPerBlock) {
        snprintf(why, sizeof why, "%s: block (%u, %u, %u) exceeds the device's limits", k->name, bx, by, bz);
        return fail(CUDA_ERROR_INVALID_VALUE, "cuLaunchKernel", why);
    }
    int stat = std::max(0, k->static_shared_bytes);
    if ((long)sharedMemBytes > (long)max_dynamic || stat + (long)sharedMemBytes > kSharedPerBlockOptin) {
        snprintf(why, sizeof why, "%s: %u bytes of dynamic shared memory + %d static exceed the %d allowed", k->name, sharedMemBytes, stat,
                 stat + max_dynamic);
        return fail(CUDA_ERROR_INVALID_VALUE, "cuLaunchKernel", why);
    }
    if ((long)threads > max_threads_for(k)) {
        snprintf(why, sizeof why, "%s: %lu threads x %d registers exceed the %d registers of a block", k->name, threads, k->registers,
                 kRegistersPerBlock);
        return fail(CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES, "cuLaunchKernel", why);
    }
    // The arguments, copied now by the sizes of the kernel's own C++ parameter types.
    auto args = std::make_shared<std::vector<std::vector<unsigned char>>>(k->param_count);
    if (kernelParams && extra) return fail(CUDA_ERROR_INVALID_VALUE, "cuLaunchKernel", "both kernelParams and extra");
    if (kernelParams) {
        for (int i = 0; i < k->param_count; ++i) {
            if (!kernelParams[i]) return fail(CUDA_ERROR_INVALID_VALUE, "cuLaunchKernel", "null kernelParams entry");
            const unsigned char* p = (const unsigned char*)kernelParams[i];
            (*args)[i].assign(p, p + k->param_sizes[i]);
        }
    } else if (extra) {
        // CU_LAUNCH_PARAM_BUFFER_POINTER / _SIZE: one buffer, each parameter at its type's alignment (a
        // by-value struct's: its widest member's).
        const unsigned char* buf = nullptr;
        size_t size = 0;
        bool have_size = false;
        for (void** e = extra; *e != CU_LAUNCH_PARAM_END; e += 2) {
            if (e[0] == CU_LAUNCH_PARAM_BUFFER_POINTER) buf = (const unsigned char*)e[1];
            else if (e[0] == CU_LAUNCH_PARAM_BUFFER_SIZE) { size = *(size_t*)e[1]; have_size = true; }
            else return fail(CUDA_ERROR_INVALID_VALUE, "cuLaunchKernel", "unknown extra option");
        }
        if (!buf || !have_size) return fail(CUDA_ERROR_INVALID_VALUE, "cuLaunchKernel", "extra without buffer and size");
        size_t off = 0;
        for (int i = 0; i < k->param_count; ++i) {
            size_t s = k->param_sizes[i], align = k->param_aligns ? k->param_aligns[i] : std::min<size_t>(s, 8);
            off = round_up(off, align);
            (*args)[i].assign(buf + off, buf + off + s);
            off += s;
        }
        if (off != size) {
            snprintf(why, sizeof why, "%s: argument buffer of %zu bytes, the kernel's parameters take %zu", k->name, size, off);
            return fail(CUDA_ERROR_INVALID_VALUE, "cuLaunchKernel", why);
        }
    } else if (k->param_count > 0) {
        return fail(CUDA_ERROR_INVALID_VALUE, "cuLaunchKernel", "no arguments for a kernel with parameters");
    }
    std::string name = k->name;
    return enqueue(h, k->name, [=]() -> CUresult {
        std::vector<void*> ptrs(args->size());
        for (size_t i = 0; i < args->size(); ++i) ptrs[i] = (*args)[i].data();
        int rc = k->launch_dynamic ? k->launch_dynamic(ptrs.data(), gx, gy, gz, bx, by, bz, sharedMemBytes)
                                   : k->launch(ptrs.data(), gx, gy, gz, bx, by, bz);
        CUresult result = CUDA_SUCCESS;
        if (rc != 0) {
            logf("%s failed: %s: CUDA_ERROR_LAUNCH_FAILED", name.c_str(), g_kernels.error ? g_kernels.error() : "?");
            result = CUDA_ERROR_LAUNCH_FAILED;
        }
        std::lock_guard<std::mutex> lk(g_mu);
        if (!check_guards(&g_primary, "kernel " + name)) result = CUDA_ERROR_ILLEGAL_ADDRESS;
        return result;
    }, false, "cuLaunchKernel", true);
}

// =========================================================================================================
// The simulator's private interface (sim_ext.h)
// =========================================================================================================
SIM_API CUresult bifuse_sim_enqueue(CUstream stream, const char* what, bifuse_sim_work_fn run, void* arg) {
    std::string name = what ? what : "library work";
    return enqueue(stream, name.c_str(), [=]() -> CUresult {
        CUresult r = run(arg);
        std::lock_guard<std::mutex> lk(g_mu);
        if (!check_guards(&g_primary, name)) r = CUDA_ERROR_ILLEGAL_ADDRESS;
        return r;
    }, false, name.c_str(), true, true);
}

SIM_API int bifuse_sim_discarding(void) { return t_discarding ? 1 : 0; }

SIM_API int bifuse_sim_is_device_range(CUdeviceptr address, size_t bytes) {
    std::lock_guard<std::mutex> lk(g_mu);
    return is_device(address, bytes) ? 1 : 0;
}

// A stand-in's argument errors (a CUBLAS_STATUS_ or CUFFT_ result, returned to the caller like any
// status) print only with BIFUSE_SIM_VERBOSE=1; what a GPU would raise as a device fault always prints.
SIM_API void bifuse_sim_log(const char* text) {
    if (!text) return;
    if (g_verbose || strstr(text, "CUDA_ERROR_")) logf("%s", text);
}

// What the Java side prints about the simulated device: the kernel library and how it was built.
SIM_API const char* bifuse_sim_describe(void) {
    static std::string s;
    std::lock_guard<std::mutex> lk(g_mu);
    if (!g_kernels.table) {
        s = g_kernels.why.empty() ? "kernel library not loaded (cuInit not called)" : g_kernels.why;
    } else {
        auto info = (const char* (*)())dlsym(g_kernels.handle, "bifuse_sim_kernels_build_info");
        s = g_kernels.path + " (" + std::to_string(g_kernels.count) + " kernels; " + (info ? info() : "no build info") + ")";
    }
    return s.c_str();
}
