"""The looped (one sequence at a time) attention computes what the XLA reference computes, gradients included."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from r2r_jax.config import ModelConfig
from r2r_jax.model import attention as attention_module
from r2r_jax.model.attention import causal_blocks, dot_product_attention
from r2r_jax.model.attention_kernels import attention_mask, looped_attention, xla_attention
from r2r_jax.model.llama import LlamaForRanking


def _inputs(b: int, t: int, s: int, h: int, k: int, d: int = 16, seed: int = 0):
    rng = np.random.default_rng(seed)
    q = jnp.asarray(rng.normal(size=(b, t, h, d)), jnp.float32)
    kk = jnp.asarray(rng.normal(size=(b, s, k, d)), jnp.float32)
    v = jnp.asarray(rng.normal(size=(b, s, k, d)), jnp.float32)
    valid = np.ones((b, s), bool)
    valid[0, :5] = False  # left padding
    valid[-1, s - 4:] = False  # right padding
    return q, kk, v, jnp.asarray(valid)


@pytest.mark.parametrize("heads,kv_heads", [(4, 4), (4, 2), (8, 2), (4, 1)])
def test_loop_equals_reference_values_and_gradients(heads, kv_heads):
    q, k, v, valid = _inputs(3, 12, 12, heads, kv_heads)
    mask = attention_mask(valid, 12)
    np.testing.assert_allclose(looped_attention(q, k, v, mask), xla_attention(q, k, v, mask), rtol=1e-5, atol=1e-6)

    def loss(fn):
        return lambda q, k, v: jnp.sum(fn(q, k, v, mask) * jnp.cos(q))

    got = jax.jit(jax.grad(loss(looped_attention), (0, 1, 2)))(q, k, v)
    want = jax.jit(jax.grad(loss(xla_attention), (0, 1, 2)))(q, k, v)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_loop_with_a_kv_cache_offset():
    """Decoding shape: 2 new queries against 10 cached keys, offset 8."""
    q, k, v, valid = _inputs(2, 2, 10, 4, 2)
    got = dot_product_attention(q, k, v, valid, q_offset=8, impl="loop")
    want = dot_product_attention(q, k, v, valid, q_offset=8, impl="xla")
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_model_with_loop_attention_matches_xla():
    cfg = ModelConfig(dtype="float32", param_dtype="float32")
    ids = jnp.asarray(np.random.default_rng(0).integers(3, cfg.vocab_size, (2, 9)), jnp.int32)
    mask = jnp.asarray([[0, 0, 1, 1, 1, 1, 1, 1, 1], [1] * 9], jnp.int32)
    xla_model = LlamaForRanking(cfg)
    variables = xla_model.init(jax.random.key(0), ids, mask)
    loop_model = LlamaForRanking(dataclasses.replace(cfg, attention="loop"))
    want, _ = xla_model.apply(variables, ids, mask)
    got, _ = loop_model.apply(variables, ids, mask)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("impl", ["xla", "loop"])
@pytest.mark.parametrize("offset,keys,segments", [(0, 12, False), (3, 18, False), (0, 12, True)])
def test_causal_blocks_equal_one_block(impl, offset, keys, segments):
    """Query blocks against the keys up to their last position: the values and gradients of one full product
    (prefill into a longer cache at an offset, and packed rows' segment ids, included). Rows with no visible
    key (left padding's own queries) are read by nothing and left out of the comparison."""
    q, k, v, valid = _inputs(3, 12, keys, 4, 2)
    segment_ids = None
    if segments:
        segment_ids = jnp.asarray(np.repeat([[0] * 2 + [1] * 5 + [2] * 5], 3, axis=0), jnp.int32)
        valid = segment_ids > 0

    def full(q, k, v):
        return attention_module._attention(q, k, v, valid, offset, impl, segment_ids)

    def blocked(q, k, v):
        return causal_blocks(q, k, v, valid, offset, impl, segment_ids)

    seen = np.asarray(jnp.any(attention_mask(valid, 12, offset, segment_ids), axis=-1))  # a query with a visible key
    np.testing.assert_allclose(np.asarray(blocked(q, k, v))[seen], np.asarray(full(q, k, v))[seen],
                               rtol=1e-5, atol=1e-6)
    weight = jnp.asarray(seen, jnp.float32)[:, :, None, None] * jnp.cos(q)

    def loss(fn):
        return lambda q, k, v: jnp.sum(fn(q, k, v) * weight)

    got = jax.grad(loss(blocked), (0, 1, 2))(q, k, v)
    want = jax.grad(loss(full), (0, 1, 2))(q, k, v)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_long_queries_take_the_blocks(monkeypatch):
    """dot_product_attention splits a self-attention of at least two blocks with the CPU kernel, and only then."""
    calls = []
    monkeypatch.setattr(attention_module, "CAUSAL_BLOCK", 4)
    monkeypatch.setattr(attention_module, "causal_blocks", lambda *a: calls.append(a[0].shape[1]) or a[0])
    q, k, v, valid = _inputs(2, 8, 8, 4, 2)
    dot_product_attention(q, k, v, valid, impl="loop")
    dot_product_attention(q[:, :7], k[:, :7], v[:, :7], valid[:, :7], impl="loop")
    dot_product_attention(q[:, :1], k, v, valid, q_offset=jnp.asarray(7), impl="loop")  # a decode step
    dot_product_attention(q, k, v, valid, impl="xla")  # the reference stays one product
    assert calls == [8]


@pytest.mark.parametrize("length", [512, 700, 1024])
def test_the_compiler_counts_the_blocked_share(length):
    """The analytic count's `blocked_share` (compile/flops.py) is what XLA compiles: the attention products'
    FLOPs of a long self-attention against the square product's."""
    q, k, v, valid = _inputs(1, length, length, 4, 2)

    def flops(fn):
        return jax.jit(fn).lower(q, k, v).compile().cost_analysis()["flops"]

    blocked = flops(lambda q, k, v: dot_product_attention(q, k, v, valid, impl="loop"))
    square = flops(lambda q, k, v: attention_module._attention(q, k, v, valid, 0, "loop"))
    assert blocked < square
    assert blocked / square == pytest.approx(attention_module.blocked_share(length), rel=0.03)
