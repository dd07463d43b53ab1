"""Random negatives: passages of other records, shown under a record's query and ranked below its own.

Each record keeps a pool of NEGATIVE_POOL x N such passages, drawn once (seeded by record index) from every
record's candidates; a step then draws N of the pool, so epochs vary. The pool is drawn by uniform
indices into the table of all passages, rejecting the record's own passages (and texts equal to one of
them) and repeats, so it costs O(pool) per record however large the record set — the table can be a
memory-mapped Arrow column (`r2r_jax.data.record_store`) or a list.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from r2r_jax.config_io import ConfigError
from r2r_jax.data.records import TeacherRecord

# each record keeps NEGATIVE_POOL x N other records' passages; a step draws N of them, so epochs vary
NEGATIVE_POOL = 4
NEGATIVE_STREAM = 1_000_003  # keeps the negatives' random stream apart from group selection's
DRAWS_PER_PASSAGE = 50  # rejection draws allowed per wanted passage before the record set is judged too small


class PassageTable(Protocol):
    """Every record's candidate passages, in record order: who owns passage i, and its text."""

    def __len__(self) -> int: ...
    def owner(self, i: int) -> int: ...
    def text(self, i: int) -> str: ...


class ListPassages:
    """A `PassageTable` over records held in memory."""

    def __init__(self, records: Sequence[TeacherRecord]):
        self._owner = [r for r, rec in enumerate(records) for _ in rec.candidates]
        self._text = [c.text for rec in records for c in rec.candidates]

    def __len__(self) -> int:
        return len(self._text)

    def owner(self, i: int) -> int:
        return self._owner[i]

    def text(self, i: int) -> str:
        return self._text[i]


def negative_pool(record: TeacherRecord, index: int, passages: PassageTable, size: int, seed: int) -> list[str]:
    """`size` distinct passage texts of other records for the record at `index` (seeded by seed and index)."""
    if size == 0:
        return []
    own = {c.text for c in record.candidates}
    rng = np.random.default_rng([seed, index, NEGATIVE_STREAM])
    pool: list[str] = []
    total = len(passages)
    draws = DRAWS_PER_PASSAGE * size + 100 if total else 0
    for _ in range(draws):
        i = int(rng.integers(total))
        if passages.owner(i) == index:
            continue
        text = passages.text(i)
        if text not in own and text not in pool:
            pool.append(text)
            if len(pool) == size:
                return pool
    raise ConfigError(f"data.random_negatives needs {size} distinct passages from other records for record "
                      f"{record.qid}; {draws} random draws found {len(pool)}: the record "
                      "set is too small, lower data.random_negatives")


def negative_pools(records: Sequence[TeacherRecord], size: int, seed: int, *, passages: PassageTable | None = None,
                   start: int = 0) -> list[list[str]]:
    """`negative_pool` of each of `records`, the slice from index `start` of the record set whose passages
    are `passages` (by default `records` are the whole set)."""
    if size and passages is None:
        passages = ListPassages(records)
    return [negative_pool(rec, start + r, passages, size, seed) for r, rec in enumerate(records)]
