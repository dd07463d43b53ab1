"""launch/: shellcheck-clean scripts whose --dry-run prints exactly what they would execute."""

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

LAUNCH = Path(__file__).resolve().parents[1] / "launch"
SCRIPTS = ["local.sh", "tpu_pod.sh", "slurm_gpu.sbatch"]
CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "R2R_", "CLOUDSDK_"))}


def _run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", *args], capture_output=True, text=True, timeout=60,
                          env={**CLEAN_ENV, **(env or {})}, cwd=LAUNCH.parent)


@pytest.mark.parametrize("script", SCRIPTS)
def test_shellcheck_clean(script):
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck not installed (apt-get install shellcheck)")
    result = subprocess.run(["shellcheck", str(LAUNCH / script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_local_dry_run_gives_each_process_its_id():
    result = _run(str(LAUNCH / "local.sh"), "--dry-run", "-n", "3", "--port", "23456", "--",
                  ".venv/bin/r2r", "train", "--config", "configs/tiny.yaml", "--output_dir", "runs/a b")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 4 and lines[-1].startswith("wait")
    for i, line in enumerate(lines[:3]):
        words = shlex.split(line.removesuffix(" &"))
        assert words[0] == "env"
        assert {"R2R_COORDINATOR=127.0.0.1:23456", "R2R_NUM_PROCESSES=3", f"R2R_PROCESS_ID={i}",
                "JAX_PLATFORMS=cpu"} <= set(words)
        assert words[words.index(".venv/bin/r2r"):words.index(">")] == \
            [".venv/bin/r2r", "train", "--config", "configs/tiny.yaml", "--output_dir", "runs/a b"]
        assert words[-2:] == [f"logs/local/process_{i}.log", "2>&1"]


def test_local_runs_processes_and_returns_the_first_failure(tmp_path):
    script = 'echo "$R2R_PROCESS_ID/$R2R_NUM_PROCESSES@$R2R_COORDINATOR"; exit "$R2R_PROCESS_ID"'
    result = _run(str(LAUNCH / "local.sh"), "-n", "3", "--log-dir", str(tmp_path), "--", "bash", "-c", script)
    assert result.returncode == 1  # process 1 fails first (process 2 too)
    assert "process 1 exited with 1" in result.stderr and "process 2 exited with 2" in result.stderr
    for i in range(3):
        assert (tmp_path / f"process_{i}.log").read_text().strip() == f"{i}/3@127.0.0.1:12355"


def test_tpu_pod_dry_run_all_creates_runs_everywhere_gathers_and_deletes():
    command = [".venv/bin/r2r", "train", "--config", "configs/llama3_1_8b_v5e16.yaml", "--set", "note=it's"]
    result = _run(str(LAUNCH / "tpu_pod.sh"), "--dry-run", "all", "--zone", "us-east5-a", "--type", "v5litepod-16",
                  "--repo", "https://example.com/r2r.git", "--ref", "abc123", "--", *command)
    assert result.returncode == 0, result.stderr
    lines = [shlex.split(line) for line in result.stdout.strip().splitlines()]
    actions = [w[4] if w[0] == "gcloud" else w[0] for w in lines]
    assert actions == ["create", "ssh", "ssh", "mkdir", "scp", "scp", "scp", "scp", "delete"]  # 4 hosts of 4 chips
    create = lines[0]
    assert create[5] == "r2r-v5litepod-16" and "--accelerator-type" in create and "v5litepod-16" in create
    setup, run = lines[1], lines[2]
    assert "--worker=all" in setup and "--worker=all" in run
    assert "git checkout -q abc123" in setup[-1] and "pip install" in setup[-1]
    remote = run[run.index("--command") + 1]
    assert "R2R_DISTRIBUTED=1" in remote and "logs/env-$h.txt" in remote and "tee logs/run-$h.log" in remote
    # the remote line carries the command word for word
    inner = remote[remote.index("R2R_DISTRIBUTED=1 ") + len("R2R_DISTRIBUTED=1 "):remote.index(" 2>&1 | tee")]
    assert shlex.split(inner) == command
    assert [w for w in lines[4] if w.startswith("--worker")] == ["--worker=0"]
    assert lines[-1][-1] == "--quiet"


def test_tpu_pod_needs_a_zone():
    result = _run(str(LAUNCH / "tpu_pod.sh"), "--dry-run", "create")
    assert result.returncode == 2 and "--zone" in result.stderr


def test_slurm_dry_run_takes_coordinator_and_ranks_from_slurm():
    env = {"SLURM_JOB_ID": "4242", "SLURM_JOB_NODELIST": "gpu07,gpu08", "SLURM_JOB_NUM_NODES": "2",
           "SLURM_GPUS_ON_NODE": "8", "SLURM_NTASKS_PER_NODE": "8(x2)", "PATH": "/usr/bin:/bin"}
    result = _run(str(LAUNCH / "slurm_gpu.sbatch"), "--dry-run", "--", ".venv/bin/r2r", "train", "--config",
                  "configs/llama3_1_8b_h100x8.yaml", env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert "coordinator gpu07:24242" in lines[0]
    srun = shlex.split(lines[1])
    assert srun[:4] == ["srun", "--nodes=2", "--ntasks=16", "--ntasks-per-node=8"]
    task = srun[srun.index("-c") + 1]
    assert "R2R_COORDINATOR=gpu07:24242" in task and "R2R_NUM_PROCESSES=16" in task
    assert "R2R_PROCESS_ID=$SLURM_PROCID" in task and "CUDA_VISIBLE_DEVICES=$SLURM_LOCALID" in task
    assert task.endswith("exec .venv/bin/r2r train --config configs/llama3_1_8b_h100x8.yaml")
    tasks = lines[2:]
    assert len(tasks) == 16 and tasks[9].endswith("R2R_PROCESS_ID=9 CUDA_VISIBLE_DEVICES=1")


def test_slurm_per_node_and_refusal_outside_slurm():
    env = {"SLURM_JOB_ID": "7", "SLURM_JOB_NODELIST": "n1,n2,n3", "SLURM_JOB_NUM_NODES": "3", "PATH": "/usr/bin:/bin"}
    result = _run(str(LAUNCH / "slurm_gpu.sbatch"), "--dry-run", "--per-node", env=env)
    assert result.returncode == 0, result.stderr
    srun = shlex.split(result.stdout.splitlines()[1])
    assert "--ntasks=3" in srun and "CUDA_VISIBLE_DEVICES" not in srun[-1]
    assert _run(str(LAUNCH / "slurm_gpu.sbatch")).returncode == 2  # not inside a job, not a dry run
