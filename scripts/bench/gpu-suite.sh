#!/usr/bin/env bash
# The one prepared run on the CUDA machine (device time is short: everything in
# one invocation, parts in order of weight, each under its own timeout, results
# appended as they come so a cut run still reports). Writes results.jsonl,
# results.json and results.md into $OUT and prints the Markdown tables last.
#   info     dtrain info: libtorch, CUDA, device, memory, bf16
#   speed    train-step tokens/s and MFU against the PyTorch peers (HF
#            GPT2LMHeadModel and a nanoGPT-style GPT-2, eager and
#            torch.compile, bf16 autocast, SDPA), GPT-2 124M and 350M,
#            micro-batch 16, T=1024, bf16, 4 micro-batches an iteration; on the
#            first model also without sketches and at micro-batch 8 (where the
#            time goes)
#   verify   across devices: per miner/validator pairing the honest spreads
#            (two honest gradients, worst loss, sketch, whole gradient, and a
#            DiLoCo round's segment end state) and whether x1.01, x1.01c and
#            x1.04c (c: the receipt's sketches scaled too, so only
#            recomputation can tell), a random gradient and a stale model are
#            caught
#   inner    DiLoCo inner steps (H=32) against plain train-step over the same
#            sequences, whole commands (states published as verify needs)
#   profile  nsys's CUDA kernel summary of train-step, when nsys is there
#
# On the H200 (no Rust there: bring dtrain, dtrain-torch and dtrain-redteam):
#   export LD_LIBRARY_PATH=/opt/torch/.venv/lib/python3.12/site-packages/torch/lib
#   DTRAIN_BIN=bin/dtrain REDTEAM_BIN=bin/dtrain-redteam OUT=/tmp/gpu scripts/bench/gpu-suite.sh
# Options: --device cpu|cuda, --arch a,b, --parts info,speed,...,
#   --peers "hf,hf --compile,nanogpt,nanogpt --compile" (the second model
#   skips hf --compile: its time goes to the rest), or --peer-runs
#   "gpt2:nanogpt --compile,gpt2-medium:nanogpt" for exactly those,
#   --variants 0 to time train-step only as configured (no variants).
# Smoke test on a CPU machine (the same steps, small):
#   scripts/bench/gpu-suite.sh --device cpu --arch tiny
set -euo pipefail
cd "$(dirname "$0")/../.."
device=cuda archs=(gpt2 gpt2-medium) parts=info,speed,verify,inner,profile
peer_list="hf,hf --compile,nanogpt,nanogpt --compile" peer_runs="" variants=1
while [ $# -gt 0 ]; do
  case $1 in
    --device) device=$2; shift 2 ;;
    --arch) IFS=, read -r -a archs <<< "$2"; shift 2 ;;
    --parts) parts=$2; shift 2 ;;
    --peers) peer_list=$2; shift 2 ;;
    --peer-runs) peer_runs=$2; shift 2 ;;
    --variants) variants=$2; shift 2 ;;
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
IFS=, read -r -a peers <<< "$peer_list"
if [ "$device" = cuda ]; then
  T=1024 MB=16 NSEQ=64 iters=5 precision=bf16 threads=16 peak=989e12 H=32 LIMIT=200
  miners=("cuda bf16" "cpu f32") validators=(cuda cpu) VT=256 VSEQ=8 VMB=4 verify_arch=gpt2
else
  T=64 MB=4 NSEQ=16 iters=2 precision=f32 threads=2 peak=0 H=4 LIMIT=120
  miners=("cpu f32") validators=(cpu) VT=32 VSEQ=8 VMB=2 verify_arch=${archs[0]}
fi
started=$(date +%s)
record() { echo "{\"at_s\": $(( $(date +%s) - started )), ${1#\{}" >> "$log"; }
wants() { [[ ",$parts," == *",$1,"* ]]; }
error_json() { printf '{"error": "%s"}' "$(tail -1 "$1" 2> /dev/null | tr -d "\"\\\\" | cut -c1-300)"; }
shape() { case $1 in tiny) echo "2 2 64" ;; gpt2) echo "12 12 768" ;; gpt2-medium) echo "24 16 1024" ;; esac; }
peak_flag=(); [ "$peak" = 0 ] || peak_flag=(--peak-flops "$peak")

"$D" info --json > "$work/info.json" 2> "$work/err" || error_json "$work/err" > "$work/info.json"
record "{\"part\": \"info\", \"r\": $(cat "$work/info.json")}"
if [ "$device" = cuda ] && ! grep -q '"cuda_available":true' "$work/info.json"; then
  cat "$work/info.json" >&2; echo "gpu-suite.sh: CUDA is not available to dtrain; nothing else is worth the device time" >&2
  exit 3
fi
# four copies of the text: enough 1024-token sequences for H=32 batches of 16
for _ in 1 2 3 4; do cat tests/fixtures/tinyshakespeare.txt; done > "$work/text.txt"
"$D" tokenize -q "$work/text.txt" -o "$work/s.bin"
for arch in "${archs[@]}"; do "$D" init --arch "$arch" --seed 0 -o "$work/$arch" > /dev/null; done

bench() { # arch label micro-batch extra-args...
  local arch=$1 label=$2 mb=$3 r; shift 3
  r=$(timeout $LIMIT "$D" train-step --model "$work/$arch" --tokens "$work/s.bin" --seq-len $T --micro-batch "$mb" \
      --sequences "0-$((NSEQ - 1))" --device "$device" --precision $precision --benchmark $iters \
      "${peak_flag[@]}" --json "$@" 2> "$work/err") || r=$(error_json "$work/err")
  record "{\"part\": \"speed\", \"arch\": \"$arch\", \"runner\": \"$label\", \"r\": $r}"
}
peer() { # arch peer-flags
  local arch=$1 flags r L H C; read -r L H C <<< "$(shape "$arch")"
  read -r -a flags <<< "$2"
  [ "${flags[0]}" = nanogpt ] && flags[0]=--nanogpt || flags=("${flags[@]:1}")
  [ "$precision" != bf16 ] || flags+=(--bf16)
  [ "$peak" = 0 ] || flags+=(--peak-flops "$peak")
  r=$(timeout $LIMIT "$PY" scripts/bench/train_peer.py --shard "$work/s.bin" --layers "$L" --heads "$H" --embd "$C" \
      --seq-len "$T" --micro-batch "$MB" --sequences "$NSEQ" --iters "$iters" --device "$device" \
      --threads "$threads" "${flags[@]}" 2> "$work/err") || r=$(error_json "$work/err")
  record "{\"part\": \"speed\", \"arch\": \"$arch\", \"runner\": \"py $2\", \"r\": $r}"
}
if wants speed; then
  echo "== speed: dtrain" >&2
  for arch in "${archs[@]}"; do
    bench "$arch" "dtrain train-step" $MB
    bench "$arch" "dtrain, phases timed" $MB --profile
  done
  if [ "$variants" = 1 ]; then
    bench "${archs[0]}" "dtrain, no sketches" $MB --sketch-k 0
    bench "${archs[0]}" "dtrain, micro-batch $((MB / 2))" $((MB / 2))
  fi
fi

verify_one() { # miner-label validator case grad receipt [extra verify args...]
  local v label=$1 vdev=$2 case=$3 grad=$4 receipt=$5; shift 5
  v=$(timeout $LIMIT "$D" verify --receipt "$receipt" --grad "$grad" --model "$work/v-model" --tokens "$work/s.bin" \
      --pubkey "$(cat "$work/m.pub")" --device "$vdev" --json "$@" 2> "$work/verr") \
    || [ $? = 1 ] || v=$(error_json "$work/verr")
  record "{\"part\": \"verify\", \"miner\": \"$label\", \"validator\": \"$vdev\", \"case\": \"$case\", \"r\": $v}"
}
verify_pairings() {
  "$D" keygen -o "$work/m.key" > "$work/m.pub"
  "$D" init --arch "$verify_arch" --seed 0 -o "$work/v-model" > /dev/null
  "$D" init --arch "$verify_arch" --seed 1 -o "$work/v-stale" > /dev/null
  local inner=(--inner-steps 4 --inner-lr 1e-3)
  for m in "${miners[@]}"; do
    local mdev mprec case vdev
    read -r mdev mprec <<< "$m"
    train() { # model out-prefix sequences [extra args...]
      local model=$1 out=$2 seqs=$3; shift 3
      "$D" train-step --model "$model" --tokens "$work/s.bin" --seq-len $VT --micro-batch $VMB --sequences "$seqs" \
        --device "$mdev" --precision "$mprec" --key "$work/m.key" -o "$out.safetensors" --receipt "$out.json" "$@" > /dev/null
    }
    train "$work/v-model" "$work/honest" "0-$((VSEQ - 1))"
    train "$work/v-model" "$work/honest2" "$VSEQ-$((2 * VSEQ - 1))"
    train "$work/v-stale" "$work/stale" "0-$((VSEQ - 1))"
    rm -rf "$work/states"
    train "$work/v-model" "$work/diloco" "0-$((VSEQ - 1))" "${inner[@]}" --states "$work/states"
    for case in x1.01 x1.01c x1.04c random; do
      cp "$work/honest.safetensors" "$work/$case.safetensors"; cp "$work/honest.json" "$work/$case.json"
      forge=("$R" forge --grad "$work/$case.safetensors" --receipt "$work/$case.json" --key "$work/m.key")
      case $case in
        random) "${forge[@]}" --random ;;
        *c) scale=${case#x}; "${forge[@]}" --scale "${scale%c}" --consistent ;;
        *) "${forge[@]}" --scale "${case#x}" ;;
      esac
    done
    for vdev in "${validators[@]}"; do
      for case in honest honest2 x1.01 x1.01c x1.04c random stale; do
        verify_one "$mdev $mprec" "$vdev" "$case" "$work/$case.safetensors" "$work/$case.json"
      done
      verify_one "$mdev $mprec" "$vdev" "diloco" "$work/diloco.safetensors" "$work/diloco.json" \
        "${inner[@]}" --states "$work/states"
    done
  done
}
if wants verify; then
  echo "== verify across devices" >&2
  verify_pairings
fi

if wants inner; then
  echo "== inner steps" >&2
  arch=${archs[0]} seqs="0-$((H * MB - 1))"
  for mode in plain inner one-state; do
    case $mode in
      plain) extra=() ;;
      inner) extra=(--inner-steps "$H" --inner-lr 3e-4 --states "$work/inner-states") ;;
      one-state) extra=(--inner-steps "$H" --inner-lr 3e-4 --states "$work/inner-states" --state-every "$H") ;;
    esac
    start=$(date +%s%N)
    r=$(timeout $LIMIT "$D" train-step --model "$work/$arch" --tokens "$work/s.bin" --seq-len $T --micro-batch $MB \
        --sequences "$seqs" --device "$device" --precision $precision -o "$work/g-$mode.safetensors" \
        --receipt "$work/r-$mode.json" --json "${extra[@]}" 2> "$work/err") || r=$(error_json "$work/err")
    wall_ms=$(( ($(date +%s%N) - start) / 1000000 ))
    record "{\"part\": \"inner\", \"arch\": \"$arch\", \"mode\": \"$mode\", \"steps\": $H, \"tokens\": $((H * MB * T)), \"wall_ms\": $wall_ms, \"r\": $r}"
    rm -rf "$work/inner-states"
  done
fi

if wants speed; then
  echo "== speed: PyTorch peers" >&2
  if [ -n "$peer_runs" ]; then
    IFS=, read -r -a runs <<< "$peer_runs"
    for run in "${runs[@]}"; do peer "${run%%:*}" "${run#*:}"; done
  else
    for arch in "${archs[@]}"; do
      for p in "${peers[@]}"; do
        [ "$arch" != "${archs[0]}" ] && [ "$p" = "hf --compile" ] && continue
        peer "$arch" "$p"
      done
    done
  fi
fi

if wants profile && command -v nsys > /dev/null; then
  echo "== profile (nsys)" >&2
  arch=${archs[0]}
  if timeout $LIMIT nsys profile -t cuda,nvtx -o "$work/prof" --force-overwrite true \
      "$D" train-step --model "$work/$arch" --tokens "$work/s.bin" --seq-len $T --micro-batch $MB \
      --sequences "0-$((NSEQ - 1))" --device "$device" --precision $precision --benchmark 2 > /dev/null 2>&1 \
    && timeout 90 nsys stats -r cuda_gpu_kern_sum -f csv "$work/prof.nsys-rep" > "$OUT/kernels.csv" 2> /dev/null; then
    record '{"part": "profile", "file": "kernels.csv"}'
  else
    record '{"part": "profile", "r": {"error": "nsys failed"}}'
  fi
elif wants profile; then
  record '{"part": "profile", "r": {"skipped": "no nsys on this machine"}}'
fi

"$PY" scripts/bench/gpu_report.py "$log" "$OUT"
echo "results in $OUT (results.json, results.md)" >&2
