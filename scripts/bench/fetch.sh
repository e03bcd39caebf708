#!/usr/bin/env bash
# fetch-shard vs huggingface_hub (HfFileSystem) + pyarrow reading the same rows
# from the local hub on loopback, one run. Prints rows/s, MB/s (of text) and
# bytes fetched / bytes of the selected row groups' text and id column chunks
# (targets: quotient <= 1.1, faster than the Python peer).
# Usage: scripts/bench/fetch.sh [MINERS] [ROWS]   (default 8 miners x 1000 rows)
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/setup.sh >/dev/null
miners=${1:-8} rows=${2:-1000}
work=$(mktemp -d); trap 'kill $hub_pid 2>/dev/null; rm -rf "$work"' EXIT
D=$PWD/target/release/dtrain
.venv/bin/python scripts/bench/fetch_peer.py make "$work/root"
$D hub serve --quiet --root "$work/root" --addr 127.0.0.1:0 > "$work/hub.out" & hub_pid=$!
for _ in $(seq 50); do grep -q listening "$work/hub.out" 2>/dev/null && break; sleep 0.1; done
url=$(sed 's/listening on //' "$work/hub.out")
stat() { curl -s "$url/_dtrain/stats" | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["bytes_sent"])'; }
export HF_ENDPOINT=$url
run_dtrain() { # $1: HF_HOME
  local t0 t1 b0 b1; b0=$(stat); t0=$(date +%s.%N)
  for u in $(seq 0 $((miners-1))); do
    HF_HOME=$1 $D fetch-shard --seed 1 --epoch 0 --uid "$u" --rows "$rows" --json --spec-out "$work/spec$u.json" \
      > "$work/rows$u.jsonl" 2>> "$work/sum.jsonl"
  done
  t1=$(date +%s.%N); b1=$(stat)
  echo "$t0 $t1 $((b1-b0))"
}
: > "$work/sum.jsonl"; read -r c0 c1 cbytes < <(run_dtrain "$work/home")     # cold: footers fetched
: > "$work/sum.jsonl"; read -r w0 w1 wbytes < <(run_dtrain "$work/home")     # warm: footers cached
# the Python peer, one process per miner like dtrain (whole process timed)
b0=$(stat); p0=$(date +%s.%N); : > "$work/peer.jsonl"
for u in $(seq 0 $((miners-1))); do
  .venv/bin/python scripts/bench/fetch_peer.py peer "$url" "$work/spec$u.json" >> "$work/peer.jsonl"
done
p1=$(date +%s.%N); pbytes=$(( $(stat) - b0 ))
peer=$(.venv/bin/python -c 'import json,sys; r=[json.loads(l) for l in open(sys.argv[1])]; print(json.dumps({"rows": sum(x["rows"] for x in r), "seconds": sum(x["seconds"] for x in r)}))' "$work/peer.jsonl")
.venv/bin/python - "$work" "$miners" "$rows" "$c0" "$c1" "$cbytes" "$w0" "$w1" "$wbytes" "$peer" "$pbytes" "$p0" "$p1" <<'PY'
import json, sys, glob
work, miners, rows = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
c0, c1, cb, w0, w1, wb = map(float, sys.argv[4:10]); peer = json.loads(sys.argv[10]); pb = int(sys.argv[11])
p0, p1 = float(sys.argv[12]), float(sys.argv[13])
sums = [json.loads(l) for l in open(f"{work}/sum.jsonl")]
sel = sum(s["selected_bytes"] for s in sums)
text = sum(len(json.loads(l)["text"].encode()) for f in glob.glob(f"{work}/rows*.jsonl") for l in open(f))
n = miners * rows
print(f"fetch benchmark: {miners} miners x {rows} rows from the local hub on loopback (8 files x 6 row groups, ~{text/1e6:.0f} MB of text selected)")
print("one process per miner on both sides, whole process timed (dtrain includes ~0.28 s of libtorch start-up)")
print(f"{'reader':<40}{'rows/s':>9}{'MB/s':>8}{'bytes fetched':>15}{'/ selected':>12}")
rows_out = [("dtrain, cold footer cache", c1 - c0, cb), ("dtrain, footers cached", w1 - w0, wb),
            ("huggingface_hub + pyarrow (process)", p1 - p0, pb), ("huggingface_hub + pyarrow (in-script)", peer["seconds"], pb)]
for name, dt, b in rows_out:
    print(f"{name:<40}{n/dt:>9.0f}{text/1e6/dt:>8.1f}{int(b):>15}{b/sel:>11.3f}x")
print(f"dtrain (cold) vs Python process: {(p1-p0)/(c1-c0):.2f}x faster; selected column chunks: {sel} bytes")
assert peer["rows"] == n
PY
