#!/usr/bin/env bash
# Soak: a swarm of 4 miners for 20 epochs under random fault drills, with
# every miner killed and restarted at random epochs and the validator
# restarted once mid-epoch (not in CI: about 20 minutes on 2 cores).
#
#   scripts/bench/soak.sh [--seed S] [--miners N] [--epochs E] [--work DIR]
#
# Prints the schedule, then one row per epoch (miners alive, members, outcome,
# whether every member's applied model is the round's) and the totals. The
# goal: no epoch lost while at least two miners are alive, other than the one
# the validator is restarted in (a reduce cannot be rejoined), and no fork.
# Exits 1 when the goal is missed. Extra DTRAIN_* settings pass through.
set -euo pipefail
cd "$(dirname "$0")/../.."
seed=1 miners=4 epochs=20 work=.work/soak
while [ $# -gt 0 ]; do
  case $1 in
    --seed) seed=$2; shift 2 ;;
    --miners) miners=$2; shift 2 ;;
    --epochs) epochs=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "soak.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

# the drills: each miner is down once or twice for 1-3 epochs (restarted
# unless the run ends first); the validator is restarted once mid-epoch
mapfile -t drills < <(python3 - "$seed" "$miners" "$epochs" <<'EOF'
import random, sys
seed, miners, epochs = map(int, sys.argv[1:])
rng = random.Random(seed)
for i in range(miners):
    at = 0
    for _ in range(rng.choice([1, 2])):
        start = rng.randint(max(at, 1), epochs - 2)
        if start >= epochs - 1:
            break
        print(f"--kill miner-{i}@{start}")
        at = start + rng.randint(1, 3)
        if at >= epochs:
            break
        print(f"--restart miner-{i}@{at}")
        at += 1
        if at >= epochs - 2:
            break
print(f"--restart validator@{rng.randint(epochs // 4, 3 * epochs // 4)}")
EOF
)
echo "soak: seed $seed, $miners miners, $epochs epochs, drills: ${drills[*]}" >&2
args=()
for d in "${drills[@]}"; do args+=("${d% *}" "${d#* }"); done

t0=$(date +%s)
set +e
DTRAIN_WAIT=${DTRAIN_WAIT:-45} scripts/swarm.sh --miners "$miners" --epochs "$epochs" --work "$work" "${args[@]}" >&2
swarm_rc=$?
set -e
took=$(( $(date +%s) - t0 ))
work=$(cd "$work" && pwd)

vrestart=$(printf '%s\n' "${drills[@]}" | sed -n 's/--restart validator@//p')

echo
echo "| epoch | alive | members | outcome | members agree |"
echo "|---|---|---|---|---|"
completed=0 lost=0 missed=0 forks=0
while read -r line; do
  ep=$(jq -r .epoch <<< "$line") alive=$(awk -v e="$ep" '$1 == e {print $2}' "$work/alive")
  if [ "$(jq -r '.no_update // false' <<< "$line")" = true ]; then
    lost=$((lost + 1))
    why=$(jq -r '.why // "failed"' <<< "$line")
    if [ "$ep" != "$vrestart" ] && [ "${alive:-0}" -ge 2 ]; then missed=$((missed + 1)); fi
    echo "| $ep | $alive | - | lost: $why | - |"
    continue
  fi
  completed=$((completed + 1))
  model=$(jq -r .model <<< "$line") agree=0 n=0
  for m in $(jq -r '.members[] | select(. != "validator")' <<< "$line"); do
    n=$((n + 1))
    [ "$(cat "$work/$m/applied-$ep" 2>/dev/null)" = "$model" ] && agree=$((agree + 1))
  done
  [ "$agree" = "$n" ] || forks=$((forks + 1))
  echo "| $ep | $alive | $(jq -r '[.members[] | select(. != "validator") | sub("miner-"; "m")] | join(" ")' <<< "$line") | ok, loss $(jq -r '.loss * 1000 | round / 1000' <<< "$line") | $agree/$n |"
done < "$work/validator/epochs.jsonl"
echo
echo "soak: $completed epochs completed, $lost lost ($missed with >= 2 miners alive, not the validator's restart), $forks with a member off the round's model; swarm exit $swarm_rc; $took s"
[ "$missed" = 0 ] && [ "$forks" = 0 ] && [ "$swarm_rc" = 0 ]
