// Shared pieces of the kernel-emulation harnesses (native-build/emu/*_emu.cpp): device buffers with NaN guard
// zones, the guard check run after every launch, the case protocol (one pass/FAIL line per case, the fatal-signal
// report, the closing "N passed, M failed" line that native-build/emulate-kernels.sh parses), comparisons, test
// inputs, the Java launch-geometry formulas, and a cuBLAS stand-in. Include it after the kernel source and
// cuda_runtime.h; a harness is one translation unit with the kernel source, hence the emu prefixes.
#pragma once
#include <cuda_runtime.h>

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace {

constexpr size_t kGuard = 64;   // guard words on each side of every device buffer
constexpr uint32_t kNaNBits = 0x7fc00000u;

int g_passed = 0, g_failed = 0;
long g_attributed = 0;  // runtime errors already reported as part of a case
std::string g_current = "(setup)";
std::chrono::steady_clock::time_point g_started;

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
    // Whether the buffer still holds exactly v: inputs and weights must come back untouched from a run.
    bool holds(const std::vector<float>& v) const {
        return v.size() == words && memcmp(store.data() + kGuard, v.data(), words * 4) == 0;
    }
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

// ---- cases ----------------------------------------------------------------------------------------------
inline void emu_record(bool ok, const std::string& line) {
    (ok ? g_passed : g_failed)++;
    printf("%-4s %s\n", ok ? "pass" : "FAIL", line.c_str());
    fflush(stdout);  // a later crash must not swallow the lines of the cases before it
}

// Runtime errors since `since`, counted as the current case's own so that the summary does not report them
// again as stray.
inline long emu_case_errors(long since) {
    const long errors = emu::runtime_errors() - since;
    g_attributed += errors;
    return errors;
}

// First thing in main: a crash still ends with the summary line, every launch is followed by the guard check.
inline void emu_start() {
    signal(SIGSEGV, on_fatal_signal);
    signal(SIGBUS, on_fatal_signal);
    signal(SIGFPE, on_fatal_signal);
    emu::after_launch() = [](const std::string& name) { check_guards(name); };
    g_started = std::chrono::steady_clock::now();
}

// Last thing in main (its exit code): runtime errors outside every case fail the run, and the summary line comes last.
inline int emu_finish() {
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - g_started).count();
    const long stray = emu::runtime_errors() - g_attributed;
    if (stray) emu_record(false, "runtime errors outside the cases: " + std::to_string(stray));
    printf("time %.1f s\n", secs);
    emu::pool().shutdown();
    printf("%d passed, %d failed\n", g_passed, g_failed);
    return g_failed == 0 ? 0 : 1;
}

// ---- comparisons ----------------------------------------------------------------------------------------
// ||got - want|| / ||want||; against an all-zero reference the absolute error. NaN in got gives NaN, which fails
// every `<= tol`.
inline double emu_rel_l2(const std::vector<float>& got, const std::vector<double>& want) {
    double num = 0, den = 0;
    for (size_t k = 0; k < want.size(); ++k) {
        const double e = (double)got[k] - want[k];
        num += e * e;
        den += want[k] * want[k];
    }
    return den == 0 ? std::sqrt(num) : std::sqrt(num / den);
}

inline bool emu_same_bits(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && memcmp(a.data(), b.data(), a.size() * 4) == 0;
}

inline bool emu_all_finite(const std::vector<float>& v) {
    for (float f : v)
        if (!std::isfinite(f)) return false;
    return true;
}

// io.bifuse.Precision.bound() by its code (0 FP32, 1 TF32, 2 BF16): the relative L2 an op's outputs may have.
inline double emu_precision_bound(int precision) { return precision == 0 ? 1e-5 : precision == 1 ? 4 * 0x1p-11 : 4 * 0x1p-8; }
inline const char* emu_precision_name(int precision) { return precision == 0 ? "fp32" : precision == 1 ? "tf32" : "bf16"; }
inline const char* emu_act_name(int act) { return act == 0 ? "none" : act == 1 ? "relu" : "tanh"; }  // Activation.code()

// ---- inputs -------------------------------------------------------------------------------------------------
// One draw per element, in order: the cases' data depend on the sequence, so a helper must not draw differently.
inline std::vector<float> emu_gaussian(size_t n, std::mt19937_64& rng, float scale = 1.f) {
    std::normal_distribution<float> nd(0.f, 1.f);
    std::vector<float> v(n);
    for (float& f : v) f = scale * nd(rng);
    return v;
}

struct EmuLayer {  // a Linear: weight out x in, bias out
    int out, in;
    bool has_bias;
    std::vector<float> w, b;
    // What LinearCuda uploads: a layer without a bias still gets a (zero) bias buffer.
    std::vector<float> bias_or_zeros() const { return has_bias ? b : std::vector<float>((size_t)out, 0.f); }
};

// nn.Linear's initialization, U(+-1/sqrt(in)); scale multiplies the weights only (to sharpen a softmax).
inline EmuLayer emu_make_layer(int out, int in, bool bias, std::mt19937_64& rng, float scale = 1.f) {
    std::uniform_real_distribution<float> ud(-1.f / std::sqrt((float)in), 1.f / std::sqrt((float)in));
    EmuLayer l{out, in, bias, std::vector<float>((size_t)out * in), {}};
    for (float& w : l.w) w = scale * ud(rng);
    if (bias) {
        l.b.resize(out);
        for (float& b : l.b) b = ud(rng);
    }
    return l;
}

// ---- launch geometry of the Java classes ------------------------------------------------------------------
constexpr int kEmuSmCount = 132;  // multiprocessorCount() of an H100/H200

// The elementwise grid() of CompactBilinearCuda, MlbCuda, MlbAttentionCuda and LinearCuda (java) or at most
// 3 blocks, so that the grid-stride loops iterate even at small sizes.
inline unsigned emu_grid(long threads, int block, bool java) {
    const long blocks = (threads + block - 1) / block;
    const long cap = java ? 32L * kEmuSmCount * (2048 / block) : 3;
    return (unsigned)std::max(1L, std::min(blocks, cap));
}

// LinearCuda.biasGradient's grid (java), or a single block that loops over all columns.
inline unsigned emu_bias_grad_grid(int cols, int block, bool java) { return java ? (unsigned)std::max(1, (cols + block - 1) / block) : 1u; }

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
