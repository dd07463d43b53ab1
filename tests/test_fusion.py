"""Rerank fusion (student + first stage, over a depth) and `r2r tune-fusion`'s choice, stored with the run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from r2r_jax.cli import main as r2r
from r2r_jax.data.candidates import QueryCandidates, ScoredPassage, write_candidates
from r2r_jax.inference.fusion import DEFAULT_FILE, Fusion, first_stage_signal, fuse_query, fuse_run, read_default
from r2r_jax.rerank.tune_cli import choose, grid
from r2r_jax.retrieval.trec import write_run


def query(scores=(9.0, 7.0, 4.0, 1.0)) -> QueryCandidates:
    return QueryCandidates("q1", "a query", [ScoredPassage(f"d{i}", f"text {i}", s) for i, s in enumerate(scores)])


STUDENT = {"d0": 0.0, "d1": 1.0, "d2": 3.0, "d3": 2.0}


def test_interpolation_is_a_weighted_sum_of_per_query_z_scores():
    qc = query()
    got = dict(fuse_query(qc, STUDENT, Fusion("interpolate", 0.3)))
    s, b = np.array([0.0, 1.0, 3.0, 2.0]), np.array([9.0, 7.0, 4.0, 1.0])
    want = 0.3 * (s - s.mean()) / s.std() + 0.7 * (b - b.mean()) / b.std()
    np.testing.assert_allclose([got[f"d{i}"] for i in range(4)], want, rtol=1e-12)
    # the ends of the weight range are the two rankings themselves
    assert [d for d, _ in fuse_query(qc, STUDENT, Fusion("interpolate", 0.0))] == ["d0", "d1", "d2", "d3"]
    assert [d for d, _ in fuse_query(qc, STUDENT, Fusion("interpolate", 1.0))] == ["d2", "d3", "d1", "d0"]
    assert [d for d, _ in fuse_query(qc, STUDENT, Fusion("student"))] == ["d2", "d3", "d1", "d0"]


def test_rrf_adds_weighted_reciprocal_ranks():
    got = dict(fuse_query(query(), STUDENT, Fusion("rrf", 0.5)))
    student_rank, first_rank = {"d2": 1, "d3": 2, "d1": 3, "d0": 4}, {"d0": 1, "d1": 2, "d2": 3, "d3": 4}
    for d in STUDENT:
        assert got[d] == pytest.approx(0.5 / (60 + student_rank[d]) + 0.5 / (60 + first_rank[d]))


def test_candidates_without_scores_fuse_by_their_list_order():
    np.testing.assert_array_equal(first_stage_signal(query((0.0, 0.0, 0.0, 0.0))), [0, -1, -2, -3])
    np.testing.assert_array_equal(first_stage_signal(query((1.0, 2.0, 0.0, 0.0))), [0, -1, -2, -3])
    np.testing.assert_array_equal(first_stage_signal(query()), [9.0, 7.0, 4.0, 1.0])


def test_a_depth_reranks_the_head_and_keeps_the_tail_in_first_stage_order():
    qc = query((9.0, 8.0, 7.0, 6.0, 5.0, 4.0))
    student = {"d0": 0.0, "d1": 5.0, "d2": 1.0, "d3": 9.0, "d4": 8.0, "d5": 7.0}
    run = fuse_run([qc], {"q1": list(student.items())}, Fusion("student", 1.0, depth=3))
    assert [d for d, _ in run["q1"]] == ["d1", "d2", "d0", "d3", "d4", "d5"]
    scores = [s for _, s in run["q1"]]
    assert scores == sorted(scores, reverse=True)
    with pytest.raises(ValueError, match="no score"):
        fuse_run([qc], {"q1": [("d0", 1.0)]}, Fusion("student", 1.0, depth=3))


@pytest.mark.parametrize("bad, message", [
    ({"method": "mean"}, "expected one of"), ({"method": "rrf", "weight": 1.5}, r"\[0, 1\]"),
    ({"depth": 0}, "positive integer"), ({"weight": 0.5, "extra": 1}, "unknown field"),
])
def test_a_bad_stored_default_names_its_file_and_field(tmp_path, bad, message):
    (tmp_path / DEFAULT_FILE).write_text(json.dumps({"fusion": bad}))
    with pytest.raises(ValueError, match=message) as e:
        read_default(tmp_path)
    assert DEFAULT_FILE in str(e.value) and "'fusion'" in str(e.value)
    assert read_default(tmp_path / "elsewhere") is None


def test_the_grid_holds_both_ends_and_the_choice_prefers_the_shallower_tie():
    settings = grid(30)
    assert Fusion("interpolate", 0.0) in settings and Fusion("student", 1.0, 30) in settings
    assert {f.depth for f in settings} == {None, 5, 10, 20, 30}
    rows = [(Fusion("student", 1.0, 20), {"ndcg@10": 0.5, "ndcg@5": 0.4, "ndcg@1": 0.3}),
            (Fusion("student", 1.0, 10), {"ndcg@10": 0.5, "ndcg@5": 0.4, "ndcg@1": 0.3}),
            (Fusion("rrf", 0.5, 30), {"ndcg@10": 0.5, "ndcg@5": 0.35, "ndcg@1": 0.9})]
    assert choose(rows, "ndcg@10")[0] == Fusion("student", 1.0, 10)


def selection_set(tmp_path, n: int = 6):
    """A selection set where BM25's top passage is relevant and the student finds the second-best below it: a
    blend of the two beats either alone."""
    rng = np.random.default_rng(0)
    items, student, qrels = [], {}, []
    for q in range(n):
        docs = [ScoredPassage(f"q{q}d{i}", f"passage {i}", float(20 - i)) for i in range(20)]
        items.append(QueryCandidates(f"q{q}", f"query {q}", docs))
        scores = rng.normal(size=20)
        scores[0], scores[5] = 0.5, 3.0  # the student loves d5 (grade 1) and is lukewarm on d0 (grade 2)
        student[f"q{q}"] = sorted(((d.docid, float(s)) for d, s in zip(docs, scores, strict=True)),
                                  key=lambda h: -h[1])
        qrels += [f"q{q} 0 q{q}d0 2", f"q{q} 0 q{q}d5 1"]
    write_candidates(tmp_path / "sel.jsonl", items)
    write_run(tmp_path / "student.trec", student)
    (tmp_path / "qrels.txt").write_text("\n".join(qrels) + "\n")
    return ["--student-run", str(tmp_path / "student.trec"), "--candidates", str(tmp_path / "sel.jsonl"),
            "--qrels", str(tmp_path / "qrels.txt")]


def test_tune_fusion_stores_the_best_setting_and_refuses_to_replace_it_silently(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    args = ["tune-fusion", "--checkpoint", str(run_dir), *selection_set(tmp_path)]
    assert r2r([*args, "--dry-run"]) == 0 and not (run_dir / DEFAULT_FILE).exists()
    assert r2r(args) == 0
    fusion, record = read_default(run_dir)
    means = record["means"]
    assert means["chosen"]["ndcg@10"] >= max(means["first_stage"]["ndcg@10"], means["student_alone"]["ndcg@10"])
    assert means["chosen"]["ndcg@10"] > means["student_alone"]["ndcg@10"]
    assert len(record["table"]) == len(grid(20)) and record["selection"]["queries"] == 6
    capsys.readouterr()
    assert r2r(args) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert r2r([*args, "--overwrite"]) == 0 and read_default(run_dir)[0] == fusion


def test_tune_fusion_refuses_a_student_run_that_skipped_candidates(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    args = selection_set(tmp_path)
    write_run(tmp_path / "student.trec", {f"q{q}": [(f"q{q}d0", 1.0)] for q in range(6)})
    assert r2r(["tune-fusion", "--checkpoint", str(run_dir), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("r2r tune-fusion: error: --student-run") and "lacks 19 of its 20" in err
    assert not (run_dir / DEFAULT_FILE).exists()


def test_the_depth_curve_report_agrees_with_the_fusion_it_reports(tmp_path):
    """benchmarks/depth_curve.py: its default row is the stored setting applied at its own depth, and each
    depth row is `fuse_run` at that depth, so the table cannot drift from what `r2r rerank` writes."""
    from benchmarks.depth_curve import rows_for_set
    from r2r_jax.data.candidates import read_candidates
    from r2r_jax.eval.metrics import evaluate
    from r2r_jax.retrieval.trec import read_qrels, read_run

    args = selection_set(tmp_path)
    items, student = read_candidates(args[3]), read_run(args[1])
    qrels = read_qrels(args[5])
    default = Fusion("interpolate", 0.3, depth=10)
    res = rows_for_set(items, student, qrels, default)
    want = evaluate(fuse_run(items, student, default), qrels, ["ndcg@10"]).means["ndcg@10"]
    assert res["rows"]["default"]["means"]["ndcg@10"] == pytest.approx(want)
    at20 = evaluate(fuse_run(items, student, Fusion("student", 1.0, 20)), qrels, ["ndcg@10"]).means["ndcg@10"]
    assert res["curve"][20]["student"]["ndcg@10"] == pytest.approx(at20)
    assert res["rows"]["bm25"]["means"]["ndcg@10"] == pytest.approx(res["bm25_ndcg10"])
    assert set(res["rows"]["student"]["p"]) == {"ndcg@1", "ndcg@5", "ndcg@10"}
