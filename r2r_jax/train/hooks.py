"""What happens around each training step, one hook per concern: metrics, dev evaluation, signals,
checkpoints, the progress bar and the report.

The loop (`trainer.run_steps`) only runs steps. It calls every hook's `start` before the first step,
`after_step` after each step that finished with a finite loss, `close` when the loop ends however it ends
(in reverse order, like nested `with` blocks), and `finish` with the run's report once the loop returned
normally. Hooks run in list order, and a hook may leave something on the `StepEnd` for the hooks after it:
dev evaluation its figures (the checkpoint keeps the best by them), the signal hook a received signal (the
checkpoint saves that step, the loop stops). A new concern is a new hook, not an edit of the loop.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from r2r_jax.atomic import write_json
from r2r_jax.checkpoint import BEST_METRIC
from r2r_jax.train.metrics_log import plot_losses

logger = logging.getLogger(__name__)


@dataclass
class StepEnd:
    """One finished step, as the hooks see it."""

    step: int  # steps done, 1-based
    metrics: dict[str, float]
    tokens: int  # real tokens of this process's batch (prompts, reasons, comparisons)
    started: float  # time.perf_counter() when the step began (its batch was read)
    state: Any  # the train state after the step
    last: bool  # the run's final step
    dev: dict[str, float] | None = None  # DevEvalHook's figures when it evaluated at this step
    stop_signal: int | None = None  # SignalHook's signal when SIGTERM or SIGINT arrived


class Hook:
    """A concern of the training loop; every method is optional."""

    def start(self, step: int, report: dict) -> None:
        """Before the first step of this run (`step` steps were done before, on a resume)."""

    def after_step(self, event: StepEnd) -> None:
        """After a step, in list order."""

    def close(self) -> None:
        """When the loop ends, also on an error (in reverse list order)."""

    def finish(self, report: dict) -> None:
        """Once the loop ended normally and `report` holds its outcome."""


class MetricsHook(Hook):
    """Train metrics into metrics.jsonl and TensorBoard every `every` steps and at the last step, with the
    tokens per second since the previous line (every process's tokens; evaluation and saving time included)."""

    def __init__(self, log, every: int, processes: int = 1):
        self.log, self.every, self.processes = log, every, processes
        self.tokens, self.window_start = 0, None

    def after_step(self, event: StepEnd) -> None:
        self.tokens += event.tokens
        if self.window_start is None:
            self.window_start = event.started
        if event.step % self.every == 0 or event.last:
            elapsed = time.perf_counter() - self.window_start
            self.log.write(event.step, {**event.metrics, "tokens_per_second": self.tokens * self.processes / elapsed})
            self.tokens, self.window_start = 0, time.perf_counter()

    def close(self) -> None:
        self.log.close()


class DevEvalHook(Hook):
    """Dev nDCG of the current student: before the first step of a fresh run (`dev_before`), every `every`
    steps and at the last step (`dev_after`). The first and the last also leave their TREC runs in `out`."""

    def __init__(self, evaluate: Callable[[Path | None], dict[str, float]], log, out: Path, every: int):
        self.evaluate, self.log, self.out, self.every = evaluate, log, out, every
        self.report: dict = {}

    def start(self, step: int, report: dict) -> None:
        self.report = report
        if step == 0:
            report["dev_before"] = self.evaluate(self.out / "dev_run_step0.trec")
            self.log.write_eval(0, report["dev_before"])

    def after_step(self, event: StepEnd) -> None:
        if (self.every and event.step % self.every == 0) or event.last:
            event.dev = self.evaluate(self.out / f"dev_run_step{event.step}.trec" if event.last else None)
            self.report["dev_after"] = event.dev
            self.log.write_eval(event.step, event.dev)


class SignalHook(Hook):
    """SIGTERM (a preempted job, `timeout`) and Ctrl-C let the current step finish; the checkpoint hook after
    this one saves it and the loop stops (the command exits 128 + signal)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.received: int | None = None
        self.previous: dict = {}

    def _receive(self, signum: int, _frame) -> None:
        if self.received is None:
            self.received = signum

    def start(self, step: int, report: dict) -> None:
        self.previous = {sig: signal.signal(sig, self._receive) for sig in self.SIGNALS}

    def after_step(self, event: StepEnd) -> None:
        event.stop_signal = self.received

    def close(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous = {}

    def finish(self, report: dict) -> None:
        if report["interrupted"]:
            logger.warning("%s: saved step %d of %d to %s; rerun the same command to continue",
                           signal.Signals(self.received).name, report["final_step"], report["requested_steps"],
                           report["checkpoints"])


class CheckpointHook(Hook):
    """An Orbax checkpoint every `every` steps, at the last step and at a step a signal stops, with the
    loader's position and the run's metadata; ranked by dev nDCG@10 when that step was evaluated."""

    def __init__(self, ckpt, loader_state: Callable[[], dict], meta: dict, every: int):
        self.ckpt, self.loader_state, self.meta, self.every = ckpt, loader_state, meta, every

    def after_step(self, event: StepEnd) -> None:
        if event.step % self.every == 0 or event.last or event.stop_signal:
            best = event.dev if event.dev and BEST_METRIC in event.dev else None
            self.ckpt.save(event.state, self.loader_state(), self.meta, metrics=best, force=True)

    def close(self) -> None:
        self.ckpt.close()  # waits for an asynchronous save to finish


class ProgressHook(Hook):
    """A progress bar on stderr (process 0) with the latest loss."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.enabled, self.bar = total, enabled, None

    def start(self, step: int, report: dict) -> None:
        from tqdm import tqdm  # its import is slow and only the loop needs it

        self.bar = tqdm(total=self.total, initial=step, disable=not self.enabled, desc="train", dynamic_ncols=True)

    def after_step(self, event: StepEnd) -> None:
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{event.metrics['loss']:.4f}")

    def close(self) -> None:
        self.bar.close()


class ReportHook(Hook):
    """report.json and loss.png (from metrics.jsonl) in the run folder, written by process 0 at the end."""

    def __init__(self, out: Path, metrics_path: Path, enabled: bool):
        self.out, self.metrics_path, self.enabled = out, metrics_path, enabled

    def finish(self, report: dict) -> None:
        if self.enabled:
            report["loss_plot"] = str(plot_losses(self.metrics_path, self.out / "loss.png"))
            write_json(self.out / "report.json", report, indent=2)
