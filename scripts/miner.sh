#!/usr/bin/env bash
# A dtrain miner: one epoch per iteration.
#
#   scripts/miner.sh [--env FILE] [--once] [--metrics-file PATH]
#
# Each epoch E (the highest epoch tag of the model repo):
#   pull the model tagged E (and check it is the model this miner applied last epoch)
#   fetch-shard its assigned rows (seed, epoch, uid) | tokenize (rows doubled
#     while they hold no whole sequence; the validator applies the same rule)
#   train-step (signed receipt for round epoch-E); with DTRAIN_INNER_STEPS=H,
#     DiLoCo's H inner steps, the pseudo-gradient and the states verify samples
#   push receipt + gradient + data spec (+ states, + the error-feedback
#     residual it will send with) to its own repo, tagged E
#   wait for the round's members (the validator's tag E-members); reduce with
#     exactly them (not a member: sit the round out), push the transcript (tag E-t)
#   apply the average: the next model, whose hash the validator's tag E+1 must match
#
# --once does the next epoch not done yet and exits (for a systemd timer);
# without it the miner loops, waiting for each new epoch tag.
#
# Configuration (env file or environment):
#   DTRAIN_HUB          Hub endpoint (https://huggingface.co or a local hub)
#   DTRAIN_NAME         this miner's name in the peers file
#   DTRAIN_UID          its uid (which rows it is assigned)
#   DTRAIN_KEY          its key (dtrain keygen)
#   DTRAIN_PEERS        the round's peers file, or with DTRAIN_ROSTER=1 none:
#     the miner announces itself each epoch (announce.json beside its receipt:
#     DTRAIN_ADDR, or DTRAIN_BEHIND_RELAY=1 when it accepts no connections)
#     and reduces with the validator's signed roster (DTRAIN_VALIDATOR_PUBKEY)
#   DTRAIN_WORK         a folder of its own
#   optional: DTRAIN_MODEL_REPO DTRAIN_REPO_PREFIX DTRAIN_SEED DTRAIN_ROWS
#   DTRAIN_SEQ_LEN DTRAIN_MICRO_BATCH DTRAIN_DEVICE DTRAIN_PRECISION DTRAIN_OPTIM
#   DTRAIN_LR DTRAIN_WIRE DTRAIN_DEADLINE DTRAIN_CLIP DTRAIN_MAX_RATE
#   DTRAIN_DATA_REPO DTRAIN_DATA_CONFIG DTRAIN_DATA_SOURCE (local parquet)
#   DTRAIN_HELD_OUT (rows at the corpus's end held out for the validator's eval)
#   DTRAIN_EPOCHS (stop after this epoch) DTRAIN_WAIT (seconds to wait for tags)
#   DTRAIN_METRICS_FILE (or --metrics-file PATH): Prometheus text written after
#     each epoch (dtrain status --prometheus; node_exporter's textfile collector)
#   DiLoCo: DTRAIN_INNER_STEPS (H) DTRAIN_INNER_LR (default 3e-3)
#     DTRAIN_STATE_EVERY (default H/8) DTRAIN_MOMENTUM (apply --momentum, for
#     DTRAIN_OPTIM=nesterov); DTRAIN_RESIDUAL=1 keeps reduce's error feedback in
#     $DTRAIN_WORK/residual.safetensors across epochs and restarts (the default
#     on DTRAIN_WIRE=ternary)
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

once=0 env_file=""
while [ $# -gt 0 ]; do
  case $1 in
    --env) env_file=$2; shift 2 ;;
    --once) once=1; shift ;;
    --metrics-file) metrics_file=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done
load_env "$env_file"
[ -n "${metrics_file:-}" ] && DTRAIN_METRICS_FILE=$metrics_file
: "${DTRAIN_NAME:?set DTRAIN_NAME}" "${DTRAIN_UID:?set DTRAIN_UID}" "${DTRAIN_KEY:?set DTRAIN_KEY}"
if roster_mode; then
  : "${DTRAIN_VALIDATOR_PUBKEY:?set DTRAIN_VALIDATOR_PUBKEY (rosters are signed by it)}"
  [ "${DTRAIN_BEHIND_RELAY:-0}" = 1 ] || : "${DTRAIN_ADDR:?set DTRAIN_ADDR (HOST:PORT for reduce) or DTRAIN_BEHIND_RELAY=1}"
else
  : "${DTRAIN_PEERS:?set DTRAIN_PEERS}"
fi
repo=$DTRAIN_REPO_PREFIX$DTRAIN_NAME
data_args=(--repo "$DTRAIN_DATA_REPO" --config "$DTRAIN_DATA_CONFIG")
[ -n "${DTRAIN_DATA_SOURCE:-}" ] && data_args+=(--source "$DTRAIN_DATA_SOURCE")

run_epoch() {
  local e=$1 dir=$DTRAIN_WORK/epoch-$1
  rm -rf "$dir" && mkdir -p "$dir/pub" "$dir/t"
  # a miner (re)started after the round was decided cannot join it
  if D pull --repo "$DTRAIN_MODEL_REPO" --tag "$e-members" -o "$dir/round" > /dev/null 2>&1; then
    log "epoch $e: its round is decided already; too late to join"
    return 1
  fi
  pull_wait "$DTRAIN_MODEL_REPO" "$e" "$dir/model" || { log "no model tagged $e"; return 1; }
  local have; have=$(model_hash "$dir/model")
  if [ -f "$DTRAIN_WORK/applied-$((e - 1))" ]; then
    if [ "$(cat "$DTRAIN_WORK/applied-$((e - 1))")" = "$have" ]; then
      log "epoch $e: model $have is the one I applied"
    else
      log "epoch $e: WARNING: I applied $(cat "$DTRAIN_WORK/applied-$((e - 1))"), the round's model is $have; following the round"
    fi
  fi
  local rows
  rows=$(fetch_assigned "$e" "$DTRAIN_UID" "$dir/pub/spec.json" "$dir/shard.bin")
  [ "$rows" = "$DTRAIN_ROWS" ] || log "epoch $e: $DTRAIN_ROWS rows hold no whole sequence; took $rows"
  local inner=() outer=()
  inner_flags inner
  outer_flags outer
  [ ${#inner[@]} -eq 0 ] || inner+=(--states "$dir/pub/states")
  D train-step --model "$dir/model" --tokens "$dir/shard.bin" --seq-len "$DTRAIN_SEQ_LEN" --micro-batch "$DTRAIN_MICRO_BATCH" \
    --device "$DTRAIN_DEVICE" --precision "$DTRAIN_PRECISION" --key "$DTRAIN_KEY" --miner "$DTRAIN_NAME" --round "epoch-$e" \
    "${inner[@]}" -o "$dir/pub/grad.safetensors" --receipt "$dir/pub/receipt.json" --json > "$dir/train.json"
  # the residual this round sends with, published before the round (verify --residual)
  local residual=$DTRAIN_WORK/residual.safetensors
  if [ "${DTRAIN_RESIDUAL:-0}" = 1 ] && [ -f "$residual" ]; then cp "$residual" "$dir/pub/residual.safetensors"; fi
  if roster_mode; then
    local reach=(--addr "${DTRAIN_ADDR:-}") last=$DTRAIN_WORK/epoch-$((e - 1))/reduce.json
    [ "${DTRAIN_BEHIND_RELAY:-0}" = 1 ] && reach=(--relay)
    # the capacity hint: what the last round moved, MB/s (none before a first round)
    if [ -f "$last" ]; then
      reach+=(--upload "$(jq -r 'if .seconds > 0 and .bytes_moved > 0 then .bytes_moved / .seconds / 1e6 else 1 end' "$last")")
    fi
    D roster announce --key "$DTRAIN_KEY" --name "$DTRAIN_NAME" --epoch "$e" --uid "$DTRAIN_UID" "${reach[@]}" \
      -o "$dir/pub/announce.json"
  fi
  # test hook: a cheating miner rewrites its gradient here
  [ -n "${DTRAIN_CHEAT_HOOK:-}" ] && $DTRAIN_CHEAT_HOOK "$dir/pub"
  log "epoch $e: loss $(jq -r .loss "$dir/train.json"); publishing"
  D push "$dir/pub" --repo "$repo" --tag "$e" --create > /dev/null
  local extra=()
  [ -n "${DTRAIN_CLIP:-}" ] && extra+=(--clip "$DTRAIN_CLIP")
  [ -n "${DTRAIN_MAX_RATE:-}" ] && extra+=(--max-rate "$DTRAIN_MAX_RATE")
  [ -n "${DTRAIN_INNER_STEPS:-}" ] && extra+=(--inner-steps "$DTRAIN_INNER_STEPS")
  [ "${DTRAIN_RESIDUAL:-0}" = 1 ] && extra+=(--residual "$residual")
  # the round is exactly the members the validator published: a miner that
  # failed or came too late is not waited for by anyone
  pull_wait "$DTRAIN_MODEL_REPO" "$e-members" "$dir/round" || { log "epoch $e: no member list"; return 1; }
  round_peers "$dir/round" "$e" "$dir/peers.toml"
  local members; members=$(D peers "$dir/peers.toml" | jq -r '[.peers[].name] | join(" ")')
  if [[ " $members " != *" $DTRAIN_NAME "* ]]; then
    log "epoch $e: not a member of the round (published after the cut-off, or left out by the roster)"
    return 1
  fi
  log "epoch $e: reduce with $members"
  # a roster sets the round's deadline (checked and signed with it)
  local deadline=$DTRAIN_DEADLINE
  if roster_mode; then deadline=$(jq -r .body.deadline "$dir/round/roster.json"); fi
  D reduce --peers "$dir/peers.toml" --me "$DTRAIN_NAME" --key "$DTRAIN_KEY" --round "epoch-$e" \
    --in "$dir/pub/grad.safetensors" --out "$dir/avg.safetensors" --transcript "$dir/t/transcript.json" \
    --wire "$DTRAIN_WIRE" --deadline "$deadline" "${extra[@]}" --json > "$dir/reduce.json"
  D push "$dir/t" --repo "$repo" --tag "$e-t" > /dev/null
  D apply --model "$dir/model" --grad "$dir/avg.safetensors" --optim "$DTRAIN_OPTIM" --lr "$DTRAIN_LR" --epoch "$e" \
    "${outer[@]}" -o "$dir/next" --json > "$dir/apply.json"
  model_hash "$dir/next" > "$DTRAIN_WORK/applied-$e"
  echo "$e" > "$DTRAIN_WORK/last_epoch"
  log "epoch $e: applied, model $(cat "$DTRAIN_WORK/applied-$e")"
  # keep the last two epochs' folders
  rm -rf "$DTRAIN_WORK/epoch-$((e - 2))"
}

while :; do
  done_epoch=$(cat "$DTRAIN_WORK/last_epoch" 2>/dev/null || echo -1)
  e=$(latest_epoch)
  if [ -z "$e" ] || [ "$e" -le "$done_epoch" ]; then
    [ "$once" = 1 ] && { log "nothing to do: epoch ${e:-none} is done"; exit 0; }
    [ "$done_epoch" -ge "$DTRAIN_EPOCHS" ] 2>/dev/null && exit 0
    sleep 1
    continue
  fi
  [ "$e" -gt "$DTRAIN_EPOCHS" ] && exit 0
  run_guarded run_epoch "$e"
  write_metrics
  if [ "$rc" != 0 ]; then
    log "epoch $e failed ($rc); waiting for the next one"
    echo "$e" > "$DTRAIN_WORK/last_epoch"
  fi
  [ "$once" = 1 ] && exit 0
done
