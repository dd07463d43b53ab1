"""Every benchmark script still runs end to end (--quick / --dry-run on the tiny preset). No timing assertions:
the figures themselves live in docs/benchmarks.md. What is checked is what a broken script would get wrong:
the counts (tokens, FLOPs, windows) against values worked out here from the shapes, the rates against the
measured times they are derived from, and the two stacks against each other where they compute the same."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from statistics import median

import pytest
from conftest import LLAMA_TOKENIZER, REPO, SHARED_DATA, missing

pytest.importorskip("torch")
pytest.importorskip("peft")


@pytest.fixture
def dl19_inputs():
    """DL19's BM25 candidates and the Llama-3.1 tokenizer from ../shared (a skip locally, a failure in CI)."""
    if not (SHARED_DATA / "dl19" / "bm25_top100.json").is_file() or not LLAMA_TOKENIZER.is_dir():
        missing("DL19 candidates or the Llama-3.1 tokenizer are not in ../shared")


NEEDS_DL19 = pytest.mark.usefixtures("dl19_inputs")


def _run(module: str, *args: str, tmp_path) -> dict:
    out = tmp_path / f"{module}.json"
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # one CPU device, as a user would run it
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run([sys.executable, "-m", f"benchmarks.{module}", *args, "--json", str(out)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=1200)  # a guard against a hang, not a timing
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(out.read_text())


def test_train_step_quick(tmp_path):
    res = _run("train_step", "--quick", tmp_path=tmp_path)
    (row,) = res["results"]
    assert row["preset"] == "tiny"
    # tiny: 2 queries x (4 candidates + 1 comparison), each a 48-token prompt and a 16-token target
    assert row["tokens_per_step"] == 2 * (4 + 1) * (48 + 16) and row["sequences_per_step"] == 10
    for stack in ("jax", "torch"):
        assert row[stack]["step_s"] == pytest.approx(median(row["seconds"][stack]))
        assert row[stack]["tokens_per_s"] == pytest.approx(row["tokens_per_step"] / row[stack]["step_s"])
    assert row["speedup"] == pytest.approx(row["torch"]["step_s"] / row["jax"]["step_s"])
    # same weights, same batch: the two stacks compute the same combined loss
    assert row["first_loss"]["jax"] == pytest.approx(row["first_loss"]["torch"], rel=1e-4)
    assert set(res["peak_matmul_flops_per_s"]) == {"jax", "torch"}


@NEEDS_DL19
def test_rerank_quick(tmp_path):
    (row,) = _run("rerank", "--quick", tmp_path=tmp_path)["results"]
    assert row["docs"] == 100
    for stack in ("jax", "torch"):
        assert row[stack]["s"] == pytest.approx(median(row["seconds"][stack]))
        assert row[stack]["docs_per_s"] == pytest.approx(100 / row[stack]["s"])
    # the prompts' own tokens: a stack cannot compute fewer positions than the prompts hold
    assert row["torch"]["computed_tokens"] >= row["prompt_tokens"]["total"] > 0
    assert row["max_abs_score_diff"] < 1e-3 * max(1.0, row["score_scale"])


@NEEDS_DL19
def test_memory_quick(tmp_path):
    rows = _run("memory", "--quick", tmp_path=tmp_path)["results"]
    assert {(r["task"]) for r in rows} == {"train", "rerank"}
    for r in rows:
        for stack in ("jax", "torch"):
            assert r[stack]["peak_rss_mib"] >= r[stack]["rss_after_import_mib"] > 100  # jax or torch is loaded
        assert r["peak_ratio_jax_over_torch"] == pytest.approx(r["jax"]["peak_rss_mib"] / r["torch"]["peak_rss_mib"])


def tiny_model_flops_4nt(m, sequences: int, length: int) -> float:
    """gpu_8b's `flops_4nt`, worked out here: 4 x (decoder projections + LM head) x tokens + 12·L²·H·D per
    layer and sequence."""
    q, kv = m.num_attention_heads * m.head_dim, m.num_key_value_heads * m.head_dim
    per_layer = m.hidden_size * (2 * q + 2 * kv) + 3 * m.hidden_size * m.intermediate_size
    weights = m.num_hidden_layers * per_layer + m.hidden_size * m.vocab_size
    attention = 12 * length**2 * m.num_attention_heads * m.head_dim * m.num_hidden_layers
    return 4.0 * weights * sequences * length + sequences * attention


def test_gpu_8b_dry_run(tmp_path):
    import math

    from benchmarks.common import preset

    res = _run("gpu_8b", "--dry-run", tmp_path=tmp_path)
    assert res["dry_run"]
    (train,) = res["train"]
    # the dry run: 1 query x (4 candidates + 1 comparison) sequences of 64 tokens, 2 timed steps
    assert train["tokens_per_step"] == 5 * 64 and len(train["step_s_all"]) == 2
    assert train["step_s"] == pytest.approx(median(train["step_s_all"]))
    assert train["tokens_per_s"] == pytest.approx(train["tokens_per_step"] / train["step_s"])
    assert train["flops_4nt"] == pytest.approx(tiny_model_flops_4nt(preset("tiny").model, 5, 64), rel=1e-9)
    assert train["flops_executed"] >= train["flops_exact"] > 0 and math.isfinite(train["loss"])
    score = res["score"]
    assert (score["candidates"], score["length"], score["batch_size"]) == (8, 32, 4)
    assert score["docs_per_s"] == pytest.approx(8 / score["s"])
    assert score["tokens_per_s"] == pytest.approx(8 * 32 / score["s"])


def test_listwise_windows_and_orders():
    from benchmarks.listwise import parse_order, windows

    # RankGPT's slide over a top 100: window 20, stride 10, from the bottom; the last window starts at 0
    assert windows(100, 20, 10) == [(80, 100), (70, 90), (60, 80), (50, 70), (40, 60), (30, 50), (20, 40),
                                    (10, 30), (0, 20)]
    assert windows(12, 20, 10) == [(0, 12)]
    # first mentions in range, repeats and unknown identifiers dropped, the rest appended in order
    assert parse_order("[3] > [1] > [3] > [9] > [2]", 4) == ([2, 0, 1, 3], False)
    assert parse_order("[2] > [1]", 2) == ([1, 0], True)
    assert parse_order("no list at all", 3) == ([0, 1, 2], False)


@NEEDS_DL19
def test_listwise_quick(tmp_path, smollm2_base):
    res = _run("listwise", "--model", str(smollm2_base), "--quick", tmp_path=tmp_path)
    rows = res["rows"]
    assert set(rows) == {"pointwise_jax", "listwise_jax", "listwise_torch"}
    assert rows["pointwise_jax"]["x_pointwise"] == 1.0
    for row in rows.values():
        assert row["s_per_query"] == pytest.approx(median(row["seconds"]))
        assert row["x_pointwise"] == pytest.approx(row["s_per_query"] / rows["pointwise_jax"]["s_per_query"])
    for name in ("listwise_jax", "listwise_torch"):
        assert rows[name]["windows_per_query"] == 3  # windows(12, 6, 3): (6, 12), (3, 9), (0, 6)
        assert rows[name]["windows"] == 3 and 0 <= rows[name]["complete_windows"] <= 3
        assert rows[name]["prompt_tokens_per_window"] > 6 * 32 / 2  # six passages of up to 32 tokens each


@pytest.mark.parametrize("config", ["configs/smollm2_135m.yaml"])
def test_recipe_preset_is_the_recipe_batch(smollm2_base, config):
    from benchmarks.common import recipe_preset
    from r2r_jax.config import TrainConfig
    from r2r_jax.config_io import load_config
    from r2r_jax.data.features import BatchShapes

    cfg = load_config(TrainConfig, ["--config", str(REPO / config)])
    p = recipe_preset(smollm2_base, REPO / config)
    assert p.model.num_hidden_layers == 30 and p.model.hidden_size == 576  # the folder's shape
    assert p.model.scan_layers == cfg.model.scan_layers and p.model.attention == cfg.model.attention
    assert (p.shape.batch, p.shape.group, p.shape.prompt) == (cfg.batch_size, BatchShapes.from_config(cfg.data).rows,
                                                              cfg.data.max_prompt_len)
    assert p.lora == cfg.lora and p.loss == cfg.loss
