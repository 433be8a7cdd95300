// Self-test of the simulated cuFFT (native-build/sim/cufft.cpp, libcufft.so.12) through its C API and
// the CUDA driver API only, as an application would use them. Every expected value is worked out by
// hand from the DFT's definition, X_k = sum_j x_j e^{-2 pi i jk/n} (inverse: e^{+...}, unnormalized),
// and written here; nothing is checked against a second FFT. Prints "pass <name>" or
// "FAIL <name>: why" per case, then "N passed, M failed"; exits non-zero on a failure.
//
// The case that faults the context (an output past its allocation: CUDA_ERROR_ILLEGAL_ADDRESS, sticky
// as on a GPU) runs last, and only against the simulated driver (it exports bifuse_sim_describe).
#include <cuda.h>
#include <dlfcn.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

// cuFFT's C API as NVIDIA declares it (no cufft.h on the build machine); enums passed as int.
extern "C" {
typedef int cufftHandle;
typedef int cufftResult;
typedef struct { float x, y; } cufftComplex;
cufftResult cufftCreate(cufftHandle* handle);
cufftResult cufftDestroy(cufftHandle plan);
cufftResult cufftSetStream(cufftHandle plan, CUstream stream);
cufftResult cufftGetVersion(int* version);
cufftResult cufftGetProperty(int type, int* value);
cufftResult cufftPlan1d(cufftHandle* plan, int nx, int type, int batch);
cufftResult cufftPlan2d(cufftHandle* plan, int nx, int ny, int type);
cufftResult cufftPlan3d(cufftHandle* plan, int nx, int ny, int nz, int type);
cufftResult cufftMakePlan1d(cufftHandle plan, int nx, int type, int batch, size_t* workSize);
cufftResult cufftMakePlanMany(cufftHandle plan, int rank, int* n, int* inembed, int istride, int idist, int* onembed,
                              int ostride, int odist, int type, int batch, size_t* workSize);
cufftResult cufftMakePlanMany64(cufftHandle plan, int rank, long long* n, long long* inembed, long long istride,
                                long long idist, long long* onembed, long long ostride, long long odist, int type,
                                long long batch, size_t* workSize);
cufftResult cufftGetSizeMany64(cufftHandle plan, int rank, long long* n, long long* inembed, long long istride,
                               long long idist, long long* onembed, long long ostride, long long odist, int type,
                               long long batch, size_t* workSize);
cufftResult cufftGetSize(cufftHandle handle, size_t* workSize);
cufftResult cufftSetAutoAllocation(cufftHandle plan, int autoAllocate);
cufftResult cufftSetWorkArea(cufftHandle plan, void* workArea);
cufftResult cufftExecC2C(cufftHandle plan, cufftComplex* idata, cufftComplex* odata, int direction);
cufftResult cufftExecR2C(cufftHandle plan, float* idata, cufftComplex* odata);
cufftResult cufftExecC2R(cufftHandle plan, cufftComplex* idata, float* odata);
}

enum {
    SUCCESS = 0, INVALID_PLAN = 1, INVALID_TYPE = 3, INVALID_VALUE = 4, SETUP_FAILED = 7, INVALID_SIZE = 8,
    NO_WORKSPACE = 13
};
enum { R2C = 0x2a, C2R = 0x2c, C2C = 0x29 };
enum { FORWARD = -1, INVERSE = 1 };

namespace {

CUcontext g_ctx;
CUstream g_stream;
std::string g_err;  // the current case's first failure
int g_passed, g_failed;
const double kSqrt2 = std::sqrt(2.0);
const float kNaN = std::nanf("");

bool fail(const std::string& why) {
    if (g_err.empty()) g_err = why;
    return false;
}

bool near(double got, double want, double tol, const char* what, long idx) {
    if (std::fabs(got - want) <= tol) return true;  // NaN fails here too
    char b[256];
    snprintf(b, sizeof b, "%s[%ld] = %.9g, expected %.9g (tolerance %.1g)", what, idx, got, want, tol);
    return fail(b);
}

bool rc_is(int got, int want, const char* call) {
    if (got == want) return true;
    char b[256];
    snprintf(b, sizeof b, "%s returned %d, expected %d", call, got, want);
    return fail(b);
}
#define RC(call, want) rc_is((int)(call), (want), #call)

void run(const char* name, const std::function<void()>& body) {
    g_err.clear();
    body();
    if (g_err.empty()) {
        printf("pass %s\n", name);
        ++g_passed;
    } else {
        printf("FAIL %s: %s\n", name, g_err.c_str());
        ++g_failed;
    }
    fflush(stdout);
}

// Device buffers, freed at scope end.
struct Dev {
    CUdeviceptr p = 0;
    explicit Dev(size_t bytes) {
        if (cuMemAlloc_v2(&p, bytes) != CUDA_SUCCESS) fail("cuMemAlloc failed");
    }
    ~Dev() {
        if (p) cuMemFree_v2(p);
    }
    Dev(const Dev&) = delete;
    Dev& operator=(const Dev&) = delete;
    float* f() const { return (float*)p; }
    cufftComplex* c() const { return (cufftComplex*)p; }
};
template <class T>
void up(const Dev& d, const std::vector<T>& v) {
    if (cuMemcpyHtoD_v2(d.p, v.data(), v.size() * sizeof(T)) != CUDA_SUCCESS) fail("cuMemcpyHtoD failed");
}
template <class T>
std::vector<T> down(const Dev& d, size_t count) {
    std::vector<T> v(count);
    if (cuMemcpyDtoH_v2(v.data(), d.p, count * sizeof(T)) != CUDA_SUCCESS) fail("cuMemcpyDtoH failed");
    return v;
}
bool wait_stream() { return RC(cuStreamSynchronize(g_stream), CUDA_SUCCESS); }

struct Plan {
    cufftHandle h = 0;
    bool ok = false;
    ~Plan() {
        if (ok) cufftDestroy(h);
    }
};
bool plan1d(Plan& p, int n, int type, int batch) {
    p.ok = RC(cufftPlan1d(&p.h, n, type, batch), SUCCESS) && RC(cufftSetStream(p.h, g_stream), SUCCESS);
    return p.ok;
}

// Complex outputs as (re, im) pairs of floats.
bool expect_c(const std::vector<float>& got, long e, double re, double im, double tol, const char* what) {
    return near(got[2 * e], re, tol, what, e) && near(got[2 * e + 1], im, tol, what, e);
}

// R2C of one real vector at length n, returning the n/2+1 coefficients (floats re, im).
std::vector<float> r2c(int n, const std::vector<float>& x, int batch = 1) {
    Plan p;
    if (!plan1d(p, n, R2C, batch)) return {};
    Dev in(x.size() * 4), out((size_t)batch * (n / 2 + 1) * 8);
    up(in, x);
    RC(cufftExecR2C(p.h, in.f(), out.c()), SUCCESS);
    wait_stream();
    return down<float>(out, (size_t)batch * (n / 2 + 1) * 2);
}

std::vector<float> c2r(int n, const std::vector<float>& spec, int batch = 1) {
    Plan p;
    if (!plan1d(p, n, C2R, batch)) return {};
    Dev in(spec.size() * 4), out((size_t)batch * n * 4);
    up(in, spec);
    RC(cufftExecC2R(p.h, in.c(), out.f()), SUCCESS);
    wait_stream();
    return down<float>(out, (size_t)batch * n);
}

// A pure cosine of frequency f: n/2 at bin f (n for f = 0), zero elsewhere.
void check_cosine(int n, int f, double peak_tol, double tol) {
    std::vector<float> x(n);
    for (int j = 0; j < n; ++j) x[j] = (float)std::cos(2 * M_PI * (double)((long)f * j % n) / n);
    auto X = r2c(n, x);
    if (X.empty()) return;
    for (int k = 0; k <= n / 2; ++k) {
        if (k == f) {
            if (!expect_c(X, k, n / 2.0, 0, peak_tol, "X")) return;
        } else if (!expect_c(X, k, 0, 0, tol, "X")) {
            return;
        }
    }
}

// delta at 0: every coefficient 1.
void check_delta(int n) {
    std::vector<float> x(n, 0.0f);
    x[0] = 1;
    auto X = r2c(n, x);
    for (long k = 0; k <= n / 2 && !X.empty(); ++k)
        if (!expect_c(X, k, 1, 0, 1e-6, "X")) return;
}

// The spectrum of the C2R cases, n = 8: X0 = 1, X1 = 2, X2 = i, X3 = 0, X4 = 3. Its unnormalized
// inverse, out_t = 1 + 4 cos(pi t/4) - 2 sin(pi t/2) + 3 (-1)^t.
const std::vector<float> kSpec8 = {1, 0, 2, 0, 0, 1, 0, 0, 3, 0};
const double kOut8[8] = {8, -4 + 2 * kSqrt2, 4, -2 * kSqrt2, 0, -4 - 2 * kSqrt2, 4, 2 * kSqrt2};

void roundtrip(int n, int batch) {
    std::mt19937 rng(1234 + n);
    std::uniform_real_distribution<float> u(-1, 1);
    std::vector<float> x((size_t)n * batch);
    for (auto& v : x) v = u(rng);
    Plan pf, pi;
    if (!plan1d(pf, n, R2C, batch) || !plan1d(pi, n, C2R, batch)) return;
    Dev in(x.size() * 4), spec((size_t)batch * (n / 2 + 1) * 8), back(x.size() * 4);
    up(in, x);
    RC(cufftExecR2C(pf.h, in.f(), spec.c()), SUCCESS);
    RC(cufftExecC2R(pi.h, spec.c(), back.f()), SUCCESS);
    wait_stream();
    auto y = down<float>(back, x.size());
    double worst = 0;
    long at = 0;
    for (size_t i = 0; i < x.size(); ++i) {
        double e = std::fabs(y[i] / (double)n - x[i]);
        if (!(e <= worst)) { worst = e; at = (long)i; }
    }
    near(y[at] / (double)n, x[at], 1e-6, "C2R(R2C(x))/n", at);
}

}  // namespace

int main() {
    if (cuInit(0) != CUDA_SUCCESS) { printf("FAIL setup: cuInit\n0 passed, 1 failed\n"); return 1; }
    CUdevice dev;
    if (cuDeviceGet(&dev, 0) || cuDevicePrimaryCtxRetain(&g_ctx, dev) || cuCtxSetCurrent(g_ctx) ||
        cuStreamCreate(&g_stream, CU_STREAM_DEFAULT)) {
        printf("FAIL setup: no device, context or stream\n0 passed, 1 failed\n");
        return 1;
    }
    const bool simulated = dlsym(RTLD_DEFAULT, "bifuse_sim_describe") != nullptr;

    run("version", [] {
        int v = 0, major = -1, minor = -1, patch = -1, dummy;
        RC(cufftGetVersion(&v), SUCCESS) && near(v, 12000, 0, "cufftGetVersion", 0);
        RC(cufftGetProperty(0, &major), SUCCESS) && near(major, 12, 0, "MAJOR_VERSION", 0);
        RC(cufftGetProperty(1, &minor), SUCCESS) && near(minor, 0, 0, "MINOR_VERSION", 0);
        RC(cufftGetProperty(2, &patch), SUCCESS) && near(patch, 0, 0, "PATCH_LEVEL", 0);
        RC(cufftGetProperty(7, &dummy), INVALID_TYPE);
    });

    // [1, 2, 3, 4]: X0 = 10, X1 = 1 - 2i - 3 + 4i = -2 + 2i, X2 = 1 - 2 + 3 - 4 = -2.
    run("r2c_n4_1234", [] {
        auto X = r2c(4, {1, 2, 3, 4});
        !X.empty() && expect_c(X, 0, 10, 0, 1e-6, "X") && expect_c(X, 1, -2, 2, 1e-6, "X") &&
            expect_c(X, 2, -2, 0, 1e-6, "X");
    });

    run("r2c_n16000_cosine_f1234", [] { check_cosine(16000, 1234, 2e-3, 1e-3); });

    // Batch of two: delta at 0 (all ones) and delta at n/4 (X_k = e^{-i pi k/2} = (-i)^k).
    run("r2c_n16000_deltas_batch2", [] {
        const int n = 16000, h = n / 2 + 1;
        std::vector<float> x(2 * n, 0.0f);
        x[0] = 1;
        x[n + n / 4] = 1;
        auto X = r2c(n, x, 2);
        const double cyc[4][2] = {{1, 0}, {0, -1}, {-1, 0}, {0, 1}};
        for (long k = 0; k < h && !X.empty(); ++k) {
            if (!expect_c(X, k, 1, 0, 1e-6, "X(delta0)")) return;
            if (!expect_c(X, h + k, cyc[k % 4][0], cyc[k % 4][1], 1e-5, "X(delta n/4)")) return;
        }
    });

    run("r2c_n1_n2", [] {
        auto X1 = r2c(1, {5});
        auto X2 = r2c(2, {3, 5});  // [8, -2]
        !X1.empty() && !X2.empty() && expect_c(X1, 0, 5, 0, 0, "X(n=1)") && expect_c(X2, 0, 8, 0, 1e-6, "X(n=2)") &&
            expect_c(X2, 1, -2, 0, 1e-6, "X(n=2)");
    });

    run("c2r_n1_n2", [] {
        auto x1 = c2r(1, {5, 0});
        auto x2 = c2r(2, {8, 0, -2, 0});  // 8 + (-2)(-1)^t: [6, 10]
        !x1.empty() && !x2.empty() && near(x1[0], 5, 0, "x(n=1)", 0) && near(x2[0], 6, 1e-6, "x(n=2)", 0) &&
            near(x2[1], 10, 1e-6, "x(n=2)", 1);
    });

    run("c2r_n8_known_spectrum", [] {
        auto x = c2r(8, kSpec8);
        for (int t = 0; t < 8 && !x.empty(); ++t)
            if (!near(x[t], kOut8[t], 1e-5, "x", t)) return;
    });

    run("c2r_overwrites_input", [] {
        Plan p;
        if (!plan1d(p, 8, C2R, 1)) return;
        Dev in(40), out(32);
        up(in, kSpec8);
        RC(cufftExecC2R(p.h, in.c(), out.f()), SUCCESS);
        wait_stream();
        auto x = down<float>(out, 8);
        for (int t = 0; t < 8; ++t)
            if (!near(x[t], kOut8[t], 1e-5, "x", t)) return;
        auto spoilt = down<float>(in, 10);
        for (int i = 0; i < 10; ++i)
            if (!std::isnan(spoilt[i])) {
                fail("input float " + std::to_string(i) + " reads " + std::to_string(spoilt[i]) +
                     " after the C2R, not NaN");
                return;
            }
    });

    // In place, basic layout: the real rows padded to 2(n/2+1) floats ("Data Layout").
    run("r2c_c2r_in_place_padded", [] {
        Plan pf, pi;
        if (!plan1d(pf, 4, R2C, 1) || !plan1d(pi, 8, C2R, 1)) return;
        Dev a(24), b(40);
        up(a, std::vector<float>{1, 2, 3, 4, kNaN, kNaN});
        up(b, kSpec8);
        RC(cufftExecR2C(pf.h, a.f(), a.c()), SUCCESS);
        RC(cufftExecC2R(pi.h, b.c(), b.f()), SUCCESS);
        wait_stream();
        auto X = down<float>(a, 6);
        auto x = down<float>(b, 8);
        if (!(expect_c(X, 0, 10, 0, 1e-6, "X") && expect_c(X, 1, -2, 2, 1e-6, "X") && expect_c(X, 2, -2, 0, 1e-6, "X")))
            return;
        for (int t = 0; t < 8; ++t)
            if (!near(x[t], kOut8[t], 1e-5, "x", t)) return;
    });

    // Advanced layout, batch 2, idist 6 > n = 4 with NaN in the gaps: rows [1,2,3,4] and [0,1,0,0]
    // (delta at 1: X_k = (-i)^k).
    run("r2c_batch2_idist6_nan_gaps", [] {
        cufftHandle h;
        if (!RC(cufftCreate(&h), SUCCESS)) return;
        long long n[1] = {4}, inembed[1] = {4}, onembed[1] = {3};
        size_t ws = 0;
        if (RC(cufftMakePlanMany64(h, 1, n, inembed, 1, 6, onembed, 1, 3, R2C, 2, &ws), SUCCESS) &&
            RC(cufftSetStream(h, g_stream), SUCCESS)) {
            Dev in(48), out(48);
            up(in, std::vector<float>{1, 2, 3, 4, kNaN, kNaN, 0, 1, 0, 0, kNaN, kNaN});
            RC(cufftExecR2C(h, in.f(), out.c()), SUCCESS);
            wait_stream();
            auto X = down<float>(out, 12);
            expect_c(X, 0, 10, 0, 1e-6, "X") && expect_c(X, 1, -2, 2, 1e-6, "X") && expect_c(X, 2, -2, 0, 1e-6, "X") &&
                expect_c(X, 3, 1, 0, 1e-6, "X") && expect_c(X, 4, 0, -1, 1e-6, "X") && expect_c(X, 5, -1, 0, 1e-6, "X");
        }
        cufftDestroy(h);
    });

    // istride 2, idist 9 (NaN at every hole), ostride 2, odist 7 (holes keep their 777): rows
    // [4,3,2,1] -> [10, 2-2i, 2] and [1,1,1,1] -> [4, 0, 0].
    run("r2c_istride2_ostride2_holes", [] {
        cufftHandle h;
        if (!RC(cufftCreate(&h), SUCCESS)) return;
        int n[1] = {4}, inembed[1] = {4}, onembed[1] = {3};
        size_t ws = 0;
        if (RC(cufftMakePlanMany(h, 1, n, inembed, 2, 9, onembed, 2, 7, R2C, 2, &ws), SUCCESS) &&
            RC(cufftSetStream(h, g_stream), SUCCESS)) {
            std::vector<float> x(18, kNaN);
            const float rows[2][4] = {{4, 3, 2, 1}, {1, 1, 1, 1}};
            for (int b = 0; b < 2; ++b)
                for (int j = 0; j < 4; ++j) x[b * 9 + 2 * j] = rows[b][j];
            std::vector<float> y(2 * 12, 777.0f);  // 12 complex: the extent is 7 + 2*2 + 1
            Dev in(x.size() * 4), out(y.size() * 4);
            up(in, x);
            up(out, y);
            RC(cufftExecR2C(h, in.f(), out.c()), SUCCESS);
            wait_stream();
            auto X = down<float>(out, 24);
            const double want[2][3][2] = {{{10, 0}, {2, -2}, {2, 0}}, {{4, 0}, {0, 0}, {0, 0}}};
            for (int e = 0; e < 12; ++e) {
                int b = e / 7, k = (e % 7) / 2;
                bool used = e % 7 % 2 == 0 && k < 3 && e < 12;
                if (used && !expect_c(X, e, want[b][k][0], want[b][k][1], 1e-6, "X")) break;
                if (!used && !expect_c(X, e, 777, 777, 0, "hole")) break;
            }
        }
        cufftDestroy(h);
    });

    // istride 2, idist 1: two interleaved rows [1,2,3,4] and [4,3,2,1].
    run("r2c_interleaved_istride2_idist1", [] {
        cufftHandle h;
        if (!RC(cufftCreate(&h), SUCCESS)) return;
        long long n[1] = {4}, inembed[1] = {4}, onembed[1] = {3};
        size_t ws = 0;
        if (RC(cufftMakePlanMany64(h, 1, n, inembed, 2, 1, onembed, 1, 3, R2C, 2, &ws), SUCCESS) &&
            RC(cufftSetStream(h, g_stream), SUCCESS)) {
            Dev in(32), out(48);
            up(in, std::vector<float>{1, 4, 2, 3, 3, 2, 4, 1});
            RC(cufftExecR2C(h, in.f(), out.c()), SUCCESS);
            wait_stream();
            auto X = down<float>(out, 12);
            expect_c(X, 0, 10, 0, 1e-6, "X") && expect_c(X, 1, -2, 2, 1e-6, "X") && expect_c(X, 2, -2, 0, 1e-6, "X") &&
                expect_c(X, 3, 10, 0, 1e-6, "X") && expect_c(X, 4, 2, -2, 1e-6, "X") && expect_c(X, 5, 2, 0, 1e-6, "X");
        }
        cufftDestroy(h);
    });

    // C2C n = 4, in place: [1,2,3,4] -> [10, -2+2i, -2, -2-2i]; inverse -> 4 x [1,2,3,4].
    run("c2c_n4_forward_inverse_in_place", [] {
        Plan p;
        if (!plan1d(p, 4, C2C, 1)) return;
        Dev a(32);
        up(a, std::vector<float>{1, 0, 2, 0, 3, 0, 4, 0});
        RC(cufftExecC2C(p.h, a.c(), a.c(), FORWARD), SUCCESS);
        wait_stream();
        auto X = down<float>(a, 8);
        if (!(expect_c(X, 0, 10, 0, 1e-6, "X") && expect_c(X, 1, -2, 2, 1e-6, "X") && expect_c(X, 2, -2, 0, 1e-6, "X") &&
              expect_c(X, 3, -2, -2, 1e-6, "X")))
            return;
        RC(cufftExecC2C(p.h, a.c(), a.c(), INVERSE), SUCCESS);
        wait_stream();
        auto x = down<float>(a, 8);
        for (int j = 0; j < 4; ++j)
            if (!expect_c(x, j, 4.0 * (j + 1), 0, 1e-5, "x")) return;
    });

    // Bluestein at n = 7 (prime), batch 3: delta -> ones; constant 1 -> [7, 0, 0, 0];
    // cos(2 pi 2j/7) -> 3.5 at bin 2.
    run("bluestein_n7_delta_constant_cosine", [] {
        std::vector<float> x(21, 0.0f);
        x[0] = 1;
        for (int j = 0; j < 7; ++j) {
            x[7 + j] = 1;
            x[14 + j] = (float)std::cos(2 * M_PI * 2 * j / 7);
        }
        auto X = r2c(7, x, 3);
        for (int k = 0; k < 4 && !X.empty(); ++k) {
            if (!expect_c(X, k, 1, 0, 1e-6, "X(delta)") || !expect_c(X, 4 + k, k == 0 ? 7 : 0, 0, 1e-6, "X(1)") ||
                !expect_c(X, 8 + k, k == 2 ? 3.5 : 0, 0, 1e-6, "X(cos)"))
                return;
        }
    });

    run("bluestein_n15838_cosine_f100", [] { check_cosine(15838, 100, 2e-3, 1e-3); });
    run("bluestein_n15838_delta", [] { check_delta(15838); });
    run("bluestein_n15999_cosine_f77", [] { check_cosine(15999, 77, 2e-3, 1e-3); });
    run("bluestein_n15999_delta", [] { check_delta(15999); });
    run("prime_n7919_delta", [] { check_delta(7919); });
    run("prime_n7919_constant", [] {
        auto X = r2c(7919, std::vector<float>(7919, 0.5f));  // X0 = 3959.5
        for (int k = 0; k <= 7919 / 2 && !X.empty(); ++k)
            if (!expect_c(X, k, k == 0 ? 3959.5 : 0, 0, 1e-3, "X")) return;
    });

    // Rank 2, 2x2 C2C: [[1,2],[3,4]] -> [[10,-2],[-4,0]]; inverse -> 4 x the input.
    run("rank2_c2c_2x2", [] {
        cufftHandle h;
        if (!RC(cufftPlan2d(&h, 2, 2, C2C), SUCCESS)) return;
        cufftSetStream(h, g_stream);
        Dev a(32), b(32);
        up(a, std::vector<float>{1, 0, 2, 0, 3, 0, 4, 0});
        RC(cufftExecC2C(h, a.c(), b.c(), FORWARD), SUCCESS);
        wait_stream();
        auto X = down<float>(b, 8);
        if (expect_c(X, 0, 10, 0, 1e-6, "X") && expect_c(X, 1, -2, 0, 1e-6, "X") && expect_c(X, 2, -4, 0, 1e-6, "X") &&
            expect_c(X, 3, 0, 0, 1e-6, "X")) {
            RC(cufftExecC2C(h, b.c(), a.c(), INVERSE), SUCCESS);
            wait_stream();
            auto x = down<float>(a, 8);
            for (int j = 0; j < 4; ++j)
                if (!expect_c(x, j, 4.0 * (j + 1), 0, 1e-5, "x")) break;
        }
        cufftDestroy(h);
    });

    // Rank 2, 2x4 R2C: [[1,2,3,4],[0,0,0,0]]: rows [10,-2+2i,-2] and 0, then the column DFT
    // (sum, difference) makes both rows [10,-2+2i,-2]. C2R of that: 8 x the input. The input rows
    // padded by a NaN through inembed {2, 5}.
    run("rank2_r2c_c2r_2x4_inembed", [] {
        cufftHandle hf, hi;
        long long n[2] = {2, 4}, inembed[2] = {2, 5}, onembed[2] = {2, 3};
        size_t ws;
        if (!RC(cufftCreate(&hf), SUCCESS) || !RC(cufftCreate(&hi), SUCCESS)) return;
        if (RC(cufftMakePlanMany64(hf, 2, n, inembed, 1, 10, onembed, 1, 6, R2C, 1, &ws), SUCCESS) &&
            RC(cufftMakePlanMany64(hi, 2, n, nullptr, 1, 0, nullptr, 1, 0, C2R, 1, &ws), SUCCESS)) {
            cufftSetStream(hf, g_stream);
            cufftSetStream(hi, g_stream);
            Dev in(40), spec(48), out(32);
            up(in, std::vector<float>{1, 2, 3, 4, kNaN, 0, 0, 0, 0, kNaN});
            RC(cufftExecR2C(hf, in.f(), spec.c()), SUCCESS);
            wait_stream();
            auto X = down<float>(spec, 12);
            bool ok = true;
            for (int r = 0; r < 2 && ok; ++r)
                ok = expect_c(X, 3 * r, 10, 0, 1e-6, "X") && expect_c(X, 3 * r + 1, -2, 2, 1e-6, "X") &&
                     expect_c(X, 3 * r + 2, -2, 0, 1e-6, "X");
            if (ok) {
                RC(cufftExecC2R(hi, spec.c(), out.f()), SUCCESS);
                wait_stream();
                auto x = down<float>(out, 8);
                const double want[8] = {8, 16, 24, 32, 0, 0, 0, 0};
                for (int t = 0; t < 8 && ok; ++t) ok = near(x[t], want[t], 1e-5, "x", t);
                auto spoilt = down<float>(spec, 12);
                for (int i = 0; i < 12 && ok; ++i)
                    if (!std::isnan(spoilt[i])) ok = fail("rank-2 C2R input float " + std::to_string(i) + " is not NaN");
            }
        }
        cufftDestroy(hf);
        cufftDestroy(hi);
    });

    // Rank 3, 2x2x2 C2C: a delta -> all ones; all ones -> 8 at the origin.
    run("rank3_c2c_2x2x2", [] {
        cufftHandle h;
        if (!RC(cufftPlan3d(&h, 2, 2, 2, C2C), SUCCESS)) return;
        cufftSetStream(h, g_stream);
        Dev a(64), b(64);
        std::vector<float> delta(16, 0.0f), ones(16, 0.0f);
        delta[0] = 1;
        for (int i = 0; i < 8; ++i) ones[2 * i] = 1;
        up(a, delta);
        RC(cufftExecC2C(h, a.c(), b.c(), FORWARD), SUCCESS);
        wait_stream();
        auto X = down<float>(b, 16);
        bool ok = true;
        for (int e = 0; e < 8 && ok; ++e) ok = expect_c(X, e, 1, 0, 1e-6, "X(delta)");
        up(a, ones);
        RC(cufftExecC2C(h, a.c(), b.c(), FORWARD), SUCCESS);
        wait_stream();
        X = down<float>(b, 16);
        for (int e = 0; e < 8 && ok; ++e) ok = expect_c(X, e, e == 0 ? 8 : 0, 0, 1e-6, "X(ones)");
        cufftDestroy(h);
    });

    // The documented error returns.
    run("errors_invalid_plan", [] {
        cufftHandle h;
        Dev a(64);
        RC(cufftSetStream(123456, g_stream), INVALID_PLAN);
        RC(cufftExecR2C(123456, a.f(), a.c()), INVALID_PLAN);
        if (!RC(cufftCreate(&h), SUCCESS)) return;
        RC(cufftExecR2C(h, a.f(), a.c()), INVALID_PLAN);  // created, not made
        size_t ws;
        RC(cufftGetSize(h, &ws), INVALID_PLAN);
        RC(cufftSetWorkArea(h, (void*)a.p), INVALID_PLAN);
        RC(cufftMakePlan1d(h, 8, C2R, 1, &ws), SUCCESS);
        RC(cufftMakePlan1d(h, 8, C2R, 1, &ws), INVALID_PLAN);  // a second configuration
        RC(cufftExecR2C(h, a.f(), a.c()), INVALID_PLAN);       // a C2R plan
        RC(cufftDestroy(h), SUCCESS);
        RC(cufftDestroy(h), INVALID_PLAN);
        RC(cufftExecC2R(h, a.c(), a.f()), INVALID_PLAN);
        RC(cufftSetStream(h, g_stream), INVALID_PLAN);
    });

    run("errors_invalid_size_type_value", [] {
        cufftHandle h;
        size_t ws;
        Dev a(64);
        if (!RC(cufftCreate(&h), SUCCESS)) return;
        RC(cufftMakePlan1d(h, 0, R2C, 1, &ws), INVALID_SIZE);
        RC(cufftMakePlan1d(h, -5, R2C, 1, &ws), INVALID_SIZE);
        RC(cufftMakePlan1d(h, 16, R2C, 0, &ws), INVALID_SIZE);
        long long n2[2] = {4, 0};
        RC(cufftMakePlanMany64(h, 2, n2, nullptr, 1, 0, nullptr, 1, 0, C2C, 1, &ws), INVALID_SIZE);
        RC(cufftMakePlan1d(h, 16, 0x77, 1, &ws), INVALID_TYPE);
        long long n4[4] = {2, 2, 2, 2};
        RC(cufftMakePlanMany64(h, 0, n4, nullptr, 1, 0, nullptr, 1, 0, C2C, 1, &ws), INVALID_VALUE);
        RC(cufftMakePlanMany64(h, 4, n4, nullptr, 1, 0, nullptr, 1, 0, C2C, 1, &ws), INVALID_VALUE);
        RC(cufftMakePlanMany64(h, 1, nullptr, nullptr, 1, 0, nullptr, 1, 0, C2C, 1, &ws), INVALID_VALUE);
        RC(cufftCreate(nullptr), INVALID_VALUE);
        RC(cufftPlan1d(nullptr, 16, R2C, 1), INVALID_VALUE);
        // After the failures above the handle is still unconfigured and takes a plan.
        if (RC(cufftMakePlan1d(h, 4, C2C, 1, &ws), SUCCESS)) {
            RC(cufftExecC2C(h, nullptr, a.c(), FORWARD), INVALID_VALUE);
            RC(cufftExecC2C(h, a.c(), nullptr, FORWARD), INVALID_VALUE);
            RC(cufftExecC2C(h, a.c(), a.c(), 0), INVALID_VALUE);
        }
        cufftDestroy(h);
    });

    run("errors_no_context_setup_failed", [] {
        cufftHandle h;
        size_t ws;
        if (!RC(cufftCreate(&h), SUCCESS)) return;
        cuCtxSetCurrent(nullptr);
        RC(cufftMakePlan1d(h, 16, R2C, 1, &ws), SETUP_FAILED);
        cuCtxSetCurrent(g_ctx);
        RC(cufftMakePlan1d(h, 16, R2C, 1, &ws), SUCCESS);
        cufftDestroy(h);
    });

    // The work area: sized before and after making, caller-managed through auto-allocation off.
    run("work_area_caller_managed", [] {
        const int n = 16000, batch = 64;
        cufftHandle h;
        long long nn[1] = {n};
        size_t before = 0, made = 0, after = 0;
        if (!RC(cufftCreate(&h), SUCCESS)) return;
        RC(cufftGetSizeMany64(h, 1, nn, nullptr, 1, 0, nullptr, 1, 0, R2C, batch, &before), SUCCESS);
        RC(cufftSetAutoAllocation(h, 0), SUCCESS);
        RC(cufftMakePlanMany64(h, 1, nn, nullptr, 1, 0, nullptr, 1, 0, R2C, batch, &made), SUCCESS);
        RC(cufftGetSize(h, &after), SUCCESS);
        cufftSetStream(h, g_stream);
        if (made == 0 || before != made || after != made) {
            fail("work sizes: GetSizeMany64 " + std::to_string(before) + ", MakePlanMany64 " + std::to_string(made) +
                 ", GetSize " + std::to_string(after));
        } else {
            std::vector<float> x((size_t)n * batch, 0.0f);
            for (int b = 0; b < batch; ++b) x[(size_t)b * n] = 1;
            Dev in(x.size() * 4), out((size_t)batch * (n / 2 + 1) * 8);
            up(in, x);
            RC(cufftExecR2C(h, in.f(), out.c()), NO_WORKSPACE);
            Dev work(made);
            RC(cufftSetWorkArea(h, (void*)work.p), SUCCESS);
            RC(cufftExecR2C(h, in.f(), out.c()), SUCCESS);
            wait_stream();
            auto X = down<float>(out, (size_t)batch * (n / 2 + 1) * 2);
            for (size_t e = 0; e < X.size() / 2; ++e)
                if (!expect_c(X, (long)e, 1, 0, 1e-6, "X(delta)")) break;
        }
        cufftDestroy(h);
    });

    // Plans used from two host threads at once, each on its own stream.
    run("two_threads_two_plans", [] {
        std::string errs[2];
        auto body = [&](int t) {
            cuCtxSetCurrent(g_ctx);
            const int n = t == 0 ? 16000 : 15838, batch = 4;
            CUstream s;
            cuStreamCreate(&s, CU_STREAM_NON_BLOCKING);
            cufftHandle h;
            if (cufftPlan1d(&h, n, R2C, batch) != SUCCESS) { errs[t] = "cufftPlan1d"; return; }
            cufftSetStream(h, s);
            std::vector<float> x((size_t)n * batch, 0.0f);
            for (int b = 0; b < batch; ++b) x[(size_t)b * n + b] = 1;  // delta at b: X_k = e^{-2 pi i k b/n}
            CUdeviceptr in, out;
            size_t h1 = n / 2 + 1;
            cuMemAlloc_v2(&in, x.size() * 4);
            cuMemAlloc_v2(&out, batch * h1 * 8);
            cuMemcpyHtoD_v2(in, x.data(), x.size() * 4);
            for (int it = 0; it < 10; ++it)
                if (cufftExecR2C(h, (float*)in, (cufftComplex*)out) != SUCCESS) errs[t] = "cufftExecR2C";
            if (cuStreamSynchronize(s) != CUDA_SUCCESS) errs[t] = "cuStreamSynchronize";
            std::vector<float> X(batch * h1 * 2);
            cuMemcpyDtoH_v2(X.data(), out, X.size() * 4);
            for (int b = 0; b < batch && errs[t].empty(); ++b)
                for (size_t k = 0; k < h1; ++k) {
                    double a = -2 * M_PI * (double)(k * b % n) / n;
                    size_t e = b * h1 + k;
                    if (std::fabs(X[2 * e] - std::cos(a)) > 1e-5 || std::fabs(X[2 * e + 1] - std::sin(a)) > 1e-5) {
                        errs[t] = "thread " + std::to_string(t) + ": X[" + std::to_string(e) + "] wrong";
                        break;
                    }
                }
            cufftDestroy(h);
            cuMemFree_v2(in);
            cuMemFree_v2(out);
            cuStreamDestroy_v2(s);
        };
        std::thread a(body, 0), b(body, 1);
        a.join();
        b.join();
        for (auto& e : errs)
            if (!e.empty()) fail(e);
    });

    run("roundtrip_n16000_batch3", [] { roundtrip(16000, 3); });
    run("roundtrip_n15999_batch3", [] { roundtrip(15999, 3); });
    run("roundtrip_n15838_batch3", [] { roundtrip(15838, 3); });

    // Time of one batch-64 R2C at n = 16000 (queue to stream completion, best of 5), with the
    // result checked: a delta per row, all ones.
    double best_ms = 0;
    run("timing_r2c_n16000_batch64", [&] {
        const int n = 16000, batch = 64;
        Plan p;
        if (!plan1d(p, n, R2C, batch)) return;
        std::vector<float> x((size_t)n * batch, 0.0f);
        for (int b = 0; b < batch; ++b) x[(size_t)b * n] = 1;
        Dev in(x.size() * 4), out((size_t)batch * (n / 2 + 1) * 8);
        up(in, x);
        best_ms = 1e30;
        for (int it = 0; it < 6; ++it) {
            auto t0 = std::chrono::steady_clock::now();
            RC(cufftExecR2C(p.h, in.f(), out.c()), SUCCESS);
            wait_stream();
            double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
            if (it > 0) best_ms = std::min(best_ms, ms);
        }
        auto X = down<float>(out, (size_t)batch * (n / 2 + 1) * 2);
        for (size_t e = 0; e < X.size() / 2; ++e)
            if (!expect_c(X, (long)e, 1, 0, 1e-6, "X")) break;
    });
    printf("  (batch-64 R2C, n = 16000: %.2f ms)\n", best_ms);

    // Last: an output one row short of its extent faults the stream, and the context, as on a GPU.
    if (simulated) {
        run("illegal_address_output_past_allocation", [] {
            const int n = 16000;
            Plan p;
            if (!plan1d(p, n, R2C, 2)) return;
            Dev in((size_t)2 * n * 4), out((size_t)(n / 2 + 1) * 8);  // room for one of the two rows
            RC(cufftExecR2C(p.h, in.f(), out.c()), SUCCESS);            // queued: the fault shows later
            RC(cuStreamSynchronize(g_stream), CUDA_ERROR_ILLEGAL_ADDRESS);
            RC(cuCtxSynchronize(), CUDA_ERROR_ILLEGAL_ADDRESS);  // sticky
        });
    } else {
        printf("  (illegal_address_output_past_allocation skipped: not the simulated driver)\n");
    }

    // Released to zero, the primary context is destroyed with its streams' workers.
    cuStreamDestroy_v2(g_stream);
    cuDevicePrimaryCtxRelease_v2(dev);
    printf("%d passed, %d failed\n", g_passed, g_failed);
    return g_failed ? 1 : 0;
}
