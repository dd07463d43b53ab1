"""The synthetic ranking task: grades follow the key word, teacher data and dev qrels agree with the text."""

import json

import numpy as np

from r2r_jax.data.features import BatchShapes, build_batch, tokenize_records
from r2r_jax.data.records import record_from_dict
from r2r_jax.data.templates import special_ids
from r2r_jax.testing.synthetic import (
    KEYS,
    make_synthetic_dev,
    make_synthetic_records,
    synthetic_data_config,
    synthetic_tokenizer,
)


def _key(query):
    return next(w for w in query.split() if w in KEYS)


def test_records_follow_the_key_word():
    records = make_synthetic_records(60, seed=1)
    distractors = 0
    for rec in records:
        record_from_dict(json.loads(json.dumps(rec.to_dict())))  # valid schema after a JSON round trip
        key = _key(rec.query)
        grade = {c.docid: c.text.split().count(key) for c in rec.candidates}
        assert grade == rec.teacher["grades"]
        ranked = [grade[d] for d in rec.ranking]
        assert ranked == sorted(ranked, reverse=True) and ranked[0] > 0 and ranked[-1] == 0
        for d, g in grade.items():
            assert (f"mentions {key}" in rec.direct_reasons[d]) == (g > 0)
        for cmp in rec.comparisons:
            assert grade[cmp.preferred] == max(grade[d] for d in cmp.docids)
            assert f"passage [{cmp.docids.index(cmp.preferred) + 1}] is more relevant" in cmp.reason
        distractors += sum(any(k in c.text.split() for k in KEYS if k != key) for c in rec.candidates)
    assert distractors > 100  # "contains some key word" is not a shortcut


def test_dev_is_held_out_and_qrels_match_text():
    records = make_synthetic_records(20, seed=1)
    queries, qrels = make_synthetic_dev(20, seed=1)
    assert not {q.qid for q in queries} & {r.qid for r in records}
    for q in queries:
        key = _key(q.query)
        assert qrels[q.qid] == {c.docid: c.text.split().count(key) for c in q.candidates}
        assert max(qrels[q.qid].values()) > 0 and min(qrels[q.qid].values()) == 0
    again, _ = make_synthetic_dev(20, seed=1)
    assert [c.text for q in again for c in q.candidates] == [c.text for q in queries for c in q.candidates]
    other, _ = make_synthetic_dev(20, seed=2)
    assert [q.query for q in other] != [q.query for q in queries]


def test_tokenizer_and_shapes_hold_the_task_without_truncation():
    tok = synthetic_tokenizer()
    cfg = synthetic_data_config()
    records = make_synthetic_records(30, seed=0)
    tokenized = tokenize_records(records, tok, cfg)
    ids = special_ids(tok)
    assert (ids.bos, ids.eot, ids.pad) == (0, 1, 2) and len(tok) < 512  # fits the tiny model's vocabulary
    unk = tok.convert_tokens_to_ids("<unk>")
    for rec, tr in zip(records, tokenized, strict=True):
        assert all(unk not in p and len(p) < cfg.max_prompt_len for p in tr.prompts)
        assert all(unk not in t and len(t) < cfg.max_target_len for t in tr.targets)
        assert all(len(p) < cfg.max_comparison_prompt_len for p in tr.cmp_prompts)
        full = tok(f"Query: {rec.query}\nPassage: {rec.candidates[0].text}\nRelevance:")["input_ids"]
        assert tr.prompts[0].tolist() == full
    batch = build_batch(tokenized, [(0, 0), (1, 0)], BatchShapes.from_config(cfg), ids.pad, 0)
    assert batch["input_ids"].shape == (2, 8, 64) and (batch["candidate_mask"] == 1).all()
    assert np.array_equal(np.sort(batch["teacher_rank"], axis=1), np.tile(np.arange(1, 9), (2, 1)))
