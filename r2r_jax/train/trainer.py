"""The trainer: teacher records to a trained student, as set-up, a short loop and hooks.

`check_run` makes every decision that can refuse a run before anything is written (run_folder.py);
`set_up` loads the tokenizer, the records and the student and restores the latest checkpoint, so a killed run
resumes exactly where it stopped; `run_steps` runs steps and stops on a non-finite loss. Everything around a
step — metrics, dev evaluation, signals, checkpoints, the progress bar, the report — is a hook (hooks.py).
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh

from r2r_jax.checkpoint import Checkpointer
from r2r_jax.config import ModelConfig, TrainConfig
from r2r_jax.config_io import ConfigError, save_yaml
from r2r_jax.data.features import BatchShapes, batch_spec
from r2r_jax.data.packing import PackShapes, pack_batch, packed_batch_spec
from r2r_jax.data.pipeline import TeacherLoader
from r2r_jax.inference.score_step import make_score_step
from r2r_jax.parallel.batch import batch_sharding, data_parallel_size, global_batch
from r2r_jax.parallel.mesh import make_mesh, maybe_initialize_distributed
from r2r_jax.train.dev_set import DevSet
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
from r2r_jax.train.metrics_log import LOSS_KEYS, MetricsLog
from r2r_jax.train.remat_choice import resolve_auto
from r2r_jax.train.run_folder import check_run_folder, hold_run_folder
from r2r_jax.train.run_inputs import checked_tokenizer, open_loader, truncate_log
from r2r_jax.train.setup import Prepared, prepare, resolve_model_config
from r2r_jax.train.step import jit_train_step, make_train_step, state_shardings

logger = logging.getLogger(__name__)


def train(cfg: TrainConfig) -> dict:
    """Train as `cfg` says and return the run's report; process 0 holds the output folder for the whole run
    (one job per folder)."""
    maybe_initialize_distributed()
    with hold_run_folder(cfg, jax.process_index() == 0):
        mesh = make_mesh(cfg.mesh)
        cfg, model_cfg, resume_step = check_run(cfg, mesh)
        if resume_step is not None and resume_step >= cfg.steps:
            return finished_before(cfg, resume_step)
        run = set_up(cfg, model_cfg, mesh)
        return run_steps(run, TrainStep(run), default_hooks(run))


@dataclass
class Run:
    """A run set up to train: its config, mesh, student, data, checkpoints, log and first step."""

    cfg: TrainConfig
    mesh: Mesh
    prepared: Prepared
    tokenizer: Any
    loader: TeacherLoader
    ckpt: Checkpointer
    log: MetricsLog
    start: int
    dev: DevSet | None = None  # data.dev_candidates and its qrels, read before anything was written

    @property
    def out(self) -> Path:
        return Path(self.cfg.output_dir)

    @property
    def is_main(self) -> bool:
        return jax.process_index() == 0


def check_run(cfg: TrainConfig, mesh: Mesh) -> tuple[TrainConfig, ModelConfig, int | None]:
    """Every check that can refuse the run, before anything is written: returns the config (with
    `remat_policy: auto` resolved), the model's shape and the step a resume starts from (None: a fresh run)."""
    if cfg.batch_size % data_parallel_size(mesh):  # found when the first batch is sharded, after the model loads
        raise ConfigError(f"batch_size={cfg.batch_size} does not split over the {data_parallel_size(mesh)} "
                          "data-parallel devices (mesh.data x mesh.fsdp); use a multiple of it")
    if not cfg.data.tokenizer:
        raise ConfigError("data.tokenizer is required (a Hugging Face tokenizer folder)")
    model_cfg = resolve_model_config(cfg)
    if cfg.model.remat_policy == "auto":
        cfg = resolve_auto(cfg, mesh, model_cfg, report=logger.info if jax.process_index() == 0 else _silent)
        model_cfg = resolve_model_config(cfg)
    return cfg, model_cfg, check_run_folder(cfg, model_cfg)


def _silent(_line: str) -> None:
    """Other processes' copy of a line process 0 reports."""


def finished_before(cfg: TrainConfig, step: int) -> dict:
    """The report of a run whose folder already holds its last step: nothing is trained or written."""
    logger.info("%s already holds step %d of steps=%d; nothing to train (raise --steps to continue)",
                cfg.output_dir, step, cfg.steps)
    saved = Path(cfg.output_dir) / "report.json"
    previous = json.loads(saved.read_text()) if saved.is_file() else {}
    return {**previous, "final_step": step, "exit_code": 0, "finished_before": True}


def set_up(cfg: TrainConfig, model_cfg: ModelConfig, mesh: Mesh) -> Run:
    """Load what the run trains on and restore its latest checkpoint; the first write into the output folder
    comes after every load that can fail."""
    tokenizer = checked_tokenizer(cfg.data, model_cfg)
    loader = open_loader(cfg, tokenizer)
    dev = DevSet(cfg, tokenizer, mesh) if cfg.data.dev_candidates else None  # a bad dev file fails here, too
    prepared = prepare(cfg, mesh)
    out, is_main = Path(cfg.output_dir), jax.process_index() == 0
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
    ckpt = Checkpointer(out / "checkpoints", keep=cfg.keep_checkpoints)
    start = 0
    if ckpt.latest_step() is not None:  # restored before anything is written: a torn checkpoint changes nothing
        prepared.state, loader_state, _ = ckpt.restore(prepared.state)  # CheckpointError names it and its step
        loader.restore(loader_state)
        start = int(jax.device_get(prepared.state.step))
    loader.step = start
    if is_main:
        save_yaml(cfg, out / "config.yaml")
    log = MetricsLog(out, enabled=is_main)
    if start and is_main:
        truncate_log(log.path, start)
        logger.info("resumed from step %d in %s", start, ckpt.directory)
    return Run(cfg, mesh, prepared, tokenizer, loader, ckpt, log, start, dev)


def default_hooks(run: Run) -> list[Hook]:
    """`r2r train`'s hooks, in the order they run after a step."""
    cfg = run.cfg
    hooks: list[Hook] = [MetricsHook(run.log, cfg.log_every, jax.process_count())]
    if run.dev is not None:
        dev, score_fn = run.dev, make_score_step(run.prepared.student.model, mesh=run.mesh)
        hooks.append(DevEvalHook(lambda path: dev.evaluate(run.prepared, score_fn, path), run.log, run.out,
                                 cfg.eval_every))
    return hooks + [SignalHook(), CheckpointHook(run.ckpt, run.loader.state, run.prepared.meta(), cfg.save_every),
                    ProgressHook(cfg.steps, run.is_main), ReportHook(run.out, run.log.path, run.is_main)]


class TrainStep:
    """The run's jitted train step for its batch layout, padded and (with `data.pack_length`) packed."""

    def __init__(self, run: Run):
        cfg, student, mesh = run.cfg, run.prepared.student, run.mesh
        self.run = run
        step_fn = make_train_step(student.model, cfg.loss, run.prepared.optimizer, run.prepared.schedule,
                                  cfg.micro_batches, mesh, reason_rows=cfg.data.group_size)
        self.shapes = BatchShapes.from_config(cfg.data)
        self.pack = PackShapes(cfg.data.pack_rows, cfg.data.pack_length) if cfg.data.pack_length else None

        def jitted_for(spec: dict):
            batch_sh = {k: batch_sharding(len(shape), mesh) for k, (shape, _) in spec.items()}
            return jit_train_step(step_fn, state_shardings(run.prepared.state), student.frozen_shardings, batch_sh)

        self.padded = jitted_for(batch_spec(self.shapes, cfg.batch_size))
        self.packed = jitted_for(packed_batch_spec(self.shapes, self.pack, cfg.batch_size)) if self.pack else None

    def __call__(self, state, local: dict, rng) -> tuple[Any, dict[str, float]]:
        """One step on this process's rows of the global batch: the new state (the old one is donated) and
        the step's metrics as floats."""
        packed = pack_for_step(local, self.shapes, self.pack, self.run.loader.pad_id)
        fn, local = (self.padded, local) if packed is None else (self.packed, packed)
        new_state, metrics = fn(state, self.run.prepared.student.frozen, global_batch(local, self.run.mesh), rng)
        metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
        if self.pack:
            metrics["packed"] = float(packed is not None)
        return new_state, metrics


def pack_for_step(local: dict, shapes: BatchShapes, pack: PackShapes | None, pad_id: int) -> dict | None:
    """This step's packed batch, or None for the padded step: packing is off, or some query of some process
    does not fit (every process must run the same program, so the processes agree first)."""
    if pack is None:
        return None
    packed = pack_batch(local, shapes, pack, pad_id)
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils  # multi-process runs only

        if not np.all(multihost_utils.process_allgather(np.int32(packed is not None))):
            return None
    return packed


def run_steps(run: Run, step_fn, hooks: list[Hook]) -> dict:
    """Steps `run.start` to `cfg.steps` with `hooks` around them; the report (exit_code 1 after a non-finite
    loss, 128 + signal after SIGTERM or Ctrl-C)."""
    cfg, rng = run.cfg, jax.random.key(run.cfg.seed)
    report: dict = {"output_dir": str(run.out.absolute()), "start_step": run.start}
    last, final_step, stop_signal, started = None, run.start, None, []
    try:
        for hook in hooks:
            hook.start(run.start, report)
            started.append(hook)
        for step in range(run.start, cfg.steps):
            began, local = time.perf_counter(), run.loader.batch(step)
            new_state, metrics = step_fn(run.prepared.state, local, rng)
            if not all(math.isfinite(metrics[k]) for k in LOSS_KEYS):
                # the step donated the old state, so nothing below may read run.prepared.state again
                report["stopped"] = non_finite(step + 1, metrics, run.ckpt)
                final_step = run.ckpt.latest_step() or 0  # what the folder holds, and where a rerun starts
                break
            run.prepared.state, run.loader.step, last, final_step = new_state, step + 1, metrics, step + 1
            event = StepEnd(step + 1, metrics, batch_tokens(local), began, new_state, last=step + 1 == cfg.steps)
            for hook in hooks:
                hook.after_step(event)
            if event.stop_signal:
                stop_signal = event.stop_signal
                break
    finally:
        for hook in reversed(started):
            hook.close()
    if "stopped" in report and run.is_main:
        logger.error(report["stopped"])
    report.update({"final_step": final_step, "requested_steps": cfg.steps, "interrupted": stop_signal is not None,
                   "last_metrics": last, "checkpoints": str(run.ckpt.directory), "metrics": str(run.log.path),
                   "exit_code": 1 if "stopped" in report else 128 + stop_signal if stop_signal else 0})
    for hook in hooks:
        hook.finish(report)
    return report


def batch_tokens(local: dict) -> int:
    """Real tokens of a batch: its scoring sequences' and comparison sequences' attention masks."""
    return int(local["attention_mask"].sum() + local["cmp_attention_mask"].sum())


def non_finite(step: int, metrics: dict[str, float], ckpt: Checkpointer) -> str:
    """The one line a non-finite loss ends a run with: the step, the losses that blew up, what is kept."""
    bad = ", ".join(f"{k} {metrics[k]}" for k in LOSS_KEYS if not math.isfinite(metrics[k]))
    saved = ckpt.latest_step()
    kept = (f"the last checkpoint, step {saved}, is intact in {ckpt.directory}" if saved is not None
            else "no checkpoint was saved before it")
    return (f"non-finite loss at step {step} ({bad}); stopped without saving that step: {kept} (a lower "
            "--optim.learning-rate or --optim.max-grad-norm usually helps)")
