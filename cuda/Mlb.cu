// Mlb: multimodal low-rank bilinear pooling (Kim et al. 2017), the elementwise part between the GEMMs.
//
// Math (spec §2), nn.Linear layout (W out x in, row-major), sigma = none | relu | tanh (code 0 | 1 | 2):
//   pu = x U^T + b_u,  pv = y V^T + b_v   (B x J)      h = sigma(pu) * sigma(pv)      f = h P^T + b_p
// Backward, g = dL/df (B x Out):  gh = g P  (B x J),
//   dpu = gh * sigma(pv) * sigma'(pu),   dpv = gh * sigma(pu) * sigma'(pv)
// then dP = g^T h, db_p = colsum g, dU = dpu^T x, db_u = colsum dpu, dx = dpu U (V, y likewise).
//
// The host (MlbCuda.java) runs every GEMM in cuBLAS and keeps the two bias-free projections side by side
// in ONE workspace `proj` of B x 2J floats (row stride 2J): columns [0, J) hold x U^T, [J, 2J) hold y V^T.
// These two kernels are the only elementwise passes, one per direction:
//   mlb_forward    h[r, j] = sigma(proj[r, j] + b_u[j]) * sigma(proj[r, J + j] + b_v[j])
//                  reads 8BJ + 8J bytes, writes 4BJ; ~2 activations + 3 FLOPs per element.
//   mlb_backward   recomputes sigma(pu), sigma(pv) from proj (nothing saved from the forward), writes
//                  h (for dP = g^T h) and, IN PLACE over proj, dpu | dpv (the operands of dU, dV, dx, dy).
//                  reads 12BJ + 8J bytes, writes 12BJ; ~2 activations + 9 FLOPs per element.
// Launch geometry: one thread per (r, j), grid-stride over 64-bit indices (any B, J), block 256, grid
// min(ceil(BJ/256), 32 * SMs * 8). Consecutive threads take consecutive j of one row: the loads of proj
// (both halves), the biases, gh and the stores coalesce. No shared memory, no atomics: deterministic.
//
// Per call (B rows, spec B=512, Dx=2400, Dy=2048, J=1200, Out=2000), the GEMMs dominate:
//   forward  GEMM FLOPs 2BJ(Dx + Dy) + 2B Out J = 7.9 GFLOP; elementwise traffic 12BJ = 7.4 MB.
//   backward GEMM FLOPs 2 x forward's (input and weight gradients) + the recomputed projections
//            2BJ(Dx + Dy); elementwise traffic 24BJ = 14.7 MB plus the bias column sums.
#include "bifuse_device.cuh"

// proj: rows x 2*joint (row stride 2*joint); h: rows x joint.
extern "C" __global__ void mlb_forward(const float* __restrict__ proj, const float* __restrict__ bu,
                                       const float* __restrict__ bv, float* __restrict__ h, int rows, int joint, int act) {
    const int64_t total = (int64_t)rows * joint;
    for (int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += (int64_t)gridDim.x * blockDim.x) {
        const int64_t r = t / joint;
        const int j = (int)(t - r * joint);
        const float* row = proj + r * 2 * joint;
        const float au = bf_act(row[j] + bu[j], act);
        const float av = bf_act(row[joint + j] + bv[j], act);
        h[t] = au * av;
    }
}

// proj (in/out): x U^T | y V^T on entry, dpu | dpv on exit. gh: rows x joint. h: rows x joint (written).
extern "C" __global__ void mlb_backward(float* __restrict__ proj, const float* __restrict__ bu, const float* __restrict__ bv,
                                        const float* __restrict__ gh, float* __restrict__ h, int rows, int joint, int act) {
    const int64_t total = (int64_t)rows * joint;
    for (int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += (int64_t)gridDim.x * blockDim.x) {
        const int64_t r = t / joint;
        const int j = (int)(t - r * joint);
        float* row = proj + r * 2 * joint;
        const float au = bf_act(row[j] + bu[j], act);
        const float av = bf_act(row[joint + j] + bv[j], act);
        const float g = gh[t];
        h[t] = au * av;
        row[j] = g * av * bf_act_grad(au, act);
        row[joint + j] = g * au * bf_act_grad(av, act);
    }
}
