"""Batched pointwise scoring: prompts of every query pooled, batched by length, sharded over devices.

Prompts are sorted by length and cut into batches of `batch_size`; each batch is padded only up to its own
longest prompt rounded up to a multiple of `pad_multiple` (16): at most P/16 shapes to compile, and about
as many positions computed as a transformers user's length-sorted batches. Prompts are left-padded, so a
shorter batch is just the last columns: the last prompt token, where the score is read, stays last.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh

from r2r_jax.data.candidates import QueryCandidates
from r2r_jax.data.features import encode_prompts
from r2r_jax.data.templates import TruncationStats
from r2r_jax.parallel.batch import batch_sharding


def batch_plan(lengths: np.ndarray, batch_size: int, max_len: int,
               pad_multiple: int = 16) -> list[tuple[np.ndarray, int]]:
    """(row indices, padded length) of each batch: rows in order of length (stable, so every process of a
    multi-host job plans the same batches), `batch_size` per batch, length rounded up to `pad_multiple`."""
    order = np.argsort(lengths, kind="stable")
    first = len(order) % batch_size or batch_size  # the one partial batch holds the shortest prompts: its
    starts = [0] + list(range(first, len(order), batch_size))  # filler rows then cost the least
    plan = []
    for start, end in zip(starts, starts[1:] + [len(order)], strict=True):
        rows = order[start:end]
        longest = max(int(lengths[rows].max()), 1)
        plan.append((rows, min(max_len, -(-longest // pad_multiple) * pad_multiple)))
    return plan


def data_shards(mesh: Mesh | None) -> int:
    """How many data-parallel devices split a batch's rows (1 without a mesh)."""
    if mesh is None:
        return 1
    return mesh.size // batch_sharding(2, mesh).shard_shape((mesh.size, 1))[0]


def place(x: np.ndarray, mesh: Mesh | None) -> np.ndarray | jax.Array:
    """A host array whose first axis is batch rows, split over the mesh's data axes. Every process holds the
    whole array and places its own devices' rows (no cross-host transfer)."""
    if mesh is None:
        return x
    sh = batch_sharding(x.ndim, mesh)
    return jax.make_array_from_callback(x.shape, sh, lambda i, a=x: a[i])


def length_sorted_batches(input_ids: np.ndarray, attention_mask: np.ndarray, batch_size: int,
                          mesh: Mesh | None = None, pad_multiple: int = 16,
                          row_values: Sequence[np.ndarray] = ()) -> Iterator[tuple]:
    """(row indices, ids, mask, *row values) batches of left-padded prompts [N, P] following `batch_plan`;
    `row_values` are per-row arrays [N] that travel with their rows. The one partial batch is filled up
    only to a multiple of the data-parallel devices (filler rows hold zeros), and with a mesh batches are
    placed over its data axes."""
    _, p = input_ids.shape
    shards = data_shards(mesh)  # rows of a batch must split evenly over the data-parallel devices
    for chunk, blen in batch_plan(attention_mask.sum(axis=1), batch_size, p, pad_multiple):
        rows = -(-len(chunk) // shards) * shards  # the partial batch: one more shape, not filler rows
        ids = np.zeros((rows, blen), input_ids.dtype)
        mask = np.zeros((rows, blen), attention_mask.dtype)
        ids[: len(chunk)] = input_ids[chunk, p - blen:]
        mask[: len(chunk)] = attention_mask[chunk, p - blen:]
        mask[len(chunk):, -1] = 1  # filler rows: one visible token keeps them well-defined
        values = []
        for v in row_values:
            filled = np.zeros((rows,), v.dtype)
            filled[: len(chunk)] = v[chunk]
            values.append(place(filled, mesh))
        yield (chunk, place(ids, mesh), place(mask, mesh), *values)


def to_host(x: jax.Array) -> np.ndarray:
    """A result as numpy on every process, also when the mesh spans several hosts."""
    if not x.is_fully_addressable:
        x = multihost_utils.process_allgather(x, tiled=True)
    return np.asarray(jax.device_get(x))


def score_prompts(score_fn: Callable, variables, input_ids: np.ndarray, attention_mask: np.ndarray,
                  batch_size: int, mesh: Mesh | None = None, pad_multiple: int = 16,
                  progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Scores of left-padded prompts [N, P] in length-sorted batches (one compile per padded length)."""
    scores = np.zeros((input_ids.shape[0],), np.float32)
    for chunk, ids, mask in length_sorted_batches(input_ids, attention_mask, batch_size, mesh, pad_multiple):
        scores[chunk] = to_host(score_fn(variables, ids, mask))[: len(chunk)]
        if progress is not None:
            progress(len(chunk))
    return scores


def score_candidates(score_fn: Callable, variables, tokenizer, items: Sequence[QueryCandidates], template: str,
                     max_len: int, batch_size: int, mesh: Mesh | None = None,
                     progress: Callable[[int], None] | None = None,
                     prefix_steps: tuple[Callable, Callable] | None = None,
                     truncation: TruncationStats | None = None) -> dict[str, dict[str, float]]:
    """qid -> docid -> student score, for every candidate of every query. With `prefix_steps`
    (`rerank.prefix.make_prefix_steps`) each query's shared prompt prefix runs once (same scores);
    `truncation` counts the prompts cut to `max_len`."""
    ids, masks, owners = [], [], []
    for qc in items:
        i, m = encode_prompts(tokenizer, qc.query, [c.text for c in qc.candidates], template, max_len, truncation)
        ids.append(i)
        masks.append(m)
        owners.extend((qc.qid, c.docid) for c in qc.candidates)
    if not owners:
        return {}
    if prefix_steps is not None:
        from r2r_jax.rerank.prefix import score_with_shared_prefixes

        scores = np.concatenate(score_with_shared_prefixes(prefix_steps, variables, list(zip(ids, masks, strict=True)),
                                                           batch_size, mesh, progress=progress))
    else:
        scores = score_prompts(score_fn, variables, np.concatenate(ids), np.concatenate(masks), batch_size, mesh,
                               progress=progress)
    out: dict[str, dict[str, float]] = {qc.qid: {} for qc in items}
    for (qid, docid), s in zip(owners, scores, strict=True):
        out[qid][docid] = float(s)
    return out
