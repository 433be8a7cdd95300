// CPU emulation shim for the subset of the CUDA runtime that cuda/*.cu use.
//
// Found before the real <cuda_runtime.h> through -I native-build/emu, so that
//   #include "cuda/CompactBilinear.cu"
// compiles unchanged with g++ -std=c++20 -pthread. Execution model (emu::launch):
//   * blocks run one after another; within a block, blockDim.x real std::threads from a persistent pool
//     run the kernel body concurrently, and __syncthreads() is a std::barrier over them;
//   * threadIdx / blockIdx are thread_local, blockDim / gridDim are set per launch;
//   * __shared__ turns a declaration into a static object placed in the ELF section "emu_shared", which
//     the launcher fills with 0xFF bytes (NaN for float/double) before every block, so that shared memory
//     starts as garbage like on the device and a read-before-write shows;
//   * a thread that leaves the kernel drops out of the barrier (no hang), and the launcher then checks
//     that every thread of the block executed the same number of __syncthreads() (divergent barriers are
//     undefined behaviour on the device and are reported as an error here);
//   * atomicAdd(float*, float) is a real atomic read-modify-write (std::atomic_ref).
// Errors found by the runtime are counted in emu::runtime_errors() and printed to stderr.
#pragma once

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <atomic>
#include <barrier>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

// ---- qualifiers -------------------------------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __shared__ static __attribute__((section("emu_shared"), aligned(16), used))
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
inline thread_local uint3 threadIdx{0, 0, 0};
inline thread_local uint3 blockIdx{0, 0, 0};
inline dim3 blockDim{1, 1, 1};
inline dim3 gridDim{1, 1, 1};

namespace emu {

inline std::atomic<long>& runtime_error_count() {
    static std::atomic<long> n{0};
    return n;
}
inline long runtime_errors() { return runtime_error_count().load(); }
inline void report_error(const std::string& what) {
    runtime_error_count().fetch_add(1);
    fprintf(stderr, "[emu] ERROR: %s\n", what.c_str());
    fflush(stderr);
}

// Per-thread state while a kernel body runs on a pool worker.
struct ThreadState {
    std::barrier<>* bar = nullptr;  // the current block's barrier; null outside a kernel
    long syncs = 0;                 // __syncthreads() executed by this thread in this block
};
inline thread_local ThreadState tstate;

// Bounds of the "emu_shared" section (defined by the linker when the section exists).
extern "C" char __start_emu_shared[] __attribute__((weak));
extern "C" char __stop_emu_shared[] __attribute__((weak));
inline void poison_shared() {
    char* begin = __start_emu_shared;
    char* end = __stop_emu_shared;
    if (begin && end && end > begin) memset(begin, 0xFF, (size_t)(end - begin));
}
inline size_t shared_bytes() {
    char* begin = __start_emu_shared;
    char* end = __stop_emu_shared;
    return (begin && end) ? (size_t)(end - begin) : 0;
}

// A persistent pool of n workers that run one block at a time.
class Pool {
public:
    ~Pool() { shutdown(); }

    // Runs body on n threads (threadIdx.x = 0..n-1, blockIdx = (block, blockY)); returns after all finished.
    void run_block(unsigned n, unsigned block, const std::function<void()>& body, unsigned blockY = 0) {
        ensure(n);
        std::barrier<> bar((std::ptrdiff_t)n);
        {
            std::lock_guard<std::mutex> lk(m_);
            body_ = &body;
            block_ = block;
            blockY_ = blockY;
            bar_ = &bar;
            remaining_ = n;
            ++generation_;
        }
        start_cv_.notify_all();
        std::unique_lock<std::mutex> lk(m_);
        done_cv_.wait(lk, [&] { return remaining_ == 0; });
        body_ = nullptr;
        bar_ = nullptr;
        for (unsigned i = 1; i < n; ++i) {
            if (syncs_[i] != syncs_[0]) {
                report_error("divergent __syncthreads in block " + std::to_string(block) + ": thread 0 executed " +
                             std::to_string(syncs_[0]) + ", thread " + std::to_string(i) + " executed " +
                             std::to_string(syncs_[i]));
                break;
            }
        }
    }

    void shutdown() {
        {
            std::lock_guard<std::mutex> lk(m_);
            stop_ = true;
        }
        start_cv_.notify_all();
        for (auto& t : threads_) t.join();
        threads_.clear();
        std::lock_guard<std::mutex> lk(m_);
        stop_ = false;
    }

private:
    void ensure(unsigned n) {
        if (threads_.size() == n) return;
        shutdown();
        syncs_.assign(n, 0);
        uint64_t gen;
        {
            std::lock_guard<std::mutex> lk(m_);
            gen = generation_;
        }
        for (unsigned i = 0; i < n; ++i) threads_.emplace_back([this, i, gen] { worker(i, gen); });
    }

    void worker(unsigned id, uint64_t seen) {
        for (;;) {
            const std::function<void()>* body;
            std::barrier<>* bar;
            unsigned block, blockY;
            {
                std::unique_lock<std::mutex> lk(m_);
                start_cv_.wait(lk, [&] { return stop_ || generation_ != seen; });
                if (stop_) return;
                seen = generation_;
                body = body_;
                bar = bar_;
                block = block_;
                blockY = blockY_;
            }
            threadIdx = uint3{id, 0, 0};
            blockIdx = uint3{block, blockY, 0};
            tstate.bar = bar;
            tstate.syncs = 0;
            (*body)();
            syncs_[id] = tstate.syncs;
            tstate.bar = nullptr;
            bar->arrive_and_drop();  // the others may still be waiting at a barrier: don't hang them
            {
                std::lock_guard<std::mutex> lk(m_);
                if (--remaining_ == 0) done_cv_.notify_one();
            }
        }
    }

    std::vector<std::thread> threads_;
    std::vector<long> syncs_;
    std::mutex m_;
    std::condition_variable start_cv_, done_cv_;
    uint64_t generation_ = 0;
    unsigned remaining_ = 0;
    bool stop_ = false;
    const std::function<void()>* body_ = nullptr;
    std::barrier<>* bar_ = nullptr;
    unsigned block_ = 0, blockY_ = 0;
};

inline Pool& pool() {
    static Pool p;
    return p;
}

// Block size each kernel requires (0: any); set by the harness with expect_block().
inline std::map<const void*, std::pair<std::string, unsigned>>& expectations() {
    static std::map<const void*, std::pair<std::string, unsigned>> m;
    return m;
}
template <class... P>
void expect_block(void (*kernel)(P...), const char* name, unsigned block) {
    expectations()[(const void*)kernel] = {name, block};
}

// Hook run after every launch (the harness checks its buffer guards there).
inline std::function<void(const std::string&)>& after_launch() {
    static std::function<void(const std::string&)> f;
    return f;
}

// kernel<<<dim3(gridX, gridY), block>>>(args...): returns false (and counts an error) when the launch is
// refused. Blocks run one after another, y outer, x inner.
template <class... P, class... A>
bool launch2d(void (*kernel)(P...), unsigned grid, unsigned gridY, unsigned block, A&&... args) {
    static_assert(sizeof...(P) == sizeof...(A), "kernel launched with the wrong number of arguments");
    std::string name = "?";
    auto it = expectations().find((const void*)kernel);
    if (it == expectations().end()) {
        report_error("launch of a kernel with no registered block size");
        return false;
    }
    name = it->second.first;
    if (grid < 1 || grid > 2147483647u || gridY < 1 || gridY > 65535u || block < 1 || block > 1024) {
        report_error(name + ": invalid launch geometry grid (" + std::to_string(grid) + ", " + std::to_string(gridY) + ") block " +
                     std::to_string(block));
        return false;
    }
    if (it->second.second != 0 && block != it->second.second) {
        report_error(name + ": launched with block " + std::to_string(block) + ", the kernel requires " +
                     std::to_string(it->second.second));
        return false;
    }
    std::tuple<P...> params(static_cast<P>(std::forward<A>(args))...);  // by value, like kernel parameters
    std::function<void()> body = [&] { std::apply(kernel, params); };
    blockDim = dim3(block);
    gridDim = dim3(grid, gridY);  // published to the workers by the pool's mutex
    for (unsigned y = 0; y < gridY; ++y) {
        for (unsigned b = 0; b < grid; ++b) {
            poison_shared();
            pool().run_block(block, b, body, y);
        }
    }
    if (after_launch()) after_launch()(name);
    return true;
}

// kernel<<<grid, block>>>(args...)
template <class... P, class... A>
bool launch(void (*kernel)(P...), unsigned grid, unsigned block, A&&... args) {
    return launch2d(kernel, grid, 1u, block, std::forward<A>(args)...);
}

inline void sync_threads() {
    ThreadState& s = tstate;
    if (!s.bar) {
        report_error("__syncthreads() called outside a kernel");
        return;
    }
    ++s.syncs;
    s.bar->arrive_and_wait();  // the barrier's phase completion orders every thread's writes before all returns
}

}  // namespace emu

// ---- device functions -------------------------------------------------------------------------------
static inline void __syncthreads() {
    asm volatile("" ::: "memory");
    emu::sync_threads();
    asm volatile("" ::: "memory");
}
static inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }

static inline float atomicAdd(float* address, float val) {
    return std::atomic_ref<float>(*address).fetch_add(val, std::memory_order_relaxed);
}
static inline double atomicAdd(double* address, double val) {
    return std::atomic_ref<double>(*address).fetch_add(val, std::memory_order_relaxed);
}
static inline int atomicAdd(int* address, int val) {
    return std::atomic_ref<int>(*address).fetch_add(val, std::memory_order_relaxed);
}
static inline unsigned atomicAdd(unsigned* address, unsigned val) {
    return std::atomic_ref<unsigned>(*address).fetch_add(val, std::memory_order_relaxed);
}
// fmaf, copysignf, sqrtf, fabsf, sqrt come from <math.h> (fmaf is the correctly rounded fused op, as on the GPU).
