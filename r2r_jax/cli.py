"""The `r2r` command: one entry point, one module per subcommand.

Subcommand modules are imported only when run, so `r2r --help` is fast and a command's heavy
dependencies (jax, torch, Java) load only for the command that needs them. Each module defines
`add_arguments(parser)`, `run(args) -> int` and `EXAMPLE` (one command line, shown at the end of its
`--help`), or `main(argv) -> int` when it parses its own arguments (the dataclass-config commands such as
`train`). A command module imports its heavy dependencies inside `run`, so that `r2r <command> --help`
answers at once; flags follow one convention across commands (docs/cli.md).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
from pathlib import Path

from r2r_jax.atomic import check_output_files  # the standard library only: --help stays fast
from r2r_jax.cli_types import HelpFormatter, Terminated

# name -> (module, one-line help). Modules with `main(argv)` parse their own arguments.
COMMANDS: dict[str, tuple[str, str]] = {
    "base": ("r2r_jax.convert.base_cli", "a Llama-architecture GGUF (default SmolLM2-135M) as an HF base folder"),
    "train": ("r2r_jax.train.cli", "train a student from teacher records (dataclass config + overrides)"),
    "demo": ("r2r_jax.demo", "the embedded demo: train a tiny student on the shipped data set, rerank, explain"),
    "data": ("r2r_jax.retrieval.data_cli", "the named data sets behind --dataset: list, add, fetch, path"),
    "import-teacher": ("r2r_jax.data.import_cli", "convert R2R-release or rank_llm records to teacher.jsonl"),
    "retrieve": ("r2r_jax.retrieval.cli", "BM25 top-k candidates (bm25s or pyserini) as rank_llm JSONL"),
    "mine-negatives": ("r2r_jax.retrieval.negatives_cli", "add BM25-mined hard negatives to teacher records"),
    "teach": ("r2r_jax.teacher.cli", "ask an OpenAI-compatible teacher for rankings and reasons"),
    "rerank": ("r2r_jax.rerank.cli", "rerank candidates with a student; TREC run + explanations"),
    "tune-fusion": ("r2r_jax.rerank.tune_cli", "choose the rerank default (BM25 fusion, depth) on held-out data"),
    "evaluate": ("r2r_jax.eval.cli", "nDCG/MRR/recall of a TREC run against qrels; paired comparison"),
    "evaluate-reasons": ("r2r_jax.rerank.reasons_cli", "BLEU/ROUGE-L of student reasons vs held-out teacher reasons"),
    "export": ("r2r_jax.convert.export_cli", "export a checkpoint to Hugging Face seq-cls, causal-lm or PEFT"),
    "check-parity": ("r2r_jax.convert.parity_cli", "compare a Hugging Face folder with the JAX model"),
    "compile": ("r2r_jax.compile.cli", "ahead-of-time compile the train step for a TPU topology"),
}


# flags every command takes (removed before the command parses its own): the level of the project's log lines
LOG_LEVELS = {"--quiet": logging.WARNING, "--verbose": logging.DEBUG}


class _CommandLog(logging.Handler):
    """Library modules log (`logging.getLogger(__name__)`); a command shows their records on stderr as its own
    lines: notices as they are, warnings as `r2r <command>: ...`, errors as `r2r <command>: error: ...`.
    sys.stderr is looked up per line, so a caller's redirection of it holds."""

    def __init__(self, command: str):
        super().__init__()
        self.command = command

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            if record.levelno >= logging.ERROR:
                text = f"r2r {self.command}: error: {text}"
            elif record.levelno >= logging.WARNING:
                text = f"r2r {self.command}: {text}"
            sys.stderr.write(text + "\n")
            sys.stderr.flush()
        except Exception:
            self.handleError(record)


def configure_logging(command: str, level: int = logging.INFO) -> None:
    """Route the `r2r_jax` loggers to this command's stderr at `level` (INFO; --quiet WARNING, --verbose
    DEBUG), replacing what an earlier command in this process set up."""
    logger = logging.getLogger("r2r_jax")
    for handler in [h for h in logger.handlers if isinstance(h, _CommandLog)]:
        logger.removeHandler(handler)
    logger.addHandler(_CommandLog(command))
    logger.setLevel(level)


class _Parser(argparse.ArgumentParser):
    """argparse with the project's one-line error: `r2r <command>: error: argument --flag: ...` (exit 2)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (`{self.prog} --help` lists the options)\n")


def _load(name: str):
    module_name, _ = COMMANDS[name]
    return importlib.import_module(module_name)


def example_epilog(example: str) -> str:
    """The example every command's help ends with (its module's EXAMPLE: one command line)."""
    return f"example:\n  {example}"


def build_parser(name: str) -> argparse.ArgumentParser:
    """The parser of an `add_arguments` command as `r2r <name>` runs it: every option with its default, and its
    module's EXAMPLE as the epilog. Building it imports only the command's module, which keeps its heavy imports
    (jax, torch, ...) inside `run`, so `--help` answers at once (tests/test_cli_convention.py checks both)."""
    module = _load(name)
    parser = _Parser(prog=f"r2r {name}", description=COMMANDS[name][1], formatter_class=HelpFormatter,
                     epilog=example_epilog(module.EXAMPLE))
    parser.add_argument("--debug", action="store_true", help="show tracebacks (also R2R_DEBUG=1)")
    parser.add_argument("--quiet", action="store_true", help="log warnings and errors only")
    parser.add_argument("--verbose", action="store_true", help="log debugging detail too")
    module.add_arguments(parser)
    return parser


# failures that are the user's input, not the program: exit 2 (usage/input) instead of 1 (runtime)
_INPUT_ERRORS: tuple[type[BaseException], ...] = (FileNotFoundError, IsADirectoryError, NotADirectoryError,
                                                  PermissionError, UnicodeDecodeError)


def _input_errors() -> tuple[type[BaseException], ...]:
    """The project's own bad-input errors, imported only once a command failed (they pull in its modules)."""
    from r2r_jax.atomic import OutputRefused
    from r2r_jax.config_io import ConfigError
    from r2r_jax.data.records import RecordError

    errors = (*_INPUT_ERRORS, OutputRefused, ConfigError, RecordError)
    if "r2r_jax.checkpoint" in sys.modules:  # loaded only by commands that read checkpoints (it imports jax)
        errors += (sys.modules["r2r_jax.checkpoint"].CheckpointError,)
    if "r2r_jax.model.hf_mapping" in sys.modules:  # a base or model folder that cannot be read (--base-model ...)
        errors += (sys.modules["r2r_jax.model.hf_mapping"].ConversionError,)
    return errors


def redeliver_lost_interrupts() -> None:
    """Ctrl-C raises KeyboardInterrupt wherever the main thread is. When that is a callback Python cannot raise
    from (a garbage-collector callback such as jax's, a `__del__`), Python prints it as "Exception ignored"
    with a traceback and the job carries on as if never interrupted. This hook takes such a lost interrupt
    quietly and raises it again in the main thread a moment later, until it lands where the command unwinds."""
    import _thread
    import threading
    import time

    default = sys.unraisablehook

    def redeliver(returned: threading.Event, signum: int) -> None:
        returned.wait()  # not while the hook still runs (on a busy host the thread can start slowly): it would
        time.sleep(0.05)  # land in the hook, and be lost there
        _thread.interrupt_main(signum)

    def hook(unraisable) -> None:
        if unraisable.exc_type is not None and issubclass(unraisable.exc_type, KeyboardInterrupt):
            signum = signal.SIGTERM if issubclass(unraisable.exc_type, Terminated) else signal.SIGINT
            returned = threading.Event()
            threading.Thread(target=redeliver, args=(returned, signum), daemon=True).start()
            returned.set()
            return
        default(unraisable)

    sys.unraisablehook = hook


def stop_on_sigterm() -> None:
    """SIGTERM raises `Terminated` in the main thread, so a terminated command unwinds as an interrupted one
    does (its temporary files and staged folders removed), says so in one line and exits 143; without this,
    Python dies of the signal on the spot and leaves them. Commands that stop more gently (`r2r train` saves a
    checkpoint first) put their own handler in place while they can."""
    def terminate(signum, frame):
        raise Terminated

    signal.signal(signal.SIGTERM, terminate)


def _keep_transformers_quiet() -> None:
    """The default install has no torch: r2r uses transformers only for tokenizers and configs there, and the
    advice transformers prints on import (its models need torch) would be noise in every command's output."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")


def _keep_tpu_runtime_quiet(name: str) -> None:
    """On a machine without TPU chips, initialise jax for CPU/GPU only: with libtpu installed (the dev and tpu
    extras) jax would otherwise start the TPU runtime, which prints alarming start-up errors and finds nothing.
    `r2r compile` sets its own platform; an explicit JAX_PLATFORMS always wins."""
    if name == "compile" or "JAX_PLATFORMS" in os.environ:
        return
    dev = Path("/dev")
    if any(dev.glob("accel*")) or (dev / "vfio").is_dir():  # TPU VMs expose their chips here
        return
    if not any(dev.glob("nvidia[0-9]*")):
        os.environ["JAX_PLATFORMS"] = "cpu"


def main(argv: list[str] | None = None) -> int:
    """Run one command. Whatever it raises ends as one line `r2r <command>: error: ...` (exit 2 for bad input,
    1 otherwise; Ctrl-C 130, SIGTERM 143); `--debug` or R2R_DEBUG=1 shows the traceback instead."""
    as_program = argv is None  # the `r2r` executable, not a caller in this process
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("R2R_DEBUG", "") not in ("", "0")
    level = next((LOG_LEVELS[a] for a in reversed(argv) if a in LOG_LEVELS), logging.INFO)
    argv = [a for a in argv if a != "--debug" and a not in LOG_LEVELS]
    width = max(len(n) for n in COMMANDS)
    listing = "\n".join(f"  {n:<{width}}  {h}" for n, (_, h) in COMMANDS.items())
    usage = (f"r2r <command> [options]\n\ncommands:\n{listing}\n\n"
             "`r2r <command> --help` describes one; `r2r --version` prints the version. Every command takes\n"
             "--quiet (warnings and errors only), --verbose (debugging detail) and --debug (tracebacks).")
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: {usage}")
        return 0
    if argv[0] in ("-V", "--version"):
        from r2r_jax import __version__

        print(f"r2r-jax {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"r2r: unknown command {name!r}\nusage: {usage}", file=sys.stderr)
        return 2
    _keep_tpu_runtime_quiet(name)
    _keep_transformers_quiet()
    configure_logging(name, level)
    if as_program:
        redeliver_lost_interrupts()
        stop_on_sigterm()
        # the command's lines are its own: a library that sets up the root logger (absl does) would print each
        # one a second time as `WARNING:r2r_jax...`; callers in this process (tests) keep the propagation
        logging.getLogger("r2r_jax").propagate = False
    code = _run(name, rest, debug, as_program)
    if as_program and _restore_failed():  # leave before the failed restore's abandoned reads print anything
        _leave(code)
    return code


def _restore_failed() -> bool:
    checkpoint = sys.modules.get("r2r_jax.checkpoint")  # loaded only by commands that read checkpoints
    return checkpoint is not None and checkpoint.restore_failed()


def _leave(code: int) -> None:
    """Exit now, skipping interpreter teardown (every output is already written or cleaned up)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _run(name: str, rest: list[str], debug: bool, as_program: bool) -> int:
    """Load, parse and run one command; its failures become one line and an exit code."""
    try:
        module = _load(name)
        if hasattr(module, "main"):
            return int(module.main(rest) or 0)
        parser = build_parser(name)
        try:
            args = parser.parse_args(rest)
        except SystemExit as e:  # --help (0) or a usage error already printed on one line (2): a return code
            return int(e.code or 0)
        derived = module.derived_outputs(args) if hasattr(module, "derived_outputs") else {}
        check_output_files(args, *getattr(module, "FILE_ARGUMENTS", ((), ())), derived=derived)
        return int(module.run(args) or 0)
    except KeyboardInterrupt as e:
        if debug:
            raise
        code, what = (143, "terminated") if isinstance(e, Terminated) else (130, "interrupted")
        print(f"\nr2r {name}: {what}", file=sys.stderr)
        if as_program:  # leave now: XLA's compiler threads can crash interpreter teardown (SIGSEGV) when a
            _leave(code)  # compile was cut short; every output was already cleaned up while unwinding
        return code
    except Exception as e:
        if debug:
            raise
        from r2r_jax.data.records import one_line  # only once a command failed, as _input_errors' imports

        bad_input = isinstance(e, _input_errors())
        kind = "" if bad_input else f"{type(e).__name__}: "
        print(f"r2r {name}: error: {kind}{one_line(e)} (--debug shows the traceback)", file=sys.stderr)
        return 2 if bad_input else 1


if __name__ == "__main__":
    sys.exit(main())
