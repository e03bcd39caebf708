"""Helpers for scripts/bench/reduce.sh.

make DIR N ELEMENTS : N random gradient files (safetensors, f32) DIR/p{i}.in
gloo DIR N          : torch.distributed Gloo all_reduce of the same vectors in N
                      processes; prints JSON (seconds of the all_reduce, the
                      slowest rank; peak RSS per rank)
"""
import json
import os
import resource
import socket
import sys
import time

import numpy as np


def make(d, n, elements):
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    for i in range(n):
        g = rng.standard_normal(elements, dtype=np.float32)
        save_file({"g": g}, f"{d}/p{i}.in", metadata={"model": "ab" * 32, "sequences": str(i + 1), "tokens": "1"})


def worker(rank, world, port, d, q):
    import torch
    import torch.distributed as dist
    from safetensors.numpy import load_file

    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    t = torch.from_numpy(load_file(f"{d}/p{rank}.in")["g"]) * float(rank + 1)
    warm = torch.ones(1024)
    dist.all_reduce(warm)
    dist.barrier()
    t0 = time.perf_counter()
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    t /= float(sum(range(1, world + 1)))
    dt = time.perf_counter() - t0
    q.put((rank, dt, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024))
    dist.destroy_process_group()


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        import torch.multiprocessing as mp

        d, n = sys.argv[2], int(sys.argv[3])
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        ctx = mp.get_context("spawn")
        q = ctx.Queue()
        ps = [ctx.Process(target=worker, args=(r, n, port, d, q)) for r in range(n)]
        [p.start() for p in ps]
        res = [q.get() for _ in range(n)]
        [p.join() for p in ps]
        print(json.dumps({"seconds": max(r[1] for r in res), "peak_rss_bytes": max(r[2] for r in res)}))
