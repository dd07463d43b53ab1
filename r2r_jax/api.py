"""`Reranker`: a trained student as a Python object — load once, then rank a query's passages in one line.

    reranker = Reranker.load("runs/r2r")
    for r in reranker.rank("what is a tsunami", passages, explain=1):
        print(r.index, r.score, r.reason)

It is a thin layer over `r2r rerank`'s own parts, so a script and the command rank alike: the same loaders,
the same ranking setting (the student folder's stored `rerank_default.json` unless told otherwise, resolved
by `inference.fusion.resolve`, the command's rule), the same depth handling and the same engine (`rerank.job.rerank`:
length-sorted batches, shared prompt prefixes, jitted steps kept on the student, so repeated calls compile
once per shape). Only the bookkeeping differs: plain strings get made-up qids and docids, and results come
back as `Ranked` records that point into the caller's own list.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import jax

from r2r_jax.checkpoint import run_folder
from r2r_jax.config import MeshConfig
from r2r_jax.data.candidates import QueryCandidates, ScoredPassage
from r2r_jax.inference.fusion import STUDENT_ONLY, Fusion, resolve, split_at_depth, with_tail
from r2r_jax.parallel.mesh import make_mesh
from r2r_jax.rerank.explain_plan import ExplainPlan
from r2r_jax.rerank.job import rerank, validate_candidates
from r2r_jax.trained.loading import RerankStudent, load_from_checkpoint, load_from_hf


@dataclass(frozen=True)
class Ranked:
    """One passage of a ranking: `index` is its position in the list given, `reason` its decoded direct
    reason when it is among the top `explain`, else None."""

    index: int
    score: float
    text: str
    reason: str | None = None


def is_export(path: str | Path) -> bool:
    """A merged Hugging Face folder (config.json beside the weights) rather than a training run: a run
    folder, its checkpoints/ and a step folder never hold a config.json."""
    return (Path(path) / "config.json").is_file()


def _as_candidates(i: int, query: str, passages: Sequence[str], scores: Sequence[float] | None) -> QueryCandidates:
    """Plain strings as the engine's records (qid `q<i>`, docids `d<j>`), checked for what the record readers
    would refuse in a file: Python callers get a ValueError naming the argument, not a TypeError deep inside."""
    if not isinstance(query, str):
        raise ValueError(f"query {i}: expected a str, got {type(query).__name__}")
    if isinstance(passages, str) or not isinstance(passages, Sequence):
        raise ValueError(f"query {i}: passages must be a list of str, got {type(passages).__name__}")
    if not passages:
        raise ValueError(f"query {i}: passages is empty: nothing to rank")
    for j, p in enumerate(passages):
        if not isinstance(p, str):
            raise ValueError(f"query {i}: passages[{j}] is a {type(p).__name__}, expected a str")
    if scores is None:  # equal scores: fusion falls back to the list order (fusion.first_stage_signal)
        scores = [0.0] * len(passages)
    elif isinstance(scores, str) or not isinstance(scores, Sequence) or len(scores) != len(passages):
        raise ValueError(f"query {i}: scores must be a list of {len(passages)} numbers, one per passage")
    for j, s in enumerate(scores):
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not math.isfinite(s):
            raise ValueError(f"query {i}: scores[{j}] is {s!r}, expected a finite number")
    return QueryCandidates(f"q{i}", query, [ScoredPassage(f"d{j}", p, float(s))
                                            for j, (p, s) in enumerate(zip(passages, scores, strict=True))])


class Reranker:
    """A student and the ranking setting it applies. Build with `Reranker.load`, or wrap a `RerankStudent`
    loaded by `r2r_jax.trained.loading` directly (then `fusion` is what you pass, default the student alone)."""

    def __init__(self, student: RerankStudent, fusion: Fusion = STUDENT_ONLY, batch_size: int = 32):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.student, self.fusion, self.batch_size = student, fusion, batch_size

    def __repr__(self) -> str:
        return f"Reranker({self.student.source}; {self.fusion.describe()}; batch_size {self.batch_size})"

    @classmethod
    def load(cls, path: str | Path, *, base_model: str | None = None, tokenizer: str | None = None,
             dtype: str = "bfloat16", batch_size: int = 32, fusion: Fusion | None = None,
             student_only: bool = False) -> Reranker:
        """A student from a training run (its folder, its checkpoints/ or checkpoints/<step>) or from a merged
        Hugging Face export holding `score.weight`, on this host's devices.

        The ranking setting follows `r2r rerank`: `fusion` if given, the student alone with `student_only`,
        else the student folder's stored `rerank_default.json` (from `r2r tune-fusion`), else the student
        alone. It is read before the weights, so a broken default fails in milliseconds. `dtype` applies to an
        export (a checkpoint computes in its training config's dtype); on CPU an export loads with the loop
        attention and unrolled layers, the faster choice there (docs/benchmarks.md)."""
        if not Path(path).exists():
            raise FileNotFoundError(f"{path}: no such training run or export folder")
        export = is_export(path)
        if export and base_model:
            raise ValueError("base_model goes with a training checkpoint, not an export folder")
        if fusion is not None:
            if student_only:
                raise ValueError("give fusion or student_only, not both")
            if not isinstance(fusion, Fusion):
                raise ValueError(f"fusion must be an r2r_jax.inference.fusion.Fusion, got {type(fusion).__name__}")
        fusion, _ = resolve(Path(path) if export else run_folder(path), student_only=student_only, explicit=fusion)
        mesh = make_mesh(MeshConfig(), jax.local_devices())
        if export:
            cpu = jax.default_backend() == "cpu"
            student = load_from_hf(path, mesh, dtype, "loop" if cpu else "xla", tokenizer, scan_layers=not cpu)
        else:
            student = load_from_checkpoint(path, mesh, base_model, tokenizer)
        return cls(student, fusion, batch_size)

    def rank(self, query: str, passages: Sequence[str], explain: int = 0,
             scores: Sequence[float] | None = None) -> list[Ranked]:
        """`passages` best first. `scores` are the first stage's (BM25's), used only by a fusing setting;
        without them the list order is the first-stage ranking. `explain` K decodes a direct reason for each
        of the top K (a student with an LM head only: a training run or a causal-lm export)."""
        return self._rank([_as_candidates(0, query, passages, scores)], explain)[0]

    def rerank_batch(self, items: Iterable[tuple[str, Sequence[str]] | QueryCandidates],
                     explain: int = 0) -> list[list[Ranked]]:
        """`rank` for many queries at once, one ranking per item in input order. An item is a (query, passages)
        pair or a `QueryCandidates` (its own qid, docids and first-stage scores). All queries' prompts are
        pooled into length-sorted batches, which is what makes this faster than a loop over `rank`."""
        records = []
        for i, item in enumerate(items):
            if isinstance(item, QueryCandidates):
                records.append(item)
            elif isinstance(item, tuple | list) and len(item) == 2:
                records.append(_as_candidates(i, item[0], item[1], None))
            else:
                raise ValueError(f"item {i}: expected a (query, passages) pair or a QueryCandidates, "
                                 f"got {type(item).__name__}")
        return self._rank(records, explain)

    def _rank(self, records: list[QueryCandidates], explain: int) -> list[list[Ranked]]:
        """The command's path: check, cut each list at the setting's depth, rerank the heads in one job, put
        each tail back below its head in first-stage order, then map docids back to list positions."""
        if not records:
            return []
        validate_candidates(records, source="rerank input")  # RecordError, a ValueError naming query and field
        heads, tails = zip(*(split_at_depth(qc, self.fusion.depth) for qc in records), strict=True)
        # only direct reasons come back: decoding comparison reasons would be time thrown away
        result = rerank(self.student, list(heads), batch_size=self.batch_size,
                        explain=ExplainPlan.top(explain, "none"), fusion=self.fusion, progress=False)
        out = []
        for qc, tail in zip(records, tails, strict=True):
            where = {c.docid: (j, c.text) for j, c in enumerate(qc.candidates)}
            expl = result.explanations.get(qc.qid)
            reasons = {r.docid: r.reason for r in expl.direct} if expl else {}
            out.append([Ranked(where[d][0], s, where[d][1], reasons.get(d))
                        for d, s in with_tail(result.run[qc.qid], tail)])
        return out
