"""Attention behind one function: `dot_product_attention` picks the implementation (`attention_kernels.py`;
splash on TPU, `splash.py`) and builds the one mask they all share.

Queries (B, T, H, D) attend keys/values (B, S, K, D) with K dividing H (GQA: K/V are never repeated).
"""

from __future__ import annotations

import jax

from r2r_jax.model.attention_kernels import Impl, attention_mask, cudnn_attention, looped_attention, xla_attention


def dot_product_attention(q, k, v, kv_valid, q_offset=0, impl: Impl = "xla") -> jax.Array:
    mask = attention_mask(kv_valid, q.shape[1], q_offset)
    if impl == "xla":
        return xla_attention(q, k, v, mask)
    if impl == "loop":
        return looped_attention(q, k, v, mask)
    if impl == "cudnn":
        return cudnn_attention(q, k, v, mask)
    if impl == "splash":
        from r2r_jax.model.splash import splash_attention  # TPU only

        return splash_attention(q, k, v, kv_valid, q_offset)
    raise ValueError(f"unknown attention implementation {impl!r}")
