"""Score the reasons `r2r rerank` wrote (its explanations JSONL): BLEU / ROUGE-L against a teacher's reasons
for the same passages, and whether each direct reason agrees with the ranking (`eval.agreement`).

A generated reason is matched to the teacher's reason for the same query and passage: a direct reason by
docid; a listwise comparison reason (`about` set) by the passage it explains; a pairwise one by the same two
docids. A reason the teacher has none for (its query is not among the teacher records, or the record has no
reason for that passage) is counted and reported, never dropped silently.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from r2r_jax.data.records import RecordError, TeacherRecord, json_lines
from r2r_jax.data.verdict import opens_with_verdict, verdict, without_verdict
from r2r_jax.eval import text_metrics as tm
from r2r_jax.eval.agreement import AgreementRow, agreement
from r2r_jax.eval.tables import aligned

KINDS = ("direct", "comparison")
NO_RECORD, NO_REASON = "no_teacher_record", "no_teacher_reason"


@dataclass
class ExplainedQuery:
    """One line of a rerank explanations file: the reasons and how long the ranked list was."""

    qid: str
    listed: int
    direct: list[dict[str, Any]] = field(default_factory=list)  # {rank, docid, reason}
    comparisons: list[dict[str, Any]] = field(default_factory=list)  # {ranks, docids, reason[, about]}


def _expect(obj: dict, key: str, kind, path: str, line: int, where: str):
    value = obj.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        kinds = kind if isinstance(kind, tuple) else (kind,)
        raise RecordError(f"expected {'/'.join(k.__name__ for k in kinds)}, got "
                          f"{'nothing' if value is None else type(value).__name__}", path=path, line=line,
                          field_name=where + key)
    return value


def read_explanations(path: str | Path) -> list[ExplainedQuery]:
    """Every query of an explanations JSONL, with file, line and field named on a malformed one. Queries
    written without reasons (a rerank without --explain-*) are kept with none."""
    path, out, seen = str(path), [], set()
    for line, obj in json_lines(path):
        if not isinstance(obj, dict):
            raise RecordError(f"expected a JSON object, got {type(obj).__name__}", path=path, line=line)
        qid = str(_expect(obj, "qid", (str, int), path, line, ""))
        if qid in seen:
            raise RecordError(f"qid {qid!r} appears twice", path=path, line=line, field_name="qid")
        seen.add(qid)
        q = ExplainedQuery(qid, len(_expect(obj, "ranking", list, path, line, "")))
        for i, d in enumerate(obj.get("direct_reasons") or []):
            where = f"direct_reasons[{i}]."
            if not isinstance(d, dict):
                raise RecordError("expected an object", path=path, line=line, field_name=where[:-1])
            q.direct.append({"rank": _expect(d, "rank", int, path, line, where),
                             "docid": str(_expect(d, "docid", str, path, line, where)),
                             "reason": _expect(d, "reason", str, path, line, where)})
        for i, c in enumerate(obj.get("comparisons") or []):
            where = f"comparisons[{i}]."
            if not isinstance(c, dict):
                raise RecordError("expected an object", path=path, line=line, field_name=where[:-1])
            item = {"ranks": _expect(c, "ranks", list, path, line, where),
                    "docids": [str(x) for x in _expect(c, "docids", list, path, line, where)],
                    "reason": _expect(c, "reason", str, path, line, where)}
            if c.get("about") is not None:
                item["about"] = str(c["about"])
            q.comparisons.append(item)
        out.append(q)
    if not any(q.direct or q.comparisons for q in out):
        raise RecordError("no reasons in the file: was it written by `r2r rerank` with --explain-top or "
                          "--explain-ranks?", path=path)
    return out


def teacher_reason(rec: TeacherRecord | None, kind: str, item: dict[str, Any]) -> tuple[str | None, str | None]:
    """(the teacher's reason for what `item` explains, None) or (None, why there is none)."""
    if rec is None:
        return None, NO_RECORD
    if kind == "direct":
        text = rec.direct_reasons.get(item["docid"], "")
        return (text, None) if text.strip() else (None, NO_REASON)
    about = item.get("about")
    for cmp in rec.comparisons:
        same = cmp.about == about if about is not None else (cmp.about is None
                                                              and set(cmp.docids) == set(item["docids"]))
        if same and cmp.reason.strip():
            return cmp.reason, None
    return None, NO_REASON


def score_explanations(queries: Sequence[ExplainedQuery], teacher: Sequence[TeacherRecord] | None,
                       kinds: Sequence[str] = KINDS,
                       ) -> tuple[dict[str, Any], list[AgreementRow], list[AgreementRow]]:
    """(the report, its agreement rows, the same rows read from the text after each opening verdict). The
    report holds per kind the means over the reasons the teacher has a reference for and the coverage counts
    (with `teacher`), the agreement rows (with direct reasons), and every reason per query with its verdict
    (direct) and scores. When some direct reason opens with "Yes" / "No" (a `data.verdict_first` student),
    that word decides its verdict, so the report adds `agreement_text`: the rows again with each reason read
    without its opening word (`text_verdict`), which says whether the explanation itself agrees; else the
    third item is empty."""
    by_qid = {rec.qid: rec for rec in teacher or []}
    coverage = {k: {"explained": 0, "scored": 0, NO_RECORD: 0, NO_REASON: 0} for k in kinds}
    pairs: dict[str, list[tuple[str, str, tm.PairScore]]] = {k: [] for k in kinds}
    per_query, verdicts, text_verdicts = [], [], []
    for q in queries:
        rec = by_qid.get(q.qid)
        out: dict[str, Any] = {"qid": q.qid, "direct": [], "comparisons": []}
        for kind, items, key in (("direct", q.direct, "direct"), ("comparison", q.comparisons, "comparisons")):
            if kind not in kinds:
                continue
            for item in items:
                row = {k: v for k, v in item.items() if k != "reason"} | {"generated": item["reason"]}
                if kind == "direct":
                    row["verdict"] = verdict(item["reason"])
                    row["text_verdict"] = verdict(without_verdict(item["reason"]))
                coverage[kind]["explained"] += 1
                if teacher is not None:
                    reference, missing = teacher_reason(rec, kind, item)
                    if reference is None:
                        coverage[kind][missing] += 1
                        row["reference"] = None
                    else:
                        score = tm.score_pair(reference, item["reason"])
                        coverage[kind]["scored"] += 1
                        pairs[kind].append((reference, item["reason"], score))
                        row |= {"reference": reference, "rouge_l": score.rouge_l, "bleu": score.bleu}
                out[key].append(row)
        if "direct" in kinds and q.direct:
            read = list(zip(q.direct, out["direct"], strict=True))
            verdicts.append(({d["rank"]: v["verdict"] for d, v in read}, q.listed))
            text_verdicts.append(({d["rank"]: v["text_verdict"] for d, v in read}, q.listed))
        per_query.append(out)
    report: dict[str, Any] = {}
    if teacher is not None:
        report["means"] = {k: tm.summarize([r for r, _, _ in pairs[k]], [g for _, g, _ in pairs[k]],
                                           [s for _, _, s in pairs[k]]).to_dict() for k in kinds}
        report["coverage"] = coverage
    rows: list[AgreementRow] = agreement(verdicts) if verdicts else []
    report["agreement"] = [r.to_dict() for r in rows]
    opened = any(opens_with_verdict(d["reason"]) for q in queries for d in q.direct)
    text_rows: list[AgreementRow] = agreement(text_verdicts) if opened and text_verdicts else []
    if text_rows:
        report["agreement_text"] = [r.to_dict() for r in text_rows]
    report["queries"] = per_query
    return report, rows, text_rows


def coverage_table(means: dict[str, dict[str, Any]], coverage: dict[str, dict[str, int]]) -> str:
    """ROUGE-L / BLEU per kind with how many reasons were explained, scored and left without a reference."""
    def fmt(x: float | None, digits: int) -> str:
        return "-" if x is None else f"{x:.{digits}f}"

    rows = [["kind", "explained", "scored", "no teacher reason", "empty", "ROUGE-L", "BLEU"]]
    for k, m in means.items():
        c = coverage[k]
        rows.append([k, str(c["explained"]), str(c["scored"]), str(c[NO_RECORD] + c[NO_REASON]), str(m["empty"]),
                     fmt(m["rouge_l"], 4), fmt(m["bleu"], 2)])
    return aligned(rows)
