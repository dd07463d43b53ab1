"""`r2r retrieve`: queries + corpus (or a saved/prebuilt index) -> BM25 top-k as rank_llm candidates JSONL."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from r2r_jax.atomic import check_output_files
from r2r_jax.cli_types import non_negative_float, positive_int, unit_float
from r2r_jax.data.candidates import write_candidates
from r2r_jax.data.datasets import dataset_file
from r2r_jax.data.records import RecordError
from r2r_jax.retrieval.beir import judged_queries
from r2r_jax.retrieval.bm25 import Bm25Params, open_bm25s
from r2r_jax.retrieval.inputs import RetrievalError, read_queries
from r2r_jax.retrieval.trec import candidates_to_run, write_run

# (files written, files read): `r2r` refuses an output that is also an input before the command runs
FILE_ARGUMENTS = (("output", "trec"), ("queries", "corpus"))
EXAMPLE = ("r2r retrieve --queries queries.tsv --corpus corpus.jsonl --index runs/bm25 --output candidates.jsonl "
           "--trec bm25.trec")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--queries", metavar="FILE",
                   help="queries: TSV qid<TAB>text, JSONL {qid|id|_id, text|query} or TREC topics")
    p.add_argument("--corpus", metavar="FILE",
                   help="passages: JSONL {id|docid|_id, contents|text (+ title)} or TSV docid<TAB>text")
    p.add_argument("--dataset", metavar="NAME",
                   help="a BEIR set added with `r2r data add NAME FOLDER --beir`: its corpus, and the queries its "
                        "test qrels judge, in place of --corpus and --queries")
    p.add_argument("--index", metavar="DIR",
                   help="index folder: reused when it matches --corpus and the BM25 settings, built there otherwise "
                        "(without it the index is temporary)")
    p.add_argument("--prebuilt", metavar="NAME",
                   help="pyserini prebuilt index name, e.g. msmarco-v1-passage (pyserini only)")
    p.add_argument("--backend", choices=("bm25s", "pyserini"), default="bm25s",
                   help="bm25s: embedded, no Java; pyserini: Lucene via Anserini")
    p.add_argument("--output", required=True, metavar="FILE",
                   help="candidates JSONL to write (rank_llm request layout)")
    p.add_argument("--trec", metavar="RUN",
                   help="also write the hits as a TREC run (the BM25 baseline for `r2r evaluate`)")
    p.add_argument("--top-k", type=positive_int, default=100, metavar="K", help="candidates per query")
    add_bm25_arguments(p, "porter (as Lucene), none, or another PyStemmer algorithm (bm25s) / krovetz (pyserini)")
    p.add_argument("--threads", type=positive_int, default=1, metavar="N", help="search (and Lucene indexing) threads")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_bm25_arguments(p: argparse.ArgumentParser, stemmer_help: str) -> None:
    """--k1, --b and --stemmer, spelled and defaulted alike in every command that runs BM25 (`bm25_params`)."""
    p.add_argument("--k1", type=non_negative_float, default=0.9, metavar="K1", help="BM25 k1")
    p.add_argument("--b", type=unit_float, default=0.4, metavar="B", help="BM25 b")
    p.add_argument("--stemmer", default="porter", metavar="NAME", help=stemmer_help)


def bm25_params(args: argparse.Namespace) -> Bm25Params:
    return Bm25Params(args.k1, args.b, args.stemmer)


def _dataset_inputs(args: argparse.Namespace) -> list[tuple[str, str]]:
    """--dataset: the set's corpus and judged queries (checked against its manifest) in place of the flags."""
    if args.queries or args.corpus:
        raise RecordError("give either --dataset or --queries/--corpus, not both")
    args.corpus = str(dataset_file(args.dataset, "corpus"))
    args.queries = str(dataset_file(args.dataset, "queries"))
    check_output_files(args, *FILE_ARGUMENTS)
    return judged_queries(args.dataset, Path(args.queries), dataset_file(args.dataset, "qrels"))


def run(args: argparse.Namespace) -> int:
    if args.top_k < 1:
        print("r2r retrieve: error: --top-k must be >= 1", file=sys.stderr)
        return 2
    if args.prebuilt and args.backend != "pyserini":
        print("r2r retrieve: error: --prebuilt needs --backend pyserini", file=sys.stderr)
        return 2
    try:
        queries = _dataset_inputs(args) if args.dataset else None
    except RecordError as e:
        print(f"r2r retrieve: error: {e}", file=sys.stderr)
        return 2
    if not args.queries:
        print("r2r retrieve: error: give --queries FILE (and --corpus), or --dataset NAME", file=sys.stderr)
        return 2
    if not (args.corpus or args.index or args.prebuilt):
        print("r2r retrieve: error: give --corpus, --index or --prebuilt", file=sys.stderr)
        return 2
    params = bm25_params(args)
    progress = not args.no_progress
    start = time.perf_counter()
    try:
        queries = queries or read_queries(args.queries)
        if args.backend == "bm25s":
            index, built = open_bm25s(args.corpus, args.index, params, progress)
        else:
            from r2r_jax.retrieval.lucene import open_lucene

            index, built = open_lucene(args.corpus, args.index, args.prebuilt, params, args.threads, progress)
        try:
            results = index.search(queries, args.top_k, progress=progress, threads=args.threads)
        finally:
            index.close()
    except (RecordError, RetrievalError) as e:
        print(f"r2r retrieve: error: {e}", file=sys.stderr)
        return 2
    empty = [r.qid for r in results if not r.candidates]
    results = [r for r in results if r.candidates]  # rerank and teach refuse a query without candidates
    if empty:
        shown = ", ".join(empty[:5]) + (", ..." if len(empty) > 5 else "")
        print(f"r2r retrieve: warning: {len(empty)} queries matched nothing and are left out of {args.output}: "
              f"{shown}", file=sys.stderr)
    if not results:
        print(f"r2r retrieve: error: no query matched any passage; nothing written to {args.output}",
              file=sys.stderr)
        return 1
    n = write_candidates(args.output, results)
    if args.trec:
        write_run(args.trec, candidates_to_run(results), tag=f"bm25-{args.backend}")
    where = "built" if built else "reused"
    print(f"r2r retrieve: {n} queries, top-{args.top_k} from {args.backend} (index {where}) -> {args.output}"
          + (f" and {args.trec}" if args.trec else "") + " "
          f"in {time.perf_counter() - start:.1f}s" + (f"; {len(empty)} queries matched nothing" if empty else ""),
          file=sys.stderr)
    return 0
