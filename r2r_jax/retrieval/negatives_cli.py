"""`r2r mine-negatives`: teacher records -> the same records with BM25-mined hard negatives (`negatives`)."""

from __future__ import annotations

import argparse
import sys
import time

from r2r_jax.cli_types import add_renamed, non_negative_int, positive_int
from r2r_jax.data.records import RecordError, read_records, write_records
from r2r_jax.retrieval.cli import add_bm25_arguments, bm25_params
from r2r_jax.retrieval.hard_negatives import mine_negatives, short_records
from r2r_jax.retrieval.inputs import RetrievalError

# (files written, files read): `r2r` refuses an output that is also an input before the command runs
FILE_ARGUMENTS = (("output",), ("teacher",))
EXAMPLE = "r2r mine-negatives --teacher teacher.jsonl --output teacher_hn.jsonl --count 8"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_renamed(p, "--teacher", "--records", required=True, metavar="FILE",
                help="teacher records JSONL (r2r import-teacher / r2r teach)")
    p.add_argument("--output", required=True, metavar="FILE",
                   help="records JSONL to write (atomically), each with `negatives`")
    p.add_argument("--count", type=positive_int, default=8, metavar="N",
                   help="negatives per record (train with data.hard_negatives <= this)")
    p.add_argument("--skip", type=non_negative_int, default=0, metavar="N",
                   help="BM25's best other-query passages to pass over first")
    p.add_argument("--spread", type=positive_int, default=None, metavar="DEPTH",
                   help="take the negatives at evenly spaced ranks of BM25's top DEPTH (after --skip) instead of "
                        "the very best, as a depth-DEPTH rerank shows them (default: the best)")
    add_bm25_arguments(p, "a PyStemmer algorithm, or none")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    try:
        if args.spread is not None and args.spread < args.count:
            raise RetrievalError(f"--spread {args.spread} is below --count {args.count}")
        records = list(read_records(args.teacher))
        if len(records) < 2:
            raise RecordError("needs at least 2 records: negatives are other records' passages", path=args.teacher)
        mined = mine_negatives(records, args.count, skip=args.skip, spread=args.spread, params=bm25_params(args),
                               progress=not args.no_progress)
    except (RecordError, RetrievalError) as e:
        print(f"r2r mine-negatives: error: {e}", file=sys.stderr)
        return 2
    write_records(args.output, mined)
    short = short_records(mined, args.count)
    note = (f"; {len(short)} records got fewer (their queries match fewer passages), e.g. {short[:3]}"
            if short else "")
    print(f"r2r mine-negatives: {len(mined)} records, {args.count} negatives each -> {args.output} in "
          f"{time.perf_counter() - start:.1f}s{note}", file=sys.stderr)
    return 0
