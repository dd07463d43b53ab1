"""Every benchmark script still runs end to end (--quick / --dry-run on the tiny preset). No timing assertions:
the figures themselves live in docs/benchmarks.md."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import LLAMA_TOKENIZER, REPO, SHARED_DATA

pytest.importorskip("torch")
pytest.importorskip("peft")

NEEDS_DL19 = pytest.mark.skipif(
    not (SHARED_DATA / "dl19" / "bm25_top100.json").is_file() or not LLAMA_TOKENIZER.is_dir(),
    reason="DL19 candidates or the Llama-3.1 tokenizer are not in ../shared",
)


def _run(module: str, *args: str, tmp_path) -> dict:
    out = tmp_path / f"{module}.json"
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # one CPU device, as a user would run it
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run([sys.executable, "-m", f"benchmarks.{module}", *args, "--json", str(out)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(out.read_text())


def test_train_step_quick(tmp_path):
    res = _run("train_step", "--quick", tmp_path=tmp_path)
    (row,) = res["results"]
    assert row["preset"] == "tiny" and row["jax"]["tokens_per_s"] > 0 and row["torch"]["tokens_per_s"] > 0
    # same weights, same batch: the two stacks compute the same combined loss
    assert row["first_loss"]["jax"] == pytest.approx(row["first_loss"]["torch"], rel=1e-4)
    assert set(res["peak_matmul_flops_per_s"]) == {"jax", "torch"}


@NEEDS_DL19
def test_rerank_quick(tmp_path):
    (row,) = _run("rerank", "--quick", tmp_path=tmp_path)["results"]
    assert row["docs"] == 100 and row["jax"]["docs_per_s"] > 0 and row["torch"]["docs_per_s"] > 0
    assert row["max_abs_score_diff"] < 1e-3 * max(1.0, row["score_scale"])


@NEEDS_DL19
def test_memory_quick(tmp_path):
    rows = _run("memory", "--quick", tmp_path=tmp_path)["results"]
    assert {(r["task"]) for r in rows} == {"train", "rerank"}
    for r in rows:
        for stack in ("jax", "torch"):
            assert r[stack]["peak_rss_mib"] >= r[stack]["rss_after_import_mib"] > 0


def test_gpu_8b_dry_run(tmp_path):
    res = _run("gpu_8b", "--dry-run", tmp_path=tmp_path)
    assert res["dry_run"] and res["train"][0]["tokens_per_s"] > 0 and res["score"]["docs_per_s"] > 0


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
    for name in ("listwise_jax", "listwise_torch"):
        assert rows[name]["windows_per_query"] == 3 and rows[name]["s_per_query"] > 0
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
