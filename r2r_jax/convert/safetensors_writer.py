"""Sharded safetensors output in Hugging Face's layout: `model-0000k-of-0000n.safetensors` + index.

The shard plan is fixed up front from the tensors' shapes (file names carry the shard count), then
tensors arrive one at a time in plan order. A shard is written with `safetensors` as soon as its last
tensor arrives and its arrays are dropped, so the writer never holds more than one shard.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from r2r_jax.atomic import current_umask

_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
INDEX_NAME = "model.safetensors.index.json"
# transformers refuses safetensors files whose metadata does not name a framework
METADATA = {"format": "pt"}


def parse_size(text: str | int) -> int:
    """Bytes from `5GB`, `500MB`, `2GiB` or a plain integer (decimal units, as transformers reads them)."""
    if isinstance(text, int):
        size = text
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", text)
        if not m or m.group(2).upper() not in _UNITS:
            raise ValueError(f"cannot read size {text!r}; use e.g. 5GB, 500MB, 2GiB")
        size = int(float(m.group(1)) * _UNITS[m.group(2).upper()])
    if size <= 0:
        raise ValueError(f"size must be positive, got {text!r}")
    return size


@dataclass(frozen=True)
class TensorEntry:
    name: str
    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize


def plan_shards(entries: list[TensorEntry], max_bytes: int) -> list[list[TensorEntry]]:
    """Greedy in order: a new shard starts when the next tensor would overflow the current one; a tensor
    larger than `max_bytes` gets a shard of its own (as transformers does)."""
    shards: list[list[TensorEntry]] = []
    size = 0
    for e in entries:
        if not shards or (shards[-1] and size + e.nbytes > max_bytes):
            shards.append([])
            size = 0
        shards[-1].append(e)
        size += e.nbytes
    return shards


class ShardedWriter:
    """Write `entries` (in their order) into sharded safetensors files plus `model.safetensors.index.json`,
    or into one file named `single_file` without an index (PEFT adapters)."""

    def __init__(self, folder: str | Path, entries: list[TensorEntry], max_bytes: int,
                 single_file: str | None = None):
        names = [e.name for e in entries]
        if len(set(names)) != len(names):
            raise ValueError("duplicate tensor names in the export plan")
        self.folder = Path(folder)
        self.single_file = single_file
        self.shards = [entries] if single_file else plan_shards(entries, max_bytes)
        n = len(self.shards)
        self.files = [single_file] if single_file else [f"model-{k:05d}-of-{n:05d}.safetensors"
                                                        for k in range(1, n + 1)]
        self.current = 0
        self.pending: dict[str, np.ndarray] = {}
        self.total_bytes = sum(e.nbytes for e in entries)

    def add(self, name: str, array: np.ndarray) -> None:
        if self.current >= len(self.shards):
            raise ValueError(f"tensor {name!r} arrives after every planned shard was written")
        expected = {e.name: e for e in self.shards[self.current]}
        if name not in expected:
            raise ValueError(f"tensor {name!r} is not next in the export plan (shard {self.files[self.current]})")
        e = expected[name]
        if tuple(array.shape) != e.shape or np.dtype(array.dtype) != np.dtype(e.dtype):
            raise ValueError(f"tensor {name!r}: got {array.shape} {array.dtype}, planned {e.shape} {e.dtype}")
        self.pending[name] = np.ascontiguousarray(array)
        if len(self.pending) == len(expected):
            path = self.folder / self.files[self.current]
            save_file(self.pending, str(path), metadata=METADATA)
            os.chmod(path, 0o666 & ~current_umask())  # the usual file mode, not a private one
            self.pending = {}
            self.current += 1

    def finish(self) -> dict[str, str]:
        """Check every planned tensor arrived, write the index (sharded layout); returns name -> file."""
        if self.current != len(self.shards):
            missing = [e.name for shard in self.shards[self.current:] for e in shard if e.name not in self.pending]
            raise ValueError(f"export incomplete: {len(missing)} tensors never arrived, e.g. {missing[:3]}")
        weight_map = {e.name: f for shard, f in zip(self.shards, self.files, strict=True) for e in shard}
        if not self.single_file:
            index = {"metadata": {"total_size": self.total_bytes}, "weight_map": weight_map}
            (self.folder / INDEX_NAME).write_text(json.dumps(index, indent=2) + "\n")
        return weight_map
