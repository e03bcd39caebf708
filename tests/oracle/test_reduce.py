"""dtrain reduce against numpy's weighted mean and torch.distributed (Gloo)
all_reduce of the same vectors."""
import os
import sys
import subprocess

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.numpy import load_file, save_file

from conftest import ROOT, dtrain_bin, run


sys.path.insert(0, str(ROOT / "scripts"))
from free_port import free_port  # noqa: E402  (ports below the ephemeral range)


def make_round(tmp_path, n, sizes, weights, seed=0):
    rng = np.random.default_rng(seed)
    grads = []
    peers = []
    for i in range(n):
        pub = run("keygen", "-o", tmp_path / f"p{i}.key").stdout.decode().strip()
        peers.append(f'[[peer]]\nname = "p{i}"\naddr = "127.0.0.1:{free_port()}"\npubkey = "{pub}"\n')
        g = {f"t{k}": (rng.standard_normal(s) * 10.0 ** rng.integers(-3, 3)).astype(np.float32) for k, s in enumerate(sizes)}
        save_file(g, str(tmp_path / f"p{i}.in"), metadata={"model": "ab" * 32, "sequences": str(weights[i]), "tokens": "1"})
        grads.append(g)
    (tmp_path / "peers.toml").write_text("\n".join(peers))
    return grads


def run_round(tmp_path, n, *extra):
    procs = [subprocess.Popen([dtrain_bin(), "reduce", "--peers", tmp_path / "peers.toml", "--me", f"p{i}", "--key", tmp_path / f"p{i}.key",
                               "--round", "oracle", "--in", tmp_path / f"p{i}.in", "--out", tmp_path / f"p{i}.out", "--deadline", "60", *extra],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(n)]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    return [load_file(str(tmp_path / f"p{i}.out")) for i in range(n)]


def gloo_worker(rank, world, port, path, weights, out_path):
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    g = load_file(str(path / f"p{rank}.in"))
    res = {}
    for k in sorted(g):
        t = torch.from_numpy(g[k]) * float(weights[rank])
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        res[k] = (t / float(sum(weights))).numpy()
    if rank == 0:
        save_file(res, str(out_path))
    dist.destroy_process_group()


@pytest.mark.parametrize("n,sizes,weights", [(4, [100_003, 7], [1, 2, 3, 4]), (3, [65_537, 31, 1000], [5, 1, 9])])
def test_reduce_equals_numpy_and_gloo(tmp_path, n, sizes, weights):
    grads = make_round(tmp_path, n, sizes, weights)
    outs = run_round(tmp_path, n)
    want = {k: sum(w * g[k].astype(np.float64) for w, g in zip(weights, grads)) / sum(weights) for k in grads[0]}
    for o in outs:
        for k in want:
            # dtrain sums in f64 and rounds once: the correctly rounded mean
            np.testing.assert_array_equal(o[k], want[k].astype(np.float32))
    mp.spawn(gloo_worker, args=(n, free_port(), tmp_path, weights, tmp_path / "gloo.out"), nprocs=n, join=True)
    gloo = load_file(str(tmp_path / "gloo.out"))
    for k in want:
        # Gloo sums in f32: equal within f32 rounding of the sum
        scale = np.abs(np.stack([w * g[k] for w, g in zip(weights, grads)])).sum(0) / sum(weights)
        assert np.all(np.abs(gloo[k] - outs[0][k]) <= 4 * np.finfo(np.float32).eps * scale + 1e-30)


def test_reduce_wire_formats_against_numpy(tmp_path):
    weights = [2, 7, 1, 3]
    grads = make_round(tmp_path, 4, [50_000], weights, seed=3)
    want = sum(w * g["t0"].astype(np.float64) for w, g in zip(weights, grads)) / sum(weights)
    for wire, tol in [("bf16", 5e-3), ("q8", 2e-2)]:
        outs = run_round(tmp_path, 4, "--wire", wire)
        for o in outs[1:]:
            np.testing.assert_array_equal(o["t0"], outs[0]["t0"])
        rel = np.linalg.norm(outs[0]["t0"] - want) / np.linalg.norm(want)
        assert rel < tol, (wire, rel)
