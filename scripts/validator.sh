#!/usr/bin/env bash
# A dtrain validator: runs the epochs.
#
#   scripts/validator.sh [--env FILE] [--once] [--metrics-file PATH] [--init]
#
# --init creates the model repo with an initial checkpoint tagged 0 (if absent).
# Each epoch E (the highest model tag):
#   pull the model tagged E and what every miner published (all of them at once,
#     until each has or the window closes); publish the round's members (tag
#     E-members of the model repo: members.json), the miners that arrived
#   join the round's reduce with weight 0 (it gets the average, contributes nothing)
#   apply the average: the model of epoch E+1
#   for each miner: rebuild its shard from its data spec, verify (pinned key,
#     re-fetched rows, recomputation, what it sent in reduce)
#   score (verdicts, receipts, transcripts, state) → weights
#   measure the new model's loss on the held-out rows (DTRAIN_HELD_OUT > 0)
#   append the signed ledger entry (losses, tag), push the new model tagged E+1
#     with the ledger beside it (ledger.jsonl: anyone can verify the run from the Hub)
#   append one line to $DTRAIN_WORK/epochs.jsonl (loss, reduce, scores, model)
#
# Configuration as for miner.sh, plus: DTRAIN_LEDGER (default
# $DTRAIN_WORK/ledger.jsonl), DTRAIN_ARCH and DTRAIN_INIT_SEED (for --init),
# DTRAIN_SAMPLE (verify K sampled micro-batches instead of all),
# DTRAIN_VERIFY_DEVICE (default cpu), DTRAIN_MINERS (names to expect; default:
# every other peer in the peers file), DTRAIN_METRICS_FILE (or --metrics-file
# PATH: Prometheus text written after each epoch). DiLoCo (DTRAIN_INNER_STEPS
# and the rest, as for miner.sh): verify holds each miner to the round's inner
# settings and recomputes DTRAIN_SAMPLE of its segments (default: a quarter,
# at least one); a miner's published residual is what it sent with.
# Rosters (DTRAIN_ROSTER=1): the miners are the registry's (DTRAIN_REGISTRY,
# TOML [[miner]] name, uid, pubkey: the chain's record, read every epoch); the
# round is `dtrain roster decide` over the announcements that arrived
# (DTRAIN_ADDR: this validator's reduce address; DTRAIN_RELAY: the relay
# offered to miners that accept no connections; DTRAIN_EXCLUDE: names left out,
# besides those whose last DTRAIN_FAIL_STREAK verdicts (default 3) all FAILed),
# published as roster.json in tag E-members.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

once=0 init=0 env_file=""
while [ $# -gt 0 ]; do
  case $1 in
    --env) env_file=$2; shift 2 ;;
    --once) once=1; shift ;;
    --metrics-file) metrics_file=$2; shift 2 ;;
    --init) init=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done
load_env "$env_file"
[ -n "${metrics_file:-}" ] && DTRAIN_METRICS_FILE=$metrics_file
: "${DTRAIN_NAME:?set DTRAIN_NAME}" "${DTRAIN_KEY:?set DTRAIN_KEY}"
ledger=${DTRAIN_LEDGER:-$DTRAIN_WORK/ledger.jsonl}
if roster_mode; then
  : "${DTRAIN_REGISTRY:?set DTRAIN_REGISTRY (the miners allowed: [[miner]] name, uid, pubkey)}" "${DTRAIN_ADDR:?set DTRAIN_ADDR}"
  # round_peers checks this validator's own rosters as every miner does
  DTRAIN_VALIDATOR_PUBKEY=$(D keygen --public "$DTRAIN_KEY")
else
  : "${DTRAIN_PEERS:?set DTRAIN_PEERS}"
  miners=${DTRAIN_MINERS:-$(peer_names | grep -vx "$DTRAIN_NAME" | tr '\n' ' ')}
fi
data_args=(--repo "$DTRAIN_DATA_REPO" --config "$DTRAIN_DATA_CONFIG")
[ -n "${DTRAIN_DATA_SOURCE:-}" ] && data_args+=(--source "$DTRAIN_DATA_SOURCE")

if [ "$init" = 1 ]; then
  if [ -z "$(latest_epoch)" ]; then
    D init --arch "${DTRAIN_ARCH:-tiny}" --seed "${DTRAIN_INIT_SEED:-0}" -o "$DTRAIN_WORK/model-0" > /dev/null
    D push "$DTRAIN_WORK/model-0" --repo "$DTRAIN_MODEL_REPO" --tag 0 --create --message "Epoch 0: initial model" > /dev/null
    log "model repo $DTRAIN_MODEL_REPO created, tag 0 = $(model_hash "$DTRAIN_WORK/model-0")"
  fi
  exit 0
fi

# Pulls what every expected miner published for epoch E into DIR/NAME: all of
# them at once, again every 2 s for those missing, until every one has arrived
# or the window ($DTRAIN_WAIT s) closes. One absent miner costs nobody else
# anything. Prints the names that arrived.
collect_miners() { # epoch dir
  local e=$1 dir=$2 until=$(( $(date +%s) + DTRAIN_WAIT )) m
  local -a pending still
  read -r -a pending <<< "$miners"
  while [ ${#pending[@]} -gt 0 ]; do
    for m in "${pending[@]}"; do
      D pull --repo "$DTRAIN_REPO_PREFIX$m" --tag "$e" -o "$dir/$m" > /dev/null 2>&1 &
    done
    wait
    still=()
    for m in "${pending[@]}"; do [ -d "$dir/$m" ] || still+=("$m"); done
    pending=("${still[@]}")
    if [ ${#pending[@]} -eq 0 ] || [ "$(date +%s)" -ge "$until" ]; then break; fi
    sleep 2
  done
  for m in "${pending[@]}"; do log "epoch $e: nothing from $m"; done
  for m in $miners; do [ -d "$dir/$m" ] && echo "$m"; done
  return 0
}

# Epoch E's roster from the announcements of the miners that arrived (in
# DIR/m/NAME/announce.json), signed, into DIR/round/roster.json.
decide_roster() { # epoch dir names...
  local e=$1 dir=$2 m files=() extra=()
  shift 2
  for m in "$@"; do [ ! -f "$dir/m/$m/announce.json" ] || files+=("$dir/m/$m/announce.json"); done
  [ -z "${DTRAIN_RELAY:-}" ] || extra+=(--relay "$DTRAIN_RELAY")
  local exclude; exclude=$( { tr ',' '\n' <<< "${DTRAIN_EXCLUDE:-}"; fail_streak "$DTRAIN_WORK/epochs.jsonl"; } | grep -v '^$' | paste -sd, - || true)
  [ -z "$exclude" ] || extra+=(--exclude "$exclude")
  D roster decide --key "$DTRAIN_KEY" --name "$DTRAIN_NAME" --addr "$DTRAIN_ADDR" --epoch "$e" \
    --registry "$DTRAIN_REGISTRY" --deadline "$DTRAIN_DEADLINE" "${extra[@]}" -o "$dir/round/roster.json" "${files[@]}" \
    2> >(while read -r l; do log "epoch $e: roster: $l"; done) > /dev/null
}

# The held-out rows' token shard, fetched once ($DTRAIN_WORK/eval.bin).
eval_shard() {
  local marker=$DTRAIN_WORK/eval.rows
  [ -f "$DTRAIN_WORK/eval.bin" ] && [ "$(cat "$marker" 2>/dev/null)" = "$DTRAIN_HELD_OUT" ] && return 0
  D fetch-shard -q "${data_args[@]}" --held-out "$DTRAIN_HELD_OUT" --eval \
    | D tokenize -q --format jsonl -o "$DTRAIN_WORK/eval.bin"
  echo "$DTRAIN_HELD_OUT" > "$marker"
}

# Ends epoch E's run as failed, with the reason for epochs.jsonl.
give_up() { # epoch why
  echo "$2" > "$DTRAIN_WORK/epoch-$1/why"
  log "epoch $1: $2"
  return 1
}

run_epoch() {
  local e=$1 dir=$DTRAIN_WORK/epoch-$1
  rm -rf "$dir" && mkdir -p "$dir"
  pull_wait "$DTRAIN_MODEL_REPO" "$e" "$dir/model" || give_up "$e" "no model tagged $e"
  # the round's members are decided once. If they are published already, this
  # validator was restarted mid-epoch and the round went on without it (a
  # reduce cannot be rejoined): the epoch ends without an update
  if D pull --repo "$DTRAIN_MODEL_REPO" --tag "$e-members" -o "$dir/round" > /dev/null 2>&1; then
    give_up "$e" "restarted mid-epoch; the round of $(jq -r '.members | join(",")' "$dir/round/members.json") went on without me"
  fi
  local arrived=() m
  if roster_mode; then miners=$(registry_names | tr '\n' ' '); fi
  mapfile -t arrived < <(collect_miners "$e" "$dir/m")
  [ ${#arrived[@]} -gt 0 ] || give_up "$e" "no miner published"
  mkdir -p "$dir/round"
  if roster_mode; then
    decide_roster "$e" "$dir" "${arrived[@]}"
    round_peers "$dir/round" "$e" "$dir/peers.toml"
    # this epoch's uids, keys and peers (verify and score read them); the
    # members are the roster's (an announcement may have been refused)
    DTRAIN_PEERS=$dir/peers.toml
    mapfile -t arrived < <(peer_names | grep -vx "$DTRAIN_NAME")
    [ ${#arrived[@]} -gt 0 ] || give_up "$e" "the roster holds no miner"
  fi
  printf '%s\n' "${arrived[@]}" "$DTRAIN_NAME" | jq -R . | jq -s --argjson e "$e" '{epoch: $e, members: .}' \
    > "$dir/round/members.json"
  D push "$dir/round" --repo "$DTRAIN_MODEL_REPO" --tag "$e-members" > /dev/null
  roster_mode || members_peers "$dir/round/members.json" > "$dir/peers.toml"
  # the round, with weight 0: our own checkpoint gives the layout (never a miner's file)
  log "epoch $e: reduce with ${arrived[*]}"
  local inner=() outer=()
  inner_flags inner
  outer_flags outer
  D reduce --peers "$dir/peers.toml" --me "$DTRAIN_NAME" --key "$DTRAIN_KEY" --round "epoch-$e" --weight 0 \
    --in "$dir/model/model.safetensors" --out "$dir/avg.safetensors" --transcript "$dir/transcript.json" \
    --wire "$DTRAIN_WIRE" --deadline "$DTRAIN_DEADLINE" ${DTRAIN_CLIP:+--clip "$DTRAIN_CLIP"} \
    ${DTRAIN_INNER_STEPS:+--inner-steps "$DTRAIN_INNER_STEPS"} --json > "$dir/reduce.json"
  D apply --model "$dir/model" --grad "$dir/avg.safetensors" --optim "$DTRAIN_OPTIM" --lr "$DTRAIN_LR" --epoch "$e" \
    "${outer[@]}" -o "$dir/next" --json > "$dir/apply.json"
  # DiLoCo: a quarter of each miner's segments (at least one), unless DTRAIN_SAMPLE says
  local sample=${DTRAIN_SAMPLE:-}
  if [ ${#inner[@]} -gt 0 ] && [ -z "$sample" ]; then
    local every=${DTRAIN_STATE_EVERY:-$(( (DTRAIN_INNER_STEPS + 7) / 8 ))}
    sample=$(( (DTRAIN_INNER_STEPS + every - 1) / every / 4 ))
    [ "$sample" -ge 1 ] || sample=1
  fi
  # the owners' transcripts (what each miner sent), then one verdict per miner
  local transcripts=(--transcript "$dir/transcript.json")
  for m in "${arrived[@]}"; do
    if DTRAIN_WAIT=15 pull_wait "$DTRAIN_REPO_PREFIX$m" "$e-t" "$dir/t/$m"; then
      transcripts+=(--transcript "$dir/t/$m/transcript.json")
    fi
  done
  : > "$dir/verdicts.jsonl"
  local receipts=()
  for m in "${arrived[@]}"; do
    local md=$dir/m/$m
    receipts+=(--receipt "$md/receipt.json")
    # the miner's rows as the subnet assigns them (its uid is ours to know, not its spec's word)
    local uid rows
    uid=$(peer_uid "$m")
    rows=$(fetch_assigned "$e" "$uid" "$md/assigned.json" "$md/shard.bin")
    local assignment=(--seed "$DTRAIN_SEED" --epoch "$e" --uid "$uid" --rows "$rows" --held-out "$DTRAIN_HELD_OUT")
    local diloco=()
    [ ${#inner[@]} -eq 0 ] || diloco=("${inner[@]}" --states "$md/states")
    [ ! -f "$md/residual.safetensors" ] || diloco+=(--residual "$md/residual.safetensors")
    D verify --receipt "$md/receipt.json" --grad "$md/grad.safetensors" --model "$dir/model" --tokens "$md/shard.bin" \
      --pubkey "$(peer_pubkey "$m")" --miner "$m" --round "epoch-$e" --validator "$DTRAIN_NAME" --peers "$DTRAIN_PEERS" \
      --spec "$md/assigned.json" "${assignment[@]}" --data-repo "$DTRAIN_DATA_REPO" --data-config "$DTRAIN_DATA_CONFIG" \
      ${DTRAIN_DATA_SOURCE:+--source "$DTRAIN_DATA_SOURCE"} \
      ${sample:+--sample "$sample"} --device "${DTRAIN_VERIFY_DEVICE:-cpu}" "${transcripts[@]}" "${diloco[@]}" --json \
      >> "$dir/verdicts.jsonl" 2> "$dir/verify-$m.err" || true
  done
  # the losses the ledger records: the verified miners' (token-weighted) and our own eval
  local losses=()
  local loss m
  loss=$(for m in "${arrived[@]}"; do
      jq -e --arg m "$m" 'select(.miner == $m and .pass)' "$dir/verdicts.jsonl" > /dev/null \
        && jq -c '{loss, tokens}' "$dir/m/$m/receipt.json"
    done | jq -s -r 'map(select((.loss | type) == "number" and (.tokens | type) == "number" and .tokens > 0))
      | if length == 0 then empty else (map(.loss * .tokens) | add) / (map(.tokens) | add) end' 2>/dev/null || true)
  [ -n "$loss" ] && losses+=(--loss "$loss")
  local state=$DTRAIN_WORK/state.json score_args=()
  read -r -a score_args <<< "${DTRAIN_SCORE_ARGS:-}"
  [ ! -f "$state" ] || score_args+=(--state "$state")
  D score --verdicts "$dir/verdicts.jsonl" "${receipts[@]}" --peers "$DTRAIN_PEERS" "${transcripts[@]}" "${score_args[@]}" \
    --state-out "$state" --weights-out "$dir/weights.json" --epoch "$e"
  cp "$dir/weights.json" "$DTRAIN_WORK/weights.json"
  # the ledger and the new model
  local prev_tokens; prev_tokens=$(D ledger show --ledger "$ledger" --last --json 2>/dev/null | jq -r .tokens || echo 0)
  local tokens=$(( ${prev_tokens:-0} + $(jq -r .tokens "$dir/reduce.json") ))
  local contributors; contributors=$(jq -r '[.members[]] | join(",")' "$dir/reduce.json")
  if [ "$DTRAIN_HELD_OUT" -gt 0 ]; then
    eval_shard
    D eval --model "$dir/next" --tokens "$DTRAIN_WORK/eval.bin" --seq-len "$DTRAIN_SEQ_LEN" --micro-batch "$DTRAIN_MICRO_BATCH" \
      --device "${DTRAIN_VERIFY_DEVICE:-cpu}" --json > "$dir/eval.json"
    losses+=(--eval-loss "$(jq -r .loss "$dir/eval.json")")
  fi
  D ledger append --ledger "$ledger" --key "$DTRAIN_KEY" --epoch "$e" --step "$((e + 1))" --model "$dir/next" \
    --tokens "$tokens" --contributors "$contributors" --scores "$dir/weights.json" "${losses[@]}" --tag "$((e + 1))" > /dev/null
  publish_next "$e"
}

# Publishes epoch E once the ledger records it: the operator's line (unless
# there already), then the new model tagged E+1. A validator restarted between
# the ledger and the tag repeats just this, so an epoch is never recorded twice.
publish_next() { # epoch
  local e=$1 dir=$DTRAIN_WORK/epoch-$1 last
  last=$(D ledger show --ledger "$ledger" --last --json)
  if ! { [ "$(jq -r .epoch <<< "$last")" = "$e" ] && [ -d "$dir/next" ] \
    && [ "$(model_hash "$dir/next")" = "$(jq -r .model <<< "$last")" ]; }; then
    die "the ledger's last entry is not epoch $e with the model in $dir/next; not publishing"
  fi
  jq -e --argjson e "$e" 'select(.epoch == $e)' "$DTRAIN_WORK/epochs.jsonl" > /dev/null 2>&1 \
    || epoch_line "$e" >> "$DTRAIN_WORK/epochs.jsonl"
  cp "$ledger" "$dir/next/ledger.jsonl"
  D push "$dir/next" --repo "$DTRAIN_MODEL_REPO" --tag "$((e + 1))" --message "Epoch $e. Batch Size $(jq -r .sum_weight "$dir/reduce.json").\
 Peers $(jq -r '.members | length' "$dir/reduce.json"). Ledger $(jq -r .hash <<< "$last")." > /dev/null
  log "epoch $e done: model $(model_hash "$dir/next")"
  rm -rf "$DTRAIN_WORK/epoch-$((e - 2))"
}

# The operator's line for epoch E: loss, reduce, members, verdicts, scores, model.
epoch_line() { # epoch
  local e=$1 dir=$DTRAIN_WORK/epoch-$1 arrived
  arrived=$(jq -r '.members[]' "$dir/round/members.json" | grep -vx "$DTRAIN_NAME" || true)
  [ -f "$dir/eval.json" ] || echo null > "$dir/eval.json"
  jq -cn --argjson e "$e" --slurpfile v "$dir/verdicts.jsonl" --slurpfile r "$dir/reduce.json" --slurpfile w "$dir/weights.json" \
    --slurpfile eval "$dir/eval.json" \
    --arg model "$(model_hash "$dir/next")" --arg losses "$(for m in $arrived; do jq -r .loss "$dir/m/$m/receipt.json"; done | tr '\n' ' ')" '
    { epoch: $e,
      loss: ($losses | split(" ") | map(select(. != "") | tonumber) | add / length),
      reduce_seconds: $r[0].seconds, reduce_mb: ($r[0].bytes_moved / 1e6),
      members: $r[0].members, failures: [$r[0].failures[].peer],
      passed: [$v[] | select(.pass) | .miner], rejected: [$v[] | select(.pass | not) | .miner],
      scores: $w[0].weights, model: $model }
    + (if $eval[0] then {eval_loss: $eval[0].loss} else {} end)'
}

while :; do
  e=$(latest_epoch)
  [ -n "$e" ] || die "the model repo $DTRAIN_MODEL_REPO has no epoch tag: run with --init first"
  [ "$e" -gt "$DTRAIN_EPOCHS" ] && exit 0
  # restarted after the ledger recorded epoch E: publish it, never redo it
  if [ "$(D ledger show --ledger "$ledger" --last --json 2>/dev/null | jq -r .epoch)" = "$e" ]; then
    log "epoch $e: the ledger records it already (restarted); publishing"
    publish_next "$e"
    write_metrics
    [ "$once" = 1 ] && exit 0
    continue
  fi
  run_guarded run_epoch "$e"
  write_metrics
  if [ "$rc" != 0 ]; then
    # the epoch ends without an update: the same model is tagged E+1, so the
    # miners (who may have applied something) all follow the round's model
    log "epoch $e failed ($rc): tagging the unchanged model as epoch $((e + 1))"
    d=$DTRAIN_WORK/epoch-$e
    if [ -d "$d/model" ] || pull_wait "$DTRAIN_MODEL_REPO" "$e" "$d/model"; then
      why=$(cat "$d/why" 2>/dev/null || echo "a step failed (exit $rc); see the validator's log")
      jq -e --argjson e "$e" 'select(.epoch == $e)' "$DTRAIN_WORK/epochs.jsonl" > /dev/null 2>&1 \
        || jq -cn --argjson e "$e" --arg model "$(model_hash "$d/model")" --arg why "$why" \
          '{epoch: $e, no_update: true, why: $why, model: $model}' >> "$DTRAIN_WORK/epochs.jsonl"
      D push "$d/model" --repo "$DTRAIN_MODEL_REPO" --tag "$((e + 1))" --message "Epoch $e failed: no update" > /dev/null || true
    fi
    [ "$once" = 1 ] && exit "$rc"
    continue
  fi
  [ "$once" = 1 ] && exit 0
done
