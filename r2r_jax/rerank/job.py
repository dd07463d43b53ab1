"""The batch rerank job: candidates + student -> a reranked run (+ explanations), on every device and host.

Each process reranks its share of the queries (round-robin by `jax.process_index()`) on its own devices, so
hosts never wait on each other while scoring; the results are then all-gathered (as JSON bytes through JAX's
collectives, no shared file system needed) and every process holds the complete, input-ordered result.
Only process 0 writes files.

A reranked list is a permutation of its candidate list, checked for every query. Order: score descending,
ties by docid descending — trec_eval's own order, so the rank column is exactly what trec_eval scores.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import jax
import numpy as np

from r2r_jax.atomic import write_jsonl
from r2r_jax.data.candidates import QueryCandidates
from r2r_jax.data.records import RecordError
from r2r_jax.data.templates import TruncationStats
from r2r_jax.inference.fusion import STUDENT_ONLY, Fusion, fuse_query, with_tail
from r2r_jax.inference.scoring import rank_query, score_candidates
from r2r_jax.parallel.batch import data_parallel_size
from r2r_jax.rerank.explain import QueryExplanation, explain_rankings
from r2r_jax.rerank.explain_plan import ExplainPlan
from r2r_jax.retrieval.trec import Run, write_run
from r2r_jax.trained.loading import RerankStudent


@dataclass
class RerankResult:
    run: Run  # qid -> [(docid, score)], best first; queries in input order
    explanations: dict[str, QueryExplanation] = field(default_factory=dict)
    docs: int = 0
    score_seconds: float = 0.0
    explain_seconds: float = 0.0
    truncation: TruncationStats = field(default_factory=TruncationStats)  # scoring prompts cut to fit

    @property
    def docs_per_second(self) -> float:
        return self.docs / self.score_seconds if self.score_seconds > 0 else float("nan")


def _jsonl_line(source: str, index: int) -> int | None:
    """The line of the `index`-th record when `source` is a JSONL file (read again only to report an error)."""
    try:
        with open(source, encoding="utf-8") as f:
            if not f.read(4096).lstrip().startswith("{"):
                return None
            f.seek(0)
            lines = (n for n, raw in enumerate(f, start=1) if raw.strip())
            return next((n for k, n in enumerate(lines) if k == index), None)
    except OSError:
        return None


def validate_candidates(items: Iterable[QueryCandidates], source: str = "candidates") -> int:
    """What a TREC run cannot hold or a rerank cannot keep a permutation of, reported before any model loads:
    file, line (for JSONL) and field. One pass over a stream, holding only the qids; returns their count."""
    seen: set[str] = set()

    def fail(i: int, qc: QueryCandidates, field: str, message: str):
        raise RecordError(message, path=source, line=_jsonl_line(source, i),
                          field_name=f"query[{i}] (qid {qc.qid!r}){field}")

    for i, qc in enumerate(items):
        if not qc.qid or any(c.isspace() for c in qc.qid):
            fail(i, qc, ".qid", "qid is empty or contains whitespace")
        if qc.qid in seen:
            fail(i, qc, ".qid", "qid appears twice")
        seen.add(qc.qid)
        if not qc.query.strip():
            fail(i, qc, ".query", "empty query text")
        if not qc.candidates:
            fail(i, qc, ".candidates", "no candidates")
        docids: set[str] = set()
        for j, c in enumerate(qc.candidates):
            if not c.docid or any(ch.isspace() for ch in c.docid):
                fail(i, qc, f".candidates[{j}].docid", f"docid {c.docid!r} is empty or contains whitespace")
            if c.docid in docids:
                fail(i, qc, f".candidates[{j}].docid", f"docid {c.docid!r} appears twice")
            docids.add(c.docid)
    return len(seen)


def with_first_stage_tail(run: Run, tails: dict[str, list[str]]) -> Run:
    """Each query's reranked list followed by `tails[qid]` (the candidates below the rerank depth, in
    first-stage order), scored below every reranked one so any sort by score keeps that order."""
    return {qid: with_tail(hits, tails.get(qid, [])) for qid, hits in run.items()}


def gather_from_all(payload: dict) -> list[dict]:
    """Every process's payload, in process order (JSON bytes all-gathered through JAX's collectives)."""
    if jax.process_count() == 1:
        return [payload]
    from jax.experimental import multihost_utils

    data = np.frombuffer(json.dumps(payload).encode(), np.uint8)
    sizes = np.asarray(multihost_utils.process_allgather(np.asarray([data.size], np.int32))).reshape(-1)
    padded = np.zeros(int(sizes.max()), np.uint8)
    padded[: data.size] = data
    blobs = np.asarray(multihost_utils.process_allgather(padded)).reshape(len(sizes), -1)
    return [json.loads(bytes(blobs[p, : int(sizes[p])])) for p in range(len(sizes))]


def _bar(total: int, desc: str, unit: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, disable=not enabled)


def rerank(student: RerankStudent, items: Sequence[QueryCandidates], *, batch_size: int = 32, explain_top: int = 0,
           max_new_tokens: int | None = None, temperature: float = 0.0, seed: int = 0, progress: bool = True,
           share_prefix: bool = True, fusion: Fusion = STUDENT_ONLY, explain: ExplainPlan | None = None,
           ) -> RerankResult:
    """Rerank every query's candidates with the student, its scores combined with the first stage's as
    `fusion` says (`inference.fusion`; its depth is the caller's: `items` are the candidates to rerank); with
    `explain` (an `ExplainPlan`: ranks and comparison format; `explain_top` K > 0 is ranks 1-K in listwise
    windows) also decode reasons for those ranks of that ranking (at most `max_new_tokens` tokens each,
    default the trained target length).

    `batch_size` is rounded up to a multiple of the mesh's data-parallel size. With `share_prefix` each
    query's common prompt prefix runs once (`inference.prefix`; the same scores, fewer positions). Every process
    must call this with the same `items`; each scores its share and all return the complete result. `items`
    are as `validate_candidates` accepts them: callers check once, before loading a student (the CLI does)."""
    if explain is not None and explain_top:
        raise ValueError("give explain_top or explain, not both")
    plan = explain if explain is not None else ExplainPlan.top(explain_top)
    if plan and not student.has_lm_head:  # fail before spending the scoring time
        raise ValueError(f"{student.source} has no LM head (a seq-cls export); explanations need the causal-lm "
                         "head: rerank from --checkpoint or a folder that holds lm_head.weight")
    mesh, dp = student.mesh, data_parallel_size(student.mesh)
    batch_size = -(-max(batch_size, 1) // dp) * dp
    show = progress and jax.process_index() == 0
    share = list(items[jax.process_index():: jax.process_count()])
    local_docs = sum(len(qc.candidates) for qc in share)
    pr = student.prompts

    start = time.perf_counter()
    truncation = TruncationStats()
    with _bar(local_docs, "score", "doc", show) as bar:
        scores = score_candidates(student.score_fn(), student.variables, student.tokenizer, share,
                                  pr.prompt_template, pr.max_prompt_len, batch_size, mesh, progress=bar.update,
                                  prefix_steps=student.prefix_steps() if share_prefix else None,
                                  truncation=truncation)
    local_run = {qc.qid: fuse_query(qc, dict(rank_query(qc, scores[qc.qid])), fusion) for qc in share}
    gathered = gather_from_all({"run": local_run, "truncation": dataclasses.astuple(truncation)})
    total = TruncationStats()
    for part in gathered:
        total.record(*part["truncation"])
    score_seconds = time.perf_counter() - start

    explain_seconds, all_expl = 0.0, {}
    if plan:
        start = time.perf_counter()
        ranked = [(qc, [d for d, _ in local_run[qc.qid]]) for qc in share]
        rows = sum(plan.count(len(qc.candidates)) for qc in share)
        with _bar(rows, "explain", "reason", show) as bar:
            expl = explain_rankings(student, ranked, plan, max_new_tokens or pr.max_target_len, batch_size,
                                    mesh, temperature, seed, progress=bar.update)
        for part in gather_from_all({"explanations": {qid: e.to_dict() for qid, e in expl.items()}}):
            all_expl.update(part["explanations"])
        explain_seconds = time.perf_counter() - start

    merged: dict[str, list] = {}
    for part in gathered:
        merged.update(part["run"])
    if set(merged) != {qc.qid for qc in items}:
        raise RuntimeError("gathered results do not cover exactly the input queries")
    run = {qc.qid: [(str(d), float(s)) for d, s in merged[qc.qid]] for qc in items}
    expl_out = {qc.qid: QueryExplanation.from_dict(all_expl[qc.qid]) for qc in items if qc.qid in all_expl}
    return RerankResult(run, expl_out, sum(len(qc.candidates) for qc in items), score_seconds, explain_seconds,
                        total)


def explanation_records(result: RerankResult, items: Sequence[QueryCandidates]) -> list[dict]:
    """One JSON object per query: the reranked list with scores, and its reasons when explained."""
    out = []
    for qc in items:
        first_stage = {c.docid: i + 1 for i, c in enumerate(qc.candidates)}
        text = {c.docid: c.text for c in qc.candidates}
        rec = {"qid": qc.qid, "query": qc.query,
               "ranking": [{"rank": r, "docid": d, "score": s, "first_stage_rank": first_stage[d]}
                           for r, (d, s) in enumerate(result.run[qc.qid], start=1)]}
        if qc.qid in result.explanations:
            e = result.explanations[qc.qid].to_dict()
            for d in e["direct_reasons"]:
                d["passage"] = text[d["docid"]]
            rec.update(e)
        out.append(rec)
    return out


def write_outputs(result: RerankResult, items: Sequence[QueryCandidates], output: str | Path | None,
                  tag: str = "r2r", explanations: str | Path | None = None) -> None:
    """The TREC run and the explanations JSONL (atomically); only process 0 writes."""
    if jax.process_index() != 0:
        return
    if output is not None:
        write_run(output, result.run, tag=tag)
    if explanations is not None:
        write_jsonl(explanations, explanation_records(result, items))
