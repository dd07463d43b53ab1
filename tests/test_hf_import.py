"""Sharded import from safetensors, host-memory bound, error messages and the 8B parameter count."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hf_tiny import hf_logits, padded_batch, save_tiny_hf, tiny_hf_config

from r2r_jax.config import MeshConfig, TrainConfig
from r2r_jax.config_io import load_config
from r2r_jax.model.hf_import import import_hf_params, load_hf_model_config
from r2r_jax.model.hf_mapping import ConversionError
from r2r_jax.model.llama import LlamaForRanking
from r2r_jax.parallel.mesh import make_mesh

REPO = Path(__file__).resolve().parents[1]


def test_the_8b_config_has_the_published_parameter_count():
    cfg = load_config(TrainConfig, ["--config", str(REPO / "configs" / "llama3_1_8b.yaml")]).model
    ids = jnp.zeros((1, 1), jnp.int32)
    shapes = jax.eval_shape(lambda: LlamaForRanking(cfg).init(jax.random.key(0), ids, ids,
                                                              method=LlamaForRanking.init_all))["params"]
    shapes = {k: v for k, v in shapes.items() if k != "score"}
    total = sum(int(np.prod(x.value.shape)) for x in jax.tree.leaves(shapes, is_leaf=lambda x: hasattr(x, "names")))
    assert total == 8_030_261_248


def test_sharded_checkpoint_onto_fsdp_mesh(tmp_path):
    hf_model = save_tiny_hf(tmp_path, tiny_hf_config(hidden=64, vocab=256), max_shard_size="40KB")
    assert len(list(tmp_path.glob("model-*.safetensors"))) > 2
    assert (tmp_path / "model.safetensors.index.json").is_file()
    cfg = load_hf_model_config(tmp_path, dtype="float32", param_dtype="float32", remat_policy="none")
    mesh = make_mesh(MeshConfig(data=1, fsdp=8, tensor=1))
    params = import_hf_params(tmp_path, cfg, mesh=mesh)
    q = params["model"]["layers"]["self_attn"]["q_proj"]["kernel"]
    assert q.sharding.spec[1] == "fsdp"  # (layers, embed, heads): embed over fsdp
    assert len(q.addressable_shards) == 8 and q.addressable_shards[0].data.shape == (2, 8, 64)
    emb = params["model"]["embed_tokens"]["embedding"]
    assert emb.sharding.spec[1] == "fsdp"
    ids, mask = padded_batch(np.random.default_rng(0), cfg.vocab_size, [7, 3], 8, left=False)
    model = LlamaForRanking(cfg)

    @jax.jit
    def fwd(p, i, m):
        hidden, _ = model.apply({"params": p}, i, m)
        return model.apply({"params": p}, hidden, method=LlamaForRanking.lm_logits)

    ours = np.asarray(fwd(params, ids, mask))
    ref = hf_logits(hf_model, ids, mask)
    assert np.max(np.abs(ours[mask == 1] - ref[mask == 1])) < 1e-4


PEAK_SCRIPT = textwrap.dedent("""
    import os, sys, threading, time
    os.environ["JAX_PLATFORMS"] = "cpu"
    import jax
    from r2r_jax.model.hf_import import import_hf_params, load_hf_model_config

    def anon_kib():  # private memory only: mmap'd file pages are cache, not the importer's copies
        for line in open("/proc/self/status"):
            if line.startswith("RssAnon:"):
                return int(line.split()[1])

    cfg = load_hf_model_config(sys.argv[1], dtype="float32", param_dtype="float32")
    jax.numpy.zeros(1).block_until_ready()
    before, peak, running = anon_kib(), [0], [True]

    def sample():
        while running[0]:
            peak[0] = max(peak[0], anon_kib())
            time.sleep(0.002)

    thread = threading.Thread(target=sample)
    thread.start()
    params = import_hf_params(sys.argv[1], cfg)
    jax.block_until_ready(params)
    running[0] = False
    thread.join()
    print(before * 1024, peak[0] * 1024)
""")


def test_import_peak_host_memory_stays_near_one_tensor(tmp_path):
    """The imported arrays live in host memory here (the CPU is the device), so peak RSS must grow by
    the model's size plus about one stacked tensor — not twice the model, as reading everything first would."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=32000, hidden_size=512, intermediate_size=1536, num_hidden_layers=12,
                      num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=4096)
    model = LlamaForCausalLM(cfg).float()
    model.save_pretrained(tmp_path, max_shard_size="60MB")
    size = sum(p.numel() * 4 for p in model.parameters())
    largest = max(p.numel() * 4 for p in model.parameters())
    del model
    out = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, str(tmp_path)], capture_output=True, text=True,
                         check=True).stdout.split()
    before, after = int(out[0]), int(out[1])
    growth = after - before
    # the params themselves must be resident; the reader may add about one tensor (plus its copy) on top
    print(f"import RSS growth {growth / 2**20:.0f} MiB for a {size / 2**20:.0f} MiB model")
    assert growth < size + 2 * largest, (growth / 2**20, size / 2**20, largest / 2**20)


def test_corrupt_and_incomplete_folders_give_named_errors(tmp_path):
    save_tiny_hf(tmp_path, tiny_hf_config(), max_shard_size="40KB")
    cfg = load_hf_model_config(tmp_path, dtype="float32", param_dtype="float32")
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    # a wrong shape
    shard = sorted(tmp_path.glob("model-*.safetensors"))[0]
    # a missing tensor
    del index["weight_map"]["model.layers.1.mlp.up_proj.weight"]
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(ConversionError, match="model.layers.1.mlp.up_proj.weight"):
        import_hf_params(tmp_path, cfg)
    # a truncated shard
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    with pytest.raises(ConversionError, match=shard.name):
        import_hf_params(tmp_path, cfg)
    # a missing shard file
    shard.unlink()
    with pytest.raises(ConversionError, match="missing"):
        import_hf_params(tmp_path, cfg)


def test_wrong_shape_and_unsupported_config(tmp_path):
    save_tiny_hf(tmp_path, tiny_hf_config())
    cfg = load_hf_model_config(tmp_path, dtype="float32", param_dtype="float32")
    wrong = cfg.__class__(**{**cfg.__dict__, "intermediate_size": cfg.intermediate_size + 8})
    with pytest.raises(ConversionError, match=r"mlp\.gate_proj\.weight.*shape"):
        import_hf_params(tmp_path, wrong)
    conf = json.loads((tmp_path / "config.json").read_text())
    conf["rope_parameters"] = {"rope_type": "yarn", "factor": 4.0, "rope_theta": 10000.0}
    (tmp_path / "config.json").write_text(json.dumps(conf))
    with pytest.raises(ConversionError, match="yarn"):
        load_hf_model_config(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ConversionError, match="config.json"):
        load_hf_model_config(tmp_path)
