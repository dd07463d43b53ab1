"""benchmarks/results_table.py on the committed DL19/DL20 runs: BM25's row is the published first stage, and
each p-value is the one `r2r evaluate --compare` reports for the same pair of runs."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.results_table import table
from r2r_jax.cli import main

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"


def test_the_table_matches_r2r_evaluate(shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("R2R_DATA", str(tmp_path / "r2r_data"))
    for name in ("dl19", "dl20"):
        assert main(["data", "add", name, str(shared_data / name / "bm25_top100.json"),
                     str(shared_data / name / "qrels.txt")]) == 0
    runs = {kind: [str(RESULTS / f"{kind}_{s}_top100.trec") for s in ("dl19", "dl20")]
            for kind in ("bm25", "student")}
    lines = table([("BM25", *runs["bm25"]), ("student", *runs["student"])])
    bm25, student = (line.strip("| ").split(" | ") for line in lines[2:])
    assert bm25[3] == "0.5058" and bm25[7] == "0.4796"  # DL19 / DL20 nDCG@10, the published BM25 figures
    for s, (ndcg10_column, qrels_name) in enumerate(((3, "dl19"), (7, "dl20"))):
        report = tmp_path / f"{qrels_name}.json"
        assert main(["evaluate", "--dataset", qrels_name, "--run", runs["bm25"][s], "--compare",
                     runs["student"][s], "--metrics", "ndcg@10", "--permutations", "0", "--report",
                     str(report)]) == 0
        test = json.loads(report.read_text())["tests"][0]
        assert student[ndcg10_column] == f"{test['mean_b']:.4f} (p {test['p_ttest']:#.2g})"
    pooled = (43 * float(student[3].split()[0]) + 54 * float(student[7].split()[0])) / 97
    assert abs(float(student[-1].split()[0]) - pooled) < 1e-4  # the 97 queries' mean
