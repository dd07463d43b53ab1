"""`r2r evaluate-reasons`: how close the student's reasons are to held-out teacher reasons (BLEU, ROUGE-L),
and whether the reasons `r2r rerank` wrote agree with its ranking.

    r2r evaluate-reasons --checkpoint runs/x --teacher heldout.jsonl --output reasons.json
    r2r evaluate-reasons --checkpoint runs/x --teacher heldout.jsonl --output r.json --kinds direct --max-queries 50
    r2r evaluate-reasons --explanations run.explanations.jsonl --teacher heldout.jsonl --output r.json
    r2r evaluate-reasons --explanations dl19.explanations.jsonl --output agreement.json

With --checkpoint the student decodes a reason from each teacher reason's own training prompt; with
--explanations the reasons are the ones `r2r rerank` served (eval/explanations.py), scored against the
teacher's for the same passages when --teacher is given, and checked against the ranking (eval/agreement.py)
always. The Reason-to-Rank paper's explanation metrics, per query and over the whole set, written as JSON with
every generated reason beside its reference so a number can always be traced back to text. Inputs are read and
checked before the model loads: a bad file or flag fails in a second with one line and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from r2r_jax.cli_types import add_mesh_arguments, positive_int
from r2r_jax.data.records import RecordError, TeacherRecord, read_records
from r2r_jax.eval import text_metrics as tm
from r2r_jax.eval.tables import aligned
from r2r_jax.rerank.reasons import KINDS, ReasonItem, collect_reasons, parse_kinds

PROG = "r2r evaluate-reasons"


# (files written, files read): `r2r` refuses an output that is also an input before the command runs
FILE_ARGUMENTS = (("output",), ("teacher", "explanations"))
EXAMPLE = "r2r evaluate-reasons --checkpoint runs/r2r --teacher heldout.jsonl --output reasons.json --max-queries 10"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", metavar="RUN",
                        help="training checkpoint: run dir, its checkpoints/ (latest step) or checkpoints/<step>")
    source.add_argument("--explanations", metavar="JSONL",
                        help="score the reasons `r2r rerank` wrote (its explanations JSONL) instead of decoding; "
                             "reasons that open with Yes/No get their agreement again read without that word")
    parser.add_argument("--teacher", metavar="JSONL",
                        help="held-out teacher records (r2r.teacher/1) whose reasons are the references (needed "
                             "with --checkpoint; with --explanations, without it only the agreement is reported)")
    parser.add_argument("--output", required=True, metavar="JSON", help="means, per-query scores and texts")
    parser.add_argument("--kinds", default=",".join(KINDS),
                        help=f"comma-separated subset of {', '.join(KINDS)}")
    parser.add_argument("--max-queries", type=positive_int, metavar="N", help="only the first N records (a quick look)")
    parser.add_argument("--max-new-tokens", type=positive_int, metavar="N",
                        help="generated reason length limit (default: the trained target length)")
    parser.add_argument("--batch-size", type=positive_int, default=16, metavar="N",
                        help="prompts per decoding batch, rounded up to a multiple of the devices")
    parser.add_argument("--base-model", metavar="DIR", help="the HF base, if it moved since training")
    parser.add_argument("--tokenizer", metavar="DIR", help="tokenizer folder (default: the checkpoint's)")
    add_mesh_arguments(parser)


def _fail(e: BaseException | str, status: int) -> int:
    print(f"{PROG}: error: {e}", file=sys.stderr)
    return status


def read_inputs(args: argparse.Namespace) -> tuple[tuple[str, ...], list[TeacherRecord], list[ReasonItem]]:
    """Flags, records and the reasons to evaluate, all checked without jax; ValueError / OSError on bad input."""
    kinds = parse_kinds(args.kinds)
    if args.teacher is None:
        raise ValueError("--checkpoint needs --teacher: the held-out records whose reasons the student repeats")
    for flag, value in (("--max-new-tokens", args.max_new_tokens), ("--batch-size", args.batch_size),
                        ("--max-queries", args.max_queries)):
        if value is not None and value < 1:
            raise ValueError(f"{flag} must be >= 1, got {value}")
    records = list(read_records(args.teacher))
    if args.max_queries is not None:
        records = records[: args.max_queries]
    items = collect_reasons(records, kinds)
    if not items:
        raise RecordError(f"no non-empty {' or '.join(kinds)} reasons to evaluate", path=args.teacher)
    return kinds, records, items


def _scored(item: ReasonItem, score: tm.PairScore) -> dict[str, Any]:
    head = {"docid": item.docids[0]} if item.kind == "direct" else {"docids": list(item.docids),
                                                                     "preferred": item.preferred}
    return {**head, "reference": item.reference, "generated": item.generated, "rouge_l": score.rouge_l,
            "bleu": score.bleu}


def _summary(items: Sequence[ReasonItem], scores: Sequence[tm.PairScore]) -> dict[str, Any]:
    return tm.summarize([it.reference for it in items], [it.generated for it in items], scores).to_dict()


def build_report(items: Sequence[ReasonItem], kinds: Sequence[str], settings: dict[str, Any]) -> dict[str, Any]:
    """{"means": {kind: Summary}, "queries": [{qid, direct, comparisons, means}], "settings"} for decoded
    `items`; each pair is scored once and reused by the per-query and overall aggregates."""
    scores = [tm.score_pair(it.reference, it.generated) for it in items]
    means = {}
    for kind in kinds:
        mine = [(it, s) for it, s in zip(items, scores, strict=True) if it.kind == kind]
        means[kind] = _summary([it for it, _ in mine], [s for _, s in mine])
    queries: dict[str, dict[str, Any]] = {}
    grouped: dict[str, dict[str, list]] = {}
    for it, s in zip(items, scores, strict=True):
        q = queries.setdefault(it.qid, {"qid": it.qid, "direct": [], "comparisons": []})
        q["direct" if it.kind == "direct" else "comparisons"].append(_scored(it, s))
        grouped.setdefault(it.qid, {k: [] for k in kinds})[it.kind].append((it, s))
    for qid, q in queries.items():
        q["means"] = {k: _summary([it for it, _ in pairs], [s for _, s in pairs])
                      for k, pairs in grouped[qid].items()}
    return {"means": means, "queries": list(queries.values()), "settings": settings}


def _table(means: dict[str, dict[str, Any]]) -> str:
    def fmt(x: float | None, digits: int) -> str:
        return "-" if x is None else f"{x:.{digits}f}"

    rows = [["kind", "n", "empty", "ROUGE-L", "BLEU"]]
    rows += [[k, str(m["n"]), str(m["empty"]), fmt(m["rouge_l"], 4), fmt(m["bleu"], 2)] for k, m in means.items()]
    return aligned(rows)


def run_explanations(args: argparse.Namespace) -> int:
    """--explanations: score the reasons a rerank wrote; no model, no jax."""
    from r2r_jax.atomic import write_json
    from r2r_jax.eval.agreement import table
    from r2r_jax.eval.explanations import coverage_table, read_explanations, score_explanations

    try:
        kinds = parse_kinds(args.kinds)
        for flag, value in (("--max-new-tokens", args.max_new_tokens), ("--base-model", args.base_model),
                            ("--tokenizer", args.tokenizer)):
            if value is not None:
                raise ValueError(f"{flag} goes with --checkpoint; --explanations scores reasons already written")
        queries = read_explanations(args.explanations)[: args.max_queries]
        teacher = None
        if args.teacher is not None:
            teacher = list(read_records(args.teacher))
            if not teacher:  # every reason would count as "no teacher record": a wrong file, not a finding
                raise RecordError("holds no teacher records", path=args.teacher)
            collect_reasons(teacher, kinds)  # a qid in two records is refused, as with --checkpoint
            tm.bleu_signatures()  # the metric libraries are importable
    except (RecordError, ValueError, OSError, ImportError) as e:
        return _fail(e, 2)
    report, rows, text_rows = score_explanations(queries, teacher, kinds)
    report["settings"] = {"explanations": str(args.explanations), "teacher": args.teacher, "kinds": list(kinds),
                          "max_queries": args.max_queries,
                          "verdict": "r2r_jax.data.verdict rules (docs/evaluation.md)"}
    if teacher is not None:
        report["settings"] |= {"rouge_l": tm.ROUGE_DESCRIPTION, "bleu": tm.bleu_signatures()}
    try:
        write_json(args.output, report)
    except OSError as e:
        return _fail(e, 1)
    if teacher is not None:
        print(coverage_table(report["means"], report["coverage"]))
    print(table(rows) if rows else "agreement: no direct reasons to read")
    if text_rows:
        print("the same, each reason read without its opening Yes / No:")
        print(table(text_rows))
    print(f"wrote {args.output}")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.explanations is not None:
        return run_explanations(args)
    try:
        kinds, records, items = read_inputs(args)
        from r2r_jax.checkpoint import resolve_checkpoint

        resolve_checkpoint(args.checkpoint)  # a wrong path fails here, before jax and the model load
        tm.bleu_signatures()  # the metric libraries are importable
        from r2r_jax.config import MeshConfig
        from r2r_jax.trained.loading import check_student_prompts, student_prompts

        MeshConfig(args.mesh_data, args.mesh_fsdp, args.mesh_tensor).validate()
        prompts, tokenizer = student_prompts(args.checkpoint, None, args.tokenizer)
        check_student_prompts(prompts, tokenizer, comparisons="comparison" in kinds)
    except (RecordError, ValueError, OSError, ImportError) as e:
        return _fail(e, 2)

    import jax

    from r2r_jax.parallel.mesh import make_mesh
    from r2r_jax.rerank.reasons import generate_reasons
    from r2r_jax.trained.loading import load_from_checkpoint

    try:
        mesh = make_mesh(MeshConfig(args.mesh_data, args.mesh_fsdp, args.mesh_tensor), jax.local_devices())
        student = load_from_checkpoint(args.checkpoint, mesh, args.base_model, args.tokenizer)
    except (ValueError, OSError) as e:
        return _fail(e, 2)
    max_new_tokens = args.max_new_tokens or student.prompts.max_target_len
    counts = ", ".join(f"{sum(it.kind == k for it in items)} {k}" for k in kinds)
    print(f"decoding {counts} reasons of {len({it.qid for it in items})} queries with {student.source}",
          file=sys.stderr)
    try:
        start = time.perf_counter()
        items = generate_reasons(student, records, items, max_new_tokens, args.batch_size, mesh)
        seconds = time.perf_counter() - start
        settings = {
            "checkpoint": str(args.checkpoint), "student": student.source, "teacher": str(args.teacher),
            "kinds": list(kinds), "max_queries": args.max_queries, "max_new_tokens": max_new_tokens,
            "batch_size": args.batch_size, "decoding": "greedy", "decode_seconds": round(seconds, 3),
            "prompts": asdict(student.prompts),
            "rouge_l": tm.ROUGE_DESCRIPTION, "bleu": tm.bleu_signatures(),
        }
        report = build_report(items, kinds, settings)
        if jax.process_index() == 0:
            from r2r_jax.atomic import write_json

            write_json(args.output, report)
    except (ValueError, OSError) as e:
        return _fail(e, 1)
    print(_table(report["means"]))
    print(f"wrote {args.output}")
    return 0
