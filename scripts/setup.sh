#!/usr/bin/env bash
# One-time (and idempotent) set-up on a fresh clone:
#   1. .venv with torch==2.11.0 (libtorch for dtrain-torch) and, unless
#      DTRAIN_RUNTIME_ONLY=1, the test oracles, benchmark peers and linters
#      (scripts/requirements-test.txt)
#   2. target/release/dtrain and dtrain-torch (built against that libtorch,
#      rpath baked in; dtrain execs dtrain-torch beside it for the torch commands)
# A second run with nothing to do takes seconds. Set DTRAIN_SKIP_BUILD=1 to only
# prepare the venv.
set -euo pipefail
cd "$(dirname "$0")/.."
req=scripts/requirements-test.txt
[ "${DTRAIN_RUNTIME_ONLY:-0}" = 1 ] && req=scripts/requirements.txt
stamp=.venv/.dtrain-requirements
# the loops (scripts/*.sh) read JSON with jq
if ! command -v jq > /dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
    echo "setup: installing jq" >&2
    apt-get install -y -qq jq > /dev/null 2>&1 || { apt-get update -qq > /dev/null 2>&1 && apt-get install -y -qq jq > /dev/null; }
  else
    echo "setup: the scripts need jq (e.g. sudo apt-get install jq)" >&2
    exit 2
  fi
fi
# the relay test fences a namespace with iptables (optional: it says SKIPPED without)
if ! command -v iptables > /dev/null && [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
  echo "setup: installing iptables (for the relay's firewall test)" >&2
  apt-get install -y -qq iptables > /dev/null 2>&1 || true
fi
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv" >&2
  python3 -m venv .venv
fi
want=$(cat scripts/requirements.txt "$req")
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing Python packages (torch is ~4.6 GB; first time only)" >&2
  .venv/bin/python -m pip install -q --disable-pip-version-check -r "$req"
  printf '%s' "$want" > "$stamp"
fi
if [ "${DTRAIN_SKIP_BUILD:-0}" != 1 ]; then
  # shellcheck disable=SC1091
  source .venv/bin/activate
  export LIBTORCH_USE_PYTORCH=1
  cargo build --release --quiet
fi
