#!/usr/bin/env bash
# The whole subnet on this machine: a local hub serving the bundled corpus,
# N miners and a validator as separate processes, E epochs of the tiny GPT-2.
# Prints one line per epoch and a summary, then stops everything it started.
#
#   scripts/swarm.sh [--miners N] [--epochs E] [--arch tiny] [--device cpu]
#                    [--rows R] [--lr LR] [--hub URL] [--work DIR]
#                    [--inner-steps H] [--wire f32|bf16|q8|ternary]
#                    [--cheat-hook CMD] [--cheater I]
#                    [--kill NAME@EPOCH] [--restart NAME@EPOCH] ... [--churn]
#
# --hub https://huggingface.co runs against the real Hub instead of a local
# one: set HF_TOKEN to a token that may write the repos DTRAIN_MODEL_REPO
# (default swarm/model) and DTRAIN_REPO_PREFIX<miner> (default swarm/miner-).
# Every DTRAIN_* setting of the environment passes through to the processes
# (see scripts/miner.sh --help), e.g. DTRAIN_CLIP=centered:1e-3,
# DTRAIN_INNER_LR=1e-3,
# DTRAIN_WIRE=bf16 or DTRAIN_SEQ_LEN=32; the flags default from them too. --cheat-hook CMD makes
# miner I (default the last) run CMD on its published folder before reduce
# (red-team tests).
#
# --inner-steps H trains with DiLoCo: H inner AdamW steps per epoch, the
# pseudo-gradients averaged, an outer Nesterov step (DTRAIN_OPTIM=nesterov,
# --lr 0.7, DTRAIN_MOMENTUM=0.9 unless set); --wire ternary sends 1.6 bits a
# value with error feedback (each miner's residual in its work folder).
#
# Fault drills: --kill miner-1@3 kills that miner's loop (and its children)
# once it is done with epoch 2, so it is absent from epoch 3 on; --restart
# miner-1@5 starts it again when epoch 5 begins. --restart validator@E kills
# the validator in the middle of epoch E (after it published the members) and
# starts it again at once. Both flags repeat. The table marks each epoch's
# members. The swarm exits 1 when an epoch is lost while at least two miners
# were alive (an epoch the validator was restarted in is excused: a reduce
# cannot be rejoined) or when a member's applied model is not the round's.
#
# --churn: membership by rosters instead of a peers file (DTRAIN_ROSTER=1):
# 3 miners, 4 epochs; miner-1 leaves after epoch 1; miner-3, in no file at
# start, registers (the registry stands in for the chain) and joins at epoch
# 2; miner-2 accepts no connections and is reached through a relay the swarm
# runs beside the validator. The table names every epoch's members, and the
# ledger's contributors are printed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
miners=3 epochs=5 arch=${DTRAIN_ARCH:-tiny} device=${DTRAIN_DEVICE:-cpu} rows=${DTRAIN_ROWS:-48} lr=${DTRAIN_LR:-3e-3}
hub="" work=.work/swarm cheat="" cheater="" drills=() churn=0
while [ $# -gt 0 ]; do
  case $1 in
    --miners) miners=$2; shift 2 ;;
    --epochs) epochs=$2; shift 2 ;;
    --arch) arch=$2; shift 2 ;;
    --device) device=$2; shift 2 ;;
    --rows) rows=$2; shift 2 ;;
    --lr) lr=$2; lr_given=1; shift 2 ;;
    --hub) hub=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    --cheat-hook) cheat=$2; shift 2 ;;
    --cheater) cheater=$2; shift 2 ;;
    --kill|--restart) drills+=("${1#--} $2"); shift 2 ;;
    --inner-steps) export DTRAIN_INNER_STEPS=$2; shift 2 ;;
    --wire) export DTRAIN_WIRE=$2; shift 2 ;;
    --churn) churn=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "swarm.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ -n "${DTRAIN_INNER_STEPS:-}" ]; then
  # DiLoCo's outer step: Nesterov momentum at 0.7 (the paper's), unless set
  export DTRAIN_OPTIM=${DTRAIN_OPTIM:-nesterov} DTRAIN_MOMENTUM=${DTRAIN_MOMENTUM:-0.9}
  [ -n "${lr_given:-}" ] || [ -n "${DTRAIN_LR:-}" ] || lr=0.7
fi
if [ "$churn" = 1 ]; then
  miners=3 epochs=4 drills+=("kill miner-1@2")
  export DTRAIN_ROSTER=1 DTRAIN_WAIT=${DTRAIN_WAIT:-30}
fi
names=(); for i in $(seq 0 $((miners - 1))); do names+=("miner-$i"); done; names+=(validator)
# the drills, checked before anything starts: "kill|restart NAME EPOCH" each
pending=()
for d in "${drills[@]}"; do
  read -r action spec <<< "$d"
  name=${spec%@*} at=${spec##*@}
  if ! [[ $spec == *@* && $at =~ ^[0-9]+$ && $at -lt $epochs ]]; then
    echo "swarm.sh: --$action $spec: want NAME@EPOCH with EPOCH below $epochs" >&2; exit 2
  fi
  [[ " ${names[*]} " == *" $name "* ]] || { echo "swarm.sh: --$action $spec: no process $name (${names[*]})" >&2; exit 2; }
  [ "$name@$action" != validator@kill ] || { echo "swarm.sh: the validator is the swarm's clock; restart it (--restart validator@E)" >&2; exit 2; }
  pending+=("$action $name $at")
done
[ ${#pending[@]} -eq 0 ] || mapfile -t pending < <(printf '%s\n' "${pending[@]}" | sort -s -k3,3n)
# set-up on a fresh clone (seconds when done; the tests, already set up, skip it)
[ "${DTRAIN_SKIP_SETUP:-0}" = 1 ] || scripts/setup.sh >&2
D=$PWD/target/release/dtrain
rm -rf "$work" && mkdir -p "$work"
work=$(cd "$work" && pwd)
pids=()
declare -A pid_of=()
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() { for p in "${pids[@]}" "${pid_of[@]}"; do kill -- "-$p" 2>/dev/null || kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

if [ -z "$hub" ]; then
  cp -r tests/fixtures/hub "$work/hub"
  $D hub serve --quiet --root "$work/hub" --addr 127.0.0.1:0 > "$work/hub.url" & pids+=($!)
  for _ in $(seq 100); do grep -q listening "$work/hub.url" 2>/dev/null && break; sleep 0.1; done
  hub=$(sed 's/listening on //' "$work/hub.url")
fi
mapfile -t ports < <(python3 scripts/free_port.py $(( ${#names[@]} + 2 )))
: > "$work/peers.toml"
: > "$work/registry.toml"
for k in "${!names[@]}"; do
  n=${names[$k]}
  mkdir -p "$work/$n"
  pk=$($D keygen -o "$work/$n/key")
  printf '[[peer]]\nname = "%s"\naddr = "127.0.0.1:%s"\npubkey = "%s"\n' "$n" "${ports[$k]}" "$pk" >> "$work/peers.toml"
  [ "$n" = validator ] || printf 'uid = %d\n' "$k" >> "$work/peers.toml"
  [ "$n" = validator ] || printf '[[miner]]\nname = "%s"\nuid = %d\npubkey = "%s"\n\n' "$n" "$k" "$pk" >> "$work/registry.toml"
  echo >> "$work/peers.toml"
done
relay_addr=127.0.0.1:${ports[${#names[@]}]}
if [ "$churn" = 1 ]; then
  # the relay beside the validator, for miner-2 (which accepts no connections)
  $D relay --quiet --listen "$relay_addr" & pids+=($!)
fi
# every other DTRAIN_* setting of this environment reaches every process
# (after the swarm's defaults, so it wins), quoted for the env files
passthrough() {
  local k
  for k in $(compgen -e DTRAIN_); do
    case $k in
      DTRAIN_NAME|DTRAIN_UID|DTRAIN_KEY|DTRAIN_WORK|DTRAIN_HUB|DTRAIN_PEERS|DTRAIN_EPOCHS|DTRAIN_ENV) ;;
      DTRAIN_ROWS|DTRAIN_DEVICE|DTRAIN_LR|DTRAIN_ARCH|DTRAIN_SKIP_SETUP|DTRAIN_CHEAT_HOOK) ;;
      *) printf '%s=%q\n' "$k" "${!k}" ;;
    esac
  done
}
if [ "$churn" = 1 ]; then
  membership="DTRAIN_VALIDATOR_PUBKEY=$($D keygen --public "$work/validator/key")"
else
  membership="DTRAIN_PEERS=$work/peers.toml"
fi
common="DTRAIN_HUB=$hub
$membership
DTRAIN_EPOCHS=$((epochs - 1))
DTRAIN_ROWS=$rows
DTRAIN_SEQ_LEN=64
DTRAIN_MICRO_BATCH=4
DTRAIN_DEVICE=$device
DTRAIN_LR=$lr
DTRAIN_ARCH=$arch
DTRAIN_DEADLINE=60
DTRAIN_WAIT=60
DTRAIN_HELD_OUT=64
$(passthrough)"
# a miner's env file (its reduce port: ports[i], or the spare one for a newcomer)
miner_env() { # i port
  printf '%s\nDTRAIN_NAME=miner-%d\nDTRAIN_UID=%d\nDTRAIN_KEY=%s\nDTRAIN_WORK=%s\nDTRAIN_METRICS_FILE=%s\n' "$common" "$1" "$1" \
    "$work/miner-$1/key" "$work/miner-$1" "$work/miner-$1/metrics.prom" > "$work/miner-$1.env"
  [ "$churn" = 1 ] || return 0
  if [ "$1" = 2 ]; then echo "DTRAIN_BEHIND_RELAY=1" >> "$work/miner-$1.env"; else echo "DTRAIN_ADDR=127.0.0.1:$2" >> "$work/miner-$1.env"; fi
}
for i in $(seq 0 $((miners - 1))); do miner_env "$i" "${ports[$i]}"; done
printf '%s\nDTRAIN_NAME=validator\nDTRAIN_KEY=%s\nDTRAIN_WORK=%s\nDTRAIN_METRICS_FILE=%s\n' "$common" "$work/validator/key" \
  "$work/validator" "$work/validator/metrics.prom" > "$work/validator.env"
[ "$churn" = 0 ] || printf 'DTRAIN_REGISTRY=%s\nDTRAIN_ADDR=127.0.0.1:%s\nDTRAIN_RELAY=%s\n' "$work/registry.toml" \
  "${ports[$miners]}" "$relay_addr" >> "$work/validator.env"
[ -n "$cheat" ] && echo "DTRAIN_CHEAT_HOOK=\"$cheat\"" >> "$work/miner-${cheater:-$((miners - 1))}.env"

# miners alive in epoch E (by the drills; with --churn the newcomer from epoch
# 2 on), and the epochs the validator is restarted in
alive_in() { # epoch
  local n=0 i e=$1 state d action name at
  for i in $(seq 0 $((miners - 1))); do
    state=1
    for d in "${pending[@]}"; do
      read -r action name at <<< "$d"
      [ "$name" = "miner-$i" ] && [ "$at" -le "$e" ] && { [ "$action" = kill ] && state=0 || state=1; }
    done
    n=$((n + state))
  done
  if [ "$churn" = 1 ] && [ "$e" -ge 2 ]; then n=$((n + 1)); fi
  echo "$n"
}
validator_restarted_in() { [[ " ${pending[*]} " == *" restart validator $1 "* ]]; }

# each process in a session of its own, so a drill kills its children too
start() { # name
  local script=miner.sh; [ "$1" = validator ] && script=validator.sh
  setsid scripts/$script --env "$work/$1.env" >> "$work/$1.log" 2>&1 & pid_of[$1]=$!
}
stop() { kill -KILL -- "-${pid_of[$1]}" 2>/dev/null || true; wait "${pid_of[$1]}" 2>/dev/null || true; }

scripts/validator.sh --env "$work/validator.env" --init
for i in $(seq 0 $((miners - 1))); do
  [[ " ${pending[*]} " == *" kill miner-$i 0 "* ]] || start "miner-$i"
done
start validator

# --churn's newcomer: a key and a registration (the chain's record) made as
# epoch 2 begins, then its loop; it was in no file before.
newcomer_joins() {
  local i=$miners pk
  mkdir -p "$work/miner-$i"
  pk=$($D keygen -o "$work/miner-$i/key")
  printf '[[miner]]\nname = "miner-%d"\nuid = %d\npubkey = "%s"\n\n' "$i" "$i" "$pk" >> "$work/registry.toml"
  miner_env "$i" "${ports[$((${#names[@]} + 1))]}"
  echo "swarm: miner-$i registers and joins at epoch 2" >&2
  start "miner-$i"
}

# Fires the drills that are due; epochs.jsonl has a line per finished epoch.
drill() {
  local done_epochs=$1 d action name at rest=()
  if [ "$churn" = 1 ] && [ -z "${pid_of[miner-$miners]:-}" ] && [ "$done_epochs" -ge 2 ]; then newcomer_joins; fi
  for d in "${todo[@]}"; do
    read -r action name at <<< "$d"
    if [ "$name" = validator ]; then
      grep -q "epoch $at: reduce with" "$work/validator.log" 2>/dev/null || { rest+=("$d"); continue; }
      echo "swarm: drill: restarting the validator in the middle of epoch $at" >&2
      stop validator; start validator
    elif [ "$action" = kill ]; then
      [ "$at" = 0 ] && continue
      [ "$(cat "$work/$name/last_epoch" 2>/dev/null || echo -1)" -ge $((at - 1)) ] || [ "$done_epochs" -ge "$at" ] \
        || { rest+=("$d"); continue; }
      echo "swarm: drill: killing $name before epoch $at" >&2
      stop "$name"
    else
      [ "$done_epochs" -ge "$at" ] || { rest+=("$d"); continue; }
      echo "swarm: drill: restarting $name at epoch $at" >&2
      start "$name"
    fi
  done
  todo=("${rest[@]}")
}

echo "swarm: $miners miners + validator, $epochs epochs of $arch on $device, hub $hub, logs in $work" >&2
printf '%-6s %-9s %-9s %-8s %-10s %-11s %s\n' epoch loss eval reduce MB/s model scores
shown=0 todo=("${pending[@]}")
while :; do
  lines=0; [ -f "$work/validator/epochs.jsonl" ] && lines=$(wc -l < "$work/validator/epochs.jsonl")
  if [ ${#todo[@]} -gt 0 ] || [ "$churn" = 1 ]; then drill "$lines"; fi
  while [ "$lines" -gt "$shown" ]; do
    shown=$((shown + 1))
    sed -n "${shown}p" "$work/validator/epochs.jsonl" | jq -r --argjson all $((miners + 1 + churn)) '
      if .no_update then [.epoch, "-", "-", "-", "-", .model[0:10], "no update: \(.why // "failed")"]
      else [.epoch, (.loss * 10000 | round / 10000), (if .eval_loss then .eval_loss * 10000 | round / 10000 else "-" end),
            "\(.reduce_seconds * 100 | round / 100)s", (.reduce_mb / .reduce_seconds | round),
            .model[0:10], ((.scores | to_entries | map("\(.key)=\(.value * 1000 | round / 1000)") | join(" "))
            + (if (.rejected | length) > 0 then "  rejected: \(.rejected | join(","))" else "" end)
            + (if (.members | length) < $all then "  members: \(.members - ["validator"] | join(","))" else "" end))]
      end | @tsv' | while IFS=$'\t' read -r ep loss eval red mbs model scores; do
        printf '%-6s %-9s %-9s %-8s %-10s %-11s %s\n' "$ep" "$loss" "$eval" "$red" "$mbs" "$model" "$scores"
      done
  done
  kill -0 "${pid_of[validator]}" 2>/dev/null || break
  sleep 0.2
done
vpid=${pid_of[validator]}
wait "$vpid" || { echo "swarm: the validator failed; see $work/validator.log" >&2; exit 1; }
[ "$shown" -ge "$epochs" ] || { echo "swarm: only $shown of $epochs epochs ran; see $work/*.log" >&2; exit 1; }
final=$(jq -r .model "$work/validator/epochs.jsonl" | tail -1)
validator_pubkey=$($D keygen --public "$work/validator/key")
$D ledger verify --ledger "$work/validator/ledger.jsonl" --pubkey "$validator_pubkey" >&2
first_loss=$(jq -r 'select(.no_update | not) | .loss' "$work/validator/epochs.jsonl" | head -1)
last_loss=$(jq -r 'select(.no_update | not) | .loss' "$work/validator/epochs.jsonl" | tail -1)
echo "summary: $epochs epochs, loss $first_loss -> $last_loss, final model $final, weights $(jq -c .weights "$work/validator/weights.json")"
$D ledger plot --ledger "$work/validator/ledger.jsonl" -o "$work/loss.png" > /dev/null && echo "loss curve: $work/loss.png"
[ "$churn" = 0 ] || $D ledger show --ledger "$work/validator/ledger.jsonl"
# miners alive in each epoch by the drills (soak.sh reports them)
for ep in $(seq 0 $((epochs - 1))); do echo "$ep $(alive_in "$ep")"; done > "$work/alive"
# a lost epoch is the swarm's failure while two miners were alive in it
# (unless the validator was restarted in it)
failed=0
while read -r ep; do
  if validator_restarted_in "$ep"; then
    echo "swarm: epoch $ep lost to the validator's restart (excused)" >&2
  elif [ "$(alive_in "$ep")" -ge 2 ]; then
    echo "swarm: epoch $ep lost with $(alive_in "$ep") miners alive; see $work/*.log" >&2; failed=1
  else
    echo "swarm: epoch $ep lost with only $(alive_in "$ep") miner(s) alive" >&2
  fi
done < <(jq -r 'select(.no_update) | .epoch' "$work/validator/epochs.jsonl")
# every member applied the round's model: no fork among the live peers
while read -r ep model members; do
  for m in ${members//,/ }; do
    [ "$m" = validator ] && continue
    got=$(cat "$work/$m/applied-$ep" 2>/dev/null || echo none)
    [ "$got" = "$model" ] || { echo "swarm: epoch $ep: $m applied $got, the round's model is $model" >&2; failed=1; }
  done
done < <(jq -r 'select(.no_update | not) | "\(.epoch) \(.model) \(.members | join(","))"' "$work/validator/epochs.jsonl")
exit "$failed"
