#!/usr/bin/env python3
"""Write the block.bootstrap fusion fixtures: one safetensors file per fusion and configuration.

    BLOCK_BOOTSTRAP=/path/to/block.bootstrap.pytorch python3 make_fixtures.py [OUT_DIR]

Each module is block.bootstrap's own class (block/models/networks/fusions/fusions.py, imported from the
checkout; v0.1.6 = e938e9e was used for the files here), built at small sizes, run in float64 on a batch
of 3, with autograd for the gradients. Its parameters keep PyTorch's default initialization but are
rounded to float32 first, as are the inputs and gradOut, so a float32 copy of them is exact and a float64
reimplementation can match the module to rounding (about 1e-15). A file holds, under these names:

    the module's state dict (linear0.weight, merge_linears0.3.bias, ...)   the weights
    input.0, input.1                                                     the two inputs (B x dim)
    grad_out                                                             dL/dout (B x output_dim)
    out                                                                  the module's output
    grad.input.0, grad.input.1, grad.<each state-dict name>              every gradient

and in its metadata "fusion" (the class name), "config" (the constructor's keyword arguments, JSON),
"torch" (the version), "source" (this script). Shared layers appear under both of their names, as in the
module's state dict, with the one gradient they accumulate.

MCB: block.bootstrap's CompactBilinearPooling calls torch.rfft / torch.irfft, which PyTorch removed in
1.8; this script gives torch those two functions back, written on torch.fft with the old semantics
(onesided real FFT as a trailing (re, im) pair; irfft with signal_sizes, 1/n included), and otherwise runs
the module's own code, its hand-written backward included. Its buffers mcb.sketch{1,2}.{h,s} (int64
hashes, +-1 signs, drawn by the module) are in the state dict like any tensor.
"""
import functools
import json
import os
import sys

import torch

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "../../../../../../../tools/python"))
sys.path.insert(0, os.path.join(here, "../../../../../../../benchmarks/python"))
from to_safetensors import save  # noqa: E402
from bootstrap_fusions import legacy_fft  # noqa: E402  (MCB's torch.rfft / irfft, shared with the peers)

root = os.environ.get("BLOCK_BOOTSTRAP")
if not root or not os.path.isfile(os.path.join(root, "block/models/networks/fusions/fusions.py")):
    raise SystemExit("BLOCK_BOOTSTRAP: expected a checkout of Cadene/block.bootstrap.pytorch")
sys.path.insert(0, os.path.join(root, "block/models"))  # networks/ imports nothing else from block or bootstrap
from networks.fusions import fusions  # noqa: E402

BATCH = 3
# (file stem, class, input dims, output dim, keyword arguments): each fusion's defaults but the sizes,
# then a configuration that moves every option it has.
CASES = [
    ("mutan-default", "Mutan", [10, 12], 7, dict(mm_dim=9, rank=3)),
    ("mutan-shared-normalized", "Mutan", [10, 10], 6, dict(mm_dim=8, rank=4, shared=True, normalize=True)),
    ("tucker-default", "Tucker", [10, 12], 7, dict(mm_dim=6)),
    ("tucker-normalized", "Tucker", [9, 9], 5, dict(mm_dim=7, normalize=True)),
    ("block-default", "Block", [10, 12], 7, dict(mm_dim=12, chunks=3, rank=2)),
    ("block-uneven-aftercat-shared", "Block", [11, 11], 6, dict(mm_dim=13, chunks=4, rank=3, shared=True, pos_norm="after_cat")),
    ("blocktucker-default", "BlockTucker", [10, 12], 7, dict(mm_dim=12, chunks=3)),
    ("blocktucker-uneven-aftercat", "BlockTucker", [9, 8], 5, dict(mm_dim=11, chunks=4, pos_norm="after_cat")),
    ("linearsum-default", "LinearSum", [10, 12], 7, dict(mm_dim=9)),
    ("linearsum-tanh-sigmoid-normalized", "LinearSum", [10, 12], 7, dict(mm_dim=9, activ_input="tanh", activ_output="sigmoid", normalize=True)),
    ("concatmlp-default", "ConcatMLP", [10, 12], 7, dict(dimensions=[8, 6])),
    ("concatmlp-tanh", "ConcatMLP", [10, 12], 7, dict(dimensions=[9], activation="tanh")),
    ("mlb-default", "MLB", [10, 12], 7, dict(mm_dim=9)),
    ("mlb-tanh-normalized", "MLB", [10, 12], 7, dict(mm_dim=9, activ_input="tanh", activ_output="sigmoid", normalize=True)),
    ("mfb-default", "MFB", [10, 12], 7, dict(mm_dim=6, factor=2)),
    ("mfb-factor3-normalized", "MFB", [10, 12], 7, dict(mm_dim=5, factor=3, activ_input="tanh", activ_output="tanh", normalize=True)),
    ("mfh-default", "MFH", [10, 12], 7, dict(mm_dim=6, factor=2)),
    ("mfh-normalized", "MFH", [10, 12], 7, dict(mm_dim=5, factor=3, activ_input="tanh", activ_output="sigmoid", normalize=True)),
    ("mcb-default", "MCB", [10, 12], 7, dict(mm_dim=16)),
    ("mcb-odd-tanh", "MCB", [9, 11], 5, dict(mm_dim=15, activ_output="tanh")),
]


def exact_float32(t):
    return t.float().double()


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else here
    legacy_fft()
    torch.manual_seed(20261202)
    for stem, cls, dims, out_dim, kw in CASES:
        m = getattr(fusions, cls)(dims, out_dim, **kw).double().eval()
        with torch.no_grad():
            for p in m.parameters():
                p.copy_(exact_float32(p))
        x = [exact_float32(torch.randn(BATCH, d, dtype=torch.float64)).requires_grad_() for d in dims]
        go = exact_float32(torch.randn(BATCH, out_dim, dtype=torch.float64))
        out = m([x[0], x[1]])
        out.backward(go)
        t = {k: v.detach().clone() for k, v in m.state_dict().items()}
        for name in m.state_dict():  # shared layers: both names, one parameter (named_parameters drops one)
            p = functools.reduce(getattr, name.split("."), m)
            if p.grad is not None:  # buffers (MCB's hashes and signs) have none
                t["grad." + name] = p.grad.detach().clone()
        t.update({"input.0": x[0].detach(), "input.1": x[1].detach(), "grad_out": go, "out": out.detach(),
                  "grad.input.0": x[0].grad.detach(), "grad.input.1": x[1].grad.detach()})
        meta = {"fusion": cls, "config": json.dumps(dict(input_dims=dims, output_dim=out_dim, **kw), sort_keys=True),
                "torch": torch.__version__, "source": "make_fixtures.py"}
        save(t, os.path.join(out_dir, stem + ".safetensors"), meta)
        print(f"{stem}: {len(t)} tensors, out {tuple(out.shape)}")


if __name__ == "__main__":
    main()
