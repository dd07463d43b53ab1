"""Named data sets (`r2r data`, `--dataset NAME`): adding local copies checked against the table's SHA-256,
fetching from a real HTTP server on 127.0.0.1 (with a resumed partial download), the DL19 BM25 figure by name,
and a user's BEIR folder through `r2r retrieve` and `r2r evaluate`."""

from __future__ import annotations

import argparse
import json
import re
import shutil
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from r2r_jax import cli
from r2r_jax.data.candidates import read_candidates
from r2r_jax.data.datasets import KNOWN_SETS, DatasetError, data_dir, dataset_file, sha256_file
from r2r_jax.data.records import RecordError
from r2r_jax.retrieval.trec import candidates_to_run, read_qrels, read_run, trec_order, write_run

SHARED_FILES = {"dl19": "dl19", "dl20": "dl20", "r2r-release": "teacher"}  # set -> folder of /work/shared/data


@pytest.fixture(autouse=True)
def data(tmp_path, monkeypatch) -> Path:
    """An empty data directory per test ($R2R_DATA)."""
    monkeypatch.setenv("R2R_DATA", str(tmp_path / "r2r_data"))
    return tmp_path / "r2r_data"


def shared_files(shared_data: Path, name: str) -> list[Path]:
    return [shared_data / SHARED_FILES[name] / f.name for f in KNOWN_SETS[name].files]


def one_error_line(err: str, *needles: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_the_table_holds_the_reference_files(shared_data):
    for name in KNOWN_SETS:
        for entry, path in zip(KNOWN_SETS[name].files, shared_files(shared_data, name), strict=True):
            assert path.stat().st_size == entry.size and sha256_file(path) == entry.sha256, path
            assert entry.url.startswith("https://")


def test_add_matches_files_by_name_or_hash_and_list_shows_them(shared_data, data, tmp_path, capsys):
    renamed = tmp_path / "2019qrels-pass.txt"  # the NIST download name: matched by its SHA-256
    shutil.copyfile(shared_data / "dl19" / "qrels.txt", renamed)
    assert cli.main(["data", "add", "dl19", str(shared_data / "dl19" / "bm25_top100.json"), str(renamed)]) == 0
    assert sha256_file(data / "dl19" / "qrels.txt") == KNOWN_SETS["dl19"].files[1].sha256
    assert not [p for p in (data / "dl19").iterdir() if p.name.startswith(".")]  # no temporary left
    assert cli.main(["data", "add", "dl19", str(renamed)]) == 0  # again: already there
    assert "already present" in capsys.readouterr().out
    assert cli.main(["data", "path", "dl19", "qrels"]) == 0
    assert capsys.readouterr().out.strip() == str(data / "dl19" / "qrels.txt")
    assert cli.main(["data", "list"]) == 0
    listing = capsys.readouterr().out
    dl19, dl20 = listing.split("\ndl19:")[1].split("\ndl20:")
    assert dl19.count("verified") == 2 and "missing" in dl20 and "r2r data fetch dl20" in dl20


def test_a_wrong_hash_is_refused_and_nothing_is_written(shared_data, data, tmp_path, capsys):
    bad = tmp_path / "qrels.txt"
    bad.write_bytes((shared_data / "dl19" / "qrels.txt").read_bytes().replace(b" 3\n", b" 2\n", 1))
    good = shared_data / "dl19" / "bm25_top100.json"
    assert cli.main(["data", "add", "dl19", str(good), str(bad)]) == 2
    one_error_line(capsys.readouterr().err, "r2r data: error:", str(bad), "does not match dl19/qrels.txt")
    assert cli.main(["data", "add", "dl20", str(shared_data / "dl19" / "qrels.txt")]) == 2  # another set's file
    one_error_line(capsys.readouterr().err, "it is dl19/qrels.txt")
    other = tmp_path / "notes.txt"
    other.write_text("not a data file\n")
    assert cli.main(["data", "add", "dl19", str(other)]) == 2
    one_error_line(capsys.readouterr().err, str(other), "is not a file of dataset dl19")
    assert not data.exists()  # every file is checked before anything is written


class _RangeHandler(BaseHTTPRequestHandler):
    """Serves the server's folder with `Range: bytes=N-` support (http.server's handler has none); the server
    records each (path, Range) and can ignore ranges or cut a response short to simulate a dropped connection."""

    def do_GET(self) -> None:
        server = self.server
        path = (server.root / self.path.lstrip("/")).resolve()
        server.requests.append((self.path, self.headers.get("Range")))
        if server.root not in path.parents or not path.is_file():
            self.send_error(404)
            return
        body, start = path.read_bytes(), 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if match and server.honour_range:
            start = int(match.group(1))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        cut, server.cut_after = server.cut_after, None
        self.wfile.write(body[start:] if cut is None else body[start:start + cut])

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def mirror(shared_data, tmp_path) -> Iterator[ThreadingHTTPServer]:
    """A local HTTP server over a folder laid out like the data directory, holding copies of the shared files."""
    root = tmp_path / "mirror"
    for name in ("dl19",):
        (root / name).mkdir(parents=True)
        for path in shared_files(shared_data, name):
            shutil.copyfile(path, root / name / path.name)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RangeHandler)
    server.root, server.requests, server.honour_range, server.cut_after = root.resolve(), [], True, None
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def assert_complete(data: Path, name: str) -> None:
    for entry in KNOWN_SETS[name].files:
        assert sha256_file(data / name / entry.name) == entry.sha256
    assert not list((data / name).glob("*.part"))


def test_fetch_resumes_a_partial_download(mirror, data, capsys):
    hits = mirror.root / "dl19" / "bm25_top100.json"
    (data / "dl19").mkdir(parents=True)
    (data / "dl19" / "bm25_top100.json.part").write_bytes(hits.read_bytes()[:1000])  # an earlier, cut-off fetch
    assert cli.main(["data", "fetch", "dl19", "--url-base", mirror.url + "/"]) == 0
    assert mirror.requests == [("/dl19/bm25_top100.json", "bytes=1000-"), ("/dl19/qrels.txt", None)]
    assert "resumed after 1,000" in capsys.readouterr().out
    assert_complete(data, "dl19")
    assert cli.main(["data", "fetch", "dl19", "--url-base", mirror.url]) == 0  # present and verified: no request
    assert len(mirror.requests) == 2 and capsys.readouterr().out.count("already present and verified") == 2


def test_a_dropped_connection_keeps_the_part_and_the_next_fetch_continues(mirror, data, capsys):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    assert cli.main(["data", "fetch", "dl19", "--url-base", closed, "--timeout", "5"]) == 1
    one_error_line(capsys.readouterr().err, "r2r data: error: cannot download", closed)
    assert not data.exists()  # no bytes, no folder
    mirror.cut_after = 700_000
    assert cli.main(["data", "fetch", "dl19", "--url-base", mirror.url]) == 1
    one_error_line(capsys.readouterr().err, "r2r data: error:", "stopped after 700,000", "fetch again to resume")
    assert (data / "dl19" / "bm25_top100.json.part").stat().st_size == 700_000
    assert not (data / "dl19" / "bm25_top100.json").exists()
    assert cli.main(["data", "fetch", "dl19", "--url-base", mirror.url]) == 0
    assert mirror.requests[1] == ("/dl19/bm25_top100.json", "bytes=700000-")
    assert_complete(data, "dl19")


def test_a_server_without_range_restarts_and_wrong_bytes_are_never_kept(mirror, data, capsys):
    mirror.honour_range = False
    (data / "dl19").mkdir(parents=True)
    (data / "dl19" / "qrels.txt.part").write_bytes(b"19335 Q0 1017759 0\n")
    assert cli.main(["data", "fetch", "dl19", "--url-base", mirror.url]) == 0  # 200 for a range: starts again
    assert_complete(data, "dl19")
    shutil.rmtree(data)
    served = mirror.root / "dl19" / "qrels.txt"
    served.write_bytes(served.read_bytes().replace(b" 3\n", b" 1\n", 1))  # same size, other bytes
    assert cli.main(["data", "fetch", "dl19", "--url-base", mirror.url]) == 1
    one_error_line(capsys.readouterr().err, "qrels.txt", "SHA-256", "nothing kept")
    assert not (data / "dl19" / "qrels.txt").exists() and not (data / "dl19" / "qrels.txt.part").exists()
    assert (data / "dl19" / "bm25_top100.json").is_file()  # the verified file stays


def test_evaluate_by_name_gives_the_published_bm25_figure(shared_data, tmp_path, capsys):
    assert cli.main(["data", "add", "dl19", *map(str, shared_files(shared_data, "dl19"))]) == 0
    run = tmp_path / "bm25.trec"
    write_run(run, candidates_to_run(read_candidates(dataset_file("dl19", "candidates"))), tag="bm25")
    out = tmp_path / "eval.json"
    assert cli.main(["evaluate", "--dataset", "dl19", "--run", str(run), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["dataset"] == "dl19" and len(result["result"]["qids"]) == 43
    assert result["result"]["means"]["ndcg@10"] == pytest.approx(0.5058, abs=1e-4)
    assert "0.5058" in capsys.readouterr().out


def test_a_missing_or_changed_set_says_how_to_get_it(shared_data, data, tmp_path, capsys):
    run = tmp_path / "run.trec"
    run.write_text("19335 Q0 1017759 1 1.0 t\n")
    assert cli.main(["evaluate", "--dataset", "dl20", "--run", str(run)]) == 2
    one_error_line(capsys.readouterr().err, f"dataset dl20 is not in {data}: run r2r data fetch dl20, or "
                                            "r2r data add dl20 bm25_top100.json qrels.txt")
    out = tmp_path / "teacher.jsonl"
    assert cli.main(["import-teacher", "--dataset", "r2r-release", "--output", str(out)]) == 2
    one_error_line(capsys.readouterr().err, "r2r import-teacher: error:", "r2r data fetch r2r-release")
    assert cli.main(["evaluate", "--dataset", "nosuch", "--run", str(run)]) == 2
    one_error_line(capsys.readouterr().err, "unknown dataset 'nosuch'", "dl19, dl20, r2r-release")
    assert cli.main(["data", "add", "dl19", str(shared_data / "dl19" / "qrels.txt")]) == 0
    assert cli.main(["evaluate", "--dataset", "dl19", "--run", str(run)]) == 0
    with pytest.raises(DatasetError, match="no bm25_top100.json .* r2r data add dl19 bm25_top100.json$"):
        dataset_file("dl19", "candidates")
    with pytest.raises(DatasetError, match="has no corpus file"):
        dataset_file("dl19", "corpus")
    qrels = data / "dl19" / "qrels.txt"
    qrels.write_bytes(qrels.read_bytes().replace(b" 3\n", b" 2\n", 1))
    capsys.readouterr()
    assert cli.main(["evaluate", "--dataset", "dl19", "--run", str(run)]) == 2
    one_error_line(capsys.readouterr().err, str(qrels), "does not match its SHA-256")
    assert not out.exists()


def test_rerank_and_import_teacher_read_the_named_files(shared_data, tmp_path, capsys):
    from r2r_jax.rerank.cli import read_inputs

    args = argparse.Namespace(dataset="dl20", candidates=None, run=None, corpus=None, queries=None, depth=5,
                              max_queries=2)
    with pytest.raises(DatasetError, match="r2r data fetch dl20"):
        read_inputs(args)
    assert cli.main(["data", "add", "dl20", *map(str, shared_files(shared_data, "dl20"))]) == 0
    stream, source, files = read_inputs(args)
    items = list(stream())
    assert source == str(dataset_file("dl20", "candidates")) and files == [source]
    assert len(items) == 2 and all(len(qc.candidates) == 5 and len(tail) == 95 for qc, tail in items)
    assert cli.main(["data", "add", "r2r-release", *map(str, shared_files(shared_data, "r2r-release"))]) == 0
    out = tmp_path / "teacher.jsonl"
    assert cli.main(["import-teacher", "--dataset", "r2r-release", "--output", str(out)]) == 0
    assert "500 clean" in capsys.readouterr().out and out.read_bytes().count(b"\n") == 500


def make_beir_folder(shared_data: Path, folder: Path, n_queries: int = 3) -> dict[str, dict[str, int]]:
    """A small BEIR folder from DL19: a few judged queries, their BM25 top 100 as the corpus, their judgements
    of those passages as qrels/test.tsv, and one unjudged query; returns the qrels written."""
    items = read_candidates(shared_data / "dl19" / "bm25_top100.json")
    trec = read_qrels(shared_data / "dl19" / "qrels.txt")
    chosen = [qc for qc in items if qc.qid in trec][:n_queries]
    corpus = {c.docid: c.text for qc in chosen for c in qc.candidates}
    (folder / "qrels").mkdir(parents=True)
    with open(folder / "corpus.jsonl", "w") as f:
        for docid, text in corpus.items():
            f.write(json.dumps({"_id": docid, "title": "", "text": text, "metadata": {}}) + "\n")
    with open(folder / "queries.jsonl", "w") as f:
        for qc in chosen:
            f.write(json.dumps({"_id": qc.qid, "text": qc.query, "metadata": {}}) + "\n")
        f.write(json.dumps({"_id": "unjudged-1", "text": "how long do fleas live", "metadata": {}}) + "\n")
    qrels = {qc.qid: {d: g for d, g in trec[qc.qid].items() if d in corpus} for qc in chosen}
    with open(folder / "qrels" / "test.tsv", "w") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        f.writelines(f"{q}\t{d}\t{g}\n" for q, judged in qrels.items() for d, g in judged.items())
    return qrels


def test_a_beir_folder_goes_through_retrieve_and_evaluate(shared_data, data, tmp_path, capsys):
    folder = tmp_path / "mybeir_src"
    qrels = make_beir_folder(shared_data, folder)
    assert read_qrels(folder / "qrels" / "test.tsv") == qrels  # BEIR's TSV, header skipped
    assert cli.main(["data", "add", "mybeir", str(folder), "--beir"]) == 0
    assert "3 judged" in capsys.readouterr().out
    manifest = json.loads((data / "mybeir" / "r2r_dataset.json").read_text())
    assert manifest["files"]["corpus.jsonl"]["sha256"] == sha256_file(folder / "corpus.jsonl")
    assert cli.main(["data", "add", "mybeir", str(folder), "--beir"]) == 2  # exists: --overwrite replaces it
    one_error_line(capsys.readouterr().err, "already exists", "--overwrite")
    assert cli.main(["data", "add", "mybeir", str(folder), "--beir", "--overwrite"]) == 0

    candidates, run = tmp_path / "candidates.jsonl", tmp_path / "bm25.trec"
    assert cli.main(["retrieve", "--dataset", "mybeir", "--output", str(candidates), "--trec", str(run),
                     "--no-progress"]) == 0
    got = read_candidates(candidates)
    assert [qc.qid for qc in got] == list(qrels)  # only the judged queries
    assert read_run(run) == {q: trec_order(h) for q, h in candidates_to_run(got).items()}
    by_name, by_path = tmp_path / "by_name.json", tmp_path / "by_path.json"
    trec_qrels = tmp_path / "qrels.txt"
    trec_qrels.write_text("".join(f"{q} Q0 {d} {g}\n" for q, judged in qrels.items() for d, g in judged.items()))
    assert cli.main(["evaluate", "--dataset", "mybeir", "--run", str(run), "--json", str(by_name)]) == 0
    assert cli.main(["evaluate", "--qrels", str(trec_qrels), "--run", str(run), "--json", str(by_path)]) == 0
    a, b = (json.loads(p.read_text())["result"] for p in (by_name, by_path))
    assert a["means"] == b["means"] and len(a["qids"]) == 3 and a["means"]["ndcg@10"] > 0.3
    assert cli.main(["data", "list"]) == 0
    assert "mybeir: your BEIR folder (3 judged queries" in capsys.readouterr().out
    with pytest.raises(DatasetError, match="run r2r retrieve --dataset mybeir"):
        dataset_file("mybeir", "candidates")


def test_bad_beir_folders_and_names_are_refused(tmp_path, data, capsys):
    folder = tmp_path / "beir"
    folder.mkdir()
    (folder / "corpus.jsonl").write_text('{"_id": "d1", "title": "", "text": "a passage"}\n')
    (folder / "queries.jsonl").write_text('{"_id": "q1", "text": "a query"}\n')
    assert cli.main(["data", "add", "mine", str(folder), "--beir"]) == 2
    one_error_line(capsys.readouterr().err, "r2r data: error:", "has no qrels/test.tsv")
    (folder / "qrels").mkdir()
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq2\td1\t1\n")
    assert cli.main(["data", "add", "mine", str(folder), "--beir"]) == 2
    one_error_line(capsys.readouterr().err, "judged queries have no text")
    assert cli.main(["data", "add", "dl19", str(folder), "--beir"]) == 2
    one_error_line(capsys.readouterr().err, "choose another name")
    assert cli.main(["data", "add", "../escape", str(folder), "--beir"]) == 2
    one_error_line(capsys.readouterr().err, "dataset name")
    assert not data.exists()
    assert data_dir() == data


def test_beir_qrels_need_their_header_to_be_read_as_three_columns(tmp_path):
    path = tmp_path / "test.tsv"
    path.write_text("query-id\tcorpus-id\tscore\nq1\td1\t2\nq1\td2\t0\n")
    assert read_qrels(path) == {"q1": {"d1": 2, "d2": 0}}
    path.write_text("q1\td1\t2\n")  # no header: a TREC line missing a field
    with pytest.raises(RecordError, match="expected 4 fields"):
        read_qrels(path)
    path.write_text("query-id\tcorpus-id\tscore\nq1\td1\n")
    with pytest.raises(RecordError, match=r":2: expected 3 fields"):
        read_qrels(path)
    path.write_text("query-id\tcorpus-id\tscore\n")
    with pytest.raises(RecordError, match="empty qrels"):
        read_qrels(path)
