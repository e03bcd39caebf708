#!/usr/bin/env bash
# Fuzzes reduce's frame decoder and handshake parser with libFuzzer (cargo-fuzz).
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET]   (default 60)
# Needs `cargo install cargo-fuzz`; the stable toolchain is enough with
# RUSTC_BOOTSTRAP=1 and --sanitizer none (the code under test is safe Rust: what
# fuzzing looks for here are panics, hangs and unbounded allocations).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >/dev/null
source scripts/env.sh
export RUSTC_BOOTSTRAP=1 LD_LIBRARY_PATH=$PWD/.venv/lib/python3.11/site-packages/torch/lib
for t in frames handshake; do
  cargo fuzz run --fuzz-dir tests/fuzz --sanitizer none -O "$t" -- -max_total_time="${1:-60}" -rss_limit_mb=4096
done
