// Float64 reference math shared by the kernel-emulation harnesses: the normalization after pooling (signed
// sqrt, then l2 with modes 0/1/2, as io.bifuse's NormalizationReference), the activations by their
// Activation.code(), and the z perturbation that estimates how well a float32 pipeline can be conditioned.
// Written from the definitions, independently of cuda/bifuse_device.cuh, so that a bug shared by every
// operator's kernels still shows.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace {

struct EmuNorm {
    std::string name;
    int signed_sqrt;
    float ssqrt_eps;
    int l2_mode;  // 0 NONE, 1 MAX_NORM, 2 SUM_SQUARES (Normalization.L2.code())
    float l2_eps;
    bool identity() const { return !signed_sqrt && l2_mode == 0; }
};

inline double emu_ssqrt(double z) { return (z > 0 ? 1.0 : z < 0 ? -1.0 : 0.0) * std::sqrt(std::fabs(z)); }

// One row of d values: out = s(u) u with u = ssqrt(z) (or z).
inline void emu_ref_norm_forward(const EmuNorm& n, const double* z, int d, double* out) {
    std::vector<double> u(d);
    double sumsq = 0;
    for (int j = 0; j < d; ++j) {
        u[j] = n.signed_sqrt ? emu_ssqrt(z[j]) : z[j];
        sumsq += u[j] * u[j];
    }
    double scale = 1;
    if (n.l2_mode == 1) scale = 1 / std::max(std::sqrt(sumsq), (double)n.l2_eps);
    if (n.l2_mode == 2) scale = 1 / std::sqrt(sumsq + (double)n.l2_eps);
    for (int j = 0; j < d; ++j) out[j] = u[j] * scale;
}

// One row: gz = dL/dz for dL/dout = g. The l2 backward is gu = s g + ds u <u, g>; unprojected drops the second
// (projection) term, which gives the size of the terms whose difference the backward takes rather than a
// gradient (MFB's error scale). Returns rho = |gu| / (s |g|), the part of g that survives the projection (1
// without l2): where it is tiny, float32 cannot resolve the gradient at all.
inline double emu_ref_norm_backward(const EmuNorm& n, const double* z, const double* g, int d, double* gz, bool unprojected = false) {
    std::vector<double> u(d);
    double sumsq = 0, ug = 0;
    for (int j = 0; j < d; ++j) {
        u[j] = n.signed_sqrt ? emu_ssqrt(z[j]) : z[j];
        sumsq += u[j] * u[j];
        ug += u[j] * g[j];
    }
    double s = 1, ds = 0;
    if (n.l2_mode == 1) {
        const double norm = std::sqrt(sumsq);
        if (norm > n.l2_eps) {
            s = 1 / norm;
            ds = -1 / (norm * norm * norm);
        } else {
            s = 1 / (double)n.l2_eps;  // clamped: the scale is a constant, no projection
        }
    } else if (n.l2_mode == 2) {
        s = 1 / std::sqrt(sumsq + n.l2_eps);
        ds = -s * s * s;
    }
    if (unprojected) ds = 0;
    double gu2 = 0, sg2 = 0;
    for (int j = 0; j < d; ++j) {
        double gu = s * g[j] + ds * u[j] * ug;
        gu2 += gu * gu;
        sg2 += s * g[j] * s * g[j];
        if (n.signed_sqrt) {
            const double r = std::sqrt(std::fabs(z[j])) + n.ssqrt_eps;
            gu = r > 0 ? gu * 0.5 / r : 0;  // ssqrt_eps = 0 at z = 0: the derivative is taken as 0
        }
        gz[j] = gu;
    }
    return sg2 > 0 ? std::sqrt(gu2 / sg2) : 1.0;
}

// Every row of z (z.size() / d rows of d).
inline std::vector<double> emu_ref_norm_forward_rows(const EmuNorm& n, const std::vector<double>& z, int d) {
    std::vector<double> out(z.size());
    for (size_t at = 0; at + d <= z.size(); at += d) emu_ref_norm_forward(n, &z[at], d, &out[at]);
    return out;
}

struct EmuNormGrad {
    std::vector<double> gz;
    double min_rho = 1;  // the smallest rho over the rows (see emu_ref_norm_backward)
};

inline EmuNormGrad emu_ref_norm_backward_rows(const EmuNorm& n, const std::vector<double>& z, const std::vector<float>& g, int d,
                                              bool unprojected = false) {
    const std::vector<double> gd(g.begin(), g.end());
    EmuNormGrad r{std::vector<double>(z.size()), 1.0};
    for (size_t at = 0; at + d <= z.size(); at += d)
        r.min_rho = std::min(r.min_rho, emu_ref_norm_backward(n, &z[at], &gd[at], d, &r.gz[at], unprojected));
    return r;
}

// Activation.code(): 0 none, 1 relu, 2 tanh; the derivative at the pre-activation p.
inline double emu_act(int act, double p) { return act == 2 ? std::tanh(p) : act == 1 ? (p > 0 ? p : 0) : p; }
inline double emu_act_grad(int act, double p) { return act == 2 ? 1 - std::tanh(p) * std::tanh(p) : act == 1 ? (p > 0 ? 1 : 0) : 1; }

// z with every entry moved by +-rel * rms(its row), the signs drawn from seed: about the error a float32 pipeline
// leaves in z. The exact gradients' change under it is how far an end-to-end comparison can be trusted, since
// the signed-sqrt derivative 0.5 / (sqrt|z| + eps) amplifies such an error near z = 0.
inline std::vector<double> emu_perturb_rows(const std::vector<double>& z, int d, double rel, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::vector<double> zp = z;
    for (size_t at = 0; at + d <= z.size(); at += d) {
        double ms = 0;
        for (int j = 0; j < d; ++j) ms += z[at + j] * z[at + j];
        const double amp = rel * std::sqrt(ms / d);
        for (int j = 0; j < d; ++j) zp[at + j] += (rng() & 1) ? amp : -amp;
    }
    return zp;
}

}  // namespace
