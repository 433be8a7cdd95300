// Host shim for the device side of the CUDA runtime that cuda/*.cu use, for the simulated device
// (libbifuse_simkernels.so, native-build/sim/kernels.cpp). It replaces the std::thread shim of the
// retired per-operator emulation harnesses (native-build/emu, until issue 12), whose cases now run as
// the Java GPU tests on the simulated device.
//
// Found before the toolkit's <cuda_runtime.h>, so cuda/*.cu compile unchanged with g++ -std=c++20.
// Execution model:
//   * one block at a time in the whole process (every launch holds emu::launch_mutex(): __shared__
//     objects are static storage, and threadIdx/blockIdx/blockDim/gridDim plain globals);
//   * the threads of a block are fibers on the launching OS thread, each with its own 256 KiB stack
//     (mapped once, below a guard page, and reused). Fiber 0 runs until its next __syncthreads() (or
//     its return), then fiber 1, ...; when every live fiber has arrived, the barrier opens and the
//     round repeats. A legal schedule for correctly synchronized code that needs no OS threads (the
//     old std::thread shim kept a 2-core machine at a load average of ~200). Within
//     a barrier interval a thread sees the writes of lower-numbered threads and never those of
//     higher-numbered ones, so a missing barrier usually gives a wrong result;
//   * a fiber that returns leaves the barrier, and at the end of the block every thread must have
//     executed the same number of __syncthreads() (divergent barriers are undefined behaviour on the
//     device; reported as an error, once per launch);
//   * __shared__ puts a declaration into the ELF section "emu_shared", filled with 0xFF bytes (NaN
//     for float/double) before every block, so that a read of shared memory nobody wrote shows. The
//     fill is skipped when no thread of the blocks since the last fill reached a __shared__
//     declaration (see the macro), so elementwise kernels do not pay for it;
//   * race-check mode (BIFUSE_SIM_RACECHECK=1 at load, or emu::set_racecheck): every fiber of a
//     barrier interval runs against shared memory as it was when the interval began, its changes are
//     taken as a diff and merged at the barrier. Two threads changing the same byte in one interval
//     is reported as a write-write race naming kernel, block, threads and the __shared__ object; a
//     read of another thread's same-interval write sees the old (initially NaN) value, so a missing
//     barrier also becomes a wrong result (the poison is the word 0xFFFFA5A5 in this mode, see
//     poison_shared_racecheck). Not covered: global memory; a write that stores the value the byte
//     already had (invisible to a diff); reads, so a write-after-read hazard (a thread overwrites
//     what another still had to read) is hidden here and shown, if at all, by the normal schedule;
//     shared-memory atomics (none in cuda/*.cu today: one is reported as unsupported in this mode,
//     because per-fiber snapshots would lose the other threads' updates; supporting them means
//     logging each atomic as an operation and replaying the log at the merge). Cost: after every
//     run of a fiber that reached a __shared__ declaration, a compare of the part of the section
//     the kernel can reach (all of it but other kernels' own __shared__ objects).
// Errors are counted in emu::runtime_errors(), printed to stderr (unless emu::set_print_errors(false))
// and collected per launch for emu::run_grid's caller.
#pragma once

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>  // before the qualifier macros: libstdc++ spells __attribute__((__noinline__))
#include <mutex>
#include <string>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <cxxabi.h>
#include <elf.h>
#include <link.h>
#include <sys/mman.h>
#include <unistd.h>

#if defined(__SANITIZE_THREAD__)
// Fibers on one OS thread are invisible to TSan's happens-before model: use this shim's race-check
// mode for shared memory (global-memory races between threads need a GPU and compute-sanitizer).
#error "native-build/sim/cuda_runtime.h does not support -fsanitize=thread"
#endif
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define EMU_FIBER_ASAN 1
#else
#define EMU_FIBER_ASAN 0
#endif
#if defined(__x86_64__) && !defined(EMU_FIBER_UCONTEXT)
#define EMU_FIBER_X86_64 1
#else
#define EMU_FIBER_X86_64 0
#include <ucontext.h>
#endif

// ---- qualifiers -------------------------------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)  // a register-allocation hint for nvcc; the limits themselves are the driver's checks
// Besides the static object, a block-scope __shared__ declaration notes (an automatic object's constructor)
// that the running thread has reached it: only such a thread can hold a pointer into shared memory, so
// the race check diffs only those threads' runs, and a block where nobody reached one leaves the
// section clean (no poisoning before the next block). The price: a jump (goto, case label) past a
// __shared__ declaration does not compile. At namespace scope the note is a global whose constructor
// (at load, outside any block) turns both shortcuts off for good: any thread may touch such an object.
#define EMU_SHARED_CAT2(a, b) a##b
#define EMU_SHARED_CAT(a, b) EMU_SHARED_CAT2(a, b)
#define __shared__                                                     \
    ::emu::SharedNote EMU_SHARED_CAT(emu_shared_note_, __COUNTER__); \
    static __attribute__((section("emu_shared"), aligned(16), used))
// __restrict__ is a GNU C++ keyword already.

// ---- vector types -----------------------------------------------------------------------------------
struct uint3 { unsigned int x, y, z; };
struct dim3 {
    unsigned int x = 1, y = 1, z = 1;
    dim3() = default;
    constexpr dim3(unsigned int x_, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct alignas(8) float2 { float x, y; };
struct alignas(16) double2 { double x, y; };
static inline float2 make_float2(float x, float y) { return float2{x, y}; }
static inline double2 make_double2(double x, double y) { return double2{x, y}; }

// ---- built-in variables -----------------------------------------------------------------------------
// Plain globals, valid only under emu::launch_mutex(). The scheduler writes threadIdx before every
// switch into a fiber; __syncthreads() clobbers memory, so a kernel rereads it after a barrier.
inline uint3 threadIdx{0, 0, 0};
inline uint3 blockIdx{0, 0, 0};
inline dim3 blockDim{1, 1, 1};
inline dim3 gridDim{1, 1, 1};

// Bounds of the "emu_shared" section, defined by the linker when the section exists. Hidden, so that
// a shared library binds to its own section, not to one of the program that loads it.
extern "C" char __start_emu_shared[] __attribute__((weak, visibility("hidden")));
extern "C" char __stop_emu_shared[] __attribute__((weak, visibility("hidden")));

#if EMU_FIBER_X86_64
// bifuse_emu_switch(save, to): saves the callee-saved registers, MXCSR and the x87 control word on the
// current stack, stores the stack pointer in *save, and resumes the context whose stack pointer is `to`.
// A COMDAT group keeps one copy however many translation units include this header; the call is
// opaque to the compiler, so nothing is cached in registers across it.
extern "C" void bifuse_emu_switch(void** save, void* to) __attribute__((visibility("hidden")));
__asm__(
    ".pushsection .text.bifuse_emu_switch,\"axG\",@progbits,bifuse_emu_switch,comdat\n"
    ".weak bifuse_emu_switch\n"
    ".hidden bifuse_emu_switch\n"
    ".type bifuse_emu_switch,@function\n"
    "bifuse_emu_switch:\n"
    "  pushq %rbp\n"
    "  pushq %rbx\n"
    "  pushq %r12\n"
    "  pushq %r13\n"
    "  pushq %r14\n"
    "  pushq %r15\n"
    "  subq $8, %rsp\n"
    "  stmxcsr (%rsp)\n"
    "  fnstcw 4(%rsp)\n"
    "  movq %rsp, (%rdi)\n"
    "  movq %rsi, %rsp\n"
    "  ldmxcsr (%rsp)\n"
    "  fldcw 4(%rsp)\n"
    "  addq $8, %rsp\n"
    "  popq %r15\n"
    "  popq %r14\n"
    "  popq %r13\n"
    "  popq %r12\n"
    "  popq %rbx\n"
    "  popq %rbp\n"
    "  ret\n"
    ".size bifuse_emu_switch, .-bifuse_emu_switch\n"
    ".popsection\n");
#endif

namespace emu {

// ---- errors -------------------------------------------------------------------------------------------
inline std::atomic<long>& runtime_error_count() {
    static std::atomic<long> n{0};
    return n;
}
inline long runtime_errors() { return runtime_error_count().load(); }
inline std::atomic<bool>& print_errors_flag() {
    static std::atomic<bool> on{true};
    return on;
}
inline void set_print_errors(bool on) { print_errors_flag().store(on); }
// Where report_error also appends its message while a launch runs on this OS thread (fibers included).
inline thread_local std::string* error_capture = nullptr;

inline void report_error(const std::string& what) {
    runtime_error_count().fetch_add(1);
    if (error_capture) {
        if (!error_capture->empty()) *error_capture += "; ";
        *error_capture += what;
    }
    if (print_errors_flag().load()) {
        fprintf(stderr, "[emu] ERROR: %s\n", what.c_str());
        fflush(stderr);
    }
}

// ---- the process-wide launch lock and the mode switches -----------------------------------------------
inline std::mutex& launch_mutex() {
    static std::mutex m;
    return m;
}

inline bool racecheck_from_env() {
    const char* v = getenv("BIFUSE_SIM_RACECHECK");
    return v && *v && strcmp(v, "0") != 0;
}
inline std::atomic<bool>& racecheck_flag() {
    static std::atomic<bool> on{racecheck_from_env()};
    return on;
}
inline bool racecheck() { return racecheck_flag().load(); }
inline void set_racecheck(bool on) { racecheck_flag().store(on); }

// ---- shared memory --------------------------------------------------------------------------------------
inline char* shared_begin() { return __start_emu_shared; }
inline size_t shared_bytes() {
    char* begin = __start_emu_shared;
    char* end = __stop_emu_shared;
    return (begin && end && end > begin) ? (size_t)(end - begin) : 0;
}
inline void poison_shared() {
    if (size_t n = shared_bytes()) memset(shared_begin(), 0xFF, n);
}
// Race-check mode fills with the 32-bit word 0xFFFFA5A5 instead: still NaN as float and double, but
// -23131 as int, so that a kernel initializing an int array to -1 (all 0xFF bytes) changes the bytes
// and its writes show in the diff.
constexpr unsigned char kRacePoison[4] = {0xA5, 0xA5, 0xFF, 0xFF};
inline void poison_shared_racecheck() {
    char* p = shared_begin();
    const size_t n = shared_bytes();
    for (size_t k = 0; k < n; ++k) p[k] = (char)kRacePoison[k & 3];  // the section starts 16-aligned
}

// Dynamic shared memory (a kernel's `extern __shared__` array, spelled BF_DYNAMIC_SHARED in cuda/*.cu):
// one area of the sm_90 opt-in maximum, its first `dynamic_shared_size()` bytes (the launch's
// sharedMemBytes) NaN-filled before every block. It lies outside the "emu_shared" section, so the race
// check does not cover it (documented in native-build/sim/README.md); the normal schedule still shows a
// missing barrier as a read of poison or of a value not yet written.
constexpr size_t kDynamicSharedMax = 227 * 1024;
alignas(16) inline unsigned char dynamic_shared_area[kDynamicSharedMax];
inline size_t& dynamic_shared_size() {
    static size_t n = 0;
    return n;
}
inline void* dynamic_shared() { return dynamic_shared_area; }

namespace detail {

// The __shared__ objects of the "emu_shared" section by name, read from the ELF symbol table of the
// module that holds the section (only for messages; empty when the module is stripped).
struct SharedSymbol {
    size_t offset, size;
    std::string name;
};

inline int find_module(struct dl_phdr_info* info, size_t, void* data) {
    auto* out = static_cast<std::pair<std::string, uintptr_t>*>(data);
    const uintptr_t target = (uintptr_t)__start_emu_shared;
    for (int i = 0; i < info->dlpi_phnum; ++i) {
        const ElfW(Phdr)& ph = info->dlpi_phdr[i];
        const uintptr_t lo = info->dlpi_addr + ph.p_vaddr;
        if (ph.p_type == PT_LOAD && target >= lo && target < lo + ph.p_memsz) {
            out->first = info->dlpi_name && *info->dlpi_name ? info->dlpi_name : "/proc/self/exe";
            out->second = info->dlpi_addr;
            return 1;
        }
    }
    return 0;
}

inline std::vector<SharedSymbol> read_shared_symbols() {
    std::vector<SharedSymbol> out;
    const size_t n = shared_bytes();
    if (!n) return out;
    std::pair<std::string, uintptr_t> module{"", 0};
    if (!dl_iterate_phdr(find_module, &module)) return out;
    FILE* f = fopen(module.first.c_str(), "rb");
    if (!f) return out;
    std::vector<unsigned char> file;
    unsigned char buf[1 << 16];
    for (size_t got; (got = fread(buf, 1, sizeof buf, f)) > 0;) file.insert(file.end(), buf, buf + got);
    fclose(f);
    if (file.size() < sizeof(ElfW(Ehdr))) return out;
    ElfW(Ehdr) eh;
    memcpy(&eh, file.data(), sizeof eh);
    if (memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_shentsize != sizeof(ElfW(Shdr)) ||
        eh.e_shoff + (size_t)eh.e_shnum * sizeof(ElfW(Shdr)) > file.size())
        return out;
    std::vector<ElfW(Shdr)> sh(eh.e_shnum);
    memcpy(sh.data(), file.data() + eh.e_shoff, sh.size() * sizeof(ElfW(Shdr)));
    const uintptr_t lo = (uintptr_t)__start_emu_shared;
    for (const ElfW(Shdr)& s : sh) {
        if (s.sh_type != SHT_SYMTAB || s.sh_link >= sh.size()) continue;
        const ElfW(Shdr)& str = sh[s.sh_link];
        if (s.sh_offset + s.sh_size > file.size() || str.sh_offset + str.sh_size > file.size()) continue;
        for (size_t k = 0; k + sizeof(ElfW(Sym)) <= s.sh_size; k += sizeof(ElfW(Sym))) {
            ElfW(Sym) sym;
            memcpy(&sym, file.data() + s.sh_offset + k, sizeof sym);
            if (ELF64_ST_TYPE(sym.st_info) != STT_OBJECT || sym.st_name >= str.sh_size) continue;
            const uintptr_t at = module.second + sym.st_value;
            if (at < lo || at >= lo + n) continue;
            const char* raw = (const char*)file.data() + str.sh_offset + sym.st_name;
            int status = 0;
            char* dem = abi::__cxa_demangle(raw, nullptr, nullptr, &status);
            out.push_back({(size_t)(at - lo), (size_t)sym.st_size, status == 0 && dem ? dem : raw});
            free(dem);
        }
    }
    return out;
}

// "BYTE of __shared__ memory (bf_block_sum2<256>(double, double)::sa + 8)".
inline std::string describe_shared(size_t offset) {
    static const std::vector<SharedSymbol> symbols = read_shared_symbols();
    std::string s = "byte " + std::to_string(offset) + " of __shared__ memory";
    for (const SharedSymbol& sym : symbols)
        if (offset >= sym.offset && offset < sym.offset + (sym.size ? sym.size : 1))
            return s + " (" + sym.name + " + " + std::to_string(offset - sym.offset) + ")";
    return s;
}

// Names of the kernels (registered by expect_block and by the kernel library's table), so that the
// race check can leave out the __shared__ objects declared in the body of another kernel: a kernel
// cannot call a kernel, so it can never touch them.
inline std::vector<std::string>& kernel_names() {
    static std::vector<std::string> names;
    return names;
}

// The byte ranges of the section that kernel `name` can reach: all of it, less the objects whose
// enclosing function is another registered kernel (everything, when the symbol table is stripped).
inline std::vector<std::pair<size_t, size_t>> reachable_shared(const std::string& name) {
    static const std::vector<SharedSymbol> symbols = read_shared_symbols();
    std::vector<std::pair<size_t, size_t>> excluded;
    for (const SharedSymbol& sym : symbols) {
        const size_t colons = sym.name.rfind("::");
        if (colons == std::string::npos || !sym.size) continue;
        std::string fn = sym.name.substr(0, colons);
        fn = fn.substr(0, fn.find('('));
        if (fn == name) continue;
        for (const std::string& k : kernel_names())
            if (k == fn) {
                excluded.push_back({sym.offset, sym.offset + sym.size});
                break;
            }
    }
    std::sort(excluded.begin(), excluded.end());
    std::vector<std::pair<size_t, size_t>> ranges;
    size_t at = 0;
    for (const auto& e : excluded) {
        if (e.first > at) ranges.push_back({at, e.first});
        at = std::max(at, e.second);
    }
    if (at < shared_bytes()) ranges.push_back({at, shared_bytes()});
    return ranges;
}

inline std::string format_idx(uint3 v, const dim3& dims) {
    if (dims.y == 1 && dims.z == 1) return std::to_string(v.x);
    return "(" + std::to_string(v.x) + "," + std::to_string(v.y) + "," + std::to_string(v.z) + ")";
}

// ---- fibers -------------------------------------------------------------------------------------------
constexpr size_t kStackBytes = 256 * 1024;
constexpr unsigned kMaxThreads = 1024;

struct Fiber {
    char* base = nullptr;  // the mapping: a guard page, then the stack
    char* lo = nullptr;    // lowest usable stack address
    size_t size = 0;
#if EMU_FIBER_X86_64
    void* sp = nullptr;
#else
    ucontext_t uc;
#endif
    uint3 tid{0, 0, 0};
    long syncs = 0;
    bool done = false;
    bool shared_seen = false;  // reached a __shared__ declaration in this block
};

// The grid being run: under launch_mutex(), at most one exists at a time.
struct Sched {
    std::vector<Fiber*> fibers;   // stacks kept from launch to launch
    unsigned n = 0;                // fibers of the current block
    unsigned current = 0;
    bool in_block = false;
    bool shared_dirty = true;      // the section may differ from its poison (a thread reached a __shared__)
    bool racecheck_poison = false; // the poison in place is race-check mode's
    bool atomic_reported = false;  // this launch reported a shared-memory atomic in race-check mode
    bool namespace_shared = false; // a __shared__ object at namespace scope exists: no shortcuts
    void (*entry)(void*) = nullptr;
    void* arg = nullptr;
#if EMU_FIBER_X86_64
    void* sched_sp = nullptr;
#else
    ucontext_t sched_uc;
#endif
#if EMU_FIBER_ASAN
    void* sched_fake = nullptr;
    void* fiber_fake = nullptr;
    const void* sched_stack_lo = nullptr;
    size_t sched_stack_size = 0;
#endif
};
inline Sched& sched() {
    static Sched s;
    return s;
}

inline Fiber* new_fiber() {
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    void* m = mmap(nullptr, kStackBytes + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) return nullptr;
    mprotect(m, page, PROT_NONE);  // an overflow faults instead of corrupting the neighbouring stack
    Fiber* f = new Fiber;
    f->base = (char*)m;
    f->lo = (char*)m + page;
    f->size = kStackBytes;
    return f;
}

inline void free_fibers() {
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    for (Fiber* f : sched().fibers) {
        munmap(f->base, f->size + page);
        delete f;
    }
    sched().fibers.clear();
}

#if EMU_FIBER_ASAN
inline void asan_enter_fiber() {
    Sched& s = sched();
    __sanitizer_finish_switch_fiber(s.fiber_fake, &s.sched_stack_lo, &s.sched_stack_size);
}
inline void asan_leave_fiber(bool exiting) {
    Sched& s = sched();
    __sanitizer_start_switch_fiber(exiting ? nullptr : &s.fiber_fake, s.sched_stack_lo, s.sched_stack_size);
}
#endif

[[noreturn]] inline void fiber_main() {
    Sched& s = sched();
#if EMU_FIBER_ASAN
    s.fiber_fake = nullptr;
    asan_enter_fiber();
#endif
    s.entry(s.arg);
    Fiber* f = s.fibers[s.current];
    f->done = true;
#if EMU_FIBER_ASAN
    asan_leave_fiber(true);
#endif
#if EMU_FIBER_X86_64
    void* dead;
    bifuse_emu_switch(&dead, s.sched_sp);
#else
    setcontext(&s.sched_uc);
#endif
    __builtin_unreachable();
}

// Rewinds fiber f to the start of fiber_main.
inline void reset_fiber(Fiber* f) {
    f->syncs = 0;
    f->done = false;
    f->shared_seen = false;
#if EMU_FIBER_ASAN
    // The last run's frames never returned: their redzones are still poisoned.
    ASAN_UNPOISON_MEMORY_REGION(f->lo, f->size);
#endif
#if EMU_FIBER_X86_64
    uintptr_t* sp = (uintptr_t*)(((uintptr_t)(f->lo + f->size)) & ~(uintptr_t)15);
    *--sp = 0;                          // fiber_main is entered by `ret`: as after a call, rsp = 8 mod 16
    *--sp = (uintptr_t)&fiber_main;
    for (int r = 0; r < 6; ++r) *--sp = 0;  // rbp rbx r12 r13 r14 r15
    uint32_t mxcsr;
    uint16_t fpucw;
    __asm__ volatile("stmxcsr %0\n\tfnstcw %1" : "=m"(mxcsr), "=m"(fpucw));
    *--sp = (uintptr_t)mxcsr | ((uintptr_t)fpucw << 32);
    f->sp = sp;
#else
    getcontext(&f->uc);
    f->uc.uc_stack.ss_sp = f->lo;
    f->uc.uc_stack.ss_size = f->size;
    f->uc.uc_link = nullptr;
    makecontext(&f->uc, (void (*)())fiber_main, 0);
#endif
}

// Switches from the scheduler into fiber i until it reaches a barrier or returns.
inline void resume(unsigned i) {
    Sched& s = sched();
    Fiber* f = s.fibers[i];
    s.current = i;
    threadIdx = f->tid;
#if EMU_FIBER_ASAN
    __sanitizer_start_switch_fiber(&s.sched_fake, f->lo, f->size);
#endif
#if EMU_FIBER_X86_64
    bifuse_emu_switch(&s.sched_sp, f->sp);
#else
    swapcontext(&s.sched_uc, &f->uc);
#endif
#if EMU_FIBER_ASAN
    __sanitizer_finish_switch_fiber(s.sched_fake, nullptr, nullptr);
#endif
}

// From inside a fiber: back to the scheduler, which resumes this fiber when the barrier opens.
inline void yield_to_scheduler() {
    Sched& s = sched();
    Fiber* f = s.fibers[s.current];
#if EMU_FIBER_ASAN
    asan_leave_fiber(false);
#endif
#if EMU_FIBER_X86_64
    bifuse_emu_switch(&f->sp, s.sched_sp);
#else
    swapcontext(&f->uc, &s.sched_uc);
#endif
#if EMU_FIBER_ASAN
    asan_enter_fiber();
#endif
}

// ---- race check -----------------------------------------------------------------------------------------
struct RaceCheck {
    std::vector<unsigned char> snap, next;  // shared memory at the interval's start; merged result
    std::vector<int> owner;                 // per byte: the fiber that changed it in this interval, -1
    std::vector<size_t> touched;            // bytes with an owner, to reset
    size_t bytes = 0;
    bool snap_poisoned = false;             // snap holds nothing but the poison pattern
    // the current interval's first conflict
    long conflicts = 0;
    size_t first_offset = 0;
    int first_a = -1, first_b = -1;
    // per launch
    bool reported = false;
    long more_intervals = 0;
    const std::vector<std::pair<size_t, size_t>>* ranges = nullptr;  // what the kernel can reach
    std::map<std::string, std::vector<std::pair<size_t, size_t>>> ranges_by_kernel;

    void begin_launch(const char* kernel) {
        reported = false;
        more_intervals = 0;
        auto it = ranges_by_kernel.find(kernel);
        if (it == ranges_by_kernel.end()) it = ranges_by_kernel.emplace(kernel, reachable_shared(kernel)).first;
        ranges = &it->second;
    }
    // At a block's start, the section holds poison_shared_racecheck's pattern.
    void begin_block() {
        bytes = shared_bytes();
        if (snap.size() != bytes) {
            next.assign(bytes, 0);
            owner.assign(bytes, -1);  // kept all -1 between intervals by end_interval
            snap.resize(bytes);
            snap_poisoned = false;
        }
        if (!snap_poisoned) {
            for (size_t k = 0; k < bytes; ++k) snap[k] = kRacePoison[k & 3];
            snap_poisoned = true;
        }
        touched.clear();
        conflicts = 0;
    }
    // After fiber `who` yielded: take its changes into `next` and put back the interval's start.
    // memcmp over chunks first: most of what the kernel could reach it did not change.
    void after_fiber(int who) {
        unsigned char* mem = (unsigned char*)shared_begin();
        constexpr size_t kChunk = 256;
        for (const auto& [lo, hi] : *ranges) {
            for (size_t c = lo; c < hi; c += kChunk) {
                const size_t len = std::min(kChunk, hi - c);
                if (memcmp(mem + c, snap.data() + c, len) == 0) continue;
                // words stay aligned to the section (16-aligned); a range may start inside one
                for (size_t w = c; w < c + len;) {
                    const size_t end = std::min(c + len, (w & ~(size_t)3) + 4);
                    take_word(mem, w, end - w, who);
                    w = end;
                }
            }
        }
    }
    // Bytes [w, w + n) of one aligned word. On a conflict the later writer's whole word wins: a byte it
    // stored unchanged is invisible, and merging byte by byte would tear the value (an int index
    // assembled from two stores sends the kernel out of bounds before the race is reported).
    void take_word(unsigned char* mem, size_t w, size_t n, int who) {
        bool changed = false, clash = false;
        for (size_t k = w; k < w + n; ++k) {
            if (mem[k] == snap[k]) continue;
            changed = true;
            if (owner[k] >= 0 && owner[k] != who) {
                clash = true;
                if (conflicts++ == 0) {
                    first_offset = k;
                    first_a = owner[k];
                    first_b = who;
                }
            }
        }
        if (!changed) return;
        for (size_t k = w; k < w + n; ++k) {
            if (!clash && mem[k] == snap[k]) continue;
            if (owner[k] < 0) touched.push_back(k);
            owner[k] = who;
            next[k] = mem[k];
            mem[k] = snap[k];
        }
    }
    // At the barrier (or the block's end): the merged writes become everyone's shared memory.
    void end_interval(const char* kernel, long interval) {
        unsigned char* mem = (unsigned char*)shared_begin();
        if (!touched.empty()) snap_poisoned = false;
        for (size_t k : touched) {
            mem[k] = next[k];
            snap[k] = next[k];
            owner[k] = -1;
        }
        touched.clear();
        if (!conflicts) return;
        if (reported) {
            ++more_intervals;
        } else {
            reported = true;
            const Sched& s = sched();
            const uint3 b = blockIdx;
            report_error(std::string("racecheck: ") + kernel + " block " + format_idx(b, gridDim) +
                         ": shared-memory write-write race between barriers: threads " + format_idx(s.fibers[first_a]->tid, blockDim) +
                         " and " + format_idx(s.fibers[first_b]->tid, blockDim) + " both wrote " + describe_shared(first_offset) +
                         (interval == 0 ? std::string(" before the first __syncthreads()")
                                        : " after __syncthreads() #" + std::to_string(interval)) +
                         " (" + std::to_string(conflicts) + " byte" + (conflicts == 1 ? "" : "s") +
                         " written by more than one thread in that interval)");
        }
        conflicts = 0;
    }
    void end_launch(const char* kernel) {
        if (more_intervals)
            report_error(std::string("racecheck: ") + kernel + ": " + std::to_string(more_intervals) +
                         " more barrier interval(s) with write-write races in this launch");
    }
};
inline RaceCheck& race() {
    static RaceCheck r;
    return r;
}

inline void note_shared() {
    Sched& s = sched();
    s.shared_dirty = true;
    if (s.in_block)
        s.fibers[s.current]->shared_seen = true;
    else
        s.namespace_shared = true;
}

inline bool in_shared(const void* p) {
    const char* c = (const char*)p;
    return shared_bytes() && c >= shared_begin() && c < shared_begin() + shared_bytes();
}

}  // namespace detail

inline void register_kernel_name(const std::string& name) {
    std::lock_guard<std::mutex> lk(launch_mutex());
    auto& names = detail::kernel_names();
    if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(name);
    detail::race().ranges_by_kernel.clear();
}

// Frees the fiber stacks (they are allocated once and kept); the harnesses call it at exit.
struct FiberPool {
    void shutdown() {
        std::lock_guard<std::mutex> lk(launch_mutex());
        detail::free_fibers();
    }
};
inline FiberPool& pool() {
    static FiberPool p;
    return p;
}

struct SharedNote {
    SharedNote() noexcept { detail::note_shared(); }
};

// Runs kernel `name` over the whole grid on the calling thread: entry(arg) once per thread of every
// block, blocks one after another (z outer, then y, x inner). Takes launch_mutex(). Returns "" or the
// errors reported during the launch ("; "-separated).
inline thread_local bool running_grid = false;  // this OS thread is inside run_grid

inline std::string run_grid(const char* name, void (*entry)(void*), void* arg, dim3 grid, dim3 block, size_t dynamic_bytes = 0) {
    std::string errors;
    if (running_grid) {  // a kernel launching a kernel: the lock below would deadlock
        std::string* outer = error_capture;
        error_capture = &errors;
        report_error(std::string(name) + ": launched from inside a kernel");
        error_capture = outer;
        return errors;
    }
    std::lock_guard<std::mutex> lk(launch_mutex());
    std::string* outer = error_capture;
    error_capture = &errors;
    const unsigned long long threads = (unsigned long long)block.x * block.y * block.z;
    if (grid.x < 1 || grid.x > 2147483647u || grid.y < 1 || grid.y > 65535u || grid.z < 1 || grid.z > 65535u || block.x < 1 ||
        block.y < 1 || block.z < 1 || block.x > 1024 || block.y > 1024 || block.z > 64 || threads > detail::kMaxThreads) {
        report_error(std::string(name) + ": invalid launch geometry grid (" + std::to_string(grid.x) + ", " + std::to_string(grid.y) +
                     ", " + std::to_string(grid.z) + ") block (" + std::to_string(block.x) + ", " + std::to_string(block.y) + ", " +
                     std::to_string(block.z) + ")");
        error_capture = outer;
        return errors;
    }
    if (dynamic_bytes > kDynamicSharedMax) {
        report_error(std::string(name) + ": " + std::to_string(dynamic_bytes) + " bytes of dynamic shared memory exceed the " +
                     std::to_string(kDynamicSharedMax) + " of the area");
        error_capture = outer;
        return errors;
    }
    dynamic_shared_size() = dynamic_bytes;
    detail::Sched& s = detail::sched();
    const unsigned n = (unsigned)threads;
    while (s.fibers.size() < n) {
        detail::Fiber* f = detail::new_fiber();
        if (!f) {
            report_error(std::string(name) + ": cannot map fiber stacks");
            error_capture = outer;
            return errors;
        }
        s.fibers.push_back(f);
    }
    for (unsigned i = 0; i < n; ++i) s.fibers[i]->tid = uint3{i % block.x, (i / block.x) % block.y, i / (block.x * block.y)};
    s.n = n;
    s.atomic_reported = false;
    s.entry = entry;
    s.arg = arg;
    blockDim = block;
    gridDim = grid;
    const bool rc = racecheck() && shared_bytes() > 0;
    detail::RaceCheck& race = detail::race();
    if (rc) race.begin_launch(name);
    bool divergence_reported = false;
    running_grid = true;
    for (unsigned bz = 0; bz < grid.z; ++bz)
        for (unsigned by = 0; by < grid.y; ++by)
            for (unsigned bx = 0; bx < grid.x; ++bx) {
                blockIdx = uint3{bx, by, bz};
                if (s.shared_dirty || s.namespace_shared || s.racecheck_poison != rc) {
                    if (rc)
                        poison_shared_racecheck();
                    else
                        poison_shared();
                    s.shared_dirty = false;
                    s.racecheck_poison = rc;
                }
                if (dynamic_bytes) memset(dynamic_shared_area, 0xFF, dynamic_bytes);
                if (rc) race.begin_block();
                for (unsigned i = 0; i < n; ++i) detail::reset_fiber(s.fibers[i]);
                s.in_block = true;
                for (long interval = 0;; ++interval) {
                    bool waiting = false;
                    for (unsigned i = 0; i < n; ++i) {
                        detail::Fiber* f = s.fibers[i];
                        if (f->done) continue;
                        detail::resume(i);
                        if (rc && (f->shared_seen || s.namespace_shared)) race.after_fiber((int)i);
                        waiting |= !f->done;
                    }
                    if (rc) race.end_interval(name, interval);
                    if (!waiting) break;
                }
                s.in_block = false;
                for (unsigned i = 1; i < n && !divergence_reported; ++i) {
                    if (s.fibers[i]->syncs != s.fibers[0]->syncs) {
                        report_error(std::string(name) + ": divergent __syncthreads in block " + detail::format_idx(blockIdx, grid) +
                                     ": thread " + detail::format_idx(s.fibers[0]->tid, block) + " executed " +
                                     std::to_string(s.fibers[0]->syncs) + ", thread " + detail::format_idx(s.fibers[i]->tid, block) +
                                     " executed " + std::to_string(s.fibers[i]->syncs));
                        divergence_reported = true;  // once per launch: every block usually diverges alike
                    }
                }
            }
    running_grid = false;
    if (rc) race.end_launch(name);
    error_capture = outer;
    return errors;
}

// After a fault inside a kernel (the simulated driver's signal handler jumped out of the running fiber,
// past run_grid's lock guard): drop the launch's state and its lock, so that the next launch starts
// clean. Only on the thread that ran the grid; a no-op when no grid was running.
inline void abort_grid() {
    if (!running_grid) return;
    detail::Sched& s = detail::sched();
    s.in_block = false;
    s.shared_dirty = true;
    running_grid = false;
    error_capture = nullptr;
    launch_mutex().unlock();
}

inline void sync_threads() {
    detail::Sched& s = detail::sched();
    if (!s.in_block) {
        report_error("__syncthreads() called outside a kernel");
        return;
    }
    ++s.fibers[s.current]->syncs;
    detail::yield_to_scheduler();
}

inline void check_atomic(const void* address) {
    detail::Sched& s = detail::sched();
    if (racecheck() && s.in_block && !s.atomic_reported && detail::in_shared(address)) {
        s.atomic_reported = true;
        report_error("racecheck: atomic on " + detail::describe_shared((size_t)((const char*)address - shared_begin())) +
                     " is not supported in race-check mode (the threads' snapshots lose each other's updates)");
    }
}

}  // namespace emu

// ---- device functions -------------------------------------------------------------------------------
static inline void __syncthreads() {
    asm volatile("" ::: "memory");
    emu::sync_threads();
    asm volatile("" ::: "memory");
}
static inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }

// One OS thread runs every thread of the (single) running block, so a plain read-modify-write would
// do; atomic_ref keeps them atomic should host code touch the same memory from another thread.
static inline float atomicAdd(float* address, float val) {
    emu::check_atomic(address);
    return std::atomic_ref<float>(*address).fetch_add(val, std::memory_order_relaxed);
}
static inline double atomicAdd(double* address, double val) {
    emu::check_atomic(address);
    return std::atomic_ref<double>(*address).fetch_add(val, std::memory_order_relaxed);
}
static inline int atomicAdd(int* address, int val) {
    emu::check_atomic(address);
    return std::atomic_ref<int>(*address).fetch_add(val, std::memory_order_relaxed);
}
static inline unsigned atomicAdd(unsigned* address, unsigned val) {
    emu::check_atomic(address);
    return std::atomic_ref<unsigned>(*address).fetch_add(val, std::memory_order_relaxed);
}
// fmaf, copysignf, sqrtf, fabsf, sqrt come from <math.h> (fmaf is the correctly rounded fused op, as on the GPU).
