"""Tiny random Hugging Face Llama models saved with transformers, the ground truth for parity tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from transformers import LlamaConfig, LlamaForCausalLM

LLAMA3_SCALING = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                  "original_max_position_embeddings": 8192}


def tiny_hf_config(kv_heads: int = 2, heads: int = 4, llama3_rope: bool = True, tie: bool = False,
                   vocab: int = 256, hidden: int = 64, layers: int = 2, theta: float = 500000.0) -> LlamaConfig:
    rope = {"rope_type": "default", "rope_theta": theta}
    if llama3_rope:
        rope = {**LLAMA3_SCALING, "rope_theta": theta}
    return LlamaConfig(
        vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden + 16, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=kv_heads, head_dim=hidden // heads,
        max_position_embeddings=131072, rms_norm_eps=1e-5, rope_parameters=rope, tie_word_embeddings=tie,
        pad_token_id=0, bos_token_id=1, eos_token_id=2,
    )


def save_tiny_hf(
    folder: Path, config: LlamaConfig, seed: int = 0, max_shard_size: str | None = None
) -> LlamaForCausalLM:
    """Random weights (larger than HF's init so layers matter), saved as safetensors."""
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).float().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            else:
                p.normal_(0.0, 0.08)
    kwargs = {"max_shard_size": max_shard_size} if max_shard_size else {}
    model.save_pretrained(folder, **kwargs)
    return model


def padded_batch(rng: np.random.Generator, vocab: int, lengths: list[int], total: int, left: bool):
    """Random ids (never the pad id 0) padded to `total` on the left or the right."""
    ids = np.zeros((len(lengths), total), np.int32)
    mask = np.zeros((len(lengths), total), np.int32)
    for row, n in enumerate(lengths):
        tokens = rng.integers(3, vocab, size=n)
        sl = slice(total - n, total) if left else slice(0, n)
        ids[row, sl] = tokens
        mask[row, sl] = 1
    return ids, mask


def hf_logits(model: LlamaForCausalLM, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """HF logits with position ids counting real tokens only (our convention, and HF generate's)."""
    positions = np.maximum(np.cumsum(mask, axis=-1) - 1, 0)
    with torch.no_grad():
        out = model(input_ids=torch.from_numpy(ids).long(), attention_mask=torch.from_numpy(mask).long(),
                    position_ids=torch.from_numpy(positions).long())
    return out.logits.float().numpy()
