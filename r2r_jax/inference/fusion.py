"""How a student's scores become the final ranking: alone, or fused with the first stage's, over a depth.

A pointwise student scores every candidate on its own, so a deep list holds passages it has never seen the
like of in training; the first stage (BM25) is a robust signal there. Three ways to combine them, all per
query over the candidates that are reranked (the first-stage top `depth`; the rest follow in first-stage
order, below them):

- `student`: the student's score alone (with a `depth`, a depth-limited rerank);
- `interpolate`: `weight * z(student) + (1 - weight) * z(first stage)`, each score standardised over the
  query's reranked candidates (z-score; a constant list standardises to 0), so neither scale dominates;
- `rrf`: weighted reciprocal-rank fusion, `weight / (k + rank_student) + (1 - weight) / (k + rank_first)`.

The first-stage signal is the candidates' own scores when they fall down the list and are not all equal
(BM25's), else the list order itself (`-rank`): a candidate file without scores still fuses by rank.

A setting is chosen on a held-out selection set (`r2r tune-fusion`), never on a test set, and stored beside
the training run as `rerank_default.json`; `r2r rerank` and `Reranker` use it unless told otherwise.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from r2r_jax.data.candidates import QueryCandidates
from r2r_jax.retrieval.trec import Run, trec_order

METHODS = ("student", "interpolate", "rrf")
DEFAULT_FILE = "rerank_default.json"  # in a training run's folder, or an export's
RRF_K = 60  # Cormack et al.'s constant, pyserini's default


@dataclass(frozen=True)
class Fusion:
    """One way to turn student scores into a ranking (see the module docstring)."""

    method: str = "student"
    weight: float = 1.0  # the student's share (interpolate, rrf)
    depth: int | None = None  # rerank the first-stage top `depth` only; None: every candidate

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"fusion method {self.method!r}: expected one of {', '.join(METHODS)}")
        if not (isinstance(self.weight, (int, float)) and math.isfinite(self.weight) and 0 <= self.weight <= 1):
            raise ValueError(f"fusion weight {self.weight!r}: expected a number in [0, 1]")
        if self.depth is not None and (not isinstance(self.depth, int) or isinstance(self.depth, bool)
                                       or self.depth < 1):
            raise ValueError(f"fusion depth {self.depth!r}: expected a positive integer or null")

    def describe(self) -> str:
        depth = f"top {self.depth}" if self.depth else "every candidate"
        if self.method == "student":
            return f"student scores alone over {depth}"
        return f"{self.method} (student weight {self.weight:g}) over {depth}"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any], where: str = "fusion") -> Fusion:
        if not isinstance(obj, Mapping):
            raise ValueError(f"{where}: expected a JSON object")
        unknown = set(obj) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {sorted(unknown)}")
        try:
            return cls(**obj)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{where}: {e}") from None


STUDENT_ONLY = Fusion()


def first_stage_signal(qc: QueryCandidates) -> np.ndarray:
    """The first stage's score per candidate, in list order (see the module docstring)."""
    scores = np.asarray([c.score for c in qc.candidates], np.float64)
    if len(scores) > 1 and np.all(np.diff(scores) <= 0) and scores[0] > scores[-1]:
        return scores
    return -np.arange(len(scores), dtype=np.float64)


def _standardise(x: np.ndarray) -> np.ndarray:
    std = x.std()
    return (x - x.mean()) / std if std > 0 else np.zeros_like(x)


def _ranks(x: np.ndarray, docids: Sequence[str]) -> np.ndarray:
    """1-based rank of each entry under trec_eval's order (score descending, ties by docid descending)."""
    order = sorted(range(len(x)), key=lambda i: (x[i], docids[i]), reverse=True)
    ranks = np.empty(len(x), np.float64)
    ranks[order] = np.arange(1, len(x) + 1)
    return ranks


def fuse_query(qc: QueryCandidates, student: Mapping[str, float], fusion: Fusion) -> list[tuple[str, float]]:
    """The ranking of `qc`'s candidates (already cut to the rerank depth) in trec_eval order under `fusion`."""
    docids = [c.docid for c in qc.candidates]
    s = np.asarray([student[d] for d in docids], np.float64)
    if fusion.method == "student" or fusion.weight == 1.0:
        fused = s
    else:
        first = first_stage_signal(qc)
        if fusion.method == "interpolate":
            fused = fusion.weight * _standardise(s) + (1 - fusion.weight) * _standardise(first)
        else:
            fused = fusion.weight / (RRF_K + _ranks(s, docids)) + (1 - fusion.weight) / (RRF_K + _ranks(first, docids))
    return trec_order((d, float(v)) for d, v in zip(docids, fused, strict=True))


def split_at_depth(qc: QueryCandidates, depth: int | None) -> tuple[QueryCandidates, list[str]]:
    """(the candidates to rerank, the docids below the depth in first-stage order)."""
    if depth is None or depth >= len(qc.candidates):
        return qc, []
    return dataclasses.replace(qc, candidates=qc.candidates[:depth]), [c.docid for c in qc.candidates[depth:]]


def with_tail(hits: list[tuple[str, float]], tail: Sequence[str]) -> list[tuple[str, float]]:
    """`hits` followed by `tail` (first-stage order), scored below every reranked one."""
    floor = min((s for _, s in hits), default=0.0)
    return list(hits) + [(d, floor - 1.0 - i) for i, d in enumerate(tail)]


def fuse_run(items: Iterable[QueryCandidates], student_run: Mapping[str, Sequence[tuple[str, float]]],
             fusion: Fusion) -> Run:
    """A student run over full candidate lists, re-ranked offline under `fusion` (depth included): the same
    ranking `r2r rerank` writes with that setting, since scores are pointwise and the z-scores and ranks are
    taken over the reranked candidates only."""
    out: Run = {}
    for qc in items:
        scores = dict(student_run[qc.qid])
        head, tail = split_at_depth(qc, fusion.depth)
        missing = [c.docid for c in head.candidates if c.docid not in scores]
        if missing:
            raise ValueError(f"qid {qc.qid!r}: the student run has no score for {missing[:3]}")
        out[qc.qid] = with_tail(fuse_query(head, scores, fusion), tail)
    return out


def read_default(folder: str | Path) -> tuple[Fusion, dict[str, Any]] | None:
    """The stored default of a training run or export folder: (setting, the whole record); None if absent."""
    path = Path(folder) / DEFAULT_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: invalid JSON ({e.msg}, line {e.lineno})") from None
    if not isinstance(record, dict) or "fusion" not in record:
        raise ValueError(f"{path}: expected a JSON object with a 'fusion' field")
    return Fusion.from_dict(record["fusion"], where=f"{path}: field 'fusion'"), record


def resolve(folder: str | Path | None, *, student_only: bool = False, explicit: Fusion | None = None,
            depth: int | None = None) -> tuple[Fusion, str]:
    """(the ranking a student applies, where it came from), one rule for `r2r rerank` and `Reranker`: the
    student alone when asked, else an explicit setting, else the stored default of the student's `folder`
    (a training run or an export), else the student alone. A given `depth` replaces the setting's."""
    if student_only:
        fusion, source = STUDENT_ONLY, "--student-only"
    elif explicit is not None:
        fusion, source = explicit, "--fusion"
    else:
        stored = read_default(folder) if folder is not None else None
        fusion, source = (stored[0], "the student's stored default") if stored else (STUDENT_ONLY, "no stored default")
    return (fusion if depth is None else dataclasses.replace(fusion, depth=depth)), source
