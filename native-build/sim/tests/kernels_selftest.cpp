// Self-test of libbifuse_simkernels.so, loaded the way the simulated driver loads it (dlopen, then the
// table): lists every kernel, then launches a few on host buffers with results worked out by hand.
//
//   g++ -std=c++20 -O2 -pthread -I/usr/local/cuda/include -o build/sim/kernels_selftest
//       native-build/sim/tests/kernels_selftest.cpp -ldl
//   build/sim/kernels_selftest [build/sim/libbifuse_simkernels.so]
//
// One "pass NAME" / "FAIL NAME: why" line per check, then "N passed, M failed"; exit code 0 only when
// nothing failed. BIFUSE_SIM_RACECHECK=1 runs the same launches in the library's race-check mode.
#include "../sim_ext.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

namespace {

int g_passed = 0, g_failed = 0;

void check(bool ok, const std::string& name, const std::string& why = "") {
    (ok ? g_passed : g_failed)++;
    if (ok)
        printf("pass %s\n", name.c_str());
    else
        printf("FAIL %s: %s\n", name.c_str(), why.c_str());
    fflush(stdout);
}

struct Lib {
    const bifuse_sim_kernel* table = nullptr;
    int count = 0;
    const char* (*error)() = nullptr;
    const char* (*info)() = nullptr;

    const bifuse_sim_kernel* find(const char* name) const {
        for (int i = 0; i < count; ++i)
            if (strcmp(table[i].name, name) == 0) return &table[i];
        return nullptr;
    }
};

// out[r, c] = bias[c] for r < rows, c < cols, row stride ld; the padding columns keep their sentinel.
void test_lin_bias_rows(const Lib& lib) {
    const bifuse_sim_kernel* k = lib.find("lin_bias_rows");
    if (!k) return check(false, "lin_bias_rows", "not in the table");
    const int rows = 3, cols = 5, ld = 7;
    std::vector<float> out((size_t)rows * ld, -7.f);
    const float bias[cols] = {1.f, -2.f, 3.5f, 0.25f, 100.f};
    float* out_p = out.data();
    const float* bias_p = bias;
    int r = rows, c = cols, l = ld;
    void* params[] = {&out_p, &bias_p, &r, &c, &l};
    // grid 2 x block 4: 8 threads for 15 elements, so the grid-stride loop runs twice.
    if (k->launch(params, 2, 1, 1, 4, 1, 1) != 0) return check(false, "lin_bias_rows", std::string("launch: ") + lib.error());
    std::string bad;
    for (int i = 0; i < rows; ++i)
        for (int j = 0; j < ld; ++j) {
            const float want = j < cols ? bias[j] : -7.f;
            if (out[(size_t)i * ld + j] != want && bad.empty())
                bad = "out[" + std::to_string(i) + "][" + std::to_string(j) + "] = " + std::to_string(out[(size_t)i * ld + j]) +
                      ", want " + std::to_string(want);
        }
    check(bad.empty(), "lin_bias_rows (grid 2, block 4, grid-stride)", bad);

    // A 2-D block is accepted (the kernel reads only x: the y = 1 threads store the same values again).
    std::fill(out.begin(), out.end(), -7.f);
    const int rc = k->launch(params, 1, 1, 1, 4, 2, 1);
    bool same = rc == 0;
    for (int i = 0; i < rows && same; ++i)
        for (int j = 0; j < cols; ++j) same = same && out[(size_t)i * ld + j] == bias[j];
    check(same, "lin_bias_rows (block 4 x 2)", rc ? lib.error() : "wrong result");
}

// bnb_wn_partial: partial[b] = sum of dw[t] * w[t] over block b's 256 elements (a shared-memory tree
// reduction with a barrier per level); bnb_wn_finish: dg = sum(partial) / g, the same reduction over 256.
// With dw[t] = t, w[t] = 1 and n = 1000 every sum is an exact integer.
bool run_wn(const Lib& lib, int64_t n, float g, std::vector<double>& partial, float& dg, std::string& why) {
    const bifuse_sim_kernel* kp = lib.find("bnb_wn_partial");
    const bifuse_sim_kernel* kf = lib.find("bnb_wn_finish");
    if (!kp || !kf) {
        why = "bnb_wn_partial / bnb_wn_finish not in the table";
        return false;
    }
    std::vector<float> dw((size_t)n), w((size_t)n, 1.f);
    for (int64_t t = 0; t < n; ++t) dw[(size_t)t] = (float)t;
    partial.assign(256, std::nan(""));
    const float* dw_p = dw.data();
    const float* w_p = w.data();
    double* partial_p = partial.data();
    void* pp[] = {&dw_p, &w_p, &n, &partial_p};
    if (kp->launch(pp, 256, 1, 1, 256, 1, 1) != 0) {
        why = std::string("bnb_wn_partial: ") + lib.error();
        return false;
    }
    const double* partial_c = partial.data();
    float* dg_p = &dg;
    void* pf[] = {&partial_c, &g, &dg_p};
    if (kf->launch(pf, 1, 1, 1, 256, 1, 1) != 0) {
        why = std::string("bnb_wn_finish: ") + lib.error();
        return false;
    }
    return true;
}

double range_sum(int64_t lo, int64_t hi) { return (double)(lo + hi - 1) * (double)(hi - lo) / 2; }  // lo + ... + hi-1

void test_wn(const Lib& lib) {
    std::vector<double> partial;
    float dg = std::nanf("");
    std::string why;
    if (!run_wn(lib, 1000, 2.f, partial, dg, why)) return check(false, "bnb_wn_partial + bnb_wn_finish", why);
    const double want[4] = {range_sum(0, 256), range_sum(256, 512), range_sum(512, 768), range_sum(768, 1000)};
    std::string bad;
    for (int b = 0; b < 256; ++b) {
        const double wv = b < 4 ? want[b] : 0.0;
        if (partial[b] != wv && bad.empty()) bad = "partial[" + std::to_string(b) + "] = " + std::to_string(partial[b]) + ", want " + std::to_string(wv);
    }
    check(bad.empty(), "bnb_wn_partial (256 blocks of 256 threads, barrier tree reduction)", bad);
    check(dg == 249750.f, "bnb_wn_finish (dg = 499500 / 2)", "dg = " + std::to_string(dg));
}

// cbp_normalize_forward with l2 (F.normalize): rows (3, 4, 0) -> (0.6, 0.8, 0) and (1, 2, 2) -> (1, 2, 2) / 3.
void test_normalize(const Lib& lib) {
    const bifuse_sim_kernel* k = lib.find("cbp_normalize_forward");
    if (!k) return check(false, "cbp_normalize_forward", "not in the table");
    const float z[6] = {3.f, 4.f, 0.f, 1.f, 2.f, 2.f};
    float out[6];
    for (float& o : out) o = std::nanf("");
    const float* z_p = z;
    float* out_p = out;
    int rows = 2, d = 3, ssqrt = 0, l2 = 1;
    float eps = 1e-12f;
    void* params[] = {&z_p, &out_p, &rows, &d, &ssqrt, &l2, &eps};
    if (k->launch(params, 1, 1, 1, 256, 1, 1) != 0) return check(false, "cbp_normalize_forward", lib.error());
    const double want[6] = {0.6, 0.8, 0.0, 1.0 / 3, 2.0 / 3, 2.0 / 3};
    std::string bad;
    for (int i = 0; i < 6; ++i)
        if (!(std::fabs(out[i] - want[i]) <= 1e-6) && bad.empty()) bad = "out[" + std::to_string(i) + "] = " + std::to_string(out[i]);
    check(bad.empty(), "cbp_normalize_forward (grid 1 over 2 rows, l2)", bad);
}

// A by-value struct parameter: mfb_forward(MfbForwardParams) is ONE parameter of the struct's size and
// alignment, and its kernelParams entry points at the struct's bytes. The mirror below is laid out by hand
// by C rules, independently of cuda/Mfb.cu (as bifuse's KernelSpec "{pppppiiiiiiif}" is). One row, one
// block, o = 1 unit of k = 2: out = (P0 + bu0)(Q0 + bv0) + (P1 + bu1)(Q1 + bv1) = 1.5 * 3 + 2 * 5 = 14.5.
struct MfbForwardMirror {
    const float *P, *Q, *bu, *bv;
    float* out;
    int rows, n, o, k, act, signed_sqrt, l2_mode;
    float l2_eps;
};
static_assert(sizeof(MfbForwardMirror) == 72 && alignof(MfbForwardMirror) == 8);

void test_struct_param(const Lib& lib) {
    const bifuse_sim_kernel* k = lib.find("mfb_forward");
    if (!k) return check(false, "mfb_forward", "not in the table");
    const bool one = k->param_count == 1 && k->param_sizes[0] == 72 && k->param_aligns && k->param_aligns[0] == 8 &&
                     strcmp(k->signature, "(MfbForwardParams)") == 0;
    check(one, "mfb_forward takes one 72-byte, 8-aligned struct parameter", k->signature);
    const float P[2] = {1.f, 2.f}, Q[2] = {3.f, 4.f}, bu[2] = {0.5f, 0.f}, bv[2] = {0.f, 1.f};
    float out = std::nanf("");
    // In a poisoned buffer at an odd offset: the library copies the struct, it does not read it in place.
    unsigned char buf[8 + sizeof(MfbForwardMirror) + 8];
    memset(buf, 0xA5, sizeof buf);
    const MfbForwardMirror prm{P, Q, bu, bv, &out, 1, 1, 1, 2, 0, 0, 0, 1e-12f};
    memcpy(buf + 3, &prm, sizeof prm);
    void* params[] = {buf + 3};
    if (k->launch(params, 1, 1, 1, 256, 1, 1) != 0) return check(false, "mfb_forward (struct parameter)", lib.error());
    check(out == 14.5f, "mfb_forward reads its struct parameter's fields (out = 14.5)", "out = " + std::to_string(out));
}

// Launches from several host threads at once are serialized by the library and all come out right.
void test_concurrent(const Lib& lib) {
    constexpr int kThreads = 4, kRounds = 5;
    std::vector<std::string> errors(kThreads);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t)
        threads.emplace_back([&, t] {
            for (int r = 0; r < kRounds && errors[t].empty(); ++r) {
                const int64_t n = 300 + 97 * t + r;
                std::vector<double> partial;
                float dg = 0;
                std::string why;
                if (!run_wn(lib, n, 1.f, partial, dg, why))
                    errors[t] = why;
                else if (dg != (float)range_sum(0, n))
                    errors[t] = "n = " + std::to_string(n) + ": dg = " + std::to_string(dg) + ", want " + std::to_string(range_sum(0, n));
            }
        });
    for (auto& th : threads) th.join();
    std::string bad;
    for (const std::string& e : errors)
        if (!e.empty() && bad.empty()) bad = e;
    check(bad.empty(), "4 host threads launching bnb_wn_partial + bnb_wn_finish at once", bad);
}

void test_errors(const Lib& lib) {
    const bifuse_sim_kernel* k = lib.find("lin_bias_rows");
    if (!k) return;
    int rc = k->launch(nullptr, 1, 1, 1, 32, 1, 1);
    check(rc != 0 && strstr(lib.error(), "kernelParams"), "null kernelParams is refused", std::string("rc ") + std::to_string(rc) + ": " + lib.error());
    float out[4];
    const float bias[4] = {0, 0, 0, 0};
    float* out_p = out;
    const float* bias_p = bias;
    int rows = 1, cols = 4, ld = 4;
    void* params[] = {&out_p, &bias_p, &rows, &cols, &ld};
    rc = k->launch(params, 1, 1, 1, 2048, 1, 1);
    check(rc != 0 && strstr(lib.error(), "invalid launch geometry"), "block of 2048 threads is refused", lib.error());
    rc = k->launch(params, 1, 1, 1, 32, 1, 1);
    check(rc == 0 && lib.error()[0] == 0, "a good launch clears the error", lib.error());
}

}  // namespace

int main(int argc, char** argv) {
    const char* path = argc > 1 ? argv[1] : "build/sim/libbifuse_simkernels.so";
    void* h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        printf("FAIL dlopen %s: %s\n0 passed, 1 failed\n", path, dlerror());
        return 1;
    }
    Lib lib;
    auto table_fn = (const bifuse_sim_kernel* (*)(int*))dlsym(h, "bifuse_sim_kernel_table");
    lib.error = (const char* (*)())dlsym(h, "bifuse_sim_kernels_error");
    lib.info = (const char* (*)())dlsym(h, "bifuse_sim_kernels_build_info");
    check(table_fn && lib.error && lib.info, "the three entry points are exported", "dlsym failed");
    if (!table_fn || !lib.error || !lib.info) {
        printf("%d passed, %d failed\n", g_passed, g_failed);
        return 1;
    }
    lib.table = table_fn(&lib.count);
    printf("build info: %s\n", lib.info());
    printf("%-26s %4s %6s  %s\n", "kernel", "regs", "smem", "signature (parameter bytes)");
    bool sane = lib.count > 0;
    for (int i = 0; i < lib.count; ++i) {
        const bifuse_sim_kernel& k = lib.table[i];
        std::string sizes;
        for (int p = 0; p < k.param_count; ++p) sizes += (p ? "," : "") + std::to_string(k.param_sizes[p]);
        printf("%-26s %4d %6d  %s (%s)\n", k.name, k.registers, k.static_shared_bytes, k.signature, sizes.c_str());
        sane = sane && k.launch && k.param_count > 0 && k.signature && k.signature[0] == '(' && lib.find(k.name) == &k;
    }
    check(sane, "table of " + std::to_string(lib.count) + " kernels (unique names, signatures, launchers)");
    if (const bifuse_sim_kernel* k = lib.find("lin_bias_rows")) {
        const bool ok = k->param_count == 5 && strcmp(k->signature, "(float*, const float*, int, int, int)") == 0 && k->param_sizes[0] == 8 &&
                        k->param_sizes[2] == 4;
        check(ok, "lin_bias_rows signature deduced from its C++ type", k->signature);
    }
    if (const bifuse_sim_kernel* k = lib.find("bnb_wn_partial"))
        check(strcmp(k->signature, "(const float*, const float*, int64_t, double*)") == 0 && k->param_sizes[2] == 8,
              "bnb_wn_partial's int64_t parameter is 8 bytes", k->signature);

    test_lin_bias_rows(lib);
    test_wn(lib);
    test_normalize(lib);
    test_struct_param(lib);
    test_concurrent(lib);
    test_errors(lib);
    printf("%d passed, %d failed\n", g_passed, g_failed);
    return g_failed == 0 ? 0 : 1;
}
