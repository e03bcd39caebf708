#!/usr/bin/env bash
# verify's cost against the work it checks, one run, CPU, tiny GPT-2:
# train-step on 64 sequences (T=128, micro-batch 4: 16 micro-batches), then a
# full verify (every micro-batch recomputed) and verify --sample 2 (1/8).
# Targets: full <= 1.1x train-step, sampled <= 0.25x. Times are whole processes.
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/setup.sh >/dev/null
D=$PWD/target/release/dtrain
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
$D tokenize tests/fixtures/tinyshakespeare.txt -o "$work/s.bin"
$D init --arch tiny -o "$work/m" > /dev/null
$D keygen -o "$work/k" > "$work/k.pub"
t() { local t0; t0=$(date +%s.%N); "$@" > /dev/null; echo "$(date +%s.%N) - $t0" | bc; }
train=$(t "$D" train-step --model "$work/m" --tokens "$work/s.bin" --seq-len 128 --micro-batch 4 --sequences 0-63 \
  --device cpu -o "$work/g" --receipt "$work/r" --key "$work/k")
full=$(t "$D" verify --receipt "$work/r" --grad "$work/g" --model "$work/m" --tokens "$work/s.bin" --pubkey "$(cat "$work/k.pub")" --device cpu)
sampled=$(t "$D" verify --receipt "$work/r" --grad "$work/g" --model "$work/m" --tokens "$work/s.bin" --pubkey "$(cat "$work/k.pub")" --device cpu --sample 2)
printf 'verify vs train-step, tiny GPT-2 on CPU, 64 sequences x 128 tokens, 16 micro-batches\n'
printf '%-28s%9s%10s\n' "" seconds "vs train"
printf '%-28s%9.2f%10s\n' "train-step" "$train" "1.00x"
printf '%-28s%9.2f%9.2fx\n' "verify (all 16 recomputed)" "$full" "$(echo "$full / $train" | bc -l)"
printf '%-28s%9.2f%9.2fx\n' "verify --sample 2 (1/8)" "$sampled" "$(echo "$sampled / $train" | bc -l)"
