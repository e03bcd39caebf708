"""Start-up cost of the lean `dtrain` against `dtrain-torch` (the same command in
a binary that links libtorch, which every command paid before the split).

    python scripts/bench/startup.py [--runs N] [--bin target/release]

Rows: `--version`, `hash` of a 1 MB file, and a `reduce` peer of a 4 KiB gradient
(two peers on loopback; the row is the measured peer's footprint). Each row
runs A and B in turn, N times; wall time is the median, peak RSS the largest.
Prints a Markdown table with the ratios B/A."""
import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
from safetensors.numpy import save_file


def run(cmd):
    """Wall seconds and peak RSS (bytes) of one process. The RSS comes from GNU
    time, a small C parent: a child forked from Python would count Python's
    pages (ru_maxrss spans the fork before the exec)."""
    t0 = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"{cmd[0]} {cmd[1]} failed ({p.returncode}): {p.stderr}")
    return dt, int(p.stderr.strip().splitlines()[-1]) * 1024


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def reduce_setup(tmp, lean):
    names = ["a", "b"]
    toml = ""
    for n in names:
        pk = subprocess.run([lean, "keygen", "-o", f"{tmp}/{n}.key"], capture_output=True, text=True, check=True).stdout.strip()
        toml += f'[[peer]]\nname = "{n}"\naddr = "127.0.0.1:{free_port()}"\npubkey = "{pk}"\n\n'
        meta = {"model": "0" * 64, "sequences": "1", "tokens": "64"}
        save_file({"g": np.random.default_rng(len(n)).standard_normal(1024).astype(np.float32)}, f"{tmp}/{n}.in", metadata=meta)
    with open(f"{tmp}/peers.toml", "w") as f:
        f.write(toml)


def reduce_pair(tmp, measured, partner, round_no):
    """One round: `partner` runs peer b in the background, `measured` runs peer a."""
    def args(binary, me):
        return [binary, "reduce", "--peers", f"{tmp}/peers.toml", "--me", me, "--key", f"{tmp}/{me}.key",
                "--round", f"r{round_no}", "--in", f"{tmp}/{me}.in", "--out", f"{tmp}/{me}.out", "--deadline", "20"]
    other = subprocess.Popen(args(partner, "b"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    result = run(args(measured, "a"))
    other.wait()
    return result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--bin", default="target/release")
    a = ap.parse_args()
    lean, torch = f"{a.bin}/dtrain", f"{a.bin}/dtrain-torch"
    tmp = tempfile.mkdtemp()
    with open(f"{tmp}/one.mb", "wb") as f:
        f.write(os.urandom(1 << 20))
    reduce_setup(tmp, lean)
    rows = [
        ("--version", lambda b, i: run([b, "--version"])),
        ("hash, 1 MB file", lambda b, i: run([b, "hash", f"{tmp}/one.mb"])),
        ("reduce peer, 4 KiB gradient", lambda b, i: reduce_pair(tmp, b, lean, i)),
    ]
    print("| command | dtrain (no libtorch) | dtrain-torch (links libtorch) | ratio |")
    print("|---|---|---|---|")
    result = {}
    for label, f in rows:
        f(lean, 0), f(torch, 1)  # warm-up
        walls = {lean: [], torch: []}
        rss = {lean: 0, torch: 0}
        for i in range(a.runs):
            for b in (lean, torch):
                dt, peak = f(b, 2 + 2 * i + (b == torch))
                walls[b].append(dt)
                rss[b] = max(rss[b], peak)
        ml, mt = statistics.median(walls[lean]), statistics.median(walls[torch])
        print(f"| {label} | {ml * 1e3:.1f} ms, {rss[lean] / 2**20:.1f} MiB | {mt * 1e3:.1f} ms, {rss[torch] / 2**20:.1f} MiB "
              f"| {mt / ml:.1f}× faster, {rss[torch] / rss[lean]:.1f}× less memory |")
        result[label] = {"lean_ms": ml * 1e3, "lean_mib": rss[lean] / 2**20, "torch_ms": mt * 1e3, "torch_mib": rss[torch] / 2**20}
    print(json.dumps(result), file=sys.stderr)


if __name__ == "__main__":
    main()
