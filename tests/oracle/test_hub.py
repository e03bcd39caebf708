"""The local hub against the official client (huggingface_hub), and
fetch-shard's rows against pyarrow reading the same parquet files."""
import json
import os

import pyarrow.parquet as pq
import pytest

from conftest import Hub, run

REPO = "HuggingFaceFW/fineweb"
DIR = "sample/350BT"


@pytest.fixture
def hub(hub_root):
    h = Hub(hub_root)
    yield h
    h.close()


def test_huggingface_hub_lists_and_downloads(hub, hub_root, tmp_path):
    from huggingface_hub import HfApi, hf_hub_download

    api = HfApi(endpoint=hub.url, token=False)
    files = api.list_repo_files(REPO, repo_type="dataset")
    assert sorted(files) == [f"{DIR}/{i:03d}_00000.parquet" for i in range(4)]
    tree = list(api.list_repo_tree(REPO, repo_type="dataset", path_in_repo=DIR))
    assert {t.path for t in tree} == set(files)
    assert all(t.lfs is not None and t.size > 0 for t in tree)
    refs = api.list_repo_refs(REPO, repo_type="dataset")
    assert [b.name for b in refs.branches] == ["main"]
    for f in files[:2]:
        p = hf_hub_download(REPO, f, repo_type="dataset", endpoint=hub.url, cache_dir=tmp_path / "cache", token=False)
        assert open(p, "rb").read() == (hub_root / "datasets" / REPO / f).read_bytes()


def test_token_is_enforced_for_the_official_client(hub_root, tmp_path):
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    h = Hub(hub_root, "--token", "sesame")
    try:
        with pytest.raises(HfHubHTTPError) as e:
            HfApi(endpoint=h.url, token=False).list_repo_files(REPO, repo_type="dataset")
        assert e.value.response.status_code == 401
        assert len(HfApi(endpoint=h.url, token="sesame").list_repo_files(REPO, repo_type="dataset")) == 4
    finally:
        h.close()


def global_rows(root):
    """Every row of the corpus in global order, read by pyarrow."""
    out = []
    for i in range(4):
        t = pq.read_table(root / "datasets" / REPO / DIR / f"{i:03d}_00000.parquet", columns=["id", "text"])
        out.extend(zip(t.column("id").to_pylist(), t.column("text").to_pylist()))
    return out


def test_fetched_rows_are_the_corpus_rows(hub, hub_root, tmp_path):
    truth = global_rows(hub_root)
    env = {"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "home")}
    seen = set()
    for uid in range(6):
        out = run("fetch-shard", "--seed", "3", "--epoch", "1", "--uid", uid, "--rows", 64, env=env).stdout.decode()
        rows = [json.loads(line) for line in out.splitlines()]
        assert len(rows) == 64
        for r in rows:
            assert (r["id"], r["text"]) == truth[r["row"]]
            assert r["row"] not in seen
            seen.add(r["row"])
        # the chosen rows are contiguous: one unit of 64
        assert [r["row"] for r in rows] == list(range(rows[0]["row"], rows[0]["row"] + 64))
