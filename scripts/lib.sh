# shellcheck shell=bash
# Shared by miner.sh, validator.sh and swarm.sh (sourced, not run).
# Configuration comes from one env file (KEY=VALUE lines), named by --env FILE
# or $DTRAIN_ENV; every key can also be set in the environment.

dtrain_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DTRAIN_BIN=${DTRAIN_BIN:-$dtrain_root/target/release/dtrain}
[ -x "$DTRAIN_BIN" ] || DTRAIN_BIN=$(command -v dtrain || true)

die() { echo "$(basename "$0"): $*" >&2; exit 2; }
log() { echo "[$(date +%H:%M:%S) ${DTRAIN_NAME:-$(basename "$0")}] $*" >&2; }
D() { "$DTRAIN_BIN" "$@"; }
# fetch-shard's --repo/--config/--source, set by the loop that sources this file
data_args=()

load_env() { # $1: env file (optional)
  local f=${1:-${DTRAIN_ENV:-}}
  if [ -n "$f" ]; then
    [ -f "$f" ] || die "no env file $f"
    set -a
    # shellcheck disable=SC1090
    . "$f"
    set +a
  fi
  : "${DTRAIN_HUB:?set DTRAIN_HUB (the Hub endpoint)}"
  export HF_ENDPOINT=$DTRAIN_HUB
  DTRAIN_MODEL_REPO=${DTRAIN_MODEL_REPO:-swarm/model}
  DTRAIN_REPO_PREFIX=${DTRAIN_REPO_PREFIX:-swarm/miner-}
  DTRAIN_SEED=${DTRAIN_SEED:-0}
  DTRAIN_ROWS=${DTRAIN_ROWS:-64}
  DTRAIN_SEQ_LEN=${DTRAIN_SEQ_LEN:-64}
  DTRAIN_MICRO_BATCH=${DTRAIN_MICRO_BATCH:-4}
  DTRAIN_DEVICE=${DTRAIN_DEVICE:-auto}
  DTRAIN_PRECISION=${DTRAIN_PRECISION:-f32}
  DTRAIN_OPTIM=${DTRAIN_OPTIM:-adamw}
  DTRAIN_LR=${DTRAIN_LR:-3e-3}
  DTRAIN_DEADLINE=${DTRAIN_DEADLINE:-90}
  DTRAIN_WIRE=${DTRAIN_WIRE:-f32}
  DTRAIN_EPOCHS=${DTRAIN_EPOCHS:-1000000}
  DTRAIN_WAIT=${DTRAIN_WAIT:-120}
  DTRAIN_DATA_REPO=${DTRAIN_DATA_REPO:-HuggingFaceFW/fineweb}
  DTRAIN_DATA_CONFIG=${DTRAIN_DATA_CONFIG:-sample-350BT}
  DTRAIN_HELD_OUT=${DTRAIN_HELD_OUT:-0}
  DTRAIN_INNER_LR=${DTRAIN_INNER_LR:-3e-3}
  # error feedback by default on the ternary wire
  if [ "$DTRAIN_WIRE" = ternary ]; then DTRAIN_RESIDUAL=${DTRAIN_RESIDUAL:-1}; fi
  : "${DTRAIN_WORK:?set DTRAIN_WORK (a folder for this process)}"
  mkdir -p "$DTRAIN_WORK"
  export HF_HOME=${HF_HOME:-$DTRAIN_WORK/hf}
}

# Writes where this node stands (dtrain status) as Prometheus text to
# $DTRAIN_METRICS_FILE, if set: epoch, losses, reduce, verdicts, weights, lag
# behind the model repo (left out when the Hub does not answer).
# A validator's $ledger (if set) is read for the ledger head.
write_metrics() {
  [ -n "${DTRAIN_METRICS_FILE:-}" ] || return 0
  local extra=()
  [ -z "${ledger:-}" ] || extra=(--ledger "$ledger")
  D status "$DTRAIN_WORK" --repo "$DTRAIN_MODEL_REPO" --prometheus -o "$DTRAIN_METRICS_FILE" "${extra[@]}" 2>/dev/null \
    || D status "$DTRAIN_WORK" --prometheus -o "$DTRAIN_METRICS_FILE" "${extra[@]}" \
    || log "could not write the metrics file $DTRAIN_METRICS_FILE"
}

# The latest epoch tag of the model repo (empty if none yet).
latest_epoch() {
  D pull --repo "$DTRAIN_MODEL_REPO" --latest-epoch -o "$DTRAIN_WORK/.probe" --json 2>/dev/null | jq -r '.tag // empty' || true
}

# Pulls REPO at TAG into DIR, retrying until it exists or $DTRAIN_WAIT seconds pass.
pull_wait() { # repo tag dir
  local deadline=$(( $(date +%s) + DTRAIN_WAIT ))
  local err
  until err=$(D pull --repo "$1" --tag "$2" -o "$3" 2>&1 > /dev/null); do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      log "gave up waiting for $1 tag $2: $err"
      return 1
    fi
    sleep 1
  done
}

# The peers file as JSON ({max_weight, peers: [{name, addr, pubkey, uid?}]}):
# the one reader of peers files in the scripts (dtrain checks it as reduce does).
peers_json() { D peers "$DTRAIN_PEERS"; }
# The rank-ordered peer names of the peers file.
peer_names() { peers_json | jq -r '.peers[].name'; }
peer_pubkey() { peers_json | jq -r --arg n "$1" '.peers[] | select(.name == $n) | .pubkey'; }
# A miner's assigned rows for an epoch, fetched and tokenized into SHARD with
# their data spec in SPEC: DTRAIN_ROWS rows, doubled (at most 3 times) while
# the shard holds no whole sequence of DTRAIN_SEQ_LEN tokens. Miner and
# validator apply the same rule, so they agree on the rows. Prints the rows used.
fetch_assigned() { # epoch uid spec shard
  local rows=$DTRAIN_ROWS tokens k
  for k in 0 1 2 3; do
    D fetch-shard -q "${data_args[@]}" --seed "$DTRAIN_SEED" --epoch "$1" --uid "$2" --rows "$rows" \
      --held-out "$DTRAIN_HELD_OUT" --spec-out "$3" | D tokenize -q --format jsonl -o "$4" > /dev/null || return 1
    tokens=$(( ($(stat -c %s "$4") - 1024) / 2 ))
    [ "$tokens" -gt "$DTRAIN_SEQ_LEN" ] || [ "$k" = 3 ] && break
    rows=$((rows * 2))
  done
  echo "$rows"
}

# The peers file restricted to the members a round's members.json lists, in
# the file's order (its top-level rules, such as max_weight, kept).
members_peers() { # members.json
  D peers "$DTRAIN_PEERS" --only "$(jq -r '.members | join(",")' "$1")" --toml
}

# Rosters (DTRAIN_ROSTER=1): membership comes from the validator's signed
# roster.json (tag E-members) instead of a static peers file.
roster_mode() { [ "${DTRAIN_ROSTER:-0}" = 1 ]; }

# The round's peers file from the round folder (tag E-members) into FILE:
# roster.json checked against the pinned validator key, or members.json over
# the static peers file.
round_peers() { # round-dir epoch file
  if roster_mode; then
    D roster show "$1/roster.json" --validator-pubkey "$DTRAIN_VALIDATOR_PUBKEY" --epoch "$2" --peers-toml "$3"
  else
    members_peers "$1/members.json" > "$3"
  fi
}

# The miners whose last DTRAIN_FAIL_STREAK (default 3) verdicts, in the
# epochs they took part in, were all FAIL (from a validator's epochs.jsonl):
# a validator leaves them out of its next rosters.
fail_streak() { # epochs.jsonl
  [ -f "$1" ] || return 0
  jq -s -r --argjson n "${DTRAIN_FAIL_STREAK:-3}" '
    map(select(.no_update | not)) as $eps
    | [$eps[] | (.passed + .rejected)[]] | unique | .[] as $m
    | [$eps[] | select((.passed + .rejected) | index($m)) | (.rejected | index($m)) != null]
    | select(length >= $n and (.[-$n:] | all)) | $m' "$1"
}

# The names a registry file lists (`name = "..."` of each [[miner]]): the
# stand-in for the chain's miner list, read afresh every epoch.
registry_names() { sed -n 's/^name *= *"\([^"]*\)".*/\1/p' "$DTRAIN_REGISTRY"; }

# A miner's uid: its `uid = N` in the peers file, else its rank there.
peer_uid() {
  peers_json | jq -r --arg n "$1" '.peers | to_entries[] | select(.value.name == $n) | .value.uid // .key'
}

# DiLoCo's flags, as train-step and verify both take them (none without
# DTRAIN_INNER_STEPS): fills the array named by $1.
inner_flags() { # array-name
  local -n flags=$1
  flags=()
  [ -n "${DTRAIN_INNER_STEPS:-}" ] || return 0
  flags=(--inner-steps "$DTRAIN_INNER_STEPS" --inner-lr "$DTRAIN_INNER_LR")
  [ -z "${DTRAIN_STATE_EVERY:-}" ] || flags+=(--state-every "$DTRAIN_STATE_EVERY")
}

# apply's outer-step flags beyond --optim and --lr: fills the array named by $1.
outer_flags() { # array-name
  local -n outer_out=$1
  outer_out=()
  [ -z "${DTRAIN_MOMENTUM:-}" ] || outer_out+=(--momentum "$DTRAIN_MOMENTUM")
}

# The identity of a checkpoint folder: blake3 of its model.safetensors.
model_hash() { D hash "$1" | cut -d' ' -f1; }

# Runs one epoch ("$@") in a subshell with errexit and leaves its exit status
# in $rc. Call it as a plain statement: bash ignores `set -e` inside anything
# called from `if`, `||` or `&&`, so a failing step would not stop the epoch.
# shellcheck disable=SC2034 # rc is the caller's to read
run_guarded() { set +e; ( set -e; "$@" ); rc=$?; set -e; }
