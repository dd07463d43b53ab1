"""Teacher building blocks without a server: parsing and repair, windows, prompts, retry timing, cost, output."""

import json
import time
from email.utils import formatdate

import pytest

from r2r_jax.data.records import Candidate, RecordError, TeacherRecord
from r2r_jax.teacher.client import RetryPolicy, retry_after_seconds
from r2r_jax.teacher.cost import BudgetExceeded, CostMeter, Prices, prices_for
from r2r_jax.teacher.generate import TeachSettings, comparison_pairs, windows
from r2r_jax.teacher.output import OrderedAppender, TeacherOutput, read_done
from r2r_jax.teacher.parse import Unusable, parse_comparison, parse_ranking
from r2r_jax.teacher.prompts import PromptError, load_prompt, parse_prompt


def _ranking(items):
    return json.dumps({"ranked_passages": items})


def test_ranking_repairs_duplicates_unknown_and_missing():
    content = _ranking([{"id": 3, "reason": "best"}, {"id": "[3]", "reason": "again"}, {"id": 9, "reason": "?"},
                        {"id": "1", "reason": "ok"}, {"id": "passage x", "reason": "?"}])
    ans = parse_ranking(content, "stop", 4)
    assert ans.order == [2, 0, 1, 3]  # 2 and 4 were missing: appended in input order
    assert ans.reasons == {2: "best", 0: "ok"}
    assert dict(ans.repairs) == {"duplicate": 1, "unknown": 2, "missing": 2, "missing_reason": 2}


def test_ranking_tolerates_fences_and_prose_but_not_garbage():
    fenced = "```json\n" + _ranking([{"id": 2, "reason": "a"}, {"id": 1, "reason": "b"}]) + "\n```"
    assert parse_ranking(fenced, "stop", 2).order == [1, 0]
    prose = "Here you go: " + _ranking([{"id": 1, "reason": "a"}, {"id": 2, "reason": "b"}]) + " Hope it helps."
    assert parse_ranking(prose, "stop", 2).repairs == {}
    with pytest.raises(Unusable) as e:
        parse_ranking("[2] > [1]", "stop", 2)
    assert e.value.kind == "invalid_json"
    with pytest.raises(Unusable) as e:
        parse_ranking(_ranking([{"id": 7, "reason": "x"}]), "stop", 2)
    assert e.value.kind == "no_known_ids"
    with pytest.raises(Unusable) as e:  # even parseable JSON is not trusted when cut off
        parse_ranking(_ranking([{"id": 1, "reason": "x"}]), "length", 2)
    assert e.value.kind == "truncated"


def test_comparison_answers():
    assert parse_comparison('{"preferred": 2, "reason": " because "}', "stop") == (2, "because")
    assert parse_comparison('{"preferred": null, "reason": "tie"}', "stop") == (0, "tie")
    for bad in ('{"preferred": 3, "reason": "x"}', '{"preferred": 1}', '[1, 2]'):
        with pytest.raises(Unusable):
            parse_comparison(bad, "stop")


@pytest.mark.parametrize("k,window,step", [(100, 20, 10), (5, 4, 2), (3, 20, 10), (7, 3, 3), (1, 2, 1)])
def test_windows_cover_everything_bottom_to_top(k, window, step):
    spans = windows(k, window, step)
    assert spans[-1][0] == 0 and spans[0][1] == k
    assert all(e - s <= window for s, e in spans)
    assert set().union(*(range(s, e) for s, e in spans)) == set(range(k))
    assert [s for s, _ in spans] == sorted((s for s, _ in spans), reverse=True)


def test_comparison_pairs_adjacent_and_sampled_are_deterministic():
    adjacent = TeachSettings(model="m", top_m=4)
    assert comparison_pairs(10, adjacent, "q") == [(0, 1), (1, 2), (2, 3)]
    assert comparison_pairs(2, adjacent, "q") == [(0, 1)]
    sampled = TeachSettings(model="m", top_m=5, pairs="sampled", num_pairs=3, seed=1)
    first = comparison_pairs(10, sampled, "q1")
    assert first == comparison_pairs(10, sampled, "q1") and len(first) == 3
    assert all(0 <= i < j < 5 for i, j in first)


def test_packaged_prompts_and_malformed_prompt_files():
    rank = load_prompt("rank", "v1")
    msgs = rank.messages(query="q $1 {x}", num=2, passages="[1] a\n[2] b")
    assert "q $1 {x}" in msgs[1]["content"] and "[2] b" in msgs[1]["content"]
    assert rank.response_format("json_schema")["json_schema"]["strict"] is True
    assert rank.response_format("text") is None
    assert load_prompt("compare", "v1").schema["name"] == "comparison"
    with pytest.raises(PromptError, match="no prompt rank_v99.txt"):
        load_prompt("rank", "v99")
    with pytest.raises(PromptError, match=r"my\.txt: missing sections \['reask', 'schema'\]"):
        parse_prompt("### system\ns\n### user\nu\n", "rank", "v9", "my.txt")


def test_retry_after_forms_and_backoff_bounds():
    assert retry_after_seconds({"retry-after": "2"}) == 2.0
    assert retry_after_seconds({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    when = retry_after_seconds({"retry-after": formatdate(time.time() + 30, usegmt=True)})
    assert 25 < when <= 30
    assert retry_after_seconds({"retry-after": "soon"}) is None and retry_after_seconds({}) is None
    policy = RetryPolicy(backoff_base=1.0, backoff_max=8.0)
    assert all(0 <= policy.delay(a, None) <= min(8.0, 2 ** a) for a in range(10) for _ in range(20))
    assert 3.0 <= policy.delay(0, 3.0) <= 3.3  # Retry-After wins over the backoff
    # a busy server (timeout, 429) is never re-sent at once: at least half the cap
    assert all(min(8.0, 2 ** a) / 2 <= policy.delay(a, None, busy=True) <= min(8.0, 2 ** a)
               for a in range(10) for _ in range(20))


def test_in_flight_limit_halves_when_busy_and_grows_back():
    import threading

    from r2r_jax.teacher.pacing import InFlightLimit

    limit = InFlightLimit(8, grow_after=2)
    limit.busy()
    limit.busy()
    assert limit.limit == 2
    for _ in range(3):
        limit.busy()
    assert limit.limit == 1  # never below one
    peak, now, lock = [0], [0], threading.Lock()

    def call():
        with limit:
            with lock:
                now[0] += 1
                peak[0] = max(peak[0], now[0])
            time.sleep(0.01)
            with lock:
                now[0] -= 1

    threads = [threading.Thread(target=call) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] == 1  # at limit 1 the calls ran one at a time
    for _ in range(4):
        limit.succeeded()
    assert limit.limit == 3
    for _ in range(100):
        limit.succeeded()
    assert limit.limit == 8  # back to --concurrency, not beyond


def test_prices_and_budget_reservations():
    assert prices_for("gpt-4o-mini-2024-07-18") == Prices(0.15, 0.60)
    assert prices_for("gpt-4o-2024-08-06") == Prices(2.50, 10.00)
    assert prices_for("my-local-llama") is None
    assert prices_for("my-local-llama", 1.0, 2.0) == Prices(1.0, 2.0)
    with pytest.raises(ValueError, match="--max-cost needs prices"):
        CostMeter(None, budget=1.0)
    meter = CostMeter(Prices(1e6, 1e6), budget=1000.0)  # $1 a token: easy arithmetic
    body = {"messages": [{"role": "user", "content": "x" * 300}], "max_completion_tokens": 100}
    r1 = meter.reserve(body)
    assert r1 > 100 + 300 / 4  # more than the tokens the endpoint would report
    meter.settle(r1, {"prompt_tokens": 80, "completion_tokens": 20})
    assert meter.spent == 100 and meter.reserved == 0
    while True:
        try:
            meter.settle(meter.reserve(body), {"prompt_tokens": 80, "completion_tokens": 20})
        except BudgetExceeded:
            break
    assert meter.spent <= 1000.0 and meter.spent + r1 > 1000.0


def _record(qid, model="m", **teacher):
    return TeacherRecord(qid, f"query {qid}", [Candidate("d1", "t1"), Candidate("d2", "t2")], ["d2", "d1"],
                         teacher={"model": model, "prompt_version": "v1", "top_k": 20, "window": 20, "step": 10,
                                  "pair_order": "first-stage", **teacher})


def test_output_appends_in_order_resumes_and_refuses_mixed_settings(tmp_path):
    settings = TeachSettings(model="m")
    path = tmp_path / "teacher.jsonl"
    out = TeacherOutput(path, settings)
    appender = OrderedAppender(out, 3)
    appender.resolve(2, _record("c"))
    appender.resolve(1, None)  # failed: skipped
    assert path.read_text() == ""  # slot 0 is not resolved yet
    appender.resolve(0, _record("a"))
    assert [json.loads(line)["qid"] for line in path.read_text().splitlines()] == ["a", "c"]
    out.close()
    with open(path, "a") as f:
        f.write('{"schema": "r2r.teacher/1", "qid": "torn')  # a kill in the middle of a write
    assert [r.qid for r in read_done(path, settings)] == ["a", "c"]
    out = TeacherOutput(path, settings)  # repairs the torn line
    out.append(_record("b"))
    assert out.put_in_order(["a", "b", "c"]) is True
    out.close()
    assert [json.loads(line)["qid"] for line in path.read_text().splitlines()] == ["a", "b", "c"]
    with pytest.raises(RecordError, match=r"teacher\.jsonl:1: field 'teacher\.model': made with model='m'"):
        read_done(path, TeachSettings(model="other"))


def test_an_output_started_before_pair_order_existed_resumes_only_in_ranking_order(tmp_path):
    """Records without `pair_order` showed pairs in the ranking's order: resuming them under the new default
    is refused (nothing is called), and `--pair-order ranking` continues them."""
    path = tmp_path / "teacher.jsonl"
    old = _record("a").to_dict()
    del old["teacher"]["pair_order"]
    path.write_text(json.dumps(old) + "\n")
    with pytest.raises(RecordError, match=r"field 'teacher\.pair_order': made with pair_order='ranking'"):
        read_done(path, TeachSettings(model="m"))
    assert [r.qid for r in read_done(path, TeachSettings(model="m", pair_order="ranking"))] == ["a"]
