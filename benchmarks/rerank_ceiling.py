"""What reranking only the top `depth` candidates can reach at best: the first-stage run with its top `depth`
reordered by the qrels themselves (an oracle reranker), the rest left in first-stage order, evaluated like
any run (all judged queries, trec_eval conventions).

    python -m benchmarks.rerank_ceiling --depth 5 --metrics ndcg@5,ndcg@10

On TREC DL19's BM25 top 100 this bounds any student reranked at the R2R authors' depth of 5 under the standard
protocol (docs/evaluation.md).
"""

from __future__ import annotations

import argparse

from benchmarks.common import DL19, SHARED
from r2r_jax.data.candidates import read_candidates
from r2r_jax.eval.metrics import evaluate, parse_metrics
from r2r_jax.retrieval.trec import read_qrels


def ceiling_run(items, qrels: dict[str, dict[str, int]], depth: int) -> dict[str, list[tuple[str, float]]]:
    """Each query's top `depth` sorted by grade (stable, so ties keep first-stage order), then the rest."""
    run = {}
    for qc in items:
        grades = qrels.get(qc.qid, {})
        top = sorted(qc.candidates[:depth], key=lambda c: -grades.get(c.docid, 0))
        ordered = top + qc.candidates[depth:]
        run[qc.qid] = [(c.docid, float(len(ordered) - i)) for i, c in enumerate(ordered)]
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", default=str(DL19))
    parser.add_argument("--qrels", default=str(SHARED / "data" / "dl19" / "qrels.txt"))
    parser.add_argument("--depth", type=int, action="append", help="repeatable (default 5, 10, 20, 100)")
    parser.add_argument("--metrics", default="ndcg@5,ndcg@10")
    args = parser.parse_args()
    items, qrels = read_candidates(args.candidates), read_qrels(args.qrels)
    specs = parse_metrics(args.metrics)
    first_stage = evaluate({qc.qid: [(c.docid, c.score) for c in qc.candidates] for qc in items}, qrels, specs)
    print(f"{len(first_stage.qids)} judged queries; first stage: "
          + ", ".join(f"{m} {v:.4f}" for m, v in first_stage.means.items()))
    for depth in args.depth or [5, 10, 20, 100]:
        best = evaluate(ceiling_run(items, qrels, depth), qrels, specs)
        print(f"best reordering of the top {depth}: " + ", ".join(f"{m} {v:.4f}" for m, v in best.means.items()))


if __name__ == "__main__":
    main()
