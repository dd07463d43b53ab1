"""Attention behind one function: `dot_product_attention` picks the implementation (`attention_kernels.py`;
splash on TPU, `splash.py`) and builds the one mask they all share.

Queries (B, T, H, D) attend keys/values (B, S, K, D) with K dividing H (GQA: K/V are never repeated).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from r2r_jax.model.attention_kernels import Impl, attention_mask, cudnn_attention, looped_attention, xla_attention

# With the CPU kernel (`loop`), long self-attention (a listwise prompt, a packed row) runs in query blocks of
# this many positions, each against the keys up to its own last position: a causal product costs about half
# of the square one. Shorter queries (scoring prompts, decode steps) take one block. The accelerator kernels
# visit causal tiles themselves (splash, cuDNN); `xla` stays the plain reference (one product: a blocked
# program of 4k-token rows takes the TPU compiler many times longer to compile).
CAUSAL_BLOCK = 256


def dot_product_attention(q, k, v, kv_valid, q_offset=0, impl: Impl = "xla", segment_ids=None) -> jax.Array:
    """`kv_valid` (B, S) bool: the keys that may be read; `segment_ids` (B, S) int, for packed rows only:
    which sequence each position belongs to (queries read keys of their own)."""
    if impl == "loop" and isinstance(q_offset, int) and q.shape[1] >= 2 * CAUSAL_BLOCK:
        return causal_blocks(q, k, v, kv_valid, q_offset, impl, segment_ids)
    return _attention(q, k, v, kv_valid, q_offset, impl, segment_ids)


def causal_share(length: int, block: int) -> float:
    """Share of the square (length x length) product that causal query blocks of `block` positions compute,
    each against the keys up to its own end: `causal_blocks` here, and a causal splash kernel's tiles (whose
    block divides the length: n(n+1)/2 of n² tiles)."""
    return sum((min(start + block, length) - start) * min(start + block, length)
               for start in range(0, length, block)) / length**2


def blocked_share(length: int) -> float:
    """Share of the square product that `dot_product_attention` computes for a self-attention of `length`
    positions with the CPU kernel: 1 below two blocks, else the causal blocks'."""
    return 1.0 if length < 2 * CAUSAL_BLOCK else causal_share(length, CAUSAL_BLOCK)


def causal_blocks(q, k, v, kv_valid, q_offset: int, impl: Impl, segment_ids=None) -> jax.Array:
    """The same attention, query block by query block, each block's keys cut after its last query (keys a
    block cannot see are masked anyway, so every query with a visible key gets the same output)."""
    t, s = q.shape[1], k.shape[1]
    out = []
    for start in range(0, t, CAUSAL_BLOCK):
        stop = min(start + CAUSAL_BLOCK, t)
        keys = min(q_offset + stop, s)
        segments = None if segment_ids is None else segment_ids[:, :keys]
        out.append(_attention(q[:, start:stop], k[:, :keys], v[:, :keys], kv_valid[:, :keys], q_offset + start, impl,
                              segments))
    return jnp.concatenate(out, axis=1)


def _attention(q, k, v, kv_valid, q_offset, impl: Impl, segment_ids=None) -> jax.Array:
    mask = attention_mask(kv_valid, q.shape[1], q_offset, segment_ids)
    if impl == "xla":
        return xla_attention(q, k, v, mask)
    if impl == "loop":
        return looped_attention(q, k, v, mask)
    if impl == "cudnn":
        return cudnn_attention(q, k, v, mask)
    if impl == "splash":
        from r2r_jax.model.splash import splash_attention  # TPU only

        return splash_attention(q, k, v, kv_valid, q_offset, segment_ids)
    raise ValueError(f"unknown attention implementation {impl!r}")
