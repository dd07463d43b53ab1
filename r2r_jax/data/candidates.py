"""First-stage candidates: rank_llm request JSONL (the project's interchange format) and RankGPT hits JSON.

rank_llm layout, one query a line:
`{"query": {"text", "qid"}, "candidates": [{"docid", "score", "doc": {"contents"}}]}`.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from r2r_jax.atomic import write_jsonl
from r2r_jax.data.records import RecordError, json_lines, text_lines


@dataclass
class ScoredPassage:
    docid: str
    text: str
    score: float = 0.0


@dataclass
class QueryCandidates:
    qid: str
    query: str
    candidates: list[ScoredPassage] = field(default_factory=list)

    def to_rank_llm(self) -> dict:
        return {
            "query": {"text": self.query, "qid": self.qid},
            "candidates": [{"docid": c.docid, "score": c.score, "doc": {"contents": c.text}} for c in self.candidates],
        }


def _parse_rank_llm(obj, path: str, line: int) -> QueryCandidates:
    if not isinstance(obj, dict):
        raise RecordError("expected a JSON object", path=path, line=line)
    q = obj.get("query")
    if not isinstance(q, dict) or "qid" not in q or not isinstance(q.get("text"), str):
        raise RecordError("expected {'text': str, 'qid': ...}", path=path, line=line, field_name="query")
    if not q["text"].strip():
        raise RecordError("empty query text", path=path, line=line, field_name="query.text")
    cands = obj.get("candidates")
    if not isinstance(cands, list):
        raise RecordError("expected a list", path=path, line=line, field_name="candidates")
    out, seen = [], set()
    for i, c in enumerate(cands):
        pre = f"candidates[{i}]"
        if not isinstance(c, dict) or "docid" not in c:
            raise RecordError("expected an object with 'docid'", path=path, line=line, field_name=pre)
        doc = c.get("doc")
        text = doc.get("contents", doc.get("text")) if isinstance(doc, dict) else None
        if not isinstance(text, str):
            raise RecordError("expected doc.contents text", path=path, line=line, field_name=pre + ".doc.contents")
        docid = str(c["docid"])
        if docid in seen:
            raise RecordError(f"duplicate docid {docid!r}", path=path, line=line, field_name=pre + ".docid")
        seen.add(docid)
        score = c.get("score", 0.0)
        if not isinstance(score, (int, float)):
            raise RecordError("expected a number", path=path, line=line, field_name=pre + ".score")
        out.append(ScoredPassage(docid, text, float(score)))
    return QueryCandidates(str(q["qid"]), q["text"], out)


def _parse_hits(items, path: str) -> list[QueryCandidates]:
    if not isinstance(items, list):
        raise RecordError("RankGPT hits JSON must be a list of {query, hits}", path=path)
    out = []
    for i, item in enumerate(items):
        where = f"[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("query"), str) or not isinstance(
            item.get("hits"), list
        ):
            raise RecordError("expected {'query': str, 'hits': [...]}", path=path, field_name=where)
        hits = item["hits"]
        if not hits:
            raise RecordError("no hits", path=path, field_name=where + ".hits")
        if not item["query"].strip():
            raise RecordError("empty query", path=path, field_name=where + ".query")
        # hits without 'rank' keep their list order; with 'rank' they are sorted by it
        order = sorted(range(len(hits)), key=lambda j: (hits[j].get("rank", j + 1), j))
        passages, qids = [], set()
        for j in order:
            h = hits[j]
            if not isinstance(h.get("content"), str) or "docid" not in h or "qid" not in h:
                raise RecordError("expected content, qid and docid", path=path, field_name=f"{where}.hits[{j}]")
            qids.add(str(h["qid"]))
            passages.append(ScoredPassage(str(h["docid"]), h["content"], float(h.get("score", 0.0))))
        if len(qids) != 1:
            raise RecordError(f"hits name several qids {sorted(qids)}", path=path, field_name=where + ".hits")
        out.append(QueryCandidates(qids.pop(), item["query"], passages))
    return out


def iter_candidates(path: str | Path) -> Iterator[QueryCandidates]:
    """rank_llm JSONL one query at a time, holding nothing but the qids seen (a corpus-size job streams), or
    RankGPT hits JSON (one JSON array: parsed whole). The format is detected from the first character."""
    path = str(path)
    lines = text_lines(path)  # one pass over the file, so a pipe (`--candidates <(...)`) can be read as well
    head: list[tuple[int, str]] = []  # the lines up to the first that is not blank
    for item in lines:
        head.append(item)
        if item[1].strip():
            break
    first = head[-1][1].lstrip()[:1] if head else ""
    if not first:
        raise RecordError("holds no queries (the file is empty)", path=path)
    if first == "[":
        try:
            yield from _parse_hits(json.loads("".join(line for _, line in [*head, *lines])), path)
        except json.JSONDecodeError as e:
            raise RecordError(f"invalid JSON ({e.msg} at line {e.lineno})", path=path) from None
        return
    qids: set[str] = set()
    for lineno, obj in json_lines(path, itertools.chain(head, lines)):
        qc = _parse_rank_llm(obj, path, lineno)
        if qc.qid in qids:
            raise RecordError(f"qid {qc.qid!r} appears twice", path=path, line=lineno, field_name="query.qid")
        qids.add(qc.qid)
        yield qc


def read_candidates(path: str | Path) -> list[QueryCandidates]:
    """Read rank_llm JSONL or RankGPT hits JSON (detected from the content)."""
    return list(iter_candidates(path))


def write_candidates(path: str | Path, items: Iterable[QueryCandidates]) -> int:
    """Write rank_llm JSONL atomically; returns the number of queries."""
    return write_jsonl(path, (qc.to_rank_llm() for qc in items))
