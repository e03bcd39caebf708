#!/usr/bin/env bash
# Tokenizer throughput: dtrain vs tiktoken vs HF tokenizers, same ~10 MB corpus,
# same thread count, one run. Prints MB/s and ratios (target: dtrain >= 2x tiktoken).
# Usage: scripts/bench/tokenize.sh [THREADS]   (default 2)
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/setup.sh >/dev/null
threads=${1:-2}
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
# ~10 MB: tinyshakespeare nine times (paragraph documents)
for _ in 1 2 3 4 5 6 7 8 9; do cat tests/fixtures/tinyshakespeare.txt; printf '\n\n'; done > "$work/corpus.txt"
bytes=$(stat -c %s "$work/corpus.txt")
export RAYON_NUM_THREADS=$threads TOKENIZERS_PARALLELISM=true
start=$(date +%s.%N)
target/release/dtrain tokenize --format text --json "$work/corpus.txt" -o "$work/shard.bin" 2> "$work/dtrain.json"
end=$(date +%s.%N)
.venv/bin/python scripts/bench/tokenize_peers.py src/tokenizer/gpt2 "$work/corpus.txt" "$threads" > "$work/peers.json"
.venv/bin/python - "$work" "$bytes" "$start" "$end" "$threads" <<'PY'
import json, sys
work, nbytes, start, end, threads = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
d = json.loads(open(f"{work}/dtrain.json").read().strip().splitlines()[-1])
peers = {p["peer"]: p for p in map(json.loads, open(f"{work}/peers.json"))}
wall = end - start
rows = [("dtrain (encode)", d["seconds"], d["mb_per_s"], d["tokens"]),
        ("dtrain (whole process)", wall, nbytes / 1e6 / wall, d["tokens"])]
rows += [(k, p["seconds"], p["mb_per_s"], p["tokens"]) for k, p in peers.items()]
tk = peers["tiktoken"]["mb_per_s"]
print(f"tokenize benchmark: {nbytes/1e6:.1f} MB, {threads} threads")
print(f"{'tokenizer':<24}{'seconds':>9}{'MB/s':>9}{'tokens':>10}{'vs tiktoken':>13}")
for name, s, mbs, n in rows:
    print(f"{name:<24}{s:>9.3f}{mbs:>9.1f}{n:>10}{mbs/tk:>12.2f}x")
assert d["tokens"] == peers["tiktoken"]["tokens"], "token counts differ between dtrain and tiktoken"
PY
