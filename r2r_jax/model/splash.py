"""Pallas splash attention (TPU) with the reference's masking rule: key valid and not in the future.

`attention_kernels.attention_mask` lets the query at absolute index `q_offset + t` see key `s` when `kv_valid[b, s]`
and `s <= q_offset + t`. Here causality is a static `CausalMask` shifted by `q_offset` (the kernel skips the
blocks above the diagonal) and padding is a pair of segment ids, 1 for a real token and 0 for padding, on
queries and keys: a real query then sees exactly the real keys at or before it, as in the reference (packed
rows bring their own segment ids, 1, 2, ... per sequence, which the kernel takes as they are). A
padding query sees padding keys at or before it (at least itself) instead of nothing, which keeps its row
finite; padding rows never reach a real output, and the loss and the score read real positions only.

GQA is native (the kernel maps query head h to key head h // (H/K)); K/V are never repeated. The kernel
does not scale logits, so queries are scaled by 1/sqrt(D) first. Under `activation_sharding` with a mesh,
the kernel runs inside `shard_map` over the batch (and heads, when both query and key heads split the
same way), because XLA cannot partition a Pallas call itself. Shapes the kernel cannot tile (lengths not
multiples of 128, e.g. one-token decoding) and traced offsets fall back to the XLA reference.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.experimental.pallas.ops.tpu import splash_attention as splash
from jax.sharding import PartitionSpec

from r2r_jax.model.attention_kernels import attention_mask, xla_attention
from r2r_jax.parallel import rules

BLOCK_SIZES = (512, 256, 128)


def block_size(length: int) -> int | None:
    """The largest supported tile that divides `length` (None: the kernel cannot tile it)."""
    return next((b for b in BLOCK_SIZES if length % b == 0), None)


def supported(q_len: int, kv_len: int, q_offset) -> bool:
    return (isinstance(q_offset, int) and 0 <= q_offset and q_offset + q_len <= kv_len
            and block_size(q_len) is not None and block_size(kv_len) is not None)


def make_kernel(heads: int, q_len: int, kv_len: int, q_offset: int = 0, interpret: bool = False):
    """A splash MHA kernel for one example: q (H, T, D), k/v (K, S, D), causal from `q_offset`."""
    bq, bkv = block_size(q_len), block_size(kv_len)
    sizes = splash.BlockSizes(
        block_q=bq, block_kv=bkv, block_kv_compute=bkv,
        block_q_dkv=bq, block_kv_dkv=bkv, block_kv_dkv_compute=bkv, use_fused_bwd_kernel=True,
    )
    mask = splash.MultiHeadMask([splash.CausalMask((q_len, kv_len), offset=q_offset) for _ in range(heads)])
    return splash.make_splash_mha(mask, block_sizes=sizes, head_shards=1, q_seq_shards=1, interpret=interpret)


def _splash_local(q, k, v, q_seg, kv_seg, q_offset: int, interpret: bool):
    """q (B, H, T, D), k/v (B, K, S, D), segment ids (B, T) / (B, S) -> (B, H, T, D)."""
    kernel = make_kernel(q.shape[1], q.shape[2], k.shape[2], q_offset, interpret)
    return jax.vmap(kernel)(q, k, v, segment_ids=splash.SegmentIds(q=q_seg, kv=kv_seg))


def _specs(mesh, q_shape, kv_shape) -> tuple[PartitionSpec, PartitionSpec]:
    q_spec = rules.logical_to_mesh_spec(("batch", "act_heads", "seq", "head_dim"), q_shape, mesh)
    kv_spec = rules.logical_to_mesh_spec(("batch", "kv_heads", "seq", "head_dim"), kv_shape, mesh)
    if q_spec[1] != kv_spec[1]:  # heads split differently: local GQA groups would not line up
        q_spec = PartitionSpec(q_spec[0], None, None, None)
        kv_spec = PartitionSpec(kv_spec[0], None, None, None)
    return q_spec, kv_spec


def splash_attention(q: jax.Array, k: jax.Array, v: jax.Array, kv_valid: jax.Array, q_offset=0,
                     segment_ids: jax.Array | None = None, *, interpret: bool = False) -> jax.Array:
    """q (B, T, H, D), k/v (B, S, K, D), kv_valid (B, S), packed rows' segment_ids (B, S) -> (B, T, H, D);
    `interpret` runs the kernel on CPU."""
    b, t, h, d = q.shape
    s = k.shape[1]
    if not supported(t, s, q_offset):
        return xla_attention(q, k, v, attention_mask(kv_valid, t, q_offset, segment_ids))
    # the kernel's one mask input: packed rows' segment ids, or validity as segment 1 (0: padding)
    seg = (kv_valid if segment_ids is None else segment_ids).astype(jnp.int32)
    q_seg = seg[:, q_offset: q_offset + t]  # self-attention: a query is real when its own key is
    qt = (q.astype(jnp.float32) * d**-0.5).astype(q.dtype).transpose(0, 2, 1, 3)
    kt, vt = k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3)

    def local(q_, k_, v_, qs, ks):
        return _splash_local(q_, k_, v_, qs, ks, q_offset, interpret)

    mesh = rules.current()  # the mesh of `rules.activation_sharding`, if any
    if mesh is None or mesh.size == 1:
        out = local(qt, kt, vt, q_seg, seg)
    else:
        q_spec, kv_spec = _specs(mesh, qt.shape, kt.shape)
        seg_spec = PartitionSpec(q_spec[0], None)
        out = jax.shard_map(local, mesh=mesh, in_specs=(q_spec, kv_spec, kv_spec, seg_spec, seg_spec),
                            out_specs=q_spec, check_vma=False)(qt, kt, vt, q_seg, seg)
    return out.transpose(0, 2, 1, 3).astype(q.dtype)
