"""Plain, unoptimised implementations that the project's fast kernels are tested against."""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array


def token_ce_reference(hidden: Array, head: Array, targets: Array, mask: Array,
                       head_is_embedding: bool = False) -> tuple[Array, Array]:
    """Token cross-entropy with every logit at once, differentiated by plain autodiff: (masked sum, token
    count) — what `train.token_ce.token_ce`, chunked and with its gradient fused in, must equal."""
    spec = "...e,ve->...v" if head_is_embedding else "...e,ev->...v"
    logits = jnp.einsum(spec, hidden, head, preferred_element_type=jnp.float32)
    mask = mask.astype(bool)
    targets = jnp.where(mask, targets, 0).astype(jnp.int32)  # padding may hold -100 or other non-ids
    target_logit = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    nll = jax.nn.logsumexp(logits, axis=-1) - target_logit
    return jnp.sum(jnp.where(mask, nll, 0.0)), jnp.sum(mask, dtype=jnp.int32)
