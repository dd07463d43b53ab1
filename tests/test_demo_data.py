"""The shipped demo set: valid, small, reproducible from tools/make_demo_data.py; its tokenizer."""

import importlib.util
from pathlib import Path

import pytest

from r2r_jax.config import DataConfig
from r2r_jax.data.candidates import read_candidates
from r2r_jax.data.features import encode_prompts
from r2r_jax.data.records import read_records
from r2r_jax.data.templates import load_tokenizer, special_ids
from r2r_jax.testing.demo_tokenizer import DEMO_DATA, build_demo_tokenizer, demo_texts, train_demo_tokenizer

FILES = ("teacher.jsonl", "dev_candidates.jsonl", "dev_qrels.txt")


def _qrels():
    qrels = {}
    for line in (DEMO_DATA / "dev_qrels.txt").read_text().splitlines():
        qid, zero, docid, grade = line.split()
        assert zero == "0"
        qrels.setdefault(qid, {})[docid] = int(grade)
    return qrels


def test_files_are_small_and_valid():
    assert sum((DEMO_DATA / f).stat().st_size for f in FILES) < 1_000_000
    records = list(read_records(DEMO_DATA / "teacher.jsonl"))
    assert len(records) == 80
    for rec in records:
        assert len(rec.candidates) == 10 and set(rec.direct_reasons) == {c.docid for c in rec.candidates}
        assert rec.comparisons and all(c.preferred in c.docids for c in rec.comparisons)
    dev = read_candidates(DEMO_DATA / "dev_candidates.jsonl")
    qrels = _qrels()
    assert len(dev) == 20 and set(qrels) == {q.qid for q in dev}
    assert not {q.qid for q in dev} & {r.qid for r in records}
    for q in dev:
        assert len(q.candidates) == 20 and all(c.docid in qrels[q.qid] for c in q.candidates)
        assert 3 in qrels[q.qid].values()


def test_committed_data_is_what_the_script_writes(tmp_path):
    script = Path(__file__).resolve().parents[1] / "tools" / "make_demo_data.py"
    spec = importlib.util.spec_from_file_location("make_demo_data", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    counts = module.make(tmp_path)
    assert counts["passages"] >= 200 and counts["train_queries"] == 80 and counts["dev_queries"] == 20
    for name in FILES:
        fresh, shipped = (tmp_path / name).read_bytes(), (DEMO_DATA / name).read_bytes()
        assert fresh == shipped, f"rerun tools/make_demo_data.py: {name} is stale"


@pytest.fixture(scope="module")
def demo_tok(tmp_path_factory):
    return build_demo_tokenizer(tmp_path_factory.mktemp("tok"))


def test_demo_tokenizer_loads_like_llama(demo_tok):
    tok = load_tokenizer(demo_tok)
    assert len(tok) == 1000 and tok.pad_token == "<|finetune_right_pad_id|>"
    ids = special_ids(tok)
    assert ids.pad == tok.pad_token_id and tok.convert_ids_to_tokens([ids.bos, ids.eot]) == [
        "<|begin_of_text|>", "<|eot_id|>"]
    enc = tok("Query: how do owls fly so quietly")["input_ids"]
    assert enc.count(ids.bos) == 1 and enc[0] == ids.bos
    prompts, mask = encode_prompts(tok, "why is glacier ice blue", ["Dense glacier ice has few bubbles."],
                                   DataConfig().prompt_template, 64)
    assert tok.decode(prompts[0][mask[0] == 1]).endswith("Relevance:")
    assert len(tok("Query: x\nPassage: y\nRelevance:", add_special_tokens=False)["input_ids"]) <= 12


def test_demo_tokenizer_is_deterministic(demo_tok):
    again = train_demo_tokenizer(demo_texts())
    assert again.backend_tokenizer.to_str() == load_tokenizer(demo_tok).backend_tokenizer.to_str()
