"""A cheating miner's hook (red-team tests): overwrites the published
gradient's numbers with random ones in place (same tensors, same order, same
metadata), so the cheat takes part in reduce like an honest gradient would.
With --nan the numbers are NaN instead. Usage: cheat.py [--nan] PUBLISHED_DIR"""
import json
import struct
import sys

import numpy as np

path = sys.argv[-1] + "/grad.safetensors"
with open(path, "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    header = json.loads(f.read(n))
count = sum(int(np.prod(v["shape"])) for k, v in header.items() if k != "__metadata__")
data = np.memmap(path, dtype=np.float32, mode="r+", offset=8 + n, shape=(count,))
if "--nan" in sys.argv:
    data[:] = np.float32("nan")
else:
    data[:] = (np.random.default_rng().standard_normal(count) * 0.05).astype(np.float32)
data.flush()
