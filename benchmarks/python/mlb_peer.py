#!/usr/bin/env python3
"""PyTorch peer benchmark for MLB fusion (low-rank bilinear pooling, Kim et al. 2017), to compare against bifuse's Mlb.

Written the way MLB users write it in PyTorch: three nn.Linear layers, the activation on both
projections, an elementwise product, and autograd for the backward. Timed eagerly and under
torch.compile (default mode).

Math (bifuse spec, OPERATORS.md section 2), weights in nn.Linear layout (out x in):
    f = P( act(U x + b_u) * act(V y + b_v) ) + b_p       act in {tanh (the paper's), relu, none}
    x: B x Dx (question), y: B x Dy (image), U: J x Dx, V: J x Dy, P: Out x J

Rows: Mlb.forward (under torch.no_grad()) and Mlb.fwd+bwd (forward with autograd, then
loss = (f * g).sum() for a fixed random g, loss.backward() into x, y and the six parameters).
Size label "Dx=2400,Dy=2048,J=1200,Out=2000,tanh", batch 512 by default (spec section 5).
Cost model (bifuse's): I = B(Dx+Dy), W = J(Dx+Dy) + Out*J, O = B*Out, M = B*J(Dx+Dy) + B*Out*J.

Examples:
    python3 benchmarks/python/mlb_peer.py --csv out.csv
    python3 benchmarks/python/mlb_peer.py --device cpu --runs 3 --warmup 1
    python3 benchmarks/python/mlb_peer.py --check
"""

import sys

import numpy as np
import torch
import torch.nn as nn

import peer_common as pc


class MLB(nn.Module):
    def __init__(self, dx, dy, joint, out, act="tanh"):
        super().__init__()
        self.linear_x = nn.Linear(dx, joint)
        self.linear_y = nn.Linear(dy, joint)
        self.linear_out = nn.Linear(joint, out)
        self.act = pc.activation(act)

    def forward(self, x, y):
        return self.linear_out(self.act(self.linear_x(x)) * self.act(self.linear_y(y)))


class MlbPeer(pc.Peer):
    op = "Mlb"
    csv_prefix = "peer-mlb"
    default_batches = "512"
    default_check_batch = 4

    def add_args(self, p):
        p.add_argument("--dx", type=int, default=2400, help="question features (default 2400)")
        p.add_argument("--dy", type=int, default=2048, help="image features (default 2048)")
        p.add_argument("--joint", type=int, default=1200, help="J, the joint dimension (default 1200)")
        p.add_argument("--out", type=int, default=2000, help="output dimension (default 2000)")
        p.add_argument("--activation", choices=pc.ACTIVATIONS, default="tanh")

    def cases(self, args, batches):
        Dx, Dy, J, Out = args.dx, args.dy, args.joint, args.out
        size = "Dx=%d,Dy=%d,J=%d,Out=%d,%s" % (Dx, Dy, J, Out, args.activation)
        return [pc.Case(size, B, (B * (Dx + Dy), J * (Dx + Dy) + Out * J, B * Out,
                                  B * J * (Dx + Dy) + B * Out * J), dict(act=args.activation))
                for B in batches]

    def build(self, case, args, device, dtype, seed):
        torch.manual_seed(seed)
        model = MLB(args.dx, args.dy, args.joint, args.out, args.activation).to(device, dtype)
        gen = torch.Generator().manual_seed(seed + 1)
        x = torch.randn(case.batch, args.dx, generator=gen, dtype=dtype).to(device)
        y = torch.randn(case.batch, args.dy, generator=gen, dtype=dtype).to(device)
        g = torch.randn(case.batch, args.out, generator=gen, dtype=dtype).to(device)
        return pc.Built(model, (x, y), g, input_names=("x", "y"))

    def definition(self, case, built):
        w = pc.params_np(built.fn)
        act = pc.activation_np(case.dims["act"])
        x, y = (t.detach().cpu().double().numpy() for t in built.inputs)
        out = []
        for b in range(x.shape[0]):
            h = act(w["linear_x.weight"] @ x[b] + w["linear_x.bias"]) * act(w["linear_y.weight"] @ y[b] + w["linear_y.bias"])
            out.append(w["linear_out.weight"] @ h + w["linear_out.bias"])
        return np.array(out)


if __name__ == "__main__":
    sys.exit(pc.run(MlbPeer, __doc__))
