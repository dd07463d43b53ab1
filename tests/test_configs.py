"""Every shipped config loads, validates, and takes dotted overrides on top of the file."""

import dataclasses
from pathlib import Path

import pytest

from r2r_jax.config import TrainConfig
from r2r_jax.config_io import ConfigError, load_config

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_config_loads(path):
    cfg = load_config(TrainConfig, ["--config", str(path)])
    assert cfg.steps >= 1 and cfg.data.group_size >= 1


def test_overrides_of_the_8b_file_keep_the_rest():
    """The file is the one statement of Llama-3.1-8B's shape (tests/test_hf_import.py counts its parameters)."""
    path = Path(__file__).resolve().parents[1] / "configs" / "llama3_1_8b.yaml"
    cfg = load_config(TrainConfig, ["--config", str(path), "--model.num_hidden_layers=2", "--lora.rank=4"])
    full = load_config(TrainConfig, ["--config", str(path)])
    assert cfg.model.num_hidden_layers == 2 and full.model.num_hidden_layers == 32
    assert cfg.lora.rank == 4 and full.lora.rank != 4 and cfg.lora.alpha == full.lora.alpha == 32.0
    assert dataclasses.replace(cfg.model, num_hidden_layers=32) == full.model
    assert dataclasses.replace(cfg, model=full.model, lora=full.lora) == full
    assert full.data.max_prompt_len + full.data.max_target_len >= 1024
    assert full.batch_size * full.data.group_size >= 64


def test_bad_values_are_named():
    with pytest.raises(ConfigError, match="micro_batches"):
        load_config(TrainConfig, ["--batch_size=6", "--micro_batches=4"])
    with pytest.raises(ConfigError, match="num_key_value_heads"):
        load_config(TrainConfig, ["--model.num_attention_heads=4", "--model.num_key_value_heads=3"])
    with pytest.raises(ConfigError, match="lora.targets"):
        load_config(TrainConfig, ["--lora.targets=[q_proj,nope]"])
    with pytest.raises(ConfigError, match="model.hidden_size"):
        load_config(TrainConfig, ["--model.hidden_size=wide"])
    with pytest.raises(ConfigError, match="no such file"):
        load_config(TrainConfig, ["--config", "/nonexistent.yaml"])


PLATFORM = [p for p in CONFIGS if p.name.startswith("llama3_1_8b_")]


@pytest.mark.parametrize("path", PLATFORM, ids=[p.name for p in PLATFORM])
def test_platform_configs_derive_from_the_8b_base(path):
    """A platform file includes llama3_1_8b.yaml and changes only placement, remat and paths: everything
    that defines the model, the adapters, the loss and the data shapes is the base's."""
    base = load_config(TrainConfig, ["--config", str(path.parent / "llama3_1_8b.yaml")])
    cfg = load_config(TrainConfig, ["--config", str(path)])
    assert path.read_text().count("\ninclude: llama3_1_8b.yaml\n") == 1
    assert cfg.lora == base.lora and cfg.loss == base.loss and cfg.optim == base.optim
    placement = {"attention": base.model.attention, "remat_policy": base.model.remat_policy}
    assert {**cfg.model.__dict__, **placement} == base.model.__dict__
    kept = ("group_size", "max_prompt_len", "max_target_len", "comparisons_per_query", "max_comparison_prompt_len")
    assert all(getattr(cfg.data, k) == getattr(base.data, k) for k in kept)
    assert cfg.mesh.fsdp > 1 and cfg.model.attention in ("splash", "cudnn")


def test_include_merges_mapping_by_mapping_and_names_bad_includes(tmp_path):
    (tmp_path / "base.yaml").write_text("steps: 7\nlora:\n  rank: 4\n  alpha: 8.0\ndata:\n  group_size: 3\n")
    (tmp_path / "child.yaml").write_text("include: base.yaml\nlora:\n  rank: 2\n")
    cfg = load_config(TrainConfig, ["--config", str(tmp_path / "child.yaml"), "--data.group_size=5"])
    assert (cfg.steps, cfg.lora.rank, cfg.lora.alpha, cfg.data.group_size) == (7, 2, 8.0, 5)
    (tmp_path / "loop.yaml").write_text("include: loop2.yaml\n")
    (tmp_path / "loop2.yaml").write_text("include: loop.yaml\nsteps: 3\n")
    with pytest.raises(ConfigError, match="includes itself"):
        load_config(TrainConfig, ["--config", str(tmp_path / "loop.yaml")])
    (tmp_path / "orphan.yaml").write_text("include: missing.yaml\n")
    with pytest.raises(ConfigError, match="missing.yaml: no such file"):
        load_config(TrainConfig, ["--config", str(tmp_path / "orphan.yaml")])


def test_load_config_keeps_its_public_spelling():
    """Users write `from r2r_jax.config import TrainConfig, load_config`; the loader lives in config_io."""
    from r2r_jax import config

    assert config.load_config is load_config and config.ConfigError is ConfigError
