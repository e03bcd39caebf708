#!/usr/bin/env bash
# push and pull of a ~500 MB checkpoint (GPT-2 124M) to the local hub on
# loopback: dtrain vs huggingface_hub upload_folder / snapshot_download of the
# same folder, one run, whole processes timed, peak RSS of each.
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/setup.sh >/dev/null
D=$PWD/target/release/dtrain PY=$PWD/.venv/bin/python
work=$(mktemp -d); trap 'kill "${hub_pids[@]}" 2>/dev/null; rm -rf "$work"' EXIT
$D init --arch gpt2 --seed 0 -o "$work/ck" > /dev/null
# one hub per client: the hub stores LFS objects by content, so a second
# client pushing the same folder to the same hub would upload nothing
hub() { # name → prints its URL
  $D hub serve --quiet --root "$work/root-$1" --addr 127.0.0.1:0 > "$work/hub-$1.out" & hub_pids+=($!)
  for _ in $(seq 50); do grep -q listening "$work/hub-$1.out" 2>/dev/null && break; sleep 0.1; done
}
hub_pids=(); hub dt; hub py
DT_HUB=$(sed 's/listening on //' "$work/hub-dt.out") PY_HUB=$(sed 's/listening on //' "$work/hub-py.out")
export HF_HUB_DISABLE_XET=1 HF_TOKEN=
t() { $PY scripts/bench/timed.py "$@" 2>&1 >/dev/null | tail -1; }
dpush=$(HF_ENDPOINT=$DT_HUB HF_HOME=$work/h1 t "$D" push "$work/ck" --repo org/dt --tag 0 --create)
ppush=$(t "$PY" -c "
from huggingface_hub import HfApi
a = HfApi(endpoint='$PY_HUB', token=False)
a.create_repo('org/py'); a.upload_folder(folder_path='$work/ck', repo_id='org/py'); a.create_tag('org/py', tag='0')")
dpull=$(HF_ENDPOINT=$DT_HUB HF_HOME=$work/h2 t "$D" pull --repo org/dt --tag 0 -o "$work/got")
ppull=$(t "$PY" -c "
from huggingface_hub import snapshot_download
snapshot_download('org/py', revision='0', endpoint='$PY_HUB', cache_dir='$work/h3', token=False)")
cmp "$work/got/model.safetensors" "$work/ck/model.safetensors"
size=$(stat -c %s "$work/ck/model.safetensors")
# both clients really uploaded the whole checkpoint (each to its own hub)
for r in dt py; do
  stored=$(du -sb "$work/root-$r" | cut -f1)
  [ "$stored" -ge "$size" ] || { echo "push.sh: hub-$r holds only $stored bytes" >&2; exit 1; }
done
$PY - "$size" "$dpush" "$ppush" "$dpull" "$ppull" <<'PY'
import json, sys
size = int(sys.argv[1]); dpush, ppush, dpull, ppull = map(json.loads, sys.argv[2:])
print(f"push/pull of a {size/1e6:.0f} MB checkpoint to the local hub on loopback (whole processes)")
print(f"{'':<34}{'seconds':>9}{'MB/s':>8}{'peak RSS MiB':>14}")
for name, r in [("dtrain push", dpush), ("huggingface_hub upload_folder", ppush), ("dtrain pull", dpull), ("huggingface_hub snapshot_download", ppull)]:
    print(f"{name:<34}{r['seconds']:>9.2f}{size/1e6/r['seconds']:>8.0f}{r['peak_rss_bytes']/2**20:>14.0f}")
print(f"push: dtrain {ppush['seconds']/dpush['seconds']:.2f}x faster; pull: dtrain {ppull['seconds']/dpull['seconds']:.2f}x faster")
PY
