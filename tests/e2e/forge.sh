#!/usr/bin/env bash
# A cheating miner's hook that covers its tracks: scales the published
# (pseudo-)gradient by 1.01 and re-signs the receipt with the miner's own key
# ($DTRAIN_KEY, from its env file), so only what verify recomputes can tell.
# Usage: forge.sh PUBLISHED_DIR
set -euo pipefail
dir=${!#}
"$(dirname "$0")/../../target/release/dtrain-redteam" forge --grad "$dir/grad.safetensors" \
  --receipt "$dir/receipt.json" --key "$DTRAIN_KEY" --scale 1.01
