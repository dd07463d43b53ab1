"""`r2r train` end to end: exact resume after SIGKILL, other meshes, SIGTERM/Ctrl-C, refusals, NaN stop, real data,
help."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from train_fixtures import restored_trainable

from r2r_jax.cli import main
from r2r_jax.config import TrainConfig
from r2r_jax.config_io import load_config
from r2r_jax.data.records import write_records
from r2r_jax.testing.synthetic import write_synthetic_task


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("synthetic")
    write_synthetic_task(d, 48, 8, seed=0)
    return d


def train_args(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        f"--data.train_path={data / 'teacher.jsonl'}", f"--data.tokenizer={data / 'tok'}",
        "--data.max_prompt_len=40", "--data.max_target_len=24", "--data.max_comparison_prompt_len=80",
        "--model.vocab_size=128", "--model.hidden_size=96", "--model.intermediate_size=192", "--model.head_dim=24",
        f"--output_dir={out}", "--batch_size=8", "--steps=20", "--save_every=10", "--log_every=1",
        "--optim.learning_rate=3e-3", "--lora.rank=4", *extra,
    ]


# `r2r train` with one more hook, last: after step N the process sends itself a signal, so it arrives at a known
# step whatever the host's speed. SIGKILL waits for step N's checkpoint to be committed (a crash right after a
# save); SIGTERM and SIGINT are sent at once and reach the trainer's handler before step N + 1 begins.
SIGNAL_AFTER_STEP = """
import os, signal, sys, time
from r2r_jax import cli
from r2r_jax.train import trainer
from r2r_jax.train.hooks import Hook

STEP, SIGNAL = int(sys.argv[1]), signal.Signals[sys.argv[2]]


class SignalAfterStep(Hook):
    def __init__(self, run):
        self.marker = run.out / "checkpoints" / str(STEP) / "commit_success.txt"

    def after_step(self, event):
        if event.step == STEP:
            while SIGNAL == signal.SIGKILL and not self.marker.exists():  # orbax commits in the background
                time.sleep(0.01)
            os.kill(os.getpid(), SIGNAL)


default_hooks = trainer.default_hooks
trainer.default_hooks = lambda run: default_hooks(run) + [SignalAfterStep(run)]
sys.argv = ["r2r", *sys.argv[3:]]  # run as the `r2r` program
sys.exit(cli.main())
"""


def start(args: list[str], signal_after_step: tuple[int, signal.Signals] | None = None) -> subprocess.Popen:
    """`r2r train` in a subprocess with as many fake CPU devices as its mesh asks for; with `signal_after_step`
    (step, signal) it sends itself that signal after that step (SIGKILL: once its checkpoint is committed)."""
    devices = 1
    for a in args:
        if a.startswith("--mesh."):
            devices *= max(int(a.split("=")[1]), 1)
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    command = [sys.executable, "-m", "r2r_jax.cli", "train", *args]
    if signal_after_step is not None:
        step, sig = signal_after_step
        command = [sys.executable, "-c", SIGNAL_AFTER_STEP, str(step), sig.name, "train", *args]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out + err


def train_lines(out: Path) -> list[dict]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "tokens_per_second"} for r in rows if not r.get("eval")]


SHORT = ("--mesh.data=1", "--steps=12", "--save_every=6")


@pytest.fixture(scope="module")
def straight(synthetic, tmp_path_factory) -> Path:
    """A 12-step run from start to end: what every resumed run must repeat bit for bit."""
    out = tmp_path_factory.mktemp("straight") / "run"
    code, log = finish(start(train_args(synthetic, out, *SHORT)))
    assert code == 0, log
    return out


def test_sigkill_then_resume_equals_straight_run_bitwise(synthetic, straight, tmp_path):
    resumed = tmp_path / "resumed"
    code, log = finish(start(train_args(synthetic, resumed, *SHORT), signal_after_step=(6, signal.SIGKILL)))
    assert code == -signal.SIGKILL, log
    assert (resumed / "checkpoints" / "6" / "commit_success.txt").exists()
    assert sorted(p.name for p in (resumed / "checkpoints").iterdir() if p.name.isdigit()) == ["6"]
    code, log = finish(start(train_args(synthetic, resumed, *SHORT)))
    assert code == 0, log
    assert "resumed from step 6" in log
    assert train_lines(straight) == train_lines(resumed)
    assert [r["step"] for r in train_lines(resumed)] == list(range(1, 13))
    for a, b in zip(restored_trainable(straight, 12), restored_trainable(resumed, 12), strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_short_run_on_a_longer_schedule_resumes_into_the_straight_run(synthetic, straight, tmp_path):
    """`--steps 6 --optim.schedule_steps 12` ends cleanly at step 6 with the 12-step run's learning rates; resumed
    with `--steps 12`, it is that run bit for bit (a sweep's short runs, then the chosen one finished)."""
    run = tmp_path / "short"
    code, log = finish(start(train_args(synthetic, run, "--mesh.data=1", "--steps=6", "--save_every=6",
                                        "--optim.schedule_steps=12")))
    assert code == 0, log
    assert train_lines(run) == train_lines(straight)[:6]
    code, log = finish(start(train_args(synthetic, run, *SHORT)))
    assert code == 0, log
    assert "resumed from step 6" in log
    assert train_lines(run) == train_lines(straight)
    for a, b in zip(restored_trainable(straight, 12), restored_trainable(run, 12), strict=True):
        np.testing.assert_array_equal(a, b)


def test_resume_onto_a_different_mesh(synthetic, tmp_path):
    """A run on 8 data-parallel devices, resumed from step 5 onto a (2, 2, 2) mesh, repeats its steps 6-10."""
    import shutil

    other = tmp_path / "other"
    short = ("--steps=10", "--save_every=5")
    code, log = finish(start(train_args(synthetic, other, "--mesh.data=8", *short)))
    assert code == 0, log
    straight, straight_trainable = train_lines(other), restored_trainable(other, 10)
    shutil.rmtree(other / "checkpoints" / "10")
    code, log = finish(start(train_args(synthetic, other, "--mesh.data=2", "--mesh.fsdp=2", "--mesh.tensor=2", *short)))
    assert code == 0, log
    assert "resumed from step 5" in log
    resumed = train_lines(other)
    assert [r["step"] for r in resumed] == list(range(1, 11))
    for ra, rb in zip(straight, resumed, strict=True):
        assert abs(ra["loss"] - rb["loss"]) < 1e-4
    for x, y in zip(straight_trainable, restored_trainable(other, 10), strict=True):
        np.testing.assert_allclose(x, y, atol=1e-4)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_saves_marks_the_run_interrupted_and_exits_nonzero(synthetic, tmp_path, sig):
    """The signal arrives after step 3 (sent by the run itself, so at that step on any host): step 4, the one
    under way, finishes and is saved, and the run stops there."""
    out = tmp_path / "term"
    proc = start(train_args(synthetic, out, "--mesh.data=1", "--steps=100000", "--save_every=100000"),
                 signal_after_step=(3, sig))
    code, log = finish(proc)
    assert code == 128 + sig, log  # 143 / 130: `r2r train ... && r2r export ...` stops here
    assert signal.Signals(sig).name in log and "Traceback" not in log
    assert sorted(int(p.name) for p in (out / "checkpoints").iterdir() if p.name.isdigit()) == [4]
    assert [r["step"] for r in train_lines(out)] == [1, 2, 3, 4]
    report = json.loads((out / "report.json").read_text())
    assert report["interrupted"] is True and report["final_step"] == 4
    assert report["requested_steps"] == 100000 and report["exit_code"] == 128 + sig


FINISHED = ("--mesh.data=1", "--steps=4", "--save_every=2")


@pytest.fixture(scope="module")
def finished(synthetic, tmp_path_factory) -> Path:
    """A finished 4-step run (checkpoints 2 and 4); tests work on copies of it."""
    out = tmp_path_factory.mktemp("finished") / "run"
    assert finish(start(train_args(synthetic, out, *FINISHED)))[0] == 0
    return out


def copy_of(run: Path, where: Path) -> Path:
    import shutil

    return Path(shutil.copytree(run, where))


def test_rerunning_a_finished_run_keeps_its_report(synthetic, finished, tmp_path):
    out = copy_of(finished, tmp_path / "done")
    args = train_args(synthetic, out, *FINISHED)
    before = (out / "report.json").read_text()
    code, log = finish(start(args))
    assert code == 0 and "nothing to train" in log, log
    assert (out / "report.json").read_text() == before
    assert json.loads(before)["interrupted"] is False


def test_refusals_come_before_anything_is_written(synthetic, finished, tmp_path, capsys):
    """A foreign folder, an output inside the tokenizer, a resume with another shape: one line, exit 2,
    the folder untouched (the refusals run in this process: they come before any computation)."""
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    run = copy_of(finished, tmp_path / "run")
    config_before = (run / "config.yaml").read_text()
    cases = [
        (train_args(synthetic, foreign), "is not a training run"),
        (train_args(synthetic, synthetic / "tok" / "out"), "overlaps --data.tokenizer"),
        (train_args(synthetic, run, "--steps=6", "--model.hidden_size=48"), "hidden_size 96, config says 48"),
        (train_args(synthetic, run, "--steps=6", "--lora.rank=8"), "lora.rank 4, config says 8"),
        (train_args(synthetic, tmp_path / "fresh", "--model.vocab_size=64"), "tokens but the model's vocabulary is 64"),
    ]
    capsys.readouterr()
    for args, message in cases:
        code = main(["train", *args])
        captured = capsys.readouterr()
        log = captured.out + captured.err
        lines = [line for line in log.splitlines() if line.strip()]
        assert code == 2 and message in log and len(lines) == 1 and lines[0].startswith("r2r train: error:"), log
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]
    assert not (synthetic / "tok" / "out").exists() and not (tmp_path / "fresh").exists()
    assert (run / "config.yaml").read_text() == config_before


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(synthetic, finished, tmp_path):
    """Resumed at step 4 with a learning rate that blows the weights up: step 5 is finite (and not saved),
    step 6 is not; the run stops with one line and step 4 stays the latest checkpoint."""
    out = copy_of(finished, tmp_path / "nan")
    code, log = finish(start(train_args(synthetic, out, "--mesh.data=1", "--steps=8", "--save_every=3",
                                        "--optim.learning-rate=1e30", "--optim.warmup-steps=0")))
    assert code == 1 and "Traceback" not in log
    assert "r2r train: error: non-finite loss at step 6" in log and "the last checkpoint, step 4, is intact" in log
    assert sorted(int(p.name) for p in (out / "checkpoints").iterdir() if p.name.isdigit())[-1] == 4
    assert json.loads((out / "report.json").read_text())["final_step"] == 4
    assert len(restored_trainable(out, 4)) > 0


def test_real_data_run_evaluates_dl19_with_real_qrels(shared_data, tmp_path):
    """R2R teacher records (imported) train a tiny model; DL19 BM25 top-100 is the dev set."""
    from r2r_jax.data.importers import import_file

    records, report = import_file(shared_data / "teacher" / "r2r_gpt4_msmarco_500.jsonl", "r2r")
    write_records(tmp_path / "teacher.jsonl", records[:64])
    tok = Path(__file__).resolve().parents[2] / "shared" / "tokenizers" / "llama3_1"
    out = tmp_path / "run"
    args = [
        f"--data.train_path={tmp_path / 'teacher.jsonl'}", f"--data.tokenizer={tok}",
        f"--data.dev_candidates={shared_data / 'dl19' / 'bm25_top100.json'}",
        f"--data.dev_qrels={shared_data / 'dl19' / 'qrels.txt'}",
        "--data.max_prompt_len=64", "--data.max_target_len=16", "--data.max_comparison_prompt_len=96",
        "--data.group_size=4", "--model.vocab_size=128256", "--model.hidden_size=32", "--model.intermediate_size=64",
        "--model.head_dim=8", f"--output_dir={out}", "--batch_size=8", "--steps=2", "--save_every=2",
        "--log_every=1", "--mesh.data=2",
    ]
    code, log = finish(start(args), timeout=600)
    assert code == 0, log
    report = json.loads((out / "report.json").read_text())
    # the figures are the written runs' own against the real qrels (the first run before any step, the last after)
    from r2r_jax.eval.metrics import evaluate
    from r2r_jax.retrieval.trec import read_qrels, read_run

    qrels = read_qrels(shared_data / "dl19" / "qrels.txt")
    for step, key in ((0, "dev_before"), (2, "dev_after")):
        run = read_run(out / f"dev_run_step{step}.trec")
        assert len(run) == 43 and all(len(hits) == 100 for hits in run.values())  # every judged query, top 100
        figures = evaluate(run, qrels, ["ndcg@1", "ndcg@5", "ndcg@10"]).means
        assert report[key] == pytest.approx(figures, abs=1e-12)
    assert (out / "loss.png").is_file() and list((out / "tensorboard").iterdir())
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    first = next(r for r in rows if not r.get("eval"))
    for key in ("step", "loss", "loss_pair", "loss_list", "loss_gen", "learning_rate", "tokens_per_second"):
        assert key in first


def test_help_documents_options_and_unknown_overrides_fail(capsys):
    assert main(["train", "--help"]) == 0
    text = capsys.readouterr().out
    for option, doc in (("--model.num-hidden-layers INT", "decoder layers (default: 2)"),
                         ("--lora.rank INT", "adapter rank r (default: 16)"), ("--loss.alpha FLOAT", "RankNet"),
                         ("--mesh.fsdp INT", "ZeRO-3"), ("--optim.learning-rate FLOAT", "peak AdamW"),
                         ("--data.group-size INT", "G candidates per query"), ("--micro-batches INT", "accumulation"),
                         ("--output-dir STR", "run folder")):
        assert option in text and doc in text.split(option, 1)[1].split("\n  --", 1)[0], option
    assert "Config file for" not in text and "config_path" not in text  # no draccus internals
    hyphens = load_config(TrainConfig, ["--output-dir=a", "--data.group-size=3", "--optim.learning-rate", "0.5"])
    underscores = load_config(TrainConfig, ["--output_dir=a", "--data.group_size=3", "--optim.learning_rate", "0.5"])
    assert hyphens == underscores and (hyphens.output_dir, hyphens.data.group_size) == ("a", 3)
    assert main(["train", "--model.no_such_field=3"]) == 2  # one line, not draccus' usage
    assert capsys.readouterr().err == ("r2r train: error: unknown option --model.no-such-field (r2r train --help "
                                       "lists the options)\n")
    assert main(["train", "--mesh.data=3", "--mesh.fsdp=-1", "--data.train_path=x", "--data.tokenizer=y"]) == 2
    assert "mesh" in capsys.readouterr().err
