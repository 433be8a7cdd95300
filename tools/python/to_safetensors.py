#!/usr/bin/env python3
"""Write a PyTorch state dict as a safetensors file, for io.bifuse.StateDict.readSafetensors.

    python3 tools/python/to_safetensors.py CHECKPOINT OUT.safetensors [--key K] [--prefix P] [--float64]

CHECKPOINT is anything torch.load gives a state dict from: a saved state_dict, or a checkpoint dict
holding one under --key (e.g. "model" or "network"; block.bootstrap's ckpt_*_model.pth.tar hold the
network's state dict at the top level). --prefix keeps only the names that start with P and strips it
(e.g. "network.fusion." for the fusion of a block.bootstrap VQA model), so the names are the fusion
module's own (linear0.weight, merge_linears0.3.bias, ...). --float64 widens floating-point tensors
(exactly) to float64. Needs only torch (and numpy, which torch brings): not the safetensors package.
From Python, save(tensors, path) writes a dict of tensors.
"""
import argparse
import json
import struct

import torch

_NAMES = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
          torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
          torch.uint8: "U8", torch.bool: "BOOL"}


def _bytes(t):
    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:  # numpy has no bfloat16: its bits as int16
        t = t.view(torch.int16)
    a = t.numpy()
    return a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()


def save(tensors, path, metadata=None):
    """Write {name: tensor} to path in the safetensors layout, names sorted, data packed in that order."""
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name]
        if t.dtype not in _NAMES:
            raise SystemExit(f"{name}: dtype {t.dtype} has no safetensors name here")
        raw = _bytes(t)
        header[name] = {"dtype": _NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * (-len(h) % 8)  # the format pads the header with spaces to a multiple of 8 bytes
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("out")
    ap.add_argument("--key", help="the state dict's key in a checkpoint dict")
    ap.add_argument("--prefix", default="", help="keep only names starting with it, and strip it")
    ap.add_argument("--float64", action="store_true", help="widen floating-point tensors to float64")
    a = ap.parse_args()
    obj = torch.load(a.checkpoint, map_location="cpu")
    if a.key:
        obj = obj[a.key]
    if hasattr(obj, "state_dict"):
        obj = obj.state_dict()
    sd = {k[len(a.prefix):]: v for k, v in obj.items() if k.startswith(a.prefix) and torch.is_tensor(v)}
    if not sd:
        raise SystemExit(f"{a.checkpoint}: no tensors" + (f" under the prefix '{a.prefix}'" if a.prefix else ""))
    if a.float64:
        sd = {k: v.double() if v.is_floating_point() else v for k, v in sd.items()}
    save(sd, a.out, {"format": "pt", "source": a.checkpoint})
    print(f"{a.out}: {len(sd)} tensors")


if __name__ == "__main__":
    main()
