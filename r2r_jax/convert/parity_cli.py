"""`r2r check-parity --hf DIR [--checkpoint CKPT]`: transformers against the JAX model.

Without `--checkpoint`: a plain HF Llama folder, imported into the JAX model, on random padded batches;
prints `max_abs_logit_diff=`. With `--checkpoint`: a folder written by `r2r export` against the trained
JAX student on the project's own scoring prompts (see `export_parity`); prints `max_abs_score_diff=`,
`max_abs_logit_diff=` and `same_ranking=`. Exits 1 above the tolerance. Needs torch + transformers (and
peft for adapters): the `dev` extra."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

TOL_FLOAT32 = 1e-4  # absolute
# bfloat16 exports: relative to the student's largest |score| / |logit|; measured ~1-2.5% (docs/export.md)
TOL_BF16_RELATIVE = 5e-2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--hf", required=True,
                        help="Hugging Face Llama folder; with --checkpoint, a folder written by `r2r export`")
    parser.add_argument("--tol", type=float, default=None,
                        help=f"max allowed |difference| (default {TOL_FLOAT32:g}; for bfloat16 exports "
                             f"{TOL_BF16_RELATIVE:g} of the student's largest |score| and |logit|)")
    parser.add_argument("--checkpoint", default=None, help="training checkpoint the --hf folder was exported from")
    parser.add_argument("--base-model", default=None, help="with --checkpoint: HF base folder, if it moved")
    parser.add_argument("--prompts", default=None,
                        help="with --checkpoint: candidates or teacher JSONL (default: the run's dev candidates, "
                             "else its training records)")
    parser.add_argument("--queries", type=int, default=4, help="with --checkpoint: queries to score")
    parser.add_argument("--hf-dtype", default="float32", choices=("float32", "bfloat16"),
                        help="with --checkpoint: dtype transformers computes in")
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


def _verdict(worst: float, tol: float, kind: str = "") -> int:
    if worst > tol:
        print(f"FAIL: above {kind}tolerance {tol:g}")
        return 1
    print(f"OK: within {kind}tolerance {tol:g}")
    return 0


def run_checkpoint(args: argparse.Namespace) -> int:
    from r2r_jax.checkpoint import read_meta
    from r2r_jax.config import MeshConfig
    from r2r_jax.convert import export_parity as ep
    from r2r_jax.data.templates import load_tokenizer, special_ids
    from r2r_jax.parallel.mesh import make_mesh
    from r2r_jax.train.setup import config_from_meta, load_trained

    fmt = ep.folder_format(args.hf)
    data = config_from_meta(read_meta(args.checkpoint)[0]).data
    source = args.prompts or data.dev_candidates or data.train_path
    if not source or not Path(source).is_file():
        print(f"r2r check-parity: error: no prompts file ({source or 'none configured'}); pass --prompts FILE",
              file=sys.stderr)
        return 2
    prepared, _ = load_trained(args.checkpoint, make_mesh(MeshConfig(data=1, fsdp=-1, tensor=1)), args.base_model)
    tokenizer = load_tokenizer(args.hf)
    pad = special_ids(tokenizer).pad
    prompts = ep.scoring_prompts(tokenizer, ep.load_queries(source)[: args.queries], data.prompt_template,
                                 data.max_prompt_len)
    report = ep.compare(ep.load_export(args.hf, fmt, pad, args.hf_dtype), fmt, prompts, pad, ep.StudentRef(prepared))
    print(f"max_abs_score_diff={report.max_abs_score_diff:.3e}")
    print(f"max_abs_logit_diff={report.max_abs_logit_diff:.3e}")
    rel_score, rel_logit = report.relative()
    print(f"relative_score_diff={rel_score:.3e}")
    print(f"relative_logit_diff={rel_logit:.3e}")
    print(f"same_ranking={report.same_order}/{report.queries}")
    if args.tol is None and "bfloat16" in (ep.folder_dtype(args.hf), args.hf_dtype):
        return _verdict(max(rel_score, rel_logit), TOL_BF16_RELATIVE, "relative ")
    tol = TOL_FLOAT32 if args.tol is None else args.tol
    return _verdict(max(report.max_abs_score_diff, report.max_abs_logit_diff), tol)


def run(args: argparse.Namespace) -> int:
    if args.checkpoint:
        try:
            return run_checkpoint(args)
        except (ValueError, FileNotFoundError) as e:  # bad paths, a mismatched base, unreadable records
            print(f"r2r check-parity: error: {e}", file=sys.stderr)
            return 2
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
    return _verdict(worst, TOL_FLOAT32 if args.tol is None else args.tol)
