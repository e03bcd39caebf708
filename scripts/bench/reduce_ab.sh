#!/usr/bin/env bash
# Two builds of `dtrain reduce` side by side, file to file: RUNS rounds of each,
# interleaved (A, B, A, B, ...) so that drift of the machine falls on both, PEERS
# whole processes on loopback per round, GPT-2 124M's gradient (498 MB f32) on
# tmpfs. Prints each round's wall time (first start to last exit) and the
# collective's seconds, then the medians and B's speed-up.
# Usage: scripts/bench/reduce_ab.sh A_BIN B_BIN [PEERS] [RUNS] [ELEMENTS]
#   e.g. build the old commit into /tmp/old: scripts/bench/reduce_ab.sh /tmp/old/dtrain target/release/dtrain 4 4
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 A_BIN B_BIN [PEERS] [RUNS] [ELEMENTS]" >&2; exit 2; }
a_bin=$(realpath "$1") b_bin=$(realpath "$2") n=${3:-4} runs=${4:-4} elements=${5:-124439808}
cd "$(dirname "$0")/../.."
work=$(mktemp -d -p /dev/shm)
trap 'rm -rf "$work"' EXIT
.venv/bin/python scripts/bench/reduce_peer.py make "$work" "$n" "$elements"
for i in $(seq 0 $((n-1))); do
  "$b_bin" keygen -o "$work/p$i.key" > "$work/p$i.pub"
  printf '[[peer]]\nname = "p%d"\naddr = "127.0.0.%d:%s"\npubkey = "%s"\n\n' "$i" $((i+1)) \
    "$(.venv/bin/python scripts/free_port.py)" "$(cat "$work/p$i.pub")" >> "$work/peers.toml"
done
round() { # $1: binary, $2: label; appends "label wall collective" to $work/rows
  rm -f "$work"/p?.out
  local t0 t1; t0=$(date +%s.%N)
  for i in $(seq 0 $((n-1))); do
    "$1" reduce --peers "$work/peers.toml" --me "p$i" --key "$work/p$i.key" --round "$2-$k" \
      --in "$work/p$i.in" --out "$work/p$i.out" --transcript "$work/t$i.json" --deadline 300 > /dev/null &
  done
  wait
  t1=$(date +%s.%N)
  .venv/bin/python - "$work" "$n" "$2" "$t0" "$t1" >> "$work/rows" <<'PY'
import json, sys
work, n, label, t0, t1 = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4]), float(sys.argv[5])
reduce = max(json.load(open(f"{work}/t{i}.json"))["body"]["seconds_reduce"] for i in range(n))
print(label, f"{t1 - t0:.3f}", f"{reduce:.3f}")
PY
  tail -1 "$work/rows"
}
for k in $(seq 1 "$runs"); do
  round "$a_bin" A
  round "$b_bin" B
done
.venv/bin/python - "$work/rows" "$n" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
med = {lab: (statistics.median(float(r[1]) for r in rows if r[0] == lab),
             statistics.median(float(r[2]) for r in rows if r[0] == lab)) for lab in ("A", "B")}
print(f"{sys.argv[2]} peers, median of {len(rows) // 2} interleaved rounds each:")
for lab in ("A", "B"):
    print(f"  {lab}: file to file {med[lab][0]:.3f} s, collective {med[lab][1]:.3f} s")
print(f"  B is {med['A'][0] / med['B'][0]:.2f}x A file to file")
PY
