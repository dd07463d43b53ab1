"""From a config (or a checkpoint's metadata) to a ready student: base weights, LoRA, head, optimizer."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import jax
from jax.sharding import Mesh

from r2r_jax.checkpoint import base_fingerprint
from r2r_jax.config import ModelConfig, TrainConfig
from r2r_jax.config_io import ConfigError, to_dict
from r2r_jax.data.templates import encode_texts, load_tokenizer
from r2r_jax.model.hf_import import import_hf_params, load_hf_model_config
from r2r_jax.train.step import TrainState, init_train_state, learning_rate_schedule, make_optimizer
from r2r_jax.train.student import Student, build_student, init_score_from_lm_head

# numerics and compilation choices a run may set on top of an HF base's shape
_RUNTIME_FIELDS = ("dtype", "param_dtype", "scan_layers", "remat_policy", "attention")


def resolve_model_config(cfg: TrainConfig) -> ModelConfig:
    """The model's shape comes from the HF base when there is one; numerics from the run's config."""
    if not cfg.base_model:
        return cfg.model
    return load_hf_model_config(cfg.base_model, **{f: getattr(cfg.model, f) for f in _RUNTIME_FIELDS})


def score_token_ids(cfg: TrainConfig) -> tuple[int, int]:
    """The ids of `score_init_tokens` ([positive, negative]) in the run's tokenizer; each must be one token."""
    if not cfg.data.tokenizer:
        raise ConfigError("score_init_tokens needs data.tokenizer")
    encoded = encode_texts(load_tokenizer(cfg.data.tokenizer), cfg.score_init_tokens, add_special_tokens=False)
    ids = []
    for text, enc in zip(cfg.score_init_tokens, encoded, strict=True):
        if len(enc) != 1:
            raise ConfigError(f"score_init_tokens: {text!r} is {len(enc)} tokens in {cfg.data.tokenizer}, not one")
        ids.append(enc[0])
    return ids[0], ids[1]


@dataclass
class Prepared:
    cfg: TrainConfig
    model_cfg: ModelConfig
    student: Student
    optimizer: object
    schedule: object
    state: TrainState
    base_hash: str

    def meta(self) -> dict:
        return {
            "base_model": str(Path(self.cfg.base_model).absolute()) if self.cfg.base_model else "",
            "base_hash": self.base_hash,
            "model": dataclasses.asdict(self.model_cfg),
            "config": to_dict(self.cfg),
        }


def prepare(cfg: TrainConfig, mesh: Mesh) -> Prepared:
    model_cfg = resolve_model_config(cfg)
    base_params = None
    if cfg.base_model:
        base_params = import_hf_params(cfg.base_model, model_cfg, mesh=mesh, with_score=None)
    key = jax.random.key(cfg.seed)
    student, trainable = build_student(model_cfg, cfg.lora, mesh, key, base_params=base_params)
    if cfg.score_init_tokens:
        trainable = init_score_from_lm_head(student, trainable, model_cfg, *score_token_ids(cfg))
    optimizer = make_optimizer(cfg.optim, cfg.steps)
    state = init_train_state(trainable, optimizer, student.trainable_shardings)
    base_hash = base_fingerprint(cfg.base_model or None, cfg.seed, dataclasses.asdict(model_cfg))
    return Prepared(cfg, model_cfg, student, optimizer, learning_rate_schedule(cfg.optim, cfg.steps), state,
                    base_hash)
