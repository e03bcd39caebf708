"""Tokenizer peers for scripts/bench/tokenize.sh: tiktoken and HF tokenizers on
the same documents, 2 threads each. Prints one JSON line per peer."""
import json
import os
import sys
import time

import tiktoken
import tiktoken.load
from tokenizers import Tokenizer, models, pre_tokenizers

gpt2_dir, corpus, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
raw = open(corpus, "rb").read()
# dtrain's --format text rule: blank-line-separated paragraphs, lines joined by \n
docs, cur = [], []
for line in raw.decode().split("\n"):
    if line.strip():
        cur.append(line)
    elif cur:
        docs.append("\n".join(cur))
        cur = []
if cur:
    docs.append("\n".join(cur))
nbytes = len(raw)

ranks = tiktoken.load.data_gym_to_mergeable_bpe_ranks(f"{gpt2_dir}/merges.txt", f"{gpt2_dir}/vocab.json")
enc = tiktoken.Encoding(
    "gpt2-local",
    pat_str=r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""",
    mergeable_ranks=ranks,
    special_tokens={"<|endoftext|>": 50256},
)
t0 = time.perf_counter()
out = enc.encode_ordinary_batch(docs, num_threads=threads)
dt = time.perf_counter() - t0
print(json.dumps({"peer": "tiktoken", "seconds": dt, "mb_per_s": nbytes / 1e6 / dt, "tokens": sum(map(len, out)) + len(docs)}))

tok = Tokenizer(models.BPE.from_file(f"{gpt2_dir}/vocab.json", f"{gpt2_dir}/merges.txt"))
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
t0 = time.perf_counter()
out = tok.encode_batch(docs, add_special_tokens=False)
dt = time.perf_counter() - t0
print(json.dumps({"peer": "hf-tokenizers", "seconds": dt, "mb_per_s": nbytes / 1e6 / dt, "tokens": sum(len(e.ids) for e in out) + len(docs)}))
