"""Pointwise scoring and ranking: every query's prompts pooled, batched by length, sharded over devices.

What both the trainer's dev evaluation and `r2r rerank` run: encode each candidate's prompt, score the
length-sorted batches (`batches.py`) or, with prefix steps, each query's shared prefix once (`prefix.py`),
and order each query's candidates by score (`rank_query`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from jax.sharding import Mesh

from r2r_jax.data.candidates import QueryCandidates
from r2r_jax.data.features import encode_prompts
from r2r_jax.data.templates import TruncationStats
from r2r_jax.inference.batches import length_sorted_batches
from r2r_jax.inference.prefix import score_with_shared_prefixes
from r2r_jax.parallel.batch import to_host
from r2r_jax.retrieval.trec import trec_order


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
    (`inference.prefix.make_prefix_steps`) each query's shared prompt prefix runs once (same scores);
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
        scores = np.concatenate(score_with_shared_prefixes(prefix_steps, variables, list(zip(ids, masks, strict=True)),
                                                           batch_size, mesh, progress=progress))
    else:
        scores = score_prompts(score_fn, variables, np.concatenate(ids), np.concatenate(masks), batch_size, mesh,
                               progress=progress)
    out: dict[str, dict[str, float]] = {qc.qid: {} for qc in items}
    for (qid, docid), s in zip(owners, scores, strict=True):
        out[qid][docid] = float(s)
    return out


def rank_query(qc: QueryCandidates, scores: dict[str, float]) -> list[tuple[str, float]]:
    """The query's candidates in trec_eval order by student score, checked to be a permutation of them."""
    docids = [c.docid for c in qc.candidates]
    if len(set(docids)) != len(docids) or set(scores) != set(docids):
        raise RuntimeError(f"qid {qc.qid!r}: scores do not match the candidates one to one")
    hits = trec_order((d, float(scores[d])) for d in docids)
    bad = [(d, s) for d, s in hits if not math.isfinite(s)]
    if bad:
        raise FloatingPointError(f"qid {qc.qid!r}: non-finite student scores, e.g. {bad[:3]}")
    if sorted(d for d, _ in hits) != sorted(docids):  # the invariant every rerank must keep
        raise RuntimeError(f"qid {qc.qid!r}: the reranked list is not a permutation of the candidates")
    return hits
