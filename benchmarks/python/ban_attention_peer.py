#!/usr/bin/env python3
"""PyTorch peer benchmark for the BAN attention maps (Kim et al. 2018), to compare against bifuse's BanAttention.

Written the way jnhwkim/ban-vqa's BiAttention / BCNet computes the maps: the low-rank bilinear logits as
one torch.einsum('xhyk,bvk,bqk->bhvq', h_mat, X', Y') plus h_bias (evaluated left to right by PyTorch, which
materializes a B x G x N x K product), padded objects filled with -inf (masked_fill), and a softmax over the
flattened N*M map of each glimpse (view, softmax over dim 2, view back); autograd for the backward. Timed
eagerly and under torch.compile (default mode). The projections X' = relu(WN(U) X + b), Y' = relu(WN(V) Y + b)
are the inputs here, as they are bifuse's op's inputs (h_mat is the effective, already weight-normed p).

Math (bifuse spec, OPERATORS.md section 3):
    logits[b,g,i,j] = sum_k p[g,k] X'[b,i,k] Y'[b,j,k] + bias[g],   -inf where object i is padding
    A[b,g] = softmax over the N*M entries of logits[b,g]
    X': B x N x K, Y': B x M x K, p: G x K (h_mat 1 x G x 1 x K), bias: G (h_bias 1 x G x 1 x 1)
Masks: 10..N real objects per sample (ban-vqa's detector gives 10..100 boxes), never an empty sample
(ban-vqa's softmax gives NaN there; bifuse gives an all-zero map).

Rows: BanAttention.forward (under torch.no_grad()) and BanAttention.fwd+bwd (forward with autograd, then
loss = (A * g).sum() for a fixed random g, backward into X', Y', h_mat and h_bias). Size labels
"N=36,M=14,K=3840,G=8" and "N=100,M=14,K=3840,G=8", batch 256. peak_mem_bytes on CUDA shows the einsum's
intermediate.
Cost model (bifuse's): I = B*(N+M)*K, W = G*K + G, O = B*G*N*M, M = B*G*N*M*K multiply-adds.

Examples:
    python3 benchmarks/python/ban_attention_peer.py --csv out.csv
    python3 benchmarks/python/ban_attention_peer.py --device cpu --runs 3 --warmup 1 --batches 8 --objects 36
    python3 benchmarks/python/ban_attention_peer.py --check
"""

import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import peer_common as pc


class BanAttentionMaps(nn.Module):
    def __init__(self, width, glimpses):
        super().__init__()
        self.glimpses = glimpses
        # ban-vqa initializes h_mat and h_bias with normal_(); 1/sqrt(K) keeps the maps away from one-hot
        self.h_mat = nn.Parameter(torch.randn(1, glimpses, 1, width) / width ** 0.5)
        self.h_bias = nn.Parameter(torch.randn(1, glimpses, 1, 1))

    def forward(self, xp, yp, padding):
        B, N, _ = xp.shape
        M = yp.shape[1]
        logits = torch.einsum('xhyk,bvk,bqk->bhvq', (self.h_mat, xp, yp)) + self.h_bias   # B x G x N x M
        logits = logits.masked_fill(padding[:, None, :, None], float('-inf'))
        p = F.softmax(logits.view(B, self.glimpses, N * M), 2)
        return p.view(B, self.glimpses, N, M)


class BanAttentionPeer(pc.Peer):
    op = "BanAttention"
    csv_prefix = "peer-ban-attention"
    default_batches = "256"
    default_check_batch = 3
    exact_zero_grads = {"h_bias": "the softmax over each map cancels a per-glimpse shift of the logits"}

    def add_args(self, p):
        p.add_argument("--objects", default="36,100", help="N, padded objects per sample, comma-separated (default 36,100)")
        p.add_argument("--tokens", type=int, default=14, help="M, question tokens (default 14)")
        p.add_argument("--width", type=int, default=3840, help="K, the projections' width (default 3840 = 1280 x 3)")
        p.add_argument("--glimpses", type=int, default=8, help="G (default 8)")

    def cases(self, args, batches):
        M, K, G = args.tokens, args.width, args.glimpses
        out = []
        for N in pc.parse_int_list(args.objects):
            size = "N=%d,M=%d,K=%d,G=%d" % (N, M, K, G)
            for B in batches:
                out.append(pc.Case(size, B, (B * (N + M) * K, G * K + G, B * G * N * M, B * G * N * M * K), dict(N=N)))
        return out

    def build(self, case, args, device, dtype, seed):
        torch.manual_seed(seed)
        N, M, K, G = case.dims["N"], args.tokens, args.width, args.glimpses
        model = BanAttentionMaps(K, G).to(device, dtype)
        gen = torch.Generator().manual_seed(seed + 1)
        # ReLU outputs, as ban-vqa's FCNet projections give
        xp = F.relu(torch.randn(case.batch, N, K, generator=gen, dtype=dtype)).to(device)
        yp = F.relu(torch.randn(case.batch, M, K, generator=gen, dtype=dtype)).to(device)
        lo = min(10, N)
        counts = torch.randint(lo, N + 1, (case.batch,), generator=gen)
        padding = (torch.arange(N)[None, :] >= counts[:, None]).to(device)
        xp = xp.masked_fill(padding[:, :, None], 0.0)   # padded objects' projections as the zero rows give them
        g = torch.randn(case.batch, G, N, M, generator=gen, dtype=dtype).to(device)
        return pc.Built(model, (xp, yp), g, consts=(padding,), input_names=("xp", "yp"))

    def definition(self, case, built):
        w = pc.params_np(built.fn)
        p, bias = w["h_mat"][0, :, 0, :], w["h_bias"][:, :, 0, 0][0]
        xp, yp = (t.detach().cpu().double().numpy() for t in built.inputs)
        padding = built.consts[0].cpu().numpy()
        B, N, _ = xp.shape
        M, G = yp.shape[1], p.shape[0]
        out = np.zeros((B, G, N, M))
        for b in range(B):
            for g in range(G):
                logits = np.array([[np.sum(p[g] * xp[b, i] * yp[b, j]) + bias[g] for j in range(M)] for i in range(N)])
                logits[padding[b]] = -np.inf
                e = np.exp(logits - logits.max())
                out[b, g] = e / e.sum()
        return out


if __name__ == "__main__":
    sys.exit(pc.run(BanAttentionPeer, __doc__))
