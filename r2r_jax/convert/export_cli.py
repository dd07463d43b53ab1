"""`r2r export --checkpoint CKPT --format seq-cls|causal-lm|peft --output-dir DIR`: a trained student as a
Hugging Face folder (see docs/export.md)."""

from __future__ import annotations

import argparse
import sys

from r2r_jax.cli_types import add_renamed
from r2r_jax.convert.export_formats import DTYPES, FORMATS

EXAMPLE = "r2r export --checkpoint runs/r2r --format seq-cls --output-dir export/seq_cls --dtype float32"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, metavar="RUN",
                        help="run folder, its checkpoints/ folder, or checkpoints/<step> (default: latest step)")
    parser.add_argument("--format", required=True, choices=FORMATS,
                        help="seq-cls: merged ranker; causal-lm: merged LM for explanations/vLLM; peft: adapter")
    add_renamed(parser, "--output-dir", "--output", required=True, metavar="DIR",
                help="folder to create (written atomically)")
    parser.add_argument("--dtype", default="bfloat16", choices=DTYPES, help="dtype of the written weights")
    parser.add_argument("--max-shard-size", default="5GB", help="largest safetensors shard, e.g. 5GB, 500MB")
    parser.add_argument("--base-model", default=None, metavar="DIR",
                        help="HF base folder, if it moved since training (its fingerprint must match)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing output folder that an earlier export wrote (never another folder)")


def run(args: argparse.Namespace) -> int:
    import jax

    from r2r_jax.convert.hf_export import export_checkpoint
    from r2r_jax.convert.safetensors_writer import parse_size

    try:
        try:
            parse_size(args.max_shard_size)
        except ValueError as e:
            raise ValueError(f"--max-shard-size: {e}") from None
        out = export_checkpoint(args.checkpoint, args.output_dir, args.format, args.dtype, args.max_shard_size,
                                args.base_model, args.overwrite, progress=True)
    except (ValueError, FileNotFoundError) as e:  # bad paths, refused outputs, mismatched base, refused formats
        print(f"r2r export: error: {e}", file=sys.stderr)
        return 2
    if jax.process_index() == 0:
        print(f"exported {args.format} ({args.dtype}) to {out}")
    return 0
