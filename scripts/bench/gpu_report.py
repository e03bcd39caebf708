"""Tables from gpu-suite.sh's results.jsonl: writes results.json and
results.md next to it and prints the Markdown.

    python3 scripts/bench/gpu_report.py results.jsonl OUT_DIR
"""
import json
import sys

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
out = sys.argv[2]
json.dump(rows, open(f"{out}/results.json", "w"), indent=1)
md = []


def fmt(v):
    return "-" if v is None else f"{v:.1e}"


def info_line():
    info = next((r["r"] for r in rows if r["part"] == "info"), {})
    dev = info.get("cuda_devices") or []
    names = ", ".join(f"{d.get('name')} ({d.get('memory_bytes', 0) / 2**30:.0f} GiB, bf16 {d.get('bf16')})"
                      if isinstance(d, dict) else str(d) for d in dev)
    return [f"dtrain info: libtorch {info.get('libtorch')}, CUDA available {info.get('cuda_available')}, "
            f"devices: {names or 'none'}", ""]


def speed_table():
    speed = [r for r in rows if r["part"] == "speed"]
    if not speed:
        return []
    t = ["| model | runner | tok/s | ms/iter | MFU | peak mem GiB | dtrain / runner |", "|---|---|---|---|---|---|---|"]
    phases = []
    for arch in dict.fromkeys(r["arch"] for r in speed):
        these = [r for r in speed if r["arch"] == arch]
        ours = next((r["r"].get("tokens_per_s") for r in these if r["runner"] == "dtrain train-step"), None)
        for r in these:
            x = r["r"]
            if "tokens_per_s" not in x:
                t.append(f"| {arch} | {r['runner']} | error: {x.get('error', x)} | | | | |")
                continue
            mfu = f"{x['mfu'] * 100:.1f}%" if x.get("mfu") else "-"
            mem = x.get("peak_memory_bytes")
            mem = f"{mem / 2**30:.1f}" if mem else "-"
            ratio = f"{ours / x['tokens_per_s']:.2f}x" if ours else "-"
            t.append(f"| {arch} | {r['runner']} | {x['tokens_per_s']:.0f} | {x['ms_per_iter']:.1f} | {mfu} | {mem} | {ratio} |")
            if x.get("phases_ms"):
                p = x["phases_ms"]
                phases.append(f"{arch}: trunk forward {p['trunk_forward']:.1f} ms, LM head and loss {p['head']:.1f} ms, "
                              f"trunk backward {p['trunk_backward']:.1f} ms per iteration")
    return t + [""] + phases + ([""] if phases else [])


def inner_table():
    inner = [r for r in rows if r["part"] == "inner"]
    if not inner:
        return []
    t = ["| inner | model | tokens | wall s | tok/s (whole command) | compute s (receipt) |", "|---|---|---|---|---|---|"]
    for r in inner:
        x = r["r"]
        if "error" in x:
            t.append(f"| {r['mode']} | {r['arch']} | error: {x['error']} | | | |")
            continue
        wall = r["wall_ms"] / 1e3
        label = {"plain": "plain", "inner": f"H={r['steps']}",
                 "one-state": f"H={r['steps']}, one state published"}.get(r["mode"], r["mode"])
        t.append(f"| {label} | {r['arch']} | {r['tokens']} | {wall:.1f} | {r['tokens'] / wall:.0f} | {x.get('seconds', 0):.1f} |")
    return t + [""]


def caught(case):
    if case is None or "error" in case or "pass" not in case:
        return "error"
    return "caught" if not case["pass"] else "**PASSED**"


def verify_table():
    verify = [r for r in rows if r["part"] == "verify"]
    if not verify:
        return []
    t = ["| miner | validator | honest worst loss / sketch / grad / segment | tolerances | x1.01 | x1.01c | x1.04c | random | stale |",
         "|---|---|---|---|---|---|---|---|---|"]
    detail = ["", "Every case's measured deviations (loss / sketch / grad / segment / linearity) and verdict:", "",
              "| miner | validator | case | loss | sketch | grad | segment | linearity | verdict |",
              "|---|---|---|---|---|---|---|---|---|"]
    for pair in dict.fromkeys((r["miner"], r["validator"]) for r in verify):
        cases = {r["case"]: r["r"] for r in verify if (r["miner"], r["validator"]) == pair}
        honest = [cases.get(c, {}) for c in ("honest", "honest2", "diloco")]
        if any("measured" not in h for h in honest):
            bad = next(h for h in honest if "measured" not in h)
            t.append(f"| {pair[0]} | {pair[1]} | error: {bad.get('error', bad)} | | | | | | |")
        else:
            worst = {k: max((h["measured"].get(k) or 0) for h in honest) for k in ("loss", "sketch", "grad", "segment")}
            ok = "PASS" if all(h["pass"] for h in honest) else "FAIL"
            tol = honest[0]["tolerances"]
            t.append(f"| {pair[0]} | {pair[1]} | {ok}: {fmt(worst['loss'])} / {fmt(worst['sketch'])} / "
                     f"{fmt(worst['grad'])} / {fmt(worst['segment'])} | {tol['loss']:.0e} / {tol['sketch']:.0e} / "
                     f"{tol['grad']:.0e} / {tol['segment']:.0e} | {caught(cases.get('x1.01'))} | "
                     f"{caught(cases.get('x1.01c'))} | {caught(cases.get('x1.04c'))} | {caught(cases.get('random'))} | {caught(cases.get('stale'))} |")
        for name, c in cases.items():
            m = c.get("measured", {})
            verdict = "error" if "pass" not in c else ("PASS" if c["pass"] else "FAIL")
            detail.append(f"| {pair[0]} | {pair[1]} | {name} | {fmt(m.get('loss'))} | {fmt(m.get('sketch'))} | "
                          f"{fmt(m.get('grad'))} | {fmt(m.get('segment'))} | {fmt(m.get('linearity'))} | {verdict} |")
    return t + detail + [""]


def profile_lines():
    prof = [r for r in rows if r["part"] == "profile"]
    if not prof:
        return []
    p = prof[0]
    if "file" not in p:
        return [f"profile: {json.dumps(p.get('r'))}", ""]
    import csv
    lines = list(csv.DictReader(open(f"{out}/{p['file']}")))
    t = ["Top CUDA kernels (nsys, train-step):", "", "| time % | total ms | calls | kernel |", "|---|---|---|---|"]
    for k in lines[:15]:
        name = k.get("Name", "")[:90].replace("|", "/")
        t.append(f"| {k.get('Time (%)')} | {float(k.get('Total Time (ns)', 0)) / 1e6:.1f} | {k.get('Instances')} | {name} |")
    return t + [""]


md = info_line() + speed_table() + inner_table() + verify_table() + profile_lines()
open(f"{out}/results.md", "w").write("\n".join(md) + "\n")
print("\n".join(md))
