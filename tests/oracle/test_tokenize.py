"""`dtrain tokenize` against tiktoken (an independent BPE built from the same
vocab/merges) and Hugging Face's GPT2TokenizerFast."""
import json
import random

import numpy as np
import pytest
import tiktoken
import tiktoken.load

from conftest import FIXTURES, GPT2_DIR, run

GPT2_PAT = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
EOT = 50256

TORTURE = [
    "Hello world",
    "It's we'll they're I've I'd you'm 'tis 'S 'LL",
    "naïve café résumé Ünïcödé e\u0301 combining",
    "日本語のテキスト、中文文本，한국어 텍스트",
    "emoji 😀👍🏽 family 👨\u200d👩\u200d👧 flags 🇫🇷🇯🇵",
    "   leading spaces and trailing   ",
    "tabs\t\tand\nnewlines\n\n\nmany\r\nCRLF",
    "digits 1234567890 ١٢٣ ⅫⅣ ²³ 3.14159 1,000,000",
    "punctuation!!! ??? ... --- ''' \"\"\" ((( )))",
    "mixed123abc ABC123 a1b2c3",
    "\u00a0nbsp\u00a0inside\u3000ideographic\u2028line\u2029para",
    "x" * 3000,
    " " * 50 + "y",
    "<|endoftext|> is just text here",
    "",
    "'",
    "a'",
    "\n",
    "  \n  \n",
    "Zero\u200bwidth\ufeffBOM",
]


@pytest.fixture(scope="module")
def tiktoken_gpt2():
    ranks = tiktoken.load.data_gym_to_mergeable_bpe_ranks(
        vocab_bpe_file=str(GPT2_DIR / "merges.txt"), encoder_json_file=str(GPT2_DIR / "vocab.json")
    )
    return tiktoken.Encoding("gpt2-local", pat_str=GPT2_PAT, mergeable_ranks=ranks, special_tokens={"<|endoftext|>": EOT})


def hf_gpt2():
    """Hugging Face's own BPE (the `tokenizers` library) with GPT-2's byte-level
    pre-tokenizer, from the same files. No added tokens: text stays text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    t = Tokenizer(models.BPE.from_file(str(GPT2_DIR / "vocab.json"), str(GPT2_DIR / "merges.txt")))
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    t.decoder = decoders.ByteLevel()
    return t


def read_shard(raw: bytes) -> np.ndarray:
    header = np.frombuffer(raw[:1024], dtype="<i4")
    assert header[0] == 20240520 and header[1] == 1
    toks = np.frombuffer(raw[1024:], dtype="<u2")
    assert len(toks) == header[2]
    return toks


def expected(enc, docs):
    out = []
    for d in docs:
        out.append(EOT)
        out.extend(enc.encode_ordinary(d))
    return np.array(out, dtype=np.uint16)


def tokenize_jsonl(docs, tmp_path):
    src = tmp_path / "docs.jsonl"
    src.write_text("".join(json.dumps({"text": d, "id": i}) + "\n" for i, d in enumerate(docs)))
    out = tmp_path / "shard.bin"
    run("tokenize", "--format", "jsonl", src, "-o", out)
    return read_shard(out.read_bytes())


def test_tinyshakespeare_matches_tiktoken(tiktoken_gpt2, tmp_path):
    text = (FIXTURES / "tinyshakespeare.txt").read_text()
    out = tmp_path / "shard.bin"
    run("tokenize", "--format", "text", FIXTURES / "tinyshakespeare.txt", "-o", out)
    got = read_shard(out.read_bytes())
    # paragraphs separated by blank lines, lines joined with \n (the documented rule)
    docs, cur = [], []
    for line in text.split("\n"):
        line = line[:-1] if line.endswith("\r") else line
        if line.strip() == "":
            if cur:
                docs.append("\n".join(cur))
                cur = []
        else:
            cur.append(line)
    if cur:
        docs.append("\n".join(cur))
    want = expected(tiktoken_gpt2, docs)
    assert len(got) == len(want) > 300_000
    np.testing.assert_array_equal(got, want)


def test_torture_set_matches_tiktoken_and_hf(tiktoken_gpt2, tmp_path):
    got = tokenize_jsonl(TORTURE, tmp_path)
    np.testing.assert_array_equal(got, expected(tiktoken_gpt2, TORTURE))
    hf = hf_gpt2()
    want_hf = []
    for d in TORTURE:
        want_hf.append(EOT)
        want_hf.extend(hf.encode(d).ids)
    np.testing.assert_array_equal(got, np.array(want_hf, dtype=np.uint16))


def test_random_unicode_matches_tiktoken(tiktoken_gpt2, tmp_path):
    alphabet = (
        list("abcXYZ0189 '''  \t\n\r.,!?-_\"()")
        + ["s", "t", "re", "ve", "ll", "d", "m"]
        + list("éßøΩЖж日本語한국😀👍\u0301\u200d\u00a0\u3000\u2028١٢ⅫⅣ²\u0e01\u0e31\ufeff")
    )
    rng = random.Random(20240520)
    docs = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80))) for _ in range(3000)]
    got = tokenize_jsonl(docs, tmp_path)
    np.testing.assert_array_equal(got, expected(tiktoken_gpt2, docs))


def test_stdin_to_stdout_pipeline(tiktoken_gpt2):
    p = run("tokenize", "--format", "lines", "--json", input="one line\nsecond line\n".encode())
    got = read_shard(p.stdout)
    np.testing.assert_array_equal(got, expected(tiktoken_gpt2, ["one line", "second line"]))
    summary = json.loads(p.stderr.decode().strip().splitlines()[-1])
    assert summary["documents"] == 2 and summary["tokens"] == len(got)


def test_tokenizer_json_and_folder_give_same_tokens(tmp_path):
    hf_gpt2().save(str(tmp_path / "tokenizer.json"))
    text = "\n\n".join(TORTURE[:10]).encode()
    a = run("tokenize", "--tokenizer", tmp_path / "tokenizer.json", input=text).stdout
    b = run("tokenize", "--tokenizer", GPT2_DIR, input=text).stdout
    c = run("tokenize", input=text).stdout
    assert a == b == c


def test_other_tokenizer_json_runs_through_tokenizers_crate(tmp_path):
    """A tokenizer.json that is not plain GPT-2 (here: prefix spaces added) is run
    by the tokenizers crate; its tokens equal the Python library's."""
    from tokenizers import pre_tokenizers

    t = hf_gpt2()
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    t.save(str(tmp_path / "tokenizer.json"))
    docs = TORTURE[:12]
    src = tmp_path / "d.jsonl"
    src.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    got = read_shard(run("tokenize", "--format", "jsonl", "--tokenizer", tmp_path / "tokenizer.json", src).stdout)
    want = []
    for d in docs:
        want.append(EOT)
        want.extend(t.encode(d).ids)
    np.testing.assert_array_equal(got, np.array(want, dtype=np.uint16))
    assert not np.array_equal(got, tokenize_jsonl(docs, tmp_path)), "prefix spaces must change the tokens"
