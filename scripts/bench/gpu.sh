#!/usr/bin/env bash
# GPU training throughput on the CUDA machine (see README "GPU"): dtrain
# train-step --device cuda --precision bf16 vs the PyTorch peers (HF
# GPT2LMHeadModel and a minimal nanoGPT-style GPT-2, eager and torch.compile,
# bf16 autocast, SDPA) for GPT-2 124M and 350M at micro-batch 16, T=1024, in one
# run. Every peer runs the same loop as train-step: forward + backward over 4
# micro-batches with gradients accumulated (no optimizer step). Prints a table last.
#
# Run from the repo root with the binary built elsewhere (no Rust there):
#   export LD_LIBRARY_PATH=/opt/torch/.venv/lib/python3.12/site-packages/torch/lib
#   scripts/bench/gpu.sh [--quick]
set -euo pipefail
cd "$(dirname "$0")/../.."
D=${DTRAIN_BIN:-target/release/dtrain}
PY=${PYTHON:-python3}
PEAK=${PEAK_FLOPS:-989e12}   # H100/H200 dense bf16
out=${OUT:-$(mktemp -d)}
work=$(mktemp -d)
iters=5; [ "${1:-}" = --quick ] && iters=2
$D info | tee "$out/info.txt"
$D tokenize tests/fixtures/tinyshakespeare.txt -o "$work/s.bin"
: > "$out/results.jsonl"
for arch in gpt2 gpt2-medium; do
  case $arch in gpt2) L=12 H=12 C=768;; gpt2-medium) L=24 H=16 C=1024;; esac
  $D init --arch $arch --seed 0 -o "$work/$arch" > /dev/null
  r=$($D train-step --model "$work/$arch" --tokens "$work/s.bin" --seq-len 1024 --micro-batch 16 --sequences 0-63 \
      --device cuda --precision bf16 --benchmark $iters --peak-flops "$PEAK" --json) || r='{"error": "dtrain failed"}'
  echo "{\"arch\": \"$arch\", \"peer\": \"dtrain\", \"r\": $r}" >> "$out/results.jsonl"
  for peer in "" "--compile" "--nanogpt" "--nanogpt --compile"; do
    # shellcheck disable=SC2086
    r=$($PY scripts/bench/train_peer.py --shard "$work/s.bin" --layers $L --heads $H --embd $C --seq-len 1024 \
        --micro-batch 16 --sequences 64 --iters $iters --device cuda --bf16 --threads 16 --peak-flops "$PEAK" $peer 2>"$work/err") \
      || r="{\"error\": \"$(tail -1 "$work/err" | tr -d '"')\"}"
    echo "{\"arch\": \"$arch\", \"peer\": \"py $peer\", \"r\": $r}" >> "$out/results.jsonl"
  done
done
$PY - "$out/results.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(f"\n{'model':<12}{'runner':<32}{'tok/s':>10}{'ms/iter':>9}{'MFU':>7}{'vs dtrain':>10}")
for arch in ("gpt2", "gpt2-medium"):
    ours = next((r["r"] for r in rows if r["arch"] == arch and r["peer"] == "dtrain"), {})
    for row in (r for r in rows if r["arch"] == arch):
        r = row["r"]
        if "error" in r:
            print(f"{arch:<12}{row['peer']:<32} error: {r['error']}")
            continue
        name = "dtrain train-step" if row["peer"] == "dtrain" else r.get("peer", row["peer"])
        ratio = ours.get("tokens_per_s", 0) / r["tokens_per_s"] if r["tokens_per_s"] else 0
        print(f"{arch:<12}{name:<32}{r['tokens_per_s']:>10.0f}{r['ms_per_iter']:>9.1f}{(r.get('mfu') or 0)*100:>6.1f}%{ratio:>9.2f}x")
PY
