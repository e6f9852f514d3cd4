#!/usr/bin/env python3
"""PyTorch eager reference for lem's llm_energy example: the same Llama architecture,
dimensions, dtype, batch and lengths, random weights, greedy decoding with a KV cache,
energy from the NVML counter. Prints one JSON line per configuration.

Measured the way llm_energy measures: prefill = the prompt's forward pass with logits for
the last position only (as lem-burn computes them) plus picking the first token; prefill
tokens/s = prompt tokens / prefill time; inter-token latency = one decode step (forward of
one position with the KV cache, plus picking the token). The KV cache is transformers'
`DynamicCache`. `--threads` sets PyTorch's CPU threads (default: all cores).

Usage: python3 scripts/torch_reference.py --model small --batch 1 --prompt-len 64 \
           --gen-tokens 32 --requests 3 --dtype f16 [--threads N]
"""
import argparse
import inspect
import json
import time

import torch

PRESETS = {
    "tiny": dict(vocab_size=512, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, intermediate_size=192, rope_theta=10000.0, tie_word_embeddings=False),
    "small": dict(vocab_size=32000, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                  num_key_value_heads=4, intermediate_size=2048, rope_theta=10000.0, tie_word_embeddings=False),
    "llama-1b": dict(vocab_size=128256, hidden_size=2048, num_hidden_layers=16, num_attention_heads=32,
                     num_key_value_heads=8, intermediate_size=8192, rope_theta=500000.0, tie_word_embeddings=True),
}
DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}


def energy_j(handle):
    if handle is None:
        return None
    import pynvml
    return pynvml.nvmlDeviceGetTotalEnergyConsumption(handle) / 1000.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="small", choices=PRESETS)
    ap.add_argument("--dtype", default="f32", choices=DTYPES)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--prompt-len", type=int, default=64)
    ap.add_argument("--gen-tokens", type=int, default=32)
    ap.add_argument("--requests", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    args = ap.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM
    cfg = LlamaConfig(rms_norm_eps=1e-5, max_position_embeddings=args.prompt_len + args.gen_tokens,
                      **PRESETS[args.model])
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).to(dev, DTYPES[args.dtype]).eval()
    handle = None
    if dev == "cuda":
        import pynvml
        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(torch.cuda.current_device())
    prompt = torch.randint(0, 256, (args.batch, args.prompt_len), device=dev)

    def sync():
        if dev == "cuda":
            torch.cuda.synchronize()

    # the current names of the cache and logits arguments (transformers renamed both)
    params = inspect.signature(model.forward).parameters
    cache_kw = "cache" if "cache" in params else "past_key_values"
    keep_kw = "logits_to_keep" if "logits_to_keep" in params else "num_logits_to_keep"

    @torch.inference_mode()
    def request():
        cache = DynamicCache(config=cfg)
        kw = {cache_kw: cache, "use_cache": True, keep_kw: 1}
        t0 = time.perf_counter()
        # logits for the last position only, as the example computes them
        out = model(input_ids=prompt, **kw)
        nxt = out.logits[:, -1, :].argmax(-1, keepdim=True)
        nxt.cpu()
        sync()
        ttft = time.perf_counter() - t0
        e_mid = energy_j(handle)
        steps = []
        for _ in range(args.gen_tokens - 1):
            t = time.perf_counter()
            out = model(input_ids=nxt, **kw)
            nxt = out.logits[:, -1, :].argmax(-1, keepdim=True)
            nxt.cpu()
            steps.append(time.perf_counter() - t)
        return ttft, steps, e_mid

    for _ in range(args.warmup):
        request()
    sync()
    ttfts, all_steps, e_pre, e_dec = [], [], 0.0, 0.0
    t_start = time.perf_counter()
    for _ in range(args.requests):
        sync()
        e0 = energy_j(handle)
        ttft, steps, e_mid = request()
        sync()
        e1 = energy_j(handle)
        ttfts.append(ttft)
        all_steps += steps
        if handle is not None:
            e_pre += e_mid - e0
            e_dec += e1 - e_mid
    wall = time.perf_counter() - t_start
    tokens = args.batch * args.gen_tokens * args.requests
    all_steps.sort()
    pct = lambda p: all_steps[min(len(all_steps) - 1, int(p / 100 * len(all_steps)))] * 1e3 if all_steps else None
    print(json.dumps({
        "engine": "pytorch-eager", "torch": torch.__version__, "device": torch.cuda.get_device_name() if dev == "cuda" else "cpu",
        "model": args.model, "dtype": args.dtype, "batch": args.batch, "prompt_len": args.prompt_len,
        "gen_tokens": args.gen_tokens, "requests": args.requests, "tokens_out": tokens,
        "ttft_ms": sum(ttfts) / len(ttfts) * 1e3, "itl_ms_p50": pct(50), "itl_ms_p95": pct(95),
        "threads": torch.get_num_threads() if dev == "cpu" else None,
        "tokens_per_s": tokens / wall,
        "prefill_tokens_per_s": args.batch * args.prompt_len * len(ttfts) / sum(ttfts),
        "decode_tokens_per_s": args.batch * len(all_steps) / max(sum(all_steps), 1e-12),
        "energy_raw_j": (e_pre + e_dec) if handle else None,
        "energy_per_output_token_raw_j": (e_pre + e_dec) / tokens if handle else None,
    }))


if __name__ == "__main__":
    main()
