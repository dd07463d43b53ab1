"""LoRA train-step throughput: the JAX student against transformers + peft, same model, same run.

    python -m benchmarks.train_step [--presets tiny,small,medium] [--reps 5] [--threads 2] [--json out.json]
    python -m benchmarks.train_step --quick        # smoke run: tiny only, 2 repetitions

Per preset (see benchmarks/common.py) one random Llama is made in transformers, saved as safetensors and
imported into JAX (`import_hf_params`), so both stacks hold the same weights and the same score head; their
first losses on the same batch are printed side by side as a check that they compute the same thing. Then
the two steps run alternately (JAX, torch, JAX, torch, ...) after one warm-up each; the figures are medians.
FLOPs are the analytic model FLOPs of `r2r_jax.parallel.flops` (forward + the activation gradients LoRA
needs, LM head on target tokens only, dense attention), the same numerator for both stacks. (With T <=
loss.gen_chunk the chunked loss's scan has a single iteration and XLA merges its logits recomputation with
the forward, so the JAX step executes these FLOPs too.) The peak is a large float32 matmul in each stack.
"""

from __future__ import annotations

import argparse
import functools
import gc
import sys
import tempfile

import jax
import numpy as np

from r2r_jax.convert.hf_import import import_hf_params
from r2r_jax.parallel.flops import train_step_flops

from . import jax_stack, torch_stack
from .common import (
    PRESET_NAMES,
    alternate,
    fmt_rate,
    machine,
    median,
    preset,
    synthetic_batch,
    use_cpu,
    wait_for_quiet,
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


def bench_preset(name: str, reps: int, warmup: int, peak: dict[str, float], gate=None) -> dict:
    p = preset(name)
    batch = synthetic_batch(p.shape, p.model.vocab_size, seed=0)
    base = torch_stack.random_causal_lm(p.model, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        base.save_pretrained(tmp)
        params = import_hf_params(tmp, p.model, with_score=False)
    st = jax_stack.student(p, base_params=params)
    jx = jax_stack.JaxTrainStep(p, st, batch)
    compile_s = jx.compile()
    score_init = np.asarray(st.trainable["score"]["kernel"])
    del params, st
    pt = torch_stack.TorchR2RStep(base, p.lora, p.loss, score_init=score_init)
    torch_step = functools.partial(pt.step, torch_stack.torch_batch(batch))
    first = {"jax": jx(), "torch": torch_step()}  # both from identical weights: the same loss
    times = alternate({"jax": jx, "torch": torch_step}, reps, warmup=max(0, warmup - 1), before_round=gate)
    flops = train_step_flops(p.train_config())
    tokens = p.shape.tokens
    out = {"preset": name, "tokens_per_step": tokens, "sequences_per_step": p.shape.sequences,
           "shape": p.shape, "model_flops_per_step": flops.model_total,
           "first_loss": first, "jax_compile_s": round(compile_s, 2), "load_average_1m": times.pop("load"),
           "seconds": times}
    for stack in ("jax", "torch"):
        sec = median(times[stack])
        out[stack] = {"step_s": sec, "tokens_per_s": tokens / sec, "model_flops_per_s": flops.model_total / sec,
                      "fraction_of_peak": flops.model_total / sec / peak[stack]}
    out["speedup"] = out["jax"]["tokens_per_s"] / out["torch"]["tokens_per_s"]
    del jx, pt, base, torch_step
    gc.collect()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default="tiny,small,medium", help=f"comma list of {PRESET_NAMES}")
    ap.add_argument("--reps", type=int, default=3, help="timed steps per stack (alternating)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps per stack (the first checks the loss)")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads (XLA uses every core)")
    ap.add_argument("--matmul-n", type=int, default=2048, help="size of the peak-FLOP/s matmul")
    ap.add_argument("--max-load", type=float, default=0.0,
                    help="before the run and every timed round, wait until the 1-min load average is below this")
    ap.add_argument("--wait-s", type=float, default=600.0, help="longest wait for --max-load, each time")
    ap.add_argument("--json", default="", help="also write the results here")
    ap.add_argument("--quick", action="store_true", help="smoke run: tiny preset, 2 repetitions, small matmul")
    args = ap.parse_args(argv)
    if args.quick:
        args.presets, args.reps, args.warmup, args.matmul_n = "tiny", 2, 1, 256
    use_cpu()
    torch_stack.set_threads(args.threads)
    gate = (lambda: wait_for_quiet(args.max_load, args.wait_s)) if args.max_load else None
    if gate:
        gate()
    info = machine("jax", "jaxlib", "flax", "optax", "torch", "transformers", "peft")
    info.update(torch_threads=args.threads, jax_devices=str(jax.devices()))
    peak = measure_peak(args.matmul_n, 3 if args.quick else 5)
    results = []
    for name in args.presets.split(","):
        r = bench_preset(name.strip(), args.reps, args.warmup, peak, gate)
        results.append(r)
        print(f"# {name}: jax {r['jax']['tokens_per_s']:.0f} tok/s ({fmt_rate(r['jax']['model_flops_per_s'])}FLOP/s, "
              f"{r['jax']['fraction_of_peak']:.0%} of peak), torch {r['torch']['tokens_per_s']:.0f} tok/s "
              f"({fmt_rate(r['torch']['model_flops_per_s'])}FLOP/s, {r['torch']['fraction_of_peak']:.0%}), "
              f"ratio {r['speedup']:.2f}; first loss jax {r['first_loss']['jax']:.5f} "
              f"torch {r['first_loss']['torch']:.5f}; load {r['load_average_1m']}", file=sys.stderr, flush=True)
    emit(args.json, {"benchmark": "train_step", "machine": info, "matmul_n": args.matmul_n,
                     "peak_matmul_flops_per_s": peak, "results": results,
                     "load_average_1m_end": round(current_load(), 2)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
