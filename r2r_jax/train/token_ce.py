"""Token cross-entropy through the LM head, chunked along the target axis, with its gradient fused in.

The generation term needs float32 logits over the whole vocabulary (128,256 for Llama-3) at every target
token. Autodiff of `logsumexp(h·W) - (h·W)[y]` would hold all logits for the backward pass, or, checkpointed,
compute them twice. Here the forward pass of a differentiated call computes, chunk by chunk, the loss *and*
its gradient: `d/dlogits = softmax - onehot(y)` is known as soon as a chunk's logits are, so the chunk's
`d/dh = dlogits·Wᵀ` is taken right away and only that (the size of `h`) is kept for the backward pass, which
scales it by the incoming cotangent. The LM head is multiplied twice per token instead of three times, and
no chunk's logits outlive their iteration.

The head's own gradient costs one more vocabulary-sized matmul per chunk, so it is computed only on request
(`head_grad=True`); LoRA training keeps the LM head frozen and asks for none (the head gets a zero cotangent).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jax import lax

Array = jax.Array


def _logits(h: Array, head: Array, head_is_embedding: bool) -> Array:
    spec = "...e,ve->...v" if head_is_embedding else "...e,ev->...v"
    return jnp.einsum(spec, h, head, preferred_element_type=jnp.float32)


def _chunk_ce(logits: Array, targets: Array, mask: Array) -> tuple[Array, Array]:
    """(sum of masked cross-entropies, log-sum-exp per token) of one chunk's float32 logits."""
    targets = jnp.where(mask, targets, 0).astype(jnp.int32)  # padding may hold -100 or other non-ids
    target_logit = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    lse = jax.nn.logsumexp(logits, axis=-1)
    return jnp.sum(jnp.where(mask, lse - target_logit, 0.0)), lse


def _chunks(hidden: Array, targets: Array, mask: Array, chunk: int) -> tuple[Array, Array, Array]:
    """`[N, T, ...]` -> `[C, N, chunk, ...]` (T padded up to a multiple of chunk with masked positions)."""
    n, t, e = hidden.shape
    pad = -t % chunk
    if pad:
        hidden = jnp.pad(hidden, ((0, 0), (0, pad), (0, 0)))
        targets = jnp.pad(targets, ((0, 0), (0, pad)))
        mask = jnp.pad(mask, ((0, 0), (0, pad)))
    c = (t + pad) // chunk
    return (hidden.reshape(n, c, chunk, e).swapaxes(0, 1), targets.reshape(n, c, chunk).swapaxes(0, 1),
            mask.reshape(n, c, chunk).swapaxes(0, 1))


def _unchunk(x: Array, t: int) -> Array:
    c, n, chunk = x.shape[:3]
    return x.swapaxes(0, 1).reshape((n, c * chunk) + x.shape[3:])[:, :t]


def _scan_ce(hidden, head, targets, mask, chunk: int, head_is_embedding: bool, grads: bool, head_grad: bool):
    """Loss sum, and with `grads` the gradients of that sum w.r.t. hidden (and the head with `head_grad`)."""
    t = hidden.shape[1]
    xs = _chunks(hidden, targets, mask, chunk)

    def body(carry, x):
        total, d_head = carry
        h, y, m = x
        logits = _logits(h, head, head_is_embedding)
        if not grads:
            return (total + _chunk_ce(logits, y, m)[0], d_head), None
        # one exp per logit: exp(logits - max) gives both the log-sum-exp and the softmax
        top = lax.stop_gradient(jnp.max(logits, axis=-1, keepdims=True))
        e = jnp.exp(logits - top)
        z = jnp.sum(e, axis=-1, keepdims=True)
        safe_y = jnp.where(m, y, 0).astype(jnp.int32)
        target_logit = jnp.take_along_axis(logits, safe_y[..., None], axis=-1)
        ce = jnp.sum(jnp.where(m, (top + jnp.log(z) - target_logit)[..., 0], 0.0))
        onehot = lax.broadcasted_iota(jnp.int32, logits.shape, logits.ndim - 1) == safe_y[..., None]
        d_logits = jnp.where(m[..., None], e * (1.0 / z) - onehot, 0.0).astype(head.dtype)
        back = "...v,ve->...e" if head_is_embedding else "...v,ev->...e"
        d_h = jnp.einsum(back, d_logits, head, preferred_element_type=jnp.float32)
        if head_grad:
            spec = "nce,ncv->ve" if head_is_embedding else "nce,ncv->ev"
            d_head = d_head + jnp.einsum(spec, h.astype(head.dtype), d_logits, preferred_element_type=jnp.float32)
        return (total + ce, d_head), d_h

    d_head0 = jnp.zeros(head.shape, jnp.float32) if grads and head_grad else jnp.zeros((), jnp.float32)
    (total, d_head), d_hs = lax.scan(body, (jnp.zeros((), jnp.float32), d_head0), xs)
    if not grads:
        return total
    return total, _unchunk(d_hs, t), d_head


@partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6))
def _fused_ce(hidden, head, targets, mask, chunk: int, head_is_embedding: bool, head_grad: bool) -> Array:
    return _scan_ce(hidden, head, targets, mask, chunk, head_is_embedding, grads=False, head_grad=False)


def _fused_ce_fwd(hidden, head, targets, mask, chunk, head_is_embedding, head_grad):
    total, d_hidden, d_head = _scan_ce(hidden, head, targets, mask, chunk, head_is_embedding, True, head_grad)
    return total, (d_hidden.astype(hidden.dtype), d_head if head_grad else None)


def _fused_ce_bwd(chunk, head_is_embedding, head_grad, residuals, g):
    d_hidden, d_head = residuals
    head_cotangent = (g * d_head) if head_grad else None  # None: a frozen head gets a zero cotangent
    return (g.astype(d_hidden.dtype) * d_hidden, head_cotangent, None, None)


_fused_ce.defvjp(_fused_ce_fwd, _fused_ce_bwd)


def token_ce_sum(hidden: Array, head: Array, targets: Array, mask: Array, chunk: int = 128,
                 head_is_embedding: bool = False, head_grad: bool = True) -> tuple[Array, Array]:
    """Token cross-entropy in chunks of `chunk` positions along T: (sum over masked tokens, their number).

    hidden `[N, T, E]` are the states at the positions that predict `targets` `[N, T]`; head is the LM head
    `[E, V]`, or a tied embedding `[V, E]` with `head_is_embedding`. At most one chunk's float32 logits
    `[N, chunk, V]` exist at a time, forward or backward. Chunking along T keeps the batch axis N, and so its
    sharding, intact. With `head_grad=False` the head is treated as a constant (zero gradient).
    """
    mask = mask.astype(bool)
    chunk = max(1, min(int(chunk), hidden.shape[1]))
    total = _fused_ce(hidden, head, targets, mask, chunk, head_is_embedding, head_grad)
    return total, jnp.sum(mask, dtype=jnp.int32)
