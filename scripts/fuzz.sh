#!/usr/bin/env bash
# Fuzzes every target in tests/fuzz/fuzz_targets with libFuzzer (cargo-fuzz):
# reduce's frame decoder and handshake, the hub's HTTP server, and the
# documents other parties publish (receipts, specs, transcripts, peers files).
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET]   (default 60)
# Installs cargo-fuzz when it is missing; the stable toolchain is enough with
# RUSTC_BOOTSTRAP=1 and --sanitizer none (the code under test is safe Rust: what
# fuzzing looks for here are panics, hangs and unbounded allocations).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >/dev/null
# shellcheck source=env.sh
source scripts/env.sh
command -v cargo-fuzz > /dev/null || cargo install --locked --quiet cargo-fuzz
# the targets link the core crate only: no libtorch to find
export RUSTC_BOOTSTRAP=1
for f in tests/fuzz/fuzz_targets/*.rs; do
  t=$(basename "$f" .rs)
  cargo fuzz run --fuzz-dir tests/fuzz --sanitizer none -O "$t" -- -max_total_time="${1:-60}" -rss_limit_mb=4096
done
