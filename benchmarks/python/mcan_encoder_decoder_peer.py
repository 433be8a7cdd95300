#!/usr/bin/env python3
"""PyTorch peer benchmark for MCAN's encoder-decoder with its reductions, to compare against bifuse's McanEncoderDecoder
(mcan_fixture.py imports its modules).

Written as MILVLG/mcan-vqa writes it (core/model/mca.py and net.py): MCA_ED (enc_list: n SA layers on the question,
dec_list: n SGA layers on the image, each guided by the question's final encoding), AttFlat on each side (MLP H -> M ->
G with ReLU, masked_fill(-1e9) of the padded rows, softmax over the rows, the G glimpse sums concatenated,
linear_merge to O), their sum and proj_norm (mcan-vqa's LayerNorm); the question's LSTM and the image projection
before, the classifier after, are not part of the op. Dropout omitted. Parameter names: backbone.enc_list.i.*,
backbone.dec_list.i.*, attflat_lang.*, attflat_img.*, proj_norm.a_2 / b_2, as in a trained mcan-vqa checkpoint.

Rows: McanEncoderDecoder.forward and McanEncoderDecoder.fwd+bwd (loss = (out * g).sum(), backward into both inputs
and every parameter). Size label "n=6,Lq=14,Lv=100,H=512,heads=8,F=2048,M=512,G=1,O=1024", batch 64 (nothing padded).

Examples:
    python3 benchmarks/python/mcan_encoder_decoder_peer.py --csv out.csv
    python3 benchmarks/python/mcan_encoder_decoder_peer.py --check --layers 2 --qtokens 4 --vtokens 6 --hidden 16 --heads 2 --ffn 24 --flat-mlp 8 --out 12
"""

import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import peer_common as pc
from guided_attention_unit_peer import SGA
from self_attention_unit_peer import MLP, SA, McanLayerNorm, randomize_norms


class MCA_ED(nn.Module):
    def __init__(self, layers, hidden, heads, ffn):
        super().__init__()
        self.enc_list = nn.ModuleList([SA(hidden, heads, ffn) for _ in range(layers)])
        self.dec_list = nn.ModuleList([SGA(hidden, heads, ffn) for _ in range(layers)])

    def forward(self, x, y, x_mask, y_mask):
        for enc in self.enc_list:
            x = enc(x, x_mask)
        for dec in self.dec_list:
            y = dec(y, x, y_mask, x_mask)
        return x, y


class AttFlat(nn.Module):
    def __init__(self, hidden, mid, glimpses, out):
        super().__init__()
        self.glimpses = glimpses
        self.mlp = MLP(hidden, mid, glimpses)
        self.linear_merge = nn.Linear(hidden * glimpses, out)

    def forward(self, x, x_mask):
        att = self.mlp(x)
        att = att.masked_fill(x_mask.squeeze(1).squeeze(1).unsqueeze(2), -1e9)
        att = F.softmax(att, dim=1)
        att_list = [torch.sum(att[:, :, i: i + 1] * x, dim=1) for i in range(self.glimpses)]
        return self.linear_merge(torch.cat(att_list, dim=1))


class McanCore(nn.Module):
    """mcan-vqa's Net from the backbone to proj_norm, under its attribute names."""

    def __init__(self, layers, hidden, heads, ffn, flat_mlp, glimpses, out):
        super().__init__()
        self.backbone = MCA_ED(layers, hidden, heads, ffn)
        self.attflat_lang = AttFlat(hidden, flat_mlp, glimpses, out)
        self.attflat_img = AttFlat(hidden, flat_mlp, glimpses, out)
        self.proj_norm = McanLayerNorm(out)

    def forward(self, lang, img, lang_mask, img_mask):
        lang, img = self.backbone(lang, img, lang_mask, img_mask)
        return self.proj_norm(self.attflat_lang(lang, lang_mask) + self.attflat_img(img, img_mask))


class SuffixMatch(dict):
    """exact_zero_grads by name suffix: every layer's linear_k.bias, both reductions' logit bias."""

    def __contains__(self, name):
        return any(name.endswith(k) for k in self.keys())


class McanEncoderDecoderPeer(pc.Peer):
    op = "McanEncoderDecoder"
    csv_prefix = "peer-mcan-encoder-decoder"
    default_batches = "64"
    default_check_batch = 2
    default_check_grad_tol = 1e-3   # twelve post-norm units deep: float32 gradients lose more than 1e-4 (seen ~1e-5 at tiny sizes)
    exact_zero_grads = SuffixMatch({"linear_k.bias": "b_k shifts every score of a query's row alike, which the softmax cancels",
                                    "attflat_lang.mlp.linear.bias": "AttFlat's logit bias shifts every row's logit alike, which the softmax over the rows cancels",
                                    "attflat_img.mlp.linear.bias": "the same, on the image side"})

    def add_args(self, p):
        p.add_argument("--layers", type=int, default=6)
        p.add_argument("--qtokens", type=int, default=14)
        p.add_argument("--vtokens", type=int, default=100)
        p.add_argument("--hidden", type=int, default=512)
        p.add_argument("--heads", type=int, default=8)
        p.add_argument("--ffn", type=int, default=2048)
        p.add_argument("--flat-mlp", type=int, default=512)
        p.add_argument("--glimpses", type=int, default=1)
        p.add_argument("--out", type=int, default=1024)

    def cases(self, args, batches):
        n, lq, lv, H, Fw, M, G, O = args.layers, args.qtokens, args.vtokens, args.hidden, args.ffn, args.flat_mlp, args.glimpses, args.out
        size = "n=%d,Lq=%d,Lv=%d,H=%d,heads=%d,F=%d,M=%d,G=%d,O=%d" % (n, lq, lv, H, args.heads, Fw, M, G, O)
        W = n * (4 * H * H + 2 * H * Fw) + n * (8 * H * H + 2 * H * Fw) + 2 * (H * M + M * G + G * H * O)

        def mac(B):
            sa = 4 * B * lq * H * H + 2 * B * lq * lq * H + 2 * B * lq * H * Fw
            ga = 4 * B * lv * H * H + 2 * B * lv * lv * H + 2 * B * lv * H * H + 2 * B * lq * H * H + 2 * B * lv * lq * H + 2 * B * lv * H * Fw
            flat = B * (lq + lv) * (H * M + M * G + G * H) + 2 * B * G * H * O
            return n * (sa + ga) + flat
        return [pc.Case(size, B, (B * (lq + lv) * H, W, B * O, mac(B))) for B in batches]

    def build(self, case, args, device, dtype, seed):
        torch.manual_seed(seed)
        model = McanCore(args.layers, args.hidden, args.heads, args.ffn, args.flat_mlp, args.glimpses, args.out)
        randomize_norms(model, seed + 2)
        model = model.to(device, dtype)
        gen = torch.Generator().manual_seed(seed + 1)
        q = torch.randn(case.batch, args.qtokens, args.hidden, generator=gen, dtype=dtype)
        v = torch.randn(case.batch, args.vtokens, args.hidden, generator=gen, dtype=dtype)
        g = torch.randn(case.batch, args.out, generator=gen, dtype=dtype)
        qm = torch.zeros(case.batch, 1, 1, args.qtokens, dtype=torch.bool)
        vm = torch.zeros(case.batch, 1, 1, args.vtokens, dtype=torch.bool)
        return pc.Built(model, (q.to(device), v.to(device)), g.to(device), consts=(qm.to(device), vm.to(device)), input_names=("q", "v"))


if __name__ == "__main__":
    sys.exit(pc.run(McanEncoderDecoderPeer, __doc__))
