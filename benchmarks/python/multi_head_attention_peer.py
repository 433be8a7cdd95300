#!/usr/bin/env python3
"""PyTorch peer benchmark for MCAN's multi-head attention, to compare against bifuse's MultiHeadAttention.

Written as MILVLG/mcan-vqa writes its MHAtt module: four nn.Linear layers (linear_v, linear_k, linear_q,
linear_merge), the projections viewed as B x n x L x d heads, scores = q k^T / sqrt(d) by torch.matmul,
masked_fill(mask, -1e9) on padded keys, softmax over the keys, the product with v, the heads transposed
back and merged; autograd for the backward. With --impl sdpa the core is instead
F.scaled_dot_product_attention with a boolean key mask (what a current PyTorch user writes; it may pick
a fused kernel). Timed eagerly and under torch.compile (default mode).

Math (bifuse spec, OPERATORS.md section 4), weights in nn.Linear layout (out x in):
    Q = x W_q^T + b_q,  K = k W_k^T + b_k,  V = v W_v^T + b_v     (H = n d columns, head h: [h d, (h+1) d))
    P_h = softmax_j(Q_h K_h^T / sqrt(d), padded keys -1e9),  out = [P_h V_h]_h W_m^T + b_m
The benchmarked case is MCAN's image self-attention (query = key = value = the B x L x H features);
every key is real (no padding), so the fused bifuse kernels skip nothing the peer computes.

Rows: MultiHeadAttention.forward (under torch.no_grad()) and MultiHeadAttention.fwd+bwd (loss =
(out * g).sum(), backward into the input and every parameter). Size label
"Lq=100,Lk=100,D=512,H=512,heads=8", batch 64. Cost model (bifuse's):
I = B L D, W = 4 H D + 4 H (biases, counted with the weights), O = B L D,
M = 4 B L H D (the four projections) + 2 B L L H (Q K^T and P V).

Examples:
    python3 benchmarks/python/multi_head_attention_peer.py --csv out.csv
    python3 benchmarks/python/multi_head_attention_peer.py --device cpu --runs 3 --warmup 1 --batches 4
    python3 benchmarks/python/multi_head_attention_peer.py --check
"""

import math
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import peer_common as pc


class MHAtt(nn.Module):
    """mcan-vqa's MHAtt (dropout omitted: identity at inference and in bifuse)."""

    def __init__(self, hidden, heads, impl="mcan"):
        super().__init__()
        self.hidden, self.heads, self.impl = hidden, heads, impl
        self.linear_v = nn.Linear(hidden, hidden)
        self.linear_k = nn.Linear(hidden, hidden)
        self.linear_q = nn.Linear(hidden, hidden)
        self.linear_merge = nn.Linear(hidden, hidden)

    def forward(self, v, k, q, mask):
        b = q.size(0)
        d = self.hidden // self.heads
        v = self.linear_v(v).view(b, -1, self.heads, d).transpose(1, 2)
        k = self.linear_k(k).view(b, -1, self.heads, d).transpose(1, 2)
        q = self.linear_q(q).view(b, -1, self.heads, d).transpose(1, 2)
        if self.impl == "sdpa":
            atted = F.scaled_dot_product_attention(q, k, v, attn_mask=None if mask is None else ~mask)
        else:
            scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(d)
            if mask is not None:
                scores = scores.masked_fill(mask, -1e9)
            atted = torch.matmul(F.softmax(scores, dim=-1), v)
        atted = atted.transpose(1, 2).contiguous().view(b, -1, self.hidden)
        return self.linear_merge(atted)


class SelfAttention(nn.Module):
    """MCAN's self-attention call: MHAtt(x, x, x, mask)."""

    def __init__(self, hidden, heads, impl):
        super().__init__()
        self.mhatt = MHAtt(hidden, heads, impl)

    def forward(self, x, mask):
        return self.mhatt(x, x, x, mask)


def mha_np(w, prefix, q_in, kv_in, heads, pad):
    """MHAtt on one sample in float64 numpy: queries from q_in (Lq x H), keys and values from kv_in (Lk x H),
    the keys where pad is True scored -1e9; w the module's parameters by name, prefix its path ("mhatt")."""
    q, k, v = (t @ w["%s.linear_%s.weight" % (prefix, s)].T + w["%s.linear_%s.bias" % (prefix, s)]
               for t, s in ((q_in, "q"), (kv_in, "k"), (kv_in, "v")))
    d = q.shape[1] // heads
    out = []
    for h in range(heads):
        c = slice(h * d, (h + 1) * d)
        s = q[:, c] @ k[:, c].T / math.sqrt(d)
        s[:, pad] = -1e9
        e = np.exp(s - s.max(axis=1, keepdims=True))
        out.append((e / e.sum(axis=1, keepdims=True)) @ v[:, c])
    return np.concatenate(out, axis=1) @ w[prefix + ".linear_merge.weight"].T + w[prefix + ".linear_merge.bias"]


class MultiHeadAttentionPeer(pc.Peer):
    op = "MultiHeadAttention"
    csv_prefix = "peer-multi-head-attention"
    default_batches = "64"
    default_check_batch = 2
    exact_zero_grads = {"mhatt.linear_k.bias": "b_k shifts every score of a query's row alike, which the softmax cancels"}

    def add_args(self, p):
        p.add_argument("--tokens", type=int, default=100, help="L, the sequence length (default 100 image objects)")
        p.add_argument("--hidden", type=int, default=512, help="H (default 512)")
        p.add_argument("--heads", type=int, default=8, help="heads (default 8, of 64)")
        p.add_argument("--impl", choices=("mcan", "sdpa"), default="mcan",
                       help="mcan: mcan-vqa's matmul/masked_fill/softmax/matmul (default); sdpa: F.scaled_dot_product_attention")
        p.add_argument("--padded", type=int, default=0, help="padded keys at the end of every sample (default 0)")

    def cases(self, args, batches):
        L, H = args.tokens, args.hidden
        size = "Lq=%d,Lk=%d,D=%d,H=%d,heads=%d" % (L, L, H, H, args.heads)
        return [pc.Case(size, B, (B * L * H, 4 * H * H + 4 * H, B * L * H, 4 * B * L * H * H + 2 * B * L * L * H)) for B in batches]

    def build(self, case, args, device, dtype, seed):
        torch.manual_seed(seed)
        model = SelfAttention(args.hidden, args.heads, args.impl).to(device, dtype)
        gen = torch.Generator().manual_seed(seed + 1)
        x = torch.randn(case.batch, args.tokens, args.hidden, generator=gen, dtype=dtype)
        g = torch.randn(case.batch, args.tokens, args.hidden, generator=gen, dtype=dtype)
        mask = torch.zeros(case.batch, 1, 1, args.tokens, dtype=torch.bool)
        if args.padded:
            mask[..., args.tokens - args.padded:] = True
        return pc.Built(model, (x.to(device),), g.to(device), consts=(mask.to(device),), input_names=("x",))

    def definition(self, case, built):
        w = pc.params_np(built.fn)
        x = built.inputs[0].detach().cpu().double().numpy()
        pad = built.consts[0].cpu().numpy().reshape(x.shape[0], -1)
        return np.array([mha_np(w, "mhatt", x[b], x[b], built.fn.mhatt.heads, pad[b]) for b in range(x.shape[0])])


if __name__ == "__main__":
    sys.exit(pc.run(MultiHeadAttentionPeer, __doc__))
