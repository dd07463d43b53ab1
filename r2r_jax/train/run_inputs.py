"""What a run reads before it trains: the tokenizer, checked against the templates and the model, and the
records as a deterministic loader over their tokenized store."""

from __future__ import annotations

import json
from pathlib import Path

import jax

from r2r_jax.config import DataConfig, ModelConfig, TrainConfig
from r2r_jax.config_io import ConfigError
from r2r_jax.data.pipeline import TeacherLoader
from r2r_jax.data.record_store import open_store
from r2r_jax.data.records import RecordError
from r2r_jax.data.templates import check_template, load_tokenizer, template_fit_problem


def checked_tokenizer(data: DataConfig, model_cfg: ModelConfig):
    """The run's tokenizer, refused before the records or the model load when a template spells out BOS,
    a prompt limit is below its template's own length, or the model's vocabulary is smaller."""
    try:
        tokenizer = load_tokenizer(data.tokenizer)
    except FileNotFoundError as e:
        raise ConfigError(f"data.tokenizer: {e}") from None
    checks = [("prompt_template", "max_prompt_len", False)]
    if data.comparisons_per_query:
        checks.append(("comparison_template", "max_comparison_prompt_len", True))
    for template, limit, comparison in checks:
        fields = ("query", "passages") if comparison else ("query", "passage")
        try:
            check_template(getattr(data, template), fields, tokenizer)
        except ValueError as e:
            raise ConfigError(f"data.{template}: {e}") from None
        problem = template_fit_problem(tokenizer, getattr(data, template), getattr(data, limit), comparison)
        if problem:
            raise ConfigError(f"data.{limit}={getattr(data, limit)}: {problem}")
    if len(tokenizer) > model_cfg.vocab_size:
        raise ConfigError(f"data.tokenizer {data.tokenizer} has {len(tokenizer)} tokens but the model's "
                          f"vocabulary is {model_cfg.vocab_size}; use the base's tokenizer or a larger vocab_size")
    return tokenizer


def open_loader(cfg: TrainConfig, tokenizer) -> TeacherLoader:
    """This process's loader over the run's records, validated and tokenized once into a memory-mapped store
    (cached by source, config and tokenizer)."""
    store = open_store(cfg.data.train_path, tokenizer, cfg.data.tokenizer, cfg.data, cfg.data.cache_dir or None)
    if not len(store):
        raise RecordError("holds no records (the file is empty)", path=cfg.data.train_path)
    return TeacherLoader.from_tokenized(store, tokenizer, cfg.data, global_batch_size=cfg.batch_size,
                                        process_index=jax.process_index(), process_count=jax.process_count())


def truncate_log(path: Path, step: int) -> None:
    """After a resume, drop log lines written after the restored checkpoint (they will be rewritten)."""
    if not path.is_file():
        return
    kept = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
    path.write_text("".join(line + "\n" for line in kept))
