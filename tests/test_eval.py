"""`r2r evaluate` and the metrics/comparison behind it, on DL19 BM25 and on small hand-made runs."""

import json

import ir_measures
import numpy as np
import pytest

from r2r_jax.cli import main
from r2r_jax.data.candidates import read_candidates
from r2r_jax.eval.compare import compare_results, paired_test
from r2r_jax.eval.metrics import EvalError, evaluate, parse_metrics
from r2r_jax.retrieval.trec import candidates_to_run, read_qrels, read_run, write_run


@pytest.fixture(scope="module")
def dl19(shared_data, tmp_path_factory):
    """The BM25 run written from bm25_top100.json, a worse run (top 20 reversed), and the qrels path."""
    out = tmp_path_factory.mktemp("dl19")
    run = candidates_to_run(read_candidates(shared_data / "dl19" / "bm25_top100.json"))
    write_run(out / "bm25.trec", run, tag="bm25")
    worse = {q: [(d, float(len(h) - i)) for i, (d, _) in enumerate(h[:20][::-1] + h[20:])] for q, h in run.items()}
    write_run(out / "worse.trec", worse, tag="worse")
    return out / "bm25.trec", out / "worse.trec", shared_data / "dl19" / "qrels.txt"


def test_dl19_bm25_figures_through_the_cli(dl19, tmp_path, capsys):
    run, _, qrels = dl19
    out = tmp_path / "eval.json"
    assert main(["evaluate", "--run", str(run), "--qrels", str(qrels), "--json", str(out), "--per-query"]) == 0
    result = json.loads(out.read_text())["result"]
    means = result["means"]
    assert means["ndcg@10"] == pytest.approx(0.5058, abs=1e-4)
    assert means["ndcg@5"] == pytest.approx(0.5278, abs=1e-4)
    assert means["ndcg@1"] == pytest.approx(0.5426, abs=1e-4)
    assert len(result["qids"]) == 43 and len(result["per_query"]["ndcg@10"]) == 43
    assert np.mean(list(result["per_query"]["ndcg@10"].values())) == pytest.approx(means["ndcg@10"])
    printed = capsys.readouterr().out
    assert "ndcg@10" in printed and "0.5058" in printed and "19335" in printed  # table and per-query rows


def test_binary_measures_match_ir_measures_at_each_relevance_level(dl19):
    run, _, qrels_path = dl19
    scores = {q: dict(h) for q, h in read_run(run).items()}
    qrels = list(ir_measures.read_trec_qrels(str(qrels_path)))
    for rel in (1, 2):
        ours = evaluate(read_run(run), read_qrels(qrels_path), "mrr@10,r@100,map", rel_level=rel).means
        ref = ir_measures.calc_aggregate([ir_measures.RR(rel=rel) @ 10, ir_measures.R(rel=rel) @ 100,
                                          ir_measures.AP(rel=rel)], qrels, scores)
        assert ours["mrr@10"] == pytest.approx(ref[ir_measures.RR(rel=rel) @ 10], abs=1e-9)
        assert ours["r@100"] == pytest.approx(ref[ir_measures.R(rel=rel) @ 100], abs=1e-9)
        assert ours["map"] == pytest.approx(ref[ir_measures.AP(rel=rel)], abs=1e-9)


def test_ties_follow_trec_eval_order():
    # equal scores: trec_eval puts docid "b" before "a" (descending), so relevant "a" is at rank 2
    qrels = {"q": {"a": 1, "b": 0}}
    result = evaluate({"q": [("a", 1.0), ("b", 1.0)]}, qrels, "mrr@1,mrr@10,RR")
    assert result.means == {"mrr@1": 0.0, "mrr@10": 0.5, "RR": 0.5}


def test_judged_share_counts_the_top_k_in_trec_eval_order(dl19):
    # the share of a run's top k that has a judgement (pyserini's judged.k): a reranker that lifts passages
    # the pool never judged is scored as if they were non-relevant, and this says how much of that there is
    qrels = {"q": {"a": 1, "b": 0, "c": 2}}
    run = {"q": [("x", 5.0), ("a", 4.0), ("y", 3.0), ("c", 3.0), ("b", 1.0)]}
    result = evaluate(run, qrels, "judged@1,judged@2,judged@4,Judged@5")
    # "y" and "c" tie at 3.0: trec_eval's order puts "y" first, so the top 4 is x, a, y, c
    assert result.means == {"judged@1": 0.0, "judged@2": 0.5, "judged@4": 0.5, "Judged@5": 0.6}
    bm25, _, qrels_path = dl19
    judged_bm25 = evaluate(read_run(bm25), read_qrels(qrels_path), "judged@10").means["judged@10"]
    assert judged_bm25 == 1.0  # the DL19 pool judged BM25's whole top 10
    unjudged = {q: [(f"unjudged-{q}", 1e9)] + h for q, h in read_run(bm25).items()}
    assert evaluate(unjudged, read_qrels(qrels_path), "judged@10").means["judged@10"] == pytest.approx(0.9)


def test_run_qrels_mismatch_is_reported_or_refused():
    qrels = {"1": {"a": 1}, "2": {"b": 1}}
    result = evaluate({"1": [("a", 2.0)], "9": [("x", 1.0)]}, qrels, "ndcg@10")
    assert result.qids == ["1"] and result.run_only_qids == ["9"] and result.qrels_only_qids == ["2"]
    assert result.means["ndcg@10"] == 1.0 and len(result.warnings()) == 2
    with pytest.raises(EvalError, match="share no query"):
        evaluate({"7": [("a", 1.0)]}, qrels)
    with pytest.raises(EvalError, match="empty run"):
        evaluate({}, qrels)
    with pytest.raises(EvalError, match="no hits"):
        evaluate({"1": []}, qrels)
    with pytest.raises(EvalError, match="unknown metric"):
        parse_metrics("ndcg@10,bleu")
    with pytest.raises(EvalError, match="not computed"):
        parse_metrics("ERR@10")
    for zero in ("ndcg@0", "judged@0", "mrr@0", "nDCG@0"):  # ndcg@0 used to abort inside pytrec_eval
        with pytest.raises(EvalError, match="cutoff after @ must be at least 1"):
            parse_metrics(zero)


def test_paired_test_matches_hand_computation():
    rng = np.random.default_rng(0)
    a = {str(i): float(v) for i, v in enumerate(rng.random(30))}
    b = {q: v + 0.05 + 0.1 * rng.normal() for q, v in a.items()}
    b["extra"] = 1.0
    t = paired_test(a, b, "m", permutations=2000, seed=1)
    d = np.array([b[q] - a[q] for q in sorted(a)])
    assert t.n == 30 and t.unpaired == 1 and t.wins + t.losses + t.ties == 30
    assert t.mean_diff == pytest.approx(d.mean())
    assert t.t_statistic == pytest.approx(d.mean() / (d.std(ddof=1) / np.sqrt(len(d))))
    assert 0.0 < t.p_permutation <= 1.0 and t.p_ttest < 0.05
    same = paired_test(a, a, "m", permutations=100)
    assert (same.p_ttest, same.p_permutation, same.mean_diff) == (1.0, 1.0, 0.0)
    with pytest.raises(EvalError, match="share no evaluated query"):
        paired_test({"1": 0.1}, {"2": 0.2})


def test_compare_runs_through_the_cli(dl19, tmp_path, capsys):
    run, worse, qrels = dl19
    png, out = tmp_path / "diff.png", tmp_path / "cmp.json"
    argv = ["evaluate", "--run", str(run), "--qrels", str(qrels), "--compare", str(worse), "--metrics",
            "ndcg@10,r@100", "--permutations", "500", "--plot", str(png), "--json", str(out)]
    assert main(argv) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    tests = {t["metric"]: t for t in json.loads(out.read_text())["tests"]}
    assert tests["ndcg@10"]["mean_diff"] < 0 and tests["ndcg@10"]["p_ttest"] < 0.01
    assert tests["r@100"]["mean_diff"] == 0.0 and tests["r@100"]["p_ttest"] == 1.0  # same top 100
    assert "p (t-test)" in capsys.readouterr().out
    a = evaluate(read_run(run), read_qrels(qrels), "ndcg@10")
    assert compare_results(a, a)[0].p_ttest == 1.0


def test_cli_reports_malformed_files(tmp_path, capsys):
    qrels = tmp_path / "qrels.txt"
    qrels.write_text("1 0 a 2\n1 0 b 0\n")
    run = tmp_path / "run.trec"
    run.write_text("1 Q0 a 1 3.5 t\n1 Q0 b two 2.0 t\n")
    assert main(["evaluate", "--run", str(run), "--qrels", str(qrels)]) == 2
    err = capsys.readouterr().err
    assert f"{run}:2" in err and "'rank'" in err
    run.write_text("1 Q0 a 1 3.5 t\n")
    qrels.write_text("1 0 a 2\n1 0 b\n")
    assert main(["evaluate", "--run", str(run), "--qrels", str(qrels)]) == 2
    assert f"{qrels}:2" in capsys.readouterr().err
    qrels.write_text("2 0 a 2\n")
    assert main(["evaluate", "--run", str(run), "--qrels", str(qrels)]) == 2
    assert "share no query" in capsys.readouterr().err
    qrels.write_text("1 0 a 2\n")
    plot = tmp_path / "values.png"
    assert main(["evaluate", "--run", str(run), "--qrels", str(qrels), "--plot", str(plot)]) == 0
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_the_authors_query_filter_is_reported_beside_the_standard_means(tmp_path, capsys):
    """--min-query-value T: the mean over the queries whose own value exceeds T, with the kept count, as an
    extra, labelled table; the standard means (all queries) stay as they are."""
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}, "q3": {"c": 1}}
    run = {"q1": [("a", 3.0), ("x", 2.0)],   # relevant first: nDCG@2 = 1
           "q2": [("x", 3.0), ("b", 2.0)],   # relevant second: nDCG@2 = 1 / log2(3) = 0.6309
           "q3": [("x", 3.0), ("y", 2.0)]}   # relevant not retrieved: 0
    result = evaluate(run, qrels, parse_metrics("ndcg@2"))
    want_all, want_kept = (1 + 1 / np.log2(3)) / 3, (1 + 1 / np.log2(3)) / 2
    np.testing.assert_allclose(result.means["ndcg@2"], want_all, rtol=1e-6)
    mean, kept = result.means_above(0.5)["ndcg@2"]
    assert kept == 2 and np.isclose(mean, want_kept)
    assert result.means_above(0.7)["ndcg@2"] == (1.0, 1)
    (tmp_path / "qrels.txt").write_text("".join(f"{q} 0 {d} {g}\n" for q, ds in qrels.items() for d, g in ds.items()))
    write_run(tmp_path / "run.trec", run)
    assert main(["evaluate", "--run", str(tmp_path / "run.trec"), "--qrels", str(tmp_path / "qrels.txt"),
                 "--metrics", "ndcg@2", "--min-query-value", "0.5", "--json", str(tmp_path / "out.json")]) == 0
    out = capsys.readouterr().out
    assert f"{want_all:.4f}" in out and "NON-STANDARD" in out and f"{want_kept:.4f} (2)" in out
    saved = json.loads((tmp_path / "out.json").read_text())
    assert saved["result"]["means"]["ndcg@2"] == pytest.approx(want_all)
    assert saved["non_standard_means_above"]["runs"][0]["means"]["ndcg@2"] == {"mean": pytest.approx(want_kept),
                                                                                "kept": 2}


def test_rerank_ceiling_orders_only_the_top_depth_by_grade():
    from benchmarks.rerank_ceiling import ceiling_run
    from r2r_jax.data.candidates import QueryCandidates, ScoredPassage

    qc = QueryCandidates("q", "x", [ScoredPassage(d, d, 0.0) for d in ("a", "b", "c", "d")])
    qrels = {"q": {"b": 1, "d": 3}}
    assert [d for d, _ in ceiling_run([qc], qrels, 2)["q"]] == ["b", "a", "c", "d"]  # d is below the depth
    assert [d for d, _ in ceiling_run([qc], qrels, 4)["q"]] == ["d", "b", "a", "c"]
    best = evaluate(ceiling_run([qc], qrels, 4), qrels, "ndcg@4").means["ndcg@4"]
    assert best == pytest.approx(1.0)
