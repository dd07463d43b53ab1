"""docs/results.md's main table, from committed TREC runs: nDCG@1/5/10 and judged@10 on DL19 and DL20, each
against the first row's run (paired t-test over the set's queries), and nDCG@10 over both sets pooled.

    python -m benchmarks.results_table \
      --row "BM25 (first stage)" docs/results/bm25_dl19_top100.trec docs/results/bm25_dl20_top100.trec \
      --row "the recipe, student alone" docs/results/student_dl19_top100.trec docs/results/student_dl20_top100.trec

Qrels are the named sets' (`r2r data path dl19 qrels`); trec_eval conventions as `r2r evaluate`. Pooled: the
97 queries of both sets as one set (their qids are distinct), the test paired over all of them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from r2r_jax.data.datasets import dataset_file
from r2r_jax.eval.compare import paired_test
from r2r_jax.eval.metrics import EvalResult, evaluate
from r2r_jax.retrieval.trec import read_qrels, read_run

SETS = ("dl19", "dl20")
METRICS = ("ndcg@1", "ndcg@5", "ndcg@10", "judged@10")
TESTED = ("ndcg@1", "ndcg@5", "ndcg@10")  # judged@10 describes the run; it is not tested


def results(rows: Sequence[tuple[str, str, str]]) -> list[dict[str, EvalResult]]:
    """Per row, each set's evaluation."""
    qrels = {s: read_qrels(dataset_file(s, "qrels")) for s in SETS}
    return [{s: evaluate(read_run(path), qrels[s], list(METRICS)) for s, path in zip(SETS, paths, strict=True)}
            for _, *paths in rows]


def _cell(value: float, baseline: dict[str, float] | None, values: dict[str, float], digits: int = 4) -> str:
    if baseline is None:
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} (p {paired_test(baseline, values).p_ttest:#.2g})"


def table(rows: Sequence[tuple[str, str, str]]) -> list[str]:
    """Markdown lines: one per row, p-values against the first row."""
    evaluated = results(rows)
    head = ["ranking"] + [f"{s.upper()} {m}" for s in SETS for m in METRICS] + ["pooled ndcg@10"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    base = evaluated[0]
    base_pooled = {q: v for s in SETS for q, v in base[s].per_query["ndcg@10"].items()}
    for i, ((label, *_), res) in enumerate(zip(rows, evaluated, strict=True)):
        cells = [label]
        for s in SETS:
            for m in METRICS:
                against = base[s].per_query[m] if i and m in TESTED else None
                cells.append(_cell(res[s].means[m], against, res[s].per_query[m], 3 if m == "judged@10" else 4))
        pooled = {q: v for s in SETS for q, v in res[s].per_query["ndcg@10"].items()}
        cells.append(_cell(sum(pooled.values()) / len(pooled), base_pooled if i else None, pooled))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.results_table", description=__doc__.split("\n")[0])
    parser.add_argument("--row", nargs=3, action="append", required=True, metavar=("LABEL", "DL19_RUN", "DL20_RUN"),
                        help="a ranking's label and its TREC runs; the first row is the baseline")
    args = parser.parse_args(argv)
    print("\n".join(table([tuple(r) for r in args.row])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
