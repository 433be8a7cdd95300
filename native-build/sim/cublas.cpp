// The cuBLAS stand-in of the simulated CUDA device (built as libcublas.so.13): NVIDIA's C ABI for the
// handle helpers and the float GEMMs that bifuse's FFM binding (io.bifuse.cuda.CublasHandle) calls.
// Every GEMM runs on the host, but only inside work queued on the handle's stream through the driver
// stand-in (sim_ext.h), so stream order, the context's sticky error and bad operand addresses behave
// as they would on a GPU: argument errors come back from the call, memory errors from the next
// synchronizing driver call.
//
// No cuBLAS header exists where this builds, so the types are declared below with NVIDIA's names,
// values and signatures. Section numbers cite the cuBLAS documentation of CUDA 13.0 ("cuBLAS docs");
// cudaDataType and libraryPropertyType come from the toolkit's library_types.h.
//
// What is simulated: float data only (CUDA_R_32F A, B, C, float alpha and beta). The arithmetic of a
// GPU's FP32 GEMM is modelled as one float accumulator per output element, fmaf in k order, so no
// wider precision hides what float accumulation loses; the reduced compute types round every A and B
// element once (round to nearest even) to their shorter significand before that, as tensor cores
// convert operands on input.
#include <cuda.h>
#include <library_types.h>

#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

#include "sim_ext.h"

#define CUBLASAPI extern "C" __attribute__((visibility("default")))

// ---- NVIDIA's types (cuBLAS docs, 2.2 cuBLAS Datatypes Reference) --------------------------------

extern "C" {
// 2.2.2 cublasStatus_t
typedef enum {
    CUBLAS_STATUS_SUCCESS = 0,
    CUBLAS_STATUS_NOT_INITIALIZED = 1,
    CUBLAS_STATUS_ALLOC_FAILED = 3,
    CUBLAS_STATUS_INVALID_VALUE = 7,
    CUBLAS_STATUS_ARCH_MISMATCH = 8,
    CUBLAS_STATUS_MAPPING_ERROR = 11,
    CUBLAS_STATUS_EXECUTION_FAILED = 13,
    CUBLAS_STATUS_INTERNAL_ERROR = 14,
    CUBLAS_STATUS_NOT_SUPPORTED = 15,
    CUBLAS_STATUS_LICENSE_ERROR = 16
} cublasStatus_t;

// 2.2.1 cublasHandle_t: a pointer to an opaque structure.
struct cublasContext;
typedef struct cublasContext* cublasHandle_t;

// The runtime's stream type is the driver's (cuda_runtime_api.h: typedef struct CUstream_st* cudaStream_t).
typedef struct CUstream_st* cudaStream_t;

// 2.2.3 cublasOperation_t
typedef enum {
    CUBLAS_OP_N = 0,
    CUBLAS_OP_T = 1,
    CUBLAS_OP_C = 2,
    CUBLAS_OP_HERMITAN = 2,
    CUBLAS_OP_CONJG = 3
} cublasOperation_t;

// 2.2.7 cublasPointerMode_t
typedef enum {
    CUBLAS_POINTER_MODE_HOST = 0,
    CUBLAS_POINTER_MODE_DEVICE = 1
} cublasPointerMode_t;

// 2.2.9 cublasGemmAlgo_t (the ranges ALGO0..ALGO23 and ALGO0_TENSOR_OP..ALGO15_TENSOR_OP are contiguous)
typedef enum {
    CUBLAS_GEMM_DFALT = -1,
    CUBLAS_GEMM_DEFAULT = -1,
    CUBLAS_GEMM_ALGO0 = 0,
    CUBLAS_GEMM_ALGO23 = 23,
    CUBLAS_GEMM_DEFAULT_TENSOR_OP = 99,
    CUBLAS_GEMM_DFALT_TENSOR_OP = 99,
    CUBLAS_GEMM_ALGO0_TENSOR_OP = 100,
    CUBLAS_GEMM_ALGO15_TENSOR_OP = 115,
    CUBLAS_GEMM_AUTOTUNE = 999
} cublasGemmAlgo_t;

// 2.2.10 cublasMath_t
typedef enum {
    CUBLAS_DEFAULT_MATH = 0,
    CUBLAS_TENSOR_OP_MATH = 1,
    CUBLAS_PEDANTIC_MATH = 2,
    CUBLAS_TF32_TENSOR_OP_MATH = 3,
    CUBLAS_FP32_EMULATED_BF16X9_MATH = 4,
    CUBLAS_FP64_EMULATED_FIXEDPOINT_MATH = 8,
    CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION = 16
} cublasMath_t;

// 2.2.11 cublasComputeType_t
typedef enum {
    CUBLAS_COMPUTE_16F = 64,
    CUBLAS_COMPUTE_16F_PEDANTIC = 65,
    CUBLAS_COMPUTE_32F = 68,
    CUBLAS_COMPUTE_32F_PEDANTIC = 69,
    CUBLAS_COMPUTE_32F_FAST_16F = 74,
    CUBLAS_COMPUTE_32F_FAST_16BF = 75,
    CUBLAS_COMPUTE_32F_FAST_TF32 = 77,
    CUBLAS_COMPUTE_32F_EMULATED_16BFX9 = 78,
    CUBLAS_COMPUTE_64F = 70,
    CUBLAS_COMPUTE_64F_PEDANTIC = 71,
    CUBLAS_COMPUTE_64F_EMULATED_FIXEDPOINT = 79,
    CUBLAS_COMPUTE_32I = 72,
    CUBLAS_COMPUTE_32I_PEDANTIC = 73
} cublasComputeType_t;
}

namespace {

// The version this stand-in reports (cuBLAS docs, 2.4.3 and 2.4.4): the release that ships with CUDA 13.0.
constexpr int kVersionMajor = 13, kVersionMinor = 0, kVersionPatch = 0;

// ---- handles --------------------------------------------------------------------------------------

// One handle's configuration. A GEMM copies what it needs into its queued work, so destroying or
// reconfiguring a handle never affects work already queued.
struct HandleState {
    std::mutex mu;
    CUstream stream = nullptr;    // nullptr: the default stream (2.4.7)
    cublasPointerMode_t pointer_mode = CUBLAS_POINTER_MODE_HOST;  // the default (2.4.11)
    unsigned math_mode = CUBLAS_DEFAULT_MATH;                     // the default (2.4.22)
    // NVIDIA_TF32_OVERRIDE=0 "will override any defaults or programmatic configuration" (2.2.11 note).
    bool tf32_disabled = false;
};

// The only process-wide state: which handles are live. Handle values are tokens that are never
// reused, so a destroyed handle stays invalid even after another is created, and the state is shared
// so a call already inside one handle keeps it alive while another thread destroys it.
struct Registry {
    std::mutex mu;
    std::unordered_map<uintptr_t, std::shared_ptr<HandleState>> live;
    uintptr_t next_id = 1;
};

Registry& registry() {
    static Registry* r = new Registry;  // never destroyed: calls may still arrive while the process exits
    return *r;
}

std::shared_ptr<HandleState> lookup(cublasHandle_t h) {
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.mu);
    auto it = r.live.find(reinterpret_cast<uintptr_t>(h));
    return it == r.live.end() ? nullptr : it->second;
}

void sim_log(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void sim_log(const char* fmt, ...) {
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    bifuse_sim_log(text);
}

const char* cu_result_name(CUresult r) {
    switch (r) {
        case CUDA_SUCCESS: return "CUDA_SUCCESS";
        case CUDA_ERROR_INVALID_VALUE: return "CUDA_ERROR_INVALID_VALUE";
        case CUDA_ERROR_OUT_OF_MEMORY: return "CUDA_ERROR_OUT_OF_MEMORY";
        case CUDA_ERROR_INVALID_CONTEXT: return "CUDA_ERROR_INVALID_CONTEXT";
        case CUDA_ERROR_INVALID_HANDLE: return "CUDA_ERROR_INVALID_HANDLE";
        case CUDA_ERROR_ILLEGAL_ADDRESS: return "CUDA_ERROR_ILLEGAL_ADDRESS";
        case CUDA_ERROR_MISALIGNED_ADDRESS: return "CUDA_ERROR_MISALIGNED_ADDRESS";
        default: return "CUresult";
    }
}

// ---- operand rounding -----------------------------------------------------------------------------

enum class Rounding { None, TF32, BF16, FP16 };

// Round to nearest even on the significand, keeping the float exponent: float32 has 23 explicit
// significand bits, TF32 keeps 10 (drop 13), BF16 keeps 7 (drop 16). The same rule as
// io.bifuse.Precision.round, so the Java emulation and the simulator agree bit for bit. A carry out
// of the significand bumps the exponent, and past the largest finite value gives infinity, as the
// conversion does.
inline float round_significand(float v, int drop) {
    if (!std::isfinite(v)) return v;
    uint32_t bits;
    std::memcpy(&bits, &v, sizeof bits);
    const uint32_t half = 1u << (drop - 1), lsb = (bits >> drop) & 1u;
    bits = (bits + half - 1u + lsb) & ~((1u << drop) - 1u);
    std::memcpy(&v, &bits, sizeof v);
    return v;
}

inline float round_operand(float v, Rounding r) {
    switch (r) {
        case Rounding::TF32: return round_significand(v, 13);
        case Rounding::BF16: return round_significand(v, 16);
#ifdef __FLT16_MAX__
        // Half precision also narrows the exponent (overflow to infinity, subnormals below 2^-14),
        // which the compiler's conversion does with round to nearest even.
        case Rounding::FP16: return static_cast<float>(static_cast<_Float16>(v));
#endif
        default: return v;
    }
}

constexpr bool kHaveFp16 =
#ifdef __FLT16_MAX__
    true;
#else
    false;
#endif

// ---- the arithmetic -------------------------------------------------------------------------------

// The packed operands: Ap holds op(A) column-major with its m rows padded to a multiple of
// kTileRows (Ap[p * m_pad + i]), Bc holds the columns of op(B) one after another, n padded to a
// multiple of kTileCols (Bc[j * k + p]); the padding is zero and its results are never stored.
constexpr int64_t kTileRows = 16, kTileCols = 4;

// C = alpha op(A) op(B) (+ beta C) in tiles of 16 rows × 4 columns: 64 independent float
// accumulators, each summed strictly in k order (the order is what a float result depends on). The
// 16 rows of a tile are contiguous in Ap, so the compiler can give each row a SIMD lane without
// changing any element's arithmetic. beta == 0 does not read C (cuBLAS docs, 2.7.1: "If beta == 0, C
// does not have to be a valid input"), so NaN there does not reach the output. The epilogue is
// alpha*acc + beta*c with one rounding of the sum, fmaf(alpha, acc, beta*c), as a GPU GEMM epilogue
// computes it.
__attribute__((always_inline)) inline void gemm_tiles(const float* Ap, int64_t m_pad, const float* Bc, int64_t m,
                                                      int64_t n, int64_t k, float alpha, float beta, float* C,
                                                      int64_t ldc) {
    for (int64_t j0 = 0; j0 < n; j0 += kTileCols) {
        const float* b0 = Bc + j0 * k;
        const float* b1 = b0 + k;
        const float* b2 = b1 + k;
        const float* b3 = b2 + k;
        for (int64_t i0 = 0; i0 < m; i0 += kTileRows) {
            float acc[kTileCols][kTileRows] = {};
            const float* a = Ap + i0;
            for (int64_t p = 0; p < k; ++p, a += m_pad) {
                const float x0 = b0[p], x1 = b1[p], x2 = b2[p], x3 = b3[p];
#pragma GCC unroll 16
                for (int r = 0; r < kTileRows; ++r) {
                    acc[0][r] = fmaf(a[r], x0, acc[0][r]);
                    acc[1][r] = fmaf(a[r], x1, acc[1][r]);
                    acc[2][r] = fmaf(a[r], x2, acc[2][r]);
                    acc[3][r] = fmaf(a[r], x3, acc[3][r]);
                }
            }
            const int64_t rows = m - i0 < kTileRows ? m - i0 : kTileRows;
            const int64_t cols = n - j0 < kTileCols ? n - j0 : kTileCols;
            for (int64_t jj = 0; jj < cols; ++jj) {
                float* col = C + (j0 + jj) * ldc + i0;
                for (int64_t ii = 0; ii < rows; ++ii) {
                    const float v = acc[jj][ii];
                    col[ii] = beta == 0.0f ? alpha * v : fmaf(alpha, v, beta * col[ii]);
                }
            }
        }
    }
}

// Two builds of the same loop: without a target option fmaf is a libm call per element (the x86-64
// baseline has no FMA instruction), which is correct but many times slower; where the CPU has AVX2
// and FMA the compiler emits fused vector instructions inline, with the same result per element.
void gemm_tiles_baseline(const float* Ap, int64_t m_pad, const float* Bc, int64_t m, int64_t n, int64_t k,
                         float alpha, float beta, float* C, int64_t ldc) {
    gemm_tiles(Ap, m_pad, Bc, m, n, k, alpha, beta, C, ldc);
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) void gemm_tiles_avx2(const float* Ap, int64_t m_pad, const float* Bc, int64_t m,
                                                         int64_t n, int64_t k, float alpha, float beta, float* C,
                                                         int64_t ldc) {
    gemm_tiles(Ap, m_pad, Bc, m, n, k, alpha, beta, C, ldc);
}
#endif

void run_tiles(const float* Ap, int64_t m_pad, const float* Bc, int64_t m, int64_t n, int64_t k, float alpha,
               float beta, float* C, int64_t ldc) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        gemm_tiles_avx2(Ap, m_pad, Bc, m, n, k, alpha, beta, C, ldc);
        return;
    }
#endif
    gemm_tiles_baseline(Ap, m_pad, Bc, m, n, k, alpha, beta, C, ldc);
}

// ---- queued work ----------------------------------------------------------------------------------

// Everything one GEMM call needs on the worker, copied at call time.
struct GemmWork {
    const char* api;  // the entry point, for messages
    bool trans_a, trans_b;
    int64_t m, n, k, lda, ldb, ldc;
    int64_t stride_a, stride_b, stride_c;  // in elements
    int64_t batch;
    uintptr_t a, b, c;
    Rounding rounding;
    bool device_scalars;
    float alpha, beta;               // host pointer mode: read at call time (cuBLAS docs, 2.1.5)
    uintptr_t alpha_ptr, beta_ptr;   // device pointer mode: read on the worker, when the GEMM runs
};

// The bytes a column-major rows×cols matrix with leading dimension ld occupies from element `first`
// of `base` on: from its first element to its last one, padding rows between columns included.
// Computed in 128 bits: int dimensions and long long strides can exceed 64-bit byte counts.
bool operand_range(uintptr_t base, __int128 first, int64_t rows, int64_t cols, int64_t ld, uintptr_t* start,
                   size_t* bytes) {
    const __int128 begin = static_cast<__int128>(base) + first * 4;
    const __int128 extent = (static_cast<__int128>(cols - 1) * ld + rows) * 4;
    if (begin < 0 || begin + extent > static_cast<__int128>(UINTPTR_MAX)) {  // wraps: outside everything
        *start = static_cast<uintptr_t>(begin);
        *bytes = extent > static_cast<__int128>(SIZE_MAX) ? SIZE_MAX : static_cast<size_t>(extent);
        return false;
    }
    *start = static_cast<uintptr_t>(begin);
    *bytes = static_cast<size_t>(extent);
    return bifuse_sim_is_device_range(static_cast<CUdeviceptr>(*start), *bytes) != 0;
}

// batch_index < 0: an operand that is not per batch (alpha, beta).
CUresult illegal(const GemmWork& w, const char* operand, int64_t batch_index, uintptr_t start, size_t bytes) {
    if (w.batch > 1 && batch_index >= 0) {
        sim_log("%s: operand %s of batch %lld of %lld, [0x%llx, +%zu bytes), is outside every device allocation: "
                "CUDA_ERROR_ILLEGAL_ADDRESS",
                w.api, operand, static_cast<long long>(batch_index), static_cast<long long>(w.batch),
                static_cast<unsigned long long>(start), bytes);
    } else {
        sim_log("%s: operand %s, [0x%llx, +%zu bytes), is outside every device allocation: CUDA_ERROR_ILLEGAL_ADDRESS",
                w.api, operand, static_cast<unsigned long long>(start), bytes);
    }
    return CUDA_ERROR_ILLEGAL_ADDRESS;
}

// A float operand at an address that is not 4-byte aligned faults on a GPU before anything is read.
CUresult misaligned(const GemmWork& w, const char* operand, uintptr_t address) {
    sim_log("%s: operand %s at 0x%llx is not 4-byte aligned: CUDA_ERROR_MISALIGNED_ADDRESS", w.api, operand,
            static_cast<unsigned long long>(address));
    return CUDA_ERROR_MISALIGNED_ADDRESS;
}

CUresult read_device_scalar(const GemmWork& w, const char* name, uintptr_t address, float* out) {
    if (address % alignof(float) != 0) return misaligned(w, name, address);
    if (!bifuse_sim_is_device_range(static_cast<CUdeviceptr>(address), sizeof(float)))
        return illegal(w, name, -1, address, sizeof(float));
    std::memcpy(out, reinterpret_cast<const void*>(address), sizeof(float));
    return CUDA_SUCCESS;
}

// Runs on the stream's worker. Every operand's whole extent, in every batch, is checked before any
// byte is read or written, so a bad address never gets dereferenced and never half-updates C.
CUresult gemm_run(void* arg) {
    std::unique_ptr<GemmWork> owned(static_cast<GemmWork*>(arg));
    const GemmWork& w = *owned;
    if (bifuse_sim_discarding()) return CUDA_SUCCESS;  // a faulted context: only free the work

    float alpha = w.alpha, beta = w.beta;
    if (w.device_scalars) {
        if (CUresult r = read_device_scalar(w, "alpha", w.alpha_ptr, &alpha)) return r;
        if (CUresult r = read_device_scalar(w, "beta", w.beta_ptr, &beta)) return r;
    }

    // A and B are operands of every GEMM with k > 0, C of every one (it is written even when beta == 0).
    const bool reads_ab = w.k > 0;
    if (reads_ab && w.a % alignof(float) != 0) return misaligned(w, "A", w.a);
    if (reads_ab && w.b % alignof(float) != 0) return misaligned(w, "B", w.b);
    if (w.c % alignof(float) != 0) return misaligned(w, "C", w.c);
    const int64_t a_rows = w.trans_a ? w.k : w.m, a_cols = w.trans_a ? w.m : w.k;
    const int64_t b_rows = w.trans_b ? w.n : w.k, b_cols = w.trans_b ? w.k : w.n;
    for (int64_t i = 0; i < w.batch; ++i) {
        uintptr_t start;
        size_t bytes;
        if (reads_ab && !operand_range(w.a, static_cast<__int128>(i) * w.stride_a, a_rows, a_cols, w.lda, &start, &bytes))
            return illegal(w, "A", i, start, bytes);
        if (reads_ab && !operand_range(w.b, static_cast<__int128>(i) * w.stride_b, b_rows, b_cols, w.ldb, &start, &bytes))
            return illegal(w, "B", i, start, bytes);
        if (!operand_range(w.c, static_cast<__int128>(i) * w.stride_c, w.m, w.n, w.ldc, &start, &bytes))
            return illegal(w, "C", i, start, bytes);
    }

    // With alpha == 0 or k == 0 the product vanishes: C = beta*C, and C is left alone when beta == 1,
    // as the reference BLAS sgemm that cuBLAS docs 2.7.1 refers to does (it does not touch A and B then).
    const bool product = alpha != 0.0f && w.k > 0;
    if (!product && beta == 1.0f) return CUDA_SUCCESS;

    const int64_t m_pad = (w.m + kTileRows - 1) / kTileRows * kTileRows;
    const int64_t n_pad = (w.n + kTileCols - 1) / kTileCols * kTileCols;
    std::vector<float> ap, bc;
    try {
        if (product) {
            ap.assign(static_cast<size_t>(m_pad * w.k), 0.0f);
            bc.assign(static_cast<size_t>(n_pad * w.k), 0.0f);
        }
    } catch (const std::exception&) {
        sim_log("%s: no host memory for the %lld x %lld x %lld product: CUDA_ERROR_OUT_OF_MEMORY", w.api,
                static_cast<long long>(w.m), static_cast<long long>(w.n), static_cast<long long>(w.k));
        return CUDA_ERROR_OUT_OF_MEMORY;
    }

    for (int64_t i = 0; i < w.batch; ++i) {
        float* C = reinterpret_cast<float*>(w.c) + i * w.stride_c;
        if (!product) {
            for (int64_t j = 0; j < w.n; ++j)
                for (int64_t r = 0; r < w.m; ++r) {
                    float* c = C + j * w.ldc + r;
                    *c = beta == 0.0f ? 0.0f : beta * *c;
                }
            continue;
        }
        const float* A = reinterpret_cast<const float*>(w.a) + i * w.stride_a;
        const float* B = reinterpret_cast<const float*>(w.b) + i * w.stride_b;
        // op(A) column-major and the columns of op(B), each element rounded once to the compute type's
        // operand precision. op = C (conjugate transpose) is a transpose on real data.
        if (w.trans_a) {
            for (int64_t r = 0; r < w.m; ++r)
                for (int64_t p = 0; p < w.k; ++p) ap[p * m_pad + r] = round_operand(A[r * w.lda + p], w.rounding);
        } else {
            for (int64_t p = 0; p < w.k; ++p)
                for (int64_t r = 0; r < w.m; ++r) ap[p * m_pad + r] = round_operand(A[p * w.lda + r], w.rounding);
        }
        if (w.trans_b) {
            for (int64_t p = 0; p < w.k; ++p)
                for (int64_t j = 0; j < w.n; ++j) bc[j * w.k + p] = round_operand(B[p * w.ldb + j], w.rounding);
        } else {
            for (int64_t j = 0; j < w.n; ++j)
                for (int64_t p = 0; p < w.k; ++p) bc[j * w.k + p] = round_operand(B[j * w.ldb + p], w.rounding);
        }
        run_tiles(ap.data(), m_pad, bc.data(), w.m, w.n, w.k, alpha, beta, C, w.ldc);
    }
    return CUDA_SUCCESS;
}

// ---- argument checking and queueing ---------------------------------------------------------------

struct GemmCall {
    const char* api;
    cublasOperation_t transa, transb;
    int m, n, k;
    const void* alpha;
    const void* A;
    int lda;
    long long stride_a;
    const void* B;
    int ldb;
    long long stride_b;
    const void* beta;
    void* C;
    int ldc;
    long long stride_c;
    int batch;
};

bool is_op(cublasOperation_t op) {
    const int v = static_cast<int>(op);
    return v == CUBLAS_OP_N || v == CUBLAS_OP_T || v == CUBLAS_OP_C;
}

// The CUBLAS_STATUS_INVALID_VALUE rules the GEMM pages share (cuBLAS docs 2.7.1 cublas<t>gemm(),
// 2.7.4 cublas<t>gemmStridedBatched(), 2.8.12 cublasGemmEx(), 2.8.14 cublasGemmStridedBatchedEx()):
// m, n or k < 0; transa or transb not N, T or C (CUBLAS_OP_CONJG is not accepted); lda < max(1, m)
// when transa == N and < max(1, k) otherwise; ldb < max(1, k) when transb == N and < max(1, n)
// otherwise; ldc < max(1, m); alpha or beta NULL. batchCount < 0 is rejected too, as the batched
// pages' earlier editions listed ("m, n, k, batchCount < 0"). Leading dimensions are checked even when
// the GEMM is empty: max(1, ·) makes 0 invalid for every shape.
cublasStatus_t check_gemm(const GemmCall& g) {
    if (g.m < 0 || g.n < 0 || g.k < 0) return CUBLAS_STATUS_INVALID_VALUE;
    if (!is_op(g.transa) || !is_op(g.transb)) return CUBLAS_STATUS_INVALID_VALUE;
    const int a_rows = g.transa == CUBLAS_OP_N ? g.m : g.k;
    const int b_rows = g.transb == CUBLAS_OP_N ? g.k : g.n;
    if (g.lda < (a_rows > 1 ? a_rows : 1)) return CUBLAS_STATUS_INVALID_VALUE;
    if (g.ldb < (b_rows > 1 ? b_rows : 1)) return CUBLAS_STATUS_INVALID_VALUE;
    if (g.ldc < (g.m > 1 ? g.m : 1)) return CUBLAS_STATUS_INVALID_VALUE;
    if (g.batch < 0) return CUBLAS_STATUS_INVALID_VALUE;
    if (g.alpha == nullptr || g.beta == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
    return CUBLAS_STATUS_SUCCESS;
}

struct Snapshot {
    CUstream stream;
    cublasPointerMode_t pointer_mode;
    unsigned math_mode;
    bool tf32_disabled;
};

Snapshot snapshot(HandleState& h) {
    std::lock_guard<std::mutex> lock(h.mu);
    return Snapshot{h.stream, h.pointer_mode, h.math_mode, h.tf32_disabled};
}

// Checks what remains of the documented rules, returns early where cuBLAS does no work, and queues
// the GEMM on the handle's stream. An empty GEMM (m == 0, n == 0 or batchCount == 0) queues nothing.
cublasStatus_t submit(const GemmCall& g, const Snapshot& s, Rounding rounding) {
    const bool device_scalars = s.pointer_mode == CUBLAS_POINTER_MODE_DEVICE;
    float alpha = 0.0f, beta = 0.0f;
    if (!device_scalars) {
        std::memcpy(&alpha, g.alpha, sizeof alpha);
        std::memcpy(&beta, g.beta, sizeof beta);
        // "if C is NULL when beta is not zero" (2.7.1, 2.8.12); a device beta is unknown until it runs.
        if (g.C == nullptr && beta != 0.0f) return CUBLAS_STATUS_INVALID_VALUE;
    }
    if (g.m == 0 || g.n == 0 || g.batch == 0) return CUBLAS_STATUS_SUCCESS;

    GemmWork* w = new (std::nothrow) GemmWork{
        g.api,
        g.transa != CUBLAS_OP_N,
        g.transb != CUBLAS_OP_N,
        g.m, g.n, g.k, g.lda, g.ldb, g.ldc,
        g.stride_a, g.stride_b, g.stride_c,
        g.batch,
        reinterpret_cast<uintptr_t>(g.A), reinterpret_cast<uintptr_t>(g.B), reinterpret_cast<uintptr_t>(g.C),
        rounding,
        device_scalars,
        alpha, beta,
        reinterpret_cast<uintptr_t>(g.alpha), reinterpret_cast<uintptr_t>(g.beta)};
    if (w == nullptr) return CUBLAS_STATUS_ALLOC_FAILED;
    const CUresult r = bifuse_sim_enqueue(s.stream, g.api, gemm_run, w);
    if (r != CUDA_SUCCESS) {
        delete w;  // not queued: the caller still owns it (sim_ext.h)
        // "CUBLAS_STATUS_EXECUTION_FAILED: the function failed to launch on the GPU" (2.7.1, 2.8.12):
        // what a kernel launch into a context with a sticky error, or onto a foreign stream, gives.
        sim_log("%s: could not queue the GEMM on stream %p: %s (%d): CUBLAS_STATUS_EXECUTION_FAILED", g.api,
                static_cast<void*>(s.stream), cu_result_name(r), static_cast<int>(r));
        return CUBLAS_STATUS_EXECUTION_FAILED;
    }
    return CUBLAS_STATUS_SUCCESS;
}

// The arithmetic of the typed single-precision GEMMs, from the handle's math mode (cuBLAS docs,
// 2.2.10 cublasMath_t): CUBLAS_TF32_TENSOR_OP_MATH rounds inputs to TF32 (round to nearest even),
// the deprecated CUBLAS_TENSOR_OP_MATH makes single-precision GEMMs use CUBLAS_COMPUTE_32F_FAST_16F,
// the default, pedantic and BF16x9-emulated modes keep FP32 (BF16x9 emulates FP32 accuracy).
Rounding typed_rounding(const Snapshot& s) {
    switch (s.math_mode & 7u) {
        case CUBLAS_TF32_TENSOR_OP_MATH: return s.tf32_disabled ? Rounding::None : Rounding::TF32;
        case CUBLAS_TENSOR_OP_MATH: return kHaveFp16 ? Rounding::FP16 : Rounding::None;
        default: return Rounding::None;
    }
}

bool is_algo(int algo) {
    return algo == CUBLAS_GEMM_DEFAULT || (algo >= CUBLAS_GEMM_ALGO0 && algo <= CUBLAS_GEMM_ALGO23) ||
           (algo >= CUBLAS_GEMM_DEFAULT_TENSOR_OP && algo <= CUBLAS_GEMM_ALGO15_TENSOR_OP) ||
           algo == CUBLAS_GEMM_AUTOTUNE;
}

bool is_compute_type(int c) {
    switch (c) {
        case CUBLAS_COMPUTE_16F: case CUBLAS_COMPUTE_16F_PEDANTIC:
        case CUBLAS_COMPUTE_32F: case CUBLAS_COMPUTE_32F_PEDANTIC:
        case CUBLAS_COMPUTE_32F_FAST_16F: case CUBLAS_COMPUTE_32F_FAST_16BF: case CUBLAS_COMPUTE_32F_FAST_TF32:
        case CUBLAS_COMPUTE_32F_EMULATED_16BFX9:
        case CUBLAS_COMPUTE_64F: case CUBLAS_COMPUTE_64F_PEDANTIC: case CUBLAS_COMPUTE_64F_EMULATED_FIXEDPOINT:
        case CUBLAS_COMPUTE_32I: case CUBLAS_COMPUTE_32I_PEDANTIC:
            return true;
        default:
            return false;
    }
}

// The Ex GEMMs' type rules (cuBLAS docs, 2.8.12 cublasGemmEx() and 2.8.14 cublasGemmStridedBatchedEx()):
// a computeType or algo that is not one of its enumerants is CUBLAS_STATUS_INVALID_VALUE ("if ...
// algo or computeType is not supported"); a combination of Atype, Btype, Ctype and computeType outside
// the supported table is CUBLAS_STATUS_NOT_SUPPORTED. This stand-in implements only the table's
// CUDA_R_32F rows, so every other data type is NOT_SUPPORTED too, and so is CUBLAS_COMPUTE_32F_FAST_16F
// when the compiler has no _Float16. With float data:
//   32F, 32F_PEDANTIC, 32F_EMULATED_16BFX9  FP32 operands (BF16x9 emulates FP32 accuracy)
//   32F_FAST_TF32                           operands rounded to TF32 (2.2.11: "input conversions round
//                                           to nearest even"), FP32 under NVIDIA_TF32_OVERRIDE=0
//   32F_FAST_16BF                           operands rounded to bfloat16
//   32F_FAST_16F                            operands rounded to half precision
// The compute type decides, not the math mode (2.2.11: 32F uses "precisions of at least 32-bits"),
// except that an algo of the deprecated *_TENSOR_OP range (99..115) allows FAST_16F kernels for
// single precision (2.2.9), which the stand-in then uses unless the compute type is PEDANTIC.
cublasStatus_t ex_rounding(cudaDataType atype, cudaDataType btype, cudaDataType ctype, cublasComputeType_t compute,
                           cublasGemmAlgo_t algo, const Snapshot& s, Rounding* out) {
    const int c = static_cast<int>(compute), al = static_cast<int>(algo);
    if (!is_compute_type(c) || !is_algo(al)) return CUBLAS_STATUS_INVALID_VALUE;
    if (static_cast<int>(atype) != CUDA_R_32F || static_cast<int>(btype) != CUDA_R_32F ||
        static_cast<int>(ctype) != CUDA_R_32F)
        return CUBLAS_STATUS_NOT_SUPPORTED;
    const bool tensor_op_algo = al >= CUBLAS_GEMM_DEFAULT_TENSOR_OP && al <= CUBLAS_GEMM_ALGO15_TENSOR_OP;
    switch (c) {
        case CUBLAS_COMPUTE_32F_PEDANTIC:
        case CUBLAS_COMPUTE_32F_EMULATED_16BFX9:
            *out = Rounding::None;
            break;
        case CUBLAS_COMPUTE_32F:
            *out = tensor_op_algo && kHaveFp16 ? Rounding::FP16 : Rounding::None;
            break;
        case CUBLAS_COMPUTE_32F_FAST_TF32:
            *out = tensor_op_algo && kHaveFp16 ? Rounding::FP16 : s.tf32_disabled ? Rounding::None : Rounding::TF32;
            break;
        case CUBLAS_COMPUTE_32F_FAST_16BF:
            *out = Rounding::BF16;
            break;
        case CUBLAS_COMPUTE_32F_FAST_16F:
            if (!kHaveFp16) return CUBLAS_STATUS_NOT_SUPPORTED;
            *out = Rounding::FP16;
            break;
        default:  // 16F, 32I and 64F compute types need 16F, 8I or 64F data
            return CUBLAS_STATUS_NOT_SUPPORTED;
    }
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t typed_gemm(cublasHandle_t handle, const GemmCall& g) {
    std::shared_ptr<HandleState> h = lookup(handle);
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (cublasStatus_t st = check_gemm(g)) return st;
    const Snapshot s = snapshot(*h);
    return submit(g, s, typed_rounding(s));
}

cublasStatus_t ex_gemm(cublasHandle_t handle, const GemmCall& g, cudaDataType atype, cudaDataType btype,
                       cudaDataType ctype, cublasComputeType_t compute, cublasGemmAlgo_t algo) {
    std::shared_ptr<HandleState> h = lookup(handle);
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (cublasStatus_t st = check_gemm(g)) return st;
    const Snapshot s = snapshot(*h);
    Rounding rounding;
    if (cublasStatus_t st = ex_rounding(atype, btype, ctype, compute, algo, s, &rounding)) return st;
    return submit(g, s, rounding);
}

}  // namespace

// ---- helper functions (cuBLAS docs, 2.4 cuBLAS Helper Function Reference) ------------------------

// cuBLAS docs, 2.4.1 cublasCreate(): INVALID_VALUE when handle is NULL; NOT_INITIALIZED when "the CUDA
// Runtime initialization failed", which is what having no current context to tie the handle to means
// here (2.1.2: the handle is tied to the context current at creation); ALLOC_FAILED without memory.
CUBLASAPI cublasStatus_t cublasCreate_v2(cublasHandle_t* handle) {
    if (handle == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
    CUcontext ctx = nullptr;
    if (cuCtxGetCurrent(&ctx) != CUDA_SUCCESS || ctx == nullptr) {
        bifuse_sim_log("cublasCreate_v2: no current CUDA context: CUBLAS_STATUS_NOT_INITIALIZED");
        return CUBLAS_STATUS_NOT_INITIALIZED;
    }
    try {
        auto state = std::make_shared<HandleState>();
        const char* override_tf32 = std::getenv("NVIDIA_TF32_OVERRIDE");
        state->tf32_disabled = override_tf32 != nullptr && std::strcmp(override_tf32, "0") == 0;
        Registry& r = registry();
        uintptr_t token;
        {
            std::lock_guard<std::mutex> lock(r.mu);
            // Distinctive, never-null, never-reused values; nothing dereferences them.
            token = (static_cast<uintptr_t>(0xCB1A5) << 28) + (r.next_id++ << 4);
            r.live.emplace(token, std::move(state));
        }
        *handle = reinterpret_cast<cublasHandle_t>(token);
    } catch (const std::bad_alloc&) {
        return CUBLAS_STATUS_ALLOC_FAILED;
    }
    return CUBLAS_STATUS_SUCCESS;
}

// cuBLAS docs, 2.4.2 cublasDestroy(): NOT_INITIALIZED for a handle that is not live. Destroying
// "will implicitly call cudaDeviceSynchronize()", so it waits for the current context's work (its
// result is for the next synchronizing call to report, not for this one).
CUBLASAPI cublasStatus_t cublasDestroy_v2(cublasHandle_t handle) {
    {
        Registry& r = registry();
        std::lock_guard<std::mutex> lock(r.mu);
        if (r.live.erase(reinterpret_cast<uintptr_t>(handle)) == 0) return CUBLAS_STATUS_NOT_INITIALIZED;
    }
    CUcontext ctx = nullptr;
    if (cuCtxGetCurrent(&ctx) == CUDA_SUCCESS && ctx != nullptr) (void)cuCtxSynchronize();
    return CUBLAS_STATUS_SUCCESS;
}

// cuBLAS docs, 2.4.3 cublasGetVersion(): INVALID_VALUE when version is NULL; the handle may be NULL.
// The number is major*10000 + minor*100 + patch, as CUBLAS_VERSION is defined.
CUBLASAPI cublasStatus_t cublasGetVersion_v2(cublasHandle_t /*handle*/, int* version) {
    if (version == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
    *version = kVersionMajor * 10000 + kVersionMinor * 100 + kVersionPatch;
    return CUBLAS_STATUS_SUCCESS;
}

// cuBLAS docs, 2.4.4 cublasGetProperty() (types from 2.3.5 libraryPropertyType_t): INVALID_VALUE for an
// unknown type or a NULL value.
CUBLASAPI cublasStatus_t cublasGetProperty(libraryPropertyType type, int* value) {
    if (value == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
    switch (static_cast<int>(type)) {
        case MAJOR_VERSION: *value = kVersionMajor; return CUBLAS_STATUS_SUCCESS;
        case MINOR_VERSION: *value = kVersionMinor; return CUBLAS_STATUS_SUCCESS;
        case PATCH_LEVEL: *value = kVersionPatch; return CUBLAS_STATUS_SUCCESS;
        default: return CUBLAS_STATUS_INVALID_VALUE;
    }
}

// cuBLAS docs, 2.4.5 cublasGetStatusName(): the enumerant's name.
CUBLASAPI const char* cublasGetStatusName(cublasStatus_t status) {
    switch (static_cast<int>(status)) {
        case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
        case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
        case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
        case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
        case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
        case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
        case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
        case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
        case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
        case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
        default: return "CUBLAS_STATUS_UNKNOWN";
    }
}

// cuBLAS docs, 2.4.6 cublasGetStatusString(): a description (the meanings of 2.2.2, in short).
CUBLASAPI const char* cublasGetStatusString(cublasStatus_t status) {
    switch (static_cast<int>(status)) {
        case CUBLAS_STATUS_SUCCESS: return "success";
        case CUBLAS_STATUS_NOT_INITIALIZED: return "the cuBLAS library was not initialized";
        case CUBLAS_STATUS_ALLOC_FAILED: return "resource allocation failed inside the cuBLAS library";
        case CUBLAS_STATUS_INVALID_VALUE: return "an unsupported value or parameter was passed to the function";
        case CUBLAS_STATUS_ARCH_MISMATCH: return "the function requires a feature absent from the device architecture";
        case CUBLAS_STATUS_MAPPING_ERROR: return "an access to GPU memory space failed";
        case CUBLAS_STATUS_EXECUTION_FAILED: return "the GPU program failed to execute";
        case CUBLAS_STATUS_INTERNAL_ERROR: return "an internal cuBLAS operation failed";
        case CUBLAS_STATUS_NOT_SUPPORTED: return "the functionality requested is not supported";
        case CUBLAS_STATUS_LICENSE_ERROR: return "the functionality requested requires a license";
        default: return "unknown cuBLAS status";
    }
}

// cuBLAS docs, 2.4.7 cublasSetStream(): NOT_INITIALIZED for a handle that is not live. The stream is
// not checked here (cuBLAS does not either); a stream of another context fails when work is queued.
// NULL (and CU_STREAM_LEGACY, CU_STREAM_PER_THREAD) pass through to the driver as they are.
CUBLASAPI cublasStatus_t cublasSetStream_v2(cublasHandle_t handle, cudaStream_t stream) {
    std::shared_ptr<HandleState> h = lookup(handle);
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    std::lock_guard<std::mutex> lock(h->mu);
    h->stream = stream;  // also "resets the cuBLAS library workspace", which the stand-in does not use
    return CUBLAS_STATUS_SUCCESS;
}

// cuBLAS docs, 2.4.9 cublasGetStream(): NOT_INITIALIZED, or INVALID_VALUE when streamId is NULL.
CUBLASAPI cublasStatus_t cublasGetStream_v2(cublasHandle_t handle, cudaStream_t* stream) {
    std::shared_ptr<HandleState> h = lookup(handle);
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (stream == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
    std::lock_guard<std::mutex> lock(h->mu);
    *stream = h->stream;
    return CUBLAS_STATUS_SUCCESS;
}

// cuBLAS docs, 2.4.8 cublasSetWorkspace(): NOT_INITIALIZED, or INVALID_VALUE when the workspace pointer
// is not aligned to at least 256 bytes. The stand-in needs no workspace, so an accepted one is unused.
CUBLASAPI cublasStatus_t cublasSetWorkspace_v2(cublasHandle_t handle, void* workspace, size_t /*bytes*/) {
    std::shared_ptr<HandleState> h = lookup(handle);
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (reinterpret_cast<uintptr_t>(workspace) % 256 != 0) return CUBLAS_STATUS_INVALID_VALUE;
    return CUBLAS_STATUS_SUCCESS;
}

// cuBLAS docs, 2.4.10 cublasGetPointerMode(): NOT_INITIALIZED, or INVALID_VALUE when mode is NULL.
CUBLASAPI cublasStatus_t cublasGetPointerMode_v2(cublasHandle_t handle, cublasPointerMode_t* mode) {
    std::shared_ptr<HandleState> h = lookup(handle);
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (mode == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
    std::lock_guard<std::mutex> lock(h->mu);
    *mode = h->pointer_mode;
    return CUBLAS_STATUS_SUCCESS;
}

// cuBLAS docs, 2.4.11 cublasSetPointerMode(): NOT_INITIALIZED, or INVALID_VALUE for a mode other than
// HOST or DEVICE. In device mode alpha and beta are read from device memory when the GEMM runs
// (2.1.5), and checked like the matrices.
CUBLASAPI cublasStatus_t cublasSetPointerMode_v2(cublasHandle_t handle, cublasPointerMode_t mode) {
    std::shared_ptr<HandleState> h = lookup(handle);
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    const int m = static_cast<int>(mode);
    if (m != CUBLAS_POINTER_MODE_HOST && m != CUBLAS_POINTER_MODE_DEVICE) return CUBLAS_STATUS_INVALID_VALUE;
    std::lock_guard<std::mutex> lock(h->mu);
    h->pointer_mode = static_cast<cublasPointerMode_t>(m);
    return CUBLAS_STATUS_SUCCESS;
}

// cuBLAS docs, 2.4.22 cublasSetMathMode(): NOT_INITIALIZED, or INVALID_VALUE for a value that is not a
// combination of the 2.2.10 modes: one single-precision mode (DEFAULT, TENSOR_OP, PEDANTIC, TF32 or
// FP32_EMULATED_BF16X9) with the FP64_EMULATED_FIXEDPOINT and DISALLOW_REDUCED_PRECISION_REDUCTION
// flags; the deprecated TENSOR_OP mode does not combine with anything.
CUBLASAPI cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode) {
    std::shared_ptr<HandleState> h = lookup(handle);
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    const unsigned m = static_cast<unsigned>(mode);
    const unsigned flags = CUBLAS_FP64_EMULATED_FIXEDPOINT_MATH | CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION;
    const unsigned single = m & ~flags;
    if (single > CUBLAS_FP32_EMULATED_BF16X9_MATH) return CUBLAS_STATUS_INVALID_VALUE;
    if (single == CUBLAS_TENSOR_OP_MATH && m != CUBLAS_TENSOR_OP_MATH) return CUBLAS_STATUS_INVALID_VALUE;
    std::lock_guard<std::mutex> lock(h->mu);
    h->math_mode = m;
    return CUBLAS_STATUS_SUCCESS;
}

// cuBLAS docs, 2.4.23 cublasGetMathMode(): NOT_INITIALIZED, or INVALID_VALUE when mode is NULL.
CUBLASAPI cublasStatus_t cublasGetMathMode(cublasHandle_t handle, cublasMath_t* mode) {
    std::shared_ptr<HandleState> h = lookup(handle);
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (mode == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
    std::lock_guard<std::mutex> lock(h->mu);
    *mode = static_cast<cublasMath_t>(h->math_mode);
    return CUBLAS_STATUS_SUCCESS;
}

// ---- GEMMs ----------------------------------------------------------------------------------------

// cuBLAS docs, 2.7.1 cublas<t>gemm(): C = alpha op(A) op(B) + beta C, column-major, op(A) m×k, op(B)
// k×n. The arithmetic follows the handle's math mode (2.2.10). Errors: see check_gemm and submit.
CUBLASAPI cublasStatus_t cublasSgemm_v2(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb,
                                        int m, int n, int k, const float* alpha, const float* A, int lda,
                                        const float* B, int ldb, const float* beta, float* C, int ldc) {
    return typed_gemm(handle, GemmCall{"cublasSgemm_v2", transa, transb, m, n, k, alpha, A, lda, 0, B, ldb, 0, beta,
                                       C, ldc, 0, 1});
}

// cuBLAS docs, 2.7.4 cublas<t>gemmStridedBatched(): batchCount GEMMs, the i-th on A + i*strideA,
// B + i*strideB, C + i*strideC (strides in elements).
CUBLASAPI cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t handle, cublasOperation_t transa,
                                                   cublasOperation_t transb, int m, int n, int k, const float* alpha,
                                                   const float* A, int lda, long long int strideA, const float* B,
                                                   int ldb, long long int strideB, const float* beta, float* C,
                                                   int ldc, long long int strideC, int batchCount) {
    return typed_gemm(handle, GemmCall{"cublasSgemmStridedBatched", transa, transb, m, n, k, alpha, A, lda, strideA, B,
                                       ldb, strideB, beta, C, ldc, strideC, batchCount});
}

// cuBLAS docs, 2.8.12 cublasGemmEx(): the GEMM with explicit data and compute types (see ex_rounding).
CUBLASAPI cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb,
                                      int m, int n, int k, const void* alpha, const void* A, cudaDataType Atype,
                                      int lda, const void* B, cudaDataType Btype, int ldb, const void* beta, void* C,
                                      cudaDataType Ctype, int ldc, cublasComputeType_t computeType,
                                      cublasGemmAlgo_t algo) {
    return ex_gemm(handle, GemmCall{"cublasGemmEx", transa, transb, m, n, k, alpha, A, lda, 0, B, ldb, 0, beta, C, ldc,
                                    0, 1},
                   Atype, Btype, Ctype, computeType, algo);
}

// cuBLAS docs, 2.8.14 cublasGemmStridedBatchedEx(): cublasGemmEx over batchCount strided instances.
CUBLASAPI cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t handle, cublasOperation_t transa,
                                                    cublasOperation_t transb, int m, int n, int k, const void* alpha,
                                                    const void* A, cudaDataType Atype, int lda, long long int strideA,
                                                    const void* B, cudaDataType Btype, int ldb, long long int strideB,
                                                    const void* beta, void* C, cudaDataType Ctype, int ldc,
                                                    long long int strideC, int batchCount,
                                                    cublasComputeType_t computeType, cublasGemmAlgo_t algo) {
    return ex_gemm(handle, GemmCall{"cublasGemmStridedBatchedEx", transa, transb, m, n, k, alpha, A, lda, strideA, B,
                                    ldb, strideB, beta, C, ldc, strideC, batchCount},
                   Atype, Btype, Ctype, computeType, algo);
}
