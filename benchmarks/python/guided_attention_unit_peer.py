#!/usr/bin/env python3
"""PyTorch peer benchmark for MCAN's guided-attention unit, to compare against bifuse's GuidedAttentionUnit.

Written as MILVLG/mcan-vqa writes its SGA module: two MHAtt (mcan-vqa's, from multi_head_attention_peer), then
    x = norm1(x + mhatt1(x, x, x, x_mask))
    x = norm2(x + mhatt2(y, y, x, y_mask))        the image attends to the question
    x = norm3(x + ffn(x))
with mcan-vqa's FFN and LayerNorm (from self_attention_unit_peer; --norm pytorch: nn.LayerNorm). Dropout omitted.
Timed eagerly and under torch.compile.

Rows: GuidedAttentionUnit.forward and GuidedAttentionUnit.fwd+bwd (loss = (out * g).sum(), backward into x, y and
every parameter). Size label "Lx=100,Ly=14,H=512,heads=8,F=2048,mcan", batch 64 (nothing padded). Cost model
(bifuse's, GuidedAttentionUnitSuite.cost): I = B Lx H + B Ly H, O = B Lx H, W = 8 H H + 2 H F + 8 H + F + H + 6 H,
M = 4 B Lx H H + 2 B Lx Lx H + 2 B Lx H H + 2 B Ly H H + 2 B Lx Ly H + 2 B Lx H F.

Examples:
    python3 benchmarks/python/guided_attention_unit_peer.py --csv out.csv
    python3 benchmarks/python/guided_attention_unit_peer.py --check --xtokens 6 --ytokens 4 --hidden 16 --heads 2 --ffn 24
"""

import sys

import numpy as np
import torch
import torch.nn as nn

import peer_common as pc
from multi_head_attention_peer import MHAtt, mha_np
from self_attention_unit_peer import FFN, make_norm, norm_np, randomize_norms


class SGA(nn.Module):
    def __init__(self, hidden, heads, ffn, norm="mcan"):
        super().__init__()
        self.mhatt1 = MHAtt(hidden, heads)
        self.mhatt2 = MHAtt(hidden, heads)
        self.ffn = FFN(hidden, ffn)
        self.norm1 = make_norm(norm, hidden)
        self.norm2 = make_norm(norm, hidden)
        self.norm3 = make_norm(norm, hidden)

    def forward(self, x, y, x_mask, y_mask):
        x = self.norm1(x + self.mhatt1(x, x, x, x_mask))
        x = self.norm2(x + self.mhatt2(y, y, x, y_mask))
        return self.norm3(x + self.ffn(x))


class GuidedAttentionUnitPeer(pc.Peer):
    op = "GuidedAttentionUnit"
    csv_prefix = "peer-guided-attention-unit"
    default_batches = "64"
    default_check_batch = 2
    exact_zero_grads = {"mhatt1.linear_k.bias": "b_k shifts every score of a query's row alike, which the softmax cancels",
                        "mhatt2.linear_k.bias": "the same, in the guided attention"}

    def add_args(self, p):
        p.add_argument("--xtokens", type=int, default=100, help="Lx, the guided sequence (default 100 image objects)")
        p.add_argument("--ytokens", type=int, default=14, help="Ly, the guiding sequence (default 14 question tokens)")
        p.add_argument("--hidden", type=int, default=512)
        p.add_argument("--heads", type=int, default=8)
        p.add_argument("--ffn", type=int, default=2048)
        p.add_argument("--norm", choices=("mcan", "pytorch"), default="mcan")

    def cases(self, args, batches):
        lx, ly, H, Fw = args.xtokens, args.ytokens, args.hidden, args.ffn
        size = "Lx=%d,Ly=%d,H=%d,heads=%d,F=%d,%s" % (lx, ly, H, args.heads, Fw, args.norm)
        W = 8 * H * H + 2 * H * Fw + 8 * H + Fw + H + 6 * H
        return [pc.Case(size, B, (B * lx * H + B * ly * H, W, B * lx * H,
                                  4 * B * lx * H * H + 2 * B * lx * lx * H + 2 * B * lx * H * H + 2 * B * ly * H * H + 2 * B * lx * ly * H
                                  + 2 * B * lx * H * Fw), dict(norm=args.norm)) for B in batches]

    def build(self, case, args, device, dtype, seed):
        torch.manual_seed(seed)
        model = SGA(args.hidden, args.heads, args.ffn, args.norm)
        randomize_norms(model, seed + 2)
        model = model.to(device, dtype)
        gen = torch.Generator().manual_seed(seed + 1)
        x = torch.randn(case.batch, args.xtokens, args.hidden, generator=gen, dtype=dtype)
        y = torch.randn(case.batch, args.ytokens, args.hidden, generator=gen, dtype=dtype)
        g = torch.randn(case.batch, args.xtokens, args.hidden, generator=gen, dtype=dtype)
        xm = torch.zeros(case.batch, 1, 1, args.xtokens, dtype=torch.bool)
        ym = torch.zeros(case.batch, 1, 1, args.ytokens, dtype=torch.bool)
        return pc.Built(model, (x.to(device), y.to(device)), g.to(device), consts=(xm.to(device), ym.to(device)), input_names=("x", "y"))

    def definition(self, case, built):
        w = pc.params_np(built.fn)
        kind = case.dims["norm"]
        an = ("a_2", "b_2") if kind == "mcan" else ("weight", "bias")
        x, y = (t.detach().cpu().double().numpy() for t in built.inputs)
        xp = built.consts[0].cpu().numpy().reshape(x.shape[0], -1)
        yp = built.consts[1].cpu().numpy().reshape(y.shape[0], -1)
        n = built.fn.mhatt1.heads
        out = []
        for b in range(x.shape[0]):
            nrm = lambda t, i: norm_np(t, w["norm%d.%s" % (i, an[0])], w["norm%d.%s" % (i, an[1])], kind)
            x1 = nrm(x[b] + mha_np(w, "mhatt1", x[b], x[b], n, xp[b]), 1)
            x2 = nrm(x1 + mha_np(w, "mhatt2", x1, y[b], n, yp[b]), 2)
            r = np.maximum(x2 @ w["ffn.mlp.fc.linear.weight"].T + w["ffn.mlp.fc.linear.bias"], 0)
            out.append(nrm(x2 + r @ w["ffn.mlp.linear.weight"].T + w["ffn.mlp.linear.bias"], 3))
        return np.array(out)


if __name__ == "__main__":
    sys.exit(pc.run(GuidedAttentionUnitPeer, __doc__))
