#!/usr/bin/env bash
# push and pull of a ~500 MB checkpoint (GPT-2 124M) to the local hub on
# loopback: dtrain vs huggingface_hub upload_folder / snapshot_download of the
# same folder, one run, whole processes timed, peak RSS of each.
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/setup.sh >/dev/null
D=$PWD/target/release/dtrain PY=$PWD/.venv/bin/python
work=$(mktemp -d); trap 'kill $hub_pid 2>/dev/null; rm -rf "$work"' EXIT
$D init --arch gpt2 --seed 0 -o "$work/ck" > /dev/null
$D hub serve --quiet --root "$work/root" --addr 127.0.0.1:0 > "$work/hub.out" & hub_pid=$!
for _ in $(seq 50); do grep -q listening "$work/hub.out" 2>/dev/null && break; sleep 0.1; done
export HF_ENDPOINT=$(sed 's/listening on //' "$work/hub.out") HF_HUB_DISABLE_XET=1 HF_TOKEN=
t() { $PY scripts/bench/timed.py "$@" 2>&1 >/dev/null | tail -1; }
dpush=$(HF_HOME=$work/h1 t $D push "$work/ck" --repo org/dt --tag 0 --create)
ppush=$(t $PY -c "
from huggingface_hub import HfApi
a = HfApi(endpoint='$HF_ENDPOINT', token=False)
a.create_repo('org/py'); a.upload_folder(folder_path='$work/ck', repo_id='org/py'); a.create_tag('org/py', tag='0')")
dpull=$(HF_HOME=$work/h2 t $D pull --repo org/dt --tag 0 -o "$work/got")
ppull=$(t $PY -c "
from huggingface_hub import snapshot_download
snapshot_download('org/py', revision='0', endpoint='$HF_ENDPOINT', cache_dir='$work/h3', token=False)")
cmp "$work/got/model.safetensors" "$work/ck/model.safetensors"
size=$(stat -c %s "$work/ck/model.safetensors")
$PY - "$size" "$dpush" "$ppush" "$dpull" "$ppull" <<'PY'
import json, sys
size = int(sys.argv[1]); dpush, ppush, dpull, ppull = map(json.loads, sys.argv[2:])
print(f"push/pull of a {size/1e6:.0f} MB checkpoint to the local hub on loopback (whole processes)")
print(f"{'':<34}{'seconds':>9}{'MB/s':>8}{'peak RSS MiB':>14}")
for name, r in [("dtrain push", dpush), ("huggingface_hub upload_folder", ppush), ("dtrain pull", dpull), ("huggingface_hub snapshot_download", ppull)]:
    print(f"{name:<34}{r['seconds']:>9.2f}{size/1e6/r['seconds']:>8.0f}{r['peak_rss_bytes']/2**20:>14.0f}")
print(f"push: dtrain {ppush['seconds']/dpush['seconds']:.2f}x faster; pull: dtrain {ppull['seconds']/dpull['seconds']:.2f}x faster")
PY
