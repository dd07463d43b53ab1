"""KV-cache decoding against transformers' generate(do_sample=False), token for token."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from hf_tiny import padded_batch, save_tiny_hf, tiny_hf_config

from r2r_jax.model import attention as attention_module
from r2r_jax.model.generate import make_generate
from r2r_jax.model.hf_import import import_hf_params, load_hf_model_config
from r2r_jax.model.llama import LlamaForRanking

EOS = 2
PAD = 0


@pytest.mark.parametrize("scan_layers,attention,block", [(True, "xla", 256), (False, "xla", 256), (True, "loop", 4),
                                                       (False, "loop", 4)])
def test_greedy_equals_transformers_generate(tmp_path, monkeypatch, scan_layers, attention, block):
    """Both layer layouts update the cache in place; with `loop` and a small causal block the 9-token prompts
    are attended block by block (what a long listwise prompt gets on a CPU)."""
    monkeypatch.setattr(attention_module, "CAUSAL_BLOCK", block)
    hf_model = save_tiny_hf(tmp_path, tiny_hf_config(kv_heads=2))
    cfg = load_hf_model_config(tmp_path, dtype="float32", param_dtype="float32", remat_policy="none",
                               scan_layers=scan_layers, attention=attention)
    params = import_hf_params(tmp_path, cfg)
    ids, mask = padded_batch(np.random.default_rng(0), cfg.vocab_size, [9, 5, 2], 9, left=True)
    new = 12
    gen = make_generate(LlamaForRanking(cfg), new, [EOS], PAD)
    tokens, lengths = gen({"params": params}, jnp.asarray(ids), jnp.asarray(mask), jax.random.key(0))
    with torch.no_grad():
        ref = hf_model.generate(
            input_ids=torch.from_numpy(ids).long(), attention_mask=torch.from_numpy(mask).long(),
            max_new_tokens=new, do_sample=False, eos_token_id=EOS, pad_token_id=PAD,
        )[:, ids.shape[1]:].numpy()
    tokens = np.asarray(tokens)
    for row in range(len(ids)):
        n = int(lengths[row])
        assert n >= 1
        ref_row = list(ref[row])
        ref_len = ref_row.index(EOS) + 1 if EOS in ref_row else len(ref_row)
        assert list(tokens[row, :n]) == ref_row[:ref_len]
        assert all(t == PAD for t in tokens[row, n:])


def test_eos_stops_rows_and_sampling_is_seeded(tmp_path):
    save_tiny_hf(tmp_path, tiny_hf_config())
    cfg = load_hf_model_config(tmp_path, dtype="float32", param_dtype="float32", remat_policy="none")
    params = import_hf_params(tmp_path, cfg)
    ids, mask = padded_batch(np.random.default_rng(1), cfg.vocab_size, [6, 4], 6, left=True)
    model = LlamaForRanking(cfg)
    greedy = make_generate(model, 8, [EOS], PAD)
    tokens, _ = greedy({"params": params}, jnp.asarray(ids), jnp.asarray(mask), jax.random.key(0))
    # make the first greedy token of row 0 an EOS: that row must stop after one token
    first = int(tokens[0, 0])
    stop = make_generate(model, 8, [first], PAD)
    tokens2, lengths2 = stop({"params": params}, jnp.asarray(ids), jnp.asarray(mask), jax.random.key(0))
    assert int(lengths2[0]) == 1 and np.all(np.asarray(tokens2[0, 1:]) == PAD)
    # min_new_tokens=1 bars the stop ids from the first position: the same row now says something first
    barred = make_generate(model, 8, [first], PAD, min_new_tokens=1)
    tokens3, _ = barred({"params": params}, jnp.asarray(ids), jnp.asarray(mask), jax.random.key(0))
    assert int(tokens3[0, 0]) != first
    sample = make_generate(model, 8, [EOS], PAD)
    a = sample({"params": params}, jnp.asarray(ids), jnp.asarray(mask), jax.random.key(5), 1.0)[0]
    b = sample({"params": params}, jnp.asarray(ids), jnp.asarray(mask), jax.random.key(5), 1.0)[0]
    c = sample({"params": params}, jnp.asarray(ids), jnp.asarray(mask), jax.random.key(6), 1.0)[0]
    assert np.array_equal(a, b) and not np.array_equal(a, c)

