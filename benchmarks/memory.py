"""Peak host memory of LoRA training and of reranking, JAX student against transformers + peft.

    python -m benchmarks.memory [--presets tiny,small,medium] [--tasks train,rerank] [--json out.json]
    python -m benchmarks.memory --quick            # smoke run: tiny preset only

Every figure comes from its own fresh subprocess (`--worker`), which imports only its own stack, loads the
model as a user would, runs the work and reports its peak resident set size (`VmHWM` from /proc/self/status,
the high-water mark of the whole process: libraries, weights, compilation, activations,
optimizer state) and its RSS right after the imports (the framework's own share). The parent saves one random
float32 Hugging Face folder per preset and task, which both stacks load:
- train: a LlamaForCausalLM folder; JAX imports it (`import_hf_params`, as `r2r train --base-model` does) and
  runs the project's train step, torch loads it with `from_pretrained` and runs the peft step
  (benchmarks/torch_stack.py); the preset's batch (benchmarks/common.py), `--steps` optimizer steps.
- rerank: a LlamaForSequenceClassification folder (the seq-cls export's layout); JAX loads it with the
  rerank job's loader (`load_from_hf`), torch with `from_pretrained`; the first DL19 query's 100 candidates
  with the Llama-3.1 tokenizer (tokenized by the parent, passed as a .npz), truncated to 256 tokens, batches
  of 32, prompt-only scoring.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .common import REPO, add_run_options, machine, preset, synthetic_batch, wait_for_quiet
from .common import write_json as emit


def rss_mib() -> float:
    """Current resident set size of this process (MiB)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mib() -> float:
    """High-water RSS of this process's own address space (`VmHWM`). Not `ru_maxrss`: Linux keeps that across
    exec, so a worker forked from the (large) parent would report at least the parent's size."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    raise RuntimeError("no VmHWM in /proc/self/status")


def _train_jax(name: str, folder: Path, steps: int) -> None:
    from r2r_jax.model.hf_import import import_hf_params

    from . import jax_stack

    p = preset(name)
    params = import_hf_params(folder, p.model, with_score=False)
    batch = synthetic_batch(p.shape, p.model.vocab_size)
    step = jax_stack.JaxTrainStep(p, *jax_stack.student(p, base_params=params), batch)
    for _ in range(steps):
        step()


def _train_torch(name: str, folder: Path, steps: int) -> None:
    from transformers import LlamaForCausalLM

    from . import torch_stack

    p = preset(name)
    pt = torch_stack.TorchR2RStep(LlamaForCausalLM.from_pretrained(folder, dtype="float32"), p.lora, p.loss)
    batch = torch_stack.torch_batch(synthetic_batch(p.shape, p.model.vocab_size))
    for _ in range(steps):
        pt.step(batch)


def _rerank_jax(folder: Path, prompts: Path, batch_size: int) -> None:
    from r2r_jax.trained.loading import load_from_hf

    from . import jax_stack
    from .common import LLAMA_TOKENIZER

    data = np.load(prompts)
    st = load_from_hf(folder, jax_stack.one_device_mesh(), dtype="float32", attention="loop",
                      tokenizer=str(LLAMA_TOKENIZER))
    jax_stack.scorer(st.model, st.variables, batch_size)(data["ids"], data["mask"])


def _rerank_torch(folder: Path, prompts: Path, batch_size: int) -> None:
    from transformers import LlamaForSequenceClassification

    from . import torch_stack

    data = np.load(prompts)
    model = LlamaForSequenceClassification.from_pretrained(folder, dtype="float32")
    torch_stack.TorchScorer(model)(data["ids"], data["mask"], batch_size)


def worker(args) -> None:
    """Run one measurement in this process and print its JSON line."""
    if args.stack == "jax":
        import jax

        if not os.environ.get("JAX_PLATFORMS"):
            jax.config.update("jax_platforms", "cpu")
        jax.devices()
    else:
        import torch

        torch.set_num_threads(args.threads)
        import peft  # noqa: F401  (the training side's libraries, loaded before the baseline)
        import transformers  # noqa: F401
    after_import = rss_mib()
    start = time.perf_counter()
    folder = Path(args.folder)
    if args.task == "train":
        (_train_jax if args.stack == "jax" else _train_torch)(args.preset, folder, args.steps)
    else:
        (_rerank_jax if args.stack == "jax" else _rerank_torch)(folder, Path(args.prompts), args.batch_size)
    print(json.dumps({"rss_after_import_mib": round(after_import, 1), "peak_rss_mib": round(peak_rss_mib(), 1),
                      "seconds": round(time.perf_counter() - start, 1)}))


def worker_cmd(task: str, stack: str, name: str, args, folder: Path, prompts: Path | None) -> list[str]:
    cmd = [sys.executable, "-m", "benchmarks.memory", "--worker", "--task", task, "--stack", stack, "--presets", name,
           "--steps", str(args.steps), "--threads", str(args.threads), "--batch-size", str(args.batch_size),
           "--folder", str(folder)]
    if prompts is not None:
        cmd += ["--prompts", str(prompts)]
    return cmd


def run_workers(cmds: list[list[str]], parallel: bool, timeout: float) -> list[dict]:
    """Each command's JSON line; `parallel` starts them together (peak RSS is per process, so only the time
    changes), otherwise one after the other. Output goes through files, so no pipe can fill up and block."""
    groups = [cmds] if parallel else [[c] for c in cmds]
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for gi, group in enumerate(groups):
            logs = [(Path(tmp) / f"{gi}_{i}.out", Path(tmp) / f"{gi}_{i}.err") for i in range(len(group))]
            procs = []
            for cmd, (o, e) in zip(group, logs, strict=True):
                with open(o, "w") as fo, open(e, "w") as fe:
                    procs.append(subprocess.Popen(cmd, cwd=REPO, stdout=fo, stderr=fe, text=True))
            for cmd, proc, (o, e) in zip(group, procs, logs, strict=True):
                if proc.wait(timeout=timeout) != 0:
                    raise RuntimeError(f"{' '.join(cmd)} failed:\n{e.read_text()[-3000:]}")
                out.append(json.loads(o.read_text().strip().splitlines()[-1]))
    return out


def prepare_prompts(folder: Path, max_len: int) -> tuple[Path, int]:
    from .rerank import load_prompts

    ids, mask, pad = load_prompts(1, max_len)
    path = folder / "prompts.npz"
    np.savez(path, ids=ids, mask=mask)
    return path, pad


def prepare_model(folder: Path, name: str, task: str, pad: int) -> Path:
    """The random model both stacks load: a causal LM (train) or a seq-cls export (rerank), float32."""
    from . import torch_stack
    from .rerank import scoring_preset

    out = folder / f"{name}_{task}"
    if task == "train":
        model = torch_stack.random_causal_lm(preset(name).model)
    else:
        model = torch_stack.random_seq_cls(scoring_preset(name), pad_token_id=pad)
    model.save_pretrained(out)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default="tiny,small,medium")
    ap.add_argument("--tasks", default="train,rerank")
    ap.add_argument("--steps", type=int, default=2, help="training steps per measurement")
    ap.add_argument("--batch-size", type=int, default=32, help="rerank batch size")
    ap.add_argument("--max-len", type=int, default=256, help="rerank prompt truncation")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per measurement")
    add_run_options(ap)
    ap.add_argument("--parallel", action="store_true", help="run the measuring subprocesses at the same time")
    ap.add_argument("--quick", action="store_true", help="smoke run: tiny preset only, one step, in parallel")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--task", default="train", help=argparse.SUPPRESS)
    ap.add_argument("--stack", default="jax", help=argparse.SUPPRESS)
    ap.add_argument("--prompts", default="", help=argparse.SUPPRESS)
    ap.add_argument("--folder", default="", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        args.preset = args.presets
        worker(args)
        return 0
    if args.quick:
        args.presets, args.steps, args.max_len, args.parallel = "tiny", 1, 128, True
    if args.max_load:
        wait_for_quiet(args.max_load, args.wait_s)
    info = machine("jax", "jaxlib", "flax", "optax", "torch", "transformers", "peft")
    tasks = [t.strip() for t in args.tasks.split(",")]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        prompts, pad = prepare_prompts(Path(tmp), args.max_len) if "rerank" in tasks else (None, 0)
        names = [n.strip() for n in args.presets.split(",")]
        folders = {(n, t): prepare_model(Path(tmp), n, t, pad) for n in names for t in tasks}
        jobs = [(name, task, stack) for name in names for task in tasks for stack in ("jax", "torch")]
        cmds = [worker_cmd(task, stack, name, args, folders[(name, task)], prompts if task == "rerank" else None)
                for name, task, stack in jobs]
        measured = dict(zip(jobs, run_workers(cmds, args.parallel, args.timeout), strict=True))
        for name, task, _ in jobs[::2]:
            row = {"preset": name, "task": task, "jax": measured[(name, task, "jax")],
                   "torch": measured[(name, task, "torch")]}
            row["peak_ratio_jax_over_torch"] = row["jax"]["peak_rss_mib"] / row["torch"]["peak_rss_mib"]
            results.append(row)
            print(f"# {name} {task}: peak RSS jax {row['jax']['peak_rss_mib']:.0f} MiB, torch "
                      f"{row['torch']['peak_rss_mib']:.0f} MiB (after imports {row['jax']['rss_after_import_mib']:.0f}"
                      f" / {row['torch']['rss_after_import_mib']:.0f})", file=sys.stderr, flush=True)
    emit(args.json, {"benchmark": "memory", "machine": info, "steps": args.steps, "rerank_max_len": args.max_len,
                     "rerank_batch_size": args.batch_size, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
