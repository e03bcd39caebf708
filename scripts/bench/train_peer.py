"""PyTorch peers for the train-step benchmarks: the same micro-batch loop
(forward, backward, gradients accumulated over micro-batches; no optimizer
step, as in `dtrain train-step`) on Hugging Face GPT2LMHeadModel, and with
--nanogpt on a minimal nanoGPT-style GPT-2 (fused QKV Linear, SDPA, tanh GELU,
tied embeddings). Prints one JSON line."""
import argparse
import json
import math
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ap = argparse.ArgumentParser()
ap.add_argument("--shard", required=True)
ap.add_argument("--layers", type=int, default=2)
ap.add_argument("--heads", type=int, default=2)
ap.add_argument("--embd", type=int, default=64)
ap.add_argument("--seq-len", type=int, default=128)
ap.add_argument("--micro-batch", type=int, default=8)
ap.add_argument("--sequences", type=int, default=32)
ap.add_argument("--iters", type=int, default=5)
ap.add_argument("--warmup", type=int, default=3)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--device", default="cpu")
ap.add_argument("--bf16", action="store_true")
ap.add_argument("--compile", action="store_true")
ap.add_argument("--nanogpt", action="store_true")
ap.add_argument("--peak-flops", type=float)
a = ap.parse_args()
torch.set_num_threads(a.threads)
dev = torch.device(a.device)


class Block(nn.Module):
    def __init__(s, c, nh):
        super().__init__()
        s.nh = nh
        s.ln_1, s.ln_2 = nn.LayerNorm(c), nn.LayerNorm(c)
        s.c_attn, s.c_proj = nn.Linear(c, 3 * c), nn.Linear(c, c)
        s.c_fc, s.c_proj2 = nn.Linear(c, 4 * c), nn.Linear(4 * c, c)

    def forward(s, x):
        B, T, C = x.shape
        q, k, v = s.c_attn(s.ln_1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, s.nh, C // s.nh).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).contiguous().view(B, T, C)
        x = x + s.c_proj(y)
        return x + s.c_proj2(F.gelu(s.c_fc(s.ln_2(x)), approximate="tanh"))


class NanoGPT(nn.Module):
    def __init__(s, L, nh, c, V=50257, P=1024):
        super().__init__()
        s.wte, s.wpe = nn.Embedding(V, c), nn.Embedding(P, c)
        s.h = nn.ModuleList(Block(c, nh) for _ in range(L))
        s.ln_f = nn.LayerNorm(c)
        s.lm_head = nn.Linear(c, V, bias=False)
        s.lm_head.weight = s.wte.weight

    def forward(s, idx, targets):
        x = s.wte(idx) + s.wpe(torch.arange(idx.shape[1], device=idx.device))
        for b in s.h:
            x = b(x)
        logits = s.lm_head(s.ln_f(x))
        return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), targets.reshape(-1))


if a.nanogpt:
    model = NanoGPT(a.layers, a.heads, a.embd).to(dev)

    def step_loss(x, y):
        return model(x, y)
else:
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(n_layer=a.layers, n_head=a.heads, n_embd=a.embd, attn_pdrop=0.0, embd_pdrop=0.0, resid_pdrop=0.0)
    model = GPT2LMHeadModel(cfg).to(dev)
    model.config._attn_implementation = "sdpa"

    def step_loss(x, y):
        return F.cross_entropy(model(input_ids=x).logits.float().view(-1, 50257), y.reshape(-1))
model.train()
if a.compile:
    step_loss = torch.compile(step_loss)

toks = np.frombuffer(open(a.shard, "rb").read()[1024:], dtype="<u2").astype(np.int64)
T = a.seq_len
data = torch.from_numpy(np.stack([toks[k * T : k * T + T + 1] for k in range(a.sequences)])).to(dev)


def run_once():
    model.zero_grad(set_to_none=False)
    n = a.sequences
    for s in range(0, n, a.micro_batch):
        mb = data[s : s + a.micro_batch]
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=a.bf16):
            loss = step_loss(mb[:, :-1], mb[:, 1:])
        (loss * (mb.shape[0] / n)).backward()
    return loss.item()


for _ in range(a.warmup):
    run_once()
if dev.type == "cuda":
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
t0 = time.perf_counter()
for _ in range(a.iters):
    run_once()
if dev.type == "cuda":
    torch.cuda.synchronize()
dt = (time.perf_counter() - t0) / a.iters
tokens = a.sequences * T
nparams = sum(p.numel() for p in model.parameters())
flops = 6 * nparams + 12 * a.layers * a.embd * T
out = {"peer": ("nanogpt" if a.nanogpt else "hf") + ("-compiled" if a.compile else "-eager"),
       "tokens_per_s": tokens / dt, "ms_per_iter": dt * 1e3, "params": nparams}
if a.peak_flops:
    out["mfu"] = tokens / dt * flops / a.peak_flops
if dev.type == "cuda":
    out["peak_memory_bytes"] = torch.cuda.max_memory_allocated()
import resource  # noqa: E402

out["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps(out))
