#!/usr/bin/env bash
# The whole test suite, from a fresh clone: set-up if needed, format check,
# shell lint, clippy (warnings are errors), the Rust tests, then the Python
# oracle tests against the release binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# shellcheck source=env.sh
source scripts/env.sh
cargo fmt --check
# every script with the files it sources; any finding fails the run, as clippy's do
.venv/bin/shellcheck -x -P SCRIPTDIR scripts/*.sh scripts/bench/*.sh
cargo clippy --release --all-targets --quiet -- -D warnings
# A hung test must fail the run, not eat the CI budget: each stage has a
# wall-clock limit well above its normal time (see README, "Tests").
timeout -k 30 "${DTRAIN_TEST_LIMIT_S:-1500}" cargo test --release --no-fail-fast
timeout -k 30 "${DTRAIN_ORACLE_LIMIT_S:-900}" python -m pytest -q tests/oracle "$@"
