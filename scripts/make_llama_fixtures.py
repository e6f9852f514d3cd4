"""Tiny random Llama checkpoints saved by transformers, with what transformers computes from
them: the fixtures `lem-burn/tests/checkpoints.rs` holds lem-burn's loader to.

Each fixture is a directory under lem-burn/tests/fixtures/ with config.json and
model.safetensors (float32, as `save_pretrained` writes them) and expected.json: a fixed
prompt, the last position's logits of its prefill, the 16 greedy tokens that follow, and the
versions of transformers and torch that computed them.

Run with: python scripts/make_llama_fixtures.py   (needs torch and transformers; CI only
reads the committed fixtures)
"""

import json
import shutil
import sys
from pathlib import Path

import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM

OUT = Path(__file__).resolve().parent.parent / "lem-burn" / "tests" / "fixtures"
PROMPT = [1, 5, 9, 14, 3, 27, 8, 2]
GREEDY = 16

BASE = dict(
    vocab_size=64,
    hidden_size=32,
    intermediate_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=64,
    rms_norm_eps=1e-5,
    tie_word_embeddings=False,
)

# name -> (config overrides, rewrite config.json in transformers 4's style)
CASES = {
    "gqa": ({}, False),
    "mha_tied": ({"num_key_value_heads": 4, "tie_word_embeddings": True}, False),
    "theta_5e5_v5": ({"rope_theta": 500000.0}, False),
    "theta_5e5_v4": ({"rope_theta": 500000.0}, True),
    "llama3_scaling": (
        {
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "rope_theta": 500000.0,
            "rope_scaling": {
                "rope_type": "llama3",
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 16,
            },
        },
        False,
    ),
    "biases": ({"attention_bias": True, "mlp_bias": True}, False),
    "head_dim": ({"head_dim": 16}, False),
}


def unit_scale(model: LlamaForCausalLM, seed: int) -> None:
    """Weights of unit scale (so that a wrong rotation or a dropped term shows in the
    logits): N(0, 1) embeddings, N(0, 1/fan_in) projections, norms and biases around 1 and
    0."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith(".bias"):
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
            elif "embed_tokens" in name:
                p.copy_(torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) / p.shape[1] ** 0.5)


def as_v4(config_path: Path) -> None:
    """Rewrite a transformers 5 config.json as transformers 4 writes it: `rope_theta` (and
    `rope_scaling`) at the top level instead of `rope_parameters`."""
    c = json.loads(config_path.read_text())
    params = c.pop("rope_parameters", None) or {}
    c["rope_theta"] = params.get("rope_theta", c.get("rope_theta", 10000.0))
    if params.get("rope_type", "default") != "default":
        c["rope_scaling"] = {k: v for k, v in params.items() if k != "rope_theta"}
    config_path.write_text(json.dumps(c, indent=2) + "\n")


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    for i, (name, (overrides, v4)) in enumerate(CASES.items()):
        config = LlamaConfig(**{**BASE, **overrides})
        torch.manual_seed(i)
        model = LlamaForCausalLM(config).float().eval()
        unit_scale(model, 1000 + i)
        d = OUT / name
        shutil.rmtree(d, ignore_errors=True)
        model.save_pretrained(d, safe_serialization=True)
        for extra in ("generation_config.json",):
            (d / extra).unlink(missing_ok=True)
        if v4:
            as_v4(d / "config.json")
        ids = list(PROMPT)
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0, -1].tolist()
            for _ in range(GREEDY):
                nxt = int(model(torch.tensor([ids])).logits[0, -1].argmax())
                ids.append(nxt)
        expected = {
            "prompt": PROMPT,
            "last_logits": logits,
            "greedy_tokens": ids[len(PROMPT):],
            "transformers": transformers.__version__,
            "torch": torch.__version__,
        }
        (d / "expected.json").write_text(json.dumps(expected) + "\n")
        print(f"{name}: {sum(p.numel() for p in model.parameters())} parameters")
    return 0


if __name__ == "__main__":
    sys.exit(main())
