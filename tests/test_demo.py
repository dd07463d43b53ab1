"""`r2r demo` end to end on the real base with a short step budget: training, checkpoint, rerank, report."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_demo_runs_every_stage(tmp_path, smollm2_base):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "r2r_jax.cli", "demo", "--config", str(REPO / "configs" / "demo.yaml"),
         "--output-dir", str(out), "--base-dir", str(smollm2_base), "--steps=2", "--save_every=2", "--log_every=1",
         "--data.dev_max_queries=4"],
        env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "held-out evaluation" in proc.stdout and "student's reason:" in proc.stdout
    assert "untrained student" in proc.stdout and "trained student" in proc.stdout
    reason = proc.stdout.split("student's reason: ")[1].splitlines()[0]
    assert len(reason.split()) >= 3, reason  # real words from the real base, not ids or an empty string
    report = json.loads((out / "demo_report.json").read_text())
    assert report["bm25"]["ndcg@10"] > 0.5  # the shipped qrels and candidates line up
    lines = (out / "student.trec").read_text().splitlines()
    assert len({ln.split()[0] for ln in lines}) == 4
    expl = [json.loads(line) for line in (out / "explanations.jsonl").read_text().splitlines()]
    assert len(expl) == 1
