"""`r2r teach` end to end against a real HTTP server on 127.0.0.1 (tests/fake_openai_server.py).

Shapes are small (6 queries x 6 candidates, windows of 4 by 2, comparisons among the top 3: 4 calls a query),
so every run takes about a second; faults, kills and budgets are real. Nothing depends on the host's speed: a
call's --timeout (30 s; 5 s where a call is held) is far above any answer's time, the `slow` fault is never
answered (the client's timeout always fires), and a run is killed while the server holds its calls, not after
a delay.
"""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fake_openai_server import FakeOpenAI

from r2r_jax import cli
from r2r_jax.data.candidates import QueryCandidates, ScoredPassage, write_candidates
from r2r_jax.data.records import read_records

KEY = "sk-r2r-test-SECRET-7f3a9c1e5b"
REPO = Path(__file__).resolve().parents[1]
SHAPE = ["--top-k", "6", "--window", "4", "--step", "2", "--top-m", "3"]
CALLS_PER_QUERY = 4  # 2 windows + 2 adjacent pairs


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)


@pytest.fixture
def candidates(tmp_path) -> Path:
    queries = []
    for q in range(6):
        passages = [ScoredPassage(f"d{q}-{i}", f"Passage {i} about topic {q}, grade={(3 * i + q) % 5}.", 20.0 - i)
                    for i in range(6)]
        queries.append(QueryCandidates(f"q{q}", f"what is topic {q}", passages))
    path = tmp_path / "candidates.jsonl"
    write_candidates(path, queries)
    return path


def sliding_oracle(grades: list[int], window: int = 4, step: int = 2) -> list[int]:
    """Positions in the order RankGPT's sliding windows leave them when every window is sorted by grade."""
    order, end = list(range(len(grades))), len(grades)
    while True:
        start = max(0, end - window)
        order[start:end] = sorted(order[start:end], key=lambda i: (-grades[i], order.index(i)))
        if start == 0:
            return order
        end -= step


def teach_args(candidates, out: Path, url: str, *extra: str) -> list[str]:
    return ["teach", "--candidates", str(candidates), "--output", str(out), "--model", "gpt-4o",
            "--base-url", url, *SHAPE, "--backoff-base", "0.01", "--timeout", "30", "--no-progress",
            "--summary-json", str(out) + ".summary.json", *extra]


def wait_for(condition, proc: subprocess.Popen) -> None:
    """Until `condition()` holds while `proc` runs (a guard of minutes against a hang, not a timing)."""
    deadline = time.monotonic() + 300
    while not condition() and proc.poll() is None:
        assert time.monotonic() < deadline, "the run never reached the expected state"
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read()


def summary_of(out: Path) -> dict:
    return json.loads(Path(str(out) + ".summary.json").read_text())


def reference_output(candidates, tmp_path, *extra: str) -> bytes:
    """teacher.jsonl of an uninterrupted, fault-free run with its own server and cache."""
    out = tmp_path / "reference" / "teacher.jsonl"
    with FakeOpenAI(KEY) as server:
        assert cli.main(teach_args(candidates, out, server.url, *extra)) == 0
    return out.read_bytes()


def test_faults_are_survived_repaired_and_counted(candidates, tmp_path):
    faults = [{"query": "topic 1", "stage": "rank", "fault": f} for f in ("429", "500", "503", "drop",
                                                                          "malformed_body", "slow")]
    faults += [{"query": "topic 2", "stage": "rank", "fault": "bad_ids"},
               {"query": "topic 3", "stage": "rank", "fault": "bad_json"},
               {"query": "topic 4", "stage": "compare", "fault": "length"}]
    out = tmp_path / "teacher.jsonl"
    with FakeOpenAI(KEY, faults) as server:
        # a 5-second timeout for the held `slow` call; every other answer comes in milliseconds
        assert cli.main(teach_args(candidates, out, server.url, "--concurrency", "3", "--timeout", "5")) == 0
        events = list(server.events)
    assert all(rule["times"] == 0 for rule in server.faults)  # every fault was served
    records = list(read_records(out))
    assert [r.qid for r in records] == [f"q{i}" for i in range(6)]
    for r in records:
        assert len(r.ranking) == 6 and len(r.comparisons) == 2
        grades = [int(c.text.split("grade=")[1][0]) for c in r.candidates]
        if r.qid != "q2":  # the teacher's order, fault or not
            assert r.ranking == [r.candidates[i].docid for i in sliding_oracle(grades)]
        assert sorted(grades, reverse=True)[:2] == [grades[int(d[-1])] for d in r.ranking[:2]]
    q2 = records[2]
    assert q2.teacher["repairs"] == {"duplicate": 1, "missing": 1, "missing_reason": 1, "unknown": 1}
    assert len(q2.direct_reasons) == 5  # the passage the teacher left out has no reason
    assert records[3].teacher["reasks"] == 1 and records[4].teacher["reasks"] == 1
    s = summary_of(out)
    assert s["retries"]["rate_limited"] == 1 and s["retries"]["server_error"] == 2
    assert s["retries"]["connection"] == 1 and s["retries"]["bad_response"] == 1
    assert s["retries"]["timeout"] == 1
    assert s["unusable_answers"] == {"invalid_json": 1, "truncated": 1} and s["reasks"] == 2
    assert s["repairs"] == {"duplicate": 1, "missing": 1, "missing_reason": 1, "unknown": 1}
    assert s["queries"]["completed"] == 6 and s["failures"] == 0 and s["calls"] == 6 * CALLS_PER_QUERY + 2
    # Retry-After: 1 was honoured: the retry of the rate-limited request came a second later
    limited = next((t, h) for t, h, _, outcome in events if outcome == "429")
    retry = next(t for t, h, _, _ in events if h == limited[1] and t > limited[0])
    assert retry - limited[0] >= 1.0


def test_permanent_failure_is_listed_and_only_it_is_retried(candidates, tmp_path):
    out = tmp_path / "teacher.jsonl"
    failures = tmp_path / "teacher.jsonl.failures.jsonl"
    with FakeOpenAI(KEY, [{"query": "topic 2", "stage": "compare", "fault": "400"}]) as server:
        assert cli.main(teach_args(candidates, out, server.url)) == 1
        listed = [json.loads(line) for line in failures.read_text().splitlines()]
        assert [f["qid"] for f in listed] == ["q2"] and listed[0]["error"].startswith("compare: ")
        assert [r.qid for r in read_records(out)] == ["q0", "q1", "q3", "q4", "q5"]
        calls_before = server.total_answered
        assert cli.main(teach_args(candidates, out, server.url)) == 0
        s = summary_of(out)
        assert s["queries"] == {"total": 6, "already_done": 5, "completed": 1}
        assert s["calls"] == 2 and s["cache_hits"] == 2  # q2's windows were cached; its comparisons were not
        assert server.total_answered == calls_before + 2
        assert max(server.answered.values()) == 1
    assert not failures.exists()
    assert out.read_bytes() == reference_output(candidates, tmp_path)  # back in input order


def test_api_key_never_leaks(candidates, tmp_path, capfd, caplog):
    faults = [{"query": "topic 0", "stage": "rank", "fault": "429"},
              {"query": "topic 1", "stage": "rank", "fault": "400"},
              {"query": "topic 2", "stage": "rank", "fault": "401"}]  # the server echoes the key it was sent
    out = tmp_path / "teacher.jsonl"
    caplog.set_level("DEBUG")
    with FakeOpenAI(KEY, faults) as server:
        rc = cli.main(teach_args(candidates, out, server.url, "--verbose", "--concurrency", "1"))
        assert server.fault_counts["401"] == 1
    assert rc == 1
    captured = capfd.readouterr()
    assert "[redacted]" in captured.err  # the fatal error is reported, scrubbed
    for text in (captured.out, captured.err, caplog.text):
        assert KEY not in text
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name.endswith(".sqlite") for p in files) and any("failures" in p.name for p in files)
    for p in files:
        assert KEY.encode() not in p.read_bytes(), p


def test_missing_key_and_dry_run(candidates, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("OPENAI_API_KEY")
    out = tmp_path / "teacher.jsonl"
    assert cli.main(teach_args(candidates, out, "http://127.0.0.1:9/v1")) == 2
    assert "OPENAI_API_KEY is not set" in capsys.readouterr().err
    assert cli.main(teach_args(candidates, out, "http://127.0.0.1:9/v1", "--dry-run")) == 0
    report = capsys.readouterr().out
    assert "6 queries" in report and "12 ranking windows + 12 comparisons" in report and "cost: ~$" in report
    assert not out.exists() and not list(tmp_path.glob("*.sqlite"))


def test_sigkill_mid_run_then_rerun_pays_nothing_twice(candidates, tmp_path):
    out = tmp_path / "teacher.jsonl"
    cache = tmp_path / "teacher.jsonl.cache.sqlite"

    def cached() -> int:
        try:
            with sqlite3.connect(f"file:{cache}?mode=ro", uri=True) as db:
                return db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
        except sqlite3.OperationalError:  # no file yet, or the file exists a moment before its table does
            return 0

    with FakeOpenAI(KEY) as server:
        server.freeze_after(9)  # 9 answers, then every call is held: the run cannot finish before the kill
        args = teach_args(candidates, out, server.url, "--concurrency", "3")
        proc = subprocess.Popen([sys.executable, "-m", "r2r_jax.cli", *args], cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wait_for(lambda: server.frozen >= 1 and cached() == 9, proc)
        assert server.total_answered == 9
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
        server.release()
        written = len(list(read_records(out)))
        assert written < 6  # the kill really interrupted the run
        assert cli.main(teach_args(candidates, out, server.url)) == 0
        s = summary_of(out)
        assert s["calls"] == 6 * CALLS_PER_QUERY - 9  # only what was never answered is asked
        assert s["calls"] + s["cache_hits"] == (6 - written) * CALLS_PER_QUERY
        assert server.total_answered == 6 * CALLS_PER_QUERY
        assert max(server.answered.values()) == 1  # no request was answered twice
    assert out.read_bytes() == reference_output(candidates, tmp_path)


def test_sigterm_stops_like_ctrl_c_with_summary_and_exit_143(candidates, tmp_path):
    """A preempted job or `timeout`: the same clean stop as Ctrl-C — summary, failures file, exit 143 — and
    a rerun completes without paying twice."""
    out = tmp_path / "teacher.jsonl"
    with FakeOpenAI(KEY) as server:
        server.freeze_after(5)
        args = teach_args(candidates, out, server.url, "--concurrency", "2")
        proc = subprocess.Popen([sys.executable, "-m", "r2r_jax.cli", *args], cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wait_for(lambda: server.frozen >= 1, proc)
        proc.send_signal(signal.SIGTERM)
        server.release()
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 143, err
        assert "interrupted" in err and "Traceback" not in err
        assert summary_of(out)["calls"] >= 5  # the summary is written, as after Ctrl-C
        assert cli.main(teach_args(candidates, out, server.url)) == 0
        assert max(server.answered.values()) == 1  # nothing paid twice
    assert out.read_bytes() == reference_output(candidates, tmp_path)


def test_max_cost_stops_before_the_budget_and_a_rerun_completes(candidates, tmp_path):
    out = tmp_path / "teacher.jsonl"
    prices = ["--price-in", "1000", "--price-out", "1000", "--max-tokens", "300"]  # $0.001 a token
    with FakeOpenAI(KEY) as server:
        assert cli.main(teach_args(candidates, out, server.url, *prices, "--max-cost", "1.5")) == 3
        s = summary_of(out)
        assert 0 < s["cost_usd"] <= 1.5 and s["stopped"].startswith("budget")
        assert s["queries"]["stopped"] >= 1
        assert len(list(read_records(out))) < 6
        assert cli.main(teach_args(candidates, out, server.url, *prices, "--max-cost", "100")) == 0
        assert max(server.answered.values()) == 1
    assert out.read_bytes() == reference_output(candidates, tmp_path, "--max-tokens", "300")


BATCH_FAULTS = [{"query": "topic 1", "stage": "rank", "fault": "bad_ids"},
                {"query": "topic 2", "stage": "compare", "fault": "bad_json"}]


def test_batch_mode_gives_the_online_records_at_half_price(candidates, tmp_path):
    online, batch = tmp_path / "online.jsonl", tmp_path / "batch.jsonl"
    with FakeOpenAI(KEY, BATCH_FAULTS) as server:
        assert cli.main(teach_args(candidates, online, server.url)) == 0
    faults = BATCH_FAULTS + [{"query": "topic 3", "stage": "rank", "fault": "batch_error"}]
    with FakeOpenAI(KEY, faults, batch_polls=2) as server:
        args = teach_args(candidates, batch, server.url, "--mode", "batch", "--poll-interval", "0.01")
        assert cli.main(args) == 0
        assert server.batches and max(server.answered.values()) == 1
    assert batch.read_bytes() == online.read_bytes()
    s_online, s_batch = summary_of(online), summary_of(batch)
    assert s_batch["retries"] == {"batch_error": 1} and s_batch["repairs"] == s_online["repairs"]
    assert s_batch["tokens"] == s_online["tokens"]
    assert s_batch["cost_usd"] == pytest.approx(s_online["cost_usd"] / 2, abs=1e-6)


def test_batch_interrupted_while_polling_is_resumed_not_resubmitted(candidates, tmp_path, monkeypatch):
    from r2r_jax.teacher.batch import BatchRunner

    out = tmp_path / "teacher.jsonl"
    real_wait = BatchRunner._wait

    def interrupted(self, batch_id, total):
        raise KeyboardInterrupt

    with FakeOpenAI(KEY) as server:
        args = teach_args(candidates, out, server.url, "--mode", "batch", "--poll-interval", "0.01")
        monkeypatch.setattr(BatchRunner, "_wait", interrupted)
        assert cli.main(args) == 130
        assert len(server.batches) == 1 and not out.read_text()
        monkeypatch.setattr(BatchRunner, "_wait", real_wait)
        assert cli.main(args) == 0
        assert max(server.answered.values()) == 1
        first_round = json.loads(server.files["file-0"].decode().splitlines()[0])["custom_id"]
        later_inputs = [server.files[b["input_file_id"]].decode() for b in list(server.batches.values())[1:]]
        assert all(first_round not in text for text in later_inputs)  # the first batch was never resubmitted
    assert out.read_bytes() == reference_output(candidates, tmp_path)


def test_the_authors_preset_asks_once_per_query_and_keeps_listwise_reasons(candidates, tmp_path):
    """--preset r2r-authors: one call over each query's top 5 (no pairwise stage), a direct and a listwise
    reason per passage; each listwise reason becomes a comparison over the window in the order the teacher saw
    it, about its passage, so a passage number the reason cites names the same passage in the record."""
    out = tmp_path / "teacher.jsonl"
    with FakeOpenAI(KEY) as server:
        assert cli.main(teach_args(candidates, out, server.url, "--preset", "r2r-authors")) == 0
        assert sum(server.answered.values()) == 6  # one ranking call per query, nothing else
    records = list(read_records(out))
    assert len(records) == 6
    for rec in records:
        grade = {c.docid: int(c.text.split("grade=")[1].rstrip(".")) for c in rec.candidates}
        window = [c.docid for c in rec.candidates]
        assert len(window) == 5 and set(rec.direct_reasons) == set(window)
        assert [grade[d] for d in rec.ranking] == sorted(grade.values(), reverse=True)
        assert sorted(c.about for c in rec.comparisons) == sorted(window)
        for cmp in rec.comparisons:
            assert cmp.docids == window and cmp.preferred is None
            cited = int(cmp.reason.rsplit("passage ", 1)[1])  # "... the best is passage k"
            assert cmp.docids[cited - 1] == rec.ranking[0]
        assert rec.teacher["prompt_version"] == "r2r" and rec.teacher["usage"]["calls"] == 1


def test_compared_pairs_are_shown_in_first_stage_order(candidates, tmp_path):
    """A pair of the final top-m is shown as [1], [2] in first-stage order, so the prompt's order does not
    reveal the teacher's ranking; `preferred` names the passage the teacher chose. `--pair-order ranking`
    shows the better-ranked passage first, as outputs made before the option did."""
    runs = {}
    for order in ("first-stage", "ranking"):
        out = tmp_path / order / "teacher.jsonl"
        with FakeOpenAI(KEY) as server:
            assert cli.main(teach_args(candidates, out, server.url, "--pair-order", order)) == 0
        runs[order] = list(read_records(out))
    flipped = 0
    for rec, old in zip(runs["first-stage"], runs["ranking"], strict=True):
        position = {c.docid: i for i, c in enumerate(rec.candidates)}
        grade = {c.docid: int(c.text.split("grade=")[1].rstrip(".")) for c in rec.candidates}
        assert rec.teacher["pair_order"] == "first-stage" and old.teacher["pair_order"] == "ranking"
        for new_cmp, old_cmp in zip(rec.comparisons, old.comparisons, strict=True):
            a, b = new_cmp.docids
            assert position[a] < position[b] and sorted(new_cmp.docids) == sorted(old_cmp.docids)
            assert rec.ranking.index(old_cmp.docids[0]) < rec.ranking.index(old_cmp.docids[1])
            if grade[a] != grade[b]:  # the fake teacher prefers the higher grade, whichever slot it is in
                assert new_cmp.preferred == max((a, b), key=grade.get)
            flipped += new_cmp.docids != old_cmp.docids
    assert flipped > 0  # some pairs' first-stage order differs from their ranking order
