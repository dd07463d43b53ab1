"""Attention behind one function, with one masking rule for every implementation.

Queries (B, T, H, D) attend keys/values (B, S, K, D) with K dividing H (GQA: K/V are never repeated).
A query at absolute index `q_offset + t` sees key `s` when `kv_valid[b, s]` and `s <= q_offset + t`,
which covers left and right padding, causal masking and KV-cache decoding alike.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp

Impl = Literal["xla", "cudnn", "splash"]


def attention_mask(kv_valid: jax.Array, q_len: int, q_offset: jax.Array | int = 0) -> jax.Array:
    """Boolean (B, T, S) mask: key valid and not in the future."""
    s = kv_valid.shape[-1]
    q_index = q_offset + jnp.arange(q_len)
    causal = jnp.arange(s)[None, :] <= q_index[:, None]
    return kv_valid[:, None, :].astype(bool) & causal[None]


def xla_attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array) -> jax.Array:
    """Reference implementation: softmax in float32, GQA by reshaping queries into (K, H/K) groups."""
    b, t, h, d = q.shape
    kv_heads = k.shape[2]
    qg = q.reshape(b, t, kv_heads, h // kv_heads, d)
    logits = jnp.einsum("btkgd,bskd->bkgts", qg, k, preferred_element_type=jnp.float32)
    logits = logits * (d**-0.5)
    # a finite minimum keeps fully masked rows (pad queries) finite instead of NaN
    logits = jnp.where(mask[:, None, None, :, :], logits, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
    out = jnp.einsum("bkgts,bskd->btkgd", probs, v)
    return out.reshape(b, t, h, d)


def cudnn_attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array) -> jax.Array:
    """cuDNN flash attention through `jax.nn.dot_product_attention` (GPU, bf16/fp16)."""
    return jax.nn.dot_product_attention(q, k, v, mask=mask[:, None, :, :], implementation="cudnn")


def dot_product_attention(q, k, v, kv_valid, q_offset=0, impl: Impl = "xla") -> jax.Array:
    mask = attention_mask(kv_valid, q.shape[1], q_offset)
    if impl == "xla":
        return xla_attention(q, k, v, mask)
    if impl == "cudnn":
        return cudnn_attention(q, k, v, mask)
    if impl == "splash":
        from r2r_jax.model.splash import splash_attention  # TPU only

        return splash_attention(q, k, v, kv_valid, q_offset)
    raise ValueError(f"unknown attention implementation {impl!r}")
