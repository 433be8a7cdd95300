#!/usr/bin/env python3
"""Writes the parity fixture of bifuse's MCAN attention units: mcan-vqa's MHAtt and SA modules (the same
module structure and state-dict names as MILVLG/mcan-vqa's core/model/mca.py and net_utils.py; eval mode,
no dropout), run forward and backward in float64, every tensor written as text for McanParityTest.

    mhatt    MHAtt(v, k, q, mask): the image attending to the question (q = x: B x Lq x H; k = v = y:
             B x Lk x H), the question's padded tokens masked (mcan-vqa's make_mask on token ids: 0 = pad)
    sa       SA(y, y_mask): the question's self-attention unit with mcan-vqa's LayerNorm (a_2, b_2, the
             unbiased std, eps 1e-6) and FFN (ffn.mlp.fc.linear, ffn.mlp.linear)
    sga      SGA(x, y, x_mask, y_mask): the image's guided-attention unit (mhatt1, mhatt2, ffn, norm1..3), the
             image's padding from its zero feature rows (mcan-vqa's make_mask on features: sample 1's last two
             objects) and the question's from the token counts
    ed       McanCore(y, sga.x, masks): mcan-vqa's Net from the backbone (MCA_ED, 2 layers) through AttFlat on each
             side (M = 6, G = 1, O = 10) to proj_norm, under its names (backbone.enc_list.0..., attflat_img...)
Losses: (out * R).sum() for fixed random R; backward into the inputs and every parameter.

Sizes: B = 3, Lq = 5 image objects, Lk = 4 tokens (sample 0: all real; sample 1: 2 real, 2 padded;
sample 2: none real, mcan-vqa's uniform attention), H = 8, 2 heads of 4, F = 12. The LayerNorms' a_2 and
b_2 are moved off 1 and 0 (a trained model's state). Every input and parameter is drawn in float32 and then
computed with in float64, so the Java side loads exactly the same numbers as floats.

Format (as ban_fixture.py's): '#' lines are comments; every other line is NAME SHAPE VALUES..., SHAPE the dims
joined by 'x', values row-major, each the shortest repr of a float64. Names: x, y, token_counts, object_counts,
R_mhatt, R_sa, R_sga, R_ed, mhatt.out, mhatt.attention (B x heads x Lq x Lk), sa.out, sga.out, ed.out, every state-dict entry under its module's
prefix (mhatt.linear_q.weight, sa.ffn.mlp.fc.linear.bias, sa.norm1.a_2, ...), and grad.<name> for the
inputs (grad.mhatt.x, grad.mhatt.y, grad.sa.y, grad.sga.x, grad.sga.y, grad.ed.q, grad.ed.v) and every parameter.

Usage (writes java/src/test/resources/io/bifuse/mcan_parity.txt by default):
    python3 benchmarks/python/mcan_fixture.py [--out-dir DIR] [--seed 7]
"""

import argparse
import os
import sys

import torch

from multi_head_attention_peer import MHAtt
from self_attention_unit_peer import SA
from guided_attention_unit_peer import SGA
from mcan_encoder_decoder_peer import McanCore

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.normpath(os.path.join(HERE, os.pardir, os.pardir, "java", "src", "test", "resources", "io", "bifuse"))


def fmt(name, t):
    t = t.detach().double().cpu()
    shape = "x".join(str(d) for d in t.shape) if t.dim() > 0 else "scalar"
    return "%s %s %s" % (name, shape, " ".join(repr(float(v)) for v in t.reshape(-1).tolist()))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out-dir", default=DEFAULT_OUT)
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args(argv)
    B, LQ, LK, H, HEADS, FF = 3, 5, 4, 8, 2, 12
    torch.manual_seed(a.seed)
    mhatt = MHAtt(H, HEADS).eval()
    sa = SA(H, HEADS, FF).eval()
    sga = SGA(H, HEADS, FF).eval()
    ed = McanCore(2, H, HEADS, FF, 6, 1, 10).eval()
    gen = torch.Generator().manual_seed(a.seed + 1)
    with torch.no_grad():
        for mod in (sa, sga, ed):
            for name, p in mod.named_parameters():
                if name.endswith("a_2"):
                    p.copy_(1 + 0.2 * torch.randn(p.shape, generator=gen))
                elif name.endswith("b_2"):
                    p.copy_(0.2 * torch.randn(p.shape, generator=gen))
    x = torch.randn(B, LQ, H, generator=gen)
    y = torch.randn(B, LK, H, generator=gen)
    counts = torch.tensor([4, 2, 0])
    mask = (torch.arange(LK).unsqueeze(0) >= counts.unsqueeze(1)).view(B, 1, 1, LK)   # mcan-vqa's make_mask: True = pad
    r_m = torch.randn(B, LQ, H, generator=gen)
    r_s = torch.randn(B, LK, H, generator=gen)
    r_g = torch.randn(B, LQ, H, generator=gen)
    r_e = torch.randn(B, 10, generator=gen)
    xg = x.clone()
    xg[1, LQ - 2:] = 0                                                                  # two padded objects
    x_mask = (xg.abs().sum(-1) == 0).view(B, 1, 1, LQ)                                   # make_mask on features
    mhatt, sa, sga, ed = mhatt.double(), sa.double(), sga.double(), ed.double()
    xd = x.double().requires_grad_(True)
    yd = y.double().requires_grad_(True)
    ys = y.double().requires_grad_(True)
    out_m = mhatt(yd, yd, xd, mask)
    # the maps, recomputed as MHAtt.att computes them
    with torch.no_grad():
        d = H // HEADS
        q = mhatt.linear_q(xd).view(B, -1, HEADS, d).transpose(1, 2)
        k = mhatt.linear_k(yd).view(B, -1, HEADS, d).transpose(1, 2)
        att = torch.softmax((q @ k.transpose(-2, -1) / d ** 0.5).masked_fill(mask, -1e9), dim=-1)
    (out_m * r_m.double()).sum().backward()
    out_s = sa(ys, mask)
    (out_s * r_s.double()).sum().backward()
    xgd = xg.double().requires_grad_(True)
    ygd = y.double().requires_grad_(True)
    out_g = sga(xgd, ygd, x_mask, mask)
    (out_g * r_g.double()).sum().backward()
    qed = y.double().requires_grad_(True)
    ved = xg.double().requires_grad_(True)
    out_e = ed(qed, ved, mask, x_mask)
    (out_e * r_e.double()).sum().backward()
    lines = ["# written by benchmarks/python/mcan_fixture.py --seed %d (torch %s)" % (a.seed, torch.__version__)]
    lines += [fmt("x", x), fmt("y", y), fmt("token_counts", counts), fmt("R_mhatt", r_m), fmt("R_sa", r_s), fmt("R_sga", r_g), fmt("R_ed", r_e)]
    lines += [fmt("sga.x", xg), fmt("object_counts", (~x_mask.view(B, LQ)).sum(1))]
    lines += [fmt("mhatt.out", out_m), fmt("mhatt.attention", att), fmt("sa.out", out_s), fmt("sga.out", out_g), fmt("ed.out", out_e)]
    for prefix, mod in (("mhatt", mhatt), ("sa", sa), ("sga", sga), ("ed", ed)):
        for n, p in mod.named_parameters():
            lines.append(fmt("%s.%s" % (prefix, n), p))
            lines.append(fmt("grad.%s.%s" % (prefix, n), p.grad))
    lines += [fmt("grad.mhatt.x", xd.grad), fmt("grad.mhatt.y", yd.grad), fmt("grad.sa.y", ys.grad), fmt("grad.sga.x", xgd.grad),
              fmt("grad.sga.y", ygd.grad), fmt("grad.ed.q", qed.grad), fmt("grad.ed.v", ved.grad)]
    os.makedirs(a.out_dir, exist_ok=True)
    path = os.path.join(a.out_dir, "mcan_parity.txt")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
