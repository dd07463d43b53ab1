"""Hard negatives for training records: BM25's best passages for a query among other queries' passages.

A teacher window is BM25's top few passages, so a student trained on it (plus random passages of other
queries) never sees what fills the rest of a top-100: passages on the query's topic that do not answer it.
Mining them from the record set itself needs no corpus: every record's candidates are pooled, indexed with
bm25s (the embedded backend, `bm25.py`), and each query keeps its best-scoring passages that belong to other
queries — rarely an answer to this one, since the pooled queries are different questions. `skip` drops the
very top hits, the usual guard against a near-duplicate question's answer (false negatives). `spread` takes
the negatives at evenly spaced ranks of BM25's top `spread` instead of the very best: a top-100 rerank shows
the student passages from every depth, and negatives drawn only from the top few never show it the rest.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path

from r2r_jax.data.records import Candidate, TeacherRecord
from r2r_jax.retrieval.bm25 import Bm25Params, Bm25sIndex

SEARCH_MARGIN = 8  # extra hits fetched beyond what a record needs, for duplicates of its own passages


def pooled_corpus(records: Sequence[TeacherRecord], path: Path) -> None:
    """Write every record's candidates, one line per distinct docid, as a JSONL corpus."""
    seen: set[str] = set()
    with open(path, "w", encoding="utf-8") as f:
        for rec in records:
            for c in rec.candidates:
                if c.docid not in seen:
                    seen.add(c.docid)
                    f.write(json.dumps({"docid": c.docid, "text": c.text}, ensure_ascii=False) + "\n")


def spread_ranks(count: int, depth: int) -> list[int]:
    """`count` distinct ranks evenly spaced over `range(depth)`, the first 0 (`depth >= count`)."""
    return [i * depth // count for i in range(count)]


def mine_negatives(records: Sequence[TeacherRecord], count: int, *, skip: int = 0, spread: int | None = None,
                   params: Bm25Params | None = None, progress: bool = False) -> list[TeacherRecord]:
    """`records` with `negatives` set to up to `count` passages of other records, BM25's best for the query
    after the first `skip` — or, with `spread`, those at `spread_ranks(count, spread)` of the ones after `skip`,
    spread over fewer where the query matches fewer (a record's own docids and texts never count). Records
    whose query matches fewer passages than `count` get fewer; `short_records` names them."""
    if spread is not None and spread < count:
        raise ValueError(f"spread {spread} is below count {count}")
    last = (spread if spread is not None else count) - 1
    with tempfile.TemporaryDirectory(prefix="r2r-mine-") as tmp:
        corpus = Path(tmp) / "pool.jsonl"
        pooled_corpus(records, corpus)
        index = Bm25sIndex.build(corpus, params or Bm25Params(), Path(tmp) / "index", progress=progress)
        try:
            wanted = max(len(r.candidates) for r in records) + skip + last + 1 + SEARCH_MARGIN
            hits = index.search([(r.qid, r.query) for r in records], wanted, progress=progress)
        finally:
            index.close()
    out = []
    for rec, found in zip(records, hits, strict=True):
        own_ids, own_texts = {c.docid for c in rec.candidates}, {c.text for c in rec.candidates}
        others = [p for p in found.candidates if p.docid not in own_ids and p.text not in own_texts]
        deep = others[skip:]
        if spread is not None:  # a query matching fewer than `spread` passages spreads over those it matches
            deep = [deep[i] for i in spread_ranks(count, min(spread, len(deep)))] if len(deep) > count else deep
        picked = [Candidate(p.docid, p.text, p.score) for p in deep[:count]]
        out.append(dataclasses.replace(rec, negatives=picked))
    return out


def short_records(records: Sequence[TeacherRecord], count: int) -> list[str]:
    """qids of records with fewer than `count` negatives."""
    return [r.qid for r in records if len(r.negatives) < count]
