"""The R2R training losses: RankNet, ListNet-KL / ListMLE, token cross-entropy, their weighted sum.

Ranking losses take scores `[B, G]` for groups of G candidates, teacher ranks `[B, G]` (1 = best, equal ranks
are ties) and a candidate mask `[B, G]`. Every term is computed as a (sum, count) pair first: a mean over a
batch split into micro-batches is exact only if each micro-batch divides its sum by the *whole* batch's
count, which `loss_denominators` gives and `r2r_loss` accepts. Padding never produces NaN, in values or
gradients; a term with nothing to average is 0.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from r2r_jax.config import LossConfig

Array = jax.Array


def _safe_div(total: Array, count: Array) -> Array:
    return total / jnp.maximum(count, 1).astype(total.dtype)


def _masked_log_softmax(x: Array, mask: Array) -> Array:
    """log softmax over the valid entries of the last axis; 0 at masked entries, finite when all are masked."""
    top = jnp.max(jnp.where(mask, x, -jnp.inf), axis=-1, keepdims=True)
    top = lax.stop_gradient(jnp.where(jnp.isfinite(top), top, 0.0))
    shifted = jnp.where(mask, x - top, 0.0)
    total = jnp.sum(jnp.where(mask, jnp.exp(shifted), 0.0), axis=-1, keepdims=True)
    return jnp.where(mask, shifted - jnp.log(jnp.where(total > 0, total, 1.0)), 0.0)


# ---------------------------------------------------------------- pairwise


def valid_pairs(ranks: Array, mask: Array) -> Array:
    """`[B, G, G]`: (i, j) with both candidates valid and i ranked strictly better than j."""
    mask = mask.astype(bool)
    return mask[:, :, None] & mask[:, None, :] & (ranks[:, :, None] < ranks[:, None, :])


def ranknet_sum(scores: Array, ranks: Array, mask: Array) -> tuple[Array, Array]:
    """Sum over valid pairs of log(1 + exp(-(s_i − s_j))), and the number of valid pairs."""
    s = scores.astype(jnp.float32)
    pairs = valid_pairs(ranks, mask)
    per_pair = jax.nn.softplus(s[:, None, :] - s[:, :, None])  # softplus(-(s_i - s_j)) at [b, i, j]
    return jnp.sum(jnp.where(pairs, per_pair, 0.0)), jnp.sum(pairs, dtype=jnp.int32)


def ranknet_loss(scores: Array, ranks: Array, mask: Array) -> Array:
    """RankNet: mean over all valid pairs of the batch (rax's `pairwise_logistic_loss`); 0 without pairs."""
    return _safe_div(*ranknet_sum(scores, ranks, mask))


# ---------------------------------------------------------------- listwise


def _list_groups(mask: Array) -> Array:
    """`[B]`: groups with at least two valid candidates, the only ones a listwise loss can say anything about."""
    return jnp.sum(mask.astype(jnp.int32), axis=-1) >= 2


def teacher_distribution(ranks: Array, mask: Array, temperature: float = 1.0) -> Array:
    """softmax((G_valid − rank)/τ) over the valid candidates of each group; 0 at padding."""
    mask = mask.astype(bool)
    gain = jnp.sum(mask, axis=-1, keepdims=True) - ranks.astype(jnp.float32)
    return jnp.exp(_masked_log_softmax(gain / temperature, mask)) * mask


def listnet_sum(scores: Array, ranks: Array, mask: Array, temperature: float = 1.0) -> tuple[Array, Array]:
    """Sum over groups of KL(teacher ‖ softmax(s)), and the number of groups with >= 2 valid candidates."""
    mask = mask.astype(bool)
    p = teacher_distribution(ranks, mask, temperature)
    log_p = jnp.where(p > 0, jnp.log(jnp.where(p > 0, p, 1.0)), 0.0)
    log_q = _masked_log_softmax(scores.astype(jnp.float32), mask)
    per_group = jnp.sum(jnp.where(mask, p * (log_p - log_q), 0.0), axis=-1)
    groups = _list_groups(mask)
    return jnp.sum(jnp.where(groups, per_group, 0.0)), jnp.sum(groups, dtype=jnp.int32)


def listmle_sum(scores: Array, ranks: Array, mask: Array) -> tuple[Array, Array]:
    """Sum over groups of −log P(teacher permutation | Plackett–Luce(s)); ties keep candidate order."""
    mask = mask.astype(bool)
    big = jnp.iinfo(jnp.int32).max
    order = jnp.argsort(jnp.where(mask, ranks.astype(jnp.int32), big), axis=-1, stable=True)
    s = jnp.take_along_axis(scores.astype(jnp.float32), order, axis=-1)
    m = jnp.take_along_axis(mask, order, axis=-1)  # valid candidates first, best first
    # log-sum-exp of the scores from position k to the end; padding gets a finite -1e30 (exp -> 0, no NaN)
    lse = lax.cumlogsumexp(jnp.where(m, s, -1e30), axis=s.ndim - 1, reverse=True)
    per_group = jnp.sum(jnp.where(m, lse - s, 0.0), axis=-1)
    groups = _list_groups(mask)
    return jnp.sum(jnp.where(groups, per_group, 0.0)), jnp.sum(groups, dtype=jnp.int32)


def listwise_sum(scores: Array, ranks: Array, mask: Array, kind: str = "listnet",
                 temperature: float = 1.0) -> tuple[Array, Array]:
    if kind == "listnet":
        return listnet_sum(scores, ranks, mask, temperature)
    if kind == "listmle":
        return listmle_sum(scores, ranks, mask)
    raise ValueError(f"unknown listwise loss {kind!r} (listnet or listmle)")


def listwise_loss(scores: Array, ranks: Array, mask: Array, kind: str = "listnet",
                  temperature: float = 1.0) -> Array:
    """Mean over groups with >= 2 valid candidates; single-candidate groups carry no ranking and are skipped."""
    return _safe_div(*listwise_sum(scores, ranks, mask, kind, temperature))


# ---------------------------------------------------------------- combined


class LossDenominators(NamedTuple):
    """Counts that turn term sums into means: valid pairs, ranked groups, target tokens of the generation
    term and of the separately weighted comparison term."""

    pairs: Array
    groups: Array
    tokens: Array
    cmp_tokens: Array


def _token_count(masks: tuple[Array, ...]) -> Array:
    return sum((jnp.sum(m.astype(bool), dtype=jnp.int32) for m in masks), jnp.zeros((), jnp.int32))


def loss_denominators(ranks: Array, mask: Array, target_masks: tuple[Array, ...] = (),
                      cmp_target_masks: tuple[Array, ...] = ()) -> LossDenominators:
    """The whole batch's counts; pass them to every micro-batch's `r2r_loss` for exact accumulation."""
    return LossDenominators(jnp.sum(valid_pairs(ranks, mask), dtype=jnp.int32),
                            jnp.sum(_list_groups(mask.astype(bool)), dtype=jnp.int32), _token_count(target_masks),
                            _token_count(cmp_target_masks))


def no_tokens() -> tuple[Array, Array]:
    """(sum, count) of a generation term that learns from nothing. A function, not a constant: creating arrays
    at import time would start the XLA backend before a multi-host job calls jax.distributed.initialize."""
    return jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32)


def r2r_loss(cfg: LossConfig, scores: Array, ranks: Array, mask: Array,
             gen: tuple[Array, Array] | None = None,
             denominators: LossDenominators | None = None,
             gen_cmp: tuple[Array, Array] | None = None) -> tuple[Array, dict[str, Array]]:
    """L = α·L_pair + β·L_list + γ·L_gen (+ γ_cmp·L_gen_cmp); returns (L, {"loss", "pair", "list", "gen",
    "gen_cmp", counts...}).

    `gen` is the (sum, count) of token cross-entropy over the reason targets the generation term averages
    (add the pairs of several `token_ce_sum` calls, e.g. direct and comparison reasons); `gen_cmp` the same for
    comparison reasons when `cfg.gamma_comparison` gives them a weight of their own. Without `denominators`
    each term is a mean over this call's own counts. A zero weight drops its term from L (it is still reported).
    """
    pair_sum, pairs = ranknet_sum(scores, ranks, mask)
    list_sum, groups = listwise_sum(scores, ranks, mask, cfg.listwise, cfg.temperature)
    gen_sum, tokens = gen if gen is not None else no_tokens()
    cmp_sum, cmp_tokens = gen_cmp if gen_cmp is not None else no_tokens()
    if denominators is None:
        denominators = LossDenominators(pairs, groups, tokens, cmp_tokens)
    terms = {
        "pair": _safe_div(pair_sum, denominators.pairs),
        "list": _safe_div(list_sum, denominators.groups),
        "gen": _safe_div(gen_sum.astype(jnp.float32), denominators.tokens),
        "gen_cmp": _safe_div(cmp_sum.astype(jnp.float32), denominators.cmp_tokens),
    }
    total = jnp.zeros((), jnp.float32)
    for weight, name in ((cfg.alpha, "pair"), (cfg.beta, "list"), (cfg.gamma, "gen"),
                         (cfg.gamma_comparison or 0.0, "gen_cmp")):
        if weight:
            total = total + weight * terms[name]
    return total, {"loss": total, **terms, "pairs": pairs, "groups": groups, "tokens": tokens + cmp_tokens}
