"""BM25 with `bm25s`: the embedded backend (pure Python + numpy, no Java), its index saved and reused.

Scores follow Lucene's BM25 (`method="lucene"`) with the same defaults as the pyserini backend (k1=0.9,
b=0.4) and Porter stemming, so both backends rank alike. Passage texts live next to the index in a JSONL file
with a byte-offset table, so a search reads only the passages it returns.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from r2r_jax.atomic import staged_folder, write_json
from r2r_jax.data.candidates import QueryCandidates, ScoredPassage
from r2r_jax.retrieval.inputs import INDEX_META, RetrievalError, check_index_folder, corpus_fingerprint, iter_corpus

DOCS_FILE = "docs.jsonl"
OFFSETS_FILE = "docs.offsets.npy"


@dataclass(frozen=True)
class Bm25Params:
    k1: float = 0.9
    b: float = 0.4
    stemmer: str = "porter"  # a PyStemmer algorithm, or "none"


def _stemmer(name: str):
    if name == "none":
        return None
    try:
        import Stemmer
    except ImportError:
        raise RetrievalError(f"stemmer {name!r} needs PyStemmer (pip install PyStemmer); "
                             "or pass --stemmer none") from None
    if name not in Stemmer.algorithms():
        raise RetrievalError(f"unknown stemmer {name!r}; PyStemmer has: {', '.join(Stemmer.algorithms())}")
    return Stemmer.Stemmer(name)


class DocStore:
    """Passages by internal index: one JSONL line each plus an int64 table of line offsets."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.offsets = np.load(folder / OFFSETS_FILE)
        self._file = open(folder / DOCS_FILE, "rb")

    @staticmethod
    def writer(folder: Path, docs: Iterator[tuple[str, str]]) -> Iterator[str]:
        """Write (docid, text) pairs while passing the texts on to the tokenizer."""
        offsets: list[int] = []
        with open(folder / DOCS_FILE, "wb") as f:
            for docid, text in docs:
                offsets.append(f.tell())
                f.write(json.dumps({"docid": docid, "text": text}, ensure_ascii=False).encode() + b"\n")
                yield text
        np.save(folder / OFFSETS_FILE, np.asarray(offsets, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.offsets)

    def get(self, i: int) -> tuple[str, str]:
        self._file.seek(int(self.offsets[i]))
        obj = json.loads(self._file.readline())
        return obj["docid"], obj["text"]

    def close(self) -> None:
        self._file.close()


class Bm25sIndex:
    """A bm25s index, its tokenizer vocabulary and its passages, in one folder."""

    def __init__(self, folder: Path, params: Bm25Params, tmp: tempfile.TemporaryDirectory | None = None):
        import bm25s
        from bm25s.tokenization import Tokenizer

        self.folder, self.params, self._tmp = folder, params, tmp
        self.retriever = bm25s.BM25.load(str(folder))
        self.tokenizer = Tokenizer(stemmer=_stemmer(params.stemmer), stopwords="en")
        self.tokenizer.load_vocab(str(folder))
        self.tokenizer.load_stopwords(str(folder))
        self.docs = DocStore(folder)

    @classmethod
    def build(cls, corpus: str | Path, params: Bm25Params, folder: str | Path | None = None,
              progress: bool = True) -> Bm25sIndex:
        """Index `corpus` into `folder` (a temporary one when None). The folder is complete only at the end:
        its metadata file, written last, is what marks it reusable."""
        import bm25s
        from bm25s.tokenization import Tokenizer

        tmp = None
        if folder is None:
            tmp = tempfile.TemporaryDirectory(prefix="r2r-bm25s-")
            folder = Path(tmp.name) / "index"
        folder = Path(folder)
        check_index_folder(folder, corpus)
        tokenizer = Tokenizer(stemmer=_stemmer(params.stemmer), stopwords="en")
        from tqdm import tqdm

        with staged_folder(folder, overwrite=True) as staging:  # an interrupted build leaves the old index
            docs = tqdm(iter_corpus(corpus), desc="indexing", unit="doc", disable=not progress)
            texts = DocStore.writer(staging, docs)
            ids = list(tokenizer.tokenize(texts, return_as="stream"))
            tokens = tokenizer.to_tokenized_tuple(ids)
            if not tokens.ids:
                raise RetrievalError(f"--corpus {corpus} has no passages")
            retriever = bm25s.BM25(k1=params.k1, b=params.b, method="lucene")
            retriever.index(tokens, show_progress=progress)
            retriever.save(str(staging), show_progress=False)
            tokenizer.save_vocab(str(staging))
            tokenizer.save_stopwords(str(staging))
            meta = {"backend": "bm25s", "corpus": corpus_fingerprint(corpus), **asdict(params)}
            write_json(staging / INDEX_META, meta)
        return cls(folder, params, tmp)

    @staticmethod
    def saved_params(folder: str | Path) -> tuple[Bm25Params, str] | None:
        """(params, corpus fingerprint) of a complete saved index, or None when there is none."""
        meta_path = Path(folder) / INDEX_META
        if not meta_path.is_file():
            return None
        meta = json.loads(meta_path.read_text())
        if meta.get("backend") != "bm25s":
            return None
        return Bm25Params(meta["k1"], meta["b"], meta["stemmer"]), meta["corpus"]

    def search(self, queries: Sequence[tuple[str, str]], k: int, progress: bool = True,
               threads: int = 1) -> list[QueryCandidates]:
        """Top-k per query, best first; passages with no query term (score 0) are left out, as Lucene does."""
        if not queries:
            return []
        tokens = self.tokenizer.tokenize([t for _, t in queries], update_vocab=False, return_as="ids",
                                         show_progress=False)
        k = min(k, len(self.docs))
        idx, scores = self.retriever.retrieve(tokens, k=k, show_progress=progress, n_threads=threads)
        out = []
        for (qid, text), row_idx, row_scores in zip(queries, idx, scores, strict=True):
            passages = []
            for i, s in zip(row_idx.tolist(), row_scores.tolist(), strict=True):
                if s > 0:
                    docid, passage = self.docs.get(i)
                    passages.append(ScoredPassage(docid, passage, float(s)))
            out.append(QueryCandidates(qid, text, passages))
        return out

    def close(self) -> None:
        self.docs.close()
        if self._tmp is not None:
            self._tmp.cleanup()


def open_bm25s(corpus: str | Path | None, folder: str | Path | None, params: Bm25Params,
               progress: bool = True) -> tuple[Bm25sIndex, bool]:
    """Reuse the index in `folder` when it was built from this corpus with these parameters, else build it.

    Returns (index, built). Without a corpus, `folder` must hold a saved index.
    """
    saved = Bm25sIndex.saved_params(folder) if folder else None
    if saved is not None:
        saved_params, fingerprint = saved
        if corpus is None:
            if saved_params != params:
                raise RetrievalError(f"index {folder} was built with {saved_params}; pass --corpus to rebuild it "
                                 f"with {params}")
            return Bm25sIndex(Path(folder), params), False
        if saved_params == params and fingerprint == corpus_fingerprint(corpus):
            return Bm25sIndex(Path(folder), params), False
    if corpus is None:
        raise RetrievalError(f"no bm25s index in {folder}; pass --corpus to build one")
    return Bm25sIndex.build(corpus, params, folder, progress), True
