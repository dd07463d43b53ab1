"""`r2r tune-fusion`: choose the student's rerank default on a held-out selection set and store it with the run.

    r2r rerank --checkpoint runs/x --candidates sel.jsonl --output sel_student.trec --student-only
    r2r tune-fusion --checkpoint runs/x --student-run sel_student.trec --candidates sel.jsonl --qrels sel_qrels.txt

Scores are pointwise, so one student-only run over the selection set's full candidate lists gives every
setting offline: each fusion method, student weight and rerank depth of the grid is applied to it
(`inference.fusion.fuse_run`, the same code `r2r rerank` ranks with) and evaluated; the best by `--metric`
(ties: the next metric, then the shallower depth, which costs less to rerank) is written to the run's
`rerank_default.json` with the whole table, so the choice can be read back. The selection set must be
held-out training queries, never a test set.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

from r2r_jax.inference.fusion import DEFAULT_FILE, METHODS, Fusion

WEIGHTS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
DEPTHS = (5, 10, 20, 30, 50, 100)
TIE_METRICS = ("ndcg@10", "ndcg@5", "ndcg@1")

FILE_ARGUMENTS = ((), ("student_run", "candidates", "qrels"))
EXAMPLE = ("r2r tune-fusion --checkpoint runs/r2r --student-run sel_student.trec --candidates sel.jsonl "
           "--qrels sel_qrels.txt --dry-run")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--checkpoint", metavar="RUN", help="training run folder to store the default in")
    where.add_argument("--model", metavar="DIR", help="exported model folder to store the default in")
    parser.add_argument("--student-run", required=True, metavar="RUN",
                        help="TREC run of `r2r rerank --student-only` on --candidates (every candidate scored)")
    parser.add_argument("--candidates", required=True, metavar="FILE",
                        help="the selection set's first-stage candidates with their scores (rank_llm JSONL)")
    parser.add_argument("--qrels", required=True, metavar="FILE", help="the selection set's graded qrels")
    parser.add_argument("--metric", default="ndcg@10", choices=TIE_METRICS,
                        help="what the choice maximises")
    parser.add_argument("--dry-run", action="store_true", help="print the table and the choice; store nothing")
    parser.add_argument("--overwrite", action="store_true", help="replace a stored default")


def grid(max_depth: int) -> list[Fusion]:
    """Every setting tried: the first stage alone (weight 0), the student alone, interpolation and RRF at each
    weight, each over every depth of `DEPTHS` below `max_depth` and over the full list."""
    depths = sorted({d for d in DEPTHS if d < max_depth} | {max_depth})
    out = [Fusion("interpolate", 0.0, None)]
    for depth in depths:
        out.append(Fusion("student", 1.0, depth))
        out.extend(Fusion(method, w, depth) for method in METHODS[1:] for w in WEIGHTS)
    return out


def sweep(items, student_run, qrels, metrics=TIE_METRICS) -> list[tuple[Fusion, dict[str, float]]]:
    """(setting, mean metrics) for every setting of the grid."""
    from r2r_jax.eval.metrics import evaluate
    from r2r_jax.inference.fusion import fuse_run

    max_depth = max(len(qc.candidates) for qc in items)
    return [(f, evaluate(fuse_run(items, student_run, f), qrels, list(metrics)).means) for f in grid(max_depth)]


def choose(rows: list[tuple[Fusion, dict[str, float]]], metric: str) -> tuple[Fusion, dict[str, float]]:
    order = (metric, *[m for m in TIE_METRICS if m != metric])
    return max(rows, key=lambda r: (*(round(r[1][m], 6) for m in order), -(r[0].depth or 10**9)))


def _sha256(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def run(args: argparse.Namespace) -> int:
    from r2r_jax.atomic import OutputRefused, write_json
    from r2r_jax.data.candidates import read_candidates
    from r2r_jax.data.records import RecordError
    from r2r_jax.retrieval.trec import read_qrels, read_run

    folder = Path(args.checkpoint or args.model)
    if not folder.is_dir():
        raise FileNotFoundError(f"{'--checkpoint' if args.checkpoint else '--model'} {folder}: no such folder")
    target = folder / DEFAULT_FILE
    if target.exists() and not (args.overwrite or args.dry_run):
        raise OutputRefused(f"{target} exists; pass --overwrite to replace it")
    items = read_candidates(args.candidates)
    student_run, qrels = read_run(args.student_run), read_qrels(args.qrels)
    for qc in items:
        have = {d for d, _ in student_run.get(qc.qid, [])}
        missing = [c.docid for c in qc.candidates if c.docid not in have]
        if missing:
            raise RecordError(f"qid {qc.qid!r} lacks {len(missing)} of its {len(qc.candidates)} candidates "
                              f"(e.g. {missing[0]!r}); rerank every candidate with --student-only",
                              path=f"--student-run {args.student_run}")
    rows = sweep(items, student_run, qrels)
    best, means = choose(rows, args.metric)
    first_stage = next(m for f, m in rows if f.weight == 0.0)
    student = next(m for f, m in rows if f.method == "student" and f.depth == max(len(q.candidates) for q in items))
    print(f"{len(items)} selection queries; {len(rows)} settings by {args.metric}:")
    for f, m in sorted(rows, key=lambda r: -r[1][args.metric])[:10]:
        print(f"  {m[args.metric]:.4f}  {f.describe()}")
    print(f"first stage alone {first_stage[args.metric]:.4f}, student alone {student[args.metric]:.4f}")
    print(f"chosen: {best.describe()} ({args.metric} {means[args.metric]:.4f})")
    if args.dry_run:
        return 0
    write_json(target, {
        "fusion": best.to_dict(),
        "chosen_by": args.metric,
        "selection": {"candidates": str(Path(args.candidates).absolute()), "sha256": _sha256(args.candidates),
                      "qrels": str(Path(args.qrels).absolute()), "student_run": str(Path(args.student_run).absolute()),
                      "queries": len(items)},
        "means": {"chosen": means, "first_stage": first_stage, "student_alone": student},
        "table": [{"fusion": f.to_dict(), **m} for f, m in rows],
    })
    print(f"wrote {target}: `r2r rerank` on this student now ranks by it (--student-only for the raw student)",
          file=sys.stdout)
    return 0
