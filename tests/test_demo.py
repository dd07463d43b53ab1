"""`r2r demo` end to end with a short step budget: tokenizer, training, checkpoint, rerank, report."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_demo_runs_every_stage(tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "r2r_jax.cli", "demo", "--config", str(REPO / "configs" / "demo.yaml"),
         "--output-dir", str(out), "--steps=3", "--save_every=3", "--log_every=1"],
        env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "held-out evaluation" in proc.stdout and "student's reason:" in proc.stdout
    report = json.loads((out / "demo_report.json").read_text())
    assert report["bm25"]["ndcg@10"] > 0.5  # the shipped qrels and candidates line up
    lines = (out / "student.trec").read_text().splitlines()
    assert len({ln.split()[0] for ln in lines}) == 20
    expl = [json.loads(line) for line in (out / "explanations.jsonl").read_text().splitlines()]
    assert len(expl) == 1
