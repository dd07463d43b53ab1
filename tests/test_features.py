"""The batch contract with the real Llama-3.1 tokenizer: layout, BOS, truncation, masks, group selection."""

import dataclasses

import numpy as np
import pytest
from conftest import missing

from r2r_jax.config import DataConfig
from r2r_jax.data.features import (
    BatchShapes,
    batch_spec,
    build_batch,
    encode_comparison_prompts,
    encode_prompts,
    select_group,
    tokenize_records,
)
from r2r_jax.data.importers import import_file
from r2r_jax.data.records import Candidate, Comparison, TeacherRecord
from r2r_jax.data.templates import check_template, encode_texts, load_tokenizer, special_ids

BOS, EOT, PAD = 128000, 128009, 128004
CFG = DataConfig(group_size=4, max_prompt_len=48, max_target_len=12, comparisons_per_query=2,
                 max_comparison_prompt_len=80)


@pytest.fixture(scope="module")
def tok(shared_data):
    path = shared_data.parent / "tokenizers" / "llama3_1"
    if not path.is_dir():
        missing(f"no Llama tokenizer at {path}")
    return load_tokenizer(path)


def _record():
    long = " ".join(f"word{i}" for i in range(200))
    cands = [Candidate("a", "Short passage about bees."), Candidate("b", long),
             Candidate("c", "No reason for this one."), Candidate("d", "Text with <|eot_id|> inside.")]
    reasons = {"a": "It explains bees.", "b": " ".join(["long reason"] * 40), "d": "Mentions eot."}
    cmps = [Comparison(["a", "b"], "a", "[1] is about bees."), Comparison(["b", "c", "d"], None, "All similar.")]
    return TeacherRecord("q1", "how do bees dance", cands, ["a", "d", "b", "c"], reasons, cmps)


def _batch(tok, records, cfg=CFG, epoch=0):
    tokenized = tokenize_records(records, tok, cfg)
    shapes = BatchShapes.from_config(cfg)
    return build_batch(tokenized, [(i, epoch) for i in range(len(records))], shapes, special_ids(tok).pad, 0)


def test_special_ids_of_llama(tok):
    ids = special_ids(tok)
    assert (ids.bos, ids.eot, ids.pad) == (BOS, EOT, PAD)


def test_layout_contract(tok):
    rec = _record()
    batch = _batch(tok, [rec])
    p, t, g, c = CFG.max_prompt_len, CFG.max_target_len, CFG.group_size, CFG.comparisons_per_query
    spec = batch_spec(BatchShapes.from_config(CFG), 1)
    assert {k: (v.shape, v.dtype) for k, v in batch.items()} == spec
    assert spec["input_ids"][0] == (1, g, p + t)
    assert spec["cmp_input_ids"][0] == (1, c, CFG.max_comparison_prompt_len + t)
    ids, mask = batch["input_ids"][0], batch["attention_mask"][0]
    np.testing.assert_array_equal(batch["target_ids"], batch["input_ids"][..., p:])
    np.testing.assert_array_equal(batch["target_mask"], batch["attention_mask"][..., p:])
    assert (ids[mask == 0] == PAD).all()
    text = {cand.docid: cand.text for cand in rec.candidates}
    order = {tuple(encode_texts(tok, [f"Query: {rec.query}\nPassage: {text[d]}\nRelevance:"])[0]): d for d in text}
    rank_of = {}
    for row in range(g):
        prompt = ids[row, :p][mask[row, :p] == 1]
        assert (prompt == BOS).sum() == 1 and prompt[0] == BOS  # BOS exactly once, first real token
        assert mask[row, p - 1] == 1 and (mask[row, :p] == 1).sum() == len(prompt)  # left-padded, ends at P-1
        assert tok.decode(prompt).endswith("\nRelevance:")
        target = ids[row, p:][mask[row, p:] == 1]
        docid = order.get(tuple(prompt.tolist())) or "b"  # only b is truncated
        rank_of[docid] = batch["teacher_rank"][0, row]
        if docid == "c":
            assert len(target) == 0 and batch["target_mask"][0, row].sum() == 0
        else:
            assert target[-1] == EOT and (target == EOT).sum() == 1
            assert (mask[row, p:p + len(target)] == 1).all()  # right-padded after the prompt
        if docid == "d":
            assert EOT not in prompt  # special-token text inside a passage is plain text
    assert rank_of == {"a": 1, "d": 2, "b": 3, "c": 4}
    assert batch["candidate_mask"].tolist() == [[1, 1, 1, 1]]


def test_truncation_keeps_template_end_and_eot(tok):
    batch = _batch(tok, [_record()])
    p, t = CFG.max_prompt_len, CFG.max_target_len
    texts = [tok.decode(batch["input_ids"][0, r, :p][batch["attention_mask"][0, r, :p] == 1]) for r in range(4)]
    row = next(r for r, text in enumerate(texts) if "word0" in text)  # the truncated passage
    text = texts[row]
    assert batch["attention_mask"][0, row, :p].sum() >= p - 4  # cut with at most a few tokens of slack
    assert text.startswith("<|begin_of_text|>Query: how do bees dance\nPassage: word0 word1")
    assert text.endswith("\nRelevance:")
    target = batch["input_ids"][0, row, p:]
    assert batch["target_mask"][0, row].sum() == t and target[-1] == EOT  # reason cut to T, eot kept last
    assert tok.decode(target[:-1]).startswith(" long reason long reason")


def test_comparison_rows(tok):
    batch = _batch(tok, [_record()])
    pc = CFG.max_comparison_prompt_len
    seen = set()
    for row in range(2):
        m = batch["cmp_attention_mask"][0, row]
        assert m[pc - 1] == 1 and batch["cmp_input_ids"][0, row][m == 1][0] == BOS
        prompt = tok.decode(batch["cmp_input_ids"][0, row, :pc][m[:pc] == 1])
        assert prompt.endswith("Which passage answers the query better, and why?\nComparison:")
        assert "\n[1] " in prompt and "\n[2] " in prompt
        target = batch["cmp_target_ids"][0, row][batch["cmp_target_mask"][0, row] == 1]
        assert target[-1] == EOT
        seen.add(tok.decode(target[:-1]).strip())
        assert (batch["cmp_attention_mask"][0, row].sum() <= pc + CFG.max_target_len)
    assert seen == {"[1] is about bees.", "All similar."}


def test_padding_for_small_groups_and_missing_comparisons(tok):
    rec = _record()
    rec.candidates, rec.ranking, rec.comparisons = rec.candidates[:2], ["a", "b"], []
    batch = _batch(tok, [rec])
    assert batch["candidate_mask"][0].sum() == 2 and sorted(batch["teacher_rank"][0].tolist()) == [0, 0, 1, 2]
    pad_rows = batch["candidate_mask"][0] == 0
    assert (batch["attention_mask"][0][pad_rows] == 0).all() and (batch["input_ids"][0][pad_rows] == PAD).all()
    assert (batch["cmp_attention_mask"] == 0).all() and (batch["cmp_target_mask"] == 0).all()


def test_inference_prompts_equal_training_prompts(tok):
    rec = _record()
    batch = _batch(tok, [rec])
    p = CFG.max_prompt_len
    ids, mask = encode_prompts(tok, rec.query, [c.text for c in rec.candidates], CFG.prompt_template, p)
    assert ids.shape == mask.shape == (4, p) and ids.dtype == np.int32
    train_rows = {tuple(r) for r in batch["input_ids"][0, :, :p].tolist()}
    assert {tuple(r) for r in ids.tolist()} == train_rows
    assert (mask[:, -1] == 1).all()
    text_of = {"p1": "one", "p2": "two", "long": "x" * 2000, "short": "y"}
    cmps = [Comparison(["p1", "p2"], None, ""), Comparison(["long", "short"], None, "", about="short")]
    cids, cmask = encode_comparison_prompts(tok, rec.query, text_of, cmps, CFG.comparison_template, 64)
    assert cids.shape == (2, 64) and cmask[1].sum() <= 64 and tok.decode(cids[1]).endswith("Comparison:")


def test_templates_are_checked(tok):
    with pytest.raises(ValueError, match="never add it twice"):
        check_template("<|begin_of_text|>Q: {query} P: {passage}", ("query", "passage"), tok)
    with pytest.raises(ValueError, match="exactly the fields"):
        check_template("Q: {query}", ("query", "passage"), tok)
    with pytest.raises(ValueError, match="template alone"):
        encode_prompts(tok, "q", ["p"], "A very long template " * 20 + "{query} {passage}", 16)


def test_group_selection_keeps_top_and_spreads():
    ranks = np.random.default_rng(0).permutation(np.arange(1, 41))
    picks = [select_group(ranks, 8, np.random.default_rng([0, 5, e])) for e in range(6)]
    for chosen in picks:
        got = sorted(ranks[chosen].tolist())
        assert len(set(got)) == 8 and got[:2] == [1, 2]  # the teacher's top max(1, G // 4) always
        strata = np.linspace(0, 38, 7).astype(int)  # the 38 ranks after the top 2, in 6 strata
        per_stratum = [sum(lo <= r - 3 < hi for r in got[2:]) for lo, hi in zip(strata[:-1], strata[1:], strict=True)]
        assert per_stratum == [1] * 6
    again = select_group(ranks, 8, np.random.default_rng([0, 5, 0]))
    np.testing.assert_array_equal(again, picks[0])
    assert len({tuple(sorted(c.tolist())) for c in picks}) > 1  # epochs see different groups


def test_release_records_tokenize_within_limits(tok, shared_data):
    records, _ = import_file(shared_data / "teacher/r2r_gpt4_msmarco_500.jsonl", "r2r")
    cfg = dataclasses.replace(CFG, group_size=5, comparisons_per_query=1)
    tokenized = tokenize_records(records[:40], tok, cfg)
    assert all(len(p) <= cfg.max_prompt_len and p[0] == BOS and (p == BOS).sum() == 1
               for r in tokenized for p in r.prompts)
    assert all(len(p) <= cfg.max_comparison_prompt_len for r in tokenized for p in r.cmp_prompts)
    assert all(len(r.cmp_prompts) == 5 and sorted(r.ranks.tolist()) == [1, 2, 3, 4, 5] for r in tokenized)
    # the template's end survives truncation (its "\n" may merge with a passage's last "." as ".\n")
    assert all(tok.decode(p[-4:]).endswith("\nRelevance:") for r in tokenized for p in r.prompts)
    assert sum(len(p) >= cfg.max_prompt_len - 4 for r in tokenized for p in r.prompts) > 20  # truncation happened


def test_long_queries_are_cut_before_passages_lose_every_token(tok):
    """A query longer than the prompt would leave every passage zero tokens (all scores equal): the query is
    cut to QUERY_SHARE of the budget first and each passage keeps its share; the cuts are counted."""
    from r2r_jax.data.templates import QUERY_SHARE, TruncationStats

    query = " ".join(f"q{i}" for i in range(300))
    passages = ["alpha beta gamma " * 40, "delta epsilon " * 40]
    stats = TruncationStats()
    ids, mask = encode_prompts(tok, query, passages, "Query: {query}\nPassage: {passage}\nRelevance:", 64, stats)
    texts = [tok.decode(row[m == 1]) for row, m in zip(ids, mask, strict=True)]
    assert texts[0] != texts[1] and "alpha" in texts[0] and "delta" in texts[1]
    for row in texts:
        query_part = row.split("\nPassage:")[0]
        assert len(tok(query_part, add_special_tokens=False).input_ids) <= int(64 * QUERY_SHARE) + 3
        assert row.endswith("\nRelevance:")
    assert (stats.prompts, stats.truncated, stats.queries_cut) == (2, 2, 2)
    assert "2 of 2 prompts" in stats.line(64)


def test_a_template_that_leaves_no_room_for_the_passage_is_an_error(tok):
    """The query is cut to half the budget, but a template that takes the other half leaves nothing."""
    template = "Query: {query}\n" + "Read this long instruction carefully. " * 5 + "Passage: {passage}\nRelevance:"
    query = " ".join(f"q{i}" for i in range(300))
    with pytest.raises(ValueError, match="no tokens for the passage"):
        encode_prompts(tok, query, ["some passage text " * 20], template, 64)
