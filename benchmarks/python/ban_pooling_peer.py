#!/usr/bin/env python3
"""PyTorch peer benchmark for bilinear attention pooling (BAN, Kim et al. 2018), to compare against bifuse's BanPooling.

Written the way jnhwkim/ban-vqa's BCNet.forward_with_weights writes it: one einsum
'bvk,bvq,bqk->bk' over the objects' projections v_ (B x N x K'), the attention map w (B x N x M) and
the tokens' projections q_ (B x M x K'), then, for a BCNet with k > 1, nn.AvgPool1d(k, stride=k) over
the units times k (a sum over groups of k adjacent units); autograd for the backward. Timed eagerly
and under torch.compile (default mode).

Math (bifuse spec, OPERATORS.md section 3):
    F[b,c] = sum_i sum_j A[b,i,j] X[b,i,c] Y[b,j,c]         c < K'
    f[b,u] = sum_{t<k} F[b, u*k + t]                        u < K'/k
Inputs as the BAN model gives them: each sample has 10..N real objects (the rest padding), A is a
softmax over the real objects' entries (zero on the padded rows, as ban-vqa's masked softmax makes
it), X and Y are ReLU outputs. The peer takes no mask: its padded rows of A are zero, so the output is
bifuse's; its gradient of A on padded rows is not zero (bifuse writes zeros there, which is what the
softmax's Jacobian makes of them anyway).

Rows: BanPooling.forward (under torch.no_grad()) and BanPooling.fwd+bwd (forward with autograd, then
loss = (f * g).sum() for a fixed random g, loss.backward() into X, A and Y). Size labels
"N=36,M=14,K'=1280,k=1", "N=100,M=14,K'=1280,k=1", "N=36,M=14,K'=3840,k=3", "N=100,M=14,K'=3840,k=3",
batch 256. Cost model (bifuse's): I = B*N*M + B*(N+M)*K', W = 0, O = B*K'/k, Mac = B*N*K'*(M+1).

Examples:
    python3 benchmarks/python/ban_pooling_peer.py --csv out.csv
    python3 benchmarks/python/ban_pooling_peer.py --device cpu --runs 3 --warmup 1 --batches 8
    python3 benchmarks/python/ban_pooling_peer.py --check
"""

import sys

import numpy as np
import torch
import torch.nn as nn

import peer_common as pc


class BanPooling(nn.Module):
    """ban-vqa's pooling step: the einsum, then AvgPool1d(k) * k when k > 1. No parameters."""

    def __init__(self, k):
        super().__init__()
        self.k = k
        self.p_net = nn.AvgPool1d(k, stride=k) if k > 1 else None

    def forward(self, v_, w, q_):
        logits = torch.einsum('bvk,bvq,bqk->bk', (v_, w, q_))
        if self.p_net is not None:
            logits = self.p_net(logits.unsqueeze(1)).squeeze(1) * self.k
        return logits


def parse_widths(s):
    """'1280:1,3840:3' -> [(1280, 1), (3840, 3)]"""
    out = []
    for part in [p.strip() for p in str(s).split(",") if p.strip()]:
        w, k = (int(v) for v in part.split(":"))
        if w % k != 0:
            raise SystemExit("--widths: the group %d must divide the width %d (bifuse rejects it; AvgPool1d would drop units)" % (k, w))
        out.append((w, k))
    return out


class BanPoolingPeer(pc.Peer):
    op = "BanPooling"
    csv_prefix = "peer-ban-pooling"
    default_batches = "256"
    default_check_batch = 2

    def add_args(self, p):
        p.add_argument("--objects", default="36,100", help="N, objects per sample, comma-separated (default 36,100)")
        p.add_argument("--tokens", type=int, default=14, help="M, question tokens (default 14)")
        p.add_argument("--widths", default="1280:1,3840:3",
                       help="K':k pairs, comma-separated: projection width and pooling group (default 1280:1,3840:3)")

    def cases(self, args, batches):
        M = args.tokens
        out = []
        for K, k in parse_widths(args.widths):
            for N in pc.parse_int_list(args.objects):
                size = "N=%d,M=%d,K'=%d,k=%d" % (N, M, K, k)
                for B in batches:
                    out.append(pc.Case(size, B, (B * N * M + B * (N + M) * K, 0, B * K // k, B * N * K * (M + 1)),
                                       dict(N=N, M=M, K=K, k=k)))
        return out

    def build(self, case, args, device, dtype, seed):
        d = case.dims
        B, N, M, K, k = case.batch, d["N"], d["M"], d["K"], d["k"]
        gen = torch.Generator().manual_seed(seed + 1)
        lo = min(10, N)
        counts = torch.randint(lo, N + 1, (B,), generator=gen)
        real = (torch.arange(N).unsqueeze(0) < counts.unsqueeze(1))                    # B x N
        logits = torch.randn(B, N, M, generator=gen, dtype=torch.float64)
        logits = logits.masked_fill(~real.unsqueeze(2), float("-inf"))
        att = torch.softmax(logits.view(B, -1), dim=1).view(B, N, M).to(dtype)         # over the flattened real N*M map
        v = torch.relu(torch.randn(B, N, K, generator=gen, dtype=dtype))
        q = torch.relu(torch.randn(B, M, K, generator=gen, dtype=dtype))
        g = torch.randn(B, K // k, generator=gen, dtype=dtype)
        return pc.Built(BanPooling(k).to(device), (v.to(device), att.to(device), q.to(device)), g.to(device),
                        input_names=("x", "attention", "y"))

    def definition(self, case, built):
        v, w, q = (t.detach().cpu().double().numpy() for t in built.inputs)
        k = case.dims["k"]
        out = []
        for b in range(v.shape[0]):
            F = np.zeros(v.shape[2])
            for i in range(v.shape[1]):
                for j in range(q.shape[1]):
                    F += w[b, i, j] * v[b, i] * q[b, j]
            out.append(F.reshape(-1, k).sum(axis=1))
        return np.array(out)


if __name__ == "__main__":
    sys.exit(pc.run(BanPoolingPeer, __doc__))
