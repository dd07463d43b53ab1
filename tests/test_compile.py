"""`r2r compile`: AOT compilation for TPU topologies (libtpu) and GPU estimates on fake CPU devices."""

import json
from pathlib import Path

import numpy as np
import pytest

from r2r_jax.cli import main
from r2r_jax.compile import flops
from r2r_jax.config import TrainConfig
from r2r_jax.config_io import load_config

pytest.importorskip("libtpu", reason="AOT compilation for TPU needs libtpu (pip install libtpu)")

REPO = Path(__file__).resolve().parents[1]
SMALL = """\
model:
  vocab_size: 1024
  hidden_size: 128
  intermediate_size: 256
  num_hidden_layers: 2
  num_attention_heads: 4
  num_key_value_heads: 2
  head_dim: 32
  dtype: bfloat16
  param_dtype: bfloat16
  remat_policy: full
  attention: xla
lora:
  rank: 4
mesh:
  data: 1
  fsdp: -1
data:
  group_size: 4
  max_prompt_len: 96
  max_target_len: 32
  max_comparison_prompt_len: 96
batch_size: 16
"""
EIGHT_B = {  # config file -> (topology, chips)
    "llama3_1_8b_v5p8.yaml": ("v5p:2x2x1", 4),
    "llama3_1_8b_v6e8.yaml": ("v6e:2x4", 8),
    "llama3_1_8b_v5e16.yaml": ("v5e:4x4", 16),
    "llama3_1_8b_h100x8.yaml": ("h100:8", 8),
}


@pytest.fixture(scope="module")
def small_config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("compile") / "small.yaml"
    path.write_text(SMALL)
    return path


def _compile(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["compile", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_multi_host_topology_compiles_from_one_process_and_reports_figures(small_config, tmp_path, capsys):
    """v5e:4x4 is 4 hosts of 4 chips; the compiler's FLOPs agree with the analytic count on the small model."""
    report = tmp_path / "figures.json"
    code, out, err = _compile(capsys, "--config", str(small_config), "--topology", "v5e:4x4", "--json", str(report))
    assert code == 0, err
    figures = json.loads(report.read_text())
    assert figures["chips"] == 16 and figures["hosts"] == 4 and figures["fits"]
    for step in ("train", "score"):
        memory = figures[f"{step}_memory"]
        assert 0 < memory["total"] < memory["hbm"] == 16 * 1024**3
        assert memory["arguments"] > 0
        assert figures[f"{step}_flops"]["agrees"], figures[f"{step}_flops"]
        flop_figures = figures[f"{step}_flops"]
        assert 0 < flop_figures["mfu_bound"] <= 1
        # the bound is the larger of compute and memory traffic, and says which
        assert flop_figures["bytes_per_chip"] > 0
        bounds = {"compute": flop_figures["flop_seconds_bound"], "memory": flop_figures["memory_seconds_bound"]}
        assert flop_figures["step_seconds_bound"] == max(bounds.values())
        assert flop_figures["bound_by"] == max(bounds, key=bounds.get)
    assert figures["train_memory"]["aliased"] > 0 and figures["train_memory"]["temporaries"] > 0  # donated state
    # not only the tool's verdict: the compiler's own count against the analytic count worked out here
    analytic = flops.train_step_flops(load_config(TrainConfig, ["--config", str(small_config)]))
    assert figures["train_flops"]["analytic_executed"] == pytest.approx(analytic.total)
    assert figures["train_flops"]["compiler"] == pytest.approx(analytic.visible_to_xla, rel=0.15)
    for text in ("arguments", "temporaries", "of 16.00 GiB HBM", "compiler, XLA ops", "MFU <=", "step time >=",
                 "HBM traffic per chip", "generation loss: float32 logits", "4 host(s)"):
        assert text in out


def test_oversized_batch_exits_nonzero_with_the_shortfall(small_config, capsys):
    code, out, err = _compile(capsys, "--config", str(small_config), "--topology", "v5e:2x2", "--skip-flops",
                              "--skip-score", "--set", "data.max_prompt_len=4064", "--set", "batch_size=64")
    assert code == 1
    assert "DOES NOT FIT" in err and "short by at least" in err and "GiB" in err


def test_gpu_estimate_on_fake_cpu_devices(small_config, capsys):
    code, out, err = _compile(capsys, "--config", str(small_config), "--topology", "h100:8", "--skip-score",
                              "--skip-flops", "--set", "model.attention=cudnn")
    assert code == 0, err
    assert "ESTIMATE" in out and "of 80.00 GiB HBM" in out and "cannot compile on CPU devices" in out


def test_splash_attention_compiles_for_tpu(tmp_path):
    """The Pallas kernel lowers to Mosaic and compiles inside the sharded train step (mask: causal + segments)."""
    from r2r_jax.compile import aot
    from r2r_jax.parallel.mesh import make_mesh
    from r2r_jax.train import lowering

    path = tmp_path / "splash.yaml"
    path.write_text(SMALL.replace("attention: xla", "attention: splash").replace("max_prompt_len: 96",
                                                                                 "max_prompt_len: 224"))
    cfg = load_config(TrainConfig, ["--config", str(path), "--data.comparisons_per_query=0"])
    target = aot.resolve_target("v5e:2x2")
    mesh = make_mesh(cfg.mesh, target.devices)
    lowered = lowering.lower_train_step(cfg, mesh)
    assert lowered.as_text().count("tpu_custom_call") >= 2  # forward and fused backward kernels
    memory = lowering.memory_of(lowering.compile_lowered(lowered))
    assert 0 < memory.total < target.chip.hbm_bytes


def test_analytic_flops_follow_the_remat_policy():
    cfg = load_config(TrainConfig, ["--config", str(REPO / "configs" / "llama3_1_8b_v5p8.yaml"),
                                    "--model.remat_policy=full"])
    m, d = cfg.model, cfg.data
    full = flops.train_step_flops(cfg)
    params = flops.layer_weights(m) * m.num_hidden_layers
    assert 6.9e9 < params < 7.0e9  # projections of Llama-3.1-8B (embeddings and head apart)
    tokens = cfg.batch_size * (d.group_size * (d.max_prompt_len + d.max_target_len)
                               + d.comparisons_per_query * (d.max_comparison_prompt_len + d.max_target_len))
    down = m.intermediate_size * m.hidden_size * m.num_hidden_layers  # its output is never recomputed
    # forward, input gradient (no weight gradient for the frozen base), recomputation of all but down_proj
    assert full.executed["base"] == pytest.approx((4 * params + 2 * (params - down)) * tokens)
    assert full.model["base"] == pytest.approx(4 * params * tokens)
    cfg.model.remat_policy = "dots_no_batch"
    assert flops.train_step_flops(cfg).executed["base"] == pytest.approx(4 * params * tokens)
    cfg.data.random_negatives = 3  # negatives run their prompts only
    negatives = cfg.batch_size * 3 * d.max_prompt_len
    assert flops.train_step_flops(cfg).executed["base"] == pytest.approx(4 * params * (tokens + negatives))
    assert flops.causal_share(1024, 512) == 0.75


@pytest.mark.parametrize("name", sorted(EIGHT_B))
def test_8b_configs_meet_the_brief(name):
    cfg = load_config(TrainConfig, ["--config", str(REPO / "configs" / name)])
    m, d = cfg.model, cfg.data
    assert (m.hidden_size, m.num_hidden_layers, m.intermediate_size, m.vocab_size) == (4096, 32, 14336, 128256)
    assert cfg.lora.rank == 16 and len(cfg.lora.targets) == 7
    assert d.max_prompt_len + d.max_target_len >= 1024
    assert cfg.batch_size * d.group_size >= 64
    _, chips = EIGHT_B[name]
    assert cfg.mesh.shape(chips)  # the mesh uses exactly the slice's chips
    shards = chips // cfg.mesh.shape(chips)[2]
    assert (cfg.batch_size // cfg.micro_batches) % shards == 0  # each micro-batch splits evenly over the chips


@pytest.fixture(scope="module")
def small_on_v5e(small_config):
    from r2r_jax.compile import aot
    from r2r_jax.parallel.mesh import make_mesh

    cfg = load_config(TrainConfig, ["--config", str(small_config)])
    target = aot.resolve_target("v5e:2x2")
    return cfg, make_mesh(cfg.mesh, target.devices), target


def test_remat_policies_recompute_what_the_analytic_count_says(small_on_v5e):
    """Each policy's compiled FLOPs exceed `none`'s by the recomputation flops._recomputed counts for it.

    Recomputation is per layer, so one compile per policy of the one-layer counting variant (one chip, one
    data shard) shows it; the analytic count is taken for that same variant. (This model's q + o and
    q + k + v products are the same size, so mlp_key_value and mlp_attention_out recompute alike here.)"""
    from jax.sharding import Mesh

    from r2r_jax.compile import aot
    from r2r_jax.parallel.rules import MESH_AXES
    from r2r_jax.train.lowering import lower_train_step
    from r2r_jax.train.remat_choice import with_policy

    cfg, mesh, target = small_on_v5e
    one_chip = Mesh(np.asarray(target.devices[:1]).reshape(1, 1, 1), MESH_AXES)
    measured, analytic = {}, {}
    for policy in ("full", "mlp_key_value", "mlp_attention_out", "none"):
        variant = aot._counting_variant(with_policy(cfg, policy, 1), 1, cfg.batch_size // mesh.shape["fsdp"])
        measured[policy] = aot.cost_of(lower_train_step(variant, one_chip).compile()).flops
        analytic[policy] = flops.train_step_flops(variant).visible_to_xla
    for policy in ("full", "mlp_key_value", "mlp_attention_out"):
        recomputed = measured[policy] - measured["none"]
        assert recomputed > 0
        assert recomputed == pytest.approx(analytic[policy] - analytic["none"], rel=0.12), policy
    assert measured["full"] > measured["mlp_key_value"]


def test_compile_reports_the_auto_choice(small_config, tmp_path, capsys):
    report = tmp_path / "figures.json"
    code, out, err = _compile(capsys, "--config", str(small_config), "--topology", "v5e:2x2", "--skip-flops",
                              "--skip-score", "--set", "model.remat_policy=auto", "--json", str(report))
    assert code == 0, err
    remat = json.loads(report.read_text())["remat"]
    # the first policy fits the chip: one compile, chosen, and the program compiled for it is the one reported
    assert (remat["policy"], remat["micro_batches"]) == ("none", 1) and len(remat["attempts"]) == 1
    assert remat["attempts"][0]["fits"] and remat["attempts"][0]["total"] <= remat["budget"]
    assert "chosen: remat none, micro_batches 1" in out
