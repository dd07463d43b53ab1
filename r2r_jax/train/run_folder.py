"""May `r2r train` write into its output folder, and resume what is there? Decided before anything is written.

A run folder is one `r2r train` created (it holds `config.yaml` or `checkpoints/`). Training refuses a folder
that is someone else's (non-empty, neither of those), a folder that is or holds the base model or the tokenizer,
and a resume whose checkpoint was trained with another model shape, LoRA layout or base — each with one line
naming the field, before `config.yaml` is rewritten. While a run trains, its folder is locked: a second run
into it is refused.
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path

from r2r_jax.atomic import LOCK_FILE, folder_lock, overlaps
from r2r_jax.checkpoint import CheckpointError, base_fingerprint, check_same_base, read_meta
from r2r_jax.config import ModelConfig, TrainConfig
from r2r_jax.config_io import ConfigError

# what fixes the shapes of the saved LoRA, head and optimizer state
SHAPE_FIELDS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "head_dim", "tie_word_embeddings", "scan_layers")
LORA_FIELDS = ("rank", "targets", "train")


def run_marker(out: Path) -> bool:
    return (out / "config.yaml").is_file() or (out / "checkpoints").is_dir()


def hold_run_folder(cfg: TrainConfig, is_main: bool) -> contextlib.AbstractContextManager:
    """Process 0 holds `cfg.output_dir` for the whole run (`atomic.folder_lock`): a second `r2r train` into it
    is refused with the holder's PID instead of mixing its checkpoints and logs with this run's. Taken after the
    checks that need no lock, so a folder that is a file, or holds the base or the tokenizer, is never written."""
    _check_place(Path(cfg.output_dir), cfg)
    return folder_lock(cfg.output_dir, "r2r train") if is_main else contextlib.nullcontext()


def _check_place(out: Path, cfg: TrainConfig) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--output-dir {out} is a file, not a folder")
    for flag, source in (("--base-model", cfg.base_model), ("--data.tokenizer", cfg.data.tokenizer)):
        if source and Path(source).exists() and overlaps(out, source):
            raise ConfigError(f"--output-dir {out} overlaps {flag} {source}; choose a folder outside it")


def check_run_folder(cfg: TrainConfig, model_cfg: ModelConfig) -> int | None:
    """Raise ConfigError if training may not use `cfg.output_dir`; return the step a resume starts from
    (None for a fresh run)."""
    out = Path(cfg.output_dir)
    _check_place(out, cfg)
    if out.is_dir() and any(p.name != LOCK_FILE for p in out.iterdir()) and not run_marker(out):
        raise ConfigError(f"--output-dir {out} holds files but is not a training run (no config.yaml or "
                          "checkpoints/); choose a new or empty folder")
    checkpoints = out / "checkpoints"
    if not checkpoints.is_dir() or not any(p.name.isdigit() for p in checkpoints.iterdir()):
        return None
    try:
        meta, _, step = read_meta(checkpoints)
    except CheckpointError as e:
        raise ConfigError(f"cannot resume: {e}") from None
    _compare(meta.get("model", {}), dataclasses.asdict(model_cfg), "", checkpoints)
    _compare(meta.get("config", {}).get("lora", {}), dataclasses.asdict(cfg.lora), "lora.", checkpoints,
             LORA_FIELDS)
    try:
        check_same_base(meta, cfg.base_model, base_fingerprint(cfg.base_model or None, cfg.seed,
                                                               dataclasses.asdict(model_cfg)), checkpoints)
    except CheckpointError as e:
        raise ConfigError(f"{e}; use a fresh output_dir or the same base") from None
    return step


def _compare(saved: dict, now: dict, prefix: str, where: Path, fields: tuple[str, ...] = SHAPE_FIELDS) -> None:
    for name in fields:
        if name in saved and saved[name] != now.get(name):
            raise ConfigError(f"{where}: checkpoint was trained with {prefix}{name} {saved[name]}, config says "
                              f"{now.get(name)}; use a fresh output_dir or the checkpoint's settings")
