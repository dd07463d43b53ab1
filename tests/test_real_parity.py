"""check-parity's rule on a real model: SmolLM2-135M imported correctly passes, imported wrongly fails.

A wrong import is simulated by a copy of the folder with one thing changed (config edits, or key/value
heads permuted in a small override safetensors named by an index; every other file is a symlink): the
JAX side imports the copy, transformers keeps computing the original, exactly as if the importer had
misread the folder. transformers' float32/float64 reference is computed once for the module; short inputs
(three texts of up to 35 tokens, one random batch) keep it to about a minute on two cores."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import save_file

from r2r_jax.convert import real_parity as rp
from r2r_jax.model.hf_import import load_hf_model_config


@pytest.fixture(scope="module")
def smollm2_reference(smollm2_base) -> list[rp.Reference]:
    cfg = load_hf_model_config(smollm2_base)
    return rp.hf_reference(smollm2_base, rp.parity_inputs(smollm2_base, cfg.vocab_size, texts=3, batches=1))


def _copy(base: Path, dst: Path, config: dict, overrides: dict[str, np.ndarray] | None = None) -> Path:
    """`base` as symlinks, with `config` as config.json and `overrides` replacing those tensors."""
    dst.mkdir()
    for f in base.iterdir():
        if f.name != "config.json":
            os.symlink(f.resolve(), dst / f.name)
    (dst / "config.json").write_text(json.dumps(config))
    if overrides:
        save_file(overrides, str(dst / "override.safetensors"), metadata={"format": "pt"})
        with safe_open(str(base / "model.safetensors"), framework="numpy") as f:
            weight_map = dict.fromkeys(f.keys(), "model.safetensors")
        weight_map.update(dict.fromkeys(overrides, "override.safetensors"))
        (dst / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return dst


def _rotated_kv_heads(base: Path, config: dict) -> dict[str, np.ndarray]:
    """k_proj and v_proj of every layer with their KV-head row blocks rotated by one (0,1,2 -> 2,0,1):
    each group of query heads attends with another group's keys and values."""
    kv, head_dim = config["num_key_value_heads"], config["head_dim"]
    out = {}
    with safe_open(str(base / "model.safetensors"), framework="numpy") as f:
        for name in f.keys():
            if name.endswith(("self_attn.k_proj.weight", "self_attn.v_proj.weight")):
                w = f.get_tensor(name)
                out[name] = np.ascontiguousarray(np.roll(w.reshape(kv, head_dim, -1), 1, axis=0).reshape(w.shape))
    assert len(out) == 2 * config["num_hidden_layers"]
    return out


def _kinds(rows: list[rp.KindReport]) -> dict[str, rp.KindReport]:
    return {r.kind: r for r in rows}


def test_smollm2_import_passes(smollm2_base, smollm2_reference, capsys):
    rows = _kinds(rp.compare(smollm2_reference, rp.jax_logits_fn(smollm2_base)))
    assert rp.report(list(rows.values()), write=print) == 0
    out = capsys.readouterr().out
    print(out)
    assert "OK: every input kind within" in out
    assert set(rows) == {"text-left", "text-right", "random-right"}
    assert rows["text-left"].tokens == rows["text-right"].tokens > 30  # same texts, both paddings
    for r in rows.values():
        # float32 over 30 layers: ~1e-4 on logits up to ~40, both implementations; JAX within the rule's factor
        # of torch (a correct import measures 1.5-2.7 depending on the CPU's float32 sums; a wrong one 130 and up)
        assert 1e-6 < r.hf32_error < 1e-3 and 1e-6 < r.jax_error < 1e-3
        assert r.ratio < rp.FACTOR and r.max_abs_logit > 10
        assert f"{r.kind}: tokens={r.tokens} " in out


def _rope_theta_off(cfg: dict) -> None:
    cfg["rope_parameters"]["rope_theta"] *= 1.01


WRONG = {
    "rope_theta 1% off": _rope_theta_off,
    "rms_norm_eps 1e-2": lambda cfg: cfg.update(rms_norm_eps=1e-2),
    "kv heads rotated": None,  # weights, not config: _rotated_kv_heads
}


@pytest.mark.parametrize("wrong", list(WRONG))
def test_wrong_import_fails(smollm2_base, smollm2_reference, tmp_path, capsys, wrong):
    config = json.loads((smollm2_base / "config.json").read_text())
    assert "rope_theta" not in config  # transformers 5 keeps it in rope_parameters only: edit that
    overrides = None
    if WRONG[wrong] is None:
        overrides = _rotated_kv_heads(smollm2_base, config)
    else:
        WRONG[wrong](config)
    folder = _copy(smollm2_base, tmp_path / "wrong", config, overrides)
    rows = rp.compare(smollm2_reference, rp.jax_logits_fn(folder))
    assert rp.report(rows, write=print) == 1
    out = capsys.readouterr().out
    print(wrong, out, sep="\n")
    assert out.count(" FAIL") == len(rows) and "FAIL: " in out
    # every kind, and by far: the rule is not balanced on the edge of float32 noise
    assert all(r.ratio > 20 * rp.FACTOR for r in rows)
