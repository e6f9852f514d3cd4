"""Energy of prefill and decode of a small PyTorch transformer, per phase, with lem.

Run with (CPU is fine; on a GPU the same script measures NVML energy):

    python -m venv .venv && .venv/bin/pip install ./lem-python torch
    LEM_DEVICE=sim:examples/scenarios/steady_300w.json .venv/bin/python examples/python/torch_inference.py

Without a GPU or RAPL, set LEM_DEVICE to a simulated device (as above: the figures are then
labelled simulated) or to `none` (timing only; energy is None).
"""

import time

import torch

import lem

torch.manual_seed(0)
DIM, LAYERS, VOCAB, PROMPT, NEW = 256, 4, 1000, 64, 32

layer = torch.nn.TransformerEncoderLayer(DIM, nhead=4, dim_feedforward=4 * DIM, batch_first=True)
model = torch.nn.Sequential(
    torch.nn.Embedding(VOCAB, DIM),
    torch.nn.TransformerEncoder(layer, num_layers=LAYERS),
    torch.nn.Linear(DIM, VOCAB),
).eval()

# sync="torch" waits for the GPU at both ends of every window; on the CPU nothing to wait for
sync = "torch" if torch.cuda.is_available() else None
meter = lem.Meter.from_env(sync=sync)

tokens = torch.randint(0, VOCAB, (1, PROMPT))
with torch.inference_mode():
    with meter.scope("prefill") as prefill:
        logits = model(tokens)
    next_token = logits[:, -1].argmax(-1, keepdim=True)
    with meter.scope("decode") as decode:
        for _ in range(NEW):  # no KV cache here: each step re-reads the sequence
            tokens = torch.cat([tokens, next_token], dim=1)
            next_token = model(tokens)[:, -1].argmax(-1, keepdim=True)

for scope, n in ((prefill, PROMPT), (decode, NEW)):
    r = scope.report
    energy = "not measured" if r.raw_j is None else f"{r.raw_j:.3f} ± {r.uncertainty_j:.3f} J"
    per_token = "" if r.raw_j is None else f", {r.raw_j / n * 1e3:.2f} mJ/token"
    sim = " [SIMULATED]" if r.simulated else ""
    print(f"{r.name:<8} {r.duration_s * 1e3:8.1f} ms  {energy}{per_token}{sim}")
    for w in r.warnings:
        print(f"  warning: {w}")
print(f"environment: {meter.environment()['summary']} at {time.strftime('%Y-%m-%d %H:%M')}")
