"""Unrolled layers (`scan_layers=false`) import an HF base, compute what the scanned model computes, and export
the same tensors."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from hf_tiny import hf_logits, padded_batch, save_tiny_hf, tiny_hf_config
from safetensors.numpy import load_file

from r2r_jax.config import LoraConfig, MeshConfig
from r2r_jax.convert.hf_export import source_from_student, write_tensors
from r2r_jax.model.hf_import import import_hf_params, load_hf_model_config
from r2r_jax.model.layout import stack_layers, unstack_layers
from r2r_jax.model.llama import LlamaForRanking
from r2r_jax.parallel.mesh import make_mesh
from r2r_jax.train.student import build_student, join_variables


def _tensors(folder) -> dict[str, np.ndarray]:
    out = {}
    for f in sorted(folder.glob("*.safetensors")):
        out.update(load_file(f))
    return out


def test_unrolled_import_matches_hf_on_an_fsdp_mesh(tmp_path):
    hf_model = save_tiny_hf(tmp_path, tiny_hf_config(hidden=64, vocab=256, layers=3))
    scanned = load_hf_model_config(tmp_path, dtype="float32", param_dtype="float32", remat_policy="none")
    cfg = dataclasses.replace(scanned, scan_layers=False)
    mesh = make_mesh(MeshConfig(data=1, fsdp=8, tensor=1))
    params = import_hf_params(tmp_path, cfg, mesh=mesh)
    assert "layers" not in params["model"] and "layers_2" in params["model"]
    q = params["model"]["layers_1"]["self_attn"]["q_proj"]["kernel"]
    assert q.sharding.spec[0] == "fsdp" and q.shape == (64, 64)
    stacked = import_hf_params(tmp_path, scanned, mesh=mesh)
    for a, b in zip(jax.tree.leaves(stack_layers(params)), jax.tree.leaves(stacked), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    ids, mask = padded_batch(np.random.default_rng(0), cfg.vocab_size, [7, 3], 8, left=True)
    model = LlamaForRanking(cfg)
    hidden, _ = model.apply({"params": params}, ids, mask)
    ours = np.asarray(model.apply({"params": params}, hidden, method=LlamaForRanking.lm_logits))
    ref = hf_logits(hf_model, ids, mask)
    assert np.max(np.abs(ours[mask == 1] - ref[mask == 1])) < 1e-4


def test_unrolled_student_computes_and_exports_what_the_scanned_one_does(tmp_path):
    save_tiny_hf(tmp_path / "base", tiny_hf_config(hidden=64, vocab=256, layers=2))
    scanned = load_hf_model_config(tmp_path / "base", dtype="float32", param_dtype="float32", remat_policy="none")
    unrolled = dataclasses.replace(scanned, scan_layers=False)
    lora = LoraConfig(rank=4, alpha=8.0)
    mesh = make_mesh(MeshConfig(data=1, fsdp=1, tensor=1), jax.devices()[:1])
    key = jax.random.key(0)
    s, s_init = build_student(scanned, lora, mesh, key, import_hf_params(tmp_path / "base", scanned, mesh))
    u, _ = build_student(unrolled, lora, mesh, key, import_hf_params(tmp_path / "base", unrolled, mesh))
    # trained-looking adapters (B is zero at init), the same in both layouts
    noise = jax.tree.map(lambda x: 0.05 * jax.random.normal(jax.random.key(1), x.shape), s_init["lora"])
    s_trainable = {"score": s_init["score"], "lora": jax.tree.map(jnp.add, s_init["lora"], noise)}
    u_trainable = {"score": s_init["score"], "lora": unstack_layers(s_trainable["lora"], 2)}
    ids, mask = padded_batch(np.random.default_rng(1), scanned.vocab_size, [9, 4], 9, left=True)
    outs = []
    for st, trainable in ((s, s_trainable), (u, u_trainable)):
        hidden, _ = st.model.apply(join_variables(st.frozen, trainable), ids, mask)
        outs.append(np.asarray(hidden))
    np.testing.assert_allclose(outs[1], outs[0], rtol=1e-5, atol=1e-5)
    for fmt in ("causal-lm", "peft"):
        for name, cfg, st, trainable in (("s", scanned, s, s_trainable), ("u", unrolled, u, u_trainable)):
            source = source_from_student(cfg, st.frozen, trainable, 8.0, 4)
            (tmp_path / f"{fmt}-{name}").mkdir()
            write_tensors(source, tmp_path / f"{fmt}-{name}", fmt, "float32")
        want, got = _tensors(tmp_path / f"{fmt}-s"), _tensors(tmp_path / f"{fmt}-u")
        assert sorted(got) == sorted(want) and len(want) > 10
        for k in want:
            np.testing.assert_array_equal(got[k], want[k])
