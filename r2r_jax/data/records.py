"""Teacher records: the project's versioned schema (docs/data.md), validation and JSONL I/O.

One record per query: the candidates the teacher saw, its ranking, a direct reason per passage and
comparison reasons. Every problem is reported with file, line and field; nothing is dropped silently.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from r2r_jax.atomic import write_jsonl

SCHEMA = "r2r.teacher/1"


class RecordError(ValueError):
    """A record that cannot be used; the message names file, line and field."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None,
                 field_name: str | None = None):
        where = ":".join(str(p) for p in (path, line) if p is not None)
        prefix = f"{where}: " if where else ""
        fld = f"field {field_name!r}: " if field_name else ""
        super().__init__(f"{prefix}{fld}{message}")
        self.path, self.line, self.field = path, line, field_name


def one_line(error: BaseException, limit: int = 500) -> str:
    """An error as the one line `r2r` prints: a library's message may span lines (a tokenizer's does)."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def library_error(error: BaseException, where: str, context: str = "", limit: int = 500) -> RecordError:
    """A library's failure on an input the user named (a model or tokenizer folder that cannot be read) as bad
    input naming it. Its own type is kept in the line unless it is a ValueError or OSError: a KeyError's or a
    SafetensorError's message alone may not say what went wrong. `context` wraps it: "cannot load it ({})"."""
    kind = "" if isinstance(error, ValueError | OSError) else f"{type(error).__name__}: "
    text = kind + one_line(error, limit)
    return RecordError(context.format(text) if context else text, path=where)


@dataclass
class Candidate:
    docid: str
    text: str
    first_stage_score: float | None = None


@dataclass
class Comparison:
    """A comparison reason over `docids`, shown to the student as passages [1], [2], ... in this order — the
    order the teacher saw them in, so passage numbers the reason cites mean the same passages."""

    docids: list[str]
    preferred: str | None  # the passage the teacher judged best among `docids`, when the reason says
    reason: str
    about: str | None = None  # a listwise reason explains this one passage against the others


@dataclass
class TeacherRecord:
    qid: str
    query: str
    candidates: list[Candidate]
    ranking: list[str]  # docids, most relevant first; a permutation of the candidates' docids
    direct_reasons: dict[str, str] = field(default_factory=dict)
    comparisons: list[Comparison] = field(default_factory=list)
    teacher: dict[str, Any] = field(default_factory=dict)  # model, prompt_version, usage, repairs...
    # passages the teacher never saw, judged off-target for this query by a retriever (`r2r mine-negatives`):
    # training may show them under the query, ranked below every candidate (`data.hard_negatives`)
    negatives: list[Candidate] = field(default_factory=list)
    schema: str = SCHEMA

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for cmp in out["comparisons"]:  # `about` only where it is set: pairwise records keep their old bytes
            if cmp["about"] is None:
                del cmp["about"]
        if not out["negatives"]:  # likewise `negatives`
            del out["negatives"]
        return {"schema": out.pop("schema"), **out}

    def rank_of(self) -> dict[str, int]:
        """docid -> teacher rank (1 = best)."""
        return {d: i + 1 for i, d in enumerate(self.ranking)}


def _require(obj: dict, key: str, kind, path, line, prefix: str = ""):
    if key not in obj:
        raise RecordError("missing", path=path, line=line, field_name=prefix + key)
    value = obj[key]
    if not isinstance(value, kind):
        kinds = kind if isinstance(kind, tuple) else (kind,)
        raise RecordError(
            f"expected {'/'.join(k.__name__ for k in kinds)}, got {type(value).__name__}",
            path=path, line=line, field_name=prefix + key,
        )
    return value


def record_from_dict(obj: Any, path: str | None = None, line: int | None = None) -> TeacherRecord:
    """Validate one parsed JSON object against the schema; raise `RecordError` naming the field."""
    if not isinstance(obj, dict):
        raise RecordError(f"expected a JSON object, got {type(obj).__name__}", path=path, line=line)
    schema = obj.get("schema", SCHEMA)
    if schema != SCHEMA:
        raise RecordError(f"unsupported schema {schema!r} (expected {SCHEMA!r})", path=path, line=line,
                          field_name="schema")
    qid = str(_require(obj, "qid", (str, int), path, line))
    query = _require(obj, "query", str, path, line)
    if not query.strip():
        raise RecordError("empty query", path=path, line=line, field_name="query")
    raw_cands = _require(obj, "candidates", list, path, line)
    if not raw_cands:
        raise RecordError("no candidates", path=path, line=line, field_name="candidates")
    candidates = _passages(raw_cands, "candidates", path, line)
    docids = [c.docid for c in candidates]
    if len(set(docids)) != len(docids):
        raise RecordError("duplicate docids among candidates", path=path, line=line, field_name="candidates")
    ranking = [str(d) for d in _require(obj, "ranking", list, path, line)]
    if sorted(ranking) != sorted(docids):
        raise RecordError("ranking is not a permutation of the candidates' docids", path=path, line=line,
                          field_name="ranking")
    reasons_raw = obj.get("direct_reasons", {}) or {}
    if not isinstance(reasons_raw, dict):
        raise RecordError("expected an object docid -> text", path=path, line=line, field_name="direct_reasons")
    reasons = {}
    for d, text in reasons_raw.items():
        if str(d) not in set(docids):
            raise RecordError(f"reason for unknown docid {d!r}", path=path, line=line,
                              field_name="direct_reasons")
        if not isinstance(text, str):
            raise RecordError("expected text", path=path, line=line, field_name=f"direct_reasons.{d}")
        reasons[str(d)] = text
    comparisons = []
    for i, c in enumerate(obj.get("comparisons", []) or []):
        pre = f"comparisons[{i}]."
        if not isinstance(c, dict):
            raise RecordError("expected an object", path=path, line=line, field_name=f"comparisons[{i}]")
        cd = [str(d) for d in _require(c, "docids", list, path, line, pre)]
        unknown = [d for d in cd if d not in set(docids)]
        if unknown or len(cd) < 2:
            raise RecordError(f"needs >= 2 known docids, got {cd}", path=path, line=line, field_name=pre + "docids")
        preferred = c.get("preferred")
        if preferred is not None and str(preferred) not in cd:
            raise RecordError(f"{preferred!r} is not among docids", path=path, line=line,
                              field_name=pre + "preferred")
        reason = _require(c, "reason", str, path, line, pre)
        about = c.get("about")
        if about is not None and str(about) not in cd:
            raise RecordError(f"{about!r} is not among docids", path=path, line=line, field_name=pre + "about")
        comparisons.append(Comparison(cd, None if preferred is None else str(preferred), reason,
                                      None if about is None else str(about)))
    teacher = obj.get("teacher", {}) or {}
    if not isinstance(teacher, dict):
        raise RecordError("expected an object", path=path, line=line, field_name="teacher")
    raw_negatives = obj.get("negatives", []) or []
    if not isinstance(raw_negatives, list):
        raise RecordError("expected a list of {docid, text}", path=path, line=line, field_name="negatives")
    negatives = _passages(raw_negatives, "negatives", path, line)
    clash = sorted({c.docid for c in negatives} & set(docids))
    if len({c.docid for c in negatives}) != len(negatives):
        raise RecordError("duplicate docids among negatives", path=path, line=line, field_name="negatives")
    if clash:
        raise RecordError(f"docids {clash} are also candidates", path=path, line=line, field_name="negatives")
    return TeacherRecord(qid, query, candidates, ranking, reasons, comparisons, teacher, negatives)


def _passages(raw: list, name: str, path: str | None, line: int | None) -> list[Candidate]:
    """The passage objects {docid, text[, first_stage_score]} of list field `name`."""
    out = []
    for i, c in enumerate(raw):
        pre = f"{name}[{i}]."
        if not isinstance(c, dict):
            raise RecordError("expected an object", path=path, line=line, field_name=f"{name}[{i}]")
        docid = str(_require(c, "docid", (str, int), path, line, pre))
        text = _require(c, "text", str, path, line, pre)
        score = c.get("first_stage_score")
        if score is not None and not isinstance(score, (int, float)):
            raise RecordError("expected a number or null", path=path, line=line,
                              field_name=pre + "first_stage_score")
        out.append(Candidate(docid, text, None if score is None else float(score)))
    return out


def check_readable(path: str | Path) -> None:
    """A missing path or a folder where a file is expected is a RecordError naming it."""
    p = Path(path)
    if not p.exists():
        if p.is_symlink():  # a dangling link, or one that loops: "no such file" would puzzle whoever sees it
            raise RecordError(f"a link to {os.readlink(p)}, which is not there", path=str(path))
        raise RecordError("no such file", path=str(path))
    if p.is_dir():
        raise RecordError("is a directory, not a file", path=str(path))


def check_regular(path: str | Path, flag: str, why: str) -> None:
    """A file a command reads more than once must be a regular file: a pipe (`--flag <(sort x)`) is empty the
    second time, and waiting for its writer would hang."""
    p = Path(path)
    if p.exists() and not p.is_dir() and not p.is_file():
        raise RecordError(f"is not a regular file (a pipe or a device); {why}, so write it to a file first",
                          path=f"{flag} {path}")


UTF8_BOM = b"\xef\xbb\xbf"


def text_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, line) of a UTF-8 text file, streamed; bytes that are not UTF-8 raise a
    RecordError naming the file and line, as does a missing file or a folder. A byte-order mark at the start
    (Windows editors write one) is dropped: kept, it would become part of the first qid or key."""
    check_readable(path)
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if lineno == 1 and raw.startswith(UTF8_BOM):
                raw = raw[len(UTF8_BOM):]
            try:
                yield lineno, raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise RecordError(f"not valid UTF-8 (byte {e.start + 1} of the line)", path=str(path),
                                  line=lineno) from None


def read_text(path: str | Path) -> str:
    """The whole of a UTF-8 text file, with `text_lines`' errors."""
    return "".join(line for _, line in text_lines(path))


def json_lines(path: str | Path, lines: Iterable[tuple[int, str]] | None = None) -> Iterator[tuple[int, Any]]:
    """(line number, parsed value) of each non-blank JSONL line of `path` (or of `lines`, when the caller has
    read the text already); invalid JSON raises a RecordError naming the file, line and column."""
    for lineno, raw in text_lines(path) if lines is None else lines:
        if not raw.strip():
            continue
        try:
            yield lineno, json.loads(raw)
        except json.JSONDecodeError as e:
            raise RecordError(f"invalid JSON ({e.msg} at column {e.colno})", path=str(path), line=lineno) from None


def read_records(path: str | Path) -> Iterator[TeacherRecord]:
    """Yield validated records; the first bad line raises `RecordError` with file and line."""
    path = str(path)
    for lineno, obj in json_lines(path):
        yield record_from_dict(obj, path, lineno)


def write_records(path: str | Path, records: Iterable[TeacherRecord]) -> int:
    """Write all records atomically (temporary file, then rename). Returns the count."""
    return write_jsonl(path, (rec.to_dict() for rec in records))


def append_record(f, record: TeacherRecord) -> None:
    """Append one complete record as one line and flush it (resumable writers)."""
    f.write(json.dumps(record.to_dict(), ensure_ascii=False) + "\n")
    f.flush()
    os.fsync(f.fileno())
