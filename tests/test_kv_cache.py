"""The two cache layouts hold the same keys and values after the same writes, and leave the rest alone."""

import jax
import jax.numpy as jnp
import numpy as np

from r2r_jax.config import ModelConfig
from r2r_jax.model.kv_cache import PerLayerKV, StackedKV

CFG = ModelConfig(num_hidden_layers=3, num_key_value_heads=2, head_dim=4, dtype="float32")


def test_stacked_and_per_layer_caches_agree():
    valid = jnp.asarray([[True, True, False, False, False], [False, True, False, False, False]])
    stacked, per_layer = StackedKV.empty(CFG, valid), PerLayerKV.empty(CFG, valid)
    assert stacked.k.shape == (3, 2, 5, 2, 4) and len(per_layer.k) == 3 and per_layer.k[0].shape == (2, 5, 2, 4)
    rng = np.random.default_rng(0)
    for layer, index, length in [(0, 0, 2), (2, 0, 2), (1, 2, 1), (2, 3, 1)]:  # prefill two layers, then decode
        k, v = (jnp.asarray(rng.normal(size=(2, length, 2, 4)), jnp.float32) for _ in "kv")
        stacked, ks, vs = stacked.write(layer, index, k, v)
        per_layer, kp, vp = per_layer.write(layer, index, k, v)
        np.testing.assert_array_equal(ks, kp)
        np.testing.assert_array_equal(vs, vp)
        np.testing.assert_array_equal(ks[:, index: index + length], k)
    for layer in range(3):
        np.testing.assert_array_equal(stacked.k[layer], per_layer.k[layer])
        np.testing.assert_array_equal(stacked.v[layer], per_layer.v[layer])
    assert not np.any(stacked.k[1][:, :2]) and not np.any(stacked.k[0][:, 2:])  # untouched positions stay zero
    np.testing.assert_array_equal(stacked.kv_valid, valid)


def test_a_traced_layer_index_writes_a_stacked_cache():
    """What the scan over the layers does: the layer index is a traced value."""
    cache = StackedKV.empty(CFG, jnp.ones((1, 3), bool))
    new = jnp.ones((1, 1, 2, 4))

    @jax.jit
    def write(cache, layer):
        return cache.write(layer, 1, new, 2 * new)

    cache, k, v = write(cache, jnp.asarray(2))
    assert float(cache.k[2, 0, 1].sum()) == 8 and float(cache.v[2, 0, 1].sum()) == 16
    assert float(cache.k.sum()) == 8 and float(k.sum()) == 8
