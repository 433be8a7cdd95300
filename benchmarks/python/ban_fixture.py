#!/usr/bin/env python3
"""Writes the parity fixtures of bifuse's BanBlock: a tiny BAN block built the way jnhwkim/ban-vqa builds
it, run forward and backward in float64, every tensor written as text for BanBlockParityTest.

The model (same module structure and state-dict names as ban-vqa's BanModel without the counter, word
embedding and classifier; eval mode, so no dropout):
    FCNet([in, out])   weight_norm(nn.Linear(in, out), dim=None), then ReLU (q_prj: no activation)
    v_att.logits       weight_norm(BCNet(Dx, Dy, h, G, k=3), name='h_mat', dim=None): v_net, q_net
                       (width K = 3h), h_mat (1, G, 1, K) with ONE gain, h_bias (1, G, 1, 1);
                       logits = einsum('xhyk,bvk,bqk->bhvq', h_mat, v_, q_) + h_bias
    v_att.forward_all  objects whose row of x is all zeros get -inf; softmax over the flattened N*M map
    b_net[g]           BCNet(Dx, Dy, h', None, k): forward_with_weights = einsum('bvk,bvq,bqk->bk'),
                       then AvgPool1d(k, stride=k) * k when k > 1
    q_prj[g]           FCNet([h', Dy], act='') ; y <- q_prj[g](b_emb.unsqueeze(1)) + y
    out                y.sum(1)                                                 B x Dy
Loss: (out * R).sum() for a fixed random R (B x Dy); backward into x, y and every parameter.

Two fixtures: ban_parity.txt is ban-vqa's BAN block (b_net with k = 1: group 1, K' = h'), and
ban_parity_group3.txt the same with b_net k = 3 (K' = 3h', sums of 3 adjacent units). Sizes: B = 3,
N = 5 objects (sample 0: all real; sample 1: one real object, the rest zero rows; sample 2: zero rows
at objects 1 and 4, i.e. a hole in the middle and a padded tail), M = 4 tokens, Dx = 6, Dy = 5,
h = 2 (K = 6), G = 2, h' = 5. Each layer's weight_g is moved off ||weight_v|| (a trained model's
state), so that V and g enter separately.

Every input and parameter is drawn in float32 and then computed with in float64, so the Java side
loads exactly the same numbers as floats. Format: lines starting with '#' are comments; every other
line is one tensor: NAME SHAPE VALUES..., SHAPE the dims joined by 'x' ('scalar' for a 0-dim tensor),
values row-major, each the shortest repr of a float64. Names: x, y, R, out, attention (B x G x N x M),
object_counts, every state-dict entry (v_att.logits.h_mat_g, ..., q_prj.1.main.0.bias), and
grad.<name> for x, y and every parameter.

Usage (writes into java/src/test/resources/io/bifuse/ by default):
    python3 benchmarks/python/ban_fixture.py [--out-dir DIR] [--seed 4]
"""

import argparse
import os
import sys
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import weight_norm

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.normpath(os.path.join(HERE, os.pardir, os.pardir, "java", "src", "test", "resources", "io", "bifuse"))


class FCNet(nn.Module):
    """One weight-normed linear layer (one gain for the whole matrix), then ReLU unless act is ''."""

    def __init__(self, dims, act="ReLU"):
        super().__init__()
        layers = [weight_norm(nn.Linear(dims[0], dims[1]), dim=None)]
        if act:
            layers.append(getattr(nn, act)())
        self.main = nn.Sequential(*layers)

    def forward(self, t):
        return self.main(t)


class BCNet(nn.Module):
    def __init__(self, v_dim, q_dim, h_dim, h_out, k):
        super().__init__()
        self.k = k
        self.v_net = FCNet([v_dim, h_dim * k])
        self.q_net = FCNet([q_dim, h_dim * k])
        if k > 1:
            self.p_net = nn.AvgPool1d(k, stride=k)
        self.h_out = h_out
        if h_out is not None:
            self.h_mat = nn.Parameter(torch.empty(1, h_out, 1, h_dim * k).normal_())
            self.h_bias = nn.Parameter(torch.empty(1, h_out, 1, 1).normal_())

    def forward(self, v, q):
        v_, q_ = self.v_net(v), self.q_net(q)
        return torch.einsum("xhyk,bvk,bqk->bhvq", self.h_mat, v_, q_) + self.h_bias

    def forward_with_weights(self, v, q, w):
        v_, q_ = self.v_net(v), self.q_net(q)
        f = torch.einsum("bvk,bvq,bqk->bk", v_, w, q_)
        if self.k > 1:
            f = self.p_net(f.unsqueeze(1)).squeeze(1) * self.k
        return f


class BiAttention(nn.Module):
    def __init__(self, x_dim, y_dim, z_dim, glimpse):
        super().__init__()
        self.glimpse = glimpse
        self.logits = weight_norm(BCNet(x_dim, y_dim, z_dim, glimpse, k=3), name="h_mat", dim=None)

    def forward_all(self, v, q):
        n, m = v.size(1), q.size(1)
        logits = self.logits(v, q)                                            # B x G x N x M
        mask = (0 == v.abs().sum(2)).unsqueeze(1).unsqueeze(3).expand(logits.size())
        logits = logits.masked_fill(mask, -float("inf"))
        p = F.softmax(logits.view(-1, self.glimpse, n * m), 2)
        return p.view(-1, self.glimpse, n, m), logits


class Block(nn.Module):
    def __init__(self, dx, dy, h, glimpses, h2, k2):
        super().__init__()
        self.glimpse = glimpses
        self.v_att = BiAttention(dx, dy, h, glimpses)
        self.b_net = nn.ModuleList([BCNet(dx, dy, h2, None, k=k2) for _ in range(glimpses)])
        self.q_prj = nn.ModuleList([FCNet([h2, dy], act="") for _ in range(glimpses)])

    def forward(self, v, q):
        att, _ = self.v_att.forward_all(v, q)
        for g in range(self.glimpse):
            b_emb = self.b_net[g].forward_with_weights(v, q, att[:, g, :, :])
            q = self.q_prj[g](b_emb.unsqueeze(1)) + q
        return q.sum(1), att


def fmt(name, t):
    t = t.detach().double().cpu()
    shape = "x".join(str(d) for d in t.shape) if t.dim() > 0 else "scalar"
    return "%s %s %s" % (name, shape, " ".join(repr(float(v)) for v in t.reshape(-1).tolist()))


def build(seed, k2):
    B, N, M, DX, DY, H, G, H2 = 3, 5, 4, 6, 5, 2, 2, 5
    torch.manual_seed(seed)
    model = Block(DX, DY, H, G, H2, k2).eval()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("_g"):   # a trained gain, not the ||V|| weight_norm starts from
                p.mul_(0.5 + torch.rand((), generator=gen))
    x = torch.randn(B, N, DX, generator=gen)
    x[1, 1:] = 0            # one real object
    x[2, 1] = 0             # a hole ...
    x[2, 4] = 0             # ... and a padded tail
    y = torch.randn(B, M, DY, generator=gen)
    r = torch.randn(B, DY, generator=gen)
    return model.double(), x.double(), y.double(), r.double()


def write(path, seed, k2):
    model, x, y, r = build(seed, k2)
    xr, yr = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
    out, att = model(xr, yr)
    (out * r).sum().backward()
    counts = (x.abs().sum(2) != 0).sum(1)
    lines = ["# bifuse BanBlock parity fixture, written by benchmarks/python/ban_fixture.py (seed %d, b_net k = %d, torch %s)"
             % (seed, k2, torch.__version__),
             "# B=3 N=5 M=4 Dx=6 Dy=5 h=2 K=6 G=2 h'=5 K'=%d group=%d; inputs and parameters are float32 values; computed in float64"
             % (5 * k2, k2),
             fmt("x", x), fmt("y", y), fmt("R", r), fmt("object_counts", counts)]
    lines += [fmt(n, p) for n, p in model.state_dict().items()]
    lines += [fmt("out", out), fmt("attention", att)]
    lines += [fmt("grad.x", xr.grad), fmt("grad.y", yr.grad)]
    lines += [fmt("grad." + n, p.grad) for n, p in model.named_parameters()]
    for v in out.reshape(-1).tolist() + att.reshape(-1).tolist():
        if v != v:
            raise SystemExit("NaN in the fixture: every sample needs a real object")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote %s (%d tensors)" % (path, len(lines) - 2))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out-dir", default=DEFAULT_OUT)
    p.add_argument("--seed", type=int, default=4)
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore", message=".*weight_norm.*")  # ban-vqa's API, deprecated in torch 2.x
    torch.set_default_dtype(torch.float32)
    os.makedirs(args.out_dir, exist_ok=True)
    write(os.path.join(args.out_dir, "ban_parity.txt"), args.seed, 1)
    write(os.path.join(args.out_dir, "ban_parity_group3.txt"), args.seed, 3)
    return 0


if __name__ == "__main__":
    sys.exit(main())
