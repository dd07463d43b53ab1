"""LoRA train-step throughput: the JAX student against transformers + peft, same model, same run.

    python -m benchmarks.train_step [--presets tiny,small,medium] [--reps 5] [--threads 2] [--json out.json]
    python -m benchmarks.train_step --presets medium --only jax   # one stack alone, in its own process
    python -m benchmarks.train_step --quick        # smoke run: tiny only, 2 repetitions
    python -m benchmarks.train_step --presets "" --base runs/bases/smollm2-135m   # the real base, recipe's batch

Per preset (see benchmarks/common.py) one random Llama is made in transformers, saved as safetensors and
imported into JAX (`import_hf_params`), so both stacks hold the same weights and the same score head; their
first losses on the same batch are printed side by side as a check that they compute the same thing. Then
the two steps run alternately (JAX, torch, JAX, torch, ...) after one warm-up each; the figures are medians.
FLOPs are the analytic model FLOPs of `r2r_jax.compile.flops` (forward + the activation gradients LoRA
needs, LM head on target tokens only, dense attention), the same numerator for both stacks; the JAX step
executes no more (its fused LM-head loss takes the gradient in the forward pass, r2r_jax/train/token_ce.py).
The peak is a large float32 matmul in each stack. Between timed calls (untimed) garbage is collected and the
C heap trimmed, so neither stack runs on the other's leftover heap. `--only jax|torch` times one stack alone
in its own process, a cross-check on what sharing the process costs each.
"""

from __future__ import annotations

import argparse
import functools
import gc
import sys
import tempfile

import jax
import numpy as np

from r2r_jax.compile.flops import train_step_flops
from r2r_jax.model.hf_import import import_hf_params

from . import jax_stack, torch_stack
from .common import (
    PRESET_NAMES,
    RECIPE_CONFIG,
    Preset,
    add_run_options,
    alternate,
    fmt_rate,
    median,
    preset,
    recipe_preset,
    start_timed_run,
    synthetic_batch,
)
from .common import load_average as current_load
from .common import write_json as emit


def measure_peak(n: int, reps: int) -> dict[str, float]:
    """Median float32 matmul FLOP/s of each stack (alternating blocks of `reps` matmuls)."""
    rates: dict[str, list[float]] = {"jax": [], "torch": []}
    for _ in range(3):
        rates["jax"] += jax_stack.peak_matmul(n, reps)
        rates["torch"] += torch_stack.peak_matmul(n, reps)
    return {k: median(v) for k, v in rates.items()}


def bench_preset(p: Preset, reps: int, warmup: int, peak: dict[str, float], gate=None,
                 stacks: tuple[str, ...] = ("jax", "torch"), base_folder: str = "") -> dict:
    """One preset; `stacks` may name one stack only (`--only`), to time it alone in its own process. With
    `base_folder` both stacks load that HF folder's real weights; otherwise one random Llama is made."""
    batch = synthetic_batch(p.shape, p.model.vocab_size, seed=0)
    runners, first, compile_s = {}, {}, None
    if base_folder:
        base = torch_stack.load_causal_lm(base_folder)
        params = import_hf_params(base_folder, p.model, with_score=False)
    else:
        base = torch_stack.random_causal_lm(p.model, seed=0)
        with tempfile.TemporaryDirectory() as tmp:
            base.save_pretrained(tmp)
            params = import_hf_params(tmp, p.model, with_score=False)
    st, trainable = jax_stack.student(p, base_params=params)
    score_init = np.asarray(trainable["score"]["kernel"])
    if "jax" in stacks:
        runners["jax"] = jax_stack.JaxTrainStep(p, st, trainable, batch)
        compile_s = round(runners["jax"].compile(), 2)
    del params, st, trainable
    if "torch" in stacks:
        pt = torch_stack.TorchR2RStep(base, p.lora, p.loss, score_init=score_init)
        runners["torch"] = functools.partial(pt.step, torch_stack.torch_batch(batch))
    first = {k: fn() for k, fn in runners.items()}  # both from identical weights: the same loss
    times = alternate(runners, reps, warmup=max(0, warmup - 1), before_round=gate)
    flops = train_step_flops(p.train_config())
    tokens = p.shape.tokens
    out = {"preset": p.name, "base": base_folder or None, "tokens_per_step": tokens,
           "sequences_per_step": p.shape.sequences, "shape": p.shape, "model_flops_per_step": flops.model_total,
           "first_loss": first, "jax_compile_s": compile_s, "load_average_1m": times.pop("load"),
           "seconds": times}
    for stack in runners:
        sec = median(times[stack])
        out[stack] = {"step_s": sec, "tokens_per_s": tokens / sec, "model_flops_per_s": flops.model_total / sec,
                      "fraction_of_peak": flops.model_total / sec / peak[stack]}
    if len(runners) == 2:
        out["speedup"] = out["jax"]["tokens_per_s"] / out["torch"]["tokens_per_s"]
    del runners, base
    gc.collect()
    return out


def _summary(r: dict) -> str:
    parts = [f"{k} {r[k]['tokens_per_s']:.0f} tok/s ({fmt_rate(r[k]['model_flops_per_s'])}FLOP/s, "
             f"{r[k]['fraction_of_peak']:.0%} of its peak)" for k in ("jax", "torch") if k in r]
    if "speedup" in r:
        parts.append(f"ratio {r['speedup']:.2f}")
    losses = " ".join(f"{k} {v:.5f}" for k, v in r["first_loss"].items())
    return f"# {r['preset']}: {', '.join(parts)}; first loss {losses}; load {r['load_average_1m']}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default="tiny,small,medium",
                    help=f"comma list of {PRESET_NAMES}; empty with --base")
    ap.add_argument("--base", default="", help="also time a real base (an HF Llama folder, e.g. the SmolLM2 base "
                    "`r2r base` writes) with --config's numerics, LoRA, loss and batch")
    ap.add_argument("--config", default=str(RECIPE_CONFIG), help="training config for --base")
    ap.add_argument("--reps", type=int, default=3, help="timed steps per stack (alternating)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps per stack (the first checks the loss)")
    ap.add_argument("--matmul-n", type=int, default=2048, help="size of the peak-FLOP/s matmul")
    add_run_options(ap)
    ap.add_argument("--only", choices=("jax", "torch"), help="time one stack alone (a cross-check without the other "
                    "stack's memory in the process)")
    ap.add_argument("--quick", action="store_true", help="smoke run: tiny preset, 2 repetitions, small matmul")
    args = ap.parse_args(argv)
    if args.quick:
        args.presets, args.reps, args.warmup, args.matmul_n = "tiny", 2, 1, 256
    gate, info = start_timed_run(args, "jax", "jaxlib", "flax", "optax", "torch", "transformers", "peft")
    info["jax_devices"] = str(jax.devices())
    stacks = (args.only,) if args.only else ("jax", "torch")
    peak = measure_peak(args.matmul_n, 3 if args.quick else 5)
    results = []
    todo = [(preset(name.strip()), "") for name in args.presets.split(",") if name.strip()]
    if args.base:
        todo.append((recipe_preset(args.base, args.config), args.base))
    for p, folder in todo:
        r = bench_preset(p, args.reps, args.warmup, peak, gate, stacks, folder)
        results.append(r)
        print(_summary(r), file=sys.stderr, flush=True)
    emit(args.json, {"benchmark": "train_step", "machine": info, "matmul_n": args.matmul_n,
                     "peak_matmul_flops_per_s": peak, "results": results,
                     "load_average_1m_end": round(current_load(), 2)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
