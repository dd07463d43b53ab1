"""`r2r import-teacher`: R2R-release or rank_llm JSONL -> teacher.jsonl, with a report of every problem."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from r2r_jax.atomic import write_json
from r2r_jax.data.importers import FORMATS, import_file
from r2r_jax.data.records import write_records


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", required=True, choices=FORMATS,
                        help="r2r: the Reason-to-Rank authors' release; rank_llm: reranked rank_llm JSONL")
    parser.add_argument("--input", required=True, help="input JSONL file")
    parser.add_argument("--output", required=True, help="teacher.jsonl to write (atomically)")
    parser.add_argument("--report", default=None,
                        help="JSON file for the summary and every repaired or rejected row")
    parser.add_argument("--teacher-model", default=None,
                        help="teacher model name to record (default: gpt-4 for r2r, empty for rank_llm)")
    parser.add_argument("--strict", action="store_true",
                        help="fail (exit 1, write no output) if any row is rejected")
    parser.add_argument("--show", type=int, default=20, help="problems printed to stderr (all are in --report)")


def _write_json_atomic(path: Path, obj) -> None:
    write_json(path, obj)


def run(args: argparse.Namespace) -> int:
    if not Path(args.input).is_file():
        print(f"r2r import-teacher: --input {args.input}: no such file", file=sys.stderr)
        return 2
    records, report = import_file(args.input, args.format, args.teacher_model)
    for problem in report.problems[: max(args.show, 0)]:
        print(f"{problem['status']}: {problem['message']}", file=sys.stderr)
    if len(report.problems) > args.show:
        print(f"... {len(report.problems) - args.show} more problems (see --report)", file=sys.stderr)
    failed = not records or (args.strict and report.rejected)
    if not failed:
        write_records(args.output, records)
    if args.report:
        _write_json_atomic(Path(args.report), {**report.to_dict(), "output": None if failed else args.output})
    print(report.summary() + ("" if failed else f" to {args.output}"))
    if failed:
        why = "no usable rows" if not records else f"--strict and {report.rejected} rows rejected"
        print(f"r2r import-teacher: {why}; {args.output} not written", file=sys.stderr)
        return 1
    return 0
