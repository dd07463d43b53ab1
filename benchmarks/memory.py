"""Peak host memory of LoRA training and of reranking, JAX student against transformers + peft.

    python -m benchmarks.memory [--presets tiny,small,medium] [--tasks train,rerank] [--json out.json]
    python -m benchmarks.memory --quick            # smoke run: tiny preset only

Every figure comes from its own fresh subprocess (`--worker`), which imports only its own stack, builds the
preset's model with random weights in memory, runs the work and reports its peak resident set size
(`getrusage(RUSAGE_SELF).ru_maxrss`, the high-water mark of the whole process: libraries, weights,
compilation, activations, optimizer state) and its RSS right after the imports (the framework's own share).
train: the preset's batch (benchmarks/common.py), `--steps` optimizer steps. rerank: the first DL19 query's
100 candidates with the Llama-3.1 tokenizer (tokenized by the parent, passed as a .npz), truncated to 256
tokens, batches of 32, prompt-only scoring with the LoRA merged away (a seq-cls model).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .common import REPO, machine, preset, synthetic_batch, wait_for_quiet
from .common import write_json as emit


def rss_mib() -> float:
    """Current resident set size of this process (MiB)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _train_jax(name: str, steps: int) -> None:
    from . import jax_stack

    p = preset(name)
    step = jax_stack.JaxTrainStep(p, jax_stack.student(p), synthetic_batch(p.shape, p.model.vocab_size))
    for _ in range(steps):
        step()


def _train_torch(name: str, steps: int) -> None:
    from . import torch_stack

    p = preset(name)
    pt = torch_stack.TorchR2RStep(torch_stack.random_causal_lm(p.model), p.lora, p.loss)
    batch = torch_stack.torch_batch(synthetic_batch(p.shape, p.model.vocab_size))
    for _ in range(steps):
        pt.step(batch)


def _rerank_jax(name: str, prompts: Path, batch_size: int) -> None:
    import jax

    from r2r_jax.train.student import build_student

    from . import jax_stack
    from .rerank import scoring_preset

    data = np.load(prompts)
    st = build_student(scoring_preset(name), None, jax_stack.one_device_mesh(), jax.random.key(0))
    jax_stack.scorer(st.model, st.variables(), batch_size)(data["ids"], data["mask"])


def _rerank_torch(name: str, prompts: Path, batch_size: int) -> None:
    from . import torch_stack
    from .rerank import scoring_preset

    data = np.load(prompts)
    model = torch_stack.random_seq_cls(scoring_preset(name), int(data["pad"]))
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
    if args.task == "train":
        (_train_jax if args.stack == "jax" else _train_torch)(args.preset, args.steps)
    else:
        (_rerank_jax if args.stack == "jax" else _rerank_torch)(args.preset, Path(args.prompts), args.batch_size)
    print(json.dumps({"rss_after_import_mib": round(after_import, 1), "peak_rss_mib": round(peak_rss_mib(), 1),
                      "seconds": round(time.perf_counter() - start, 1)}))


def measure(task: str, stack: str, name: str, args, prompts: Path | None) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.memory", "--worker", "--task", task, "--stack", stack, "--presets", name,
           "--steps", str(args.steps), "--threads", str(args.threads), "--batch-size", str(args.batch_size)]
    if prompts is not None:
        cmd += ["--prompts", str(prompts)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=args.timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def prepare_prompts(folder: Path, max_len: int) -> Path:
    from .rerank import load_prompts

    ids, mask, pad = load_prompts(1, max_len)
    path = folder / "prompts.npz"
    np.savez(path, ids=ids, mask=mask, pad=pad)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default="tiny,small,medium")
    ap.add_argument("--tasks", default="train,rerank")
    ap.add_argument("--steps", type=int, default=2, help="training steps per measurement")
    ap.add_argument("--batch-size", type=int, default=32, help="rerank batch size")
    ap.add_argument("--max-len", type=int, default=256, help="rerank prompt truncation")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per measurement")
    ap.add_argument("--max-load", type=float, default=0.0)
    ap.add_argument("--wait-s", type=float, default=600.0)
    ap.add_argument("--json", default="")
    ap.add_argument("--quick", action="store_true", help="smoke run: tiny preset only, one step")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--task", default="train", help=argparse.SUPPRESS)
    ap.add_argument("--stack", default="jax", help=argparse.SUPPRESS)
    ap.add_argument("--prompts", default="", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        args.preset = args.presets
        worker(args)
        return 0
    if args.quick:
        args.presets, args.steps, args.max_len = "tiny", 1, 128
    if args.max_load:
        wait_for_quiet(args.max_load, args.wait_s)
    info = machine("jax", "jaxlib", "flax", "optax", "torch", "transformers", "peft")
    tasks = [t.strip() for t in args.tasks.split(",")]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        prompts = prepare_prompts(Path(tmp), args.max_len) if "rerank" in tasks else None
        for name in [n.strip() for n in args.presets.split(",")]:
            for task in tasks:
                row = {"preset": name, "task": task}
                for stack in ("jax", "torch"):
                    row[stack] = measure(task, stack, name, args, prompts if task == "rerank" else None)
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
