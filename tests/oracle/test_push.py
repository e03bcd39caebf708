"""The local hub's write side with the official client (huggingface_hub):
upload_folder + create_tag succeed, and files cross between it and dtrain
bit-identically in both directions. Xet is off: the stand-in speaks LFS."""
import json

import pytest

from conftest import Hub, run


@pytest.fixture
def hub(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    h = Hub(tmp_path / "root")
    yield h
    h.close()


def test_official_client_uploads_and_dtrain_pulls(hub, tmp_path):
    from huggingface_hub import HfApi

    ck = tmp_path / "ck"
    run("init", "--arch", "tiny", "--seed", "11", "-o", ck)
    (ck / "README.md").write_text("a small file, not LFS\n")
    api = HfApi(endpoint=hub.url, token=False)
    api.create_repo("org/py", repo_type="model")
    api.upload_folder(folder_path=str(ck), repo_id="org/py", commit_message="Epoch 5")
    api.create_tag("org/py", tag="5", tag_message="epoch 5")
    assert [t.name for t in api.list_repo_refs("org/py").tags] == ["5"]
    env = {"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "home")}
    run("pull", "--repo", "org/py", "--latest-epoch", "-o", tmp_path / "got", env=env)
    for f in ("model.safetensors", "config.json", "README.md"):
        assert (tmp_path / "got" / f).read_bytes() == (ck / f).read_bytes()
    # a duplicate tag is a 409 for the official client too
    from huggingface_hub.errors import HfHubHTTPError

    with pytest.raises(HfHubHTTPError) as e:
        api.create_tag("org/py", tag="5")
    assert e.value.response.status_code == 409


def test_dtrain_pushes_and_the_official_client_downloads(hub, tmp_path):
    from huggingface_hub import hf_hub_download, snapshot_download

    ck = tmp_path / "ck"
    run("init", "--arch", "tiny", "--seed", "12", "-o", ck)
    env = {"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "home")}
    out = json.loads(run("push", ck, "--repo", "org/dt", "--tag", "3", "--create", "--json", env=env).stdout)
    p = hf_hub_download("org/dt", "model.safetensors", revision="3", endpoint=hub.url, cache_dir=tmp_path / "c", token=False)
    assert open(p, "rb").read() == (ck / "model.safetensors").read_bytes()
    snap = snapshot_download("org/dt", revision=out["commit"], endpoint=hub.url, cache_dir=tmp_path / "c2", token=False)
    for f in ("model.safetensors", "config.json"):
        assert open(f"{snap}/{f}", "rb").read() == (ck / f).read_bytes()
