"""The training loop and each of its hooks on their own, with stand-ins for the log, the checkpointer and the
step (no model is compiled: these run in a second)."""

from __future__ import annotations

import json
import logging
import math
import os
import signal
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from r2r_jax.checkpoint import BEST_METRIC
from r2r_jax.train import hooks as hooks_module
from r2r_jax.train.hooks import (
    CheckpointHook,
    DevEvalHook,
    Hook,
    MetricsHook,
    ProgressHook,
    ReportHook,
    SignalHook,
    StepEnd,
)
from r2r_jax.train.trainer import run_steps


class FakeLog:
    def __init__(self, path: Path | None = None):
        self.path = path
        self.train, self.evals, self.closed = [], [], False

    def write(self, step, metrics):
        self.train.append((step, metrics))

    def write_eval(self, step, metrics):
        self.evals.append((step, metrics))

    def close(self):
        self.closed = True


def event(step: int, last: bool = False, tokens: int = 10, started: float = 0.0, **kw) -> StepEnd:
    return StepEnd(step, {"loss": 1.0 / step}, tokens, started, state=f"state{step}", last=last, **kw)


def test_metrics_hook_writes_every_n_steps_and_the_last_with_the_window_throughput(monkeypatch):
    clock = iter([2.0, 2.0, 5.0, 5.0, 6.0, 6.0])  # read at each write: elapsed, then the next window's start
    monkeypatch.setattr(hooks_module.time, "perf_counter", lambda: next(clock))
    log = FakeLog()
    hook = MetricsHook(log, every=2, processes=2)
    for step in range(1, 6):
        hook.after_step(event(step, last=step == 5, tokens=10 * step, started=float(step - 1)))
    assert [s for s, _ in log.train] == [2, 4, 5]
    # steps 1-2: 30 tokens x 2 processes over 2 s from step 1's start; steps 3-4: 70 x 2 over 3 s; step 5: 50 x 2 / 1
    assert [m["tokens_per_second"] for _, m in log.train] == [30.0, pytest.approx(140 / 3), 100.0]
    assert log.train[0][1]["loss"] == 0.5
    hook.close()
    assert log.closed


def test_dev_eval_hook_evaluates_before_every_n_and_at_the_end(tmp_path):
    calls = []

    def evaluate(path):
        calls.append(path)
        return {"ndcg@10": 0.1 * len(calls)}

    log, report = FakeLog(), {}
    hook = DevEvalHook(evaluate, log, tmp_path, every=3)
    hook.start(0, report)
    events = [event(step, last=step == 7) for step in range(1, 8)]
    for e in events:
        hook.after_step(e)
    assert calls == [tmp_path / "dev_run_step0.trec", None, None, tmp_path / "dev_run_step7.trec"]
    assert [s for s, _ in log.evals] == [0, 3, 6, 7]
    assert [e.dev is not None for e in events] == [False, False, True, False, False, True, True]
    assert report["dev_before"] == {"ndcg@10": 0.1} and report["dev_after"] == {"ndcg@10": pytest.approx(0.4)}

    resumed = DevEvalHook(evaluate, FakeLog(), tmp_path, every=0)  # a resume has no "before"; every=0: the end only
    resumed.start(5, {})
    for step in (6, 7):
        resumed.after_step(event(step, last=step == 7))
    assert calls[4:] == [tmp_path / "dev_run_step7.trec"]


def test_signal_hook_catches_sigterm_and_restores_the_handlers(caplog):
    before = {sig: signal.getsignal(sig) for sig in SignalHook.SIGNALS}
    hook = SignalHook()
    hook.start(0, {})
    os.kill(os.getpid(), signal.SIGTERM)  # handled by the hook: the test process keeps running
    os.kill(os.getpid(), signal.SIGINT)  # the first signal is the one reported
    e = event(1)
    hook.after_step(e)
    assert e.stop_signal == signal.SIGTERM
    hook.close()
    assert {sig: signal.getsignal(sig) for sig in SignalHook.SIGNALS} == before
    with caplog.at_level(logging.INFO, logger="r2r_jax"):
        hook.finish({"interrupted": True, "final_step": 1, "requested_steps": 9, "checkpoints": "run/checkpoints"})
    assert caplog.messages == ["SIGTERM: saved step 1 of 9 to run/checkpoints; rerun the same command to continue"]


class FakeCheckpointer:
    def __init__(self):
        self.saved, self.closed = [], False

    def save(self, state, loader_state, meta, metrics=None, force=False):
        self.saved.append((state, loader_state, meta, metrics, force))

    def close(self):
        self.closed = True


def test_checkpoint_hook_saves_every_n_at_the_end_and_on_a_signal():
    ckpt, positions = FakeCheckpointer(), iter(range(100))
    hook = CheckpointHook(ckpt, lambda: {"position": next(positions)}, {"base": "b"}, every=4)
    hook.after_step(event(1))
    hook.after_step(event(2, stop_signal=signal.SIGTERM))
    hook.after_step(event(3))
    hook.after_step(event(4, dev={"ndcg@5": 0.3}))  # no nDCG@10: not ranked
    hook.after_step(event(5, last=True, dev={BEST_METRIC: 0.5}))
    assert [s[0] for s in ckpt.saved] == ["state2", "state4", "state5"]
    assert [s[1] for s in ckpt.saved] == [{"position": 0}, {"position": 1}, {"position": 2}]
    assert [s[3] for s in ckpt.saved] == [None, None, {BEST_METRIC: 0.5}]
    assert all(s[2] == {"base": "b"} and s[4] for s in ckpt.saved)
    hook.close()
    assert ckpt.closed


def test_progress_hook_counts_from_the_resumed_step():
    hook = ProgressHook(total=10, enabled=True)  # on stderr, which pytest captures
    hook.start(4, {})
    hook.after_step(event(5))
    hook.after_step(event(6))
    assert hook.bar.n == 6 and hook.bar.total == 10
    hook.close()


def test_report_hook_writes_the_report_and_the_loss_plot(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("".join(json.dumps({"step": s, "loss": 1 / s, "loss_pair": 0.5}) + "\n" for s in (1, 2, 3)))
    ReportHook(tmp_path / "other", metrics, enabled=False).finish({"final_step": 3})
    assert not (tmp_path / "other").exists()
    report = {"final_step": 3}
    ReportHook(tmp_path, metrics, enabled=True).finish(report)
    written = json.loads((tmp_path / "report.json").read_text())
    assert written == {"final_step": 3, "loss_plot": str(tmp_path / "loss.png")}
    assert (tmp_path / "loss.png").read_bytes().startswith(b"\x89PNG")


class Recorder(Hook):
    """Writes each call into a shared list, to check the loop's order."""

    def __init__(self, name: str, calls: list, stop_at: int | None = None):
        self.name, self.calls, self.stop_at = name, calls, stop_at

    def start(self, step, report):
        self.calls.append((self.name, "start", step))

    def after_step(self, e):
        self.calls.append((self.name, "after", e.step))
        if e.step == self.stop_at:
            e.stop_signal = signal.SIGTERM

    def close(self):
        self.calls.append((self.name, "close"))

    def finish(self, report):
        self.calls.append((self.name, "finish", report["exit_code"]))


def fake_run(tmp_path, start=0, steps=3, latest=None):
    batch = {"attention_mask": np.ones((2, 3), np.int32), "cmp_attention_mask": np.ones((2, 1), np.int32)}
    return SimpleNamespace(
        cfg=SimpleNamespace(steps=steps, seed=0), start=start, out=tmp_path, is_main=True,
        loader=SimpleNamespace(batch=lambda step: batch, step=start), prepared=SimpleNamespace(state=0),
        ckpt=SimpleNamespace(latest_step=lambda: latest, directory=tmp_path / "checkpoints"),
        log=SimpleNamespace(path=tmp_path / "metrics.jsonl"))


def step_fn(losses):
    def fn(state, local, rng):
        loss = losses[state]
        return state + 1, {"loss": loss, "loss_pair": 0.0, "loss_list": 0.0, "loss_gen": 0.0, "loss_gen_cmp": 0.0}
    return fn


def test_the_loop_runs_hooks_in_order_and_closes_them_in_reverse(tmp_path):
    calls = []
    run = fake_run(tmp_path, start=1, steps=3)
    report = run_steps(run, step_fn([0.0, 3.0, 2.0]), [Recorder("a", calls), Recorder("b", calls)])
    assert calls == [("a", "start", 1), ("b", "start", 1), ("a", "after", 2), ("b", "after", 2),
                     ("a", "after", 3), ("b", "after", 3), ("b", "close"), ("a", "close"),
                     ("a", "finish", 0), ("b", "finish", 0)]
    assert report["final_step"] == 3 and report["start_step"] == 1 and report["interrupted"] is False
    assert report["last_metrics"]["loss"] == 3.0 and run.prepared.state == 2 and run.loader.step == 3


def test_the_loop_stops_on_a_signal_and_on_a_non_finite_loss(tmp_path, caplog):
    calls = []
    report = run_steps(fake_run(tmp_path, steps=5), step_fn([1.0] * 5), [Recorder("a", calls, stop_at=2)])
    assert report["final_step"] == 2 and report["interrupted"] is True
    assert report["exit_code"] == 128 + signal.SIGTERM

    calls.clear()
    run = fake_run(tmp_path, steps=5, latest=None)
    with caplog.at_level(logging.INFO, logger="r2r_jax"):
        report = run_steps(run, step_fn([1.0, math.nan, 1.0]), [Recorder("a", calls)])
    assert ("a", "after", 2) not in calls and ("a", "close") in calls  # the bad step reaches no hook
    assert report["exit_code"] == 1 and report["final_step"] == 0 and run.prepared.state == 1
    assert report["stopped"].startswith("non-finite loss at step 2 (loss nan)")
    assert caplog.messages == [report["stopped"]]
