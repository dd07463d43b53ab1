"""Length-sorted batches of left-padded prompts, split over the data-parallel devices.

Prompts are sorted by length and cut into batches of `batch_size`; each batch is padded only up to its own
longest prompt rounded up to a multiple of `pad_multiple` (16): at most P/16 shapes to compile, and about
as many positions computed as a transformers user's length-sorted batches. Prompts are left-padded, so a
shorter batch is just the last columns: the last prompt token, where the score is read, stays last.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from jax.sharding import Mesh

from r2r_jax.parallel.batch import data_parallel_size, place


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


def length_sorted_batches(input_ids: np.ndarray, attention_mask: np.ndarray, batch_size: int,
                          mesh: Mesh | None = None, pad_multiple: int = 16,
                          row_values: Sequence[np.ndarray] = ()) -> Iterator[tuple]:
    """(row indices, ids, mask, *row values) batches of left-padded prompts [N, P] following `batch_plan`;
    `row_values` are per-row arrays [N] that travel with their rows. The one partial batch is filled up
    only to a multiple of the data-parallel devices (filler rows hold zeros), and with a mesh batches are
    placed over its data axes."""
    _, p = input_ids.shape
    shards = data_parallel_size(mesh)  # rows of a batch must split evenly over the data-parallel devices
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
