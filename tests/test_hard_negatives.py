"""Hard negatives: BM25-mined other queries' passages (`r2r mine-negatives`), shown under a record's query in
training (`data.hard_negatives`), ranked last."""

import dataclasses
import json
import re

import numpy as np
import pytest

from r2r_jax import cli
from r2r_jax.config import DataConfig
from r2r_jax.config_io import ConfigError
from r2r_jax.data.features import BatchShapes, build_batch, tokenize_records
from r2r_jax.data.records import Candidate, RecordError, TeacherRecord, read_records, record_from_dict, write_records
from r2r_jax.data.templates import load_tokenizer, special_ids
from r2r_jax.retrieval.hard_negatives import mine_negatives

# two topics, two queries each: a query's best passages among the other records are its topic twin's
TOPICS = {
    "v1": ("why do volcanoes erupt", ["Magma rises in a volcano until pressure makes it erupt.",
                                      "A volcano vents gas before the magma reaches the crater."]),
    "v2": ("what is volcanic magma made of", ["Magma in a volcano is molten rock with dissolved gas.",
                                              "Magma cools into basalt or granite below a volcano."]),
    "b1": ("how do bees produce honey", ["Bees turn flower nectar into honey in the hive.",
                                      "Worker bees fan nectar until the honey thickens."]),
    "b2": ("why do bees need flowers", ["Flowers give bees nectar and pollen to eat.",
                                        "Bees carry pollen between flowers as they feed."]),
}
CFG = DataConfig(group_size=2, max_prompt_len=40, max_target_len=8, comparisons_per_query=0,
                 max_comparison_prompt_len=40, random_negatives=1, hard_negatives=2)


def _records() -> list[TeacherRecord]:
    out = []
    for qid, (query, texts) in TOPICS.items():
        cands = [Candidate(f"{qid}d{i}", t) for i, t in enumerate(texts)]
        out.append(TeacherRecord(qid, query, cands, [c.docid for c in cands], {c.docid: "it answers" for c in cands}))
    return out


@pytest.fixture(scope="module")
def tok(shared_data):
    return load_tokenizer(shared_data.parent / "tokenizers" / "llama3_1")


def test_mined_negatives_are_the_topic_twins_passages_never_the_records_own():
    mined = mine_negatives(_records(), 2)
    twin = {"v1": "v2", "v2": "v1", "b1": "b2", "b2": "b1"}
    for rec in mined:
        assert len(rec.negatives) == 2 and {c.docid[:2] for c in rec.negatives} == {twin[rec.qid]}
        assert not {c.docid for c in rec.negatives} & {c.docid for c in rec.candidates}
        assert all(c.first_stage_score > 0 for c in rec.negatives)
    skipped = {r.qid: [c.docid for c in r.negatives] for r in mine_negatives(_records(), 1, skip=1)}
    assert {r.qid: [c.docid for c in r.negatives][1:] for r in mined} == skipped


def test_negatives_round_trip_and_old_records_keep_their_bytes(tmp_path):
    mined = mine_negatives(_records(), 2)
    path = tmp_path / "hn.jsonl"
    write_records(path, mined)
    assert list(read_records(path)) == mined
    plain = _records()[0].to_dict()
    assert "negatives" not in plain and record_from_dict(plain).negatives == []


@pytest.mark.parametrize("negatives, message", [
    ([{"docid": "v1d0", "text": "x"}], "field 'negatives': docids ['v1d0'] are also candidates"),
    ([{"docid": "n", "text": "x"}, {"docid": "n", "text": "y"}], "field 'negatives': duplicate docids"),
    ([{"docid": "n"}], "field 'negatives[0].text': missing"),
    ({"docid": "n"}, "field 'negatives': expected a list"),
])
def test_bad_negatives_name_the_field(negatives, message):
    obj = {**_records()[0].to_dict(), "negatives": negatives}
    with pytest.raises(RecordError, match="^" + re.escape(f"f.jsonl:7: {message}")):
        record_from_dict(obj, "f.jsonl", 7)


def _negative_passages(tok, batch, b, first_row, query):
    """The passages of rows first_row.. of query b, each checked to sit under the record's query."""
    p, out = CFG.max_prompt_len, []
    for row in range(first_row, batch["input_ids"].shape[1]):
        text = tok.decode(batch["input_ids"][b, row, :p][batch["attention_mask"][b, row, :p] == 1])
        assert f"Query: {query}\n" in text
        out.append(text.split("Passage: ")[-1].removesuffix("\nRelevance:"))
    return out


def test_hard_rows_come_from_the_records_mined_negatives_ranked_last(tok):
    mined = mine_negatives(_records(), 2)
    tokenized = tokenize_records(mined, tok, CFG)
    batch = build_batch(tokenized, [(0, 0), (2, 3)], BatchShapes.from_config(CFG), special_ids(tok).pad, seed=0)
    g, n = CFG.group_size, CFG.random_negatives
    assert batch["input_ids"].shape[1] == g + n + CFG.hard_negatives
    for b, rec in enumerate((mined[0], mined[2])):
        assert list(batch["teacher_rank"][b, g:]) == [g + 1] * 3 and batch["candidate_mask"][b].all()
        assert not batch["target_mask"][b, g:].any()
        hard = _negative_passages(tok, batch, b, g + n, rec.query)
        assert sorted(hard) == sorted(c.text for c in rec.negatives)
    # the random rows are the same draws as in a run without hard negatives
    plain_cfg = dataclasses.replace(CFG, hard_negatives=0)
    plain = build_batch(tokenize_records(mined, tok, plain_cfg), [(0, 0), (2, 3)], BatchShapes.from_config(plain_cfg),
                        special_ids(tok).pad, seed=0)
    for k in ("input_ids", "attention_mask", "teacher_rank"):
        np.testing.assert_array_equal(batch[k][:, :g + n], plain[k])


def test_a_record_short_of_mined_negatives_fills_with_random_passages(tok):
    mined = mine_negatives(_records(), 2)
    mined[1] = dataclasses.replace(mined[1], negatives=mined[1].negatives[:1])
    tokenized = tokenize_records(mined, tok, CFG)
    batch = build_batch(tokenized, [(1, 0)], BatchShapes.from_config(CFG), special_ids(tok).pad, seed=0)
    hard = _negative_passages(tok, batch, 0, CFG.group_size + 1, mined[1].query)
    assert mined[1].negatives[0].text in hard
    own = {c.text for c in mined[1].candidates}
    assert len(set(hard)) == 2 and not own & set(hard)
    with pytest.raises(ConfigError, match="no record has mined `negatives`"):
        tokenize_records(_records(), tok, CFG)


def test_cli_writes_records_with_negatives_and_rejects_bad_input(tmp_path, capsys):
    source, out = tmp_path / "teacher.jsonl", tmp_path / "hn.jsonl"
    write_records(source, _records())
    assert cli.main(["mine-negatives", "--records", str(source), "--output", str(out), "--count", "2",
                     "--no-progress"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [len(r["negatives"]) for r in rows] == [2, 2, 2, 2]
    assert "4 records, 2 negatives each" in capsys.readouterr().err
    write_records(source, _records()[:1])
    assert cli.main(["mine-negatives", "--records", str(source), "--output", str(tmp_path / "x.jsonl")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("r2r mine-negatives: error: ") and "needs at least 2 records" in err
    assert "\n" not in err and not (tmp_path / "x.jsonl").exists()
    assert cli.main(["mine-negatives", "--records", str(tmp_path / "none.jsonl"), "--output", str(out)]) == 2
    assert "none.jsonl" in capsys.readouterr().err


def _graded_pool() -> list[TeacherRecord]:
    """One query about volcanoes and nine other records whose passage says "volcano" k = 1..9 times in ten
    words, so BM25 ranks the other records' passages k = 9 first, k = 1 last."""
    out = [TeacherRecord("q", "volcano", [Candidate("qd", "A volcano erupts.")], ["qd"], {"qd": "it answers"})]
    for k in range(1, 10):
        text = " ".join(["volcano"] * k + [f"filler{k}"] * (10 - k))
        out.append(TeacherRecord(f"r{k}", f"unrelated question {k}", [Candidate(f"d{k}", text)], [f"d{k}"],
                                 {f"d{k}": "it answers"}))
    return out


def test_spread_takes_evenly_spaced_ranks_of_the_deep_list():
    best = [c.docid for c in mine_negatives(_graded_pool(), 9)[0].negatives]
    assert best == [f"d{k}" for k in range(9, 0, -1)]  # the pool's full BM25 order
    spread = [c.docid for c in mine_negatives(_graded_pool(), 3, spread=9)[0].negatives]
    assert spread == [best[0], best[3], best[6]]
    # a query matching fewer passages than `spread` spreads over the ones it matches, still `count` of them
    assert [c.docid for c in mine_negatives(_graded_pool(), 3, spread=100)[0].negatives] == spread
    # after `skip`, ranks count from the first passage kept
    assert [c.docid for c in mine_negatives(_graded_pool(), 2, skip=1, spread=4)[0].negatives] == [best[1], best[3]]
    with pytest.raises(ValueError, match="below count"):
        mine_negatives(_graded_pool(), 3, spread=2)


def test_cli_spread_below_count_is_refused_before_reading(tmp_path, capsys):
    out = tmp_path / "hn.jsonl"
    assert cli.main(["mine-negatives", "--records", str(tmp_path / "none.jsonl"), "--output", str(out),
                     "--count", "8", "--spread", "4"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "r2r mine-negatives: error: --spread 4 is below --count 8" and not out.exists()
