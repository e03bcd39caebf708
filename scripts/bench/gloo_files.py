"""The script a user would write instead of `dtrain reduce`: one process per
rank loads its safetensors gradient, joins a torch.distributed Gloo group,
all-reduces the weighted sum (weights: the files' `sequences`) and saves the
weighted mean. scripts/bench/reduce.sh times whole processes of it against
whole `dtrain reduce` processes, file to file.

usage: gloo_files.py RANK WORLD PORT IN OUT
"""
import os
import sys

import torch
import torch.distributed as dist
from safetensors import safe_open
from safetensors.torch import save_file

rank, world, port, src, dst = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", port
torch.set_num_threads(1)
with safe_open(src, "pt") as f:
    weight = float(f.metadata()["sequences"])
    tensors = {k: f.get_tensor(k) for k in f.keys()}
dist.init_process_group("gloo", rank=rank, world_size=world)
flat = torch.cat([t.reshape(-1) for t in tensors.values()]) * weight
total = torch.tensor([weight], dtype=torch.float64)
dist.all_reduce(flat, op=dist.ReduceOp.SUM)
dist.all_reduce(total, op=dist.ReduceOp.SUM)
flat /= float(total.item())
out, at = {}, 0
for k, t in tensors.items():
    out[k] = flat[at : at + t.numel()].reshape(t.shape)
    at += t.numel()
save_file(out, dst, metadata={"sequences": str(int(total.item()))})
dist.destroy_process_group()
