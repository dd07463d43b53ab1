"""Rerank scoring throughput: the JAX student against the seq-cls model in transformers, same candidates, same run.

    python -m benchmarks.rerank [--presets small,medium] [--queries N] [--max-len 256] [--batch-size 32]
    python -m benchmarks.rerank --quick            # smoke run: tiny preset, one query, 1 repetition
    python -m benchmarks.rerank --model runs/recipe/export_seq_cls --queries 2   # a real seq-cls export

Candidates: TREC DL19 BM25 top-100 (../shared/data/dl19/bm25_top100.json), the first N queries, prompts from
the project's default template with the real Llama-3.1 tokenizer, truncated to --max-len tokens (passages are
cut, never the template), tokenized once before timing. One random `LlamaForSequenceClassification` (pad id
128004, as the seq-cls export writes it) is saved and loaded by the rerank job's own loader
(`r2r_jax.trained.loading.load_from_hf`), so both stacks hold the same weights; their scores are compared.

JAX (the CPU settings: attention `loop`, unrolled layers, as `r2r rerank --attention loop --unroll-layers`;
`--attention xla` for the reference): `make_score_step` + `score_prompts`, the rerank job's path (final layer
at the scored position only; length-sorted batches, each padded to its longest prompt rounded up to a
multiple of 16). transformers: length-sorted batches of the same size, each left-padded
to its own longest prompt (what a transformers user would write), `torch.inference_mode`, SDPA. Timed runs
alternate after a warm-up of each (JAX compiles its shapes there).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from r2r_jax.config import DataConfig

from .common import (
    DL19,
    LLAMA3_VOCAB,
    LLAMA_TOKENIZER,
    add_run_options,
    alternate,
    median,
    preset,
    start_timed_run,
)
from .common import write_json as emit

DEFAULT_QUERIES = {"tiny": 1, "small": 2, "medium": 1}


def scoring_preset(name: str):
    """The preset's model with Llama-3's vocabulary (real tokenizer ids), LoRA merged away (a seq-cls export)."""
    p = preset(name)
    return dataclasses.replace(p.model, vocab_size=LLAMA3_VOCAB)


def query_sizes(queries: int, candidates: Path = DL19) -> list[int]:
    """Candidates of each of the first `queries` DL19 queries (the row counts `load_prompts` stacks)."""
    from r2r_jax.data.candidates import read_candidates

    return [len(qc.candidates) for qc in read_candidates(candidates)[:queries]]


def shared_prefix_tokens(ids: np.ndarray, mask: np.ndarray, sizes: list[int], batch_size: int) -> int:
    """Token positions the shared-prefix path computes: each group's padded prefixes plus its suffix batches."""
    from r2r_jax.inference.batches import batch_plan
    from r2r_jax.inference.prefix import query_groups

    from .jax_stack import per_query

    total = 0
    for group in query_groups(per_query(ids, mask, sizes)):
        lengths = np.asarray([len(t) for t in group.suffixes])
        total += len(group.prefixes) * group.width(16)
        total += sum(len(r) * blen for r, blen in batch_plan(lengths, batch_size, int(lengths.max())))
    return total


def load_prompts(queries: int, max_len: int, tokenizer_path: Path = LLAMA_TOKENIZER,
                 candidates: Path = DL19, template: str = DataConfig.prompt_template,
                 ) -> tuple[np.ndarray, np.ndarray, int]:
    """(ids [N, max_len], mask, pad id): left-padded scoring prompts of the first `queries` DL19 queries."""
    from r2r_jax.data.candidates import read_candidates
    from r2r_jax.data.features import encode_prompts
    from r2r_jax.data.templates import load_tokenizer, special_ids

    tok = load_tokenizer(tokenizer_path)
    ids, masks = [], []
    for qc in read_candidates(candidates)[:queries]:
        i, m = encode_prompts(tok, qc.query, [c.text for c in qc.candidates], template, max_len)
        ids.append(i)
        masks.append(m)
    return np.concatenate(ids), np.concatenate(masks), special_ids(tok).pad


def padded_tokens(lengths: np.ndarray, max_len: int, batch_size: int) -> int:
    """Token positions the JAX path computes on one device (lengths rounded up to a multiple of 16)."""
    from r2r_jax.inference.batches import batch_plan

    return sum(len(rows) * blen for rows, blen in batch_plan(lengths, batch_size, max_len))


def sorted_tokens(lengths: np.ndarray, batch_size: int) -> int:
    """Token positions of length-sorted batches padded to their own longest row (the transformers side)."""
    s = np.sort(lengths)
    return int(sum(len(s[i: i + batch_size]) * s[i: i + batch_size].max() for i in range(0, len(s), batch_size)))


def bench_preset(name: str, queries: int, max_len: int, batch_size: int, reps: int, gate=None,
                 attention: str = "loop", share_prefix: bool = True, model_folder: str = "") -> dict:
    """A random seq-cls model of preset `name` (Llama-3.1 tokenizer, the default template), or with
    `model_folder` a seq-cls export (its own tokenizer, template and prompt length unless --max-len is given)."""
    import jax

    from r2r_jax.trained.loading import load_from_hf

    from . import jax_stack, torch_stack

    def load(folder: str, tokenizer: str | None):
        return load_from_hf(folder, jax_stack.one_device_mesh(), dtype="float32", attention=attention,
                            tokenizer=tokenizer, scan_layers=False)

    if model_folder:
        student = load(model_folder, None)
        cfg, max_len = student.model.cfg, max_len or student.prompts.max_prompt_len
        ids, mask, pad = load_prompts(queries, max_len, Path(model_folder), template=student.prompts.prompt_template)
        hf = torch_stack.load_seq_cls(model_folder)
    else:
        cfg, max_len = scoring_preset(name), max_len or 256
        ids, mask, pad = load_prompts(queries, max_len)
        hf = torch_stack.random_seq_cls(cfg, pad_token_id=pad, seed=0)
        with tempfile.TemporaryDirectory() as tmp:
            hf.save_pretrained(tmp)
            student = load(tmp, str(LLAMA_TOKENIZER))
    jax.block_until_ready(student.variables)
    lengths = mask.sum(-1)
    sizes = query_sizes(queries) if share_prefix else None
    jax_scores = jax_stack.scorer(student.model, student.variables, batch_size, query_sizes=sizes)
    torch_scores = torch_stack.TorchScorer(hf)
    runners: dict[str, Callable[[], object]] = {"jax": lambda: jax_scores(ids, mask),
                                                "torch": lambda: torch_scores(ids, mask, batch_size)}
    check = {label: fn() for label, fn in runners.items()}  # warm-up: compiles every JAX shape
    times = alternate(runners, reps, warmup=0, before_round=gate)
    docs = len(ids)
    out = {"preset": name, "attention": attention, "share_prefix": share_prefix, "model": {k: getattr(cfg, k) for k in (
        "num_hidden_layers", "hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads",
        "vocab_size")}, "queries": queries, "docs": docs, "max_len": max_len, "batch_size": batch_size,
        "prompt_tokens": {"mean": float(lengths.mean()), "median": float(np.median(lengths)),
                          "max": int(lengths.max()), "total": int(lengths.sum())},
        "max_abs_score_diff": float(np.max(np.abs(check["jax"] - check["torch"]))),
        "score_scale": float(np.std(check["torch"])), "load_average_1m": times.pop("load"), "seconds": times}
    computed = {"jax": shared_prefix_tokens(ids, mask, sizes, batch_size) if sizes else
                padded_tokens(lengths, max_len, batch_size), "torch": sorted_tokens(lengths, batch_size)}
    for label in runners:
        sec = median(times[label])
        out[label] = {"s": sec, "docs_per_s": docs / sec, "computed_tokens": computed[label],
                      "computed_tokens_per_s": computed[label] / sec}
    out["speedup"] = out["jax"]["docs_per_s"] / out["torch"]["docs_per_s"]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default="small,medium")
    ap.add_argument("--queries", type=int, default=0, help=f"DL19 queries (100 candidates each); 0: {DEFAULT_QUERIES}")
    ap.add_argument("--model", default="", help="time a seq-cls export (`r2r export --format seq-cls`) instead of "
                    "the presets: its weights, tokenizer and prompt template")
    ap.add_argument("--max-len", type=int, default=0,
                    help="prompt truncation length in tokens (default: 256, or the export's own)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--attention", default="loop", choices=("loop", "xla"),
                    help="the JAX student's attention (loop: the CPU setting, as `r2r rerank --attention loop`)")
    ap.add_argument("--no-share-prefix", dest="share_prefix", action="store_false",
                    help="JAX scores every prompt whole (default: each query's shared prefix once, as the job)")
    ap.add_argument("--reps", type=int, default=3)
    add_run_options(ap)
    ap.add_argument("--quick", action="store_true", help="smoke run: tiny preset, one query, 1 repetition")
    args = ap.parse_args(argv)
    if args.quick:
        args.presets, args.queries, args.reps, args.max_len = "tiny", 1, 1, 128
    gate, info = start_timed_run(args, "jax", "jaxlib", "flax", "torch", "transformers")
    results = []
    for name in [Path(args.model).name] if args.model else args.presets.split(","):
        name = name.strip()
        r = bench_preset(name, args.queries or DEFAULT_QUERIES.get(name, 1), args.max_len, args.batch_size,
                         args.reps, gate, args.attention, args.share_prefix, args.model)
        results.append(r)
        print(f"# {name}: jax {r['jax']['docs_per_s']:.1f} docs/s, torch {r['torch']['docs_per_s']:.1f} docs/s, "
              f"ratio {r['speedup']:.2f}; max |Δscore| "
              f"{r['max_abs_score_diff']:.2e}; load {r['load_average_1m']}", file=sys.stderr, flush=True)
        gc.collect()
    emit(args.json, {"benchmark": "rerank", "machine": info, "data": str(DL19), "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
