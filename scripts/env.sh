# shellcheck shell=bash
# Sourced by the other scripts: the venv (for libtorch's build) and build flags.
# shellcheck disable=SC1091
source "$(dirname "${BASH_SOURCE[0]}")/../.venv/bin/activate"
export LIBTORCH_USE_PYTORCH=1
