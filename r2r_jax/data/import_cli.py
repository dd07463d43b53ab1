"""`r2r import-teacher`: R2R-release or rank_llm JSONL -> teacher.jsonl, with a report of every problem."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from r2r_jax.atomic import check_output_files, write_json
from r2r_jax.cli_types import non_negative_int
from r2r_jax.data.datasets import KNOWN_SETS, DatasetError, dataset_file
from r2r_jax.data.importers import FORMATS, import_file
from r2r_jax.data.records import write_records

# (files written, files read): `r2r` refuses an output that is also an input before the command runs
FILE_ARGUMENTS = (("output", "report"), ("input",))
EXAMPLE = "r2r import-teacher --dataset r2r-release --output teacher.jsonl --report import_report.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=FORMATS,
                        help="r2r: the Reason-to-Rank authors' release; rank_llm: reranked rank_llm JSONL "
                             "(with --dataset: the set's own)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", metavar="FILE", help="input JSONL file")
    source.add_argument("--dataset", metavar="NAME",
                        help="a named set's teacher file in place of --input: r2r-release (r2r data list)")
    parser.add_argument("--output", required=True, metavar="FILE", help="teacher.jsonl to write (atomically)")
    parser.add_argument("--report", default=None, metavar="FILE",
                        help="also write a JSON report: the summary and every repaired or rejected row")
    parser.add_argument("--teacher-model", default=None, metavar="NAME",
                        help="teacher model name to record (default: gpt-4 for r2r, empty for rank_llm)")
    parser.add_argument("--strict", action="store_true",
                        help="fail (exit 1, write no output) if any row is rejected")
    parser.add_argument("--show", type=non_negative_int, default=20, metavar="N",
                        help="problems printed to stderr (all are in --report)")


def _write_json_atomic(path: Path, obj) -> None:
    write_json(path, obj)


def _resolve_dataset(args: argparse.Namespace) -> None:
    """--dataset: the set's teacher file (checked against its SHA-256) and the format the table records for it."""
    args.input = str(dataset_file(args.dataset, "teacher"))  # raises for a set without one, naming its files
    entry = next(f for f in KNOWN_SETS[args.dataset].files if f.role == "teacher")  # only known sets have one
    if args.format not in (None, entry.format):
        raise DatasetError(f"dataset {args.dataset} is in --format {entry.format}, not {args.format}")
    args.format = entry.format
    check_output_files(args, *FILE_ARGUMENTS)


def run(args: argparse.Namespace) -> int:
    if args.dataset:
        try:
            _resolve_dataset(args)
        except DatasetError as e:
            print(f"r2r import-teacher: error: {e}", file=sys.stderr)
            return 2
    if args.format is None:
        print("r2r import-teacher: error: argument --format is required with --input", file=sys.stderr)
        return 2
    source = Path(args.input)
    if not source.exists() or source.is_dir():  # a pipe (`--input <(zcat x.gz)`) is read like a file
        why = "is a directory, not a file" if source.is_dir() else "no such file"
        print(f"r2r import-teacher: error: --input {args.input}: {why}", file=sys.stderr)
        return 2
    records, report = import_file(args.input, args.format, args.teacher_model)
    if not records:  # nothing usable: the input is bad as a whole, one line says why
        first = f"; first: {report.problems[0]['message']}" if report.problems else ""
        print(f"r2r import-teacher: error: --input {args.input}: no usable rows ({report.rejected} rejected"
              f"{first}); {args.output} not written", file=sys.stderr)
        if args.report:
            _write_json_atomic(Path(args.report), {**report.to_dict(), "output": None})
        return 2
    for problem in report.problems[: max(args.show, 0)]:
        print(f"{problem['status']}: {problem['message']}", file=sys.stderr)
    if len(report.problems) > args.show:
        print(f"... {len(report.problems) - args.show} more problems (see --report)", file=sys.stderr)
    failed = bool(args.strict and report.rejected)
    if not failed:
        write_records(args.output, records)
    if args.report:
        _write_json_atomic(Path(args.report), {**report.to_dict(), "output": None if failed else args.output})
    print(report.summary() + ("" if failed else f" to {args.output}"))
    if failed:
        print(f"r2r import-teacher: error: --strict and {report.rejected} rows rejected; {args.output} not written",
              file=sys.stderr)
        return 1
    return 0
