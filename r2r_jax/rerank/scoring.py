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


def length_sorted_batches(input_ids: np.ndarray, attention_mask: np.ndarray, batch_size: int,
                          mesh: Mesh | None = None,
                          pad_multiple: int = 16) -> Iterator[tuple[np.ndarray, jax.Array, jax.Array]]:
    """(row indices, ids, mask) batches of left-padded prompts [N, P] following `batch_plan`; the one partial
    batch is filled up only to a multiple of the data-parallel devices, and with a mesh batches are placed
    over its data axes."""
    _, p = input_ids.shape
    shards, sh = 1, None
    if mesh is not None:  # rows of a batch must split evenly over the data-parallel devices
        sh = batch_sharding(2, mesh)
        shards = mesh.size // sh.shard_shape((mesh.size, 1))[0]
    for chunk, blen in batch_plan(attention_mask.sum(axis=1), batch_size, p, pad_multiple):
        rows = -(-len(chunk) // shards) * shards  # the partial batch: one more shape, not filler rows
        ids = np.zeros((rows, blen), input_ids.dtype)
        mask = np.zeros((rows, blen), attention_mask.dtype)
        ids[: len(chunk)] = input_ids[chunk, p - blen:]
        mask[: len(chunk)] = attention_mask[chunk, p - blen:]
        mask[len(chunk):, -1] = 1  # filler rows: one visible token keeps them well-defined
        if sh is not None:  # every process holds the whole batch: each places its devices' rows
            ids = jax.make_array_from_callback(ids.shape, sh, lambda i, a=ids: a[i])
            mask = jax.make_array_from_callback(mask.shape, sh, lambda i, a=mask: a[i])
        yield chunk, ids, mask


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
                     progress: Callable[[int], None] | None = None) -> dict[str, dict[str, float]]:
    """qid -> docid -> student score, for every candidate of every query."""
    ids, masks, owners = [], [], []
    for qc in items:
        i, m = encode_prompts(tokenizer, qc.query, [c.text for c in qc.candidates], template, max_len)
        ids.append(i)
        masks.append(m)
        owners.extend((qc.qid, c.docid) for c in qc.candidates)
    if not owners:
        return {}
    scores = score_prompts(score_fn, variables, np.concatenate(ids), np.concatenate(masks), batch_size, mesh,
                           progress=progress)
    out: dict[str, dict[str, float]] = {qc.qid: {} for qc in items}
    for (qid, docid), s in zip(owners, scores, strict=True):
        out[qid][docid] = float(s)
    return out
