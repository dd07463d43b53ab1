"""Splash attention masks like the XLA reference: the Pallas kernel in interpret mode on CPU, plain and sharded."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from r2r_jax.config import MeshConfig
from r2r_jax.model.attention_kernels import attention_mask, xla_attention
from r2r_jax.model.splash import splash_attention, supported
from r2r_jax.parallel.mesh import make_mesh
from r2r_jax.parallel.rules import activation_sharding


def _inputs(b: int, t: int, h: int = 4, k: int = 2, d: int = 128, seed: int = 0):
    rng = np.random.default_rng(seed)
    q = jnp.asarray(rng.normal(size=(b, t, h, d)), jnp.float32)
    kk = jnp.asarray(rng.normal(size=(b, t, k, d)), jnp.float32)
    v = jnp.asarray(rng.normal(size=(b, t, k, d)), jnp.float32)
    valid = np.ones((b, t), bool)
    valid[0, :70] = False  # left padding (scoring prompts)
    valid[1, t - 90:] = False  # right padding (targets)
    if b > 2:
        valid[2, :30] = False
        valid[2, t - 17:] = False  # both
    return q, kk, v, jnp.asarray(valid)


def _reference(q, k, v, valid):
    return xla_attention(q, k, v, attention_mask(valid, q.shape[1], 0))


def _masked_sq(fn, valid):
    return lambda q, k, v: jnp.sum(jnp.where(valid[:, :, None, None], fn(q, k, v), 0.0) ** 2)


def test_splash_equals_reference_on_real_rows_with_gradients():
    q, k, v, valid = _inputs(3, 256)
    real = np.asarray(valid)
    ref = _reference(q, k, v, valid)
    out = splash_attention(q, k, v, valid, 0, interpret=True)
    assert np.isfinite(np.asarray(out)).all()  # padding rows too
    np.testing.assert_allclose(np.asarray(out)[real], np.asarray(ref)[real], atol=2e-5, rtol=1e-5)
    g_ref = jax.grad(_masked_sq(_reference_fn(valid), valid), argnums=(0, 1, 2))(q, k, v)
    g_out = jax.grad(_masked_sq(lambda a, b, c: splash_attention(a, b, c, valid, 0, interpret=True), valid),
                     argnums=(0, 1, 2))(q, k, v)
    for got, want in zip(g_out, g_ref, strict=True):
        got, want = np.asarray(got), np.asarray(want)
        assert np.isfinite(got).all()
        np.testing.assert_allclose(got, want, atol=2e-4 * np.abs(want).max())


def _reference_fn(valid):
    return lambda q, k, v: _reference(q, k, v, valid)


def test_sharded_splash_runs_per_shard_and_matches():
    """Under activation_sharding the kernel runs inside shard_map over the batch (XLA cannot split a Pallas call)."""
    mesh = make_mesh(MeshConfig(data=1, fsdp=4), jax.devices()[:4])
    q, k, v, valid = _inputs(4, 128, seed=1)
    real = np.asarray(valid)
    sh = NamedSharding(mesh, PartitionSpec(("data", "fsdp")))
    args = [jax.device_put(x, sh) for x in (q, k, v, valid)]

    def fn(q_, k_, v_, m_):
        with activation_sharding(mesh):
            return splash_attention(q_, k_, v_, m_, 0, interpret=True)

    out = jax.jit(fn)(*args)
    text = jax.jit(fn).lower(*args).as_text()
    assert "sdy.manual_computation" in text  # shard_map's lowering under Shardy
    np.testing.assert_allclose(np.asarray(out)[real], np.asarray(_reference(q, k, v, valid))[real], atol=2e-5)


def test_untileable_shapes_fall_back_to_the_reference():
    assert not supported(1, 256, 255)  # one-token decoding
    assert not supported(100, 100, 0)
    assert supported(256, 256, 0) and supported(128, 256, 128)
    q, k, v, valid = _inputs(2, 100, d=32)
    np.testing.assert_array_equal(np.asarray(splash_attention(q, k, v, valid, 0)),
                                  np.asarray(_reference(q, k, v, valid)))


@pytest.mark.parametrize("offset", [128])
def test_static_offset_masks_causally_from_the_offset(offset):
    """Queries at absolute positions offset..offset+T-1 against S keys, as in a prefix-cached forward."""
    q, k, v, valid = _inputs(2, 256, seed=2)
    q = q[:, offset:]
    ref = xla_attention(q, k, v, attention_mask(valid, q.shape[1], offset))
    out = splash_attention(q, k, v, valid, offset, interpret=True)
    real = np.asarray(valid)[:, offset:]
    np.testing.assert_allclose(np.asarray(out)[real], np.asarray(ref)[real], atol=2e-5)
