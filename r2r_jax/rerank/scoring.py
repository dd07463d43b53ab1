"""Batched pointwise scoring: prompts of every query pooled, bucketed by length, sharded over devices.

Prompts are left-padded, so a shorter bucket is just the last `bucket` columns: the last prompt
token — where the score is read — stays in the last column.
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


def bucket_lengths(max_len: int, smallest: int = 32) -> list[int]:
    out, b = [], smallest
    while b < max_len:
        out.append(b)
        b *= 2
    return out + [max_len]


def bucketed_batches(input_ids: np.ndarray, attention_mask: np.ndarray, batch_size: int, mesh: Mesh | None = None,
                     smallest_bucket: int = 32) -> Iterator[tuple[np.ndarray, jax.Array, jax.Array]]:
    """(row indices, ids, mask) batches of left-padded prompts [N, P]: rows grouped into length buckets, each
    batch padded to `batch_size` rows (one compile per bucket) and, with a mesh, placed over its data axes."""
    _, p = input_ids.shape
    buckets = bucket_lengths(p, smallest_bucket)
    assignment = np.searchsorted(np.asarray(buckets), attention_mask.sum(axis=1))  # first bucket >= length
    for bi, blen in enumerate(buckets):
        rows = np.nonzero(assignment == bi)[0]
        for start in range(0, len(rows), batch_size):
            chunk = rows[start: start + batch_size]
            ids = np.zeros((batch_size, blen), input_ids.dtype)
            mask = np.zeros((batch_size, blen), attention_mask.dtype)
            ids[: len(chunk)] = input_ids[chunk, p - blen:]
            mask[: len(chunk)] = attention_mask[chunk, p - blen:]
            mask[len(chunk):, -1] = 1  # filler rows: one visible token keeps them well-defined
            if mesh is not None:  # every process holds the whole batch: each places its devices' rows
                sh = batch_sharding(2, mesh)
                ids = jax.make_array_from_callback(ids.shape, sh, lambda i, a=ids: a[i])
                mask = jax.make_array_from_callback(mask.shape, sh, lambda i, a=mask: a[i])
            yield chunk, ids, mask


def to_host(x: jax.Array) -> np.ndarray:
    """A result as numpy on every process, also when the mesh spans several hosts."""
    if not x.is_fully_addressable:
        x = multihost_utils.process_allgather(x, tiled=True)
    return np.asarray(jax.device_get(x))


def score_prompts(score_fn: Callable, variables, input_ids: np.ndarray, attention_mask: np.ndarray,
                  batch_size: int, mesh: Mesh | None = None, smallest_bucket: int = 32,
                  progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Scores of left-padded prompts [N, P] in fixed-shape batches (one compile per bucket)."""
    scores = np.zeros((input_ids.shape[0],), np.float32)
    for chunk, ids, mask in bucketed_batches(input_ids, attention_mask, batch_size, mesh, smallest_bucket):
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
