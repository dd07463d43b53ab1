"""TREC run and qrels files, and a run + corpus as candidate lists: the formats the IR field uses.

Run line: `qid Q0 docid rank score tag`. Qrels line: `qid Q0 docid grade` (many files put 0 in place of Q0;
trec_eval ignores that column, and so do we); BEIR's qrels TSV (a `query-id corpus-id score` header, then
`qid docid grade`) is read too. Every problem is a `RecordError` naming file, line and field.

A run is held as `{qid: [(docid, score), ...]}`, best first. trec_eval ranks by score (highest first, ties by
docid, descending) and ignores the rank column; `read_run` returns hits in that order so that what a reader
sees is what trec_eval scores.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Literal

from r2r_jax.atomic import atomic_write
from r2r_jax.data.candidates import QueryCandidates, ScoredPassage
from r2r_jax.data.records import RecordError, text_lines
from r2r_jax.retrieval.inputs import iter_corpus, read_queries

Run = dict[str, list[tuple[str, float]]]  # qid -> [(docid, score)], best first
Qrels = dict[str, dict[str, int]]  # qid -> {docid: grade}

RUN_FIELDS = ("qid", "Q0", "docid", "rank", "score", "tag")
QREL_FIELDS = ("qid", "Q0", "docid", "grade")
BEIR_QREL_FIELDS = ("query-id", "corpus-id", "score")  # BEIR's qrels/<split>.tsv header, then qid docid grade


def _lines(path: str) -> Iterable[tuple[int, list[str]]]:
    """Non-blank lines split on whitespace, with 1-based line numbers."""
    for lineno, raw in text_lines(path):
        parts = raw.split()
        if parts:
            yield lineno, parts


def trec_order(hits: Iterable[tuple[str, float]]) -> list[tuple[str, float]]:
    """trec_eval's order: score descending, ties broken by docid descending."""
    return sorted(hits, key=lambda h: (h[1], h[0]), reverse=True)


def read_run(path: str | Path) -> Run:
    """Read a TREC run; hits per query in trec_eval's order. Duplicate (qid, docid) pairs are errors."""
    path = str(path)
    run: dict[str, dict[str, float]] = {}
    for lineno, parts in _lines(path):
        if len(parts) != 6:
            raise RecordError(f"expected 6 fields {' '.join(RUN_FIELDS)}, got {len(parts)}", path=path, line=lineno)
        qid, _, docid, rank, score, _ = parts
        try:
            int(rank)
        except ValueError:
            raise RecordError(f"expected an integer, got {rank!r}", path=path, line=lineno,
                              field_name="rank") from None
        try:
            value = float(score)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise RecordError(f"expected a finite number, got {score!r}", path=path, line=lineno,
                              field_name="score")
        hits = run.setdefault(qid, {})
        if docid in hits:
            raise RecordError(f"docid {docid!r} appears twice for qid {qid!r}", path=path, line=lineno,
                              field_name="docid")
        hits[docid] = value
    if not run:
        raise RecordError("empty run: no result lines", path=path)
    return {qid: trec_order(hits.items()) for qid, hits in run.items()}


def _atomic_write(path: str | Path, lines: Iterable[str]) -> None:
    with atomic_write(path) as f:
        for line in lines:
            f.write(line)


def check_tag(tag: str) -> None:
    """A run tag is the last of a TREC line's whitespace-separated columns: one non-empty word."""
    if not tag or any(c.isspace() for c in tag):
        raise ValueError(f"run tag must be one non-empty word, got {tag!r}")


def write_run(path: str | Path, run: Mapping[str, Sequence[tuple[str, float]]], tag: str = "r2r") -> int:
    """Write a TREC run atomically (temp file + rename); returns the number of lines.

    Each query's hits are written in the given order with ranks 1..n; the scores must not increase down the
    list, because trec_eval ranks by score, not by the rank column. Equal scores are allowed, but trec_eval
    then orders them by docid.
    """
    check_tag(tag)
    for qid, hits in run.items():
        if not str(qid) or any(c.isspace() for c in str(qid)):
            raise ValueError(f"qid {qid!r} is empty or contains whitespace")
        seen: set[str] = set()
        for i, (docid, score) in enumerate(hits):
            if docid in seen or not docid or any(c.isspace() for c in docid):
                raise ValueError(f"qid {qid!r}: docid {docid!r} is duplicated, empty or contains whitespace")
            seen.add(docid)
            if not math.isfinite(score):
                raise ValueError(f"qid {qid!r}: docid {docid!r} has score {score}")
            if i and score > hits[i - 1][1]:
                raise ValueError(f"qid {qid!r}: scores increase at rank {i + 1} ({hits[i - 1][1]} < {score}); "
                                 "sort the hits by score first")
    count = sum(len(h) for h in run.values())
    _atomic_write(path, (f"{qid} Q0 {docid} {rank} {float(score)!r} {tag}\n"
                         for qid, hits in run.items() for rank, (docid, score) in enumerate(hits, start=1)))
    return count


def candidates_to_run(items: Iterable[QueryCandidates], scores: Literal["first_stage", "rank"] = "first_stage") -> Run:
    """A run from candidate lists, whose list order is the rank.

    `scores="first_stage"` keeps the candidates' own scores and fails if they contradict the list order;
    `scores="rank"` writes n, n-1, ..., 1 (for candidate files whose scores are missing or not comparable).
    """
    run: Run = {}
    for qc in items:
        if qc.qid in run:
            raise ValueError(f"qid {qc.qid!r} appears twice among the candidates")
        n = len(qc.candidates)
        if scores == "rank":
            run[qc.qid] = [(c.docid, float(n - i)) for i, c in enumerate(qc.candidates)]
        else:
            hits = [(c.docid, float(c.score)) for c in qc.candidates]
            for i in range(1, n):
                if hits[i][1] > hits[i - 1][1]:
                    raise ValueError(f"qid {qc.qid!r}: candidate scores increase at position {i + 1}; "
                                     "use scores='rank' to rank by list order")
            run[qc.qid] = hits
    return run


def read_qrels(path: str | Path) -> Qrels:
    """Read qrels: TREC (`qid Q0 docid grade`, or 0 in place of Q0), or BEIR's TSV, recognised by its header line
    `query-id corpus-id score` and then `qid docid grade`. A docid judged twice differently is an error. Only a
    file that starts with BEIR's header is read as three columns, so a TREC line missing a field stays an error."""
    path = str(path)
    qrels: Qrels = {}
    fields: tuple[str, ...] | None = None
    for lineno, parts in _lines(path):
        if fields is None:
            fields = BEIR_QREL_FIELDS if tuple(p.lower() for p in parts) == BEIR_QREL_FIELDS else QREL_FIELDS
            if fields is BEIR_QREL_FIELDS:
                continue
        if len(parts) != len(fields):
            raise RecordError(f"expected {len(fields)} fields {' '.join(fields)}, got {len(parts)}", path=path,
                              line=lineno)
        qid, docid, grade = parts if fields is BEIR_QREL_FIELDS else (parts[0], parts[2], parts[3])
        try:
            value = int(grade)
        except ValueError:
            raise RecordError(f"expected an integer grade, got {grade!r}", path=path, line=lineno,
                              field_name="grade") from None
        judged = qrels.setdefault(qid, {})
        if judged.get(docid, value) != value:
            raise RecordError(f"docid {docid!r} of qid {qid!r} judged {judged[docid]} and {value}", path=path,
                              line=lineno, field_name="grade")
        judged[docid] = value
    if not qrels:
        raise RecordError("empty qrels: no judgement lines", path=path)
    return qrels


def read_run_candidates(run_path: str | Path, corpus_path: str | Path, queries: Mapping[str, str] | str | Path,
                        depth: int | None = None) -> list[QueryCandidates]:
    """A TREC run + corpus (+ query texts: a mapping or a queries file) as candidate lists, in run order.

    Queries and corpus are read by `r2r_jax.retrieval.inputs` (TSV, JSONL, TREC topics); the corpus is
    streamed and only the passages the run names are kept. `depth` keeps each query's top `depth` hits.
    Every qid needs a query text and every docid a passage.
    """
    run = read_run(run_path)
    if depth is not None:
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        run = {qid: hits[:depth] for qid, hits in run.items()}
    texts = dict(read_queries(queries)) if isinstance(queries, (str, Path)) else dict(queries)
    missing_q = [qid for qid in run if qid not in texts]
    if missing_q:
        raise RecordError(f"{len(missing_q)} run qids have no query text, e.g. {missing_q[:5]}",
                          path=str(run_path), field_name="qid")
    wanted = {docid for hits in run.values() for docid, _ in hits}
    corpus = {docid: text for docid, text in iter_corpus(corpus_path) if docid in wanted}
    missing_d = sorted(wanted - corpus.keys())
    if missing_d:
        raise RecordError(f"{len(missing_d)} run docids are not in the corpus, e.g. {missing_d[:5]}",
                          path=str(corpus_path), field_name="docid")
    return [QueryCandidates(qid, texts[qid], [ScoredPassage(d, corpus[d], s) for d, s in hits])
            for qid, hits in run.items()]
