// Self-test of the simulator's cuBLAS stand-in (native-build/sim/cublas.cpp, libcublas.so.13), through
// the CUDA driver API and the cuBLAS C ABI only, as a program linked against the real libraries would
// use them. Every numeric case is worked out by hand: the expected numbers are written below, never
// computed by a second GEMM (the large cases check a closed form). Prints "pass <name>" or
// "FAIL <name>: ..." per case, then "N passed, M failed"; exits 1 on any failure.
//
// Run it against the simulator's driver (build/sim/libcuda.so.1). The last case leaves the context
// with a sticky CUDA_ERROR_ILLEGAL_ADDRESS, so it has to stay last; the test then destroys its streams
// and releases the primary context, so the driver's stream workers are gone before the process exits.
#include <cuda.h>
#include <library_types.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

// The cuBLAS declarations this test needs (no cuBLAS header exists here), with NVIDIA's values.
extern "C" {
typedef int cublasStatus_t;
typedef struct cublasContext* cublasHandle_t;
typedef struct CUstream_st* cudaStream_t;
typedef int cublasOperation_t;
typedef int cublasPointerMode_t;
typedef int cublasMath_t;
typedef int cublasComputeType_t;
typedef int cublasGemmAlgo_t;

cublasStatus_t cublasCreate_v2(cublasHandle_t* handle);
cublasStatus_t cublasDestroy_v2(cublasHandle_t handle);
cublasStatus_t cublasGetVersion_v2(cublasHandle_t handle, int* version);
cublasStatus_t cublasGetProperty(libraryPropertyType type, int* value);
const char* cublasGetStatusName(cublasStatus_t status);
const char* cublasGetStatusString(cublasStatus_t status);
cublasStatus_t cublasSetStream_v2(cublasHandle_t handle, cudaStream_t stream);
cublasStatus_t cublasGetStream_v2(cublasHandle_t handle, cudaStream_t* stream);
cublasStatus_t cublasSetWorkspace_v2(cublasHandle_t handle, void* workspace, size_t bytes);
cublasStatus_t cublasSetPointerMode_v2(cublasHandle_t handle, cublasPointerMode_t mode);
cublasStatus_t cublasGetPointerMode_v2(cublasHandle_t handle, cublasPointerMode_t* mode);
cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode);
cublasStatus_t cublasGetMathMode(cublasHandle_t handle, cublasMath_t* mode);
cublasStatus_t cublasSgemm_v2(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,
                              int k, const float* alpha, const float* A, int lda, const float* B, int ldb,
                              const float* beta, float* C, int ldc);
cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb,
                                         int m, int n, int k, const float* alpha, const float* A, int lda,
                                         long long int strideA, const float* B, int ldb, long long int strideB,
                                         const float* beta, float* C, int ldc, long long int strideC, int batchCount);
cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,
                            int k, const void* alpha, const void* A, cudaDataType Atype, int lda, const void* B,
                            cudaDataType Btype, int ldb, const void* beta, void* C, cudaDataType Ctype, int ldc,
                            cublasComputeType_t computeType, cublasGemmAlgo_t algo);
cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb,
                                          int m, int n, int k, const void* alpha, const void* A, cudaDataType Atype,
                                          int lda, long long int strideA, const void* B, cudaDataType Btype, int ldb,
                                          long long int strideB, const void* beta, void* C, cudaDataType Ctype,
                                          int ldc, long long int strideC, int batchCount,
                                          cublasComputeType_t computeType, cublasGemmAlgo_t algo);
}

namespace {

constexpr int OP_N = 0, OP_T = 1, OP_C = 2, OP_CONJG = 3;
constexpr int PTR_HOST = 0, PTR_DEVICE = 1;
constexpr int MATH_DEFAULT = 0, MATH_TENSOR_OP = 1, MATH_PEDANTIC = 2, MATH_TF32 = 3, MATH_DISALLOW_RPR = 16;
constexpr int COMPUTE_16F = 64, COMPUTE_32F = 68, COMPUTE_32F_PEDANTIC = 69, COMPUTE_32F_FAST_16F = 74,
              COMPUTE_32F_FAST_16BF = 75, COMPUTE_32F_FAST_TF32 = 77, COMPUTE_64F = 70, COMPUTE_32I = 72;
constexpr int ALGO_DEFAULT = -1, ALGO_DEFAULT_TENSOR_OP = 99;
constexpr int ST_SUCCESS = 0, ST_NOT_INITIALIZED = 1, ST_INVALID_VALUE = 7, ST_NOT_SUPPORTED = 15;

const float NaN = std::nanf("");
constexpr float S = 99.0f;  // a sentinel the GEMMs must leave alone

int g_passed = 0, g_failed = 0;
CUcontext g_ctx = nullptr;
CUstream g_stream = nullptr;
cublasHandle_t g_h = nullptr;  // bound to g_stream

struct Failure : std::runtime_error {
    using std::runtime_error::runtime_error;
};

std::string fmt(const char* f, ...) __attribute__((format(printf, 1, 2)));
std::string fmt(const char* f, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, f);
    vsnprintf(buf, sizeof buf, f, ap);
    va_end(ap);
    return buf;
}

void cu(CUresult r, const char* what) {
    if (r != CUDA_SUCCESS) throw Failure(fmt("%s returned CUresult %d", what, static_cast<int>(r)));
}

void expect_status(cublasStatus_t got, cublasStatus_t want, const char* what) {
    if (got != want) throw Failure(fmt("%s returned %d (%s), expected %d", what, got, cublasGetStatusName(got), want));
}

// A device buffer of floats.
struct Dev {
    CUdeviceptr ptr = 0;
    size_t count = 0;
    explicit Dev(size_t n) : count(n) { cu(cuMemAlloc_v2(&ptr, n * sizeof(float)), "cuMemAlloc_v2"); }
    explicit Dev(const std::vector<float>& v) : Dev(v.size()) { set(v); }
    ~Dev() { if (ptr) (void)cuMemFree_v2(ptr); }
    Dev(const Dev&) = delete;
    Dev& operator=(const Dev&) = delete;
    void set(const std::vector<float>& v) {
        cu(cuMemcpyHtoD_v2(ptr, v.data(), v.size() * sizeof(float)), "cuMemcpyHtoD_v2");
    }
    std::vector<float> get() const {
        std::vector<float> v(count);
        cu(cuMemcpyDtoH_v2(v.data(), ptr, count * sizeof(float)), "cuMemcpyDtoH_v2");
        return v;
    }
    float* f() const { return reinterpret_cast<float*>(ptr); }
    float* end() const { return f() + count; }  // just past the allocation
};

bool same(float a, float b) {
    if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
    return std::memcmp(&a, &b, sizeof a) == 0;  // exact, and +0 differs from -0
}

void expect_floats(const std::vector<float>& got, const std::vector<float>& want, const char* what) {
    if (got.size() != want.size()) throw Failure(fmt("%s: %zu values, expected %zu", what, got.size(), want.size()));
    for (size_t i = 0; i < got.size(); ++i)
        if (!same(got[i], want[i]))
            throw Failure(fmt("%s: element %zu is %.10g, expected %.10g", what, i, got[i], want[i]));
}

void sync() { cu(cuStreamSynchronize(g_stream), "cuStreamSynchronize"); }

void run(const char* name, const std::function<void()>& body) {
    try {
        body();
        std::printf("pass %s\n", name);
        ++g_passed;
    } catch (const std::exception& e) {
        std::printf("FAIL %s: %s\n", name, e.what());
        ++g_failed;
    }
    std::fflush(stdout);
}

const float one = 1.0f, zero = 0.0f;

// One 1×1 = (1×3)(3×1) GemmEx: sum_p a[p]*b[p] under computeType (and algo).
float dot3(cublasHandle_t h, const std::vector<float>& a, const std::vector<float>& b, int compute,
           int algo = ALGO_DEFAULT) {
    Dev A(a), B(b), C(std::vector<float>{NaN});
    expect_status(cublasGemmEx(h, OP_N, OP_N, 1, 1, static_cast<int>(a.size()), &one, A.f(), CUDA_R_32F, 1, B.f(),
                               CUDA_R_32F, static_cast<int>(b.size()), &zero, C.f(), CUDA_R_32F, 1, compute, algo),
                  ST_SUCCESS, "cublasGemmEx");
    sync();
    return C.get()[0];
}

float sdot3(cublasHandle_t h, const std::vector<float>& a, const std::vector<float>& b) {
    Dev A(a), B(b), C(std::vector<float>{NaN});
    expect_status(cublasSgemm_v2(h, OP_N, OP_N, 1, 1, static_cast<int>(a.size()), &one, A.f(), 1, B.f(),
                                 static_cast<int>(b.size()), &zero, C.f(), 1),
                  ST_SUCCESS, "cublasSgemm_v2");
    sync();
    return C.get()[0];
}

void expect_value(float got, float want, const char* what) {
    if (!same(got, want)) throw Failure(fmt("%s: %.10g, expected %.10g", what, got, want));
}

// Operands near 1 that TF32 (10 explicit significand bits) rounds and FP32 keeps: 1 + 2^-12 is below
// half an ulp (2^-11) and rounds down to 1; 1 + 2^-11 is a tie and rounds to the even 1;
// 1 + 2^-10 + 2^-11 is a tie between 1 + 2^-10 (odd) and 1 + 2^-9 (even) and rounds up. Summed in
// float with the third negated:
//   FP32: (1 + 2^-12) + (1 + 2^-11) - (1 + 2^-10 + 2^-11) = 1 + 2^-12 - 2^-10 = 0.999267578125
//   TF32: 1 + 1 - (1 + 2^-9) = 1 - 2^-9 = 0.998046875 (half precision also keeps 10 bits: the same)
const std::vector<float> kTf32Values = {1.0f + 0x1p-12f, 1.0f + 0x1p-11f, -(1.0f + 0x1p-10f + 0x1p-11f)};
constexpr float kTf32Fp32Sum = 0.999267578125f, kTf32Sum = 0.998046875f;
// The same one bit position further up for BF16 (7 explicit bits):
//   FP32 (and TF32, which holds them exactly): (1 + 2^-9) + (1 + 2^-8) - (1 + 2^-7 + 2^-8) = 1 - 3*2^-9
//   = 0.994140625;  BF16: 1 + 1 - (1 + 2^-6) = 1 - 2^-6 = 0.984375
const std::vector<float> kBf16Values = {1.0f + 0x1p-9f, 1.0f + 0x1p-8f, -(1.0f + 0x1p-7f + 0x1p-8f)};
constexpr float kBf16Fp32Sum = 0.994140625f, kBf16Sum = 0.984375f;
const std::vector<float> kOnes = {1.0f, 1.0f, 1.0f};

// ---- cases ------------------------------------------------------------------------------------------

// C (2×3) = A (2×2, stored with lda = 3: a padding row of NaN that must never be read) · B (2×3);
// C stored with ldc = 3, its padding row a sentinel that must stay, its elements NaN (beta = 0).
//   A = [1 2; 3 4], B = [5 6 7; 8 9 10]  ->  C = [21 24 27; 47 54 61]
void case_nn_padded() {
    Dev A(std::vector<float>{1, 3, NaN, 2, 4, NaN});
    Dev B(std::vector<float>{5, 8, 6, 9, 7, 10});
    Dev C(std::vector<float>{NaN, NaN, S, NaN, NaN, S, NaN, NaN, S});
    expect_status(cublasSgemm_v2(g_h, OP_N, OP_N, 2, 3, 2, &one, A.f(), 3, B.f(), 2, &zero, C.f(), 3), ST_SUCCESS,
                  "cublasSgemm_v2");
    sync();
    expect_floats(C.get(), {21, 47, S, 24, 54, S, 27, 61, S}, "C");
}

// op(A) = Aᵀ, op(B) = Bᵀ: A stored 3×2 (k×m), B stored 2×3 (n×k).
//   A = [1 2; 3 4; 5 6] -> op(A) = [1 3 5; 2 4 6];  B = [1 0 2; 0 1 3] -> op(B) = [1 0; 0 1; 2 3]
//   C = op(A) op(B) = [1+10 3+15; 2+12 4+18] = [11 18; 14 22]
void case_tt() {
    Dev A(std::vector<float>{1, 3, 5, 2, 4, 6});
    Dev B(std::vector<float>{1, 0, 0, 1, 2, 3});
    Dev C(std::vector<float>(4, NaN));
    expect_status(cublasGemmEx(g_h, OP_T, OP_T, 2, 2, 3, &one, A.f(), CUDA_R_32F, 3, B.f(), CUDA_R_32F, 2, &zero,
                               C.f(), CUDA_R_32F, 2, COMPUTE_32F, ALGO_DEFAULT),
                  ST_SUCCESS, "cublasGemmEx");
    sync();
    expect_floats(C.get(), {11, 14, 18, 22}, "C");
}

// op(A) = Aᴴ, which is Aᵀ for real data, with op(B) = B:
//   op(A) = [1 3 5; 2 4 6], B = [1 2; 0 1; 1 0]  ->  C = [1+5 2+3; 2+6 4+4] = [6 5; 8 8]
void case_cn() {
    Dev A(std::vector<float>{1, 3, 5, 2, 4, 6});
    Dev B(std::vector<float>{1, 0, 1, 2, 1, 0});
    Dev C(std::vector<float>(4, NaN));
    expect_status(cublasGemmEx(g_h, OP_C, OP_N, 2, 2, 3, &one, A.f(), CUDA_R_32F, 3, B.f(), CUDA_R_32F, 3, &zero,
                               C.f(), CUDA_R_32F, 2, COMPUTE_32F, ALGO_DEFAULT),
                  ST_SUCCESS, "cublasGemmEx");
    sync();
    expect_floats(C.get(), {6, 8, 5, 8}, "C");
}

// op(A) = A, op(B) = Bᵀ with B stored 3×2 (n×k):
//   A = [1 2; 3 4], B = [1 0; 0 1; 1 1] -> op(B) = [1 0 1; 0 1 1]  ->  C = [1 2 3; 3 4 7]
void case_nt() {
    Dev A(std::vector<float>{1, 3, 2, 4});
    Dev B(std::vector<float>{1, 0, 1, 0, 1, 1});
    Dev C(std::vector<float>(6, NaN));
    expect_status(cublasSgemm_v2(g_h, OP_N, OP_T, 2, 3, 2, &one, A.f(), 2, B.f(), 3, &zero, C.f(), 2), ST_SUCCESS,
                  "cublasSgemm_v2");
    sync();
    expect_floats(C.get(), {1, 3, 2, 4, 3, 7}, "C");
}

// alpha = 2, beta = 3: C = 2 [1 2; 3 4] I + 3 [10 20; 30 40] = [32 64; 96 128]
void case_alpha_beta() {
    Dev A(std::vector<float>{1, 3, 2, 4});
    Dev B(std::vector<float>{1, 0, 0, 1});
    Dev C(std::vector<float>{10, 30, 20, 40});
    const float alpha = 2, beta = 3;
    expect_status(cublasGemmEx(g_h, OP_N, OP_N, 2, 2, 2, &alpha, A.f(), CUDA_R_32F, 2, B.f(), CUDA_R_32F, 2, &beta,
                               C.f(), CUDA_R_32F, 2, COMPUTE_32F, ALGO_DEFAULT),
                  ST_SUCCESS, "cublasGemmEx");
    sync();
    expect_floats(C.get(), {32, 96, 64, 128}, "C");
}

// k == 0: the product is empty, C = beta C: 0.5 [2 6; 4 8] = [1 3; 2 4]; with beta = 0, C = 0 over NaN.
void case_k0() {
    Dev A(1), B(1), C(std::vector<float>{2, 4, 6, 8});
    const float half = 0.5f;
    expect_status(cublasSgemm_v2(g_h, OP_N, OP_N, 2, 2, 0, &one, A.f(), 2, B.f(), 1, &half, C.f(), 2), ST_SUCCESS,
                  "cublasSgemm_v2 (beta 0.5)");
    sync();
    expect_floats(C.get(), {1, 2, 3, 4}, "C = 0.5 C");
    C.set({NaN, NaN, NaN, NaN});
    expect_status(cublasSgemm_v2(g_h, OP_N, OP_N, 2, 2, 0, &one, A.f(), 2, B.f(), 1, &zero, C.f(), 2), ST_SUCCESS,
                  "cublasSgemm_v2 (beta 0)");
    sync();
    expect_floats(C.get(), {0, 0, 0, 0}, "C = 0");
}

// alpha == 0: C = beta C without reading A and B (the reference BLAS rule), so NaN there stays out:
// 2 [1 3; 2 4] = [2 6; 4 8].
void case_alpha0() {
    Dev A(std::vector<float>{NaN, NaN, NaN, NaN}), B(std::vector<float>{NaN, NaN, NaN, NaN});
    Dev C(std::vector<float>{1, 2, 3, 4});
    const float two = 2;
    expect_status(cublasSgemm_v2(g_h, OP_N, OP_N, 2, 2, 2, &zero, A.f(), 2, B.f(), 2, &two, C.f(), 2), ST_SUCCESS,
                  "cublasSgemm_v2");
    sync();
    expect_floats(C.get(), {2, 4, 6, 8}, "C");
}

// Two 2×1 = (2×2)(2×1) GEMMs at strides 5 (A), 3 (B), 4 (C); the gaps hold NaN in the inputs and a
// sentinel in C. A0 = I, b0 = (3, 4) -> (3, 4); A1 = [2 1; 1 2], b1 = (5, 6) -> (16, 17).
void case_strided() {
    Dev A(std::vector<float>{1, 0, 0, 1, NaN, 2, 1, 1, 2});
    Dev B(std::vector<float>{3, 4, NaN, 5, 6});
    Dev C(std::vector<float>(6, S));
    expect_status(cublasGemmStridedBatchedEx(g_h, OP_N, OP_N, 2, 1, 2, &one, A.f(), CUDA_R_32F, 2, 5, B.f(),
                                             CUDA_R_32F, 2, 3, &zero, C.f(), CUDA_R_32F, 2, 4, 2, COMPUTE_32F,
                                             ALGO_DEFAULT),
                  ST_SUCCESS, "cublasGemmStridedBatchedEx");
    sync();
    expect_floats(C.get(), {3, 4, S, S, 16, 17}, "C (Ex)");
    C.set(std::vector<float>(6, S));
    expect_status(cublasSgemmStridedBatched(g_h, OP_N, OP_N, 2, 1, 2, &one, A.f(), 2, 5, B.f(), 2, 3, &zero, C.f(), 2,
                                            4, 2),
                  ST_SUCCESS, "cublasSgemmStridedBatched");
    sync();
    expect_floats(C.get(), {3, 4, S, S, 16, 17}, "C (Sgemm)");
}

void case_tf32() {
    expect_value(dot3(g_h, kTf32Values, kOnes, COMPUTE_32F), kTf32Fp32Sum, "32F");
    expect_value(dot3(g_h, kTf32Values, kOnes, COMPUTE_32F_PEDANTIC), kTf32Fp32Sum, "32F_PEDANTIC");
    expect_value(dot3(g_h, kTf32Values, kOnes, COMPUTE_32F_FAST_TF32), kTf32Sum, "FAST_TF32, A rounded");
    expect_value(dot3(g_h, kOnes, kTf32Values, COMPUTE_32F_FAST_TF32), kTf32Sum, "FAST_TF32, B rounded");
    // 70000 = 2^16 (1 + 69.75/1024): TF32 rounds to 2^16 (1 + 70/1024) = 70016.
    expect_value(dot3(g_h, {70000.0f}, {1.0f}, COMPUTE_32F_FAST_TF32), 70016.0f, "FAST_TF32 of 70000");
}

void case_bf16() {
    expect_value(dot3(g_h, kBf16Values, kOnes, COMPUTE_32F), kBf16Fp32Sum, "32F");
    expect_value(dot3(g_h, kBf16Values, kOnes, COMPUTE_32F_FAST_TF32), kBf16Fp32Sum, "FAST_TF32 (exact)");
    expect_value(dot3(g_h, kBf16Values, kOnes, COMPUTE_32F_FAST_16BF), kBf16Sum, "FAST_16BF, A rounded");
    expect_value(dot3(g_h, kOnes, kBf16Values, COMPUTE_32F_FAST_16BF), kBf16Sum, "FAST_16BF, B rounded");
    // 70000 = 2^16 (1 + 8.71875/128): BF16 rounds to 2^16 (1 + 9/128) = 70144.
    expect_value(dot3(g_h, {70000.0f}, {1.0f}, COMPUTE_32F_FAST_16BF), 70144.0f, "FAST_16BF of 70000");
}

void case_fp16() {
    expect_value(dot3(g_h, kTf32Values, kOnes, COMPUTE_32F_FAST_16F), kTf32Sum, "FAST_16F, A rounded");
    expect_value(dot3(g_h, kOnes, kTf32Values, COMPUTE_32F_FAST_16F), kTf32Sum, "FAST_16F, B rounded");
    // Half precision's largest finite value is 65504; 70000 is past 65520, the midpoint to 2^16, so infinity.
    expect_value(dot3(g_h, {70000.0f}, {1.0f}, COMPUTE_32F_FAST_16F), INFINITY, "FAST_16F of 70000");
    // cuBLAS docs 2.2.9: a *_TENSOR_OP algo allows FAST_16F kernels for single precision.
    expect_value(dot3(g_h, {70000.0f}, {1.0f}, COMPUTE_32F, ALGO_DEFAULT_TENSOR_OP), INFINITY,
                 "32F with CUBLAS_GEMM_DEFAULT_TENSOR_OP");
    expect_value(dot3(g_h, {70000.0f}, {1.0f}, COMPUTE_32F_PEDANTIC, ALGO_DEFAULT_TENSOR_OP), 70000.0f,
                 "32F_PEDANTIC with CUBLAS_GEMM_DEFAULT_TENSOR_OP");
}

void case_math_mode() {
    cublasHandle_t h;
    expect_status(cublasCreate_v2(&h), ST_SUCCESS, "cublasCreate_v2");
    struct Guard {
        cublasHandle_t h;
        ~Guard() { cublasDestroy_v2(h); }
    } guard{h};
    expect_status(cublasSetStream_v2(h, g_stream), ST_SUCCESS, "cublasSetStream_v2");
    cublasMath_t mode = -1;
    expect_status(cublasGetMathMode(h, &mode), ST_SUCCESS, "cublasGetMathMode");
    if (mode != MATH_DEFAULT) throw Failure(fmt("default math mode %d, expected 0", mode));
    expect_value(sdot3(h, kTf32Values, kOnes), kTf32Fp32Sum, "Sgemm, default math");
    expect_status(cublasSetMathMode(h, MATH_TF32), ST_SUCCESS, "cublasSetMathMode(TF32)");
    expect_status(cublasGetMathMode(h, &mode), ST_SUCCESS, "cublasGetMathMode");
    if (mode != MATH_TF32) throw Failure(fmt("math mode %d after setting 3", mode));
    expect_value(sdot3(h, kTf32Values, kOnes), kTf32Sum, "Sgemm, TF32 math");
    // The compute type of the Ex GEMMs decides: 32F keeps FP32 whatever the math mode.
    expect_value(dot3(h, kTf32Values, kOnes, COMPUTE_32F), kTf32Fp32Sum, "GemmEx 32F, TF32 math");
    expect_status(cublasSetMathMode(h, MATH_TF32 | MATH_DISALLOW_RPR), ST_SUCCESS, "cublasSetMathMode(TF32|16)");
    expect_value(sdot3(h, kTf32Values, kOnes), kTf32Sum, "Sgemm, TF32|DISALLOW math");
    expect_status(cublasSetMathMode(h, MATH_TENSOR_OP), ST_SUCCESS, "cublasSetMathMode(TENSOR_OP)");
    expect_value(sdot3(h, {70000.0f}, {1.0f}), INFINITY, "Sgemm, TENSOR_OP math (FAST_16F)");
    expect_status(cublasSetMathMode(h, MATH_PEDANTIC), ST_SUCCESS, "cublasSetMathMode(PEDANTIC)");
    expect_value(sdot3(h, kTf32Values, kOnes), kTf32Fp32Sum, "Sgemm, pedantic math");
    expect_status(cublasSetMathMode(h, 5), ST_INVALID_VALUE, "cublasSetMathMode(5)");
    expect_status(cublasSetMathMode(h, MATH_TENSOR_OP | MATH_DISALLOW_RPR), ST_INVALID_VALUE,
                  "cublasSetMathMode(TENSOR_OP|16)");
    expect_status(cublasGetMathMode(h, nullptr), ST_INVALID_VALUE, "cublasGetMathMode(NULL)");
}

// cuBLAS docs 2.2.11: NVIDIA_TF32_OVERRIDE=0 keeps single precision off TF32 (read when a handle is made).
void case_tf32_override() {
    setenv("NVIDIA_TF32_OVERRIDE", "0", 1);
    cublasHandle_t h;
    const cublasStatus_t st = cublasCreate_v2(&h);
    unsetenv("NVIDIA_TF32_OVERRIDE");
    expect_status(st, ST_SUCCESS, "cublasCreate_v2");
    struct Guard {
        cublasHandle_t h;
        ~Guard() { cublasDestroy_v2(h); }
    } guard{h};
    expect_status(cublasSetStream_v2(h, g_stream), ST_SUCCESS, "cublasSetStream_v2");
    expect_value(dot3(h, kTf32Values, kOnes, COMPUTE_32F_FAST_TF32), kTf32Fp32Sum, "FAST_TF32 under override 0");
    expect_value(dot3(h, kBf16Values, kOnes, COMPUTE_32F_FAST_16BF), kBf16Sum, "FAST_16BF under override 0");
}

// alpha = 2, beta = 0 read from device memory on the case_nn_padded data: C = 2 [21 24 27; 47 54 61].
void case_device_scalars() {
    cublasPointerMode_t mode = -1;
    expect_status(cublasGetPointerMode_v2(g_h, &mode), ST_SUCCESS, "cublasGetPointerMode_v2");
    if (mode != PTR_HOST) throw Failure(fmt("default pointer mode %d, expected 0", mode));
    Dev A(std::vector<float>{1, 3, NaN, 2, 4, NaN});
    Dev B(std::vector<float>{5, 8, 6, 9, 7, 10});
    Dev C(std::vector<float>{NaN, NaN, S, NaN, NaN, S, NaN, NaN, S});
    Dev alpha(std::vector<float>{2}), beta(std::vector<float>{0});
    expect_status(cublasSetPointerMode_v2(g_h, PTR_DEVICE), ST_SUCCESS, "cublasSetPointerMode_v2(DEVICE)");
    const cublasStatus_t st = cublasGemmEx(g_h, OP_N, OP_N, 2, 3, 2, alpha.f(), A.f(), CUDA_R_32F, 3, B.f(), CUDA_R_32F,
                                           2, beta.f(), C.f(), CUDA_R_32F, 3, COMPUTE_32F, ALGO_DEFAULT);
    expect_status(cublasGetPointerMode_v2(g_h, &mode), ST_SUCCESS, "cublasGetPointerMode_v2");
    expect_status(cublasSetPointerMode_v2(g_h, PTR_HOST), ST_SUCCESS, "cublasSetPointerMode_v2(HOST)");
    expect_status(st, ST_SUCCESS, "cublasGemmEx (device scalars)");
    if (mode != PTR_DEVICE) throw Failure(fmt("pointer mode %d after setting DEVICE", mode));
    sync();
    expect_floats(C.get(), {42, 94, S, 48, 108, S, 54, 122, S}, "C");
    expect_status(cublasSetPointerMode_v2(g_h, 2), ST_INVALID_VALUE, "cublasSetPointerMode_v2(2)");
    expect_status(cublasGetPointerMode_v2(g_h, nullptr), ST_INVALID_VALUE, "cublasGetPointerMode_v2(NULL)");
}

// A handle without cublasSetStream works on the default (NULL) stream; cuCtxSynchronize waits for it.
void case_default_stream() {
    cublasHandle_t h;
    expect_status(cublasCreate_v2(&h), ST_SUCCESS, "cublasCreate_v2");
    struct Guard {
        cublasHandle_t h;
        ~Guard() { cublasDestroy_v2(h); }
    } guard{h};
    cudaStream_t s = reinterpret_cast<cudaStream_t>(1);
    expect_status(cublasGetStream_v2(h, &s), ST_SUCCESS, "cublasGetStream_v2");
    if (s != nullptr) throw Failure(fmt("a new handle's stream is %p, expected NULL", static_cast<void*>(s)));
    Dev A(std::vector<float>{1, 3, 2, 4}), B(std::vector<float>{1, 0, 0, 1}), C(std::vector<float>{10, 30, 20, 40});
    const float alpha = 2, beta = 3;
    expect_status(cublasSgemm_v2(h, OP_N, OP_N, 2, 2, 2, &alpha, A.f(), 2, B.f(), 2, &beta, C.f(), 2), ST_SUCCESS,
                  "cublasSgemm_v2");
    cu(cuCtxSynchronize(), "cuCtxSynchronize");
    expect_floats(C.get(), {32, 96, 64, 128}, "C");
    expect_status(cublasSetStream_v2(h, g_stream), ST_SUCCESS, "cublasSetStream_v2");
    expect_status(cublasGetStream_v2(h, &s), ST_SUCCESS, "cublasGetStream_v2");
    if (s != g_stream) throw Failure("cublasGetStream_v2 does not return the stream set");
    expect_status(cublasGetStream_v2(h, nullptr), ST_INVALID_VALUE, "cublasGetStream_v2(NULL)");
}

// Every documented CUBLAS_STATUS_INVALID_VALUE rule of the GEMM pages returns 7 and queues nothing:
// afterwards the stream is clean and C still holds its sentinels. A 2×2×2 GEMM that would succeed,
// each call breaking one rule.
void case_invalid_value() {
    Dev A(std::vector<float>(8, 1)), B(std::vector<float>(8, 1)), C(std::vector<float>(4, S));
    float *a = A.f(), *b = B.f(), *c = C.f();
    struct Bad {
        const char* rule;
        std::function<cublasStatus_t()> call;
    };
    const std::vector<Bad> bad = {
        {"m < 0", [&] { return cublasSgemm_v2(g_h, OP_N, OP_N, -1, 2, 2, &one, a, 2, b, 2, &zero, c, 2); }},
        {"n < 0", [&] { return cublasSgemm_v2(g_h, OP_N, OP_N, 2, -1, 2, &one, a, 2, b, 2, &zero, c, 2); }},
        {"k < 0", [&] { return cublasSgemm_v2(g_h, OP_N, OP_N, 2, 2, -1, &one, a, 2, b, 2, &zero, c, 2); }},
        {"transa CONJG", [&] { return cublasSgemm_v2(g_h, OP_CONJG, OP_N, 2, 2, 2, &one, a, 2, b, 2, &zero, c, 2); }},
        {"transb 7", [&] { return cublasSgemm_v2(g_h, OP_N, 7, 2, 2, 2, &one, a, 2, b, 2, &zero, c, 2); }},
        {"lda < m (N)", [&] { return cublasSgemm_v2(g_h, OP_N, OP_N, 2, 2, 2, &one, a, 1, b, 2, &zero, c, 2); }},
        {"lda < k (T)", [&] { return cublasSgemm_v2(g_h, OP_T, OP_N, 2, 2, 3, &one, a, 2, b, 3, &zero, c, 2); }},
        {"ldb < k (N)", [&] { return cublasSgemm_v2(g_h, OP_N, OP_N, 2, 2, 2, &one, a, 2, b, 1, &zero, c, 2); }},
        {"ldb < n (T)", [&] { return cublasSgemm_v2(g_h, OP_N, OP_T, 2, 3, 2, &one, a, 2, b, 2, &zero, c, 2); }},
        {"ldc < m", [&] { return cublasSgemm_v2(g_h, OP_N, OP_N, 2, 2, 2, &one, a, 2, b, 2, &zero, c, 1); }},
        {"lda 0 with m 0", [&] { return cublasSgemm_v2(g_h, OP_N, OP_N, 0, 2, 2, &one, a, 0, b, 2, &zero, c, 1); }},
        {"ldc 0 with m 0", [&] { return cublasSgemm_v2(g_h, OP_N, OP_N, 0, 2, 2, &one, a, 1, b, 2, &zero, c, 0); }},
        {"alpha NULL", [&] { return cublasSgemm_v2(g_h, OP_N, OP_N, 2, 2, 2, nullptr, a, 2, b, 2, &zero, c, 2); }},
        {"beta NULL", [&] { return cublasSgemm_v2(g_h, OP_N, OP_N, 2, 2, 2, &one, a, 2, b, 2, nullptr, c, 2); }},
        {"C NULL, beta 1", [&] { return cublasSgemm_v2(g_h, OP_N, OP_N, 2, 2, 2, &one, a, 2, b, 2, &one, nullptr, 2); }},
        {"GemmEx lda < m",
         [&] {
             return cublasGemmEx(g_h, OP_N, OP_N, 2, 2, 2, &one, a, CUDA_R_32F, 1, b, CUDA_R_32F, 2, &zero, c,
                                 CUDA_R_32F, 2, COMPUTE_32F, ALGO_DEFAULT);
         }},
        {"GemmEx computeType 0",
         [&] {
             return cublasGemmEx(g_h, OP_N, OP_N, 2, 2, 2, &one, a, CUDA_R_32F, 2, b, CUDA_R_32F, 2, &zero, c,
                                 CUDA_R_32F, 2, 0, ALGO_DEFAULT);
         }},
        {"GemmEx algo 50",
         [&] {
             return cublasGemmEx(g_h, OP_N, OP_N, 2, 2, 2, &one, a, CUDA_R_32F, 2, b, CUDA_R_32F, 2, &zero, c,
                                 CUDA_R_32F, 2, COMPUTE_32F, 50);
         }},
        {"SgemmStridedBatched batch < 0",
         [&] { return cublasSgemmStridedBatched(g_h, OP_N, OP_N, 2, 2, 2, &one, a, 2, 4, b, 2, 4, &zero, c, 2, 4, -1); }},
        {"SgemmStridedBatched ldb < k",
         [&] { return cublasSgemmStridedBatched(g_h, OP_N, OP_N, 2, 2, 2, &one, a, 2, 4, b, 1, 4, &zero, c, 2, 4, 1); }},
        {"GemmStridedBatchedEx batch < 0",
         [&] {
             return cublasGemmStridedBatchedEx(g_h, OP_N, OP_N, 2, 2, 2, &one, a, CUDA_R_32F, 2, 4, b, CUDA_R_32F, 2,
                                               4, &zero, c, CUDA_R_32F, 2, 4, -1, COMPUTE_32F, ALGO_DEFAULT);
         }},
        {"GemmStridedBatchedEx ldc < m",
         [&] {
             return cublasGemmStridedBatchedEx(g_h, OP_N, OP_N, 2, 2, 2, &one, a, CUDA_R_32F, 2, 4, b, CUDA_R_32F, 2,
                                               4, &zero, c, CUDA_R_32F, 1, 4, 1, COMPUTE_32F, ALGO_DEFAULT);
         }},
    };
    for (const Bad& x : bad) expect_status(x.call(), ST_INVALID_VALUE, x.rule);
    sync();
    expect_floats(C.get(), std::vector<float>(4, S), "C after the rejected calls");
}

// Valid enumerants in a combination outside cuBLAS docs 2.8.12's table, or data types other than
// CUDA_R_32F (which this stand-in does not implement): CUBLAS_STATUS_NOT_SUPPORTED, nothing queued.
void case_not_supported() {
    Dev A(std::vector<float>(4, 1)), B(std::vector<float>(4, 1)), C(std::vector<float>(4, S));
    auto ex = [&](cudaDataType at, cudaDataType ct, int compute) {
        return cublasGemmEx(g_h, OP_N, OP_N, 2, 2, 2, &one, A.f(), at, 2, B.f(), at, 2, &zero, C.f(), ct, 2, compute,
                            ALGO_DEFAULT);
    };
    expect_status(ex(CUDA_R_16F, CUDA_R_32F, COMPUTE_32F), ST_NOT_SUPPORTED, "A, B CUDA_R_16F");
    expect_status(ex(CUDA_R_32F, CUDA_R_64F, COMPUTE_32F), ST_NOT_SUPPORTED, "C CUDA_R_64F");
    expect_status(ex(CUDA_R_32F, CUDA_R_32F, COMPUTE_64F), ST_NOT_SUPPORTED, "64F compute on float");
    expect_status(ex(CUDA_R_32F, CUDA_R_32F, COMPUTE_32I), ST_NOT_SUPPORTED, "32I compute on float");
    expect_status(ex(CUDA_R_32F, CUDA_R_32F, COMPUTE_16F), ST_NOT_SUPPORTED, "16F compute on float");
    expect_status(cublasGemmStridedBatchedEx(g_h, OP_N, OP_N, 2, 2, 2, &one, A.f(), CUDA_R_16BF, 2, 4, B.f(),
                                             CUDA_R_16BF, 2, 4, &zero, C.f(), CUDA_R_16BF, 2, 4, 1, COMPUTE_32F,
                                             ALGO_DEFAULT),
                  ST_NOT_SUPPORTED, "strided CUDA_R_16BF");
    sync();
    expect_floats(C.get(), std::vector<float>(4, S), "C after the rejected calls");
}

// cuBLAS docs 2.4.1, 2.4.2, 2.7.1: a NULL, never-made or destroyed handle is CUBLAS_STATUS_NOT_INITIALIZED,
// and so is creating one with no current context; cublasCreate(NULL) is INVALID_VALUE.
void case_not_initialized() {
    Dev A(std::vector<float>(4, 1)), C(std::vector<float>(4, S));
    expect_status(cublasSgemm_v2(nullptr, OP_N, OP_N, 2, 2, 2, &one, A.f(), 2, A.f(), 2, &zero, C.f(), 2),
                  ST_NOT_INITIALIZED, "cublasSgemm_v2(NULL handle)");
    expect_status(cublasGemmEx(nullptr, OP_N, OP_N, 2, 2, 2, &one, A.f(), CUDA_R_32F, 2, A.f(), CUDA_R_32F, 2, &zero,
                               C.f(), CUDA_R_32F, 2, COMPUTE_32F, ALGO_DEFAULT),
                  ST_NOT_INITIALIZED, "cublasGemmEx(NULL handle)");
    expect_status(cublasSetStream_v2(nullptr, g_stream), ST_NOT_INITIALIZED, "cublasSetStream_v2(NULL handle)");
    expect_status(cublasDestroy_v2(nullptr), ST_NOT_INITIALIZED, "cublasDestroy_v2(NULL handle)");
    cublasHandle_t h;
    expect_status(cublasCreate_v2(&h), ST_SUCCESS, "cublasCreate_v2");
    expect_status(cublasDestroy_v2(h), ST_SUCCESS, "cublasDestroy_v2");
    expect_status(cublasDestroy_v2(h), ST_NOT_INITIALIZED, "cublasDestroy_v2 twice");
    expect_status(cublasSgemm_v2(h, OP_N, OP_N, 2, 2, 2, &one, A.f(), 2, A.f(), 2, &zero, C.f(), 2),
                  ST_NOT_INITIALIZED, "cublasSgemm_v2(destroyed handle)");
    expect_status(cublasGemmStridedBatchedEx(h, OP_N, OP_N, 2, 2, 2, &one, A.f(), CUDA_R_32F, 2, 0, A.f(), CUDA_R_32F,
                                             2, 0, &zero, C.f(), CUDA_R_32F, 2, 0, 1, COMPUTE_32F, ALGO_DEFAULT),
                  ST_NOT_INITIALIZED, "cublasGemmStridedBatchedEx(destroyed handle)");
    cublasMath_t mode;
    expect_status(cublasGetMathMode(h, &mode), ST_NOT_INITIALIZED, "cublasGetMathMode(destroyed handle)");
    expect_status(cublasSetPointerMode_v2(h, PTR_HOST), ST_NOT_INITIALIZED, "cublasSetPointerMode_v2(destroyed)");
    expect_status(cublasSetWorkspace_v2(h, nullptr, 0), ST_NOT_INITIALIZED, "cublasSetWorkspace_v2(destroyed)");
    expect_status(cublasCreate_v2(nullptr), ST_INVALID_VALUE, "cublasCreate_v2(NULL)");
    cu(cuCtxSetCurrent(nullptr), "cuCtxSetCurrent(NULL)");
    cublasHandle_t h2 = nullptr;
    const cublasStatus_t st = cublasCreate_v2(&h2);
    cu(cuCtxSetCurrent(g_ctx), "cuCtxSetCurrent");
    if (st == ST_SUCCESS) cublasDestroy_v2(h2);
    expect_status(st, ST_NOT_INITIALIZED, "cublasCreate_v2 without a current context");
    sync();
    expect_floats(C.get(), std::vector<float>(4, S), "C after the rejected calls");
}

void case_properties() {
    int major = -1, minor = -1, patch = -1, version = -1;
    expect_status(cublasGetProperty(MAJOR_VERSION, &major), ST_SUCCESS, "cublasGetProperty(MAJOR_VERSION)");
    expect_status(cublasGetProperty(MINOR_VERSION, &minor), ST_SUCCESS, "cublasGetProperty(MINOR_VERSION)");
    expect_status(cublasGetProperty(PATCH_LEVEL, &patch), ST_SUCCESS, "cublasGetProperty(PATCH_LEVEL)");
    if (major != 13 || minor != 0 || patch < 0) throw Failure(fmt("version %d.%d.%d, expected 13.0.x", major, minor, patch));
    expect_status(cublasGetProperty(static_cast<libraryPropertyType>(3), &major), ST_INVALID_VALUE,
                  "cublasGetProperty(3)");
    expect_status(cublasGetProperty(MAJOR_VERSION, nullptr), ST_INVALID_VALUE, "cublasGetProperty(NULL)");
    expect_status(cublasGetVersion_v2(nullptr, &version), ST_SUCCESS, "cublasGetVersion_v2(NULL handle)");
    if (version != major * 10000 + minor * 100 + patch) throw Failure(fmt("cublasGetVersion_v2 gives %d", version));
    expect_status(cublasGetVersion_v2(g_h, nullptr), ST_INVALID_VALUE, "cublasGetVersion_v2(NULL)");
    if (std::strcmp(cublasGetStatusName(7), "CUBLAS_STATUS_INVALID_VALUE") != 0 ||
        std::strcmp(cublasGetStatusName(15), "CUBLAS_STATUS_NOT_SUPPORTED") != 0 ||
        std::strcmp(cublasGetStatusName(0), "CUBLAS_STATUS_SUCCESS") != 0)
        throw Failure("cublasGetStatusName gives the wrong names");
    for (int s : {0, 1, 3, 7, 8, 11, 13, 14, 15, 16, 12345})
        if (cublasGetStatusName(s) == nullptr || cublasGetStatusString(s) == nullptr || !*cublasGetStatusString(s))
            throw Failure(fmt("no name or description for status %d", s));
}

// cuBLAS docs 2.4.8: a workspace must be 256-byte aligned (device allocations are).
void case_workspace() {
    Dev w(1024);
    expect_status(cublasSetWorkspace_v2(g_h, w.f(), 4096), ST_SUCCESS, "cublasSetWorkspace_v2(allocation)");
    expect_status(cublasSetWorkspace_v2(g_h, w.f() + 1, 4092), ST_INVALID_VALUE, "cublasSetWorkspace_v2(misaligned)");
    expect_status(cublasSetWorkspace_v2(g_h, nullptr, 0), ST_SUCCESS, "cublasSetWorkspace_v2(NULL, 0)");
    // The GEMMs still work (the workspace is only accepted).
    Dev A(std::vector<float>{1, 3, 2, 4}), B(std::vector<float>{1, 0, 0, 1}), C(std::vector<float>(4, NaN));
    expect_status(cublasSgemm_v2(g_h, OP_N, OP_N, 2, 2, 2, &one, A.f(), 2, B.f(), 2, &zero, C.f(), 2), ST_SUCCESS,
                  "cublasSgemm_v2");
    sync();
    expect_floats(C.get(), {1, 3, 2, 4}, "C");
}

// Handles used from several threads at once, each with its own stream, and one handle shared by all:
// thread t computes (t+1) I · [1 3; 2 4] = (t+1) [1 3; 2 4], over and over.
void case_threads() {
    constexpr int kThreads = 4, kRounds = 100;
    std::atomic<int> errors{0};
    std::string first_error;
    std::mutex mu;
    auto fail = [&](const std::string& e) {
        std::lock_guard<std::mutex> lock(mu);
        if (errors++ == 0) first_error = e;
    };
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
            try {
                cu(cuCtxSetCurrent(g_ctx), "cuCtxSetCurrent");
                CUstream s;
                cu(cuStreamCreate(&s, 0), "cuStreamCreate");
                cublasHandle_t h;
                expect_status(cublasCreate_v2(&h), ST_SUCCESS, "cublasCreate_v2");
                expect_status(cublasSetStream_v2(h, s), ST_SUCCESS, "cublasSetStream_v2");
                const float d = static_cast<float>(t + 1);
                Dev A(std::vector<float>{d, 0, 0, d}), B(std::vector<float>{1, 3, 2, 4});
                Dev C1(4), C2(4);
                for (int r = 0; r < kRounds; ++r) {
                    expect_status(cublasSgemm_v2(h, OP_N, OP_N, 2, 2, 2, &one, A.f(), 2, B.f(), 2, &zero, C1.f(), 2),
                                  ST_SUCCESS, "cublasSgemm_v2 (own handle)");
                    expect_status(cublasGemmEx(g_h, OP_N, OP_N, 2, 2, 2, &one, A.f(), CUDA_R_32F, 2, B.f(),
                                               CUDA_R_32F, 2, &zero, C2.f(), CUDA_R_32F, 2, COMPUTE_32F, ALGO_DEFAULT),
                                  ST_SUCCESS, "cublasGemmEx (shared handle)");
                }
                cu(cuStreamSynchronize(s), "cuStreamSynchronize");
                sync();
                expect_floats(C1.get(), {d, 3 * d, 2 * d, 4 * d}, "C (own handle)");
                expect_floats(C2.get(), {d, 3 * d, 2 * d, 4 * d}, "C (shared handle)");
                expect_status(cublasDestroy_v2(h), ST_SUCCESS, "cublasDestroy_v2");
                cu(cuStreamDestroy_v2(s), "cuStreamDestroy_v2");
            } catch (const std::exception& e) {
                fail(fmt("thread %d: %s", t, e.what()));
            }
        });
    }
    for (auto& th : threads) th.join();
    if (errors) throw Failure(first_error);
}

// m == 0, n == 0 or batchCount == 0: success and no work, so operands just past their allocations are
// never looked at and the stream stays clean.
void case_quick_return() {
    Dev A(4), B(4), C(4);
    float *a = A.end(), *b = B.end(), *c = C.end();
    expect_status(cublasSgemm_v2(g_h, OP_N, OP_N, 0, 2, 2, &one, a, 1, b, 2, &one, c, 1), ST_SUCCESS, "m == 0");
    expect_status(cublasGemmEx(g_h, OP_N, OP_N, 2, 0, 2, &one, a, CUDA_R_32F, 2, b, CUDA_R_32F, 2, &one, c, CUDA_R_32F,
                               2, COMPUTE_32F, ALGO_DEFAULT),
                  ST_SUCCESS, "n == 0");
    expect_status(cublasGemmStridedBatchedEx(g_h, OP_N, OP_N, 2, 2, 2, &one, a, CUDA_R_32F, 2, 4, b, CUDA_R_32F, 2, 4,
                                             &one, c, CUDA_R_32F, 2, 4, 0, COMPUTE_32F, ALGO_DEFAULT),
                  ST_SUCCESS, "batchCount == 0");
    expect_status(cublasSgemmStridedBatched(g_h, OP_N, OP_N, 2, 2, 2, &one, a, 2, 4, b, 2, 4, &one, c, 2, 4, 0),
                  ST_SUCCESS, "batchCount == 0 (Sgemm)");
    sync();
}

// A large GEMM, for speed and for the tile edges, with a closed-form result:
//   op(A)(i, p) = i % 5 + 1,  op(B)(p, j) = (j % 7 + 1) (p % 3)
//   C(i, j) = (i % 5 + 1)(j % 7 + 1) sum_{p<k} (p % 3) = (i % 5 + 1)(j % 7 + 1) k   for k % 3 == 0
// Every partial sum is an integer below 2^24, so the float result is exact in any order.
void large(int transa, int transb, int m, int n, int k) {
    const int lda = transa == OP_N ? m : k, ldb = transb == OP_N ? k : n;
    std::vector<float> a(static_cast<size_t>(lda) * (transa == OP_N ? k : m));
    std::vector<float> b(static_cast<size_t>(ldb) * (transb == OP_N ? n : k));
    for (int i = 0; i < m; ++i)
        for (int p = 0; p < k; ++p)
            a[transa == OP_N ? i + static_cast<size_t>(p) * lda : p + static_cast<size_t>(i) * lda] =
                static_cast<float>(i % 5 + 1);
    for (int p = 0; p < k; ++p)
        for (int j = 0; j < n; ++j)
            b[transb == OP_N ? p + static_cast<size_t>(j) * ldb : j + static_cast<size_t>(p) * ldb] =
                static_cast<float>((j % 7 + 1) * (p % 3));
    Dev A(a), B(b), C(std::vector<float>(static_cast<size_t>(m) * n, NaN));
    const auto t0 = std::chrono::steady_clock::now();
    expect_status(cublasGemmEx(g_h, transa, transb, m, n, k, &one, A.f(), CUDA_R_32F, lda, B.f(), CUDA_R_32F, ldb,
                               &zero, C.f(), CUDA_R_32F, m, COMPUTE_32F, ALGO_DEFAULT),
                  ST_SUCCESS, "cublasGemmEx");
    sync();
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    const std::vector<float> c = C.get();
    for (int j = 0; j < n; ++j)
        for (int i = 0; i < m; ++i) {
            const float want = static_cast<float>((i % 5 + 1) * (j % 7 + 1) * k);
            const float got = c[i + static_cast<size_t>(j) * m];
            if (!same(got, want)) throw Failure(fmt("C(%d, %d) = %.9g, expected %.9g", i, j, got, want));
        }
    std::printf("  (%c%c %dx%dx%d: %.0f ms)\n", transa == OP_N ? 'N' : 'T', transb == OP_N ? 'N' : 'T', m, n, k, ms);
}

// An operand whose last element lies just past its allocation: the call succeeds (the GEMM is
// queued), the worker finds B outside every allocation, and the next synchronization reports
// CUDA_ERROR_ILLEGAL_ADDRESS (700) as a GPU would. This leaves the context's sticky error set.
void case_illegal_address() {
    Dev A(std::vector<float>{1, 0, 0, 1}), B(std::vector<float>{1, 2, 3, 4}), C(std::vector<float>(4, S));
    expect_status(cublasGemmEx(g_h, OP_N, OP_N, 2, 2, 2, &one, A.f(), CUDA_R_32F, 2, B.f() + 1, CUDA_R_32F, 2, &zero,
                               C.f(), CUDA_R_32F, 2, COMPUTE_32F, ALGO_DEFAULT),
                  ST_SUCCESS, "cublasGemmEx (queued)");
    const CUresult r = cuStreamSynchronize(g_stream);
    if (r != CUDA_ERROR_ILLEGAL_ADDRESS)
        throw Failure(fmt("cuStreamSynchronize returned %d, expected 700 (CUDA_ERROR_ILLEGAL_ADDRESS)", static_cast<int>(r)));
    // With the sticky error set, further GEMMs cannot be queued (cuBLAS docs 2.7.1: EXECUTION_FAILED,
    // "the function failed to launch on the GPU").
    const cublasStatus_t st = cublasGemmEx(g_h, OP_N, OP_N, 2, 2, 2, &one, A.f(), CUDA_R_32F, 2, A.f(), CUDA_R_32F, 2,
                                           &zero, C.f(), CUDA_R_32F, 2, COMPUTE_32F, ALGO_DEFAULT);
    expect_status(st, 13, "cublasGemmEx after the fault");
}

}  // namespace

int main() {
    CUdevice dev = 0;
    try {
        cu(cuInit(0), "cuInit");
        cu(cuDeviceGet(&dev, 0), "cuDeviceGet");
        cu(cuDevicePrimaryCtxRetain(&g_ctx, dev), "cuDevicePrimaryCtxRetain");
        cu(cuCtxSetCurrent(g_ctx), "cuCtxSetCurrent");
        cu(cuStreamCreate(&g_stream, 0), "cuStreamCreate");
        expect_status(cublasCreate_v2(&g_h), ST_SUCCESS, "cublasCreate_v2");
        expect_status(cublasSetStream_v2(g_h, g_stream), ST_SUCCESS, "cublasSetStream_v2");
    } catch (const std::exception& e) {
        std::printf("FAIL setup: %s\n0 passed, 1 failed\n", e.what());
        return 1;
    }

    run("NN, lda > m (NaN padding), ldc > m, beta 0 over NaN C", case_nn_padded);
    run("TT (GemmEx)", case_tt);
    run("CN: conjugate transpose is transpose on real data", case_cn);
    run("NT (Sgemm)", case_nt);
    run("alpha 2, beta 3", case_alpha_beta);
    run("k == 0: C = beta C", case_k0);
    run("alpha == 0: C = beta C, A and B not read", case_alpha0);
    run("strided batched, batch 2, padded strides", case_strided);
    run("FAST_TF32 rounds A and B to TF32 (nearest even)", case_tf32);
    run("FAST_16BF rounds A and B to BF16 (nearest even)", case_bf16);
    run("FAST_16F rounds A and B to half precision", case_fp16);
    run("math modes of the typed GEMMs", case_math_mode);
    run("NVIDIA_TF32_OVERRIDE=0", case_tf32_override);
    run("device pointer mode", case_device_scalars);
    run("default stream", case_default_stream);
    run("INVALID_VALUE rules return 7 and queue nothing", case_invalid_value);
    run("NOT_SUPPORTED type combinations", case_not_supported);
    run("NOT_INITIALIZED handles", case_not_initialized);
    run("version, properties, status names", case_properties);
    run("workspace", case_workspace);
    run("threads", case_threads);
    run("quick return queues nothing", case_quick_return);
    run("64x2400x1200 NN", [] { large(OP_N, OP_N, 64, 2400, 1200); });
    run("64x2400x1200 TN", [] { large(OP_T, OP_N, 64, 2400, 1200); });
    run("64x2400x1200 NT", [] { large(OP_N, OP_T, 64, 2400, 1200); });
    run("66x2401x1200 TT (tile edges)", [] { large(OP_T, OP_T, 66, 2401, 1200); });
    run("operand past its allocation: CUDA_ERROR_ILLEGAL_ADDRESS at the next sync", case_illegal_address);

    // Release what the test made, so the driver's stream workers end before the process does (the
    // context holds the sticky error by now, which does not stop a release).
    cublasDestroy_v2(g_h);
    cuStreamDestroy_v2(g_stream);
    cuDevicePrimaryCtxRelease_v2(dev);
    std::printf("%d passed, %d failed\n", g_passed, g_failed);
    std::fflush(stdout);
    return g_failed == 0 ? 0 : 1;
}
