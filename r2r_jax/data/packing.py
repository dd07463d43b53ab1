"""Sequence packing for training: a query's scoring sequences share rows instead of each taking P + T positions.

A padded training row holds one `[left-padded prompt (P) | right-padded reason (T)]` sequence, so a short
passage or a negative without a reason still costs P + T positions in every layer. Packing moves each query's
real tokens (prompt then reason, no padding between) into R rows of L positions, several sequences per row,
first-fit by decreasing length. Per position it records the sequence's segment id (1, 2, ... within the row;
0 = padding: attention stays inside a segment, `model.attention_kernels`) and its position within the
sequence (RoPE restarts at 0), so every real token sees exactly the tokens it saw in its padded row and the
losses are the padded step's (up to float32 summation order; LoRA dropout masks differ, so compare without).

The packed batch replaces `input_ids` / `attention_mask` with

| key                | shape     | meaning                                                                    |
|--------------------|-----------|----------------------------------------------------------------------------|
| `packed_ids`       | [B, R, L] | the query's sequences, packed; pad id elsewhere                            |
| `packed_segments`  | [B, R, L] | 1, 2, ... per sequence within a row; 0 = padding                           |
| `packed_positions` | [B, R, L] | position within the sequence                                               |
| `score_index`      | [B, G]    | flat index into the query's R·L positions of each sequence's last prompt token |
| `target_index`     | [B, G, T] | flat index of the position that predicts reason token t (0 where t is padding) |

and keeps every other key (`target_ids`, `target_mask`, `candidate_mask`, `teacher_rank`, `cmp_*`). Shapes are
static, so a query whose sequences do not fit in R rows makes `pack_batch` return None and the trainer runs that
step padded: the step is exact either way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from r2r_jax.data.features import DTYPE, BatchShapes, batch_spec

PADDED_ONLY = ("input_ids", "attention_mask")


@dataclass(frozen=True)
class PackShapes:
    rows: int  # R rows per query
    length: int  # L positions per row


def packed_batch_spec(shapes: BatchShapes, pack: PackShapes,
                      batch_size: int) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shape and dtype of every key of a packed batch (`batch_spec`'s, with the scoring rows packed)."""
    spec = {k: v for k, v in batch_spec(shapes, batch_size).items() if k not in PADDED_ONLY}
    b, g, t, dtype = batch_size, shapes.rows, shapes.target_len, np.dtype(DTYPE)
    rows = (b, pack.rows, pack.length)
    spec.update({"packed_ids": (rows, dtype), "packed_segments": (rows, dtype), "packed_positions": (rows, dtype),
                 "score_index": ((b, g), dtype), "target_index": ((b, g, t), dtype)})
    return spec


def _sequences(batch: dict[str, np.ndarray], b: int, p: int) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """Query b's (slot, prompt tokens, reason tokens) of every row with a real token (a padded batch's empty rows
    have none), longest first (ties by slot): first-fit's order."""
    ids, mask = batch["input_ids"][b], batch["attention_mask"][b].astype(bool)
    out = [(g, ids[g, :p][mask[g, :p]], ids[g, p:][mask[g, p:]]) for g in np.flatnonzero(mask.any(axis=-1))]
    return sorted(out, key=lambda s: -(len(s[1]) + len(s[2])))


def _first_fit(lengths: list[int], rows: int | None, length: int) -> list[tuple[int, int]] | None:
    """(row, start) for each length in turn, in the first row with room; None when `rows` rows are too few
    (`rows=None`: as many as needed)."""
    fill: list[int] = []
    placed = []
    for n in lengths:
        r = next((r for r, used in enumerate(fill) if used + n <= length), None)
        if r is None:
            if rows is not None and len(fill) == rows:
                return None
            fill.append(0)
            r = len(fill) - 1
        placed.append((r, fill[r]))
        fill[r] += n
    return placed


def rows_needed(batch: dict[str, np.ndarray], shapes: BatchShapes, length: int) -> list[int]:
    """Per query, the rows of `length` positions its sequences pack into: what `data.pack_rows` must cover."""
    out = []
    for b in range(batch["input_ids"].shape[0]):
        placed = _first_fit([len(pr) + len(re) for _, pr, re in _sequences(batch, b, shapes.prompt_len)], None,
                            length)
        out.append(1 + max((r for r, _ in placed), default=0))
    return out


def pack_batch(batch: dict[str, np.ndarray], shapes: BatchShapes, pack: PackShapes, pad_id: int) -> dict | None:
    """The packed form of a padded batch (`features.build_batch`), or None when some query does not fit."""
    b_size, g_size, _ = batch["input_ids"].shape
    t, r_size, length = shapes.target_len, pack.rows, pack.length
    out = {k: v for k, v in batch.items() if k not in PADDED_ONLY}
    packed_ids = np.full((b_size, r_size, length), pad_id, DTYPE)
    segments = np.zeros((b_size, r_size, length), DTYPE)
    positions = np.zeros((b_size, r_size, length), DTYPE)
    score_index = np.zeros((b_size, g_size), DTYPE)
    target_index = np.zeros((b_size, g_size, t), DTYPE)
    for b in range(b_size):
        sequences = _sequences(batch, b, shapes.prompt_len)
        placed = _first_fit([len(pr) + len(re) for _, pr, re in sequences], r_size, length)
        if placed is None:
            return None
        for (g, prompt, reason), (r, start) in zip(sequences, placed, strict=True):
            n = len(prompt) + len(reason)
            packed_ids[b, r, start:start + n] = np.concatenate([prompt, reason])
            segments[b, r, start:start + n] = 1 + int(segments[b, r].max())
            positions[b, r, start:start + n] = np.arange(n)
            last_prompt = r * length + start + len(prompt) - 1
            score_index[b, g] = last_prompt
            target_index[b, g, :len(reason)] = last_prompt + np.arange(len(reason))  # token k is predicted one back
    out.update({"packed_ids": packed_ids, "packed_segments": segments, "packed_positions": positions,
                "score_index": score_index, "target_index": target_index})
    return out


def is_packed(batch) -> bool:
    return "packed_ids" in batch
