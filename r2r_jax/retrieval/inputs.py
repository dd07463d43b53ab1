"""Queries and corpora for first-stage retrieval, in the layouts the IR field ships them.

Queries: TSV (`qid<TAB>text`), JSONL (`{"qid"|"query_id"|"id"|"_id", "text"|"query"|"title"}`) or TREC
topics (`<top><num> Number: 301 <title> ...</top>`). Corpus: JSONL (`{"id"|"docid"|"_id", "contents"|"text"}`,
a BEIR-style `title` is prefixed to `text`) or TSV (`docid<TAB>text`). The layout is read from the content, not
the file name. The corpus is streamed so an 8.8M-passage collection is never held as Python objects twice.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

from r2r_jax.atomic import overlaps
from r2r_jax.data.records import RecordError, read_text, text_lines


class RetrievalError(RuntimeError):
    """A retrieval set-up that cannot work (missing index, wrong parameters, Java); the message says why."""


_QID_KEYS = ("qid", "query_id", "id", "_id")
_QTEXT_KEYS = ("text", "query", "title")
_DOCID_KEYS = ("id", "docid", "_id")
_TOPIC_RE = re.compile(r"<top>(.*?)</top>", re.S | re.I)
_NUM_RE = re.compile(r"<num>\s*(?:Number:)?\s*(\S+)", re.I)
_TITLE_RE = re.compile(r"<title>\s*(?:Topic:)?\s*(.*?)\s*(?=<\w+>|$)", re.S | re.I)


def _first_key(obj: dict, keys: tuple[str, ...]) -> str | None:
    return next((k for k in keys if k in obj), None)


def _json_line(raw: str, path: str, lineno: int) -> dict:
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as e:
        raise RecordError(f"invalid JSON ({e.msg} at column {e.colno})", path=path, line=lineno) from None
    if not isinstance(obj, dict):
        raise RecordError("expected a JSON object", path=path, line=lineno)
    return obj


def _query_from_json(obj: dict, path: str, lineno: int) -> tuple[str, str]:
    qk, tk = _first_key(obj, _QID_KEYS), _first_key(obj, _QTEXT_KEYS)
    if qk is None or not isinstance(obj[qk], (str, int)):
        raise RecordError("expected a query id (string or integer)", path=path, line=lineno,
                          field_name=qk or "qid")
    if tk is None or not isinstance(obj[tk], str):
        raise RecordError("expected query text", path=path, line=lineno, field_name=tk or "text")
    return str(obj[qk]).strip(), obj[tk]


def _trec_topics(text: str, path: str) -> list[tuple[str, str]]:
    out = []
    for i, m in enumerate(_TOPIC_RE.finditer(text)):
        num, title = _NUM_RE.search(m.group(1)), _TITLE_RE.search(m.group(1))
        if not num:
            raise RecordError("topic without <num>", path=path, field_name=f"topic[{i}].num")
        if not title or not title.group(1).strip():
            raise RecordError(f"topic {num.group(1)} without <title>", path=path, field_name=f"topic[{i}].title")
        out.append((num.group(1), " ".join(title.group(1).split())))
    return out


def read_queries(path: str | Path) -> list[tuple[str, str]]:
    """(qid, text) pairs in file order; duplicate qids, qids with whitespace and empty texts are errors naming
    the line."""
    path = str(path)
    text = read_text(path)
    if re.search(r"<top>", text, re.I):
        pairs = [(q, t, None) for q, t in _trec_topics(text, path)]
    else:
        pairs = []
        for lineno, raw in enumerate(text.splitlines(), start=1):
            if not raw.strip():
                continue
            if raw.lstrip().startswith("{"):
                qid, qtext = _query_from_json(_json_line(raw, path, lineno), path, lineno)
            else:
                qid, sep, qtext = raw.partition("\t")
                if not sep or not qid.strip():
                    raise RecordError("expected qid<TAB>text (or a JSON object)", path=path, line=lineno)
            pairs.append((qid.strip(), qtext, lineno))
    seen: set[str] = set()
    out = []
    for qid, qtext, lineno in pairs:
        if not qtext.strip():
            raise RecordError(f"empty text for qid {qid!r}", path=path, line=lineno, field_name="text")
        if any(c.isspace() for c in qid):  # a TREC run's columns are split on whitespace
            raise RecordError(f"qid {qid!r} contains whitespace, which a TREC run cannot hold", path=path,
                              line=lineno, field_name="qid")
        if qid in seen:
            raise RecordError(f"qid {qid!r} appears twice", path=path, line=lineno, field_name="qid")
        seen.add(qid)
        out.append((qid, qtext.strip()))
    if not out:
        raise RecordError("no queries found", path=path)
    return out


def _doc_from_json(obj: dict, path: str, lineno: int) -> tuple[str, str]:
    dk = _first_key(obj, _DOCID_KEYS)
    if dk is None or not isinstance(obj[dk], (str, int)):
        raise RecordError("expected a document id (string or integer)", path=path, line=lineno,
                          field_name=dk or "id")
    tk = "contents" if "contents" in obj else "text"
    if not isinstance(obj.get(tk), str):
        raise RecordError("expected text", path=path, line=lineno, field_name=tk)
    text = obj[tk]
    title = obj.get("title")
    if tk == "text" and isinstance(title, str) and title.strip():
        text = f"{title.strip()} {text}"
    return str(obj[dk]), text


def iter_corpus(path: str | Path) -> Iterator[tuple[str, str]]:
    """Stream (docid, text); duplicate docids and docids with whitespace are errors naming the line."""
    path = str(path)
    seen: set[str] = set()
    for lineno, raw in text_lines(path):
        if not raw.strip():
            continue
        if raw.lstrip().startswith("{"):
            docid, text = _doc_from_json(_json_line(raw, path, lineno), path, lineno)
        else:
            docid, sep, text = raw.rstrip("\r\n").partition("\t")
            if not sep or not docid.strip():
                raise RecordError("expected docid<TAB>text (or a JSON object)", path=path, line=lineno)
            docid = docid.strip()
        if not docid or any(c.isspace() for c in docid):
            raise RecordError(f"docid {docid!r} is empty or contains whitespace, which a TREC run cannot hold",
                              path=path, line=lineno)
        if docid in seen:
            raise RecordError(f"docid {docid!r} appears twice", path=path, line=lineno)
        seen.add(docid)
        yield docid, text


def corpus_fingerprint(path: str | Path) -> str:
    """Cheap identity of a corpus file (path, size, mtime) to tell a stale saved index from a current one."""
    st = Path(path).stat()
    return f"{Path(path).resolve()}:{st.st_size}:{st.st_mtime_ns}"


INDEX_META = "r2r_index.json"  # written last by either backend: marks a complete index this project built


def check_index_folder(folder: str | Path, corpus: str | Path | None) -> None:
    """Refuse to build an index where it would replace something that is not ours: a folder that holds the
    corpus, or a non-empty folder without the index metadata file (e.g. a data folder given by mistake)."""
    folder = Path(folder)
    if corpus is not None and overlaps(folder, corpus):
        raise RetrievalError(f"--index {folder} overlaps --corpus {corpus}; choose a folder outside it")
    if folder.exists() and not folder.is_dir():
        raise RetrievalError(f"--index {folder} is a file, not a folder")
    if folder.is_dir() and any(folder.iterdir()) and not (folder / INDEX_META).is_file():
        raise RetrievalError(f"--index {folder} holds files but no index r2r built ({INDEX_META}); "
                             "choose a new or empty folder")
