#!/usr/bin/env python3
# Writes statedict-fixture.safetensors (StateDictTest.readsWhatThePythonConverterWrote) through
# tools/python/to_safetensors.py's save():  python3 statedict-fixture.py  (from this directory)
import os
import sys

import torch

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "../../../../../../tools/python"))
from to_safetensors import save  # noqa: E402

w = torch.arange(6, dtype=torch.float64).reshape(2, 3) / 8 - 0.25  # exact in every dtype below
save({"linear0.weight": w, "as_float32": w.float(), "as_float16": w.half(), "as_bfloat16": w.bfloat16(),
      "third": torch.tensor([1.0 / 3], dtype=torch.float64), "num_batches_tracked": torch.tensor([7])},
     os.path.join(here, "statedict-fixture.safetensors"), {"format": "pt"})
