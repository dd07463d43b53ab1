"""`r2r check-parity --model DIR [--checkpoint CKPT]`: transformers against the JAX model.

Without `--checkpoint`: a plain HF Llama folder imported into the JAX model, JAX float32 and transformers
float32 each against transformers float64, on fixed English texts and random ids padded both ways; passes
when JAX's error is at most FACTOR x transformers' own float32 error + FLOOR on every input kind (see
`real_parity`, which holds the rule and the reasons for it). With `--checkpoint`: a folder written by
`r2r export` against the trained JAX student on the project's own scoring prompts (see `export_parity`);
prints `max_abs_score_diff=`, `max_abs_logit_diff=` and `same_ranking=`. Exits 1 above the tolerance, 2 on
unusable input. Needs torch + transformers (and peft for adapters): the `dev` extra."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

from r2r_jax.cli_types import add_renamed, non_negative_int, positive_float, positive_int
from r2r_jax.convert.real_parity import FACTOR, FLOOR, QUANTILE, TEXTS

TOL_FLOAT32 = 1e-4  # absolute
# bfloat16 exports: relative to the student's largest |score| / |logit|; measured ~1-2.5% (docs/export.md)
TOL_BF16_RELATIVE = 5e-2
EXAMPLE = "r2r check-parity --model export/seq_cls --checkpoint runs/r2r"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_renamed(parser, "--model", "--hf", required=True, metavar="DIR",
                help="Hugging Face Llama folder; with --checkpoint, a folder written by `r2r export`")
    parser.add_argument("--tol", type=positive_float, default=None,
                        help=f"max allowed |difference|. Without --checkpoint: replaces the default rule "
                             f"(p{QUANTILE} of JAX f32's |logit - float64 logit| <= {FACTOR:g} x transformers f32's "
                             f"+ {FLOOR:g}, per input kind) by max |JAX f32 logit - float64 logit| <= TOL. With "
                             f"--checkpoint: default {TOL_FLOAT32:g}; for bfloat16 exports {TOL_BF16_RELATIVE:g} of "
                             "the student's largest |score| and |logit|")
    parser.add_argument("--checkpoint", default=None, metavar="RUN",
                        help="training checkpoint the --model folder was exported from")
    parser.add_argument("--base-model", default=None, metavar="DIR",
                        help="with --checkpoint: HF base folder, if it moved")
    parser.add_argument("--prompts", default=None, metavar="FILE",
                        help="with --checkpoint: candidates or teacher JSONL (default: the run's dev candidates, "
                             "else its training records)")
    add_renamed(parser, "--max-queries", "--queries", type=positive_int, default=4, metavar="N",
                help="with --checkpoint: queries to score")
    add_renamed(parser, "--dtype", "--hf-dtype", default="float32", choices=("float32", "bfloat16"),
                help="with --checkpoint: dtype transformers computes in")
    parser.add_argument("--texts", type=non_negative_int, default=len(TEXTS),
                        help=f"without --checkpoint: how many of the {len(TEXTS)} built-in English texts to compare "
                             "(0: random ids only; folders without a tokenizer get random ids only)")
    parser.add_argument("--batches", type=positive_int, default=3,
                        help="without --checkpoint: random-id batches to compare")
    parser.add_argument("--seq-len", type=positive_int, default=24, help="length of the random-id batches")
    parser.add_argument("--batch-size", type=positive_int, default=3, help="rows of the random-id batches")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="seed of the random ids")


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
    from r2r_jax.data.records import library_error
    from r2r_jax.data.templates import load_tokenizer, special_ids
    from r2r_jax.parallel.mesh import make_mesh
    from r2r_jax.trained.restore import config_from_meta, load_trained

    data = config_from_meta(read_meta(args.checkpoint)[0]).data
    source = args.prompts or data.dev_candidates or data.train_path
    if not source or not Path(source).is_file():
        print(f"r2r check-parity: error: no prompts file ({source or 'none configured'}); pass --prompts FILE",
              file=sys.stderr)
        return 2
    queries = ep.load_queries(source)[: args.max_queries]  # a bad file is refused before the models load
    try:  # a folder that is not a whole export is the input's fault: exit 2, naming it
        fmt = ep.folder_format(args.model)
        tokenizer = load_tokenizer(args.model)
        pad = special_ids(tokenizer).pad
        export = ep.load_export(args.model, fmt, pad, args.dtype)
    except Exception as e:  # noqa: BLE001 - transformers and safetensors raise their own types
        raise library_error(e, f"--model {args.model}") from None
    prompts = ep.scoring_prompts(tokenizer, queries, data.prompt_template, data.max_prompt_len)
    prepared, _ = load_trained(args.checkpoint, make_mesh(MeshConfig(data=1, fsdp=-1, tensor=1)), args.base_model)
    report = ep.compare(export, fmt, prompts, pad, ep.StudentRef(prepared))
    print(f"max_abs_score_diff={report.max_abs_score_diff:.3e}")
    print(f"max_abs_logit_diff={report.max_abs_logit_diff:.3e}")
    rel_score, rel_logit = report.relative()
    print(f"relative_score_diff={rel_score:.3e}")
    print(f"relative_logit_diff={rel_logit:.3e}")
    print(f"same_ranking={report.same_order}/{report.queries}")
    if args.tol is None and "bfloat16" in (ep.folder_dtype(args.model), args.dtype):
        return _verdict(max(rel_score, rel_logit), TOL_BF16_RELATIVE, "relative ")
    tol = TOL_FLOAT32 if args.tol is None else args.tol
    return _verdict(max(report.max_abs_score_diff, report.max_abs_logit_diff), tol)


# check-parity runs the student's reference through transformers on torch (peft for adapter exports): the
# `parity` extra, kept out of the core install
PARITY_PACKAGES = ("torch", "peft")


def run(args: argparse.Namespace) -> int:
    missing = [name for name in PARITY_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        print(f"r2r check-parity: error: needs {' and '.join(missing)}, the reference it compares against; "
              "install them with: pip install 'r2r-jax[parity]'", file=sys.stderr)
        return 1
    if args.checkpoint:
        try:
            return run_checkpoint(args)
        except (ValueError, FileNotFoundError) as e:  # bad paths, a mismatched base, unreadable records
            print(f"r2r check-parity: error: {e}", file=sys.stderr)
            return 2
    from r2r_jax.convert.real_parity import check_folder

    try:
        return check_folder(args.model, args.tol, args.texts, args.batches, args.seq_len, args.batch_size, args.seed,
                            write=print)
    except ValueError as e:  # ConversionError (no config.json, unreadable weights), a tokenizer beyond vocab
        print(f"r2r check-parity: error: {e}", file=sys.stderr)
        return 2
