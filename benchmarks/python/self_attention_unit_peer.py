#!/usr/bin/env python3
"""PyTorch peer benchmark for MCAN's self-attention unit, to compare against bifuse's SelfAttentionUnit.

Written as MILVLG/mcan-vqa writes its SA module: MHAtt (multi_head_attention_peer.MHAtt, mcan-vqa's), then
x = norm1(x + mhatt(x, x, x, mask)) and x = norm2(x + ffn(x)), where ffn is mcan-vqa's FFN -> MLP -> FC
(nn.Linear(H, F) + ReLU, then nn.Linear(F, H)) and norm1 / norm2 are mcan-vqa's own LayerNorm
(a_2 * (x - mean) / (std + eps) + b_2, the unbiased std, eps 1e-6); --norm pytorch uses nn.LayerNorm.
Dropout omitted (identity at inference, and bifuse has none). Timed eagerly and under torch.compile.
The parameter names are mcan-vqa's (mhatt.linear_q.weight, ffn.mlp.fc.linear.weight, norm1.a_2, ...).

Rows: SelfAttentionUnit.forward (torch.no_grad()) and SelfAttentionUnit.fwd+bwd (loss = (out * g).sum(),
backward into x and every parameter). Size label "L=100,H=512,heads=8,F=2048,mcan", batch 64 (the image's
self-attention; every token real). Cost model (bifuse's, SelfAttentionUnitSuite.cost): I = O = B L H,
W = 4 H H + 2 H F + (4 H + F + H) + 4 H, M = 4 B L H H + 2 B L L H + 2 B L H F.

Examples:
    python3 benchmarks/python/self_attention_unit_peer.py --csv out.csv
    python3 benchmarks/python/self_attention_unit_peer.py --device cpu --runs 3 --warmup 1 --batches 2
    python3 benchmarks/python/self_attention_unit_peer.py --check --tokens 9 --hidden 16 --heads 2 --ffn 24
"""

import sys

import numpy as np
import torch
import torch.nn as nn

import peer_common as pc
from multi_head_attention_peer import MHAtt, mha_np


class McanLayerNorm(nn.Module):
    """mcan-vqa's LayerNorm (net_utils.py): the unbiased std, eps added to it."""

    def __init__(self, size, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.a_2 = nn.Parameter(torch.ones(size))
        self.b_2 = nn.Parameter(torch.zeros(size))

    def forward(self, x):
        mean = x.mean(-1, keepdim=True)
        std = x.std(-1, keepdim=True)
        return self.a_2 * (x - mean) / (std + self.eps) + self.b_2


class FC(nn.Module):
    def __init__(self, in_size, out_size):
        super().__init__()
        self.linear = nn.Linear(in_size, out_size)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.linear(x))


class MLP(nn.Module):
    def __init__(self, in_size, mid_size, out_size):
        super().__init__()
        self.fc = FC(in_size, mid_size)
        self.linear = nn.Linear(mid_size, out_size)

    def forward(self, x):
        return self.linear(self.fc(x))


class FFN(nn.Module):
    def __init__(self, hidden, ffn):
        super().__init__()
        self.mlp = MLP(hidden, ffn, hidden)

    def forward(self, x):
        return self.mlp(x)


def make_norm(kind, hidden):
    return McanLayerNorm(hidden) if kind == "mcan" else nn.LayerNorm(hidden)


class SA(nn.Module):
    def __init__(self, hidden, heads, ffn, norm="mcan"):
        super().__init__()
        self.mhatt = MHAtt(hidden, heads)
        self.ffn = FFN(hidden, ffn)
        self.norm1 = make_norm(norm, hidden)
        self.norm2 = make_norm(norm, hidden)

    def forward(self, x, x_mask):
        x = self.norm1(x + self.mhatt(x, x, x, x_mask))
        return self.norm2(x + self.ffn(x))


def randomize_norms(model, seed):
    """Gains 1 + 0.1 N(0, 1), biases 0.1 N(0, 1) (the modules start at 1 and 0, which would hide a swap in --check)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".a_2" in name or (name.startswith("norm") and name.endswith(".weight")):
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=gen))
            elif ".b_2" in name or (name.startswith("norm") and name.endswith(".bias")):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))


def norm_np(x, a, b, kind):
    mu = x.mean(axis=-1, keepdims=True)
    if kind == "mcan":
        return a * (x - mu) / (x.std(axis=-1, ddof=1, keepdims=True) + 1e-6) + b
    return a * (x - mu) / np.sqrt(x.var(axis=-1, keepdims=True) + 1e-5) + b


class SelfAttentionUnitPeer(pc.Peer):
    op = "SelfAttentionUnit"
    csv_prefix = "peer-self-attention-unit"
    default_batches = "64"
    default_check_batch = 2
    exact_zero_grads = {"mhatt.linear_k.bias": "b_k shifts every score of a query's row alike, which the softmax cancels"}

    def add_args(self, p):
        p.add_argument("--tokens", type=int, default=100, help="L (default 100 image objects; 14 for the question)")
        p.add_argument("--hidden", type=int, default=512, help="H (default 512)")
        p.add_argument("--heads", type=int, default=8, help="heads (default 8)")
        p.add_argument("--ffn", type=int, default=2048, help="F, the feed-forward width (default 2048)")
        p.add_argument("--norm", choices=("mcan", "pytorch"), default="mcan", help="mcan-vqa's LayerNorm (default) or nn.LayerNorm")

    def cases(self, args, batches):
        L, H, Fw = args.tokens, args.hidden, args.ffn
        size = "L=%d,H=%d,heads=%d,F=%d,%s" % (L, H, args.heads, Fw, args.norm)
        W = 4 * H * H + 2 * H * Fw + 4 * H + Fw + H + 4 * H
        return [pc.Case(size, B, (B * L * H, W, B * L * H, 4 * B * L * H * H + 2 * B * L * L * H + 2 * B * L * H * Fw), dict(norm=args.norm))
                for B in batches]

    def build(self, case, args, device, dtype, seed):
        torch.manual_seed(seed)
        model = SA(args.hidden, args.heads, args.ffn, args.norm)
        randomize_norms(model, seed + 2)
        model = model.to(device, dtype)
        gen = torch.Generator().manual_seed(seed + 1)
        x = torch.randn(case.batch, args.tokens, args.hidden, generator=gen, dtype=dtype)
        g = torch.randn(case.batch, args.tokens, args.hidden, generator=gen, dtype=dtype)
        mask = torch.zeros(case.batch, 1, 1, args.tokens, dtype=torch.bool)
        return pc.Built(model, (x.to(device),), g.to(device), consts=(mask.to(device),), input_names=("x",))

    def definition(self, case, built):
        w = pc.params_np(built.fn)
        kind = case.dims["norm"]
        an = ("a_2", "b_2") if kind == "mcan" else ("weight", "bias")
        x = built.inputs[0].detach().cpu().double().numpy()
        pad = built.consts[0].cpu().numpy().reshape(x.shape[0], -1)
        out = []
        for b in range(x.shape[0]):
            y = norm_np(x[b] + mha_np(w, "mhatt", x[b], x[b], built.fn.mhatt.heads, pad[b]), w["norm1." + an[0]], w["norm1." + an[1]], kind)
            r = np.maximum(y @ w["ffn.mlp.fc.linear.weight"].T + w["ffn.mlp.fc.linear.bias"], 0)
            out.append(norm_np(y + r @ w["ffn.mlp.linear.weight"].T + w["ffn.mlp.linear.bias"], w["norm2." + an[0]], w["norm2." + an[1]], kind))
        return np.array(out)


if __name__ == "__main__":
    sys.exit(pc.run(SelfAttentionUnitPeer, __doc__))
