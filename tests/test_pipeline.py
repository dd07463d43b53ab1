"""The loader: batches are a pure function of (seed, step); resume and per-host slices are exact."""

import json

import numpy as np
import pytest

from r2r_jax.data.features import BatchShapes, tokenize_records
from r2r_jax.data.pipeline import TeacherLoader
from r2r_jax.data.templates import special_ids
from r2r_jax.testing.synthetic import make_synthetic_records, synthetic_data_config, synthetic_tokenizer

N = 37  # not a multiple of the batch: batches straddle epochs


@pytest.fixture(scope="module")
def data():
    tok = synthetic_tokenizer()
    cfg = synthetic_data_config(group_size=6, comparisons_per_query=1)
    records = make_synthetic_records(N, seed=3, n_candidates=9)
    return tokenize_records(records, tok, cfg), BatchShapes.from_config(cfg), special_ids(tok).pad


def _loader(data, **kw):
    tokenized, shapes, pad = data
    kw.setdefault("global_batch_size", 8)
    kw.setdefault("seed", 11)
    return TeacherLoader(tokenized, shapes, pad, **kw)


def _equal(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_batches_are_a_pure_function_of_seed_and_step(data):
    a, b = _loader(data), _loader(data)
    first = [next(a) for _ in range(6)]
    assert all(_equal(x, b.batch(s)) for s, x in enumerate(first))
    assert _equal(b.batch(4), first[4]) and _equal(b.batch(4), _loader(data).batch(4))  # order of calls is irrelevant
    other = _loader(data, seed=12)
    assert not all(_equal(x, other.batch(s)) for s, x in enumerate(first))
    assert first[0]["input_ids"].shape[0] == 8


def test_each_epoch_is_a_permutation(data):
    loader = _loader(data, global_batch_size=N)  # one step = one epoch
    seen = [sorted(i for i, _ in loader.items(step)) for step in range(3)]
    assert all(s == list(range(N)) for s in seen)
    assert {e for _, e in loader.items(2)} == {2}
    orders = [[i for i, _ in loader.items(step)] for step in range(3)]
    assert orders[0] != orders[1]  # reshuffled every epoch


def test_resume_yields_identical_batches(data):
    straight = _loader(data)
    for _ in range(7):
        next(straight)
    state = json.loads(json.dumps(straight.state()))  # it survives a JSON round trip (checkpoint metadata)
    expected = [next(straight) for _ in range(5)]
    resumed = _loader(data)
    resumed.restore(state)
    assert resumed.step == 7
    assert all(_equal(x, next(resumed)) for x in expected)
    resumed.restore({**state, "step": np.int64(7)})  # numpy integers from a checkpoint are fine
    assert _equal(next(resumed), expected[0])


@pytest.mark.parametrize("key, value", [("seed", 99), ("global_batch_size", 16), ("fingerprint", "x"),
                                        ("num_records", 5), ("version", 0), ("step", -1)])
def test_restore_refuses_a_different_stream(data, key, value):
    loader = _loader(data)
    with pytest.raises(ValueError, match=key if key != "version" else "version"):
        loader.restore({**loader.state(), key: value})


@pytest.mark.parametrize("hosts", [2, 4, 8])
def test_host_slices_partition_the_global_batch(data, hosts):
    whole = _loader(data)
    parts = [_loader(data, process_index=h, process_count=hosts) for h in range(hosts)]
    for step in (0, 3, 4, 9):  # 4 and 9 straddle epoch boundaries (37 records, batch 8)
        full = whole.batch(step)
        slices = [p.batch(step) for p in parts]
        assert all(s["input_ids"].shape[0] == 8 // hosts for s in slices)
        joined = {k: np.concatenate([s[k] for s in slices]) for k in full}
        assert _equal(joined, full)
        assert sorted(i for p in parts for i in p.items(step)) == sorted(whole.items(step))


def test_resume_with_another_host_count(data):
    one = _loader(data)
    for _ in range(3):
        next(one)
    two = [_loader(data, process_index=h, process_count=2) for h in range(2)]
    for loader in two:
        loader.restore(one.state())
    expected = next(one)
    halves = [next(p) for p in two]
    joined = {k: np.concatenate([h[k] for h in halves]) for k in expected}
    assert _equal(joined, expected)


def test_invalid_sharding_is_an_error(data):
    with pytest.raises(ValueError, match="multiple"):
        _loader(data, global_batch_size=6, process_count=4)
    with pytest.raises(ValueError, match="process_index"):
        _loader(data, process_index=2, process_count=2)
