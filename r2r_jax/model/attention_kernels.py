"""The attention implementations, with one masking rule for all of them.

Queries (B, T, H, D) attend keys/values (B, S, K, D) with K dividing H (GQA: K/V are never repeated).
A query at absolute index `q_offset + t` sees key `s` when `kv_valid[b, s]` and `s <= q_offset + t`,
which covers left and right padding, causal masking and KV-cache decoding alike. Packed rows (several
sequences in one row) also pass `segment_ids` (B, S) (0 = padding, 1, 2, ... = the row's sequences): a query
then also needs its key in its own segment, so the mask is block-diagonal and causal.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
from jax import lax

Impl = Literal["xla", "loop", "cudnn", "splash"]


def attention_mask(kv_valid: jax.Array, q_len: int, q_offset: jax.Array | int = 0,
                   segment_ids: jax.Array | None = None) -> jax.Array:
    """Boolean (B, T, S) mask: key valid and not in the future; with `segment_ids` (self-attention over
    packed rows), also in the query's own segment."""
    s = kv_valid.shape[-1]
    q_index = q_offset + jnp.arange(q_len)
    causal = jnp.arange(s)[None, :] <= q_index[:, None]
    mask = kv_valid[:, None, :].astype(bool) & causal[None]
    if segment_ids is not None:
        q_segment = jnp.take(segment_ids, q_index, axis=1)
        mask &= q_segment[:, :, None] == segment_ids[:, None, :]
    return mask


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


def looped_attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array) -> jax.Array:
    """The reference's arithmetic one sequence at a time, for CPU hosts.

    `xla_attention` materialises the whole batch's (B, H, T, S) scores and passes over them several times
    (mask, max, exp, sum, divide; more in the backward pass): from main memory on a CPU. Here a `lax.map`
    over the batch works on one sequence's (K, G·T, S) block at a time, small enough to stay in cache, and
    `jax.checkpoint` recomputes each block in the backward pass instead of storing the probabilities (as a
    flash kernel does). On a 2-core CPU this halves attention's time; on accelerators, or with the batch
    axis sharded over a mesh, use `xla`, `cudnn` or `splash`: a loop over a sharded axis gathers it.
    """
    b, t, h, d = q.shape
    s, kv_heads = k.shape[1], k.shape[2]
    g = h // kv_heads
    q_heads = q.reshape(b, t, kv_heads, g, d).transpose(0, 2, 3, 1, 4).reshape(b, kv_heads, g * t, d)

    @jax.checkpoint
    def one_sequence(x: tuple[jax.Array, ...]) -> jax.Array:
        qs, ks, vs, ms = x  # (K, G·T, D), (K, S, D), (K, S, D), (T, S)
        logits = jnp.einsum("kqd,ksd->kqs", qs, ks, preferred_element_type=jnp.float32).reshape(kv_heads, g, t, s)
        logits = jnp.where(ms[None, None], logits * (d**-0.5), jnp.finfo(jnp.float32).min)
        probs = jax.nn.softmax(logits, axis=-1).astype(vs.dtype).reshape(kv_heads, g * t, s)
        return jnp.einsum("kqs,ksd->kqd", probs, vs)

    out = lax.map(one_sequence, (q_heads, k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3), mask))
    return out.reshape(b, kv_heads, g, t, d).transpose(0, 3, 1, 2, 4).reshape(b, t, h, d)


def cudnn_attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array) -> jax.Array:
    """cuDNN flash attention through `jax.nn.dot_product_attention` (GPU, bf16/fp16)."""
    return jax.nn.dot_product_attention(q, k, v, mask=mask[:, None, :, :], implementation="cudnn")
