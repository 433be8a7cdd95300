// LinearSum: the linear-sum fusion baseline (block.bootstrap's fusions.LinearSum): the sum of the two
// activated projections between the GEMMs.
//
// Math (io.bifuse.LinearSum; act = activ_input, code of io.bifuse.Activation):
//   a = act(x W0^T + b0), c = act(y W1^T + b1), z = a + c      (B x M)    lsum_forward, after two
//                                                                         bias-free cuBLAS projections
//   z^ = normalize(z) (optional, nseg_forward), f = act_out(z^ W_out^T + b_out) (cuBLAS + lin_bias_act)
// Backward, gz = dL/dz (through act_out, linear_out and the normalization):
//   ga = gz * act'(a), gc = gz * act'(c)                                   lsum_backward, in place over a, c
// then dW0 = ga^T x, db0 = colsum ga, dx = ga W0 (side 1 likewise; cuBLAS, lin_bias_grad_tiled).
//
// Shapes: A, C, z, gz: rows x M dense (A and C may be one 2B x M buffer, A its first B rows).
// Launch geometry: one thread per (row, unit), grid-stride over 64-bit indices, block 256; consecutive
// threads consecutive units: coalesced. No atomics: deterministic.
//   lsum_forward   reads 8BM (+8M bias), writes 12BM; 2 activations + 3 FLOPs per element.
//   lsum_backward  reads 12BM, writes 8BM; ~4 FLOPs per element. The GEMMs dominate (2BM(Dx + Dy + Out)
//                  forward, three times that backward).
#include "bifuse_device.cuh"

extern "C" __global__ void lsum_forward(float* __restrict__ A, float* __restrict__ C, const float* __restrict__ b0, const float* __restrict__ b1,
                                        float* __restrict__ z, int rows, int m, int act) {
    const int64_t total = (int64_t)rows * m;
    for (int64_t t = bf_tid(); t < total; t += bf_stride()) {
        const int j = (int)(t % m);
        const float a = bf_act(A[t] + b0[j], act), c = bf_act(C[t] + b1[j], act);
        A[t] = a;
        C[t] = c;
        z[t] = a + c;
    }
}

extern "C" __global__ void lsum_backward(float* __restrict__ A, float* __restrict__ C, const float* __restrict__ gz, int rows, int m, int act) {
    const int64_t total = (int64_t)rows * m;
    for (int64_t t = bf_tid(); t < total; t += bf_stride()) {
        const float g = gz[t];
        A[t] = g * bf_act_grad(A[t], act);
        C[t] = g * bf_act_grad(C[t], act);
    }
}
