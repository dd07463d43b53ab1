"""Scoring with each query's shared prompt prefix run once (prefix caching).

Every scoring prompt of a query starts with the same tokens: BOS, the template's head and the query (13% of
a DL19 top-100 prompt with the default template; most of it with a long instruction). Those tokens are run
once per query into a KV cache, and each candidate runs only its own suffix, attending to its query's cached
keys and values. The scores are the full prompts' scores: under causal attention a prefix token's keys and
values never depend on what follows it. The prefix is read off the token ids (the longest common prefix of
the query's prompts, leaving every suffix at least one token), so any template works and nothing is
re-tokenized.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from r2r_jax.data.features import left_pad
from r2r_jax.inference.batches import length_sorted_batches
from r2r_jax.model.generate import init_cache
from r2r_jax.model.kv_cache import StackedKV
from r2r_jax.model.llama import LlamaForRanking, default_positions
from r2r_jax.parallel.batch import data_parallel_size, place, to_host
from r2r_jax.parallel.rules import traced_under

QUERIES_PER_GROUP = 64  # queries whose prefix caches are held at once


def shared_prefix_length(rows: Sequence[np.ndarray]) -> int:
    """Length of the tokens every row starts with, leaving the shortest row at least one token of its own."""
    shortest = min(len(r) for r in rows)
    first = rows[0][: shortest - 1]
    n = len(first)
    for r in rows[1:]:
        differs = np.nonzero(r[:n] != first[:n])[0]
        n = int(differs[0]) if len(differs) else n
    return n


def make_prefix_steps(model: LlamaForRanking, mesh: Mesh | None = None) -> tuple[Callable, Callable]:
    """(`encode(variables, ids, mask) -> (k, v)`, `score(variables, k, v, valid, query, ids, mask, offset)`).

    `encode` runs left-padded prefixes [Q, C] into keys and values [L, Q, C, K, D]. `score` runs left-padded
    suffixes [B, S] to their scores [B]: row b continues prefix `query[b]`, whose real tokens (`valid` [Q, C])
    number `offset[b]`, so its positions start there; it attends to the prefix's keys and values and then
    its own, and the final layer works at the last position only."""

    def encode(variables, ids, mask):
        _, cache = model.apply(variables, ids, mask, default_positions(mask), init_cache(model, mask, 0), 0)
        return cache.k, cache.v

    def score(variables, k, v, valid, query, ids, mask, offset):
        width = valid.shape[1]

        def widen(x):  # this batch's prefixes, then room for the suffixes
            return jnp.pad(x[:, query], ((0, 0), (0, 0), (0, ids.shape[1]), (0, 0), (0, 0)))

        cache = StackedKV(widen(k), widen(v), jnp.concatenate([valid[query], mask.astype(bool)], axis=1))
        positions = offset[:, None] + default_positions(mask)
        hidden, _ = model.apply(variables, ids, mask, positions, cache, width, last_only=True)
        return model.apply(variables, hidden[:, -1], method=LlamaForRanking.scores)

    return jax.jit(traced_under(encode, mesh)), jax.jit(traced_under(score, mesh))


@dataclass(frozen=True)
class PrefixGroup:
    """A group of queries split into what runs once per query and what runs once per candidate."""

    prefixes: list[np.ndarray]  # per query of the group: its shared tokens
    suffixes: list[np.ndarray]  # per candidate: its own tokens
    owners: list[tuple[int, int, int]]  # per suffix: (query index in `prompts`, row, query index in the group)

    def width(self, pad_multiple: int) -> int:
        """The prefix batch's length: the longest prefix rounded up to `pad_multiple` (at least one multiple)."""
        longest = max((len(p) for p in self.prefixes), default=0)
        return max(pad_multiple, -(-longest // pad_multiple) * pad_multiple)


def query_groups(prompts: Sequence[tuple[np.ndarray, np.ndarray]]) -> Iterator[PrefixGroup]:
    """`prompts` (each query's left-padded ids and mask [n, P]) in groups of `QUERIES_PER_GROUP` queries."""
    for start in range(0, len(prompts), QUERIES_PER_GROUP):
        prefixes, suffixes, owners = [], [], []
        for j, q in enumerate(range(start, min(start + QUERIES_PER_GROUP, len(prompts)))):
            rows = [ids[mask == 1] for ids, mask in zip(*prompts[q], strict=True)]
            c = shared_prefix_length(rows) if rows else 0
            prefixes.append(rows[0][:c] if rows else np.zeros((0,), np.int32))
            for r, tokens in enumerate(rows):
                suffixes.append(tokens[c:])
                owners.append((q, r, j))
        yield PrefixGroup(prefixes, suffixes, owners)


def score_with_shared_prefixes(steps: tuple[Callable, Callable], variables,
                               prompts: Sequence[tuple[np.ndarray, np.ndarray]], batch_size: int,
                               mesh: Mesh | None = None, pad_multiple: int = 16,
                               progress: Callable[[int], None] | None = None) -> list[np.ndarray]:
    """Scores of each query's left-padded prompts (ids, mask) [n, P], equal to scoring the whole prompts.

    Queries go in groups of `QUERIES_PER_GROUP`: one `encode` call for the group's prefixes (padded to a
    multiple of `pad_multiple`), then the group's suffixes pooled in length-sorted batches."""
    encode, score = steps
    out = [np.zeros((len(ids),), np.float32) for ids, _ in prompts]
    shards = data_parallel_size(mesh)
    for group in query_groups(prompts):
        if not group.suffixes:
            continue
        n_prefix = -(-len(group.prefixes) // shards) * shards
        empty = [np.zeros((0,), np.int32)] * (n_prefix - len(group.prefixes))
        pre_ids, pre_mask = left_pad(group.prefixes + empty, group.width(pad_multiple), 0)
        valid = pre_mask.astype(bool)  # what suffixes may see: real prefix tokens only
        pre_mask[:, -1] = 1  # filler and empty prefixes: one (pad) token keeps their rows defined; unseen
        k, v = encode(variables, place(pre_ids, mesh), place(pre_mask, mesh))
        ids, mask = left_pad(group.suffixes, max(len(t) for t in group.suffixes), 0)
        query = np.asarray([j for _, _, j in group.owners], np.int32)
        offset = np.asarray([len(group.prefixes[j]) for j in query], np.int32)
        for chunk, b_ids, b_mask, b_query, b_offset in length_sorted_batches(
                ids, mask, batch_size, mesh, pad_multiple, row_values=(query, offset)):
            scores = to_host(score(variables, k, v, valid, b_query, b_ids, b_mask, b_offset))[: len(chunk)]
            for i, s in zip(chunk, scores, strict=True):
                q, r, _ = group.owners[i]
                out[q][r] = s
            if progress is not None:
                progress(len(chunk))
    return out
