// The simulated device's cuFFT: a stand-in for NVIDIA's libcufft.so.12 (cuFFT 12.0, as CUDA 13.0 ships
// it), so that bifuse's Java cuFFT binding (io.bifuse.cuda.Cufft / CufftPlan) runs its real code path
// on a machine without a GPU. It is built against the simulated driver (libcuda.so.1, driver.cpp) and
// uses its private interface (sim_ext.h): every transform is queued on the plan's stream with
// bifuse_sim_enqueue and runs later on that stream's worker thread, reading and writing "device"
// memory (host memory in the simulator) only there, after checking each operand's whole extent with
// bifuse_sim_is_device_range, as a GPU faults rather than reads outside an allocation.
//
// No cufft.h exists on the build machine, so the types and entry points are declared below with
// NVIDIA's names, values and C signatures. "cuFFT docs" below is NVIDIA's cuFFT API Reference
// (docs.nvidia.com/cuda/cufft); sections are named as that document names them.
//
// What it simulates:
//   * plans of rank 1 to 3, any sizes n >= 1, types C2C, R2C, C2R and the double-precision Z2Z, D2Z,
//     Z2D; the basic and the advanced data layout (inembed / istride / idist, onembed / ostride /
//     odist) exactly as "Advanced Data Layout" defines them, and the padded in-place real layout of
//     "Data Layout";
//   * unnormalized transforms (forward e^{-2 pi i jk/n}, inverse e^{+2 pi i jk/n}), computed in double
//     and rounded to the I/O precision once at the end, with an O(n log n) algorithm for every n: a
//     self-sorting mixed-radix FFT for sizes whose prime factors are all <= 13, Bluestein's chirp-z
//     for the others; twiddles and chirps are computed per plan when the plan is made;
//   * C2R / Z2D overwriting its input: "Out-of-place complex-to-real FFT will always overwrite input
//     buffer" (cuFFT docs, 2.4 "Data Layout"), so here every input element the transform reads becomes
//     NaN once read. Code that reuses a C2R input after the transform then shows the bug even where
//     the real library happened to leave those particular values intact. In place (idata == odata) the
//     output is written over the NaNs, so in-place transforms still work;
//   * the work area: allocated with cuMemAlloc in the plan's context at plan time (so the driver's
//     memory accounting sees it), sized as a multi-pass GPU FFT needs one (cuFFT's own sizes are not
//     documented), reported through workSize, freed at destroy; caller-managed work areas through
//     cufftSetAutoAllocation / cufftSetWorkArea ("Caller Allocated Work Area Support");
//   * errors as the cuFFT docs list them per function; where the docs leave a case open, the choice is
//     noted at the function.
// Execution is serialized per stream by the driver; the library keeps no threads of its own. The plan
// registry is guarded by one mutex, so that, as "Thread Safety" in the cuFFT docs allows, different
// host threads may use different plans at once.
#include <cuda.h>
#include <library_types.h>

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

#include "sim_ext.h"

#define CUFFT_API extern "C" __attribute__((visibility("default")))

// ---- cuFFT's public types (cuFFT docs, "cuFFT API Reference": cufftResult, cufftType, cufftHandle) ----
extern "C" {
// cuFFT 12 numbering, the codes this stand-in can return. cuFFT 12 renumbered the others (PARSE_ERROR
// 10, LICENSE_ERROR 12, INCOMPLETE_PARAMETER_LIST -42; 11 had 10, 12 and 15) and added 17-20.
typedef enum cufftResult_t : int {
    CUFFT_SUCCESS = 0x0,
    CUFFT_INVALID_PLAN = 0x1,
    CUFFT_ALLOC_FAILED = 0x2,
    CUFFT_INVALID_TYPE = 0x3,
    CUFFT_INVALID_VALUE = 0x4,
    CUFFT_INTERNAL_ERROR = 0x5,
    CUFFT_EXEC_FAILED = 0x6,
    CUFFT_SETUP_FAILED = 0x7,
    CUFFT_INVALID_SIZE = 0x8,
    CUFFT_UNALIGNED_DATA = 0x9,
    CUFFT_INVALID_DEVICE = 0xB,
    CUFFT_NO_WORKSPACE = 0xD,
    CUFFT_NOT_IMPLEMENTED = 0xE,
    CUFFT_NOT_SUPPORTED = 0x10,
} cufftResult;

// A fixed underlying type, so that any int a caller passes is a valid value to reject.
typedef enum cufftType_t : int {
    CUFFT_R2C = 0x2a,
    CUFFT_C2R = 0x2c,
    CUFFT_C2C = 0x29,
    CUFFT_D2Z = 0x6a,
    CUFFT_Z2D = 0x6c,
    CUFFT_Z2Z = 0x69,
} cufftType;

typedef int cufftHandle;
typedef float cufftReal;
typedef double cufftDoubleReal;
typedef struct __attribute__((aligned(8))) { float x, y; } cufftComplex;          // as cuComplex (float2)
typedef struct __attribute__((aligned(16))) { double x, y; } cufftDoubleComplex;  // as cuDoubleComplex
typedef struct CUstream_st* cudaStream_t;
}

#define CUFFT_FORWARD -1
#define CUFFT_INVERSE 1
#define CUFFT_VER_MAJOR 12
#define CUFFT_VER_MINOR 0
#define CUFFT_VER_PATCH 0
#define CUFFT_VERSION (CUFFT_VER_MAJOR * 1000 + CUFFT_VER_MINOR * 100 + CUFFT_VER_PATCH)

namespace {

void logf(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void logf(const char* fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    bifuse_sim_log(buf);
}

// =========================================================================================================
// The FFT engine: complex double, out of any GPU's sight
// =========================================================================================================

// std::complex's operator* handles inf/NaN per C Annex G through a library call on every product
// unless -ffast-math; this plain pair keeps the butterflies inline.
struct cd {
    double re, im;
};
inline cd operator+(cd a, cd b) { return {a.re + b.re, a.im + b.im}; }
inline cd operator-(cd a, cd b) { return {a.re - b.re, a.im - b.im}; }
inline cd operator*(cd a, cd b) { return {a.re * b.re - a.im * b.im, a.re * b.im + a.im * b.re}; }
inline cd operator*(double s, cd a) { return {s * a.re, s * a.im}; }
inline cd conj(cd a) { return {a.re, -a.im}; }
inline cd mul_neg_i(cd a) { return {a.im, -a.re}; }  // a * (-i)

// e^{-2 pi i t / n} from the exact residue of t mod n, so large products j*k lose no accuracy.
cd root(uint64_t t, uint64_t n) {
    double a = -2.0 * M_PI * (double)(t % n) / (double)n;
    return {std::cos(a), std::sin(a)};
}

// The smallest 2^a 3^b 5^c >= target: Bluestein's convolution length (a power of two alone can cost up
// to twice as much).
uint64_t smooth_at_least(uint64_t target) {
    uint64_t best = UINT64_MAX;
    for (uint64_t p2 = 1; p2 < 2 * target; p2 *= 2)
        for (uint64_t p3 = p2; p3 < 2 * target; p3 *= 3)
            for (uint64_t p5 = p3; p5 < 2 * target; p5 *= 5)
                if (p5 >= target && p5 < best) best = p5;
    return best;
}

// A forward DFT of one length, X_k = sum_j x_j e^{-2 pi i jk/n}, planned once. Sizes whose prime
// factors are all <= 13 run a Stockham (self-sorting, decimation-in-frequency) mixed-radix FFT;
// every other size runs Bluestein's algorithm over a 5-smooth convolution length >= 2n-1.
class Fft {
public:
    explicit Fft(uint64_t n) : n_(n) {
        std::vector<unsigned> radices;
        uint64_t r = n;
        while (r % 4 == 0) { radices.push_back(4); r /= 4; }
        while (r % 2 == 0) { radices.push_back(2); r /= 2; }
        for (unsigned p : {3u, 5u, 7u, 11u, 13u})
            while (r % p == 0) { radices.push_back(p); r /= p; }
        if (r != 1) {
            plan_bluestein();
            return;
        }
        // Stage i works on sub-transforms of length L (n at first), in radix p: L = p*m, stride s = n/L.
        uint64_t len = n, stride = 1;
        for (unsigned p : radices) {
            Stage st;
            st.p = p;
            st.m = len / p;
            st.s = stride;
            st.tw = tw_.size();
            for (uint64_t j = 0; j < st.m; ++j)
                for (unsigned k = 1; k < p; ++k) tw_.push_back(root(j * k, len));
            st.roots = roots_.size();
            if (p > 5)
                for (unsigned t = 0; t < p; ++t) roots_.push_back(root(t, p));
            stages_.push_back(st);
            len = st.m;
            stride *= p;
        }
    }

    uint64_t size() const { return n_; }
    bool bluestein() const { return inner_ != nullptr; }
    uint64_t bluestein_length() const { return m_; }
    // Scratch (complex elements) forward() and inverse() need beside the data.
    uint64_t scratch() const { return inner_ ? m_ + inner_->scratch() : n_; }

    // In place on data[0, n); scratch as scratch() says.
    void forward(cd* data, cd* scratch) const {
        if (inner_) run_bluestein(data, scratch);
        else run_radix(data, scratch);
    }

    // The unnormalized inverse, sum_k X_k e^{+2 pi i jk/n}, as conj(DFT(conj(X))).
    void inverse(cd* data, cd* scratch) const {
        for (uint64_t i = 0; i < n_; ++i) data[i].im = -data[i].im;
        forward(data, scratch);
        for (uint64_t i = 0; i < n_; ++i) data[i].im = -data[i].im;
    }

private:
    struct Stage {
        unsigned p;
        uint64_t m, s;
        size_t tw, roots;
    };

    void plan_bluestein() {
        // X_k = c_k sum_j (x_j c_j) conj(c_{k-j}), c_t = e^{-pi i t^2/n}: jk = (j^2 + k^2 - (k-j)^2) / 2.
        m_ = smooth_at_least(2 * n_ - 1);
        inner_ = std::make_unique<Fft>(m_);
        chirp_.resize(n_);
        const unsigned __int128 two_n = 2 * (unsigned __int128)n_;
        for (uint64_t t = 0; t < n_; ++t) {
            uint64_t sq = (uint64_t)(((unsigned __int128)t * t) % two_n);  // t^2 mod 2n keeps the angle small
            double a = -M_PI * (double)sq / (double)n_;
            chirp_[t] = {std::cos(a), std::sin(a)};
        }
        std::vector<cd> b(m_, cd{0, 0}), work(inner_->scratch());
        b[0] = conj(chirp_[0]);
        for (uint64_t t = 1; t < n_; ++t) b[t] = b[m_ - t] = conj(chirp_[t]);
        inner_->forward(b.data(), work.data());
        const double scale = 1.0 / (double)m_;  // the convolution's inverse FFT is unnormalized
        for (auto& v : b) v = scale * v;
        filter_ = std::move(b);
    }

    void run_bluestein(cd* x, cd* scratch) const {
        cd* a = scratch;
        cd* inner_scratch = scratch + m_;
        for (uint64_t j = 0; j < n_; ++j) a[j] = x[j] * chirp_[j];
        std::fill(a + n_, a + m_, cd{0, 0});
        inner_->forward(a, inner_scratch);
        for (uint64_t k = 0; k < m_; ++k) a[k] = a[k] * filter_[k];
        inner_->inverse(a, inner_scratch);
        for (uint64_t k = 0; k < n_; ++k) x[k] = a[k] * chirp_[k];
    }

    void run_radix(cd* x, cd* y) const {
        cd* src = x;
        cd* dst = y;
        for (const Stage& st : stages_) {
            const cd* tw = tw_.data() + st.tw;
            switch (st.p) {
            case 2: stage<2>(src, dst, st.m, st.s, tw); break;
            case 3: stage<3>(src, dst, st.m, st.s, tw); break;
            case 4: stage<4>(src, dst, st.m, st.s, tw); break;
            case 5: stage<5>(src, dst, st.m, st.s, tw); break;
            default: stage_generic(src, dst, st, tw); break;
            }
            std::swap(src, dst);
        }
        if (src != x) std::copy(src, src + n_, x);
    }

    // One DIF step: a_r = src[q + s(j + r m)], b = DFT_p(a), dst[q + s(p j + k)] = b_k w_L^{jk}. The
    // sub-sequence k of the output (stride s p) is then a length-m transform of the next stage.
    template <int P>
    static void stage(const cd* __restrict src, cd* __restrict dst, uint64_t m, uint64_t s, const cd* __restrict tw) {
        const uint64_t ms = m * s;
        for (uint64_t j = 0; j < m; ++j) {
            const cd* w = tw + j * (P - 1);
            const cd* in = src + s * j;
            cd* out = dst + s * P * j;
            for (uint64_t q = 0; q < s; ++q) {
                cd a[P], b[P];
                for (int r = 0; r < P; ++r) a[r] = in[q + r * ms];
                butterfly<P>(a, b);
                out[q] = b[0];
                for (int k = 1; k < P; ++k) out[q + k * s] = b[k] * w[k - 1];
            }
        }
    }

    template <int P>
    static inline void butterfly(const cd* a, cd* b) {
        if constexpr (P == 2) {
            b[0] = a[0] + a[1];
            b[1] = a[0] - a[1];
        } else if constexpr (P == 3) {
            constexpr double h = 0.86602540378443864676;  // sin(2 pi/3)
            cd t1 = a[1] + a[2], t2 = a[0] - 0.5 * t1, t3 = mul_neg_i(h * (a[1] - a[2]));
            b[0] = a[0] + t1;
            b[1] = t2 + t3;
            b[2] = t2 - t3;
        } else if constexpr (P == 4) {
            cd t0 = a[0] + a[2], t1 = a[0] - a[2], t2 = a[1] + a[3], t3 = mul_neg_i(a[1] - a[3]);
            b[0] = t0 + t2;
            b[2] = t0 - t2;
            b[1] = t1 + t3;
            b[3] = t1 - t3;
        } else {
            static_assert(P == 5);
            constexpr double c1 = 0.30901699437494742410, c2 = -0.80901699437494742410;  // cos(2pi/5), cos(4pi/5)
            constexpr double s1 = 0.95105651629515357212, s2 = 0.58778525229247312917;   // sin(2pi/5), sin(4pi/5)
            cd t1 = a[1] + a[4], t2 = a[2] + a[3], t3 = a[1] - a[4], t4 = a[2] - a[3];
            cd m1 = a[0] + c1 * t1 + c2 * t2, m2 = a[0] + c2 * t1 + c1 * t2;
            cd n1 = mul_neg_i(s1 * t3 + s2 * t4), n2 = mul_neg_i(s2 * t3 - s1 * t4);
            b[0] = a[0] + t1 + t2;
            b[1] = m1 + n1;
            b[4] = m1 - n1;
            b[2] = m2 + n2;
            b[3] = m2 - n2;
        }
    }

    void stage_generic(const cd* __restrict src, cd* __restrict dst, const Stage& st, const cd* __restrict tw) const {
        const unsigned p = st.p;
        const uint64_t m = st.m, s = st.s, ms = m * s;
        const cd* w_p = roots_.data() + st.roots;
        cd a[13], b[13];
        for (uint64_t j = 0; j < m; ++j) {
            const cd* w = tw + j * (p - 1);
            const cd* in = src + s * j;
            cd* out = dst + s * p * j;
            for (uint64_t q = 0; q < s; ++q) {
                for (unsigned r = 0; r < p; ++r) a[r] = in[q + r * ms];
                for (unsigned k = 0; k < p; ++k) {
                    cd acc = a[0];
                    for (unsigned r = 1, rk = k; r < p; ++r, rk = (rk + k) % p) acc = acc + a[r] * w_p[rk];
                    b[k] = acc;
                }
                out[q] = b[0];
                for (unsigned k = 1; k < p; ++k) out[q + k * s] = b[k] * w[k - 1];
            }
        }
    }

    uint64_t n_;
    std::vector<Stage> stages_;
    std::vector<cd> tw_, roots_;
    uint64_t m_ = 0;
    std::unique_ptr<Fft> inner_;
    std::vector<cd> chirp_, filter_;
};

// =========================================================================================================
// Plans: shape, data layout and the transform over a batch
// =========================================================================================================

// Every shape is held as three axes with leading axes of length 1 (rank 1: {1, 1, n}).
struct Layout {
    int64_t dims[3];   // logical elements per axis on this side (complex side of R2C: last n/2+1)
    int64_t pitch[3];  // element offset per index step, before istride/ostride
    int64_t stride, dist;

    int64_t offset(int64_t b, int64_t i0, int64_t i1, int64_t i2) const {
        return b * dist + (i0 * pitch[0] + i1 * pitch[1] + i2 * pitch[2]) * stride;
    }
    // Elements from the first to one past the last one a batch touches.
    unsigned __int128 extent(int64_t batch) const {
        unsigned __int128 last = (unsigned __int128)(batch - 1) * (uint64_t)dist;
        for (int a = 0; a < 3; ++a) last += (unsigned __int128)(dims[a] - 1) * (uint64_t)pitch[a] * (uint64_t)stride;
        return last + 1;
    }
};

bool is_real_input(cufftType t) { return t == CUFFT_R2C || t == CUFFT_D2Z; }
bool is_real_output(cufftType t) { return t == CUFFT_C2R || t == CUFFT_Z2D; }
bool is_double(cufftType t) { return t == CUFFT_Z2Z || t == CUFFT_D2Z || t == CUFFT_Z2D; }
bool valid_type(int t) {
    return t == CUFFT_R2C || t == CUFFT_C2R || t == CUFFT_C2C || t == CUFFT_D2Z || t == CUFFT_Z2D || t == CUFFT_Z2Z;
}
const char* type_name(cufftType t) {
    switch (t) {
    case CUFFT_R2C: return "R2C";
    case CUFFT_C2R: return "C2R";
    case CUFFT_C2C: return "C2C";
    case CUFFT_D2Z: return "D2Z";
    case CUFFT_Z2D: return "Z2D";
    case CUFFT_Z2Z: return "Z2Z";
    }
    return "?";
}

// What a plan computes; immutable once made, shared with the work queued from it (so a plan destroyed
// while its transforms are still queued leaves them intact).
struct Engine {
    cufftType type;
    int rank;
    int64_t batch;
    int64_t n[3];   // logical transform size, padded to three axes
    int64_t cn[3];  // the complex side's logical size (last axis n/2+1 for the real types)
    bool advanced;  // inembed and onembed given ("Advanced Data Layout")
    Layout in, out;        // as planned
    Layout in_ip, out_ip;  // basic layout executed in place: the real side's rows padded to 2(n/2+1)
    std::vector<std::shared_ptr<const Fft>> fft;  // per axis (length n[a])
    size_t work_bytes;
};

// Per worker thread, reused between transforms (the stream worker is long-lived).
struct Scratch {
    std::vector<cd> w, z, line, a, b, fs;

    // One huge transform should not pin its scratch on the worker for the rest of the process.
    void trim() {
        size_t total = w.size() + z.size() + line.size() + a.size() + b.size() + fs.size();
        if (total * sizeof(cd) <= ((size_t)256 << 20)) return;
        for (auto* v : {&w, &z, &line, &a, &b, &fs}) std::vector<cd>().swap(*v);
    }
};
thread_local Scratch t_scratch;

void ensure(std::vector<cd>& v, uint64_t n) {
    if (v.size() < n) v.resize(n);
}

// One complex axis of the item in w (dims d, row-major): every line along `axis`, transformed in place.
void transform_axis(cd* w, const int64_t d[3], int axis, const Fft& f, bool inverse, Scratch& s) {
    const int64_t len = d[axis];
    if (len == 1) return;
    int64_t inner = 1, outer = 1;
    for (int a = axis + 1; a < 3; ++a) inner *= d[a];
    for (int a = 0; a < axis; ++a) outer *= d[a];
    for (int64_t o = 0; o < outer; ++o) {
        cd* base = w + o * len * inner;
        for (int64_t t = 0; t < inner; ++t) {
            cd* line;
            if (inner == 1) {
                line = base;
            } else {
                line = s.line.data();
                for (int64_t k = 0; k < len; ++k) line[k] = base[k * inner + t];
            }
            if (inverse) f.inverse(line, s.fs.data());
            else f.forward(line, s.fs.data());
            if (inner != 1)
                for (int64_t k = 0; k < len; ++k) base[k * inner + t] = line[k];
        }
    }
}

// Two real lines x, y (already in z as z_j = x_j + i y_j, length n) to their half spectra A, B
// (n/2+1 each; B null for a single line, z_j = x_j): A_k = (Z_k + conj Z_{n-k})/2,
// B_k = (Z_k - conj Z_{n-k})/(2i).
void r2c_pair(const Fft& f, cd* z, int64_t n, cd* A, cd* B, Scratch& s) {
    f.forward(z, s.fs.data());
    const int64_t h = n / 2 + 1;
    if (!B) {
        std::copy(z, z + h, A);
        return;
    }
    for (int64_t k = 0; k < h; ++k) {
        cd zk = z[k], zc = conj(z[(n - k) % n]);
        A[k] = 0.5 * (zk + zc);
        B[k] = mul_neg_i(0.5 * (zk - zc));
    }
}

// Two half spectra A, B (n/2+1 each, B null for one) to z with Re z = C2R(A), Im z = C2R(B),
// unnormalized. The imaginary parts of the k = 0 and (n even) k = n/2 bins, which a Hermitian
// spectrum cannot have, are dropped, as a real inverse transform ignores them.
void c2r_pair(const Fft& f, cd* A, cd* B, int64_t n, cd* z, Scratch& s) {
    const int64_t h = n / 2 + 1;
    A[0].im = 0;
    if (n % 2 == 0) A[n / 2].im = 0;
    if (B) {
        B[0].im = 0;
        if (n % 2 == 0) B[n / 2].im = 0;
    }
    for (int64_t k = 0; k < n; ++k) {
        bool low = k < h;
        cd a = low ? A[k] : conj(A[n - k]);
        cd b = B ? (low ? B[k] : conj(B[n - k])) : cd{0, 0};
        z[k] = {a.re - b.im, a.im + b.re};  // a + i b
    }
    f.inverse(z, s.fs.data());
}

template <class R>
inline cd load_c(const R* p, int64_t e) { return {(double)p[2 * e], (double)p[2 * e + 1]}; }
template <class R>
inline void store_c(R* p, int64_t e, cd v) {
    p[2 * e] = (R)v.re;
    p[2 * e + 1] = (R)v.im;
}

// Whole items (one batch entry) between device memory and a row-major working array.
template <class R>
void load_item(const Layout& l, const R* src, int64_t b, cd* w) {
    for (int64_t i0 = 0, k = 0; i0 < l.dims[0]; ++i0)
        for (int64_t i1 = 0; i1 < l.dims[1]; ++i1)
            for (int64_t i2 = 0; i2 < l.dims[2]; ++i2) w[k++] = load_c(src, l.offset(b, i0, i1, i2));
}
template <class R>
void store_item(const Layout& l, R* dst, int64_t b, const cd* w) {
    for (int64_t i0 = 0, k = 0; i0 < l.dims[0]; ++i0)
        for (int64_t i1 = 0; i1 < l.dims[1]; ++i1)
            for (int64_t i2 = 0; i2 < l.dims[2]; ++i2) store_c(dst, l.offset(b, i0, i1, i2), w[k++]);
}
template <class R>
void nan_item(const Layout& l, R* p, int64_t b) {
    const R nan = std::numeric_limits<R>::quiet_NaN();
    for (int64_t i0 = 0; i0 < l.dims[0]; ++i0)
        for (int64_t i1 = 0; i1 < l.dims[1]; ++i1)
            for (int64_t i2 = 0; i2 < l.dims[2]; ++i2) {
                int64_t e = l.offset(b, i0, i1, i2);
                p[2 * e] = p[2 * e + 1] = nan;
            }
}

// Line g of the last axis over the whole batch: item g / lines-per-item, then (i0, i1) in the item.
struct LineAt {
    int64_t b, i0, i1;
};
LineAt line_at(const Layout& l, int64_t g) {
    int64_t per = l.dims[0] * l.dims[1];
    int64_t o = g % per;
    return {g / per, o / l.dims[1], o % l.dims[1]};
}

template <class R>
void exec_c2c(const Engine& e, const Layout& li, const Layout& lo, const R* in, R* out, bool inverse, Scratch& s) {
    const int64_t items = e.n[0] * e.n[1] * e.n[2];
    ensure(s.w, items);
    for (int64_t b = 0; b < e.batch; ++b) {
        load_item(li, in, b, s.w.data());
        for (int a = 3 - e.rank; a < 3; ++a) transform_axis(s.w.data(), e.n, a, *e.fft[a], inverse, s);
        store_item(lo, out, b, s.w.data());
    }
}

template <class R>
void exec_r2c(const Engine& e, const Layout& li, const Layout& lo, const R* in, R* out, Scratch& s) {
    const int64_t n = e.n[2], h = e.cn[2];
    const Fft& f = *e.fft[2];
    const int64_t step = li.pitch[2] * li.stride;
    auto fill_z = [&](int64_t g, bool second) {
        LineAt at = line_at(li, g);
        const R* p = in + li.offset(at.b, at.i0, at.i1, 0);
        if (second)
            for (int64_t j = 0; j < n; ++j) s.z[j].im = (double)p[j * step];
        else
            for (int64_t j = 0; j < n; ++j) s.z[j] = {(double)p[j * step], 0.0};
    };
    if (e.rank == 1) {
        // Lines of different batch items pair up: one complex FFT per two real transforms.
        auto store_line = [&](int64_t g, const cd* v) {
            for (int64_t k = 0; k < h; ++k) store_c(out, lo.offset(g, 0, 0, k), v[k]);
        };
        for (int64_t g = 0; g < e.batch; g += 2) {
            bool pair = g + 1 < e.batch;
            fill_z(g, false);
            if (pair) fill_z(g + 1, true);
            r2c_pair(f, s.z.data(), n, s.a.data(), pair ? s.b.data() : nullptr, s);
            store_line(g, s.a.data());
            if (pair) store_line(g + 1, s.b.data());
        }
        return;
    }
    const int64_t lines = e.n[0] * e.n[1];
    for (int64_t b = 0; b < e.batch; ++b) {
        for (int64_t o = 0; o < lines; o += 2) {
            bool pair = o + 1 < lines;
            fill_z(b * lines + o, false);
            if (pair) fill_z(b * lines + o + 1, true);
            r2c_pair(f, s.z.data(), n, s.w.data() + o * h, pair ? s.w.data() + (o + 1) * h : nullptr, s);
        }
        for (int a = 3 - e.rank; a < 2; ++a) transform_axis(s.w.data(), e.cn, a, *e.fft[a], false, s);
        store_item(lo, out, b, s.w.data());
    }
}

template <class R>
void exec_c2r(const Engine& e, const Layout& li, const Layout& lo, R* in, R* out, Scratch& s) {
    const int64_t n = e.n[2], h = e.cn[2];
    const Fft& f = *e.fft[2];
    const int64_t step = lo.pitch[2] * lo.stride;
    const R nan = std::numeric_limits<R>::quiet_NaN();
    auto store_z = [&](int64_t g, bool second) {
        LineAt at = line_at(lo, g);
        R* p = out + lo.offset(at.b, at.i0, at.i1, 0);
        if (second)
            for (int64_t j = 0; j < n; ++j) p[j * step] = (R)s.z[j].im;
        else
            for (int64_t j = 0; j < n; ++j) p[j * step] = (R)s.z[j].re;
    };
    if (e.rank == 1) {
        // The input is taken (and then spoilt) line by line, before the output is written, so an
        // in-place transform (the same rows) still works.
        auto take_line = [&](int64_t g, cd* v) {
            for (int64_t k = 0; k < h; ++k) {
                int64_t el = li.offset(g, 0, 0, k);
                v[k] = load_c(in, el);
                in[2 * el] = in[2 * el + 1] = nan;
            }
        };
        for (int64_t g = 0; g < e.batch; g += 2) {
            bool pair = g + 1 < e.batch;
            take_line(g, s.a.data());
            if (pair) take_line(g + 1, s.b.data());
            c2r_pair(f, s.a.data(), pair ? s.b.data() : nullptr, n, s.z.data(), s);
            store_z(g, false);
            if (pair) store_z(g + 1, true);
        }
        return;
    }
    const int64_t lines = e.n[0] * e.n[1];
    for (int64_t b = 0; b < e.batch; ++b) {
        load_item(li, in, b, s.w.data());
        nan_item(li, in, b);
        for (int a = 3 - e.rank; a < 2; ++a) transform_axis(s.w.data(), e.cn, a, *e.fft[a], true, s);
        for (int64_t o = 0; o < lines; o += 2) {
            bool pair = o + 1 < lines;
            c2r_pair(f, s.w.data() + o * h, pair ? s.w.data() + (o + 1) * h : nullptr, n, s.z.data(), s);
            store_z(b * lines + o, false);
            if (pair) store_z(b * lines + o + 1, true);
        }
    }
}

// One queued transform: everything the worker needs, copied out of the plan at exec time.
struct ExecWork {
    std::shared_ptr<const Engine> eng;
    const char* what;  // the cufftExec* name, for messages (a string literal)
    CUdeviceptr in, out;
    CUdeviceptr work;  // a caller-provided work area to check, or 0
    size_t work_bytes;
    bool inverse;      // C2C/Z2Z direction
};

// An operand's whole extent must lie in one live allocation, as the GPU's loads and stores fault
// otherwise; never dereferenced before this says so.
CUresult check_operand(const char* what, const char* operand, CUdeviceptr p, unsigned __int128 bytes, size_t align) {
    if (bytes > (unsigned __int128)SIZE_MAX || !bifuse_sim_is_device_range(p, (size_t)bytes)) {
        logf("%s: %s range [0x%llx, +%llu bytes) is not inside one device allocation: CUDA_ERROR_ILLEGAL_ADDRESS",
             what, operand, (unsigned long long)p, (unsigned long long)bytes);
        return CUDA_ERROR_ILLEGAL_ADDRESS;
    }
    if (align && p % align != 0) {
        logf("%s: %s at 0x%llx is not aligned to %zu bytes (cufftComplex / cufftDoubleComplex): "
             "CUDA_ERROR_MISALIGNED_ADDRESS", what, operand, (unsigned long long)p, align);
        return CUDA_ERROR_MISALIGNED_ADDRESS;
    }
    return CUDA_SUCCESS;
}

CUresult run_exec(void* arg) {
    std::unique_ptr<ExecWork> w(static_cast<ExecWork*>(arg));
    if (bifuse_sim_discarding()) return CUDA_SUCCESS;  // a faulted context: only free the work
    try {
        const Engine& e = *w->eng;
        // "Data Layout" (cuFFT docs 2.4): in place, the basic layout's real rows are padded to whole
        // complex rows, 2(n/2+1) reals.
        const bool in_place = w->in == w->out;
        const Layout& li = in_place && !e.advanced ? e.in_ip : e.in;
        const Layout& lo = in_place && !e.advanced ? e.out_ip : e.out;
        const size_t real = is_double(e.type) ? 8 : 4, cplx = 2 * real;
        const size_t in_elem = is_real_input(e.type) ? real : cplx, out_elem = is_real_output(e.type) ? real : cplx;
        // cufftExecR2C / cufftExecC2R: both pointers must be aligned to the complex type.
        if (CUresult r = check_operand(w->what, "idata", w->in, li.extent(e.batch) * in_elem, cplx)) return r;
        if (CUresult r = check_operand(w->what, "odata", w->out, lo.extent(e.batch) * out_elem, cplx)) return r;
        if (w->work) {
            if (CUresult r = check_operand(w->what, "work area", w->work, w->work_bytes, 0)) return r;
        }

        Scratch& s = t_scratch;
        uint64_t fs = 0, line = 0;
        for (int a = 0; a < 3; ++a) {
            fs = std::max(fs, e.fft[a]->scratch());
            line = std::max<uint64_t>(line, e.n[a]);
        }
        ensure(s.fs, fs);
        ensure(s.line, line);
        ensure(s.z, e.n[2]);
        ensure(s.a, e.cn[2]);
        ensure(s.b, e.cn[2]);
        if (e.rank > 1) ensure(s.w, e.cn[0] * e.cn[1] * e.cn[2]);
        switch (e.type) {
        case CUFFT_C2C: exec_c2c(e, li, lo, (const float*)w->in, (float*)w->out, w->inverse, s); break;
        case CUFFT_Z2Z: exec_c2c(e, li, lo, (const double*)w->in, (double*)w->out, w->inverse, s); break;
        case CUFFT_R2C: exec_r2c(e, li, lo, (const float*)w->in, (float*)w->out, s); break;
        case CUFFT_D2Z: exec_r2c(e, li, lo, (const double*)w->in, (double*)w->out, s); break;
        case CUFFT_C2R: exec_c2r(e, li, lo, (float*)w->in, (float*)w->out, s); break;
        case CUFFT_Z2D: exec_c2r(e, li, lo, (double*)w->in, (double*)w->out, s); break;
        }
        s.trim();
        return CUDA_SUCCESS;
    } catch (const std::bad_alloc&) {
        logf("%s: host memory for the transform's scratch ran out: CUDA_ERROR_OUT_OF_MEMORY", w->what);
        return CUDA_ERROR_OUT_OF_MEMORY;
    } catch (...) {
        logf("%s: internal error in the simulated cuFFT: CUDA_ERROR_UNKNOWN", w->what);
        return CUDA_ERROR_UNKNOWN;
    }
}

// =========================================================================================================
// The plan registry
// =========================================================================================================

struct Plan {
    bool made = false, making = false;
    bool auto_alloc = true;  // cufftSetAutoAllocation
    CUcontext ctx = nullptr;
    CUstream stream = nullptr;  // 0: the legacy default stream
    std::shared_ptr<const Engine> eng;
    CUdeviceptr work = 0;
    bool work_owned = false;
};

std::mutex g_mu;
std::unordered_map<cufftHandle, std::shared_ptr<Plan>> g_plans;
cufftHandle g_next_handle = 1;  // never reused, so a destroyed handle stays invalid

std::shared_ptr<Plan> find_plan(cufftHandle h) {
    auto it = g_plans.find(h);
    return it == g_plans.end() ? nullptr : it->second;
}

// cuMemFree frees only in the allocation's own context; a plan may be destroyed from another.
void free_in(CUcontext ctx, CUdeviceptr p, const char* call) {
    CUcontext cur = nullptr;
    cuCtxGetCurrent(&cur);
    if (cur != ctx && cuCtxSetCurrent(ctx) != CUDA_SUCCESS) {
        logf("%s: the plan's context is gone; its work area went with it", call);
        return;
    }
    CUresult r = cuMemFree_v2(p);
    if (cur != ctx) cuCtxSetCurrent(cur);
    if (r != CUDA_SUCCESS) logf("%s: cuMemFree of the plan's work area returned %d", call, (int)r);
}

// The parameters of a cufftMakePlan* / cufftGetSize* / cufftEstimate* call, widened to 64 bits.
struct PlanArgs {
    int rank;
    const long long* n;
    const long long* inembed;
    long long istride, idist;
    const long long* onembed;
    long long ostride, odist;
    int type;
    long long batch;
};

// Validates a plan's parameters and computes its shape and layouts (no FFTs yet). Returns the cuFFT
// error for bad parameters, following each function's documented return values:
//   rank outside 1..3, n null, a stride < 1, a negative dist, an embed entry < 1 or smaller than the
//   logical size it holds -> CUFFT_INVALID_VALUE ("one or more invalid parameters");
//   an unknown type -> CUFFT_INVALID_TYPE; n[i] < 1 or batch < 1, or sizes whose extent overflows
//   64 bits -> CUFFT_INVALID_SIZE ("the nx or batch parameter is not a supported size").
cufftResult shape(const PlanArgs& a, Engine* e, const char* call) {
    if (a.rank < 1 || a.rank > 3) {
        logf("%s: rank %d: cuFFT plans have rank 1, 2 or 3: CUFFT_INVALID_VALUE", call, a.rank);
        return CUFFT_INVALID_VALUE;
    }
    if (!a.n) {
        logf("%s: n is NULL: CUFFT_INVALID_VALUE", call);
        return CUFFT_INVALID_VALUE;
    }
    if (!valid_type(a.type)) {
        logf("%s: type 0x%x is not a cufftType: CUFFT_INVALID_TYPE", call, a.type);
        return CUFFT_INVALID_TYPE;
    }
    e->type = (cufftType)a.type;
    e->rank = a.rank;
    for (int i = 0; i < a.rank; ++i) {
        if (a.n[i] < 1) {
            logf("%s: n[%d] = %lld: CUFFT_INVALID_SIZE", call, i, a.n[i]);
            return CUFFT_INVALID_SIZE;
        }
    }
    if (a.batch < 1) {
        logf("%s: batch = %lld: CUFFT_INVALID_SIZE", call, a.batch);
        return CUFFT_INVALID_SIZE;
    }
    e->batch = a.batch;
    const int lead = 3 - a.rank;
    for (int ax = 0; ax < 3; ++ax) e->n[ax] = ax < lead ? 1 : a.n[ax - lead];
    const bool real_side_in = is_real_input(e->type), real_side_out = is_real_output(e->type);
    std::copy(e->n, e->n + 3, e->cn);
    if (real_side_in || real_side_out) e->cn[2] = e->n[2] / 2 + 1;
    unsigned __int128 total = 1;
    for (int ax = 0; ax < 3; ++ax) total *= (unsigned __int128)e->n[ax] + 1;
    if (total > ((unsigned __int128)1 << 60)) {
        logf("%s: transform size beyond 2^60 elements: CUFFT_INVALID_SIZE", call);
        return CUFFT_INVALID_SIZE;
    }

    // cuFFT docs 2.6 "Advanced Data Layout" and cufftPlanMany's parameter list: inembed or onembed NULL
    // ("If set to NULL all other advanced data layout parameters are ignored") selects the basic
    // layout, strides 1 and distances the product of the logical sizes (for the complex side of
    // R2C / C2R, n/2+1 in the last axis). With both given, element (b, x, y, z) of a side is at
    // b*dist + ((x*embed[1] + y)*embed[2] + z)*stride.
    e->advanced = a.inembed && a.onembed;
    auto basic = [&](const int64_t* dims, int64_t last_phys) {
        Layout l;
        std::copy(dims, dims + 3, l.dims);
        l.pitch[2] = 1;
        l.pitch[1] = last_phys;
        l.pitch[0] = dims[1] * last_phys;
        l.stride = 1;
        l.dist = dims[0] * dims[1] * last_phys;
        return l;
    };
    const int64_t* in_dims = real_side_in ? e->n : e->cn;
    const int64_t* out_dims = real_side_out ? e->n : e->cn;
    const int64_t padded = 2 * (e->n[2] / 2 + 1);
    e->in = basic(in_dims, in_dims[2]);
    e->out = basic(out_dims, out_dims[2]);
    e->in_ip = basic(in_dims, real_side_in ? padded : in_dims[2]);
    e->out_ip = basic(out_dims, real_side_out ? padded : out_dims[2]);
    if (e->advanced) {
        auto advanced = [&](const int64_t* dims, const long long* embed, long long stride, long long dist,
                            const char* side, Layout* l) -> cufftResult {
            if (stride < 1 || dist < 0) {
                logf("%s: %s stride %lld / dist %lld: CUFFT_INVALID_VALUE", call, side, stride, dist);
                return CUFFT_INVALID_VALUE;
            }
            // embed[0] (the outermost storage size) is never used: idist/odist spaces the batch.
            for (int i = 1; i < a.rank; ++i) {
                if (embed[i] < 1 || embed[i] < dims[lead + i]) {
                    logf("%s: %sembed[%d] = %lld is smaller than the %lld elements it holds: CUFFT_INVALID_VALUE",
                         call, side, i, embed[i], (long long)dims[lead + i]);
                    return CUFFT_INVALID_VALUE;
                }
            }
            std::copy(dims, dims + 3, l->dims);
            l->pitch[2] = 1;
            l->pitch[1] = a.rank >= 2 ? embed[a.rank - 1] : 0;
            l->pitch[0] = a.rank == 3 ? embed[1] * embed[2] : 0;
            l->stride = stride;
            l->dist = dist;
            return CUFFT_SUCCESS;
        };
        if (cufftResult r = advanced(in_dims, a.inembed, a.istride, a.idist, "i", &e->in)) return r;
        if (cufftResult r = advanced(out_dims, a.onembed, a.ostride, a.odist, "o", &e->out)) return r;
        e->in_ip = e->in;
        e->out_ip = e->out;
    }
    const unsigned __int128 limit = (unsigned __int128)1 << 62;
    for (const Layout* l : {&e->in, &e->out, &e->in_ip, &e->out_ip}) {
        if (l->extent(e->batch) * 16 > limit) {
            logf("%s: the data's extent overflows 64-bit addressing: CUFFT_INVALID_SIZE", call);
            return CUFFT_INVALID_SIZE;
        }
    }
    return CUFFT_SUCCESS;
}

// The work area cuFFT would ask for: a complex copy of the batch's data for the multi-pass sizes, plus
// Bluestein's two padded chirp buffers per line for a size it cannot factor. Single-kernel sizes
// (1-D, at most 4096 points, 2..7-smooth) need none.
size_t work_size(const Engine& e, const std::vector<std::shared_ptr<const Fft>>* ffts) {
    const size_t cplx = is_double(e.type) ? 16 : 8;
    unsigned __int128 items = (unsigned __int128)e.cn[0] * e.cn[1] * e.cn[2] * (uint64_t)e.batch;
    bool any_bluestein = false;
    unsigned __int128 bytes = 0;
    for (int ax = 3 - e.rank; ax < 3; ++ax) {
        uint64_t m = 0;
        if (ffts) {
            if ((*ffts)[ax]->bluestein()) m = (*ffts)[ax]->bluestein_length();
        } else {
            uint64_t r = e.n[ax];
            for (uint64_t p : {2u, 3u, 5u, 7u, 11u, 13u})
                while (r % p == 0) r /= p;
            if (r != 1) m = smooth_at_least(2 * (uint64_t)e.n[ax] - 1);
        }
        if (m) {
            any_bluestein = true;
            bytes += items / (uint64_t)e.cn[ax] * m * 2 * cplx;
        }
    }
    uint64_t r = e.n[2];
    for (uint64_t p : {2u, 3u, 5u, 7u})
        while (r % p == 0) r /= p;
    bool single_kernel = e.rank == 1 && !any_bluestein && r == 1 && e.n[2] <= 4096;
    if (!single_kernel) bytes += items * cplx;
    return bytes > SIZE_MAX ? SIZE_MAX : (size_t)bytes;
}

// The body of every cufftMakePlan* (cuFFT docs, "cufftMakePlanMany64()", which the others reduce to).
cufftResult make_plan(cufftHandle handle, const PlanArgs& a, size_t* workSize, const char* call) {
    std::shared_ptr<Plan> p;
    bool auto_alloc;
    {
        std::lock_guard<std::mutex> lk(g_mu);
        p = find_plan(handle);
        if (!p) {
            logf("%s: plan %d is not a handle from cufftCreate (or was destroyed): CUFFT_INVALID_PLAN", call, handle);
            return CUFFT_INVALID_PLAN;
        }
        // Not documented: a handle takes one configuration; a second cufftMakePlan* on it is refused
        // (a plan is remade by destroying and creating it).
        if (p->made || p->making) {
            logf("%s: plan %d already holds a configuration: CUFFT_INVALID_PLAN", call, handle);
            return CUFFT_INVALID_PLAN;
        }
        p->making = true;
        auto_alloc = p->auto_alloc;
    }
    auto fail = [&](cufftResult r) {
        std::lock_guard<std::mutex> lk(g_mu);
        p->making = false;
        return r;
    };
    auto eng = std::make_shared<Engine>();
    if (cufftResult r = shape(a, eng.get(), call)) return fail(r);
    // A plan lives in the context current when it is made, as cuFFT's kernels and work area do; with
    // none current the library cannot initialize on a device ("CUFFT_SETUP_FAILED – The cuFFT library
    // failed to initialize").
    CUcontext ctx = nullptr;
    if (cuCtxGetCurrent(&ctx) != CUDA_SUCCESS || !ctx) {
        logf("%s: no current CUDA context to make plan %d in: CUFFT_SETUP_FAILED", call, handle);
        return fail(CUFFT_SETUP_FAILED);
    }
    try {
        std::map<int64_t, std::shared_ptr<const Fft>> by_len;
        eng->fft.resize(3);
        for (int ax = 0; ax < 3; ++ax) {
            auto& f = by_len[eng->n[ax]];
            if (!f) f = std::make_shared<const Fft>((uint64_t)eng->n[ax]);
            eng->fft[ax] = f;
        }
        eng->work_bytes = work_size(*eng, &eng->fft);
    } catch (const std::bad_alloc&) {
        logf("%s: host memory for plan %d's twiddles ran out: CUFFT_ALLOC_FAILED", call, handle);
        return fail(CUFFT_ALLOC_FAILED);
    }
    CUdeviceptr work = 0;
    if (auto_alloc && eng->work_bytes > 0) {
        CUresult r = cuMemAlloc_v2(&work, eng->work_bytes);
        if (r != CUDA_SUCCESS) {
            logf("%s: cuMemAlloc of the %zu-byte work area returned %d: CUFFT_ALLOC_FAILED", call, eng->work_bytes, (int)r);
            return fail(CUFFT_ALLOC_FAILED);
        }
    }
    {
        std::lock_guard<std::mutex> lk(g_mu);
        if (find_plan(handle) == p) {
            p->eng = eng;
            p->ctx = ctx;
            p->work = work;
            p->work_owned = work != 0;
            p->made = true;
            p->making = false;
            work = 0;
        }
    }
    if (work) {  // destroyed while being made
        free_in(ctx, work, call);
        return CUFFT_INVALID_PLAN;
    }
    if (workSize) *workSize = eng->work_bytes;  // one entry: a single-GPU plan
    return CUFFT_SUCCESS;
}

// cufftGetSize* / cufftEstimate*: the same validation, no plan made, no context needed.
cufftResult size_of(const PlanArgs& a, size_t* workSize, const char* call) {
    if (!workSize) {
        logf("%s: workSize is NULL: CUFFT_INVALID_VALUE", call);
        return CUFFT_INVALID_VALUE;
    }
    Engine e;
    if (cufftResult r = shape(a, &e, call)) return r;
    *workSize = work_size(e, nullptr);
    return CUFFT_SUCCESS;
}

cufftResult check_handle(cufftHandle h, const char* call) {
    std::lock_guard<std::mutex> lk(g_mu);
    if (find_plan(h)) return CUFFT_SUCCESS;
    logf("%s: plan %d is not a handle from cufftCreate (or was destroyed): CUFFT_INVALID_PLAN", call, h);
    return CUFFT_INVALID_PLAN;
}

// The body of every cufftExec* (cuFFT docs, "cufftExecC2C() and cufftExecZ2Z()", "cufftExecR2C() and
// cufftExecD2Z()", "cufftExecC2R() and cufftExecZ2D()").
cufftResult exec(cufftHandle handle, cufftType type, void* idata, void* odata, int direction, const char* call) {
    std::shared_ptr<const Engine> eng;
    CUstream stream;
    CUcontext ctx;
    CUdeviceptr work;
    bool work_owned;
    {
        std::lock_guard<std::mutex> lk(g_mu);
        auto p = find_plan(handle);
        if (!p || !p->made) {
            logf("%s: plan %d is not a made plan: CUFFT_INVALID_PLAN", call, handle);
            return CUFFT_INVALID_PLAN;
        }
        // Not documented which code a plan of another type gets; it is not a valid plan for this call.
        if (p->eng->type != type) {
            logf("%s: plan %d is a %s plan: CUFFT_INVALID_PLAN", call, handle, type_name(p->eng->type));
            return CUFFT_INVALID_PLAN;
        }
        eng = p->eng;
        stream = p->stream;
        ctx = p->ctx;
        work = p->work;
        work_owned = p->work_owned;
    }
    // "CUFFT_INVALID_VALUE – At least one of the parameters idata, odata, and direction is not valid."
    if (!idata || !odata) {
        logf("%s: idata %p / odata %p: CUFFT_INVALID_VALUE", call, idata, odata);
        return CUFFT_INVALID_VALUE;
    }
    if ((type == CUFFT_C2C || type == CUFFT_Z2Z) && direction != CUFFT_FORWARD && direction != CUFFT_INVERSE) {
        logf("%s: direction %d is neither CUFFT_FORWARD nor CUFFT_INVERSE: CUFFT_INVALID_VALUE", call, direction);
        return CUFFT_INVALID_VALUE;
    }
    // cufftSetAutoAllocation(0) without cufftSetWorkArea ("CUFFT_NO_WORKSPACE – No workspace has been
    // provided prior to plan execution").
    if (eng->work_bytes > 0 && !work) {
        logf("%s: plan %d needs a %zu-byte work area and has none (auto-allocation off, no cufftSetWorkArea): "
             "CUFFT_NO_WORKSPACE", call, handle, eng->work_bytes);
        return CUFFT_NO_WORKSPACE;
    }
    // "CUFFT_INVALID_DEVICE – Execution of a plan was on different GPU than plan creation": the plan's
    // kernels and work area belong to its context.
    CUcontext cur = nullptr;
    cuCtxGetCurrent(&cur);
    if (cur && cur != ctx) {
        logf("%s: plan %d was made in another context than the current one: CUFFT_INVALID_DEVICE", call, handle);
        return CUFFT_INVALID_DEVICE;
    }
    ExecWork* w;
    try {
        w = new ExecWork{eng, call, (CUdeviceptr)idata, (CUdeviceptr)odata, work_owned ? 0 : work, eng->work_bytes,
                         direction == CUFFT_INVERSE};
    } catch (const std::bad_alloc&) {
        return CUFFT_ALLOC_FAILED;
    }
    CUresult r = bifuse_sim_enqueue(stream, call, run_exec, w);
    if (r != CUDA_SUCCESS) {
        delete w;
        logf("%s: queueing plan %d's transform on its stream returned %d: CUFFT_EXEC_FAILED", call, handle, (int)r);
        return CUFFT_EXEC_FAILED;
    }
    return CUFFT_SUCCESS;
}

PlanArgs args_many(int rank, const int* n, const int* inembed, int istride, int idist, const int* onembed, int ostride,
                   int odist, int type, int batch, long long* n64, long long* in64, long long* on64) {
    for (int i = 0; i < 3 && n && i < rank; ++i) n64[i] = n[i];
    for (int i = 0; i < 3 && inembed && i < rank; ++i) in64[i] = inembed[i];
    for (int i = 0; i < 3 && onembed && i < rank; ++i) on64[i] = onembed[i];
    return {rank, n ? n64 : nullptr, inembed ? in64 : nullptr, istride, idist, onembed ? on64 : nullptr, ostride, odist,
            type, batch};
}

}  // namespace

// =========================================================================================================
// The cuFFT API
// =========================================================================================================

// cuFFT docs, "cufftCreate()": creates only an opaque handle; the cufftMakePlan*() calls make the plan.
// CUFFT_INVALID_VALUE for a NULL handle pointer ("one or more invalid parameters").
CUFFT_API cufftResult cufftCreate(cufftHandle* handle) {
    if (!handle) return CUFFT_INVALID_VALUE;
    try {
        std::lock_guard<std::mutex> lk(g_mu);
        cufftHandle h = g_next_handle++;
        g_plans[h] = std::make_shared<Plan>();
        *handle = h;
        return CUFFT_SUCCESS;
    } catch (const std::bad_alloc&) {
        return CUFFT_ALLOC_FAILED;
    }
}

// cuFFT docs, "cufftDestroy()": frees all GPU resources of the plan (its auto-allocated work area) and
// the handle. CUFFT_INVALID_PLAN for a handle that is not (or no longer) valid. Transforms already
// queued from the plan still run: they hold the plan's engine, and freeing the work area waits for
// the context's queued work, as cuMemFree does.
CUFFT_API cufftResult cufftDestroy(cufftHandle plan) {
    std::shared_ptr<Plan> p;
    {
        std::lock_guard<std::mutex> lk(g_mu);
        auto it = g_plans.find(plan);
        if (it == g_plans.end()) {
            logf("cufftDestroy: plan %d is not a handle from cufftCreate (or was destroyed): CUFFT_INVALID_PLAN", plan);
            return CUFFT_INVALID_PLAN;
        }
        p = it->second;
        g_plans.erase(it);
    }
    if (p->work_owned && p->work) free_in(p->ctx, p->work, "cufftDestroy");
    return CUFFT_SUCCESS;
}

// cuFFT docs, "cufftSetStream()": the plan's transforms are queued on stream from now on (0: the legacy
// default stream, passed to the driver as is). CUFFT_INVALID_PLAN for an invalid handle. Whether the
// stream belongs to the plan's context shows when a transform is queued (CUFFT_EXEC_FAILED).
CUFFT_API cufftResult cufftSetStream(cufftHandle plan, cudaStream_t stream) {
    std::lock_guard<std::mutex> lk(g_mu);
    auto p = find_plan(plan);
    if (!p) {
        logf("cufftSetStream: plan %d is not a handle from cufftCreate (or was destroyed): CUFFT_INVALID_PLAN", plan);
        return CUFFT_INVALID_PLAN;
    }
    p->stream = stream;
    return CUFFT_SUCCESS;
}

// cuFFT docs, "cufftGetVersion()": CUFFT_VERSION, 12000 for cuFFT 12.0.0 (CUDA 13.0). Not documented:
// a NULL version pointer gets CUFFT_INVALID_VALUE.
CUFFT_API cufftResult cufftGetVersion(int* version) {
    if (!version) return CUFFT_INVALID_VALUE;
    *version = CUFFT_VERSION;
    return CUFFT_SUCCESS;
}

// cuFFT docs, "cufftGetProperty()": MAJOR_VERSION, MINOR_VERSION, PATCH_LEVEL; "CUFFT_INVALID_TYPE – The
// property type is not recognized", "CUFFT_INVALID_VALUE – value is NULL".
CUFFT_API cufftResult cufftGetProperty(libraryPropertyType type, int* value) {
    if (!value) return CUFFT_INVALID_VALUE;
    switch ((int)type) {
    case MAJOR_VERSION: *value = CUFFT_VER_MAJOR; return CUFFT_SUCCESS;
    case MINOR_VERSION: *value = CUFFT_VER_MINOR; return CUFFT_SUCCESS;
    case PATCH_LEVEL: *value = CUFFT_VER_PATCH; return CUFFT_SUCCESS;
    }
    return CUFFT_INVALID_TYPE;
}

// cuFFT docs, "cufftMakePlanMany64()": a plan of rank 1..3 with sizes n[], the layout of "Advanced Data
// Layout" (inembed / onembed NULL: the basic layout, strides and distances ignored), batch transforms,
// the work area's size in workSize[0] (one GPU). Returns CUFFT_INVALID_PLAN (not a valid handle),
// CUFFT_INVALID_VALUE, CUFFT_INVALID_TYPE, CUFFT_INVALID_SIZE (as shape() says), CUFFT_SETUP_FAILED
// (no current context), CUFFT_ALLOC_FAILED (the work area could not be allocated). A NULL workSize
// is accepted (nothing reported).
CUFFT_API cufftResult cufftMakePlanMany64(cufftHandle plan, int rank, long long int* n, long long int* inembed,
                                          long long int istride, long long int idist, long long int* onembed,
                                          long long int ostride, long long int odist, cufftType type,
                                          long long int batch, size_t* workSize) {
    return make_plan(plan, {rank, n, inembed, istride, idist, onembed, ostride, odist, (int)type, batch}, workSize,
                     "cufftMakePlanMany64");
}

// cuFFT docs, "cufftMakePlanMany()": cufftMakePlanMany64 with int parameters.
CUFFT_API cufftResult cufftMakePlanMany(cufftHandle plan, int rank, int* n, int* inembed, int istride, int idist,
                                        int* onembed, int ostride, int odist, cufftType type, int batch,
                                        size_t* workSize) {
    long long n64[3], in64[3], on64[3];
    return make_plan(plan, args_many(rank, n, inembed, istride, idist, onembed, ostride, odist, type, batch, n64, in64, on64),
                     workSize, "cufftMakePlanMany");
}

// cuFFT docs, "cufftMakePlan1d()", "cufftMakePlan2d()", "cufftMakePlan3d()": the basic layout. 2d and 3d
// take no batch (one transform).
CUFFT_API cufftResult cufftMakePlan1d(cufftHandle plan, int nx, cufftType type, int batch, size_t* workSize) {
    long long n[1] = {nx};
    return make_plan(plan, {1, n, nullptr, 1, 0, nullptr, 1, 0, (int)type, batch}, workSize, "cufftMakePlan1d");
}
CUFFT_API cufftResult cufftMakePlan2d(cufftHandle plan, int nx, int ny, cufftType type, size_t* workSize) {
    long long n[2] = {nx, ny};
    return make_plan(plan, {2, n, nullptr, 1, 0, nullptr, 1, 0, (int)type, 1}, workSize, "cufftMakePlan2d");
}
CUFFT_API cufftResult cufftMakePlan3d(cufftHandle plan, int nx, int ny, int nz, cufftType type, size_t* workSize) {
    long long n[3] = {nx, ny, nz};
    return make_plan(plan, {3, n, nullptr, 1, 0, nullptr, 1, 0, (int)type, 1}, workSize, "cufftMakePlan3d");
}

// cuFFT docs, "cufftPlan1d()", "cufftPlan2d()", "cufftPlan3d()", "cufftPlanMany()": cufftCreate and
// the matching cufftMakePlan* in one; on failure the handle is destroyed again and *plan is left as
// it was. CUFFT_INVALID_VALUE for a NULL plan pointer.
namespace {
template <class Make>
cufftResult create_and_make(cufftHandle* plan, Make make) {
    if (!plan) return CUFFT_INVALID_VALUE;
    cufftHandle h;
    if (cufftResult r = cufftCreate(&h)) return r;
    cufftResult r = make(h);
    if (r != CUFFT_SUCCESS) {
        cufftDestroy(h);
        return r;
    }
    *plan = h;
    return CUFFT_SUCCESS;
}
}  // namespace

CUFFT_API cufftResult cufftPlan1d(cufftHandle* plan, int nx, cufftType type, int batch) {
    return create_and_make(plan, [&](cufftHandle h) {
        long long n[1] = {nx};
        return make_plan(h, {1, n, nullptr, 1, 0, nullptr, 1, 0, (int)type, batch}, nullptr, "cufftPlan1d");
    });
}
CUFFT_API cufftResult cufftPlan2d(cufftHandle* plan, int nx, int ny, cufftType type) {
    return create_and_make(plan, [&](cufftHandle h) {
        long long n[2] = {nx, ny};
        return make_plan(h, {2, n, nullptr, 1, 0, nullptr, 1, 0, (int)type, 1}, nullptr, "cufftPlan2d");
    });
}
CUFFT_API cufftResult cufftPlan3d(cufftHandle* plan, int nx, int ny, int nz, cufftType type) {
    return create_and_make(plan, [&](cufftHandle h) {
        long long n[3] = {nx, ny, nz};
        return make_plan(h, {3, n, nullptr, 1, 0, nullptr, 1, 0, (int)type, 1}, nullptr, "cufftPlan3d");
    });
}
CUFFT_API cufftResult cufftPlanMany(cufftHandle* plan, int rank, int* n, int* inembed, int istride, int idist,
                                    int* onembed, int ostride, int odist, cufftType type, int batch) {
    return create_and_make(plan, [&](cufftHandle h) {
        long long n64[3], in64[3], on64[3];
        return make_plan(h, args_many(rank, n, inembed, istride, idist, onembed, ostride, odist, type, batch, n64, in64, on64),
                         nullptr, "cufftPlanMany");
    });
}

// cuFFT docs, "cufftEstimate1d()" .. "cufftEstimateMany()": the work area a plan of these parameters
// would need, without a handle. Here the estimate is exact.
CUFFT_API cufftResult cufftEstimate1d(int nx, cufftType type, int batch, size_t* workSize) {
    long long n[1] = {nx};
    return size_of({1, n, nullptr, 1, 0, nullptr, 1, 0, (int)type, batch}, workSize, "cufftEstimate1d");
}
CUFFT_API cufftResult cufftEstimate2d(int nx, int ny, cufftType type, size_t* workSize) {
    long long n[2] = {nx, ny};
    return size_of({2, n, nullptr, 1, 0, nullptr, 1, 0, (int)type, 1}, workSize, "cufftEstimate2d");
}
CUFFT_API cufftResult cufftEstimate3d(int nx, int ny, int nz, cufftType type, size_t* workSize) {
    long long n[3] = {nx, ny, nz};
    return size_of({3, n, nullptr, 1, 0, nullptr, 1, 0, (int)type, 1}, workSize, "cufftEstimate3d");
}
CUFFT_API cufftResult cufftEstimateMany(int rank, int* n, int* inembed, int istride, int idist, int* onembed,
                                        int ostride, int odist, cufftType type, int batch, size_t* workSize) {
    long long n64[3], in64[3], on64[3];
    return size_of(args_many(rank, n, inembed, istride, idist, onembed, ostride, odist, type, batch, n64, in64, on64),
                   workSize, "cufftEstimateMany");
}

// cuFFT docs, "cufftGetSize1d()" .. "cufftGetSizeMany64()": the work area for a plan of these
// parameters, after cufftCreate and before cufftMakePlan*. CUFFT_INVALID_PLAN for an invalid handle,
// then the parameter errors of cufftMakePlanMany64.
CUFFT_API cufftResult cufftGetSize1d(cufftHandle handle, int nx, cufftType type, int batch, size_t* workSize) {
    if (cufftResult r = check_handle(handle, "cufftGetSize1d")) return r;
    long long n[1] = {nx};
    return size_of({1, n, nullptr, 1, 0, nullptr, 1, 0, (int)type, batch}, workSize, "cufftGetSize1d");
}
CUFFT_API cufftResult cufftGetSize2d(cufftHandle handle, int nx, int ny, cufftType type, size_t* workSize) {
    if (cufftResult r = check_handle(handle, "cufftGetSize2d")) return r;
    long long n[2] = {nx, ny};
    return size_of({2, n, nullptr, 1, 0, nullptr, 1, 0, (int)type, 1}, workSize, "cufftGetSize2d");
}
CUFFT_API cufftResult cufftGetSize3d(cufftHandle handle, int nx, int ny, int nz, cufftType type, size_t* workSize) {
    if (cufftResult r = check_handle(handle, "cufftGetSize3d")) return r;
    long long n[3] = {nx, ny, nz};
    return size_of({3, n, nullptr, 1, 0, nullptr, 1, 0, (int)type, 1}, workSize, "cufftGetSize3d");
}
CUFFT_API cufftResult cufftGetSizeMany(cufftHandle handle, int rank, int* n, int* inembed, int istride, int idist,
                                       int* onembed, int ostride, int odist, cufftType type, int batch,
                                       size_t* workArea) {
    if (cufftResult r = check_handle(handle, "cufftGetSizeMany")) return r;
    long long n64[3], in64[3], on64[3];
    return size_of(args_many(rank, n, inembed, istride, idist, onembed, ostride, odist, type, batch, n64, in64, on64),
                   workArea, "cufftGetSizeMany");
}
CUFFT_API cufftResult cufftGetSizeMany64(cufftHandle plan, int rank, long long int* n, long long int* inembed,
                                         long long int istride, long long int idist, long long int* onembed,
                                         long long int ostride, long long int odist, cufftType type,
                                         long long int batch, size_t* workSize) {
    if (cufftResult r = check_handle(plan, "cufftGetSizeMany64")) return r;
    return size_of({rank, n, inembed, istride, idist, onembed, ostride, odist, (int)type, batch}, workSize,
                   "cufftGetSizeMany64");
}

// cuFFT docs, "cufftGetSize()": the made plan's actual work area size. CUFFT_INVALID_PLAN for an
// invalid handle or one not made yet; CUFFT_INVALID_VALUE for a NULL workSize (not documented).
CUFFT_API cufftResult cufftGetSize(cufftHandle handle, size_t* workSize) {
    std::lock_guard<std::mutex> lk(g_mu);
    auto p = find_plan(handle);
    if (!p || !p->made) {
        logf("cufftGetSize: plan %d is not a made plan: CUFFT_INVALID_PLAN", handle);
        return CUFFT_INVALID_PLAN;
    }
    if (!workSize) return CUFFT_INVALID_VALUE;
    *workSize = p->eng->work_bytes;
    return CUFFT_SUCCESS;
}

// cuFFT docs, "cufftSetAutoAllocation()": autoAllocate 0 before cufftMakePlan* leaves the work area to
// the caller (cufftSetWorkArea). CUFFT_INVALID_PLAN for an invalid handle. After the plan is made it
// changes nothing (the area is already allocated).
CUFFT_API cufftResult cufftSetAutoAllocation(cufftHandle plan, int autoAllocate) {
    std::lock_guard<std::mutex> lk(g_mu);
    auto p = find_plan(plan);
    if (!p) {
        logf("cufftSetAutoAllocation: plan %d is not a handle from cufftCreate (or was destroyed): CUFFT_INVALID_PLAN", plan);
        return CUFFT_INVALID_PLAN;
    }
    p->auto_alloc = autoAllocate != 0;
    return CUFFT_SUCCESS;
}

// cuFFT docs, "cufftSetWorkArea()": overrides the plan's work area; an auto-allocated one is freed. The
// area must be device memory of at least cufftGetSize's bytes: each transform checks that it still is
// (CUDA_ERROR_ILLEGAL_ADDRESS otherwise). CUFFT_INVALID_PLAN for an invalid handle; not documented:
// a plan not made yet (its size unknown) also gets CUFFT_INVALID_PLAN.
CUFFT_API cufftResult cufftSetWorkArea(cufftHandle plan, void* workArea) {
    CUcontext ctx;
    CUdeviceptr old = 0;
    {
        std::lock_guard<std::mutex> lk(g_mu);
        auto p = find_plan(plan);
        if (!p || !p->made) {
            logf("cufftSetWorkArea: plan %d is not a made plan: CUFFT_INVALID_PLAN", plan);
            return CUFFT_INVALID_PLAN;
        }
        if (p->work_owned) old = p->work;
        ctx = p->ctx;
        p->work = (CUdeviceptr)workArea;
        p->work_owned = false;
    }
    if (old) free_in(ctx, old, "cufftSetWorkArea");
    return CUFFT_SUCCESS;
}

// cuFFT docs, "cufftExecC2C() and cufftExecZ2Z()": direction CUFFT_FORWARD (-1) or CUFFT_INVERSE (1),
// unnormalized; in place when idata == odata. Returns CUFFT_INVALID_PLAN (invalid handle, or a plan
// of another type), CUFFT_INVALID_VALUE (idata, odata or direction not valid), CUFFT_NO_WORKSPACE,
// CUFFT_INVALID_DEVICE (another context current), CUFFT_EXEC_FAILED (the transform could not be
// queued). Operands outside device memory fault on the stream (CUDA_ERROR_ILLEGAL_ADDRESS at the
// next synchronization), as the GPU's kernels would.
CUFFT_API cufftResult cufftExecC2C(cufftHandle plan, cufftComplex* idata, cufftComplex* odata, int direction) {
    return exec(plan, CUFFT_C2C, idata, odata, direction, "cufftExecC2C");
}
CUFFT_API cufftResult cufftExecZ2Z(cufftHandle plan, cufftDoubleComplex* idata, cufftDoubleComplex* odata,
                                   int direction) {
    return exec(plan, CUFFT_Z2Z, idata, odata, direction, "cufftExecZ2Z");
}

// cuFFT docs, "cufftExecR2C() and cufftExecD2Z()": the n/2+1 non-redundant coefficients of the last
// axis; idata and odata aligned to the complex type (CUDA_ERROR_MISALIGNED_ADDRESS on the stream
// here otherwise); in place when idata == odata, the real rows then padded ("Data Layout"). Errors as
// cufftExecC2C.
CUFFT_API cufftResult cufftExecR2C(cufftHandle plan, cufftReal* idata, cufftComplex* odata) {
    return exec(plan, CUFFT_R2C, idata, odata, CUFFT_FORWARD, "cufftExecR2C");
}
CUFFT_API cufftResult cufftExecD2Z(cufftHandle plan, cufftDoubleReal* idata, cufftDoubleComplex* odata) {
    return exec(plan, CUFFT_D2Z, idata, odata, CUFFT_FORWARD, "cufftExecD2Z");
}

// cuFFT docs, "cufftExecC2R() and cufftExecZ2D()": the inverse of R2C from n/2+1 coefficients,
// unnormalized. "Out-of-place complex-to-real FFT will always overwrite input buffer" (2.4 "Data
// Layout"): here with NaN, so a caller that relies on the input afterwards fails visibly. Errors as
// cufftExecC2C.
CUFFT_API cufftResult cufftExecC2R(cufftHandle plan, cufftComplex* idata, cufftReal* odata) {
    return exec(plan, CUFFT_C2R, idata, odata, CUFFT_INVERSE, "cufftExecC2R");
}
CUFFT_API cufftResult cufftExecZ2D(cufftHandle plan, cufftDoubleComplex* idata, cufftDoubleReal* odata) {
    return exec(plan, CUFFT_Z2D, idata, odata, CUFFT_INVERSE, "cufftExecZ2D");
}
