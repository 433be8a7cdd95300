#!/usr/bin/env python3
"""PyTorch peer benchmark for MFB and MFH (factorized bilinear pooling, Yu et al.), to compare against bifuse's Mfb.

Written the way the MFB/MFH PyTorch ports write it: per block two nn.Linear projections to o*k
units, the activation (none in the original MFB, relu in block.bootstrap), an elementwise product,
sum pooling over groups of k ADJACENT units with .view(B, o, k).sum(-1), the signed square root
and F.normalize; autograd for the backward. Timed eagerly and under torch.compile (default mode).

Math (bifuse spec, OPERATORS.md section 2), weights in nn.Linear layout (out x in):
    e_1 = act(U_1 x + b_1) * act(V_1 y + c_1)                    (o*k units)
    e_i = act(U_i x + b_i) * act(V_i y + c_i) * e_{i-1}          (MFH: block i times block i-1's
                                                                  pre-pooling product)
    z_i[j] = sum_{t < k} e_i[j*k + t]                            (o outputs per block)
    out = concat_i( l2( ssqrt(z_i) ) )                           (each block normalized, then
                                                                  concatenated, as MFH does)
    ssqrt(z) = sign(z) sqrt(|z|), l2(u) = u / max(||u||, 1e-12)  (F.normalize)
MFB is 1 block; MFH here is 2 blocks (--blocks 1,2 gives both, as separate size labels).

Rows: Mfb.forward (under torch.no_grad()) and Mfb.fwd+bwd (forward with autograd, then
loss = (out * g).sum() for a fixed random g, loss.backward() into x, y and every parameter).
Size labels "Dx=1024,Dy=2048,o=1000,k=5,blocks=1,none" and "...,blocks=2,none", batch 512.
Cost model (bifuse's, n blocks): I = B(Dx+Dy), W = n*o*k(Dx+Dy), O = B*n*o, M = B*n*o*k(Dx+Dy).

Examples:
    python3 benchmarks/python/mfb_peer.py --csv out.csv
    python3 benchmarks/python/mfb_peer.py --device cpu --runs 3 --warmup 1 --blocks 1
    python3 benchmarks/python/mfb_peer.py --check
"""

import sys

import numpy as np
import torch
import torch.nn as nn

import peer_common as pc


class MFH(nn.Module):
    """MFB when blocks == 1."""

    def __init__(self, dx, dy, o, k, blocks=1, act="none"):
        super().__init__()
        self.o, self.k = o, k
        self.linear_x = nn.ModuleList([nn.Linear(dx, o * k) for _ in range(blocks)])
        self.linear_y = nn.ModuleList([nn.Linear(dy, o * k) for _ in range(blocks)])
        self.act = pc.activation(act)

    def forward(self, x, y):
        outs = []
        prev = None
        for lx, ly in zip(self.linear_x, self.linear_y):
            e = self.act(lx(x)) * self.act(ly(y))
            if prev is not None:
                e = e * prev
            prev = e
            z = e.view(e.shape[0], self.o, self.k).sum(-1)
            outs.append(pc.ssqrt_l2(z))
        return outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)


class MfbPeer(pc.Peer):
    op = "Mfb"
    csv_prefix = "peer-mfb"
    default_batches = "512"
    default_check_batch = 4
    default_check_grad_tol = 1e-2

    def add_args(self, p):
        p.add_argument("--dx", type=int, default=1024, help="question features (default 1024, the LSTM)")
        p.add_argument("--dy", type=int, default=2048, help="image features (default 2048)")
        p.add_argument("--o", type=int, default=1000, help="outputs per block (default 1000)")
        p.add_argument("--k", type=int, default=5, help="factor: units summed per output (default 5)")
        p.add_argument("--blocks", default="1,2", help="block counts, comma-separated: 1 = MFB, 2 = MFH (default 1,2)")
        p.add_argument("--activation", choices=pc.ACTIVATIONS, default="none",
                       help="on the projections (default none, as the original MFB)")

    def cases(self, args, batches):
        Dx, Dy, o, k = args.dx, args.dy, args.o, args.k
        out = []
        for n in pc.parse_int_list(args.blocks):
            size = "Dx=%d,Dy=%d,o=%d,k=%d,blocks=%d,%s" % (Dx, Dy, o, k, n, args.activation)
            for B in batches:
                out.append(pc.Case(size, B, (B * (Dx + Dy), n * o * k * (Dx + Dy), B * n * o,
                                             B * n * o * k * (Dx + Dy)), dict(blocks=n, act=args.activation)))
        return out

    def build(self, case, args, device, dtype, seed):
        torch.manual_seed(seed)
        model = MFH(args.dx, args.dy, args.o, args.k, case.dims["blocks"], args.activation).to(device, dtype)
        gen = torch.Generator().manual_seed(seed + 1)
        x = torch.randn(case.batch, args.dx, generator=gen, dtype=dtype).to(device)
        y = torch.randn(case.batch, args.dy, generator=gen, dtype=dtype).to(device)
        g = torch.randn(case.batch, case.dims["blocks"] * args.o, generator=gen, dtype=dtype).to(device)
        return pc.Built(model, (x, y), g, input_names=("x", "y"))

    def definition(self, case, built):
        w = pc.params_np(built.fn)
        act = pc.activation_np(case.dims["act"])
        o, k = built.fn.o, built.fn.k
        x, y = (t.detach().cpu().double().numpy() for t in built.inputs)
        out = []
        for b in range(x.shape[0]):
            prev, parts = None, []
            for i in range(case.dims["blocks"]):
                e = (act(w["linear_x.%d.weight" % i] @ x[b] + w["linear_x.%d.bias" % i])
                     * act(w["linear_y.%d.weight" % i] @ y[b] + w["linear_y.%d.bias" % i]))
                if prev is not None:
                    e = e * prev
                prev = e
                z = np.zeros(o)
                np.add.at(z, np.arange(o * k) // k, e)      # unit u belongs to output u // k
                parts.append(pc.ssqrt_l2_np(z))
            out.append(np.concatenate(parts))
        return np.array(out)


if __name__ == "__main__":
    sys.exit(pc.run(MfbPeer, __doc__))
