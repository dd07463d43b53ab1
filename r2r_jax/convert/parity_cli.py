"""`r2r check-parity --hf DIR`: the JAX model and transformers on the same weights, same batches.

Prints `max_abs_logit_diff=<value>` and exits 1 above the tolerance. Needs torch + transformers
(the `dev` extra)."""

from __future__ import annotations

import argparse

import numpy as np


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--hf", required=True, help="Hugging Face Llama folder (config.json + safetensors)")
    parser.add_argument("--tol", type=float, default=1e-4, help="max allowed |logit difference| (float32)")
    parser.add_argument("--batches", type=int, default=3, help="random batches to compare")
    parser.add_argument("--seq-len", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)


def random_padded_batch(rng: np.random.Generator, vocab: int, batch: int, length: int, left: bool):
    lengths = rng.integers(1, length + 1, size=batch)
    lengths[0] = length
    ids = np.zeros((batch, length), np.int32)
    mask = np.zeros((batch, length), np.int32)
    for row, n in enumerate(lengths):
        sl = slice(length - n, length) if left else slice(0, n)
        ids[row, sl] = rng.integers(0, vocab, size=n)
        mask[row, sl] = 1
    return ids, mask


def hf_causal_logits(hf_model, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    import torch

    positions = np.maximum(np.cumsum(mask, axis=-1) - 1, 0)
    with torch.no_grad():
        out = hf_model(input_ids=torch.from_numpy(ids).long(), attention_mask=torch.from_numpy(mask).long(),
                       position_ids=torch.from_numpy(positions).long())
    return out.logits.float().numpy()


def run(args: argparse.Namespace) -> int:
    import jax
    import torch
    from transformers import AutoModelForCausalLM

    from r2r_jax.convert.hf_import import import_hf_params, load_hf_model_config
    from r2r_jax.model.llama import LlamaForRanking

    cfg = load_hf_model_config(args.hf, dtype="float32", param_dtype="float32", remat_policy="none")
    params = import_hf_params(args.hf, cfg, with_score=False)
    model = LlamaForRanking(cfg)

    @jax.jit
    def logits(p, ids, mask):
        hidden, _ = model.apply({"params": p}, ids, mask)
        return model.apply({"params": p}, hidden, method=LlamaForRanking.lm_logits)

    hf_model = AutoModelForCausalLM.from_pretrained(args.hf, dtype=torch.float32).eval()
    rng = np.random.default_rng(args.seed)
    worst = 0.0
    for b in range(args.batches):
        ids, mask = random_padded_batch(rng, cfg.vocab_size, args.batch_size, args.seq_len, left=bool(b % 2))
        ours = np.asarray(logits(params, ids, mask))
        ref = hf_causal_logits(hf_model, ids, mask)
        worst = max(worst, float(np.max(np.abs(ours[mask == 1] - ref[mask == 1]))))
    print(f"max_abs_logit_diff={worst:.3e}")
    if worst > args.tol:
        print(f"FAIL: above tolerance {args.tol:g}")
        return 1
    print(f"OK: within tolerance {args.tol:g}")
    return 0
