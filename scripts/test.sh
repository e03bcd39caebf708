#!/usr/bin/env bash
# The whole test suite, from a fresh clone: set-up if needed, format check,
# clippy (warnings are errors), the Rust tests, then the Python oracle tests
# against the release binary.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
source scripts/env.sh
cargo fmt --check
cargo clippy --release --all-targets --quiet -- -D warnings
cargo test --release
python -m pytest -q tests/oracle "$@"
