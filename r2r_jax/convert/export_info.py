"""What every side file of an export draws from: the format, dtype, training config, special ids and provenance."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from r2r_jax.config import ModelConfig, TrainConfig
from r2r_jax.data.templates import SpecialIds


@dataclass
class ExportInfo:
    """Provenance and prompt facts every side file draws from."""

    fmt: str
    dtype: str
    train: TrainConfig
    model: ModelConfig
    special: SpecialIds
    base_model: str  # absolute path, "" for a random-init base
    base_hash: str
    checkpoint: str
    step: int

    def eos_ids(self) -> list[int]:
        return [self.special.eot]


def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")
