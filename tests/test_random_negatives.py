"""Random negatives: other records' passages under this record's query, ranked last, without a reason."""

import dataclasses

import numpy as np
import pytest

from r2r_jax.config import DataConfig
from r2r_jax.data.features import BatchShapes, batch_spec, build_batch, tokenize_records
from r2r_jax.data.negatives import negative_pools
from r2r_jax.data.records import Candidate, TeacherRecord
from r2r_jax.data.templates import load_tokenizer, special_ids

CFG = DataConfig(group_size=3, max_prompt_len=40, max_target_len=8, comparisons_per_query=0,
                 max_comparison_prompt_len=40, random_negatives=2)


@pytest.fixture(scope="module")
def tok(shared_data):
    return load_tokenizer(shared_data.parent / "tokenizers" / "llama3_1")


def _records(n=4):
    out = []
    for q in range(n):
        cands = [Candidate(f"q{q}d{i}", f"passage {i} about topic{q} and its details") for i in range(3)]
        out.append(TeacherRecord(f"q{q}", f"what is topic{q}", cands, [c.docid for c in cands],
                                 {c.docid: f"it covers topic{q}" for c in cands}))
    return out


def test_pools_hold_only_other_records_passages():
    records = _records()
    pools = negative_pools(records, 5, seed=0)
    for rec, pool in zip(records, pools, strict=True):
        assert len(pool) == len(set(pool)) == 5
        assert not {c.text for c in rec.candidates} & set(pool)
    assert pools == negative_pools(records, 5, seed=0) and pools != negative_pools(records, 5, seed=1)
    with pytest.raises(ValueError, match="random_negatives"):
        negative_pools(records[:2], 4, seed=0)  # only 3 other passages exist


def test_negatives_rank_last_without_targets(tok):
    records = _records()
    tokenized = tokenize_records(records, tok, CFG)
    shapes = BatchShapes.from_config(CFG)
    pad = special_ids(tok).pad
    batch = build_batch(tokenized, [(0, 0), (2, 1)], shapes, pad, seed=0)
    assert {k: v.shape for k, v in batch.items()} == {k: s for k, (s, _) in batch_spec(shapes, 2).items()}
    g, p = CFG.group_size, CFG.max_prompt_len
    assert batch["input_ids"].shape[1] == g + 2
    for b, rec in enumerate((records[0], records[2])):
        assert sorted(batch["teacher_rank"][b, :g]) == [1, 2, 3]
        assert list(batch["teacher_rank"][b, g:]) == [4, 4]  # tied, below every teacher passage
        assert batch["candidate_mask"][b].all()
        assert not batch["target_mask"][b, g:].any() and batch["target_mask"][b, :g].any(axis=-1).all()
        for row in range(g, g + 2):
            text = tok.decode(batch["input_ids"][b, row, :p][batch["attention_mask"][b, row, :p] == 1])
            assert rec.query in text  # this record's query ...
            assert f"topic{rec.qid[1:]} and" not in text and "about topic" in text  # ... another record's passage


def test_without_negatives_batches_are_unchanged(tok):
    records = _records()
    with_neg = build_batch(tokenize_records(records, tok, CFG), [(1, 0)], BatchShapes.from_config(CFG),
                           special_ids(tok).pad, seed=3)
    plain_cfg = dataclasses.replace(CFG, random_negatives=0)
    plain = build_batch(tokenize_records(records, tok, plain_cfg), [(1, 0)], BatchShapes.from_config(plain_cfg),
                        special_ids(tok).pad, seed=3)
    for k in ("input_ids", "attention_mask", "target_mask", "teacher_rank", "candidate_mask"):
        np.testing.assert_array_equal(with_neg[k][:, :CFG.group_size], plain[k])
