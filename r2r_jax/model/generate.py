"""Jitted KV-cache decoding: greedy or temperature sampling, batched over left-padded prompts.

The cache has a fixed size (prompt length + max_new_tokens), so one compiled function serves every
batch of a shape. Rows stop at an EOS token; after that they emit the pad id.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from r2r_jax.model.kv_cache import KVCache, PerLayerKV, StackedKV
from r2r_jax.model.llama import LlamaForRanking, default_positions
from r2r_jax.parallel.rules import traced_under


def init_cache(model: LlamaForRanking, attention_mask: jax.Array, extra: int, per_layer: bool = False) -> KVCache:
    """An empty cache for the prompts of `attention_mask` (B, T) and `extra` positions after them: stacked over
    the layers, or with `per_layer` (unrolled layers only) one buffer per layer."""
    batch = attention_mask.shape[0]
    kv_valid = jnp.concatenate([attention_mask.astype(bool), jnp.zeros((batch, extra), bool)], axis=1)
    return (PerLayerKV if per_layer else StackedKV).empty(model.cfg, kv_valid)


def make_generate(
    model: LlamaForRanking, max_new_tokens: int, eos_token_ids: Sequence[int], pad_token_id: int,
    mesh: Mesh | None = None, min_new_tokens: int = 0,
) -> Callable:
    """Returns `generate(variables, input_ids, attention_mask, rng, temperature) -> (tokens, lengths)`.

    Prompts must be left-padded (the last column is every row's last prompt token). `temperature`
    <= 0 means greedy. `tokens` is (B, max_new_tokens) with EOS included and pad after it;
    `lengths` counts the generated tokens including EOS. With `mesh` it traces under
    `activation_sharding(mesh)`. The EOS ids cannot be picked before `min_new_tokens` tokens (transformers'
    `min_new_tokens`): with 1, an explanation is never empty."""
    eos = jnp.asarray(list(eos_token_ids), jnp.int32)

    def step_logits(variables, hidden):
        return model.apply(variables, hidden, method=LlamaForRanking.lm_logits).astype(jnp.float32)

    def pick(logits, rng, temperature):
        greedy = jnp.argmax(logits, axis=-1).astype(jnp.int32)
        sampled = jax.random.categorical(rng, logits / jnp.maximum(temperature, 1e-6), axis=-1).astype(jnp.int32)
        return jnp.where(temperature > 0, sampled, greedy)

    def generate(variables, input_ids, attention_mask, rng, temperature=0.0):
        b, t = input_ids.shape
        cache = init_cache(model, attention_mask, max_new_tokens, per_layer=not model.cfg.scan_layers)
        positions = default_positions(attention_mask)
        # the prompt's last position is the only one read: the final layer computes only there
        hidden, cache = model.apply(variables, input_ids, attention_mask, positions, cache, 0, True)
        logits = step_logits(variables, hidden[:, -1])
        next_pos = positions[:, -1] + 1
        tokens = jnp.full((b, max_new_tokens), pad_token_id, jnp.int32)
        done = jnp.zeros((b,), bool)
        lengths = jnp.zeros((b,), jnp.int32)

        def cond(state):
            i, _, _, _, done, _, _, _ = state
            return (i < max_new_tokens) & ~jnp.all(done)

        def body(state):
            i, logits, cache, tokens, done, lengths, next_pos, rng = state
            rng, sub = jax.random.split(rng)
            too_early = (i < min_new_tokens) & jnp.isin(jnp.arange(logits.shape[-1]), eos)
            logits = jnp.where(too_early[None, :], -jnp.inf, logits)
            tok = jnp.where(done, pad_token_id, pick(logits, sub, temperature))
            tokens = tokens.at[:, i].set(tok)
            lengths = lengths + (~done).astype(jnp.int32)
            done = done | jnp.isin(tok, eos)
            cache = cache.replace(kv_valid=cache.kv_valid.at[:, t + i].set(True))
            hidden, cache = model.apply(variables, tok[:, None], jnp.ones((b, 1), jnp.int32), next_pos[:, None],
                                        cache, t + i)
            return i + 1, step_logits(variables, hidden[:, -1]), cache, tokens, done, lengths, next_pos + 1, rng

        state = (0, logits, cache, tokens, done, lengths, next_pos, rng)
        _, _, _, tokens, _, lengths, _, _ = jax.lax.while_loop(cond, body, state)
        return tokens, lengths

    return jax.jit(traced_under(generate, mesh))
