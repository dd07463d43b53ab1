"""`r2r train --config FILE [--a.b=value ...]`: teacher records to a trained student.

Loads the base (HF folder or random init), streams deterministic batches, runs the jitted step,
logs to metrics.jsonl + TensorBoard, evaluates dev nDCG, checkpoints with Orbax (resuming exactly
where a killed run stopped), saves on SIGTERM or Ctrl-C (exit 128 + signal, `interrupted` in report.json),
and stops cleanly on a non-finite loss. Everything that can refuse a run (run_folder.py) is checked before
the output folder is written.
"""

from __future__ import annotations

import json
import math
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np

from r2r_jax.atomic import write_json
from r2r_jax.checkpoint import BEST_METRIC, Checkpointer, CheckpointError
from r2r_jax.config import DataConfig, TrainConfig
from r2r_jax.config_help import config_help
from r2r_jax.config_io import ConfigError, load_config, save_yaml
from r2r_jax.data.candidates import read_candidates
from r2r_jax.data.features import BatchShapes, batch_spec
from r2r_jax.data.packing import PackShapes, pack_batch, packed_batch_spec
from r2r_jax.data.pipeline import TeacherLoader
from r2r_jax.data.record_store import open_store
from r2r_jax.data.records import RecordError
from r2r_jax.data.templates import check_template, load_tokenizer, template_fit_problem
from r2r_jax.eval.metrics import evaluate
from r2r_jax.inference.score_step import make_score_step
from r2r_jax.inference.scoring import rank_query, score_candidates
from r2r_jax.parallel.batch import batch_sharding, data_parallel_size, global_batch
from r2r_jax.parallel.mesh import make_mesh, maybe_initialize_distributed
from r2r_jax.retrieval.trec import read_qrels, write_run
from r2r_jax.train.logging import LOSS_KEYS, MetricsLog, plot_losses
from r2r_jax.train.remat_choice import resolve_auto
from r2r_jax.train.run_folder import check_run_folder, hold_run_folder
from r2r_jax.train.setup import Prepared, prepare, resolve_model_config
from r2r_jax.train.step import jit_train_step, make_train_step, state_shardings


def dev_candidates(data: DataConfig) -> list:
    """The dev queries and candidates the trainer evaluates on: `dev_max_queries` first queries, each cut to
    its first `dev_max_candidates` candidates."""
    items = read_candidates(data.dev_candidates)
    if data.dev_max_queries:
        items = items[: data.dev_max_queries]
    if data.dev_max_candidates:
        for qc in items:
            qc.candidates = qc.candidates[: data.dev_max_candidates]
    return items


class DevSet:
    """Dev candidates + qrels, scored with the student's current adapters."""

    def __init__(self, cfg: TrainConfig, tokenizer, mesh):
        self.items = dev_candidates(cfg.data)
        self.qrels = read_qrels(cfg.data.dev_qrels)
        self.cfg, self.tokenizer, self.mesh = cfg, tokenizer, mesh
        data_devices = data_parallel_size(mesh)
        self.batch_size = max(data_devices, 32 // data_devices * data_devices)

    def evaluate(self, prepared: Prepared, score_fn, run_path: Path | None = None) -> dict[str, float]:
        """nDCG of the student's ranking of the dev candidates; with `run_path` (process 0) also its TREC run,
        so the first and last evaluations can be re-evaluated or compared without scoring again."""
        scores = score_candidates(score_fn, prepared.student.variables(prepared.state.trainable), self.tokenizer,
                                  self.items, self.cfg.data.prompt_template, self.cfg.data.max_prompt_len,
                                  self.batch_size, self.mesh)
        if run_path is not None and jax.process_index() == 0:
            write_run(run_path, {qc.qid: rank_query(qc, scores[qc.qid]) for qc in self.items}, tag="r2r-dev")
        result = evaluate(scores, self.qrels, ["ndcg@1", "ndcg@5", "ndcg@10"])
        return {k: float(v) for k, v in result.means.items()}


def _tokenizer(data: DataConfig):
    """The run's tokenizer, and the templates checked against it before the records or the model load: no
    BOS spelled out, and each prompt limit above the template's own length."""
    try:
        tokenizer = load_tokenizer(data.tokenizer)
    except FileNotFoundError as e:
        raise ConfigError(f"data.tokenizer: {e}") from None
    checks = [("prompt_template", "max_prompt_len", False)]
    if data.comparisons_per_query:
        checks.append(("comparison_template", "max_comparison_prompt_len", True))
    for template, limit, comparison in checks:
        fields = ("query", "passages") if comparison else ("query", "passage")
        try:
            check_template(getattr(data, template), fields, tokenizer)
        except ValueError as e:
            raise ConfigError(f"data.{template}: {e}") from None
        problem = template_fit_problem(tokenizer, getattr(data, template), getattr(data, limit), comparison)
        if problem:
            raise ConfigError(f"data.{limit}={getattr(data, limit)}: {problem}")
    return tokenizer


def _non_finite(step: int, metrics: dict[str, float], ckpt: Checkpointer) -> str:
    """The one line a non-finite loss ends a run with: the step, the losses that blew up, what is kept."""
    bad = ", ".join(f"{k} {metrics[k]}" for k in LOSS_KEYS if not math.isfinite(metrics[k]))
    saved = ckpt.latest_step()
    kept = (f"the last checkpoint, step {saved}, is intact in {ckpt.directory}" if saved is not None
            else "no checkpoint was saved before it")
    return (f"non-finite loss at step {step} ({bad}); stopped without saving that step: {kept} (a lower "
            "--optim.learning-rate or --optim.max-grad-norm usually helps)")


def _truncate_log(path: Path, step: int) -> None:
    """After a resume, drop log lines written after the restored checkpoint (they will be rewritten)."""
    if not path.is_file():
        return
    kept = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
    path.write_text("".join(line + "\n" for line in kept))


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


def train(cfg: TrainConfig) -> dict:
    """Train as `cfg` says; process 0 holds the output folder for the whole run (one job per folder)."""
    maybe_initialize_distributed()
    with hold_run_folder(cfg, jax.process_index() == 0):
        return _train(cfg)


def _train(cfg: TrainConfig) -> dict:
    mesh = make_mesh(cfg.mesh)
    out = Path(cfg.output_dir)
    is_main = jax.process_index() == 0
    if cfg.batch_size % data_parallel_size(mesh):  # found when the first batch is sharded, after the model loads
        raise ConfigError(f"batch_size={cfg.batch_size} does not split over the {data_parallel_size(mesh)} "
                          "data-parallel devices (mesh.data x mesh.fsdp); use a multiple of it")
    if not cfg.data.tokenizer:
        raise ConfigError("data.tokenizer is required (a Hugging Face tokenizer folder)")
    # every check that can refuse the run comes before the first write into the output folder
    model_cfg = resolve_model_config(cfg)
    if cfg.model.remat_policy == "auto":
        cfg = resolve_auto(cfg, mesh, model_cfg, report=lambda line: print(line) if is_main else None)
        model_cfg = resolve_model_config(cfg)
    resume_step = check_run_folder(cfg, model_cfg)
    if resume_step is not None and resume_step >= cfg.steps:
        print(f"r2r train: {out} already holds step {resume_step} of steps={cfg.steps}; nothing to train "
              "(raise --steps to continue)", file=sys.stderr)
        saved = out / "report.json"
        previous = json.loads(saved.read_text()) if saved.is_file() else {}
        return {**previous, "final_step": resume_step, "exit_code": 0, "finished_before": True}
    tokenizer = _tokenizer(cfg.data)
    if len(tokenizer) > model_cfg.vocab_size:
        raise ConfigError(f"data.tokenizer {cfg.data.tokenizer} has {len(tokenizer)} tokens but the model's "
                          f"vocabulary is {model_cfg.vocab_size}; use the base's tokenizer or a larger vocab_size")
    # records are validated and tokenized once into a memory-mapped store (cached by source, config and tokenizer)
    store = open_store(cfg.data.train_path, tokenizer, cfg.data.tokenizer, cfg.data, cfg.data.cache_dir or None)
    if not len(store):
        raise RecordError("holds no records (the file is empty)", path=cfg.data.train_path)
    loader = TeacherLoader.from_tokenized(store, tokenizer, cfg.data, global_batch_size=cfg.batch_size,
                                          process_index=jax.process_index(), process_count=jax.process_count())
    prepared = prepare(cfg, mesh)
    meta = prepared.meta()
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
    ckpt = Checkpointer(out / "checkpoints", keep=cfg.keep_checkpoints)
    start = 0
    if ckpt.latest_step() is not None:  # restored before anything is written: a torn checkpoint changes nothing
        state, loader_state, _ = ckpt.restore(prepared.state)  # CheckpointError names it and its step
        loader.restore(loader_state)
        prepared.state = state
        start = int(jax.device_get(state.step))
    loader.step = start
    if is_main:
        save_yaml(cfg, out / "config.yaml")
    log = MetricsLog(out, enabled=is_main)
    if start and is_main:
        _truncate_log(log.path, start)
        print(f"resumed from step {start} in {ckpt.directory}")

    step_fn = make_train_step(prepared.student.model, cfg.loss, prepared.optimizer, prepared.schedule,
                              cfg.micro_batches, mesh, reason_rows=cfg.data.group_size)

    shapes = BatchShapes.from_config(cfg.data)
    pack = PackShapes(cfg.data.pack_rows, cfg.data.pack_length) if cfg.data.pack_length else None

    def jitted_for(spec: dict) -> Callable:
        batch_sh = {k: batch_sharding(len(shape), mesh) for k, (shape, _) in spec.items()}
        return jit_train_step(step_fn, state_shardings(prepared.state), prepared.student.frozen_shardings, batch_sh)

    jitted = jitted_for(batch_spec(shapes, cfg.batch_size))
    jitted_packed = jitted_for(packed_batch_spec(shapes, pack, cfg.batch_size)) if pack else None
    score_fn = make_score_step(prepared.student.model, mesh=mesh)
    dev = DevSet(cfg, tokenizer, mesh) if cfg.data.dev_candidates else None
    report: dict = {"output_dir": str(out.absolute()), "start_step": start}
    if dev is not None and start == 0:
        report["dev_before"] = dev.evaluate(prepared, score_fn, out / "dev_run_step0.trec")
        log.write_eval(0, report["dev_before"])

    # SIGTERM (a preempted job, `timeout`) and Ctrl-C both finish the step, save it and exit 128 + signal
    stop: dict[str, int] = {}
    previous = {sig: signal.signal(sig, lambda signum, _frame: stop.setdefault("signal", signum))
                for sig in (signal.SIGTERM, signal.SIGINT)}
    rng = jax.random.key(cfg.seed)
    from tqdm import tqdm

    bar = tqdm(total=cfg.steps, initial=start, disable=not is_main, desc="train", dynamic_ncols=True)
    last, exit_code, final_step = None, 0, start
    window_tokens, window_start = 0, time.perf_counter()
    try:
        for step in range(start, cfg.steps):
            local = loader.batch(step)
            window_tokens += int(local["attention_mask"].sum() + local["cmp_attention_mask"].sum())
            packed = pack_for_step(local, shapes, pack, loader.pad_id)
            fn, local = (jitted, local) if packed is None else (jitted_packed, packed)
            new_state, metrics = fn(prepared.state, prepared.student.frozen, global_batch(local, mesh), rng)
            metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
            if pack:
                metrics["packed"] = float(packed is not None)
            if not all(math.isfinite(metrics[k]) for k in LOSS_KEYS):
                # the step donated the old state, so nothing below may read prepared.state again
                report["stopped"] = _non_finite(step + 1, metrics, ckpt)
                final_step = ckpt.latest_step() or 0  # what the folder holds, and where a rerun starts
                if is_main:
                    print(f"\nr2r train: error: {report['stopped']}", file=sys.stderr)
                exit_code = 1
                break
            prepared.state, loader.step, last = new_state, step + 1, metrics
            done = final_step = step + 1
            bar.update(1)
            bar.set_postfix(loss=f"{metrics['loss']:.4f}")
            if done % cfg.log_every == 0 or done == cfg.steps:
                elapsed = time.perf_counter() - window_start
                log.write(done, {**metrics, "tokens_per_second": window_tokens * jax.process_count() / elapsed})
                window_tokens, window_start = 0, time.perf_counter()
            evaluated = None
            if dev is not None and ((cfg.eval_every and done % cfg.eval_every == 0) or done == cfg.steps):
                final_run = out / f"dev_run_step{done}.trec" if done == cfg.steps else None
                evaluated = dev.evaluate(prepared, score_fn, final_run)
                log.write_eval(done, evaluated)
                report["dev_after"] = evaluated
            if done % cfg.save_every == 0 or done == cfg.steps or stop:
                ckpt.save(prepared.state, loader.state(), meta,
                          metrics=evaluated if evaluated and BEST_METRIC in evaluated else None,
                          force=True)
            if stop:
                name = signal.Signals(stop["signal"]).name
                print(f"\nr2r train: {name}: saved step {done} of {cfg.steps} to {ckpt.directory}; rerun the "
                      "same command to continue", file=sys.stderr)
                exit_code = 128 + stop["signal"]
                break
    finally:
        bar.close()
        ckpt.close()
        log.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    report.update({"final_step": final_step, "requested_steps": cfg.steps, "interrupted": bool(stop),
                   "last_metrics": last, "checkpoints": str(ckpt.directory), "metrics": str(log.path),
                   "exit_code": exit_code})
    if is_main:
        report["loss_plot"] = str(plot_losses(log.path, out / "loss.png"))
        write_json(out / "report.json", report, indent=2)
    return report


def main(argv: list[str]) -> int:
    if "-h" in argv or "--help" in argv:
        print(config_help(TrainConfig, "r2r train", "Train a student from teacher records: LoRA adapters and a "
                                                    "score head on a Llama base."), end="")
        return 0
    try:
        cfg = load_config(TrainConfig, argv, prog="r2r train")
        report = train(cfg)
    except (ConfigError, RecordError, CheckpointError, FileNotFoundError) as e:
        print(f"r2r train: error: {e}", file=sys.stderr)
        return 2
    if jax.process_index() == 0:
        print(json.dumps({k: report[k] for k in ("final_step", "last_metrics", "dev_before", "dev_after")
                          if k in report}, indent=2))
    return int(report["exit_code"])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
