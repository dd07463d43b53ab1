"""The Flax LLaMA against transformers' LlamaForCausalLM on the same random tiny weights."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hf_tiny import hf_logits, padded_batch, save_tiny_hf, tiny_hf_config

from r2r_jax.model.hf_import import import_hf_params, load_hf_model_config
from r2r_jax.model.llama import LlamaForRanking


def jax_logits(cfg, params, ids, mask, positions=None):
    model = LlamaForRanking(cfg)

    def fwd(p, i, m, pos):
        hidden, _ = model.apply({"params": p}, i, m, pos)
        return model.apply({"params": p}, hidden, method=LlamaForRanking.lm_logits)

    return np.asarray(jax.jit(fwd)(params, jnp.asarray(ids), jnp.asarray(mask), positions))


def _f32(folder, **overrides):
    return load_hf_model_config(folder, dtype="float32", param_dtype="float32", remat_policy="none", **overrides)


@pytest.mark.parametrize("kv_heads", [1, 2, 4])
@pytest.mark.parametrize("llama3_rope", [True, False])
@pytest.mark.parametrize("tie", [False, True])
def test_float32_logits_match_transformers(tmp_path, kv_heads, llama3_rope, tie):
    hf_model = save_tiny_hf(tmp_path, tiny_hf_config(kv_heads=kv_heads, llama3_rope=llama3_rope, tie=tie))
    cfg = _f32(tmp_path)
    assert cfg.rope_theta == 500000.0 and (cfg.rope_scaling is not None) == llama3_rope
    params = import_hf_params(tmp_path, cfg)
    rng = np.random.default_rng(kv_heads)
    for left in (True, False):
        ids, mask = padded_batch(rng, cfg.vocab_size, [11, 7, 3], 12, left=left)
        ours, ref = jax_logits(cfg, params, ids, mask), hf_logits(hf_model, ids, mask)
        real = mask.astype(bool)
        assert np.max(np.abs(ours[real] - ref[real])) < 1e-4


def test_llama3_scaling_and_theta_matter_at_long_positions(tmp_path):
    """Far positions separate scaled from unscaled RoPE; both must still match transformers."""
    import torch

    hf_model = save_tiny_hf(tmp_path, tiny_hf_config(llama3_rope=True))
    cfg = _f32(tmp_path)
    params = import_hf_params(tmp_path, cfg)
    rng = np.random.default_rng(0)
    ids, mask = padded_batch(rng, cfg.vocab_size, [16, 16], 16, left=False)
    positions = np.tile(np.arange(20000, 20016), (2, 1))
    ours = jax_logits(cfg, params, ids, mask, jnp.asarray(positions))
    with torch.no_grad():
        ref = hf_model(input_ids=torch.from_numpy(ids).long(), position_ids=torch.from_numpy(positions).long())
    assert np.max(np.abs(ours - ref.logits.numpy())) < 1e-4
    # the checks above could not pass with RoPE scaling or theta ignored: both move logits by >10x the tolerance
    unscaled = cfg.__class__(**{**cfg.__dict__, "rope_scaling": None})
    moved = float(np.max(np.abs(jax_logits(unscaled, params, ids, mask, jnp.asarray(positions)) - ours)))
    assert moved > 1e-3, moved
    low_theta = cfg.__class__(**{**cfg.__dict__, "rope_theta": 10000.0})
    moved = float(np.max(np.abs(jax_logits(low_theta, params, ids, mask, jnp.asarray(positions)) - ours)))
    assert moved > 1e-3, moved


def test_bfloat16_within_stated_bound(tmp_path):
    """bf16 weights and compute: logits within 0.15 absolute of float32 transformers (logit scale ~3)."""
    hf_model = save_tiny_hf(tmp_path, tiny_hf_config())
    cfg = load_hf_model_config(tmp_path, dtype="bfloat16", param_dtype="bfloat16", remat_policy="none")
    params = import_hf_params(tmp_path, cfg)
    ids, mask = padded_batch(np.random.default_rng(1), cfg.vocab_size, [12, 5], 12, left=True)
    ours = jax_logits(cfg, params, ids, mask).astype(np.float32)
    ref = hf_logits(hf_model, ids, mask)
    real = mask.astype(bool)
    err = np.max(np.abs(ours[real] - ref[real]))
    assert err < 0.15, err
    assert np.std(ref[real]) > 0.5  # the bound is meaningful against the logits' spread


def test_scan_and_unrolled_layers_agree(tmp_path):
    save_tiny_hf(tmp_path, tiny_hf_config(layers=3))
    cfg = _f32(tmp_path)
    params = import_hf_params(tmp_path, cfg)
    unrolled_cfg = cfg.__class__(**{**cfg.__dict__, "scan_layers": False})
    layers = params["model"]["layers"]
    unrolled = {k: v for k, v in params.items()}
    unrolled["model"] = {k: v for k, v in params["model"].items() if k != "layers"}
    for i in range(3):
        unrolled["model"][f"layers_{i}"] = jax.tree.map(lambda x, i=i: x[i], layers)
    ids, mask = padded_batch(np.random.default_rng(2), cfg.vocab_size, [9, 4], 9, left=True)
    a = jax_logits(cfg, params, ids, mask)
    b = jax_logits(unrolled_cfg, unrolled, ids, mask)
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_remat_policies_do_not_change_logits(tmp_path):
    save_tiny_hf(tmp_path, tiny_hf_config())
    cfg = _f32(tmp_path)
    params = import_hf_params(tmp_path, cfg)
    ids, mask = padded_batch(np.random.default_rng(3), cfg.vocab_size, [6, 8], 8, left=False)
    base = jax_logits(cfg, params, ids, mask)
    for policy in ("full", "dots", "dots_no_batch"):
        other = cfg.__class__(**{**cfg.__dict__, "remat_policy": policy})
        np.testing.assert_allclose(jax_logits(other, params, ids, mask), base, atol=1e-6)
