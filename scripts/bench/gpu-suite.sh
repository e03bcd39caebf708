#!/usr/bin/env bash
# The one prepared run on the CUDA machine (device time is short: everything in
# one invocation, well under 8 minutes on the H200). Writes results.jsonl,
# results.json and results.md into $OUT and prints the Markdown tables last.
#   1. dtrain info: libtorch, CUDA, device, memory, bf16
#   2. train-step tokens/s and MFU against the PyTorch peers (HF GPT2LMHeadModel
#      and a nanoGPT-style GPT-2, eager and torch.compile, bf16 autocast, SDPA),
#      GPT-2 124M and 350M, micro-batch 16, T=1024, bf16, 4 micro-batches a step
#   3. inner steps (H=32) against plain train-step, once train-step has
#      --inner-steps (reported as skipped until then)
#   4. verify across devices: for each miner/validator pairing the honest
#      spread (worst loss, sketch, whole-gradient deviation) and whether x1.01,
#      x1.04, a random gradient and a stale model are caught
#
# On the H200 (no Rust there: bring target/release/dtrain, dtrain-torch and dtrain-redteam):
#   export LD_LIBRARY_PATH=/opt/torch/.venv/lib/python3.12/site-packages/torch/lib
#   OUT=/tmp/gpu scripts/bench/gpu-suite.sh
# Smoke test on a CPU machine (the same steps, small):
#   scripts/bench/gpu-suite.sh --device cpu --arch tiny
set -euo pipefail
cd "$(dirname "$0")/../.."
device=cuda archs=(gpt2 gpt2-medium) quick=0
while [ $# -gt 0 ]; do
  case $1 in
    --device) device=$2; shift 2 ;;
    --arch) IFS=, read -r -a archs <<< "$2"; shift 2 ;;
    --quick) quick=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu-suite.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
D=${DTRAIN_BIN:-$PWD/target/release/dtrain}
R=${REDTEAM_BIN:-$PWD/target/release/dtrain-redteam}
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
OUT=${OUT:-$(mktemp -d)}
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
mkdir -p "$OUT"; log=$OUT/results.jsonl; : > "$log"
if [ "$device" = cuda ]; then
  T=1024 MB=16 NSEQ=64 iters=5 precision=bf16 threads=16 peers=("" "--compile" "--nanogpt" "--nanogpt --compile")
  miners=("cuda bf16" "cpu f32") validators=(cuda cpu) VT=256 VSEQ=8 VMB=4 verify_arch=gpt2
else
  T=64 MB=4 NSEQ=16 iters=2 precision=f32 threads=2 peers=("" "--nanogpt")
  miners=("cpu f32") validators=(cpu) VT=32 VSEQ=8 VMB=2 verify_arch=${archs[0]}
fi
[ "$quick" = 1 ] && iters=2
record() { echo "$1" >> "$log"; }
shape() { case $1 in tiny) echo "2 2 64" ;; gpt2) echo "12 12 768" ;; gpt2-medium) echo "24 16 1024" ;; esac; }

echo "== 1. info" >&2
"$D" info --json > "$work/info.json"
record "{\"part\": \"info\", \"r\": $(cat "$work/info.json")}"

echo "== 2. train-step vs PyTorch peers" >&2
"$D" tokenize tests/fixtures/tinyshakespeare.txt -o "$work/s.bin" > /dev/null
for arch in "${archs[@]}"; do
  read -r L H C <<< "$(shape "$arch")"
  "$D" init --arch "$arch" --seed 0 -o "$work/$arch" > /dev/null
  r=$("$D" train-step --model "$work/$arch" --tokens "$work/s.bin" --seq-len $T --micro-batch $MB \
      --sequences "0-$((NSEQ - 1))" --device "$device" --precision $precision --benchmark $iters --json) \
    || r='{"error": "dtrain train-step failed"}'
  record "{\"part\": \"speed\", \"arch\": \"$arch\", \"runner\": \"dtrain train-step\", \"r\": $r}"
  for peer in "${peers[@]}"; do
    peer_args=(--layers "$L" --heads "$H" --embd "$C" --seq-len "$T" --micro-batch "$MB" --sequences "$NSEQ"
      --iters "$iters" --device "$device" --threads "$threads")
    [ "$precision" != bf16 ] || peer_args+=(--bf16)
    read -r -a peer_flags <<< "$peer"
    peer_args+=("${peer_flags[@]}")
    r=$("$PY" scripts/bench/train_peer.py --shard "$work/s.bin" "${peer_args[@]}" 2> "$work/err") \
      || r="{\"error\": \"$(tail -1 "$work/err" | tr -d "\"\\\\")\"}"
    record "{\"part\": \"speed\", \"arch\": \"$arch\", \"runner\": \"py ${peer:-hf}\", \"r\": $r}"
  done
done

echo "== 3. inner steps" >&2
if "$D" train-step --help | grep -q -- --inner-steps; then
  arch=${archs[0]}
  r=$("$D" train-step --model "$work/$arch" --tokens "$work/s.bin" --seq-len $T --micro-batch $MB \
      --sequences "0-$((NSEQ - 1))" --device "$device" --precision $precision --benchmark $iters \
      --inner-steps $((NSEQ / MB)) --json) || r='{"error": "dtrain train-step --inner-steps failed"}'
  record "{\"part\": \"inner\", \"arch\": \"$arch\", \"r\": $r}"
else
  record '{"part": "inner", "r": {"skipped": "train-step has no --inner-steps yet"}}'
fi

echo "== 4. verify across devices" >&2
"$D" keygen -o "$work/m.key" > "$work/m.pub"
"$D" init --arch "$verify_arch" --seed 0 -o "$work/v-model" > /dev/null
"$D" init --arch "$verify_arch" --seed 1 -o "$work/v-stale" > /dev/null
verify_one() { # miner-label validator case grad receipt
  local v
  v=$("$D" verify --receipt "$5" --grad "$4" --model "$work/v-model" --tokens "$work/s.bin" \
      --pubkey "$(cat "$work/m.pub")" --device "$2" --json 2> "$work/verr") \
    || [ $? = 1 ] || v="{\"error\": \"$(tail -1 "$work/verr" | tr -d "\"\\\\")\"}"
  record "{\"part\": \"verify\", \"miner\": \"$1\", \"validator\": \"$2\", \"case\": \"$3\", \"r\": $v}"
}
for m in "${miners[@]}"; do
  read -r mdev mprec <<< "$m"
  label="$mdev $mprec"
  train() { # model out-prefix
    "$D" train-step --model "$1" --tokens "$work/s.bin" --seq-len $VT --micro-batch $VMB --sequences "0-$((VSEQ - 1))" \
      --device "$mdev" --precision "$mprec" --key "$work/m.key" -o "$2.safetensors" --receipt "$2.json" > /dev/null
  }
  train "$work/v-model" "$work/honest"
  train "$work/v-stale" "$work/stale"
  for case in x1.01 x1.04 random; do
    cp "$work/honest.safetensors" "$work/$case.safetensors"; cp "$work/honest.json" "$work/$case.json"
    case $case in
      random) "$R" forge --grad "$work/$case.safetensors" --receipt "$work/$case.json" --key "$work/m.key" --random ;;
      *) "$R" forge --grad "$work/$case.safetensors" --receipt "$work/$case.json" --key "$work/m.key" --scale "${case#x}" ;;
    esac
  done
  for vdev in "${validators[@]}"; do
    for case in honest x1.01 x1.04 random stale; do
      verify_one "$label" "$vdev" "$case" "$work/$case.safetensors" "$work/$case.json"
    done
  done
done

"$PY" - "$log" "$OUT" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
out = sys.argv[2]
json.dump(rows, open(f"{out}/results.json", "w"), indent=1)
md = []
info = next(r["r"] for r in rows if r["part"] == "info")
md.append(f"dtrain info: libtorch {info.get('libtorch')}, cuda available {info.get('cuda_available')}, "
          f"devices {info.get('cuda_devices')}, cudnn {info.get('cudnn')}")
md += ["", "| model | runner | tok/s | ms/iter | MFU | dtrain / runner |", "|---|---|---|---|---|---|"]
for arch in dict.fromkeys(r["arch"] for r in rows if r["part"] == "speed"):
    speed = [r for r in rows if r["part"] == "speed" and r["arch"] == arch]
    ours = speed[0]["r"].get("tokens_per_s", 0)
    for r in speed:
        x = r["r"]
        if "error" in x:
            md.append(f"| {arch} | {r['runner']} | error: {x['error']} | | | |")
            continue
        mfu = f"{x['mfu'] * 100:.1f}%" if x.get("mfu") else "-"
        md.append(f"| {arch} | {r['runner']} | {x['tokens_per_s']:.0f} | {x['ms_per_iter']:.1f} | {mfu} | {ours / x['tokens_per_s']:.2f}x |")
inner = next(r["r"] for r in rows if r["part"] == "inner")
md += ["", f"inner steps: {json.dumps(inner)}"]
md += ["", "| miner | validator | honest: worst loss / sketch / grad | tolerances loss / sketch / grad | x1.01 | x1.04 | random | stale |",
       "|---|---|---|---|---|---|---|---|"]
verify = [r for r in rows if r["part"] == "verify"]
for pair in dict.fromkeys((r["miner"], r["validator"]) for r in verify):
    cases = {r["case"]: r["r"] for r in verify if (r["miner"], r["validator"]) == pair}
    h = cases.get("honest", {})
    if "error" in h or "measured" not in h:
        md.append(f"| {pair[0]} | {pair[1]} | error: {h.get('error', h)} | | | | | |")
        continue
    m, t = h["measured"], h["tolerances"]
    fmt = lambda v: "-" if v is None else f"{v:.1e}"
    honest = f"{'PASS' if h['pass'] else 'FAIL'}: {fmt(m['loss'])} / {fmt(m['sketch'])} / {fmt(m['grad'])}"
    tol = f"{t['loss']:.0e} / {t['sketch']:.0e} / {t['grad']:.0e}"
    caught = lambda c: "error" if "error" in cases.get(c, {"error": 1}) else ("caught" if not cases[c]["pass"] else "**PASSED**")
    md.append(f"| {pair[0]} | {pair[1]} | {honest} | {tol} | {caught('x1.01')} | {caught('x1.04')} | {caught('random')} | {caught('stale')} |")
open(f"{out}/results.md", "w").write("\n".join(md) + "\n")
print("\n".join(md))
PY
echo "results in $OUT (results.json, results.md)" >&2
