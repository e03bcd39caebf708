#!/usr/bin/env bash
# DiLoCo against per-step all-reduce on CPU: 4 miners train the tiny GPT-2 on
# the same tokens in every run (tinyshakespeare, S sequences of T tokens each,
# B per inner batch), and a held-out stretch of the text measures the loss.
#
#   per-step f32   each step: train-step on B sequences, reduce (f32), apply
#                  AdamW (lr LR): S/B rounds, a full gradient each
#   DiLoCo H, W    each round: train-step --inner-steps H (AdamW, lr LR, on
#                  H·B sequences), reduce --inner-steps H --wire W (error
#                  feedback on q8 and ternary), apply --optim nesterov
#                  (lr OUTER_LR, momentum MOMENTUM): S/(H·B) rounds
#
# Prints a table (final held-out loss, MB each miner sent, tokens per byte
# sent, wall time; ratios against per-step f32) and writes it with the plot
# of held-out loss against MB sent (dtrain plot, log x) and the points:
#   scripts/bench/results/diloco.{txt,png,jsonl}
#
# Usage: scripts/bench/diloco.sh   (env: SEQS per miner, default 512; RUNS,
# default "1:f32 8:f32 8:q8 8:ternary 32:f32 32:q8 32:ternary"; LR, the
# AdamW lr of per-step and inner steps alike, default 3e-3; OUTER_LR and
# MOMENTUM, default 1.0 and 0 (the best of a sweep here: with 2–8 outer steps
# Nesterov 0.7/0.9 has no time to build momentum); OUT, the results folder)
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/setup.sh > /dev/null
D=$PWD/target/release/dtrain
out=${OUT:-scripts/bench/results}
mkdir -p "$out"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
M=4 T=64 B=8 S=${SEQS:-512} EVAL=256
LR=${LR:-3e-3} OUTER_LR=${OUTER_LR:-1.0} MOMENTUM=${MOMENTUM:-0.0}
read -r -a runs <<< "${RUNS:-1:f32 8:f32 8:q8 8:ternary 32:f32 32:q8 32:ternary}"
export OMP_NUM_THREADS=1 RAYON_NUM_THREADS=2

$D tokenize -q tests/fixtures/tinyshakespeare.txt -o "$work/all.bin"
total=$(( ($(stat -c %s "$work/all.bin") - 1024) / 2 / T ))
[ $((M * S + EVAL)) -le "$total" ] || { echo "diloco.sh: the text holds $total sequences, fewer than $((M * S + EVAL))" >&2; exit 2; }
held_out="$((total - EVAL))-$((total - 1))"
$D init --arch tiny --seed 0 -o "$work/init" > /dev/null
mapfile -t ports < <(python3 scripts/free_port.py $M)
for i in $(seq 0 $((M - 1))); do
  pk=$($D keygen -o "$work/p$i.key")
  printf '[[peer]]\nname = "p%d"\naddr = "127.0.0.1:%s"\npubkey = "%s"\n\n' "$i" "${ports[$i]}" "$pk" >> "$work/peers.toml"
done

held_out_loss() { # model
  $D eval --model "$1" --tokens "$work/all.bin" --seq-len $T --micro-batch 32 --sequences "$held_out" \
    --device cpu --json | jq .loss
}

# One run: H inner steps (1: per-step gradients) on wire W. Appends its
# points (MB sent per miner so far, held-out loss) to diloco.jsonl and its
# row to rows.jsonl.
run() { # H W
  local h=$1 wire=$2 name dir r rounds start i first sent=0 model
  if [ "$h" = 1 ]; then name="per-step $wire"; else name="DiLoCo H=$h $wire"; fi
  dir=$work/run-$h-$wire
  mkdir -p "$dir"
  cp -r "$work/init" "$dir/m0"
  rounds=$((S / (h * B)))
  start=$(date +%s.%N)
  for r in $(seq 0 $((rounds - 1))); do
    model=$dir/m$r
    for i in $(seq 0 $((M - 1))); do
      first=$((i * S + r * h * B))
      local step=(train-step --model "$model" --tokens "$work/all.bin" --seq-len "$T" --micro-batch "$B"
        --sequences "$first-$((first + h * B - 1))" --device cpu --sketch-k 0
        -o "$dir/g$i.safetensors" --receipt "$dir/r$i.json")
      [ "$h" = 1 ] || step+=(--inner-steps "$h" --inner-lr "$LR" --state-every "$h" --states "$dir/s$i")
      $D "${step[@]}" > /dev/null &
    done
    wait
    for i in $(seq 0 $((M - 1))); do
      local red=(reduce --peers "$work/peers.toml" --me "p$i" --key "$work/p$i.key" --round "h$h-$wire-$r"
        --in "$dir/g$i.safetensors" --out "$dir/avg$i.safetensors" --transcript "$dir/t$i.json"
        --wire "$wire" --deadline 120)
      [ "$h" = 1 ] || red+=(--inner-steps "$h")
      [ "$wire" = f32 ] || red+=(--residual "$dir/residual$i.safetensors")
      $D "${red[@]}" > /dev/null &
    done
    wait
    for i in $(seq 0 $((M - 1))); do
      sent=$((sent + $(jq '[.body.traffic[].sent] | add' "$dir/t$i.json")))
    done
    if [ "$h" = 1 ]; then
      $D apply --model "$model" --grad "$dir/avg0.safetensors" --optim adamw --lr "$LR" -o "$dir/m$((r + 1))" > /dev/null
    else
      $D apply --model "$model" --grad "$dir/avg0.safetensors" --optim nesterov --lr "$OUTER_LR" --momentum "$MOMENTUM" \
        -o "$dir/m$((r + 1))" > /dev/null
    fi
    rm -rf "$model"
    # a point every 64 sequences per miner (and the last)
    if [ $(((r + 1) * h * B % 64)) = 0 ] || [ $((r + 1)) = "$rounds" ]; then
      jq -cn --arg s "$name" --argjson x "$(awk -v s="$sent" -v m=$M 'BEGIN { print s / m / 1e6 }')" --argjson y "$(held_out_loss "$dir/m$((r + 1))")" \
        '{series: $s, x: $x, y: $y}' >> "$work/diloco.jsonl"
    fi
  done
  local wall; wall=$(awk -v a="$(date +%s.%N)" -v b="$start" 'BEGIN { print a - b }')
  jq -cn --arg name "$name" --argjson loss "$(tail -1 "$work/diloco.jsonl" | jq .y)" --argjson sent "$((sent / M))" \
    --argjson tokens "$((S * T))" --argjson wall "$wall" --argjson rounds "$rounds" \
    '{name: $name, loss: $loss, sent: $sent, tokens: $tokens, wall: $wall, rounds: $rounds}' >> "$work/rows.jsonl"
  echo "diloco.sh: $name done ($rounds rounds, ${wall%.*} s)" >&2
}

for spec in "${runs[@]}"; do run "${spec%%:*}" "${spec##*:}"; done
jq -s -r --arg head "4 miners, tiny GPT-2, $S sequences of $T tokens each ($((M * S * T)) tokens in all), inner batch $B, held-out loss on $EVAL sequences" '
  (.[0]) as $base |
  [$head, "",
   "| run | rounds | held-out loss | vs per-step | MB sent per miner | bytes vs per-step | tokens per MB sent | wall s |",
   "|---|---|---|---|---|---|---|---|"] +
  map("| \(.name) | \(.rounds) | \(.loss * 1000 | round / 1000) | \((.loss / $base.loss - 1) * 1000 | round / 10)% | \(.sent / 1e4 | round / 100) | 1/\($base.sent / .sent | round) | \(.tokens / .sent * 1e6 | round) | \(.wall | round) |")
  | .[]' "$work/rows.jsonl" | tee "$out/diloco.txt"
cp "$work/diloco.jsonl" "$out/diloco.jsonl"
$D plot --input "$out/diloco.jsonl" --log-x --title "Held-out loss against bytes each miner sent (4 miners, same tokens)" \
  --x-label "MB sent per miner (log)" --y-label "held-out loss" -o "$out/diloco.png"
