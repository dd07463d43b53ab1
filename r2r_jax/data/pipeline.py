"""A deterministic, checkpointable loader: the batch of step s is a pure function of (seed, s).

Record positions run through epochs end to end: global position q = s * B + i (B = global batch) reads
record `perm_e[q % N]` in epoch e = q // N, where `perm_e` is the permutation drawn from (seed, e); group
and comparison selection inside a record draw from (seed, record index, epoch). A host reads only its
contiguous slice [h * B/H, (h+1) * B/H) of the global batch, so the hosts' slices partition it and
together equal the one-host batch. The state is therefore just the step (plus checks that the data and
batch size are the same), and a resumed loader -- even with a different number of hosts -- yields the same
global batches.

Why not grain: grain's `MapDataset` could express this, but only as a wrapper around the same index
arithmetic (the epoch is needed for group selection and the per-host slice is contiguous, not strided),
and its iterator state describes its own pipeline and worker layout rather than a step. Batches here are
array copies of pre-tokenized records (about a millisecond), so worker processes buy nothing either.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from r2r_jax.config import DataConfig
from r2r_jax.data.features import BatchShapes, TokenizedRecord, build_batch, fingerprint, tokenize_records
from r2r_jax.data.records import TeacherRecord
from r2r_jax.data.templates import special_ids

STATE_VERSION = 1


class TeacherLoader:
    """Per-host batches of the batch contract (`r2r_jax.data.features`), resumable from `state()`."""

    def __init__(self, tokenized: Sequence[TokenizedRecord], shapes: BatchShapes, pad_id: int, *,
                 global_batch_size: int, seed: int = 0, process_index: int = 0, process_count: int = 1):
        if not tokenized:
            raise ValueError("no training records")
        if global_batch_size < 1 or global_batch_size % process_count:
            raise ValueError(f"global batch {global_batch_size} must be a positive multiple of the "
                             f"{process_count} processes")
        if not 0 <= process_index < process_count:
            raise ValueError(f"process_index {process_index} not in [0, {process_count})")
        stored = getattr(tokenized, "fingerprint", None)  # a `record_store.TokenizedStore` stays memory-mapped
        self.tokenized = tokenized if stored else list(tokenized)
        self.shapes, self.pad_id = shapes, pad_id
        self.global_batch_size, self.seed = global_batch_size, seed
        self.process_index, self.process_count = process_index, process_count
        self.local_batch_size = global_batch_size // process_count
        self.fingerprint = stored or fingerprint(self.tokenized)
        self.step = 0
        self._perms: dict[int, np.ndarray] = {}

    @classmethod
    def from_records(cls, records: Sequence[TeacherRecord], tokenizer, cfg: DataConfig, *,
                     global_batch_size: int, process_index: int = 0, process_count: int = 1) -> TeacherLoader:
        """Tokenize once (cached in the loader) and use `cfg.seed`, shapes and templates."""
        return cls.from_tokenized(tokenize_records(records, tokenizer, cfg), tokenizer, cfg,
                                  global_batch_size=global_batch_size, process_index=process_index,
                                  process_count=process_count)

    @classmethod
    def from_tokenized(cls, tokenized: Sequence[TokenizedRecord], tokenizer, cfg: DataConfig, *,
                       global_batch_size: int, process_index: int = 0, process_count: int = 1) -> TeacherLoader:
        """A loader over records tokenized already (a list, or a `record_store.TokenizedStore`) with the
        config's shapes and seed and the tokenizer's pad id."""
        return cls(tokenized, BatchShapes.from_config(cfg), special_ids(tokenizer).pad,
                   global_batch_size=global_batch_size, seed=cfg.seed,
                   process_index=process_index, process_count=process_count)

    @property
    def num_records(self) -> int:
        return len(self.tokenized)

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            if len(self._perms) > 4:
                self._perms.clear()
            self._perms[epoch] = np.random.default_rng([self.seed, epoch]).permutation(self.num_records)
        return self._perms[epoch]

    def items(self, step: int) -> list[tuple[int, int]]:
        """(record index, epoch) of this host's rows at `step`."""
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        start = step * self.global_batch_size + self.process_index * self.local_batch_size
        out = []
        for q in range(start, start + self.local_batch_size):
            epoch, pos = divmod(q, self.num_records)
            out.append((int(self._perm(epoch)[pos]), epoch))
        return out

    def batch(self, step: int) -> dict[str, np.ndarray]:
        """This host's slice of the global batch of `step` (leading dimension B / process_count)."""
        return build_batch(self.tokenized, self.items(step), self.shapes, self.pad_id, self.seed)

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        out = self.batch(self.step)
        self.step += 1
        return out

    def state(self) -> dict[str, Any]:
        """JSON-serialisable; the step is that of the next batch."""
        return {"version": STATE_VERSION, "step": self.step, "seed": self.seed,
                "global_batch_size": self.global_batch_size, "num_records": self.num_records,
                "fingerprint": self.fingerprint}

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from `state`; refuse when the data, seed or global batch differ (batches would too)."""
        state = {k: v.item() if isinstance(v, np.generic) else v for k, v in state.items()}
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"loader state version {state.get('version')!r}, expected {STATE_VERSION}")
        mine = self.state()
        for key in ("seed", "global_batch_size", "num_records", "fingerprint"):
            if state.get(key) != mine[key]:
                raise ValueError(f"loader state has {key}={state.get(key)!r} but this loader has {mine[key]!r}; "
                                 "resuming would not reproduce the batches")
        step = state.get("step")
        if not isinstance(step, numbers.Integral) or step < 0:
            raise ValueError(f"loader state has an invalid step {step!r}")
        self.step = int(step)
