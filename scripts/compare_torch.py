#!/usr/bin/env python3
"""The reference workload against PyTorch eager on this machine's CPU, in one alternating
run: for each batch and thread count, llm_energy (burn, Flex backend) and
scripts/torch_reference.py (transformers' LlamaForCausalLM, eager) run one after the other,
`--rounds` times; the medians and their ratios are printed as a Markdown table, with the
batch-1 decode bandwidth floor: the weights a decode step reads (all but the embedding table)
over this machine's read bandwidth at the row's thread count (and, stricter, on every core),
measured between the runs (median).

Usage (build the example first: cargo build --release --example llm_energy):

    python3 scripts/compare_torch.py [--model small] [--batches 1,8] [--threads 1,all]
        [--prompt-len 64] [--gen-tokens 64] [--requests 3] [--rounds 2] [--json]

Needs torch and transformers in the Python that runs it.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "target", "release", "examples", "llm_energy")
# (vocab, d_model) of each preset: the embedding table, which a decode step does not read whole
EMBED = {"tiny": (512, 64), "small": (32000, 768), "llama-1b": (128256, 2048)}


def run_lem(a, batch, threads):
    cmd = [EXAMPLE, "--model", a.model, "--batch", str(batch), "--prompt-len", str(a.prompt_len),
           "--gen-tokens", str(a.gen_tokens), "--requests", str(a.requests), "--device", "none",
           "--threads", str(threads), "--json", "--output", os.path.join(ROOT, "target", "compare")]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    v = json.loads(out)
    m = v["metrics"]
    return {"itl_ms": m["itl_ms"]["p50"], "prefill_tok_s": m["prefill_tokens_per_s"],
            "params": v["workload"]["params"]}


def run_torch(a, batch, threads):
    cmd = [sys.executable, os.path.join(ROOT, "scripts", "torch_reference.py"), "--model", a.model,
           "--batch", str(batch), "--prompt-len", str(a.prompt_len), "--gen-tokens", str(a.gen_tokens),
           "--requests", str(a.requests), "--threads", str(threads)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    v = json.loads(out.strip().splitlines()[-1])
    return {"itl_ms": v["itl_ms_p50"], "prefill_tok_s": v["prefill_tokens_per_s"], "torch": v["torch"]}


def read_bandwidth_gb_s(threads):
    """Best of 10 sums over 1 GiB of f32 on `threads` threads: what a weight-streaming
    decode step can read per second here, right now."""
    import torch
    torch.set_num_threads(threads)
    x = torch.ones(1 << 28, dtype=torch.float32)
    x.sum()
    best = float("inf")
    for _ in range(10):
        t = time.perf_counter()
        x.sum()
        best = min(best, time.perf_counter() - t)
    return x.numel() * 4 / best / 1e9


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="small", choices=EMBED)
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--threads", default="1,all")
    ap.add_argument("--prompt-len", type=int, default=64)
    ap.add_argument("--gen-tokens", type=int, default=64)
    ap.add_argument("--requests", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", action="store_true", help="also print one JSON line per row")
    a = ap.parse_args()
    if not os.path.exists(EXAMPLE):
        sys.exit(f"compare_torch: {EXAMPLE} is missing: cargo build --release --example llm_energy")
    cores = os.cpu_count() or 1
    threads = [cores if t == "all" else int(t) for t in a.threads.split(",")]
    batches = [int(b) for b in a.batches.split(",")]
    rows = []
    bandwidth = {n: [] for n in sorted(set(threads) | {cores})}  # read bandwidth, between the runs
    for batch in batches:
        for t in threads:
            lem, torch_ = [], []
            for _ in range(a.rounds):  # alternate, so drift hits both alike
                lem.append(run_lem(a, batch, t))
                torch_.append(run_torch(a, batch, t))
                for n in bandwidth:
                    bandwidth[n].append(read_bandwidth_gb_s(n))
            med = lambda rs, k: statistics.median(r[k] for r in rs)
            rows.append({
                "batch": batch, "threads": t,
                "lem_itl_ms": med(lem, "itl_ms"), "torch_itl_ms": med(torch_, "itl_ms"),
                "lem_prefill_tok_s": med(lem, "prefill_tok_s"),
                "torch_prefill_tok_s": med(torch_, "prefill_tok_s"),
                "params": lem[0]["params"], "torch": torch_[0]["torch"],
            })
    # bandwidth per thread count: the median of its measurements over the run (one outlier
    # does not move it); a row's floor is at its own thread count, and also shown against
    # every core's bandwidth (stricter for fewer threads)
    bw = {n: statistics.median(v) for n, v in bandwidth.items()}
    vocab, d = EMBED[a.model]
    weight_bytes = (rows[0]["params"] - vocab * d) * 4
    floor_ms = {n: weight_bytes / (b * 1e9) * 1e3 for n, b in bw.items()}
    print(f"model {a.model}, prompt {a.prompt_len}, {a.gen_tokens} new tokens, {a.requests} requests, "
          f"f32, {a.rounds} alternating rounds (medians), {cores} cores, torch {rows[0]['torch']}")
    print(f"read bandwidth (median of {len(bandwidth[cores])} measurements between the runs, each the best "
          f"of 10 sums over 1 GiB): " + ", ".join(
              f"{bw[n]:.1f} GB/s on {n} thread{'s' if n > 1 else ''} ({min(v):.1f}-{max(v):.1f})"
              for n, v in bandwidth.items()))
    print(f"batch-1 decode floor: {weight_bytes / 1e6:.0f} MB / bandwidth = " + ", ".join(
        f"{floor_ms[n]:.1f} ms on {n}" for n in bw) + "\n")
    print("| batch | threads | ITL p50 burn | ITL p50 torch | ITL torch/burn | prefill tok/s burn | "
          "prefill tok/s torch | prefill burn/torch | batch-1 decode vs floor (same threads) | "
          "vs floor (all cores) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        own = f"{floor_ms[r['threads']] / r['lem_itl_ms'] * 100:.0f} %" if r["batch"] == 1 else ""
        allc = f"{floor_ms[cores] / r['lem_itl_ms'] * 100:.0f} %" if r["batch"] == 1 else ""
        print(f"| {r['batch']} | {r['threads']} | {r['lem_itl_ms']:.1f} ms | {r['torch_itl_ms']:.1f} ms | "
              f"{r['torch_itl_ms'] / r['lem_itl_ms']:.2f} | {r['lem_prefill_tok_s']:.0f} | "
              f"{r['torch_prefill_tok_s']:.0f} | {r['lem_prefill_tok_s'] / r['torch_prefill_tok_s']:.2f} | "
              f"{own} | {allc} |")
        if a.json:
            print(json.dumps({**r, "bandwidth_gb_s": bw[r["threads"]], "floor_ms": floor_ms[r["threads"]]}),
                  file=sys.stderr)

if __name__ == "__main__":
    main()
