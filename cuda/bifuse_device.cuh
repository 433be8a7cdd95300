// Device helpers shared by the operators' kernels: one definition of each piece of math that must
// mean the same thing in every op (the activations of io.bifuse.Activation, the signed square root
// and the l2 modes of io.bifuse.Normalization, the deterministic block reductions). Included by each cuda/*.cu (all of which are
// compiled as one unity translation unit, and one at a time by the CPU emulation), hence the guard.
#ifndef BIFUSE_DEVICE_CUH
#define BIFUSE_DEVICE_CUH

#include <cuda_runtime.h>
#include <stdint.h>

// io.bifuse.Activation.code(): 0 none, 1 relu, 2 tanh, 3 sigmoid.
static __device__ __forceinline__ float bf_act(float p, int act) {
    if (act == 3) return 1.f / (1.f + expf(-p));
    if (act == 2) return tanhf(p);
    if (act == 1) return p > 0.f ? p : 0.f;
    return p;
}

// d sigma / dp written in terms of the activation's output a = sigma(p)
// (io.bifuse.Activation.derivativeFromOutput): backward kernels keep a, not p.
static __device__ __forceinline__ float bf_act_grad(float a, int act) {
    if (act == 3) return a * (1.f - a);
    if (act == 2) return 1.f - a * a;
    if (act == 1) return a > 0.f ? 1.f : 0.f;
    return 1.f;
}

static __device__ __forceinline__ float bf_ssqrt(float v) { return copysignf(sqrtf(fabsf(v)), v); }

// The l2 scale 1/norm of a vector whose squares sum to sumsq, by io.bifuse.Normalization.L2.code():
// 0 none; 1 u / max(|u|, eps) (PyTorch F.normalize); 2 u * (|u|^2 + eps)^-1/2 (Caffe).
// *active: whether the norm varies with u (its derivative counts in backward).
static __device__ __forceinline__ float bf_inv_norm(double sumsq, int l2_mode, float eps, int* active) {
    if (l2_mode == 1) {
        const double n = sqrt(sumsq);
        *active = n > (double)eps;
        return (float)(1.0 / (*active ? n : (double)eps));
    }
    if (l2_mode == 2) { *active = 1; return (float)(1.0 / sqrt(sumsq + (double)eps)); }
    *active = 0;
    return 1.f;
}

// dL/dz of one element of a normalized vector (u = ssqrt(z) or z, o = inv * u), given g = dL/do, the
// l2 scale inv and coef = <u, g> inv^2 when the norm is active (else 0):
//   du = inv (g - coef u),  dz = du * 0.5 / (sqrt|z| + ssqrt_eps), and 0 where that denominator is 0.
static __device__ __forceinline__ float bf_norm_grad(float zv, float gv, float inv, float coef, int signed_sqrt, float ssqrt_eps) {
    const float u = signed_sqrt ? bf_ssqrt(zv) : zv;
    float du = inv * (gv - coef * u);
    if (signed_sqrt) {
        const float r = sqrtf(fabsf(zv)) + ssqrt_eps;
        du = r > 0.f ? du * 0.5f / r : 0.f;
    }
    return du;
}

// ---- Block-wide reductions, in a fixed tree order: deterministic, the same bits on every run. Each
// call ends with a barrier, so the scratch may be reused by the next call in the same kernel.

// Max (is_max) or sum of v over the block's first n threads, n a power of 2, red holding n floats;
// every thread gets the result.
static __device__ __forceinline__ float bf_block_reduce(float* red, float v, int is_max, int n) {
    red[threadIdx.x] = v;
    __syncthreads();
    for (int w = n / 2; w > 0; w >>= 1) {
        if ((int)threadIdx.x < w) red[threadIdx.x] = is_max ? fmaxf(red[threadIdx.x], red[threadIdx.x + w]) : red[threadIdx.x] + red[threadIdx.x + w];
        __syncthreads();
    }
    const float r = red[0];
    __syncthreads();
    return r;
}

// Sums of two doubles over a block of N threads (blockDim.x == N, a power of 2); every thread gets both.
// The l2 norms of the normalize kernels (sum of u^2, and of u*g in backward) go through it.
template <int N>
static __device__ __forceinline__ double2 bf_block_sum2(double a, double b) {
    __shared__ double sa[N], sb[N];
    sa[threadIdx.x] = a;
    sb[threadIdx.x] = b;
    __syncthreads();
    for (int w = N / 2; w > 0; w >>= 1) {
        if ((int)threadIdx.x < w) {
            sa[threadIdx.x] += sa[threadIdx.x + w];
            sb[threadIdx.x] += sb[threadIdx.x + w];
        }
        __syncthreads();
    }
    const double2 r = make_double2(sa[0], sb[0]);
    __syncthreads();  // the next call overwrites sa/sb
    return r;
}

// Sum of one double over a block of N threads; every thread gets it.
template <int N>
static __device__ __forceinline__ double bf_block_sum(double v) {
    __shared__ double s[N];
    s[threadIdx.x] = v;
    __syncthreads();
    for (int w = N / 2; w > 0; w >>= 1) {
        if ((int)threadIdx.x < w) s[threadIdx.x] += s[threadIdx.x + w];
        __syncthreads();
    }
    const double r = s[0];
    __syncthreads();
    return r;
}

// The block's dynamic shared memory (the launch's sharedMemBytes) as a T*: an `extern __shared__` array
// on the device; on the simulated device the shim's dynamic area (NaN-filled before each block).
#ifdef __CUDACC__
#define BF_DYNAMIC_SHARED(T, name)                                  \
    extern __shared__ __align__(16) unsigned char bf_dynamic_smem[]; \
    T* name = reinterpret_cast<T*>(bf_dynamic_smem)
#else
#define BF_DYNAMIC_SHARED(T, name) T* name = reinterpret_cast<T*>(::emu::dynamic_shared())
#endif

// Grid-stride loops over 64-bit element indices.
static __device__ __forceinline__ int64_t bf_tid() { return (int64_t)blockIdx.x * blockDim.x + threadIdx.x; }
static __device__ __forceinline__ int64_t bf_stride() { return (int64_t)gridDim.x * blockDim.x; }

#endif
