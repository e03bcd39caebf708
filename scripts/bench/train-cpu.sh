#!/usr/bin/env bash
# CPU training throughput: dtrain train-step (benchmark mode) vs Hugging Face
# GPT2LMHeadModel in PyTorch, same tiny config, same data, same micro-batch loop
# (forward + backward, gradients accumulated), same threads, one run.
# Usage: scripts/bench/train-cpu.sh [THREADS]   (default 2)
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/setup.sh >/dev/null
threads=${1:-2}
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
D=target/release/dtrain
$D tokenize tests/fixtures/tinyshakespeare.txt -o "$work/s.bin"
$D init --arch tiny --seed 0 -o "$work/m" >/dev/null
T=128 B=8 N=32 ITERS=5
export OMP_NUM_THREADS=$threads RAYON_NUM_THREADS=$threads
ours=$($D train-step --model "$work/m" --tokens "$work/s.bin" --seq-len $T --micro-batch $B --sequences 0-$((N-1)) \
  --device cpu --benchmark $ITERS --json)
peer=$(.venv/bin/python scripts/bench/train_peer.py --shard "$work/s.bin" --seq-len $T --micro-batch $B --sequences $N \
  --iters $ITERS --threads "$threads")
.venv/bin/python - "$ours" "$peer" "$threads" <<'PY'
import json, sys
o, p, th = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
print(f"train-step on CPU, tiny GPT-2 (2 layers, 64 wide), T=128, micro-batch 8, 32 sequences, {th} threads")
print(f"{'':<28}{'tokens/s':>10}{'ms/iter':>10}")
print(f"{'dtrain train-step':<28}{o['tokens_per_s']:>10.0f}{o['ms_per_iter']:>10.1f}   peak RSS {o['peak_memory_bytes']/2**20:.0f} MiB")
print(f"{'HF GPT2LMHeadModel (torch)':<28}{p['tokens_per_s']:>10.0f}{p['ms_per_iter']:>10.1f}   peak RSS {p['peak_rss_bytes']/2**20:.0f} MiB")
print(f"ratio dtrain/HF: {o['tokens_per_s']/p['tokens_per_s']:.2f}x")
PY
