#!/usr/bin/env python3
"""PyTorch peer benchmark for full bilinear pooling (bilinear CNN, Lin et al.), to compare against bifuse's FullBilinear.

Written the way the bilinear CNN PyTorch ports write it: the conv feature maps viewed as
B x C x L, torch.bmm(X, Y^T) / L, flattened, the signed square root and F.normalize; autograd for
the backward. The homologous case (second-order pooling, x = y) passes the same tensor twice, as
those ports do (torch.bmm(X, X.transpose(1, 2))). Timed eagerly and under torch.compile.

Math (bifuse spec, OPERATORS.md section 2), per sample, x_l in R^C1 and y_l in R^C2 the features
of cell l < L:
    Z = (1/L) sum_l x_l y_l^T        C1 x C2  (the ports divide by L; after the l2 step below the
                                               factor cancels, so the output is the same without it)
    out = l2( ssqrt( vec(Z) ) )      ssqrt(z) = sign(z) sqrt(|z|), l2(u) = u / max(||u||, 1e-12)
    x: B x C1 x L (channels first, as a conv feature map B x C x H x W viewed with L = H*W),
    y: B x C2 x L; homologous: y is x.

Rows: FullBilinear.forward (under torch.no_grad()) and FullBilinear.fwd+bwd (forward with
autograd, then loss = (out * g).sum() for a fixed random g, loss.backward() into x and y; there
are no parameters). Size labels "L=784,C1=512,C2=512,homologous" and "L=784,C1=512,C2=256"
(VGG conv5 at 448 px), batch 32.
Cost model (bifuse's): I = B*L(C1+C2) (B*L*C1 homologous), W = 0, O = B*C1*C2, M = B*L*C1*C2.

Examples:
    python3 benchmarks/python/full_bilinear_peer.py --csv out.csv
    python3 benchmarks/python/full_bilinear_peer.py --device cpu --runs 3 --warmup 1 --batches 8
    python3 benchmarks/python/full_bilinear_peer.py --check
"""

import sys

import numpy as np
import torch

import peer_common as pc


def full_bilinear(x, y):
    """x: B x C1 x L, y: B x C2 x L (the same tensor when homologous) -> B x C1*C2."""
    B, _, L = x.shape
    z = torch.bmm(x, y.transpose(1, 2)) / L
    return pc.ssqrt_l2(z.view(B, -1))


def full_bilinear_homologous(x):
    return full_bilinear(x, x)


class FullBilinearPeer(pc.Peer):
    op = "FullBilinear"
    csv_prefix = "peer-full-bilinear"
    default_batches = "32"
    default_check_batch = 2
    # Entries of Z near 0 make ssqrt's derivative 0.5/sqrt|z| large: float32 gradients land ~1e-2
    # from float64 at these sizes, for any float32 implementation.
    default_check_grad_tol = 5e-2

    def add_args(self, p):
        p.add_argument("--cells", type=int, default=784, help="L = H*W (default 784 = 28x28)")
        p.add_argument("--c1", type=int, default=512, help="channels of x (default 512)")
        p.add_argument("--c2", type=int, default=256, help="channels of y in the heterologous case (default 256)")
        p.add_argument("--kinds", default="homologous,heterologous",
                       help="which cases, comma-separated (default homologous,heterologous)")

    def cases(self, args, batches):
        L, C1 = args.cells, args.c1
        out = []
        for kind in [k.strip() for k in args.kinds.split(",") if k.strip()]:
            if kind == "homologous":
                C2, size = C1, "L=%d,C1=%d,C2=%d,homologous" % (L, C1, C1)
            elif kind == "heterologous":
                C2, size = args.c2, "L=%d,C1=%d,C2=%d" % (L, C1, args.c2)
            else:
                raise SystemExit("--kinds: expected homologous and/or heterologous, got %r" % kind)
            for B in batches:
                I = B * L * C1 if kind == "homologous" else B * L * (C1 + C2)
                out.append(pc.Case(size, B, (I, 0, B * C1 * C2, B * L * C1 * C2), dict(kind=kind, c2=C2)))
        return out

    def build(self, case, args, device, dtype, seed):
        gen = torch.Generator().manual_seed(seed + 1)
        B, L, C1, C2 = case.batch, args.cells, args.c1, case.dims["c2"]
        x = torch.randn(B, C1, L, generator=gen, dtype=dtype).to(device)
        if case.dims["kind"] == "homologous":
            g = torch.randn(B, C1 * C1, generator=gen, dtype=dtype).to(device)
            return pc.Built(full_bilinear_homologous, (x,), g, input_names=("x",))
        y = torch.randn(B, C2, L, generator=gen, dtype=dtype).to(device)
        g = torch.randn(B, C1 * C2, generator=gen, dtype=dtype).to(device)
        return pc.Built(full_bilinear, (x, y), g, input_names=("x", "y"))

    def definition(self, case, built):
        xs = [t.detach().cpu().double().numpy() for t in built.inputs]
        x, y = xs[0], xs[-1]
        out = []
        for b in range(x.shape[0]):
            L = x.shape[2]
            Z = np.zeros((x.shape[1], y.shape[1]))
            for l in range(L):
                Z += np.outer(x[b, :, l], y[b, :, l])
            out.append(pc.ssqrt_l2_np((Z / L).ravel()))
        return np.array(out)


if __name__ == "__main__":
    sys.exit(pc.run(FullBilinearPeer, __doc__))
