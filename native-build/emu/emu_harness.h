// Shared pieces of the kernel-emulation harnesses (native-build/emu/*_emu.cpp): device buffers with NaN guard
// zones, the guard check run after every launch, pass/fail counters and the fatal-signal report, and a cuBLAS
// stand-in. Include it after the kernel source and cuda_runtime.h; every harness is one translation unit.
#pragma once
#include <cuda_runtime.h>

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <set>
#include <string>
#include <vector>

namespace {

constexpr size_t kGuard = 64;   // guard words on each side of every device buffer
constexpr uint32_t kNaNBits = 0x7fc00000u;

int g_passed = 0, g_failed = 0;
long g_attributed = 0;  // runtime errors already reported as part of a case
std::string g_current = "(setup)";

void on_fatal_signal(int sig) {
    char buf[512];
    int n = snprintf(buf, sizeof buf, "FAIL: signal %d while running %s (likely an out-of-bounds access)\n%d passed, %d failed\n",
                     sig, g_current.c_str(), g_passed, g_failed + 1);
    if (n > 0) { ssize_t w = write(1, buf, (size_t)std::min(n, (int)sizeof buf - 1)); (void)w; }
    _exit(2);
}

// ---- device memory: 4-byte words with NaN guard zones ----------------------------------------------------
struct DevBuf;
std::set<DevBuf*>& live_buffers() {
    static std::set<DevBuf*> s;
    return s;
}

struct DevBuf {
    std::string name;
    size_t words = 0;
    std::vector<uint32_t> store;

    DevBuf(std::string n, size_t w) : name(std::move(n)), words(w), store(w + 2 * kGuard, kNaNBits) {
        live_buffers().insert(this);
    }
    ~DevBuf() { live_buffers().erase(this); }
    DevBuf(const DevBuf&) = delete;
    DevBuf& operator=(const DevBuf&) = delete;

    uint32_t* raw() { return store.data() + kGuard; }
    float* f() { return reinterpret_cast<float*>(raw()); }
    int* i() { return reinterpret_cast<int*>(raw()); }
    float2* c() { return reinterpret_cast<float2*>(raw()); }
    void fill_nan() { std::fill(store.begin() + kGuard, store.begin() + kGuard + words, kNaNBits); }
    void zero(size_t from, size_t count) { std::fill(raw() + from, raw() + from + count, 0u); }  // cuMemsetD32
    void put(const std::vector<float>& v) { memcpy(raw(), v.data(), v.size() * 4); }
    void put(const std::vector<int>& v) { memcpy(raw(), v.data(), v.size() * 4); }
    std::vector<float> get(size_t n) const {
        std::vector<float> v(n);
        memcpy(v.data(), store.data() + kGuard, n * 4);
        return v;
    }
    bool guards_intact() const {
        for (size_t k = 0; k < kGuard; ++k)
            if (store[k] != kNaNBits || store[kGuard + words + k] != kNaNBits) return false;
        return true;
    }
};

void check_guards(const std::string& after) {
    for (DevBuf* b : live_buffers()) {
        if (!b->guards_intact()) {
            emu::report_error("out-of-bounds write: guard zone of '" + b->name + "' modified by " + after);
            std::fill(b->store.begin(), b->store.begin() + kGuard, kNaNBits);
            std::fill(b->store.end() - kGuard, b->store.end(), kNaNBits);
        }
    }
}

// ---- cuBLAS stand-in --------------------------------------------------------------------------------------
// CublasHandle.gemm in row-major terms: C[m x n] (row stride ldc) = alpha op(A) op(B) + beta C, op(A) m x k
// (A stored k x m when transA, row stride lda), op(B) k x n (B stored n x k when transB, row stride ldb).
// Accumulates in double. precision: 0 FP32, 1 TF32, 2 BF16 (io.bifuse.Precision's order): operands are
// rounded to nearest-even on the kept significand first, as Precision.round does. beta = 0 never reads C
// (cuBLAS semantics: NaN garbage in C is overwritten).
inline float emu_round(int precision, float v) {
    if (precision == 0 || !std::isfinite(v)) return v;
    const int drop = precision == 1 ? 13 : 16;
    uint32_t bits;
    memcpy(&bits, &v, 4);
    const uint32_t half = 1u << (drop - 1), lsb = (bits >> drop) & 1u;
    bits = (bits + half - 1 + lsb) & (~0u << drop);
    memcpy(&v, &bits, 4);
    return v;
}

inline void emu_gemm(int precision, bool transA, bool transB, int m, int n, int k, float alpha, const float* A, int lda,
                     const float* B, int ldb, float beta, float* C, int ldc, long batch = 1, long strideA = 0, long strideB = 0,
                     long strideC = 0) {
    for (long q = 0; q < batch; ++q) {
        const float* a = A + q * strideA;
        const float* b = B + q * strideB;
        float* c = C + q * strideC;
        for (int i = 0; i < m; ++i) {
            for (int j = 0; j < n; ++j) {
                double acc = 0;
                for (int p = 0; p < k; ++p) {
                    const float av = transA ? a[(long)p * lda + i] : a[(long)i * lda + p];
                    const float bv = transB ? b[(long)j * ldb + p] : b[(long)p * ldb + j];
                    acc += (double)emu_round(precision, av) * (double)emu_round(precision, bv);
                }
                const double prev = beta == 0.f ? 0.0 : (double)beta * c[(long)i * ldc + j];
                c[(long)i * ldc + j] = (float)(alpha * acc + prev);
            }
        }
    }
    if (emu::after_launch()) emu::after_launch()("cublasGemmEx");
}

}  // namespace
