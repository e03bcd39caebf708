"""Shared fixtures for the oracle tests: they run the real `dtrain` binary and
compare its output with independent Python implementations."""
import os
import pathlib
import subprocess

import pytest

# The stand-in hub speaks the Hub's commit and LFS APIs, not Xet storage:
# make huggingface_hub (which prefers Xet when hf_xet is installed, as it
# always is with huggingface_hub 2.x) take its documented LFS path. Must be
# set before huggingface_hub is imported (it reads its constants once).
os.environ["HF_HUB_DISABLE_XET"] = "1"

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
GPT2_DIR = ROOT / "src" / "tokenizer" / "gpt2"


def dtrain_bin():
    return os.environ.get("DTRAIN_BIN", str(ROOT / "target" / "release" / "dtrain"))


def run(*args, input=None, check=True, env=None, timeout=600):
    """Runs dtrain; returns the CompletedProcess (stdout as bytes)."""
    e = dict(os.environ)
    if env:
        e.update(env)
    p = subprocess.run([dtrain_bin(), *map(str, args)], input=input, capture_output=True, env=e, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"dtrain {' '.join(map(str, args))} exited {p.returncode}: {p.stderr.decode(errors='replace')}")
    return p


@pytest.fixture(scope="session")
def dtrain():
    return run


class Hub:
    """`dtrain hub serve` on a free loopback port."""

    def __init__(self, root, *extra):
        self.proc = subprocess.Popen([dtrain_bin(), "hub", "serve", "--quiet", "--addr", "127.0.0.1:0", "--root", str(root), *extra],
                                     stdout=subprocess.PIPE)
        line = self.proc.stdout.readline().decode()
        assert line.startswith("listening on "), line
        self.url = line.split()[-1]

    def close(self):
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def hub_root(tmp_path):
    import shutil

    root = tmp_path / "hubroot"
    shutil.copytree(FIXTURES / "hub", root, ignore=shutil.ignore_patterns(".*"))
    return root
