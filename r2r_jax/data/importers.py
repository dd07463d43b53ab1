"""Importers: the R2R authors' release and rank_llm JSONL into teacher records (docs/data.md).

Every input line ends in exactly one of three counts -- clean, repaired or rejected -- so the summary
adds up to the number of non-blank lines; every repair and rejection is listed as `file:line: field: why`.

R2R authors' release: passages `unsorted_docs` are shown to the teacher as identifiers
1..n; the record's docids are `f"{qid}-{identifier}"` because `sorted_docids` is unreliable.
`re_rank_id` is the ranking. Each `direct_reason` becomes `direct_reasons[docid]`. Each `listwise_reason`
("compared to the other passages, this one ...") becomes a Comparison over the whole window with `docids` in
the window's own order (identifiers 1..n, as the teacher saw them) and `about` naming the passage the reason
explains, so a reason's "passage 3" is [3] in the student's comparison prompt; `preferred` is unset (a
listwise reason judges one passage against all, not a pair). `scores` (MS MARCO
labels) are kept as `teacher.source_labels`; `direct_answer_sentence` has no place in the schema.

rank_llm (a reranked request/response JSONL): the candidates' list order is the teacher's ranking; rank_llm
rewrites `score` to follow that order, so it is not kept as a first-stage score. Token counts from
`invocations_history` / `ranking_exec_summary` become `teacher.usage`. Such records carry no reasons.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from r2r_jax.data.records import Candidate, Comparison, RecordError, TeacherRecord, record_from_dict

FORMATS = ("r2r", "rank_llm")


class _Row:
    """One input line: collects repairs, raises `RecordError` to reject."""

    def __init__(self, path: str, line: int):
        self.path, self.line = path, line
        self.repairs: list[tuple[str, str]] = []

    def repair(self, field_name: str, message: str) -> None:
        self.repairs.append((field_name, message))

    def reject(self, field_name: str | None, message: str) -> NoReturn:
        raise RecordError(message, path=self.path, line=self.line, field_name=field_name)

    def where(self, field_name: str, message: str) -> str:
        return str(RecordError(message, path=self.path, line=self.line, field_name=field_name))


@dataclass
class ImportReport:
    input: str
    format: str
    rows: int = 0  # non-blank lines
    clean: int = 0
    repaired: int = 0
    rejected: int = 0
    blank_lines: int = 0
    repairs: Counter = field(default_factory=Counter)  # field -> number of repairs
    rejections: Counter = field(default_factory=Counter)  # field -> number of rejected rows
    problems: list[dict[str, Any]] = field(default_factory=list)

    @property
    def written(self) -> int:
        return self.clean + self.repaired

    def to_dict(self) -> dict[str, Any]:
        return {"input": self.input, "format": self.format, "rows": self.rows, "clean": self.clean,
                "repaired": self.repaired, "rejected": self.rejected, "written": self.written,
                "blank_lines": self.blank_lines, "repairs_by_field": dict(sorted(self.repairs.items())),
                "rejections_by_field": dict(sorted(self.rejections.items())), "problems": self.problems}

    def summary(self) -> str:
        return (f"{self.input}: {self.rows} rows: {self.clean} clean + {self.repaired} repaired + "
                f"{self.rejected} rejected; {self.written} records written")


_IDENT = re.compile(r"\[?\s*(\d+)\s*\]?")


def _ident(value: Any, row: _Row, field_name: str) -> int | None:
    """An identifier as int; strings like "3" or "[3]" are repaired, anything else is None."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        row.repair(field_name, f"identifier {value!r} given as a float")
        return int(value)
    if isinstance(value, str) and (m := _IDENT.fullmatch(value.strip())):
        row.repair(field_name, f"identifier {value!r} given as a string")
        return int(m.group(1))
    return None


def _text(obj: dict, key: str) -> str | None:
    value = obj.get(key)
    return value.strip() if isinstance(value, str) and value.strip() else None


def _ranking_ids(raw: Any, n: int, row: _Row, field_name: str) -> list[int]:
    """Known identifiers in order, without duplicates; every dropped entry is a repair."""
    if isinstance(raw, str):
        row.repair(field_name, "ranking given as text; identifiers read from it")
        raw = re.findall(r"\d+", raw)
    out: list[int] = []
    for i, value in enumerate(raw):
        ident = _ident(value, row, f"{field_name}[{i}]")
        if ident is None or not 1 <= ident <= n:
            row.repair(f"{field_name}[{i}]", f"unknown identifier {value!r} dropped")
        elif ident in out:
            row.repair(f"{field_name}[{i}]", f"duplicate identifier {ident} dropped")
        else:
            out.append(ident)
    return out


def convert_r2r(obj: Any, row: _Row, teacher_model: str = "gpt-4") -> TeacherRecord:
    """One row of the R2R release -> TeacherRecord (repairs recorded on `row`, rejection raises)."""
    if not isinstance(obj, dict):
        row.reject(None, f"expected a JSON object, got {type(obj).__name__}")
    qid = obj.get("qid")
    if not isinstance(qid, (str, int)) or isinstance(qid, bool) or not str(qid).strip():
        row.reject("qid", "missing or not a string/integer")
    qid = str(qid).strip()
    query = _text(obj, "query") or row.reject("query", "missing or empty")
    docs = obj.get("unsorted_docs")
    if not isinstance(docs, list) or not docs:
        row.reject("unsorted_docs", "missing, not a list, or empty")
    texts: dict[int, str] = {}
    for i, doc in enumerate(docs):
        if not isinstance(doc, str):
            row.reject(f"unsorted_docs[{i}]", f"expected passage text, got {type(doc).__name__}")
        if doc.strip():
            texts[i + 1] = doc.strip()
        else:
            row.repair(f"unsorted_docs[{i}]", f"empty passage (identifier {i + 1}) dropped")
    if not texts:
        row.reject("unsorted_docs", "no passage has text")
    n = len(docs)

    reason = obj.get("reason")
    entries = reason.get("ranked_passages") if isinstance(reason, dict) else None
    if not isinstance(entries, list):
        row.repair("reason.ranked_passages", "missing or not a list: record has a ranking but no reasons")
        entries = []

    raw_rank = obj.get("re_rank_id")
    if isinstance(raw_rank, (list, str)):
        order = _ranking_ids(raw_rank, n, row, "re_rank_id")
    else:
        order = []
    if not order:
        order = _ranking_ids([e.get("identifier") if isinstance(e, dict) else None for e in entries], n, row,
                             "reason.ranked_passages")
        if not order:
            row.reject("re_rank_id", "no usable ranking (and none in reason.ranked_passages)")
        row.repair("re_rank_id", "missing or unusable; ranking taken from the order of reason.ranked_passages")
    order = [i for i in order if i in texts]
    missing = [i for i in texts if i not in order]
    if missing:
        row.repair("re_rank_id", f"identifiers {missing} not ranked; appended in first-stage order")
        order += missing
    docid = {i: f"{qid}-{i}" for i in texts}
    ranking = [docid[i] for i in order]

    direct: dict[str, str] = {}
    listwise: dict[str, str] = {}
    for k, entry in enumerate(entries):
        pre = f"reason.ranked_passages[{k}]"
        if not isinstance(entry, dict):
            row.repair(pre, "not an object; skipped")
            continue
        ident = _ident(entry.get("identifier"), row, pre + ".identifier")
        if ident not in texts:
            row.repair(pre + ".identifier", f"unknown identifier {entry.get('identifier')!r}; reasons skipped")
            continue
        d = docid[ident]
        if d in direct or d in listwise:
            row.repair(pre + ".identifier", f"second entry for identifier {ident}; skipped")
            continue
        if (text := _text(entry, "direct_reason")) is not None:
            direct[d] = text
        if (text := _text(entry, "listwise_reason")) is not None:
            listwise[d] = text
    if entries:
        for key, got in (("direct_reason", direct), ("listwise_reason", listwise)):
            lacking = [i for i in order if docid[i] not in got]
            if lacking:
                row.repair(f"reason.ranked_passages[].{key}", f"none for identifiers {lacking}")
    # each listwise reason is about one passage of the window, citing the others by the window's numbers:
    # the comparison keeps the window's order, so "passage 3" in the reason is [3] in the student's prompt
    window = [docid[i] for i in sorted(texts)]
    comparisons = [Comparison(window, None, listwise[d], about=d)
                   for d in ranking if d in listwise and len(window) > 1]

    teacher: dict[str, Any] = {"model": teacher_model, "prompt_version": "r2r-release", "source": "r2r"}
    labels = obj.get("scores")
    if isinstance(labels, list) and len(labels) == n and all(str(v).strip() in ("0", "1") for v in labels):
        teacher["source_labels"] = {docid[i]: int(str(labels[i - 1]).strip()) for i in texts}
    elif labels is not None:
        row.repair("scores", "not n labels 0/1; reference labels not kept")
    candidates = [Candidate(docid[i], texts[i], None) for i in texts]
    return TeacherRecord(qid, query, candidates, ranking, direct, comparisons, teacher)


_DOC_KEYS = ("contents", "text", "segment", "passage")


def convert_rank_llm(obj: Any, row: _Row, teacher_model: str = "") -> TeacherRecord:
    """One reranked rank_llm line -> TeacherRecord without reasons; list order is the ranking."""
    if not isinstance(obj, dict):
        row.reject(None, f"expected a JSON object, got {type(obj).__name__}")
    q = obj.get("query")
    if not isinstance(q, dict):
        row.reject("query", "expected {'text': str, 'qid': ...}")
    qid = q.get("qid")
    if not isinstance(qid, (str, int)) or isinstance(qid, bool) or not str(qid).strip():
        row.reject("query.qid", "missing or not a string/integer")
    query = _text(q, "text") or row.reject("query.text", "missing or empty")
    raw = obj.get("candidates")
    if not isinstance(raw, list) or not raw:
        row.reject("candidates", "missing, not a list, or empty")
    candidates: list[Candidate] = []
    for i, c in enumerate(raw):
        pre = f"candidates[{i}]"
        if not isinstance(c, dict) or not isinstance(c.get("docid"), (str, int)) or isinstance(c["docid"], bool):
            row.repair(pre, "no docid; candidate dropped")
            continue
        doc = c.get("doc")
        text = next((t for k in _DOC_KEYS if isinstance(doc, dict) and (t := _text(doc, k))), None)
        if text is None:
            row.repair(pre + ".doc", f"no passage text in any of {list(_DOC_KEYS)}; candidate dropped")
            continue
        if isinstance(doc, dict) and (title := _text(doc, "title")):
            text = f"{title}: {text}"
        d = str(c["docid"]).strip()
        if any(d == x.docid for x in candidates):
            row.repair(pre + ".docid", f"duplicate docid {d!r}; later occurrence dropped")
            continue
        candidates.append(Candidate(d, text, None))
    if not candidates:
        row.reject("candidates", "no usable candidate")
    usage: Counter = Counter()
    for key in ("invocations_history", "ranking_exec_summary"):
        for inv in obj.get(key) or []:
            if isinstance(inv, dict):
                for src, dst in (("input_token_count", "prompt_tokens"), ("output_token_count", "completion_tokens")):
                    if isinstance(inv.get(src), int):
                        usage[dst] += inv[src]
    teacher: dict[str, Any] = {"model": teacher_model, "prompt_version": "rank_llm", "source": "rank_llm"}
    if usage:
        teacher["usage"] = dict(usage)
    return TeacherRecord(str(qid).strip(), query, candidates, [c.docid for c in candidates], {}, [], teacher)


_CONVERTERS = {"r2r": convert_r2r, "rank_llm": convert_rank_llm}


def import_file(path: str | Path, fmt: str, teacher_model: str | None = None) -> tuple[list[TeacherRecord],
                                                                                      ImportReport]:
    """Convert every line of `path`; returns the usable records and the report accounting for every line."""
    if fmt not in _CONVERTERS:
        raise ValueError(f"unknown format {fmt!r}; known: {list(FORMATS)}")
    convert = _CONVERTERS[fmt]
    kwargs = {} if teacher_model is None else {"teacher_model": teacher_model}
    path = str(path)
    report = ImportReport(input=path, format=fmt)
    records: list[TeacherRecord] = []
    first_line: dict[str, int] = {}
    with open(path, "rb") as f:
        for lineno, raw_bytes in enumerate(f, start=1):
            row = _Row(path, lineno)
            try:
                raw = raw_bytes.decode("utf-8")
                if not raw.strip():
                    report.blank_lines += 1
                    continue
                report.rows += 1
                try:
                    obj = json.loads(raw)
                except json.JSONDecodeError as e:
                    row.reject(None, f"invalid JSON ({e.msg} at column {e.colno})")
                record = convert(obj, row, **kwargs)
                if record.qid in first_line:
                    row.reject("qid", f"qid {record.qid!r} already imported from line {first_line[record.qid]}")
                if row.repairs:
                    record.teacher["repairs"] = [f"{fld}: {msg}" for fld, msg in row.repairs]
                record = record_from_dict(record.to_dict(), path, lineno)  # the schema's own check
            except UnicodeDecodeError:
                report.rows += 1
                _rejected(report, row, RecordError("not valid UTF-8", path=path, line=lineno))
                continue
            except RecordError as e:
                _rejected(report, row, e)
                continue
            first_line[record.qid] = lineno
            records.append(record)
            if row.repairs:
                report.repaired += 1
                for fld, msg in row.repairs:
                    report.repairs[fld] += 1
                    report.problems.append({"line": lineno, "status": "repaired", "field": fld,
                                            "message": row.where(fld, msg)})
            else:
                report.clean += 1
    assert report.clean + report.repaired + report.rejected == report.rows
    return records, report


def _rejected(report: ImportReport, row: _Row, err: RecordError) -> None:
    report.rejected += 1
    report.rejections[err.field or "(row)"] += 1
    report.problems.append({"line": row.line, "status": "rejected", "field": err.field, "message": str(err)})
