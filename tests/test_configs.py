"""Every shipped config loads, validates, and takes dotted overrides on top of the file."""

from pathlib import Path

import pytest

from r2r_jax.config import ConfigError, TrainConfig, llama3_1_8b, load_config

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_config_loads(path):
    cfg = load_config(TrainConfig, ["--config", str(path)])
    assert cfg.steps >= 1 and cfg.data.group_size >= 1


def test_8b_file_matches_the_preset_and_overrides_keep_the_rest():
    path = Path(__file__).resolve().parents[1] / "configs" / "llama3_1_8b.yaml"
    cfg = load_config(TrainConfig, ["--config", str(path), "--model.num_hidden_layers=2", "--lora.rank=4"])
    preset = llama3_1_8b()
    assert cfg.model.hidden_size == preset.hidden_size and cfg.model.num_hidden_layers == 2
    assert cfg.lora.rank == 4 and cfg.lora.alpha == 32.0
    full = load_config(TrainConfig, ["--config", str(path)])
    assert full.model == preset.__class__(**{**preset.__dict__, "remat_policy": full.model.remat_policy})
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
