"""Helpers for scripts/bench/fetch.sh.

make DIR          : a ~100 MB fineweb-schema corpus (documents of ~20 tinyshakespeare
                    paragraphs) under DIR/datasets/HuggingFaceFW/fineweb/sample/350BT
peer URL SPEC...  : huggingface_hub's HfFileSystem + pyarrow reading the rows of each
                    dtrain data spec (the same row groups, text and id columns); prints JSON
"""
import json
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

REPO, DIR = "HuggingFaceFW/fineweb", "sample/350BT"

if sys.argv[1] == "make":
    import pathlib

    out = pathlib.Path(sys.argv[2]) / "datasets" / REPO / DIR
    out.mkdir(parents=True, exist_ok=True)
    paras = [p for p in open("tests/fixtures/tinyshakespeare.txt").read().split("\n\n") if p.strip()]
    rng = np.random.default_rng(0)
    for f in range(8):
        docs = ["\n\n".join(paras[i] for i in rng.integers(0, len(paras), 20)) for _ in range(6000)]
        n = len(docs)
        t = pa.table({"text": docs, "id": [f"<urn:uuid:{f:04d}-{i:08d}>" for i in range(n)], "dump": ["CC-MAIN-2024-10"] * n,
                      "url": [f"https://example.org/{f}/{i}" for i in range(n)], "date": ["2024-02-20T00:00:00Z"] * n,
                      "file_path": ["s3://demo"] * n, "language": ["en"] * n, "language_score": [0.9] * n,
                      "token_count": [len(d) // 4 for d in docs]})
        pq.write_table(t, out / f"{f:03d}_00000.parquet", row_group_size=1000, compression="snappy")
    sys.exit(0)

from huggingface_hub import HfFileSystem  # noqa: E402

url, specs = sys.argv[2], sys.argv[3:]
t0 = time.perf_counter()
fs = HfFileSystem(endpoint=url, token=False)
rows = 0
nbytes = 0
for spec_path in specs:
    spec = json.load(open(spec_path))
    (start, end), = [tuple(map(int, r.split("-"))) for r in spec["rows"].split(",")]
    end += 1
    offset = 0
    for f in spec["files"]:
        lo, hi = max(start, offset), min(end, offset + f["rows"])
        if lo < hi:
            pf = pq.ParquetFile(fs.open(f"datasets/{REPO}/{f['path']}", cache_type="none"))
            rg_start = offset
            for rg in range(pf.num_row_groups):
                n = pf.metadata.row_group(rg).num_rows
                a, b = max(lo, rg_start), min(hi, rg_start + n)
                if a < b:
                    t = pf.read_row_group(rg, columns=["text", "id"]).slice(a - rg_start, b - a)
                    rows += t.num_rows
                    nbytes += sum(len(x) for x in t.column("text").to_pylist())
                rg_start += n
        offset += f["rows"]
dt = time.perf_counter() - t0
print(json.dumps({"rows": rows, "seconds": dt, "text_bytes": nbytes}))
