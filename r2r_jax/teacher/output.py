"""teacher.jsonl as a resumable output: appended one complete record at a time, in input order.

On open, the records already there are validated and their qids skipped by the run; a torn last line (a kill
mid-write) is cut off. Records made with other settings (model, prompt version, top-k, window, step) are an
error rather than a silent mix. Completed queries are appended in input order as soon as every earlier one is
resolved; failed or stopped queries are skipped, so when a later run completes them the file is rewritten
once in input order.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

from r2r_jax.atomic import write_jsonl
from r2r_jax.data.records import RecordError, TeacherRecord, append_record, record_from_dict, write_records
from r2r_jax.teacher.generate import TeachSettings

log = logging.getLogger("r2r_jax.teacher")
_CHECKED = ("model", "prompt_version", "top_k", "window", "step", "pair_order")
_BEFORE = {"pair_order": "ranking"}  # what records written before a setting existed did


@dataclass
class Failure:
    qid: str
    error: str  # starts with the stage: "rank: ..." or "compare: ..."


def read_done(path: str | Path, settings: TeachSettings, repair: bool = False) -> list[TeacherRecord]:
    """The records already in `path` (validated, same settings). A torn last line is ignored, and cut off
    the file when `repair`."""
    path = Path(path)
    if not path.exists():
        return []
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        data = data[:cut]
        if repair:
            log.warning("%s: dropping an incomplete last line (interrupted write)", path)
            with open(path, "r+b") as f:
                f.truncate(cut)
    records = []
    for lineno, raw in enumerate(data.decode("utf-8").splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as e:
            raise RecordError(f"invalid JSON ({e.msg} at column {e.colno})", path=str(path), line=lineno) from None
        rec = record_from_dict(obj, str(path), lineno)
        for name in _CHECKED:
            have, want = rec.teacher.get(name, _BEFORE.get(name)), getattr(settings, name)
            if have != want:
                raise RecordError(f"made with {name}={have!r} but this run uses {want!r}; use another --output "
                                  "or the same settings", path=str(path), line=lineno, field_name=f"teacher.{name}")
        records.append(rec)
    return records


class TeacherOutput:
    """The output file opened for appending; `done` holds the qids it already has."""

    def __init__(self, path: str | Path, settings: TeachSettings):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.done = {r.qid for r in read_done(self.path, settings, repair=True)}
        self._f = open(self.path, "a", encoding="utf-8")

    def append(self, record: TeacherRecord) -> None:
        record_from_dict(record.to_dict())  # never write an invalid record
        append_record(self._f, record)
        self.done.add(record.qid)

    def close(self) -> None:
        self._f.close()

    def put_in_order(self, qids: list[str]) -> bool:
        """When every qid in `qids` is present, rewrite the file with them in that order (other records
        after them, as they were) if it is not already so. Returns whether it rewrote."""
        self._f.flush()
        records: dict[str, TeacherRecord] = {}
        for lineno, raw in enumerate(self.path.read_text(encoding="utf-8").splitlines(), start=1):
            if raw.strip():
                rec = record_from_dict(json.loads(raw), str(self.path), lineno)
                records[rec.qid] = rec
        have = list(records)
        wanted = set(qids)
        if wanted - set(have):
            return False
        order = list(qids) + [q for q in have if q not in wanted]
        if order == have:
            return False
        self._f.close()
        write_records(self.path, [records[q] for q in order])
        self._f = open(self.path, "a", encoding="utf-8")
        return True


class OrderedAppender:
    """Resolves slot i with a record (appended once every earlier slot is resolved) or None (skipped)."""

    _UNSET = object()

    def __init__(self, out: TeacherOutput, n: int):
        self.out = out
        self._slots: list[object] = [self._UNSET] * n
        self._next = 0
        self._lock = threading.Lock()

    def is_resolved(self, i: int) -> bool:
        with self._lock:
            return i < self._next or self._slots[i] is not self._UNSET

    def resolve(self, i: int, record: TeacherRecord | None) -> None:
        with self._lock:
            self._slots[i] = record
            while self._next < len(self._slots) and self._slots[self._next] is not self._UNSET:
                ready = self._slots[self._next]
                if ready is not None:
                    self.out.append(ready)  # type: ignore[arg-type]
                self._slots[self._next] = None
                self._next += 1


def write_failures(path: str | Path, failures: list[Failure]) -> None:
    """The permanent failures of this run (atomically), or no file when there are none."""
    path = Path(path)
    if not failures:
        path.unlink(missing_ok=True)
        return
    write_jsonl(path, (asdict(failure) for failure in failures))
