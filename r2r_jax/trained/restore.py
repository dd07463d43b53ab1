"""Restoring a trained student from a training run: the base it names, its LoRA adapters and score head.

What `r2r rerank --checkpoint`, `r2r export` and `r2r check-parity --checkpoint` start from. The run's saved
config rebuilds the exact student (`train.setup.prepare`), the base's fingerprint must match the one the run
was trained on, and the checkpoint's trainable weights replace the fresh ones.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import draccus
from jax.sharding import Mesh

from r2r_jax.checkpoint import Checkpointer, base_fingerprint, check_same_base, read_meta
from r2r_jax.config import TrainConfig
from r2r_jax.train.setup import Prepared, prepare, resolve_model_config


def config_from_meta(meta: dict) -> TrainConfig:
    return draccus.decode(TrainConfig, meta["config"])


def load_trained(checkpoint: str | Path, mesh: Mesh, base_model: str | None = None) -> tuple[Prepared, int]:
    """Rebuild the student a checkpoint was trained from and restore its LoRA + head onto `mesh`.
    `base_model` overrides the recorded base path (its fingerprint must still match)."""
    meta, directory, step = read_meta(checkpoint)
    cfg = config_from_meta(meta)
    if base_model is not None:
        cfg.base_model = base_model
    model_cfg = dataclasses.asdict(resolve_model_config(cfg))
    check_same_base(meta, cfg.base_model, base_fingerprint(cfg.base_model or None, cfg.seed, model_cfg), directory)
    prepared = prepare(cfg, mesh)  # loads the base: only once it is known to be the right one
    ckpt = Checkpointer(directory, keep=cfg.keep_checkpoints, async_save=False)
    try:
        trainable, _ = ckpt.restore_trainable(prepared.state.trainable, step)
    finally:
        ckpt.close()
    prepared.state = prepared.state.replace(trainable=trainable)  # a fresh optimizer state: nothing resumes from here
    return prepared, step
