"""The `r2r` command: one entry point, one module per subcommand.

Subcommand modules are imported only when run, so `r2r --help` is fast and a command's heavy
dependencies (jax, torch, Java) load only for the command that needs them. Each module defines
`add_arguments(parser)` and `run(args) -> int`, or `main(argv) -> int` when it parses its own
arguments (the dataclass-config commands such as `train`).
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help). Modules with `main(argv)` parse their own arguments.
COMMANDS: dict[str, tuple[str, str]] = {
    "base": ("r2r_jax.convert.base_cli", "a Llama-architecture GGUF (default SmolLM2-135M) as an HF base folder"),
    "train": ("r2r_jax.train.trainer", "train a student from teacher records (dataclass config + overrides)"),
    "demo": ("r2r_jax.demo", "the embedded demo: train a tiny student on the shipped data set, rerank, explain"),
    "import-teacher": ("r2r_jax.data.import_cli", "convert R2R-release or rank_llm records to teacher.jsonl"),
    "retrieve": ("r2r_jax.retrieval.cli", "BM25 top-k candidates (bm25s or pyserini) as rank_llm JSONL"),
    "teach": ("r2r_jax.teacher.cli", "ask an OpenAI-compatible teacher for rankings and reasons"),
    "rerank": ("r2r_jax.rerank.cli", "rerank candidates with a student; TREC run + explanations"),
    "evaluate": ("r2r_jax.eval.cli", "nDCG/MRR/recall of a TREC run against qrels; paired comparison"),
    "evaluate-reasons": ("r2r_jax.rerank.reasons_cli", "BLEU/ROUGE-L of student reasons vs held-out teacher reasons"),
    "export": ("r2r_jax.convert.export_cli", "export a checkpoint to Hugging Face seq-cls, causal-lm or PEFT"),
    "check-parity": ("r2r_jax.convert.parity_cli", "compare a Hugging Face folder with the JAX model"),
    "compile": ("r2r_jax.parallel.compile_cli", "ahead-of-time compile the train step for a TPU topology"),
}


def _load(name: str):
    module_name, _ = COMMANDS[name]
    return importlib.import_module(module_name)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    width = max(len(n) for n in COMMANDS)
    listing = "\n".join(f"  {n:<{width}}  {h}" for n, (_, h) in COMMANDS.items())
    usage = f"r2r <command> [options]\n\ncommands:\n{listing}\n\n`r2r <command> --help` describes one."
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: {usage}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"r2r: unknown command {name!r}\nusage: {usage}", file=sys.stderr)
        return 2
    module = _load(name)
    if hasattr(module, "main"):
        return int(module.main(rest) or 0)
    parser = argparse.ArgumentParser(prog=f"r2r {name}", description=COMMANDS[name][1])
    module.add_arguments(parser)
    return int(module.run(parser.parse_args(rest)) or 0)


if __name__ == "__main__":
    sys.exit(main())
