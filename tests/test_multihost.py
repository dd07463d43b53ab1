"""JAX's multi-controller runtime on one machine: 2 CPU processes on 127.0.0.1.

Each process loads only its slice of every global batch; together they train, save and restore an Orbax
checkpoint, and rerank with one complete run file — equal to what one process with 4 devices does.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from train_fixtures import restored_trainable

from r2r_jax.testing.synthetic import write_synthetic_task


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("mh")
    write_synthetic_task(d, 32, 6, seed=1)
    return d


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_cli(args: list[str], processes: int, devices_per_process: int) -> list[str]:
    """Start `r2r ...` as `processes` cooperating processes; returns each one's output."""
    port = _free_port()
    procs = []
    for pid in range(processes):
        env = {**os.environ, "JAX_PLATFORMS": "cpu",
               "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices_per_process}"}
        if processes > 1:
            env.update(R2R_COORDINATOR=f"127.0.0.1:{port}", R2R_NUM_PROCESSES=str(processes),
                       R2R_PROCESS_ID=str(pid))
        procs.append(subprocess.Popen([sys.executable, "-m", "r2r_jax.cli", *args], env=env, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    outs = []
    for p in procs:
        out, _ = p.communicate(timeout=600)
        outs.append(out)
    for p, out in zip(procs, outs, strict=True):
        assert p.returncode == 0, out[-3000:]
    return outs


def train_args(data: Path, out: Path, devices: int) -> list[str]:
    return ["train", f"--data.train_path={data / 'teacher.jsonl'}", f"--data.tokenizer={data / 'tok'}",
            "--data.max_prompt_len=40", "--data.max_target_len=24", "--data.max_comparison_prompt_len=80",
            "--model.vocab_size=128", f"--output_dir={out}", "--batch_size=8", "--steps=4", "--save_every=2",
            "--log_every=1", "--optim.learning_rate=3e-3", "--lora.rank=4", f"--mesh.data={devices}"]


def losses(out: Path) -> list[float]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if not r.get("eval")]


@pytest.fixture(scope="module")
def single(data, tmp_path_factory) -> Path:
    """The reference: one process with 4 devices (data parallel: the same global batches and the same losses,
    up to float32 summation order, as 2 processes of 1 device each, each loading half of every batch)."""
    out = tmp_path_factory.mktemp("single") / "run"
    run_cli(train_args(data, out, 4), 1, 4)
    return out


def test_multi_process_training_and_rerank_equal_single_process(data, single, tmp_path):
    """Two processes of one device each train, resume and rerank as one process of four devices does (more
    processes take the same code paths; how 2, 4 and 8 hosts slice a batch is tests/test_pipeline.py's)."""
    import shutil

    processes = 2
    multi = tmp_path / "multi"
    run_cli(train_args(data, multi, processes), processes, 1)
    np.testing.assert_allclose(losses(multi), losses(single), atol=1e-5)
    for a, b in zip(restored_trainable(single, 4), restored_trainable(multi, 4), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    # restore: drop the final checkpoint and let the processes resume from step 2 together
    shutil.rmtree(multi / "checkpoints" / "4")
    outs = run_cli(train_args(data, multi, processes), processes, 1)
    assert "resumed from step 2" in outs[0]
    np.testing.assert_allclose(losses(multi), losses(single), atol=1e-5)
    for a, b in zip(restored_trainable(single, 4), restored_trainable(multi, 4), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    # rerank: each process scores its share of the queries, process 0 writes one complete run
    rerank = ["rerank", "--candidates", str(data / "dev.jsonl"), "--batch-size", "8"]
    run_cli([*rerank, "--checkpoint", str(single), "--output", str(tmp_path / "one.trec")], 1, processes)
    run_cli([*rerank, "--checkpoint", str(multi), "--output", str(tmp_path / "many.trec")], processes, 1)
    one = (tmp_path / "one.trec").read_text().splitlines()
    many = (tmp_path / "many.trec").read_text().splitlines()
    assert len(one) == 6 * 8 and [ln.split()[:4] for ln in one] == [ln.split()[:4] for ln in many]
    np.testing.assert_allclose([float(ln.split()[4]) for ln in one], [float(ln.split()[4]) for ln in many],
                               atol=1e-5)
