"""The LM head on real target tokens only: reasons shorter than the target length leave padded positions, and
the LM head (hidden × vocabulary per position) is the largest matmul of the generation loss.

Within each data shard the positions whose target is real are gathered, in order, into `capacity` slots
(`jnp.nonzero` with a static size), and the token cross-entropy runs on those. Gathering per shard keeps the
gather local: `[N, T]` becomes `[D, N/D·T]` with D the number of data-parallel shards of N, so each device
compacts its own rows. Shapes stay static, so a batch whose real tokens exceed the capacity in any shard
takes the padded path for that step (`lax.cond`; both paths are compiled, one runs). Either way the loss is
the same sum over the same tokens, so the step is exact; only the order of the float32 sum differs.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import lax

from r2r_jax.parallel.rules import constrain, shards_of
from r2r_jax.train.token_ce import token_ce_sum

Array = jax.Array


def capacity_per_shard(rows: int, length: int, fraction: float) -> int:
    """Slots per shard for `rows` sequences of `length` target positions: `fraction` of them, rounded up to 8."""
    return min(rows * length, 8 * math.ceil(fraction * rows * length / 8))


def compact(hidden: Array, targets: Array, mask: Array, shards: int, capacity: int) -> tuple[Array, ...]:
    """`[N, T, ...]` -> `[shards, capacity, ...]`: each shard's real target positions first, in order.

    Returns (hidden, targets, mask) with the mask marking filled slots; a shard with more real tokens than
    `capacity` loses its last ones (see `fits`)."""
    n, t, e = hidden.shape
    rows = n // shards
    h = constrain(hidden.reshape(shards, rows * t, e), ("batch", None, None))
    y = targets.reshape(shards, rows * t)
    m = mask.reshape(shards, rows * t).astype(bool)
    index = jax.vmap(lambda row: jnp.nonzero(row, size=capacity, fill_value=0)[0])(m)
    count = jnp.sum(m, axis=1)
    filled = lax.broadcasted_iota(jnp.int32, (shards, capacity), 1) < count[:, None]
    h_c = constrain(jnp.take_along_axis(h, index[..., None], axis=1), ("batch", None, None))
    return h_c, jnp.take_along_axis(y, index, axis=1), filled


def fits(mask: Array, shards: int, capacity: int) -> Array:
    """Whether every shard's real target tokens fit in `capacity` slots."""
    return jnp.all(jnp.sum(mask.reshape(shards, -1).astype(jnp.int32), axis=1) <= capacity)


def compacted_token_ce_sum(hidden: Array, head: Array, targets: Array, mask: Array, chunk: int, fraction: float,
                           head_is_embedding: bool = False, head_grad: bool = True) -> tuple[Array, Array]:
    """`token_ce_sum` with the LM head run on at most `fraction` of each shard's target positions.

    `fraction >= 1` is the padded computation itself. Chunks hold as many positions as the padded path's
    (`chunk` per row of the shard), so the float32 logits held at once stay the same size."""
    n, t = targets.shape
    shards = shards_of(("batch",), (n,))
    rows = n // shards
    capacity = capacity_per_shard(rows, t, fraction)
    if capacity >= rows * t:  # fraction >= 1 among them
        return token_ce_sum(hidden, head, targets, mask, chunk, head_is_embedding, head_grad)

    def padded(args):
        h, y, m = args
        return token_ce_sum(h, head, y, m, chunk, head_is_embedding, head_grad)[0]

    def compacted(args):
        h, y, m = compact(*args, shards, capacity)
        return token_ce_sum(h, head, y, m, chunk * rows, head_is_embedding, head_grad)[0]

    total = lax.cond(fits(mask, shards, capacity), compacted, padded, (hidden, targets, mask))
    return total, jnp.sum(mask.astype(bool), dtype=jnp.int32)
