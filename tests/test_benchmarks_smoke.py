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
