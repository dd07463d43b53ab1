"""The jitted scoring step: a prompt's relevance score from one forward pass."""

from __future__ import annotations

from collections.abc import Callable

import jax
from jax.sharding import Mesh

from r2r_jax.model.llama import LlamaForRanking
from r2r_jax.parallel.rules import traced_under


def make_score_step(model: LlamaForRanking, last_only: bool = True, mesh: Mesh | None = None) -> Callable:
    """`scores(variables, input_ids, attention_mask) -> [N]`: prompt-only forward, score at the last
    column (prompts are left-padded), for ranking metrics during training and for reranking. With
    `last_only` the final layer works on that column only (the same scores, ~1/L less work); with `mesh`
    it traces under `activation_sharding(mesh)`."""

    def score(variables, input_ids, attention_mask):
        hidden, _ = model.apply(variables, input_ids, attention_mask, last_only=last_only)
        return model.apply(variables, hidden[:, -1], method=LlamaForRanking.scores)

    return jax.jit(traced_under(score, mesh))
