#!/usr/bin/env bash
# Calibrates verify's tolerances: honest train-steps recomputed by verify under
# other thread counts (the spread a validator with another machine sees), on
# the tiny model and GPT-2 124M, CPU f32. Prints the worst deviations measured.
# Usage: scripts/calibrate.sh [DEVICE]   (default cpu)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >/dev/null
D=$PWD/target/release/dtrain dev=${1:-cpu}
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
$D tokenize tests/fixtures/tinyshakespeare.txt -o "$work/s.bin"
$D keygen -o "$work/m.key" > "$work/m.pub"
: > "$work/m.jsonl"
for arch in tiny gpt2; do
  $D init --arch $arch --seed 1 -o "$work/$arch" > /dev/null
  T=64; seqs=0-15; [ $arch = gpt2 ] && T=32 seqs=0-3
  for train_threads in 1 2; do
    OMP_NUM_THREADS=$train_threads $D train-step --model "$work/$arch" --tokens "$work/s.bin" --seq-len $T --micro-batch 2 \
      --sequences $seqs --device "$dev" -o "$work/g.safetensors" --receipt "$work/r.json" --key "$work/m.key" > /dev/null
    for verify_threads in 1 2 4; do
      OMP_NUM_THREADS=$verify_threads $D verify --receipt "$work/r.json" --grad "$work/g.safetensors" --model "$work/$arch" \
        --tokens "$work/s.bin" --pubkey "$(cat "$work/m.pub")" --device "$dev" --json 2>/dev/null | tail -1 >> "$work/m.jsonl" || true
    done
  done
done
.venv/bin/python - "$work/m.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
keys = ["linearity", "loss", "sketch", "grad", "worst_tensor"]
worst = {k: max((r["measured"][k] or 0) for r in rows) for k in keys}
print(f"{len(rows)} honest recomputations across thread counts (train 1-2, verify 1-4), tiny + gpt2, all passed: {all(r['pass'] for r in rows)}")
for k in keys:
    print(f"  worst {k:<13} {worst[k]:.2e}   tolerance {rows[0]['tolerances'].get(k if k != 'worst_tensor' else 'grad', 0):.0e}")
PY
