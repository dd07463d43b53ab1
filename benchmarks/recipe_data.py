"""Data for the real-base recipe (docs/results.md): the R2R release split into training and held-out queries,
a held-out selection set, and DL19 candidate files.

    python -m benchmarks.recipe_data --out runs/recipe/data

reads the named sets `r2r-release`, `dl19` and `dl20` (`r2r data add` / `r2r data fetch`, docs/datasets.md)
unless files are given, and writes
- `teacher_all.jsonl` (the whole release through `r2r import-teacher --format r2r`), `train.jsonl`,
  `heldout.jsonl`: the release with `--heldout` queries (default 50, chosen by a hash of the qid, so the split
  does not depend on file order) kept out of training; the held-out records' teacher reasons are the
  references for explanation quality (`r2r evaluate-reasons`).
- `heldout_candidates.jsonl` + `heldout_qrels.txt`: settings are chosen on these, never on DL19. Each held-out
  query gets its 5 teacher passages plus `--distractors` passages of other held-out queries; grades follow the
  teacher's ranking (4, 3, 2, 1, 1 for ranks 1-5) and distractors are 0, so nDCG rewards both agreeing with
  the teacher and putting off-topic passages last (what a top-100 rerank needs).
- `heldout_hard_candidates.jsonl` + `heldout_hard_qrels.txt`: the same, but each held-out query's distractors
  are the release passages of other queries that BM25 ranks highest for it (`r2r mine-negatives`' rule, over
  all 2,500 passages): on-topic passages that do not answer it, as deep in a BM25 top-100.
- `heldout_deep_candidates.jsonl` + `heldout_deep_qrels.txt`: the selection set that looks like a deep
  rerank, on which the rerank default (`r2r tune-fusion`) is chosen: each held-out query's BM25 top `--depth`
  (100) over every passage of the release (all 500 queries' 2,500), with BM25's scores; its own five passages
  graded as above, every other retrieved passage 0.
- `dl19_top{20,100}.jsonl`, `dl20_top{20,100}.jsonl`: the DL19 / DL20 BM25 candidates (rank_llm JSONL), cut
  to the top 20 / 100, and `bm25_dl19_top{20,100}.trec`, `bm25_dl20_top{20,100}.trec`: the same lists as TREC
  runs with BM25's own scores (the first-stage rows of docs/results.md, and BM25's side of a fusion).
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.common import use_cpu
from r2r_jax.atomic import atomic_write
from r2r_jax.data.candidates import QueryCandidates, ScoredPassage, read_candidates, write_candidates
from r2r_jax.data.datasets import dataset_file
from r2r_jax.data.importers import import_file
from r2r_jax.data.records import Candidate, TeacherRecord, write_records
from r2r_jax.retrieval.bm25 import Bm25Params, Bm25sIndex
from r2r_jax.retrieval.hard_negatives import mine_negatives, pooled_corpus
from r2r_jax.retrieval.trec import candidates_to_run, write_run

TEST_SETS = ("dl19", "dl20")
TEACHER_GRADES = (4, 3, 2, 1, 1)  # teacher rank 1..5 -> graded relevance of the selection set


def split_heldout(records: list[TeacherRecord], n: int) -> tuple[list[TeacherRecord], list[TeacherRecord]]:
    """(train, held-out): the `n` records whose qid hashes lowest are held out."""
    order = sorted(records, key=lambda r: hashlib.sha256(r.qid.encode()).hexdigest())
    held = {r.qid for r in order[:n]}
    return [r for r in records if r.qid not in held], [r for r in records if r.qid in held]


def selection_set(heldout: list[TeacherRecord], distractors: int, seed: int = 0,
                  mined: dict[str, list[Candidate]] | None = None):
    """Candidates (teacher passages + distractors, shuffled) and graded qrels lines. The distractors are other
    held-out queries' passages drawn at random, or the first of `mined[qid]` when given."""
    items, qrels = [], []
    pool = [(r.qid, c) for r in heldout for c in r.candidates]
    rng = np.random.default_rng(seed)
    for rec in heldout:
        own = {c.text for c in rec.candidates}
        if mined is not None:
            picked = mined[rec.qid][:distractors]
        else:
            others = [c for q, c in pool if q != rec.qid and c.text not in own]
            picked = [others[i] for i in rng.choice(len(others), size=min(distractors, len(others)), replace=False)]
        rank = rec.rank_of()
        passages = [ScoredPassage(c.docid, c.text) for c in (*rec.candidates, *picked)]
        passages = [passages[i] for i in rng.permutation(len(passages))]
        items.append(QueryCandidates(rec.qid, rec.query, passages))
        for c in rec.candidates:
            qrels.append(f"{rec.qid} 0 {c.docid} {TEACHER_GRADES[min(rank[c.docid], len(TEACHER_GRADES)) - 1]}")
        qrels.extend(f"{rec.qid} 0 {c.docid} 0" for c in picked if c.docid not in rank)
    return items, qrels


def deep_selection_set(records: list[TeacherRecord], heldout: list[TeacherRecord], depth: int):
    """Candidates (each held-out query's BM25 top `depth` over every release passage, BM25 scores) and graded
    qrels lines (own passages by teacher rank, every other retrieved passage 0)."""
    with tempfile.TemporaryDirectory(prefix="r2r-deep-") as tmp:
        corpus = Path(tmp) / "pool.jsonl"
        pooled_corpus(records, corpus)
        index = Bm25sIndex.build(corpus, Bm25Params(), Path(tmp) / "index", progress=False)
        try:
            items = index.search([(r.qid, r.query) for r in heldout], depth, progress=False)
        finally:
            index.close()
    qrels = []
    for rec, qc in zip(heldout, items, strict=True):
        rank = rec.rank_of()
        grade = {c.docid: TEACHER_GRADES[min(rank[c.docid], len(TEACHER_GRADES)) - 1] for c in rec.candidates}
        qrels.extend(f"{rec.qid} 0 {d} {g}" for d, g in grade.items())
        qrels.extend(f"{rec.qid} 0 {c.docid} 0" for c in qc.candidates if c.docid not in grade)
    return items, qrels


def write_selection_set(out: Path, name: str, items: list[QueryCandidates], qrels: list[str]) -> list[QueryCandidates]:
    """`<name>_candidates.jsonl` and `<name>_qrels.txt` under `out`; returns the candidates."""
    write_candidates(out / f"{name}_candidates.jsonl", items)
    with atomic_write(out / f"{name}_qrels.txt") as f:
        f.write("\n".join(qrels) + "\n")
    return items


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/recipe/data")
    parser.add_argument("--release", help="the R2R release JSONL (default: the named set r2r-release)")
    for name in TEST_SETS:
        parser.add_argument(f"--{name}", help=f"{name} BM25 top 100, RankGPT hits JSON (default: the named set)")
    parser.add_argument("--depth", type=int, default=100, help="the deep selection set's depth")
    parser.add_argument("--heldout", type=int, default=50)
    parser.add_argument("--distractors", type=int, default=15)
    args = parser.parse_args(argv)
    use_cpu()  # bm25s picks JAX for its top-k when installed: keep an installed libtpu's start-up out of it
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    records, report = import_file(args.release or dataset_file("r2r-release", "teacher"), "r2r")
    print(report.summary())
    write_records(out / "teacher_all.jsonl", records)
    train, heldout = split_heldout(records, args.heldout)
    write_records(out / "train.jsonl", train)
    write_records(out / "heldout.jsonl", heldout)
    write_selection_set(out, "heldout", *selection_set(heldout, args.distractors))
    mined = {r.qid: r.negatives for r in mine_negatives(records, args.distractors)}
    items = write_selection_set(out, "heldout_hard", *selection_set(heldout, args.distractors, mined=mined))
    write_selection_set(out, "heldout_deep", *deep_selection_set(records, heldout, args.depth))
    sizes = []
    for name in TEST_SETS:
        test = read_candidates(getattr(args, name) or dataset_file(name, "candidates"))
        sizes.append(f"{len(test)} {name.upper()}")
        for depth in (20, 100):
            top = [QueryCandidates(q.qid, q.query, q.candidates[:depth]) for q in test]
            write_candidates(out / f"{name}_top{depth}.jsonl", top)
            write_run(out / f"bm25_{name}_top{depth}.trec", candidates_to_run(top), tag="bm25")
    print(f"{len(train)} training and {len(heldout)} held-out records, {len(items)} selection queries, "
          f"{' and '.join(sizes)} queries -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
