#!/usr/bin/env bash
# All-reduce benchmark, one run, 4 peers by default, GPT-2 124M's gradient (498 MB f32):
# dtrain reduce (f32, bf16, q8) vs torch.distributed Gloo all_reduce of the same
# vectors vs the transport floor (dtrain's connections, bytes and output writes
# with no MAC and no arithmetic), on loopback. Then, as root, the rate-limited case: 4 network
# namespaces with tc tbf links. Prints seconds (median of 3 runs), algbw, busbw
# (nccl-tests' definitions), peak anonymous RSS and ratios. Seconds are the
# collective itself, as for Gloo (whose processes load and allocate their
# tensors before the timer): dtrain's from the first attempt to the confirmed
# result (its transcript's seconds_reduce; the input is checked and the output's
# blocks reserved while the peers connect, the output written as results are
# ready); "process s" is the whole dtrain process (seconds_total). File to file, whole
# processes: 4 `dtrain reduce` vs 4 processes of the Gloo script a user would
# write (scripts/bench/gloo_files.py: load, all_reduce, save), wall time from the
# first start to the last exit; and where a dtrain peer's time went (--json's
# breakdown). Files live on tmpfs
# (/dev/shm) when it has room: this VM's ext4 page cache makes timings of
# file-writing runs swing by 2x between identical runs.
# Usage: scripts/bench/reduce.sh [ELEMENTS] [RATE_MBIT] [PEERS]  (default 124439808, 1000, 4)
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/setup.sh >/dev/null
elements=${1:-124439808} rate=${2:-1000} n=${3:-4}
D=$PWD/target/release/dtrain
if [ "$(df --output=avail -k /dev/shm 2>/dev/null | tail -1)" -gt $(( elements * 4 * 2 * n / 1024 + 1048576 )) ] 2>/dev/null; then
  work=$(mktemp -d -p /dev/shm)
else
  work=$(mktemp -d)
fi
trap 'scripts/netns.sh down dtbench $n 2>/dev/null || true; rm -rf "$work"' EXIT
.venv/bin/python scripts/bench/reduce_peer.py make "$work" "$n" "$elements"
port() { .venv/bin/python scripts/free_port.py; }
peers() { # $1: address of peer i as a printf pattern
  : > "$work/peers.toml"
  for i in $(seq 0 $((n-1))); do
    [ -f "$work/p$i.key" ] || $D keygen -o "$work/p$i.key" > "$work/p$i.pub"
    # shellcheck disable=SC2059
    printf '[[peer]]\nname = "p%d"\naddr = "%s"\npubkey = "%s"\n\n' "$i" "$(printf "$1" $((i+1)) "$(port)")" "$(cat "$work/p$i.pub")" >> "$work/peers.toml"
  done
}
now() { date +%s.%N; }
round() { # $1: label, rest: extra reduce args; prefix peers with $NS_PREFIX if set
  local label=$1; shift
  rm -f "$work"/p?.out
  local t0; t0=$(now)
  for i in $(seq 0 $((n-1))); do
    local pre=(); [ -n "${NS_PREFIX:-}" ] && pre=(ip netns exec "$NS_PREFIX-$i")
    "${pre[@]}" "$D" reduce --peers "$work/peers.toml" --me "p$i" --key "$work/p$i.key" --round "$label" \
      --in "$work/p$i.in" --out "$work/p$i.out" --transcript "$work/$label.$i.json" --deadline 300 --json "$@" > "$work/$label.$i.sum.json" &
  done
  wait
  echo "$t0 $(now)" > "$work/$label.wall"
  cmp -s "$work/p0.out" "$work/p$((n-1)).out" || { echo "$label: peers differ" >&2; exit 1; }
}
gloo_files() { # $1: label: the Gloo script (gloo_files.py) file to file, whole processes
  local port t0; port=$(port); t0=$(now)
  rm -f "$work"/g?.out
  for i in $(seq 0 $((n-1))); do
    .venv/bin/python scripts/bench/gloo_files.py "$i" "$n" "$port" "$work/p$i.in" "$work/g$i.out" &
  done
  wait
  echo "$t0 $(now)" > "$work/$1.wall"
}
peers "127.0.0.%d:%s"
for k in 1 2 3; do
  round "f32-$k"
  round "bf16-$k" --wire bf16
  round "q8-$k" --wire q8
  round "floor-$k" --floor
  .venv/bin/python scripts/bench/reduce_peer.py gloo "$work" "$n" > "$work/gloo-$k.json"
  gloo_files "gloofiles-$k"
done
limited=""
if [ "$(id -u)" = 0 ] && scripts/netns.sh up dtbench "$n" "$rate" 2>/dev/null; then
  peers "10.213.0.%d:7000%.0s"
  NS_PREFIX=dtbench round limited
  limited=$rate
fi
.venv/bin/python - "$work" "$elements" "$n" "$limited" <<'PY'
import json, statistics, sys
work, elements, n, limited = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
S = elements * 4
def run(label):
    ts = [json.load(open(f"{work}/{label}.{i}.json"))["body"] for i in range(n)]
    return (max(t["seconds_reduce"] for t in ts), max(t["peak_anon_rss_bytes"] for t in ts),
            max(t["seconds_total"] for t in ts))
def median(label):
    rs = [run(f"{label}-{k}") for k in (1, 2, 3)]
    return statistics.median(r[0] for r in rs), max(r[1] for r in rs), statistics.median(r[2] for r in rs)
rows = [(f"dtrain {l}", *median(l)) for l in ("f32", "bf16", "q8", "floor")]
gl = [json.load(open(f"{work}/gloo-{k}.json")) for k in (1, 2, 3)]
rows.append(("torch.distributed Gloo", statistics.median(g["seconds"] for g in gl), max(g["peak_rss_bytes"] for g in gl), None))
floor, g = rows[3][1], rows[4][1]
print(f"all-reduce of {S/1e6:.0f} MB (f32) across {n} peers on loopback, median of 3 runs, files in {work.rsplit('/', 1)[0]}")
print(f"{'':<24}{'seconds':>9}{'algbw GB/s':>12}{'busbw GB/s':>12}{'peak RSS MiB':>14}{'vs floor':>10}{'vs Gloo':>9}{'process s':>11}")
for name, t, rss, total in rows:
    algbw = S / t / 1e9
    proc = f"{total:>11.2f}" if total is not None else f"{'-':>11}"
    print(f"{name:<24}{t:>9.3f}{algbw:>12.2f}{algbw*2*(n-1)/n:>12.2f}{rss/2**20:>14.0f}{t/floor:>9.2f}x{g/t:>8.2f}x{proc}")
print("peak RSS: anonymous memory for dtrain (the gradient files are mapped); ru_maxrss for Gloo")
def wall(label):
    t0, t1 = map(float, open(f"{work}/{label}.wall").read().split())
    return t1 - t0
def wall_median(label):
    return statistics.median(wall(f"{label}-{k}") for k in (1, 2, 3))
f2f, gf = wall_median("f32"), wall_median("gloofiles")
total_over = statistics.median(run(f"f32-{k}")[2] / run(f"f32-{k}")[0] for k in (1, 2, 3))
print(f"file to file, {n} whole processes from start to the last exit (median of 3):")
print(f"  dtrain reduce f32 {f2f:.2f} s; the Gloo script (scripts/bench/gloo_files.py) {gf:.2f} s -> dtrain {gf/f2f:.1f}x faster")
print(f"  dtrain f32 seconds_total / seconds (median): {total_over:.2f}; authenticated f32 / transport floor: {rows[0][1]/floor:.2f}")
parts = [json.load(open(f"{work}/f32-{k}.{i}.sum.json"))["breakdown"] for k in (1, 2, 3) for i in range(n)]
print("  where a dtrain f32 peer's time went (median over runs and peers, s): " + ", ".join(
    f"{key} {statistics.median(p[key] for p in parts):.3f}" for key in parts[0]))
if limited:
    t, _, _ = run("limited")
    ideal = 2 * (n - 1) / n * S / (float(limited) * 1e6 / 8)
    print(f"rate-limited: {n} namespaces, tbf {limited} Mbit/s uplinks: {t:.2f} s vs 2(n-1)/n*S/rate = {ideal:.2f} s -> {t/ideal:.3f}x")
PY
