"""KV caches, one type per layout: keys and values of every layer, and which cache positions hold real tokens.

A layer writes its new keys and values with `write(layer, index, k, v)`, which returns the updated cache and
that layer's whole keys and values; the model never looks at how a cache is laid out.

- `StackedKV`: one (layers, B, S, K, D) buffer each for keys and values. A scan over the layers carries it,
  each layer updating its own slot in place (the layer index may be traced).
- `PerLayerKV`: one (B, S, K, D) buffer per layer (unrolled layers, a Python layer index): a decode step
  writes one position of one buffer per layer instead of slicing a stacked cache apart and stacking it again.

`kv_valid` (B, S) marks the positions attention may read: the prompt's real tokens, then each decoded one.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from r2r_jax.config import ModelConfig


def _empty(cfg: ModelConfig, batch: int, size: int) -> jax.Array:
    return jnp.zeros((batch, size, cfg.num_key_value_heads, cfg.head_dim), jnp.dtype(cfg.dtype))


@struct.dataclass
class StackedKV:
    k: jax.Array  # (layers, B, S, K, D)
    v: jax.Array
    kv_valid: jax.Array  # (B, S) bool

    @classmethod
    def empty(cls, cfg: ModelConfig, kv_valid: jax.Array) -> StackedKV:
        """Zeros for `kv_valid`'s (B, S) positions in every layer."""
        shape = (cfg.num_hidden_layers, *kv_valid.shape, cfg.num_key_value_heads, cfg.head_dim)
        zeros = jnp.zeros(shape, jnp.dtype(cfg.dtype))
        return cls(zeros, zeros, kv_valid)

    def write(self, layer: int | jax.Array, index: int | jax.Array, k: jax.Array,
              v: jax.Array) -> tuple[StackedKV, jax.Array, jax.Array]:
        """Layer `layer`'s keys and values (B, T, K, D) written at position `index`: (cache, its k, its v)."""
        at = (layer, 0, index, 0, 0)
        ks = jax.lax.dynamic_update_slice(self.k, k[None].astype(self.k.dtype), at)
        vs = jax.lax.dynamic_update_slice(self.v, v[None].astype(self.v.dtype), at)
        return self.replace(k=ks, v=vs), ks[layer], vs[layer]


@struct.dataclass
class PerLayerKV:
    k: tuple[jax.Array, ...]  # per layer (B, S, K, D)
    v: tuple[jax.Array, ...]
    kv_valid: jax.Array  # (B, S) bool

    @classmethod
    def empty(cls, cfg: ModelConfig, kv_valid: jax.Array) -> PerLayerKV:
        """Zeros for `kv_valid`'s (B, S) positions, one buffer per layer."""
        k, v = (tuple(_empty(cfg, *kv_valid.shape) for _ in range(cfg.num_hidden_layers)) for _ in "kv")
        return cls(k, v, kv_valid)

    def write(self, layer: int, index: int | jax.Array, k: jax.Array,
              v: jax.Array) -> tuple[PerLayerKV, jax.Array, jax.Array]:
        """Layer `layer`'s keys and values (B, T, K, D) written at position `index`: (cache, its k, its v)."""
        k_new = jax.lax.dynamic_update_slice(self.k[layer], k.astype(self.k[layer].dtype), (0, index, 0, 0))
        v_new = jax.lax.dynamic_update_slice(self.v[layer], v.astype(self.v[layer].dtype), (0, index, 0, 0))
        ks = (*self.k[:layer], k_new, *self.k[layer + 1:])
        vs = (*self.v[:layer], v_new, *self.v[layer + 1:])
        return self.replace(k=ks, v=vs), k_new, v_new


KVCache = StackedKV | PerLayerKV
