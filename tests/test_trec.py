"""TREC run / qrels / queries / corpus I/O: round trips, trec_eval order, and errors naming file, line, field."""

import json

import pytest

from r2r_jax.data.candidates import QueryCandidates, ScoredPassage
from r2r_jax.data.records import RecordError
from r2r_jax.retrieval.trec import (
    candidates_to_run,
    read_qrels,
    read_run,
    read_run_candidates,
    write_run,
)


def test_run_round_trip_is_atomic_and_exact(tmp_path):
    run = {"q1": [("d3", 15.780599594116211), ("d1", 2.0), ("d2", 2.0)], "q2": [("x", -1e-7)]}
    path = tmp_path / "sub" / "run.trec"
    assert write_run(path, run, tag="mine") == 4
    assert [p.name for p in path.parent.iterdir()] == ["run.trec"]  # no temp file left behind
    assert path.read_text().splitlines()[0] == "q1 Q0 d3 1 15.780599594116211 mine"
    back = read_run(path)
    assert list(back) == ["q1", "q2"]
    assert back["q1"] == [("d3", 15.780599594116211), ("d2", 2.0), ("d1", 2.0)]  # tie: docid descending
    assert back["q2"] == [("x", -1e-7)]


def test_write_run_refuses_what_trec_eval_would_misread(tmp_path):
    path = tmp_path / "run.trec"
    with pytest.raises(ValueError, match="scores increase"):
        write_run(path, {"q": [("a", 1.0), ("b", 2.0)]})
    with pytest.raises(ValueError, match="duplicated"):
        write_run(path, {"q": [("a", 2.0), ("a", 1.0)]})
    with pytest.raises(ValueError, match="tag"):
        write_run(path, {"q": [("a", 1.0)]}, tag="two words")
    assert not path.exists()


def test_candidates_to_run_keeps_list_order():
    qc = QueryCandidates("q", "text", [ScoredPassage("a", "", 0.5), ScoredPassage("b", "", 0.9)])
    with pytest.raises(ValueError, match="scores='rank'"):
        candidates_to_run([qc])
    assert candidates_to_run([qc], scores="rank") == {"q": [("a", 2.0), ("b", 1.0)]}


@pytest.mark.parametrize("line,field", [
    ("q Q0 d 1 2.0", None), ("q Q0 d one 2.0 t", "rank"), ("q Q0 d 1 nan t", "score"),
    ("q Q0 d 1 x t", "score"),
])
def test_read_run_errors_name_file_line_field(tmp_path, line, field):
    path = tmp_path / "run.trec"
    path.write_text(f"q Q0 ok 1 3.0 t\n\n{line}\n")
    with pytest.raises(RecordError) as e:
        read_run(path)
    assert str(e.value).startswith(f"{path}:3:") and e.value.line == 3 and e.value.field == field


def test_read_run_duplicates_and_empty(tmp_path):
    path = tmp_path / "run.trec"
    path.write_text("q Q0 d 1 3.0 t\nq Q0 d 2 2.0 t\n")
    with pytest.raises(RecordError, match="appears twice"):
        read_run(path)
    path.write_text("\n")
    with pytest.raises(RecordError, match="empty run"):
        read_run(path)


def test_read_qrels_both_layouts_and_errors(tmp_path):
    path = tmp_path / "qrels"
    path.write_text("1 Q0 a 2\n1 0 b 0\n2 0 a -1\n1 Q0 a 2\n")
    assert read_qrels(path) == {"1": {"a": 2, "b": 0}, "2": {"a": -1}}
    for text, field in (("1 0 a\n", None), ("1 0 a x\n", "grade"), ("1 0 a 1\n1 0 a 2\n", "grade")):
        path.write_text(text)
        with pytest.raises(RecordError) as e:
            read_qrels(path)
        assert str(path) in str(e.value) and e.value.field == field


def test_run_plus_corpus_gives_candidates(tmp_path):
    run = tmp_path / "run.trec"
    write_run(run, {"1": [("d2", 3.0), ("d1", 2.0), ("d3", 1.0)], "2": [("d1", 5.0)]})
    queries = tmp_path / "queries.tsv"
    queries.write_text("1\twhat is a flea\n2\tbm25 formula\n")
    jsonl = tmp_path / "corpus.jsonl"
    jsonl.write_text("\n".join(json.dumps(o) for o in [
        {"id": "d1", "contents": "one"}, {"docid": "d2", "text": "two"}, {"id": 3, "contents": "unused"},
        {"id": "d3", "contents": "three"}]) + "\n")
    tsv = tmp_path / "corpus.tsv"
    tsv.write_text("d1\tone\nd2\ttwo\nd3\tthree\n")
    for corpus in (jsonl, tsv):
        items = read_run_candidates(run, corpus, queries, depth=2)
        assert [(q.qid, q.query) for q in items] == [("1", "what is a flea"), ("2", "bm25 formula")]
        assert [(c.docid, c.text, c.score) for c in items[0].candidates] == [("d2", "two", 3.0), ("d1", "one", 2.0)]
    tsv.write_text("d1\tone\n")
    with pytest.raises(RecordError, match="not in the corpus"):
        read_run_candidates(run, tsv, queries)
    with pytest.raises(RecordError, match="no query text"):
        read_run_candidates(run, jsonl, {"1": "only one"})
    jsonl.write_text('{"id": "d1", "contents": "one"}\n{"id": "d2"}\n')
    with pytest.raises(RecordError) as e:
        read_run_candidates(run, jsonl, queries)
    assert e.value.line == 2 and e.value.field == "text"
