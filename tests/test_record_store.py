"""Tokenized record stores (`data/record_store.py`): JSONL, Parquet and `save_to_disk` sources give the batches
the in-memory loader gives, the store is a cache that an interrupted build never leaves half-made, bad rows
are named, and hosts reading a store partition the global batch."""

import json

import datasets
import numpy as np
import pytest

from r2r_jax.config import DataConfig
from r2r_jax.data import record_store
from r2r_jax.data.features import BatchShapes
from r2r_jax.data.pipeline import TeacherLoader
from r2r_jax.data.record_store import open_store
from r2r_jax.data.records import RecordError, write_records
from r2r_jax.testing.synthetic import make_synthetic_records, synthetic_tokenizer

CFG = DataConfig(group_size=4, max_prompt_len=40, max_target_len=16, comparisons_per_query=1,
                 max_comparison_prompt_len=80, random_negatives=2)
RECORDS = make_synthetic_records(24, seed=3, n_candidates=6)


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    d = tmp_path_factory.mktemp("sources")
    write_records(d / "teacher.jsonl", RECORDS)
    as_arrow = datasets.Dataset.from_list([r.to_dict() for r in RECORDS])  # objects become structs of every key
    as_arrow.to_parquet(str(d / "teacher.parquet"))
    as_arrow.save_to_disk(str(d / "teacher_folder"))
    tok = synthetic_tokenizer()
    tok.save_pretrained(d / "tok")
    return d, tok


def _loader(tokenized, tok, **kw) -> TeacherLoader:
    return TeacherLoader(tokenized, BatchShapes.from_config(CFG), tok.pad_token_id, global_batch_size=4, seed=0, **kw)


def _batches(loader, steps=8):
    return [loader.batch(s) for s in range(steps)]


@pytest.mark.parametrize("source", ["teacher.jsonl", "teacher.parquet", "teacher_folder"])
def test_every_source_gives_the_in_memory_batches(sources, tmp_path, source):
    d, tok = sources
    store = open_store(d / source, tok, str(d / "tok"), CFG, tmp_path)
    in_memory = TeacherLoader.from_records(RECORDS, tok, CFG, global_batch_size=4)
    assert len(store) == len(RECORDS) and store.fingerprint == in_memory.fingerprint
    for got, want in zip(_batches(_loader(store, tok)), _batches(in_memory), strict=True):
        assert got.keys() == want.keys()
        for k in want:
            np.testing.assert_array_equal(got[k], want[k], err_msg=k)


def test_the_store_is_a_cache_keyed_by_config_and_source(sources, tmp_path, monkeypatch):
    d, tok = sources
    first = open_store(d / "teacher.jsonl", tok, str(d / "tok"), CFG, tmp_path)
    monkeypatch.setattr(record_store, "_build", lambda *a: pytest.fail("rebuilt a cached store"))
    assert open_store(d / "teacher.jsonl", tok, str(d / "tok"), CFG, tmp_path).folder == first.folder
    monkeypatch.undo()
    other = open_store(d / "teacher.jsonl", tok, str(d / "tok"), DataConfig(**{**CFG.__dict__, "max_prompt_len": 32}),
                       tmp_path)
    assert other.folder != first.folder
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([first.folder.name, other.folder.name])  # no staging


def test_an_interrupted_build_leaves_nothing(sources, tmp_path, monkeypatch):
    d, tok = sources
    calls = []
    real = record_store.tokenize_records

    def failing(*args, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kw)

    monkeypatch.setattr(record_store, "CHUNK", 5)
    monkeypatch.setattr(record_store, "tokenize_records", failing)
    with pytest.raises(KeyboardInterrupt):
        open_store(d / "teacher.jsonl", tok, str(d / "tok"), CFG, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_bad_row_is_named_with_its_file_and_row(sources, tmp_path):
    d, tok = sources
    rows = [r.to_dict() for r in RECORDS[:3]]
    rows[1]["ranking"] = rows[1]["ranking"][:-1]  # not a permutation of the candidates
    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "bad.parquet"))
    with pytest.raises(RecordError, match=r"bad\.parquet:2: field 'ranking'"):
        open_store(tmp_path / "bad.parquet", tok, str(d / "tok"), CFG, tmp_path / "cache")
    (tmp_path / "torn.parquet").write_bytes((tmp_path / "bad.parquet").read_bytes()[:100])
    with pytest.raises(RecordError, match=r"torn\.parquet: not a readable Parquet file"):
        open_store(tmp_path / "torn.parquet", tok, str(d / "tok"), CFG, tmp_path / "cache")
    lines = [json.dumps(r) for r in rows]
    (tmp_path / "bad.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(RecordError, match=r"bad\.jsonl:2: field 'ranking'"):
        open_store(tmp_path / "bad.jsonl", tok, str(d / "tok"), CFG, tmp_path / "cache")
    assert not any((tmp_path / "cache").iterdir())


def test_hosts_reading_a_store_partition_the_global_batch_and_resume(sources, tmp_path):
    d, tok = sources
    store = open_store(d / "teacher.jsonl", tok, str(d / "tok"), CFG, tmp_path)
    whole = _batches(_loader(store, tok), 6)
    hosts = [_loader(store, tok, process_index=h, process_count=2) for h in range(2)]
    for step, want in enumerate(whole):
        parts = [h.batch(step) for h in hosts]
        for k in want:
            np.testing.assert_array_equal(np.concatenate([p[k] for p in parts]), want[k])
    resumed = _loader(open_store(d / "teacher.jsonl", tok, str(d / "tok"), CFG, tmp_path), tok)
    hosts[0].step = 4
    resumed.restore(hosts[0].state())  # a host count change keeps the global batches
    assert resumed.step == 4
    for k, v in next(resumed).items():
        np.testing.assert_array_equal(v, whole[4][k])
