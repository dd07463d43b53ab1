"""Teacher records: the R2R release import, repairs and rejections, rank_llm import, schema errors."""

import json
import re

import pytest

from r2r_jax.cli import main as r2r_main
from r2r_jax.data.importers import import_file
from r2r_jax.data.records import RecordError, read_records, record_from_dict

RELEASE = "teacher/r2r_gpt4_msmarco_500.jsonl"


def _r2r_row(qid="q1", n=4, **changes):
    row = {
        "qid": qid, "query": "what is a test query",
        "unsorted_docs": [f"passage number {i}" for i in range(1, n + 1)],
        "re_rank_id": list(range(n, 0, -1)),
        "sorted_docids": ["0", "2"] + ["x"] * (n - 2),
        "scores": ["0"] * (n - 1) + ["1"],
        "reason": {"ranked_passages": [
            {"identifier": i, "direct_reason": f"direct {i}", "listwise_reason": f"listwise {i}",
             "direct_answer_sentence": "s"} for i in range(n, 0, -1)]},
    }
    row.update(changes)
    return row


def _write(path, rows):
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


@pytest.fixture(scope="module")
def release(shared_data):
    return import_file(shared_data / RELEASE, "r2r")


def test_release_every_row_imported_or_reported(shared_data, release):
    path = shared_data / RELEASE
    records, report = release
    assert report.rows == 500
    assert report.clean + report.repaired + report.rejected == 500
    assert len(records) == report.written == report.clean + report.repaired
    rejected_lines = {p["line"] for p in report.problems if p["status"] == "rejected"}
    repaired_lines = {p["line"] for p in report.problems if p["status"] == "repaired"}
    assert len(rejected_lines) == report.rejected and len(repaired_lines) == report.repaired
    for p in report.problems:
        assert p["message"].startswith(f"{path}:{p['line']}: ")
    qids = [json.loads(line)["qid"] for line in open(path)]
    assert [r.qid for r in records] == [q for i, q in enumerate(qids, 1) if i not in rejected_lines]

    first = json.loads(open(path).readline())
    rec = records[0]
    assert rec.qid == first["qid"] and [c.docid for c in rec.candidates] == [f"{rec.qid}-{i}" for i in range(1, 6)]
    assert rec.ranking == [f"{rec.qid}-{i}" for i in first["re_rank_id"]]
    assert [c.text for c in rec.candidates] == [d.strip() for d in first["unsorted_docs"]]
    for entry in first["reason"]["ranked_passages"]:
        docid = f"{rec.qid}-{entry['identifier']}"
        assert rec.direct_reasons[docid] == entry["direct_reason"].strip()
        cmp = next(c for c in rec.comparisons if c.about == docid)
        assert cmp.reason == entry["listwise_reason"].strip()
        assert cmp.docids == [c.docid for c in rec.candidates] and cmp.preferred is None  # the window's order
    assert sum(rec.teacher["source_labels"].values()) == sum(int(s) for s in first["scores"])
    for r in records:  # every written record passes the schema after a JSON round trip
        record_from_dict(json.loads(json.dumps(r.to_dict())))


def test_quirky_rows_repaired_or_rejected(tmp_path):
    few = _r2r_row("q3")
    few["reason"]["ranked_passages"] = few["reason"]["ranked_passages"][:2]
    rows = [
        _r2r_row("q1"),
        _r2r_row("q2", re_rank_id=["4", "3", "[2]", 1]),  # string identifiers
        few,  # fewer reasons than passages
        '{"qid": "q4", "query": ',  # malformed JSON
        "",  # blank line: not a row
        _r2r_row("q5", query="  "),  # unusable: empty query
        _r2r_row("q1"),  # duplicate qid
        _r2r_row("q6", re_rank_id=[2, 2, 9, 1]),  # duplicate + unknown; 3 and 4 appended
        _r2r_row("q7", re_rank_id=None),  # ranking from the order of ranked_passages
        _r2r_row("q8", unsorted_docs=["a", "", "c", "d"]),  # an empty passage is dropped
        _r2r_row("q9", unsorted_docs=["a", 5, "c", "d"]),  # not text: rejected
    ]
    path = _write(tmp_path / "in.jsonl", rows)
    records, report = import_file(path, "r2r")
    assert (report.rows, report.blank_lines) == (10, 1)
    assert (report.clean, report.repaired, report.rejected) == (1, 5, 4)
    by_line = {}
    for p in report.problems:
        by_line.setdefault(p["line"], []).append(p)
    assert by_line[4][0]["status"] == "rejected" and by_line[4][0]["message"].startswith(f"{path}:4: ")
    assert "invalid JSON" in by_line[4][0]["message"]
    assert by_line[6][0]["message"] == f"{path}:6: field 'query': missing or empty"
    assert "already imported from line 1" in by_line[7][0]["message"]
    assert by_line[11][0]["field"] == "unsorted_docs[1]"
    recs = {r.qid: r for r in records}
    assert recs["q2"].ranking == ["q2-4", "q2-3", "q2-2", "q2-1"]
    assert any("given as a string" in p["message"] for p in by_line[2])
    assert set(recs["q3"].direct_reasons) == {"q3-4", "q3-3"} and len(recs["q3"].comparisons) == 2
    assert any("none for identifiers [2, 1]" in p["message"] for p in by_line[3])
    assert recs["q6"].ranking == ["q6-2", "q6-1", "q6-3", "q6-4"]
    assert recs["q7"].ranking == ["q7-4", "q7-3", "q7-2", "q7-1"]
    assert [c.docid for c in recs["q8"].candidates] == ["q8-1", "q8-3", "q8-4"]
    assert recs["q2"].teacher["repairs"]  # repairs are also recorded in the record itself


def test_cli_writes_output_and_report(tmp_path):
    path = _write(tmp_path / "in.jsonl", [_r2r_row("a"), "not json", _r2r_row("b", re_rank_id=[1, 1])])
    out, rep = tmp_path / "teacher.jsonl", tmp_path / "report.json"
    args = ["import-teacher", "--format", "r2r", "--input", str(path), "--output", str(out), "--report", str(rep)]
    assert r2r_main(args) == 0
    assert [r.qid for r in read_records(out)] == ["a", "b"]
    report = json.loads(rep.read_text())
    assert (report["rows"], report["clean"], report["repaired"], report["rejected"]) == (3, 1, 1, 1)
    out.unlink()
    assert r2r_main(args + ["--strict"]) == 1 and not out.exists()


def test_rank_llm_import(tmp_path):
    line = {"query": {"text": "q text", "qid": 7}, "candidates": [
        {"docid": "d2", "score": 3.0, "doc": {"contents": "second"}},
        {"docid": "d1", "score": 2.0, "doc": {"text": "first", "title": "T"}},
        {"docid": "d2", "score": 1.0, "doc": {"contents": "dup"}},
        {"docid": "d3", "score": 0.5, "doc": {}},
    ], "invocations_history": [{"input_token_count": 100, "output_token_count": 5}]}
    path = _write(tmp_path / "rl.jsonl", [line, {"query": {"text": "x"}, "candidates": []}])
    records, report = import_file(path, "rank_llm", teacher_model="gpt-4o")
    assert (report.clean, report.repaired, report.rejected) == (0, 1, 1)
    rec = records[0]
    assert rec.qid == "7" and rec.ranking == ["d2", "d1"] and rec.candidates[1].text == "T: first"
    assert rec.teacher["usage"] == {"prompt_tokens": 100, "completion_tokens": 5}
    assert rec.teacher["model"] == "gpt-4o"
    assert report.problems[-1]["field"] == "query.qid"


def test_malformed_teacher_line_names_file_and_line(tmp_path, release):
    records, _ = release
    good = json.dumps(records[0].to_dict())
    path = _write(tmp_path / "teacher.jsonl", [good, good.replace('"qid"', '"qid" ', 1)[:-10]])
    it = read_records(path)
    next(it)
    with pytest.raises(RecordError, match="^" + re.escape(f"{path}:2: invalid JSON")):
        next(it)


@pytest.mark.parametrize("change, field", [
    (lambda o: o.update(ranking=o["ranking"][:-1]), "'ranking'"),
    (lambda o: o["candidates"][1].update(text=3), "'candidates[1].text'"),
    (lambda o: o.pop("query"), "'query'"),
    (lambda o: o["comparisons"][0].update(preferred="nope"), "'comparisons[0].preferred'"),
    (lambda o: o["comparisons"][0].update(about="nope"), "'comparisons[0].about'"),
    (lambda o: o["direct_reasons"].update(unknown="x"), "'direct_reasons'"),
])
def test_schema_errors_name_the_field(change, field, release):
    records, _ = release
    obj = json.loads(json.dumps(records[0].to_dict()))
    change(obj)
    with pytest.raises(RecordError, match="^" + re.escape(f"f.jsonl:3: field {field}: ")):
        record_from_dict(obj, "f.jsonl", 3)


CITATION = re.compile(r"\b[Pp]assages?\s+((?:\[?\d+\]?(?:\s*(?:,|and|&|or)\s*)?)+)|\[(\d+)\]")


def test_release_comparison_targets_cite_passages_as_their_prompts_number_them(shared_data, release):
    """A listwise reason cites other passages by the numbers the teacher saw (1..5, the release's
    `unsorted_docs` order). Every number a target cites must name, in the student's comparison prompt, the
    passage the teacher saw under that number; and the prompt must say which passage the reason explains."""
    from r2r_jax.config import DataConfig
    from r2r_jax.data.templates import render_comparison

    records, _ = release
    rows = {json.loads(line)["qid"]: json.loads(line) for line in open(shared_data / RELEASE)}
    template, citing = DataConfig().comparison_template, 0
    for rec in records:
        shown = [d.strip() for d in rows[rec.qid]["unsorted_docs"]]  # identifier k is shown[k - 1]
        text = {c.docid: c.text for c in rec.candidates}
        for cmp in rec.comparisons:
            cited = [int(n) for m in CITATION.finditer(cmp.reason)
                     for n in re.findall(r"\d+", m.group(1) or m.group(2))]
            citing += bool(cited)
            prompt = render_comparison(template, rec.query, [text[d] for d in cmp.docids],
                                       cmp.docids.index(cmp.about) + 1)
            for k in set(cited):
                assert 1 <= k <= len(cmp.docids), (rec.qid, cmp.reason)
                assert f"[{k}] {shown[k - 1]}" in prompt  # [k] in the prompt is the teacher's passage k
            k = cmp.docids.index(cmp.about) + 1
            assert shown[k - 1] == text[cmp.about] and f"Explain passage [{k}] against the others." in prompt
    assert citing > 1000  # 1,166 of the 2,500 reasons cite passage numbers
